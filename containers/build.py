"""Build the reelops images (`make image`): the `pipeline` and `serve` targets of the Dockerfile.

With a Docker engine that answers (`docker info`), docker builds them from the Dockerfile's
default base image. Otherwise podman does (as root; see ../shared/docs/CONTAINERS.md for the
facts this follows): its configuration and storage live under `build/podman/`, and since no
registry may be reachable, the base image is a Debian bookworm made with debootstrap from
this machine's own apt mirror, with the host's CA bundle; the host's pip settings (indexes,
find-links, constraints, certificate) are passed into the build so pip inside reaches what
pip outside reaches. Prints each image's size and build time and writes `build/images.json`
(names, ids, sizes) for `make test-containers`.

    python containers/build.py [--targets pipeline,serve] [--engine auto|podman|docker]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from containers.engine import (BASE_IMAGE, IMAGES_FILE, engine_environment, image_names,  # noqa: E402
                               pick_engine)

TARGETS = ("pipeline", "serve")


def _run(command: list, env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, check=True, **kwargs)


def _apt_mirror() -> str:
    """The host's Debian mirror: the first URIs line of its deb822 sources, or its first deb line."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        found = re.search(r"^URIs:\s*(\S+)", path.read_text(), re.M)
        if found:
            return found.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        found = re.search(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", legacy.read_text(), re.M)
        if found:
            return found.group(1)
    sys.exit("containers/build.py: no apt mirror found in /etc/apt/sources.list(.d) for the base image")


def ensure_base_image(env: dict) -> str:
    """A local Debian bookworm base with python3 and venv (debootstrap), built once."""
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=env).returncode == 0:
        return BASE_IMAGE
    if not shutil.which("debootstrap"):
        sys.exit("containers/build.py: debootstrap is missing (apt-get install debootstrap) for the local base image")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reelops-rootfs-") as rootfs:
        _run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", "bookworm", rootfs,
              _apt_mirror()], env, stdout=subprocess.DEVNULL)
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if bundle.is_file():  # the host may trust a CA that pip inside the build needs
            shutil.copy(bundle, Path(rootfs) / "etc/ssl/certs/ca-certificates.crt")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (Path(rootfs) / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        _run(["podman", "import", "-", BASE_IMAGE], env, stdin=tar.stdout, stdout=subprocess.DEVNULL)
        tar.wait()
    print(f"base image {BASE_IMAGE} built with debootstrap in {time.perf_counter() - started:.0f} s")
    return BASE_IMAGE


def host_pip_settings(work: Path) -> tuple:
    """The host's pip configuration as a pip.conf for the build, and the local paths it names.

    Returns:
        ``(pip.conf path, [local paths to mount read-only at the same place])``.
    """
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    settings = {}
    for line in listed.splitlines():
        scope_key, _, value = line.partition("=")
        key = scope_key.split(".", 1)[-1]
        if key in ("index-url", "extra-index-url", "find-links", "constraint", "cert", "trusted-host", "timeout",
                   "default-timeout"):
            settings[key] = value.strip().strip("'\"")
    mounts = []
    for value in settings.values():
        for word in value.split():
            path = word[len("file://"):] if word.startswith("file://") else word
            if word.startswith("file://") and Path(path).name == "simple":
                path = str(Path(path).parent)  # a local index's pages link to files beside simple/
            if path.startswith("/") and Path(path).exists():
                mounts.append(path)
    conf = work / "pip.conf"
    conf.write_text("[global]\n" + "".join(f"{key} = {value}\n" for key, value in sorted(settings.items())))
    return conf, sorted(set(mounts))


def build(target: str, engine: str, env: dict, base: str | None, work: Path) -> dict:
    """Build one target; returns its name, id, size in bytes and build seconds."""
    from reelops import __version__
    from reelops.buildinfo import git_commit

    name = image_names()[target]
    command = [engine, "build", "--target", target, "-t", name, "--build-arg", f"GIT_COMMIT={git_commit()}",
               "--build-arg", f"REELOPS_VERSION={__version__}"]
    if base:
        command += ["--build-arg", f"BASE_IMAGE={base}"]
    if engine == "podman":
        conf, mounts = host_pip_settings(work)
        command += ["--network=host", "-v", f"{conf}:/etc/pip.conf:ro"]  # pip reads /etc/pip.conf
        for path in mounts:
            command += ["-v", f"{path}:{path}:ro"]
        cache = Path.home() / ".cache" / "pip"
        cache.mkdir(parents=True, exist_ok=True)
        command += ["-v", f"{cache}:/root/.cache/pip"]
    started = time.perf_counter()
    _run([*command, "-f", str(ROOT / "Dockerfile"), str(ROOT)], env)
    seconds = time.perf_counter() - started
    inspected = json.loads(subprocess.run([engine, "image", "inspect", name], env=env, capture_output=True, text=True,
                                          check=True).stdout)[0]
    return {"target": target, "name": name, "id": inspected["Id"], "size": int(inspected["Size"]),
            "seconds": round(seconds, 1), "engine": engine}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--engine", default="auto", choices=["auto", "podman", "docker"])
    args = parser.parse_args()
    engine = pick_engine(args.engine)
    if engine is None:
        sys.exit("containers/build.py: no container engine: neither `docker info` answers nor podman is installed "
                 "(apt-get install podman runc debootstrap fuse-overlayfs uidmap, as root)")
    env = engine_environment(engine)
    base = ensure_base_image(env) if engine == "podman" else os.environ.get("BASE_IMAGE")
    work = ROOT / "build" / "podman"
    work.mkdir(parents=True, exist_ok=True)
    built = [build(target, engine, env, base, work) for target in args.targets.split(",")]
    IMAGES_FILE.parent.mkdir(parents=True, exist_ok=True)
    recorded = json.loads(IMAGES_FILE.read_text()) if IMAGES_FILE.is_file() else {}
    recorded.update({row["target"]: row for row in built})
    IMAGES_FILE.write_text(json.dumps(recorded, indent=2, sort_keys=True))

    from reelops.console import print_table

    print()
    print_table([[row["target"], row["name"], row["id"][:12], f"{row['size'] / 1e6:,.0f} MB", row["seconds"]]
                 for row in built], ["target", "image", "id", "size", "build s"], title=f"images built with {engine}")
    if "pipeline" in recorded and "serve" in recorded:
        ratio = recorded["serve"]["size"] / recorded["pipeline"]["size"]
        print(f"serve / pipeline size: {ratio:.2f} (goal <= 0.5): {'met' if ratio <= 0.5 else 'NOT met'}")
    print(f"recorded in {IMAGES_FILE}")


if __name__ == "__main__":
    main()
