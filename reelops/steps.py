"""The work of each pipeline step, as plain functions of paths and values.

KFP components in ``components/`` are thin interfaces: they turn artifact paths into calls
of these functions and put what they return into artifact metadata. Keeping the work here
means it is tested without KFP, runs the same in ``kfp.local`` and on a cluster, and the
core library never imports ``kfp``.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from pathlib import Path

SIMULATE_PREFIX = "simulate:"


def finish_task() -> None:
    """Let the step's process end quickly; components call this once their outputs are set.

    A pipeline task is a process that ends after one step. At exit, the interpreter's
    final garbage-collection passes walk every object the step's imports made (measured:
    about 1.1 s with MLflow loaded, 1.7 s with TensorFlow). Freezing them first skips
    that walk; exit handlers and log flushing still run. Not for long-lived processes:
    frozen objects are never collected.
    """
    import gc

    gc.freeze()


def parse_simulated_source(source: str) -> dict:
    """``simulate:scenario=none,seed=7,users=300,movies=400,until=0.55`` -> keyword arguments."""
    options = {"scenario": "none", "seed": 0}
    body = source[len(SIMULATE_PREFIX):]
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{source}: expected key=value, got {part!r}")
        casts = {"seed": int, "users": int, "movies": int, "until": float, "strength": float, "scenario": str}
        if key not in casts:
            raise ValueError(f"{source}: unknown option {key!r}; use {', '.join(casts)}")
        options[key] = casts[key](value)
    return options


def ingest_raw(source: str, out_dir: str) -> dict:
    """Copy a raw source (folder, .zip, URL, named download, or ``simulate:...``) to ``out_dir``."""
    from reelops.data import detect_layout, resolve_source
    from reelops.simulate import simulate

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if source.startswith(SIMULATE_PREFIX):
        options = parse_simulated_source(source)
        simulate(options.pop("scenario"), seed=options.pop("seed"), out=out, n_users=options.pop("users", None),
                 n_movies=options.pop("movies", None), **options)
    else:
        folder = resolve_source(source)
        for path in folder.iterdir():
            if path.is_file():
                shutil.copy2(path, out / path.name)
    return {"source": source, "layout": detect_layout(out).name}


def validate_raw(raw_dir: str, out_dir: str, max_bad_share: float, source: str = "") -> dict:
    """Validate a raw copy into a dataset version in the store, and copy it to ``out_dir``.

    The store (``REELOPS_STORE``) keeps the version for later runs (a retrain finds it
    through the registry's lineage); ``out_dir`` is this run's artifact for the next steps,
    with ``location.json`` naming the store.
    """
    from reelops.data import ingest

    # The lineage names where the data came from, not the pipeline's scratch copy.
    result = ingest(raw_dir, max_bad_share=max_bad_share, recorded_source=source or None)
    _hand_over(result.path, Path(out_dir), result.store, result.version)
    return {"dataset_version": result.version, "read": result.validated.total_read,
            "quarantined": result.validated.total_quarantined, "source": result.manifest["source"],
            "store": result.store}


def _hand_over(version_folder: Path, out_dir: Path, store: str, version: str) -> None:
    """Copy a version's files to the step's output artifact, with ``location.json`` naming its store."""
    from reelops.data.store import write_location

    out_dir.mkdir(parents=True, exist_ok=True)
    for path in version_folder.iterdir():
        if path.is_file():
            shutil.copy2(path, out_dir / path.name)
    write_location(out_dir, store, version)


def engineer_features(dataset_dir: str, out_dir: str, holdout: str = "user-time-20") -> dict:
    """User and movie features of the training split, which the train step fits on."""
    from reelops.data import holdout_split, load_dataset
    from reelops.features import build_features, save_for_training

    dataset = load_dataset(dataset_dir)
    train_rows, _ = holdout_split(dataset["ratings"], holdout)
    features = build_features(train_rows, dataset["users"], dataset["movies"])
    return save_for_training(features, Path(out_dir), dataset["manifest"], holdout)


def train_model(dataset_dir: str, model_dir: str, algorithm: str, holdout: str, parameters_json: str = "{}",
                features_dir: str = "") -> dict:
    """Fit a model (its evaluation and monitoring reference included) into ``model_dir``.

    Args:
        features_dir: the features step's tables; the model is fitted on them (checked to
            be of the same dataset version and split).
    """
    from reelops.training import train

    model = train(dataset_dir, model_dir, algorithm=algorithm, holdout=holdout,
                  parameters=json.loads(parameters_json or "{}"), features=features_dir or None)
    meta = model.metadata_
    return {"algorithm": meta["algorithm"], "dataset_version": meta["dataset_version"], "git_commit": meta["git_commit"],
            "dataset_store": meta.get("dataset_store", "")}


def evaluate_model(model_dir: str, dataset_dir: str, html_path: str) -> dict:
    """Metrics of a model on its held-out rows (or another dataset); the HTML report to ``html_path``."""
    import tempfile

    from reelops.services import evaluate_model as evaluate

    # The model is an input artifact: the reports are written beside, not into it.
    with tempfile.TemporaryDirectory() as scratch:
        report = evaluate(model_dir, dataset_dir, report_dir=scratch)
        shutil.copyfile(report["reports"]["html"], html_path)
    return {key: float(report[key]) for key in ("rmse", "mae", "precision@10", "recall@10", "ndcg@10", "map@10", "coverage")}


def gate_model(model_dir: str, dataset_dir: str, out_dir: str) -> dict:
    """Copy the candidate to ``out_dir`` and decide on it there (``blessing.json``)."""
    from reelops.gate import run_gate

    _copy_tree(Path(model_dir), Path(out_dir))
    blessing = run_gate(out_dir, dataset_dir)
    return {"decision": blessing["decision"], "compared_with": str(blessing["compared_with"].get("version") or "baselines"),
            "reasons": "; ".join(blessing["reasons"])}


def _copy_tree(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)


def register_model(model_dir: str, pipeline_name: str = "", run_id: str = "") -> dict:
    """Register a blessed model, with the pipeline run as lineage; the registry picks its alias."""
    from reelops import registry

    lineage = {"reelops.kfp_pipeline": pipeline_name, "reelops.kfp_run_id": run_id}
    result = registry.register(model_dir, reason=f"pipeline {pipeline_name} run {run_id}".strip(),
                               lineage={tag: value for tag, value in lineage.items() if value})
    return {"model_version": result["version"], "alias": result["alias"] or ""}


def batch_predict(alias: str, k: int, out_path: str, model_dir: str = "") -> dict:
    """Top-K for every user the model knows, as Parquet (user, rank, movie, score, model version)."""
    from reelops import registry
    from reelops.models import load_model, top_k_table

    if model_dir:
        model, version = load_model(model_dir), Path(model_dir).name
    else:
        model, version = registry.load_by_alias(alias)
    table = top_k_table(model, k, version)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out_path, index=False)
    return {"model_version": str(version), "users": int(table["user_id"].nunique()), "rows": int(len(table))}


def detect_drift(alias: str, dataset_dir: str, min_new_labels: int, cooldown_days: float) -> dict:
    """Monitor new data against the model under ``alias``; decide on retraining."""
    from reelops.monitoring import DETECTORS
    from reelops.services import monitor_model

    result = monitor_model(dataset_dir, alias=alias, min_new_labels=min_new_labels, cooldown_days=cooldown_days)
    summary, decision = result["summary"], result["decision"]
    return {"retrain": "retrain" if decision["retrain"] else "keep", "model_version": result["model_version"],
            "windows": result["windows"], "verdicts": json.dumps(summary["verdicts"]),
            "reasons": "; ".join(decision["reasons"]),
            **{f"{name}_alarms": summary[name]["alarms"] for name in DETECTORS},
            "training_dataset_version": result["training_dataset_version"]}


def combine_datasets(alias: str, new_dir: str, out_dir: str) -> dict:
    """The training data of a retrain: the dataset of the model under ``alias`` plus the new data.

    The base dataset is found through the registry's lineage (the store and version the
    model was trained on), never on this task's disk. The combined version is written to the
    store, and to ``out_dir`` for the next steps.
    """
    from reelops import registry
    from reelops.data import load_dataset
    from reelops.data.combine import combine
    from reelops.data.store import store_url
    from reelops.data.versions import write_version

    lineage = registry.show(registry.resolve_alias(alias))
    if not lineage["dataset_version"]:
        raise registry.RegistryError(f"model version {lineage['version']} under {alias!r} records no training dataset")
    base = load_dataset(lineage["dataset_version"], store=lineage["dataset_store"] or None)
    new = load_dataset(new_dir)
    combined = combine(base, new)
    url = store_url()
    path, manifest, _ = write_version(combined, source=f"{base['manifest']['version']}+{new['manifest']['version']}",
                                      store=url)
    _hand_over(path, Path(out_dir), url, manifest["version"])
    return {"dataset_version": manifest["version"], "ratings": int(len(combined.ratings)), "store": url,
            "base_dataset_version": base["manifest"]["version"]}


def record_outcome(pipeline: str, state: str, job: str, error: str = "", out_path: str = "") -> dict:
    """Record a run's outcome, whatever it was: an MLflow run, and a JSON file at ``out_path``.

    On a cluster the task's disk goes with its pod; the tracking server keeps the outcome
    (``reelops pipeline outcomes`` lists them) and the KFP artifact shows it in the run.
    """
    from reelops import registry

    entry = {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "pipeline": pipeline,
             "state": state, "job": job, "error": error}
    entry["mlflow_run_id"] = registry.record_pipeline_outcome(entry)
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(json.dumps(entry, indent=2, sort_keys=True))
    return entry
