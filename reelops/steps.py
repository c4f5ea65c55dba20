"""The work of each pipeline step, as plain functions of paths and values.

KFP components in ``components/`` are thin interfaces: they turn artifact paths into calls
of these functions and put what they return into artifact metadata. Keeping the work here
means it is tested without KFP, runs the same in ``kfp.local`` and on a cluster, and the
core library never imports ``kfp``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

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
    from reelops.data.store import write_location

    # The lineage names where the data came from, not the pipeline's scratch copy.
    result = ingest(raw_dir, max_bad_share=max_bad_share, recorded_source=source or None)
    _copy_folder(result.path, Path(out_dir))
    write_location(Path(out_dir), result.store, result.version)
    return {"dataset_version": result.version, "read": result.validated.total_read,
            "quarantined": result.validated.total_quarantined, "source": result.manifest["source"],
            "store": result.store}


def _copy_folder(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            shutil.copy2(path, target / path.name)


def engineer_features(dataset_dir: str, out_dir: str, holdout: str = "user-time-20") -> dict:
    """User and movie features of the training split, which the train step fits on."""
    from reelops.data import load_dataset
    from reelops.features import build_features, save_for_training
    from reelops.models import holdout_split

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
    from reelops.models import train

    model = train(dataset_dir, model_dir, algorithm=algorithm, holdout=holdout,
                  parameters=json.loads(parameters_json or "{}"), features=features_dir or None)
    meta = model.metadata_
    return {"algorithm": meta["algorithm"], "dataset_version": meta["dataset_version"], "git_commit": meta["git_commit"],
            "dataset_store": meta.get("dataset_store", "")}


def evaluate_model(model_dir: str, dataset_dir: str, html_path: str) -> dict:
    """Metrics of a model on its held-out rows (or another dataset); the HTML report to ``html_path``."""
    from reelops.data import load_dataset
    from reelops.evaluation import evaluate, evaluation_rows, render_html
    from reelops.models import load_model

    model = load_model(model_dir)
    dataset = load_dataset(dataset_dir)
    test, scored = evaluation_rows(model, dataset)
    report = evaluate(model, test, users=dataset["users"])
    report["scored"] = scored
    Path(html_path).write_text(render_html(report, f"{model.metadata_['algorithm']} on {dataset['manifest']['version']}"))
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
    """Register a blessed model; the registry picks its alias."""
    from reelops import registry

    if pipeline_name:
        os.environ["REELOPS_PIPELINE_NAME"] = pipeline_name
    if run_id:
        os.environ["REELOPS_KFP_RUN_ID"] = run_id
    result = registry.register(model_dir, reason=f"pipeline {pipeline_name} run {run_id}".strip())
    return {"model_version": result["version"], "alias": result["alias"] or ""}


def batch_predict(alias: str, k: int, out_path: str, model_dir: str = "") -> dict:
    """Top-K for every user the model knows, as Parquet (user, rank, movie, score, model version)."""
    from reelops import registry
    from reelops.models import load_model

    if model_dir:
        model, version = load_model(model_dir), Path(model_dir).name
    else:
        model, version = registry.load_by_alias(alias)
    table = top_k_table(model, k, version)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out_path, index=False)
    return {"model_version": str(version), "users": int(table["user_id"].nunique()), "rows": int(len(table))}


def top_k_table(model, k: int, version: str, batch: int = 1024) -> pd.DataFrame:
    """Recommendations of every user as a long table (one row per user and rank)."""
    parts = []
    for start in range(0, len(model.user_ids_), batch):
        users = model.user_ids_[start: start + batch]
        answer = model.recommend(users, k=k, exclude_rated=True)
        ranks = np.tile(np.arange(1, answer.movie_ids.shape[1] + 1), len(users))
        part = pd.DataFrame({"user_id": np.repeat(users, answer.movie_ids.shape[1]), "rank": ranks,
                             "movie_id": answer.movie_ids.ravel(), "score": answer.scores.ravel(),
                             "path": np.repeat(answer.paths, answer.movie_ids.shape[1])})
        parts.append(part[part["movie_id"] >= 0])
    table = pd.concat(parts, ignore_index=True)
    table["model_version"] = str(version)
    return table


def detect_drift(alias: str, dataset_dir: str, min_new_labels: int, cooldown_days: float) -> dict:
    """Monitor new data against the model under ``alias``; decide on retraining."""
    from reelops import registry
    from reelops.data import load_dataset
    from reelops.monitoring import load_monitor, monitor_dataset
    from reelops.monitoring.policy import RetrainingPolicy, decide

    version = registry.resolve_alias(alias)
    model_dir = registry.download_model(version)
    monitor = load_monitor(model_dir)
    dataset = load_dataset(dataset_dir)
    training_end = (monitor.model.metadata_.get("holdout") or {}).get("max_train_timestamp")
    result = monitor_dataset(monitor, dataset["ratings"], dataset["users"], dataset["movies"], after_timestamp=training_end)
    policy = RetrainingPolicy(min_new_labels=min_new_labels, cooldown_seconds=int(cooldown_days * 86_400))
    decision = decide(result["windows"], result["new_labels"], result["data_time"] or 0, policy)
    summary = result["summary"]
    return {"retrain": "retrain" if decision.retrain else "keep", "model_version": version,
            "windows": len(result["windows"]), "verdicts": json.dumps(summary["verdicts"]),
            "reasons": "; ".join(decision.reasons),
            **{f"{name}_alarms": summary[name]["alarms"] for name in
               ("user_data_drift", "movie_data_drift", "prediction_drift", "model_drift")},
            "training_dataset_version": monitor.model.metadata_.get("dataset_version", "")}


def combine_datasets(alias: str, new_dir: str, out_dir: str) -> dict:
    """The training data of a retrain: the dataset of the model under ``alias`` plus the new data.

    The base dataset is found through the registry's lineage (the store and version the
    model was trained on), never on this task's disk. A (user, movie) pair present in both
    keeps its newer rating; users and movies are the union (new rows win). The combined
    version is written to the store, and to ``out_dir`` for the next steps.
    """
    from reelops import registry
    from reelops.data import load_dataset
    from reelops.data.lines import Quarantine
    from reelops.data.store import store_url, write_location
    from reelops.data.validation import ValidatedData, canonical_movies, canonical_ratings, canonical_users
    from reelops.data.versions import write_version

    lineage = registry.show(registry.resolve_alias(alias))
    if not lineage["dataset_version"]:
        raise registry.RegistryError(f"model version {lineage['version']} under {alias!r} records no training dataset")
    base = load_dataset(lineage["dataset_version"], store=lineage["dataset_store"] or None)
    new = load_dataset(new_dir)
    ratings = pd.concat([base["ratings"], new["ratings"]], ignore_index=True)
    ratings = ratings.sort_values("timestamp", kind="stable").drop_duplicates(["user_id", "movie_id"], keep="last")
    users = pd.concat([base["users"], new["users"]]).drop_duplicates("user_id", keep="last")
    movies = pd.concat([base["movies"], new["movies"]]).drop_duplicates("movie_id", keep="last")
    combined = ValidatedData(layout="combined", ratings=canonical_ratings(ratings), users=canonical_users(users),
                             movies=canonical_movies(movies), quarantine=Quarantine(),
                             counts={"combined": {"read": len(ratings), "valid": len(ratings), "quarantined": 0}})
    url = store_url()
    path, manifest, _ = write_version(combined, source=f"{base['manifest']['version']}+{new['manifest']['version']}",
                                      store=url)
    _copy_folder(path, Path(out_dir))
    write_location(Path(out_dir), url, manifest["version"])
    return {"dataset_version": manifest["version"], "ratings": int(len(ratings)), "store": url,
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
