"""Which container engine this machine has, and the environment podman needs here.

Shared by `containers/build.py` (`make image`) and the container tests (`make
test-containers`). Docker is used when a Docker engine answers (`docker info`, not merely a
`docker` binary); otherwise podman, configured under `build/podman/` (runc with cgroupfs,
host networking so containers reach services on 127.0.0.1, file events, overlay storage,
ulimits within the caller's hard limits).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "podman"
IMAGES_FILE = ROOT / "build" / "images.json"
# The local base image podman builds with debootstrap when no registry is reachable.
BASE_IMAGE = "localhost/reelops-base:bookworm"


def image_names() -> dict:
    """Target -> image name: the constants the components and manifests use."""
    from reelops.buildinfo import image, serve_image

    return {"pipeline": image(), "serve": serve_image()}


def docker_answers() -> bool:
    """Whether a Docker engine answers (a `docker` binary alone is not enough)."""
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pick_engine(choice: str = "auto") -> str | None:
    """``docker``, ``podman``, or None when neither can build here."""
    if choice in ("auto", "docker") and docker_answers():
        return "docker"
    if choice in ("auto", "podman") and shutil.which("podman") and os.geteuid() == 0:
        return "podman"
    return None


def _limit(kind: int, cap: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return cap if hard == resource.RLIM_INFINITY else min(hard, cap)


def engine_environment(engine: str) -> dict:
    """The environment to run the engine with (podman: its configuration files, written once)."""
    env = dict(os.environ)
    if engine != "podman":
        return env
    WORK.mkdir(parents=True, exist_ok=True)
    # Without CAP_SYS_RESOURCE a container may not raise a limit above the caller's hard one;
    # an nproc near the hard limit was refused by runc here too, so it stays modest.
    nofile, nproc = _limit(resource.RLIMIT_NOFILE, 65536), _limit(resource.RLIMIT_NPROC, 4096)
    (WORK / "containers.conf").write_text(
        "[containers]\n"
        'netns = "host"\n'
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n')
    (WORK / "storage.conf").write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{WORK / "storage"}"\n'
        f'runroot = "{WORK / "run"}"\n')
    env.update({"CONTAINERS_CONF": str(WORK / "containers.conf"), "CONTAINERS_STORAGE_CONF": str(WORK / "storage.conf")})
    return env
