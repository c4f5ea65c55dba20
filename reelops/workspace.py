"""The workspace: one folder for all local state (datasets, MLflow store, pipeline outputs)."""

from __future__ import annotations

import os
from pathlib import Path


def workspace_dir() -> Path:
    """``$REELOPS_WORKSPACE`` if set, else ``.reelops/`` in the current directory (created)."""
    root = Path(os.environ.get("REELOPS_WORKSPACE") or Path.cwd() / ".reelops")
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def datasets_dir() -> Path:
    """Where dataset versions are stored by default."""
    path = workspace_dir() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Where downloaded sources are cached."""
    path = workspace_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path
