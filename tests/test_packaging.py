"""The built wheel is whole: installed outside the checkout, every module imports from there.

The rest of the suite runs the editable checkout (``pytest.ini`` puts ``.`` on the path and
the editable install adds a finder), which hides a module the wheel forgot. Here the wheel
goes into a fresh virtualenv outside the checkout; the dependencies come from this
environment through a plain path entry (a ``.pth`` line, whose own ``.pth`` files, the
editable finder among them, are not processed), and the imports run from a folder outside
the checkout.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

IMPORT_ALL = r"""
import importlib, importlib.util, json, pkgutil, sys
import reelops, reelops.components, reelops.pipelines
found = {}
for package in (reelops, reelops.components, reelops.pipelines):
    found[package.__name__] = package.__file__
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith(".__main__"):  # runs the command when imported: its file is enough
            found[info.name] = importlib.util.find_spec(info.name).origin
            continue
        module = importlib.import_module(info.name)
        found[info.name] = module.__file__
print(json.dumps(found))
"""


def _source_modules() -> set:
    """Every module of the checkout under its installed name."""
    names = set()
    for folder, package in (("reelops", "reelops"), ("components", "reelops.components"),
                            ("pipelines", "reelops.pipelines")):
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.add(".".join([package, *parts]))
    return names


def _clean_source(target: Path) -> Path:
    """The files a build reads, copied without build leftovers.

    setuptools keeps ``build/lib`` between builds in a checkout, and a stale copy there
    once put modules into a wheel that ``setup.py`` no longer lists: build from a copy.
    """
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_build_info.py")
    for folder in ("reelops", "components", "pipelines"):
        shutil.copytree(ROOT / folder, target / folder, ignore=ignore)
    for name in ("setup.py", "README.md", "constraints.txt"):
        shutil.copy(ROOT / name, target / name)
    return target


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """A virtualenv outside the checkout with the freshly built wheel installed ``--no-deps``."""
    from reelops.buildinfo import git_commit

    root = tmp_path_factory.mktemp("wheel")
    source = _clean_source(root / "source")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "-w", str(root / "dist"), str(source)], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "REELOPS_GIT_COMMIT": git_commit()})
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((root / "dist").glob("reelops-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    target = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    # Dependencies from this environment, as a plain path: the editable finder stays out.
    dependencies = [path for path in site.getsitepackages() if Path(path).is_dir()] or [sysconfig.get_path("purelib")]
    (target / "zz_dependencies.pth").write_text("\n".join(dependencies) + "\n")
    return {"venv": venv, "python": python, "site": target}


def reelops_version() -> str:
    import reelops

    return reelops.__version__


def _clean_env(tmp_path) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["REELOPS_WORKSPACE"] = str(tmp_path / "workspace")
    return env


def test_every_module_imports_from_the_installed_wheel(installed_wheel, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = subprocess.run([str(installed_wheel["python"]), "-c", IMPORT_ALL], cwd=outside, env=_clean_env(tmp_path),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    missing = _source_modules() - set(found)
    assert not missing, f"modules of the checkout missing from the wheel: {sorted(missing)}"
    site_dir = str(installed_wheel["site"].resolve())
    elsewhere = {name: path for name, path in found.items() if not str(Path(path).resolve()).startswith(site_dir)}
    assert not elsewhere, f"imported from outside the installed wheel: {elsewhere}"
    assert "reelops.serving.predictor" in found and "reelops.monitoring.policy" in found


def test_console_script_of_the_wheel_runs_outside_the_checkout(installed_wheel, tmp_path):
    result = subprocess.run([str(installed_wheel["venv"] / "bin" / "reelops"), "--version"], cwd=tmp_path,
                            env=_clean_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    from reelops.buildinfo import git_commit

    assert result.stdout.strip() == f"reelops {reelops_version()} (commit {git_commit()})"
    golden = subprocess.run([str(installed_wheel["python"]), "-c",
                             "import importlib.resources as r; print(sorted(p.name for p in "
                             "r.files('reelops.pipelines').joinpath('golden').iterdir()))"],
                            cwd=tmp_path, env=_clean_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert golden.returncode == 0 and "training.yaml" in golden.stdout, golden.stderr[-2000:]
