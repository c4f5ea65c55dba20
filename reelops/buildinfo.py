"""What code this is: package version and the git commit recorded at install time."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache

from reelops import __version__

IMAGE_REPOSITORY = "ghcr.io/reelops/reelops"


def image() -> str:
    """The container image of this package version (the one the Dockerfile builds)."""
    return os.environ.get("REELOPS_IMAGE", f"{IMAGE_REPOSITORY}:{__version__}")


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
    return {"package_version": __version__, "git_commit": git_commit(), "image": image()}
