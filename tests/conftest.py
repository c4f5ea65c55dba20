"""Shared fixtures: an isolated workspace per test and the real ml-100k when present."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Hypothesis keeps caches in ./.hypothesis unless told otherwise: not in the checkout.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "reelops-hypothesis"))

import pytest

ML100K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"

# The container tests run the built images: `make test-containers` (after `make image`) sets
# this; `make test` leaves them out rather than building images.
collect_ignore = [] if os.environ.get("REELOPS_CONTAINER_TESTS") else ["containers"]


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    """Every test gets its own workspace, so no state leaks between tests or into the repo."""
    root = tmp_path / "workspace"
    monkeypatch.setenv("REELOPS_WORKSPACE", str(root))
    return root


@pytest.fixture
def ml100k() -> Path:
    if not (ML100K / "u.data").is_file():
        pytest.skip(f"real MovieLens 100K not found at {ML100K} (it is never shipped with reelops)")
    return ML100K


@pytest.fixture(scope="session")
def monitored_world():
    """A model and its monitor trained on the first 55% of a default unchanged world (seed 8);
    the scenarios of the same seed share that history. Shared by the offline and online
    monitoring tests (each resets the monitor's stream before use)."""
    from reelops.data import user_time_holdout
    from reelops.models import make_model
    from reelops.monitoring import Monitor
    from reelops.simulate import Scenario, World, WorldConfig

    world = World(WorldConfig(), Scenario.parse("none"), 8)
    tables = world.generate()
    cut = world.start + 0.55 * (world.end - world.start)
    history = tables["ratings"][tables["ratings"]["timestamp"] < cut]
    train_rows, heldout = user_time_holdout(history, 0.2)
    model = make_model("hybrid", epochs=20).fit(train_rows, users=tables["users"], movies=tables["movies"])
    monitor = Monitor(model).build(train_rows, heldout, tables["users"], tables["movies"])
    return {"monitor": monitor, "cut": cut, "seed": 8}
