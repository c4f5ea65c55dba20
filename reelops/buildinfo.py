"""What code this is: package version and the git commit recorded at install time."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache

from reelops import __version__

IMAGE_REPOSITORY = "ghcr.io/reelops/reelops"
SERVE_IMAGE_REPOSITORY = "ghcr.io/reelops/reelops-serve"


def image() -> str:
    """The pipeline image of this package version (the Dockerfile's ``pipeline`` target).

    ``REELOPS_IMAGE`` overrides it, e.g. with ``IMAGE@sha256:...`` once the image is pushed:
    pipelines compiled then refer to exactly that build, and the steps record it as lineage.
    """
    return os.environ.get("REELOPS_IMAGE", f"{IMAGE_REPOSITORY}:{__version__}")


def serve_image() -> str:
    """The serving image (the Dockerfile's ``serve`` target); ``REELOPS_SERVE_IMAGE`` overrides it."""
    return os.environ.get("REELOPS_SERVE_IMAGE", f"{SERVE_IMAGE_REPOSITORY}:{__version__}")


def image_id() -> str:
    """The local id of the image a step runs in, when the harness that started it says so.

    A container cannot learn its own digest; a registry gives one (``REELOPS_IMAGE``), and a
    local build (podman, docker) passes the image id in ``REELOPS_IMAGE_ID``.
    """
    return os.environ.get("REELOPS_IMAGE_ID", "")


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The git commit of the installed code.

    An editable install inside a checkout asks git, since the tree moves on after install;
    anywhere else (wheel, image, pipeline step) the commit recorded by setup.py is used.
    """
    package_dir = os.path.dirname(os.path.abspath(__file__))
    if os.path.isdir(os.path.join(package_dir, os.pardir, ".git")):
        try:
            return subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=package_dir,
                capture_output=True,
                text=True,
                check=True,
                timeout=5,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
    try:
        from reelops._build_info import GIT_COMMIT
    except ImportError:
        return os.environ.get("REELOPS_GIT_COMMIT", "unknown")
    return GIT_COMMIT


def describe() -> dict:
    """Version, commit and image as one dict (for manifests and lineage tags)."""
    return {"package_version": __version__, "git_commit": git_commit(), "image": image(), "image_id": image_id()}
