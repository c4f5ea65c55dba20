"""Training: a dataset version in, a model directory out, with everything that travels with it.

A model directory holds the fitted model, its held-out evaluation (reports with plots) and
the drift reference the monitor watches it with. Training sits above the models, the
evaluation and the monitoring, which know nothing of one another's files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from reelops.models import DEFAULT_ALGORITHM, Recommender, make_model


def train(data: str | os.PathLike, out: str | os.PathLike, algorithm: str = DEFAULT_ALGORITHM,
          holdout: str = "user-time-20", parameters: dict | None = None, progress: bool = False,
          features: str | os.PathLike | None = None) -> Recommender:
    """Fit a model on a dataset version and write its model directory.

    Args:
        data: a dataset version id or folder.
        out: the model directory to write.
        algorithm: one of ``ALGORITHMS``.
        holdout: ``user-time-20`` (each user's last 20% of ratings are held out, and
            recorded so evaluation and the gate score exactly those rows) or ``none``.
        parameters: algorithm parameters.
        progress: show epochs and loss.
        features: a folder of feature tables built for this dataset version and split (the
            pipeline's features step); computed here when not given.

    Raises:
        ValueError: no ratings to train on, or features of another dataset or split.
    """
    from reelops.data import holdout_split, load_dataset
    from reelops.data.store import location_of
    from reelops.features import load_for_training
    from reelops.staging import clean_stale, replace_folder, staging_folder

    dataset = load_dataset(data)
    dataset["store"] = location_of(data, dataset["path"])
    manifest = dataset["manifest"]
    train_rows, test_rows = holdout_split(dataset["ratings"], holdout)
    if len(train_rows) == 0:
        raise ValueError(f"{data}: dataset {manifest['version']} has no ratings to train on")
    built = load_for_training(features, manifest, holdout) if features else None
    model = make_model(algorithm, **(parameters or {}))
    model.fit(train_rows, users=dataset["users"], movies=dataset["movies"], progress=progress, features=built)
    out = Path(out).absolute()
    # The model folder appears whole or not at all: written under a hidden name beside the
    # target and renamed at the end (a failure or a kill leaves no model.json to register).
    clean_stale(out.parent, f"{out.name}-")
    with staging_folder(out.parent, f"{out.name}-") as staging:
        _write_model_folder(model, staging, dataset, train_rows, test_rows, algorithm, holdout)
        replace_folder(staging, out)
    model.metadata_ = json.loads((out / "model.json").read_text())
    return model


def _write_model_folder(model, folder: Path, dataset: dict, train_rows, test_rows, algorithm: str, holdout: str) -> None:
    """The model, its held-out evaluation and its drift reference, into ``folder``."""
    manifest = dataset["manifest"]
    model.save(folder, metadata={
        "dataset_version": manifest["version"],
        "dataset_hash": manifest["content_hash"],
        "dataset_source": manifest["source"],
        # Where the version is kept: a retrain finds its base data through this lineage.
        "dataset_store": dataset["store"],
        "holdout": {"kind": holdout, "train_rows": int(len(train_rows)), "test_rows": int(len(test_rows)),
                    "max_train_timestamp": int(train_rows["timestamp"].max()) if len(train_rows) else None},
    })
    model.metadata_ = json.loads((folder / "model.json").read_text())
    if len(test_rows):
        # Every trained model carries its held-out evaluation (logged with it at registration).
        from reelops.evaluation import evaluate, lineage_card, write_reports

        report = evaluate(model, test_rows, users=dataset["users"])
        report.update({"scored": f"held-out rows of the training split ({holdout})", "algorithm": algorithm,
                       "dataset_version": manifest["version"]})
        write_reports(report, folder, title=f"{algorithm} on {manifest['version']}",
                      card={"lineage": lineage_card(model.metadata_), "gate": None, "registry": None})
    # The drift reference travels with the model version it watches (inputs from training
    # rows; predictions and errors from held-out rows, when there are any).
    from reelops.monitoring import build_monitor

    build_monitor(model, train_rows, test_rows, dataset["users"], dataset["movies"]).save(folder / "monitoring")
