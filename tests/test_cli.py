"""The reelops command: summaries, --json, and one-line failures with a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reelops.cli import main
from tests.layouts import default_rating_lines, write_ml100k

ROOT = Path(__file__).resolve().parents[1]


def test_ingest_json_and_second_run_same_version(tmp_path, capsys):
    source = write_ml100k(tmp_path / "src")
    assert main(["data", "ingest", str(source), "--out", str(tmp_path / "store"), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["valid"] == 31 and first["quarantined"] == 0 and first["created"]
    assert main(["data", "ingest", str(source), "--out", str(tmp_path / "store"), "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["version"] == first["version"] and not second["created"]
    assert (tmp_path / "store" / first["version"] / "ratings.parquet").is_file()


def test_ingest_table_lists_bad_rows(tmp_path, capsys):
    lines = default_rating_lines()
    lines[3] = "1\t4\t7\t880000180"
    source = write_ml100k(tmp_path / "src", rating_lines=lines)
    assert main(["data", "ingest", str(source), "--out", str(tmp_path / "store"), "--max-bad-share", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "u.data:4: bad value: rating 7 is not on the ml-100k scale" in out
    assert "quarantined" in out and "total" in out


def test_validate_writes_nothing(tmp_path, capsys, workspace):
    source = write_ml100k(tmp_path / "src")
    assert main(["data", "validate", str(source), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] == 31
    assert not (workspace / "datasets").exists() or not any((workspace / "datasets").iterdir())


def test_failure_is_one_line_and_non_zero(tmp_path, capsys):
    lines = ["1\t1\tx\t880000000"] * 5 + default_rating_lines()[5:]
    source = write_ml100k(tmp_path / "src", rating_lines=lines)
    assert main(["data", "ingest", str(source), "--out", str(tmp_path / "store")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reelops: error: ") and "rows are bad" in err[0]
    assert main(["data", "validate", str(tmp_path / "nowhere")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_console_script_is_installed(tmp_path):
    env = {**os.environ, "REELOPS_WORKSPACE": str(tmp_path / "ws")}
    result = subprocess.run([str(Path(sys.executable).parent / "reelops"), "--version"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and result.stdout.startswith("reelops ")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # grimp finds the reelops package under root first
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports"), str(root / ".importlinter")],
                          cwd=root, capture_output=True, text=True, env=env, timeout=300)


def test_the_library_keeps_its_import_contracts():
    """import-linter checks .importlinter: no kfp in the library, and each room imports only rooms below it."""
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, broken, reported", [
    ("data/splits.py", "import kfp", "the reelops library never imports kfp", "reelops.data.splits -> kfp"),
    ("models/base.py", "from reelops import registry", "each room imports only the rooms below it",
     "reelops.models.base -> reelops.registry"),
])
def test_the_import_contracts_break_when_the_library_breaks_them(tmp_path, module, line, broken, reported):
    import shutil

    shutil.copytree(ROOT / "reelops", tmp_path / "reelops", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    with open(tmp_path / "reelops" / module, "a") as handle:
        handle.write(f"\n{line}  # added by the test\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0 and "Contracts: 1 kept, 1 broken" in result.stdout, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    verdict = text[text.index(broken):].split(" KEPT")[0].split(" BROKEN")[0]
    assert f"{verdict} BROKEN" in text and reported in text


def test_git_commit_is_known():
    from reelops.buildinfo import describe

    info = describe()
    assert len(info["git_commit"]) == 40 and info["image"].endswith(info["package_version"])
