"""The service layer: what a user or a pipeline step asks of reelops, done one way.

The ``reelops`` command and the pipeline steps (``reelops.steps``) are two doors into the
same work; both call these functions, so a rule (which rows are monitored, where the
policy keeps its cooldown, where a pipeline run's results are) is written once. The
functions take plain values and paths and return JSON-able dictionaries; the CLI renders
them as tables, the steps turn them into artifact metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from reelops.data import load_dataset, validate_source


def evaluate_model(model_dir: str | os.PathLike, data: str | os.PathLike, k: int = 10,
                   report_dir: str | os.PathLike | None = None) -> dict:
    """Metrics of a model on its held-out rows (or on every row of another dataset).

    Args:
        model_dir: the model directory.
        data: a dataset version id or folder.
        k: the cut-off of the ranking metrics.
        report_dir: where ``evaluation.json`` and ``evaluation.html`` go (default: the model
            directory).

    Returns:
        The report (metrics, slices, what was scored) with ``reports`` naming the files.
    """
    from reelops.blessing import write_model_report
    from reelops.evaluation import evaluate, evaluation_rows, lineage_card, write_reports
    from reelops.models import load_model

    model = load_model(model_dir)
    dataset = load_dataset(data)
    test, scored = evaluation_rows(model, dataset)
    report = evaluate(model, test, k=k, users=dataset["users"])
    report.update({"scored": scored, "model_dir": str(model_dir), "dataset_version": dataset["manifest"]["version"],
                   "algorithm": model.metadata_["algorithm"]})
    json_path, html_path = write_reports(report, report_dir or model_dir,
                                         title=f"{report['algorithm']} on {report['dataset_version']}",
                                         card={"lineage": lineage_card(model.metadata_), "gate": None, "registry": None})
    if report_dir is None:
        # In the model's own folder the page keeps what the gate and the registry said about it.
        html_path = write_model_report(model_dir)
    report["reports"] = {"json": str(json_path), "html": str(html_path)}
    return report


def load_any_dataset(data: str | os.PathLike) -> dict:
    """A dataset version (id or folder) or a raw source, as the canonical tables.

    Returns:
        ``ratings``, ``users``, ``movies`` and ``input``: what was read, and for a raw
        source (checked here, not at ingest) what was set aside.
    """
    try:
        return {**load_dataset(data), "input": {"kind": "dataset version", "note": "checked when it was ingested"}}
    except FileNotFoundError:
        validated = validate_source(data)
        first = validated.quarantine.rows[0] if validated.quarantine.rows else None
        return {"ratings": validated.ratings, "users": validated.users, "movies": validated.movies,
                "input": {"kind": "raw source", "files": len(validated.counts), "read": validated.total_read,
                          "quarantined": validated.total_quarantined,
                          "quarantine_reasons": validated.quarantine.reasons(),
                          "first_bad_row": f"{first['file']} line {first['line']}: {first['reason']}" if first else None}}


def monitor_model(data: str | os.PathLike, model_dir: str | os.PathLike | None = None, alias: str | None = None,
                  min_new_labels: int = 1000, cooldown_days: float = 7.0, record: bool = True) -> dict:
    """Judge new data against a model with every drift detector, and decide on retraining.

    The production data are the rows newer than the model's training data; when none is
    newer (another dataset on an older clock), every row is judged. A model from the
    registry keeps the policy's cooldown in the registry (shared by every process); a
    model folder keeps it for this call only.

    Args:
        data: a dataset version (id or folder) or a raw source.
        model_dir: a model directory, or
        alias: the registry alias of the watched model.
        min_new_labels: the least new labelled ratings a retrain needs.
        cooldown_days: data time between two retrain triggers.
        record: remember a positive decision (starting the cooldown).

    Returns:
        ``model_dir``, ``model_version``, ``data``, ``input``, ``summary`` (per detector
        and verdict counts), ``decision``, ``windows``, ``latest_window`` and
        ``training_dataset_version``.

    Raises:
        MonitoringInputError: the data hold no ratings to judge.
    """
    from reelops import registry
    from reelops.monitoring import MonitoringInputError, load_monitor, monitor_dataset
    from reelops.monitoring.policy import PolicyState, RetrainingPolicy, decide

    version = None
    if model_dir is None:
        version = registry.resolve_alias(alias)
        model_dir = registry.download_model(version)
    monitor = load_monitor(model_dir)
    dataset = load_any_dataset(data)
    ratings = dataset["ratings"]
    training_end = (monitor.model.metadata_.get("holdout") or {}).get("max_train_timestamp")
    newer = training_end is not None and bool((ratings["timestamp"] > training_end).any())
    result = monitor_dataset(monitor, ratings, dataset["users"], dataset["movies"],
                             after_timestamp=training_end if newer else None)
    if not result["windows"]:
        raise MonitoringInputError(f"{data}: no ratings to monitor")
    policy = RetrainingPolicy(min_new_labels=min_new_labels, cooldown_seconds=int(cooldown_days * 86_400))
    state = registry.TriggerState() if version is not None else PolicyState()
    decision = decide(result["windows"], result["new_labels"], result["data_time"], policy, state=state, record=record)
    return {"model_dir": str(model_dir), "model_version": version, "data": str(data), "input": dataset["input"],
            "summary": result["summary"], "decision": decision.to_dict(), "windows": len(result["windows"]),
            "latest_window": result["windows"][-1].to_dict(),
            "training_dataset_version": monitor.model.metadata_.get("dataset_version", "")}


def training_run_summary(run_dir: str | os.PathLike) -> dict:
    """What one local run of the training pipeline decided, read from its own task outputs.

    Args:
        run_dir: the run's folder under the pipeline root (``run_local`` returns it).

    Returns:
        ``dataset`` (version, counts, quarantined, warnings) and ``gate`` (decision,
        reasons, compared_with); empty when the run stopped before that step.
    """
    run_dir = Path(run_dir)
    manifest_path = run_dir / "validate" / "dataset" / "manifest.json"
    blessing_path = run_dir / "gate" / "candidate" / "blessing.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    blessing = json.loads(blessing_path.read_text()) if blessing_path.is_file() else {}
    return {"dataset": {key: manifest.get(key) for key in ("version", "counts", "quarantined", "warnings")},
            "gate": {key: blessing.get(key) for key in ("decision", "reasons", "compared_with")}}
