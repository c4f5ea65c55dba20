"""Versioning, lineage and rollback with MLflow tracking and the MLflow model registry.

The embedded default is a store in the workspace (``<workspace>/mlflow/mlflow.db`` +
``<workspace>/mlflow/artifacts``) that needs no server; with ``MLFLOW_TRACKING_URI`` set,
the same code talks to a remote MLflow server unchanged.

Registered model ``movie-recommender``; aliases ``production``, ``canary``, ``previous``.
Every alias move is recorded (time, alias, from, to, reason) as a tag of the registered
model, so the history reads back in order. Registration decides the alias under a store
lock: a blessed model becomes ``production`` when no version holds it, ``canary``
otherwise; an unblessed model is registered with no alias. The alias is set last, once
the version and its artifacts are complete, so a failure part-way leaves no alias on an
incomplete version (and the incomplete version is deleted).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from reelops import buildinfo
from reelops.workspace import workspace_dir

MODEL_NAME = "movie-recommender"
EXPERIMENT = "movie-recommender-training"
ALIASES = ("production", "canary", "previous")
_HISTORY_PREFIX = "reelops.alias_history."


class RegistryError(RuntimeError):
    """A registry operation cannot be done; the message says why."""


# ---------------------------------------------------------------------- store


def _store_dir() -> Path:
    path = workspace_dir() / "mlflow"
    path.mkdir(parents=True, exist_ok=True)
    return path


# mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI for subprocesses; this marker tells
# a URI that reelops set for its local store from one the user chose.
_LOCAL_MARKER = "REELOPS_LOCAL_MLFLOW_URI"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if the user set it, else the workspace's sqlite store."""
    chosen = os.environ.get("MLFLOW_TRACKING_URI")
    if chosen and chosen != os.environ.get(_LOCAL_MARKER):
        return chosen
    return f"sqlite:///{_store_dir() / 'mlflow.db'}"


def is_local_store() -> bool:
    return tracking_uri().startswith("sqlite:///")


@contextlib.contextmanager
def store_lock(timeout: float = 300.0):
    """Serialise first-use migrations and alias decisions between local processes.

    A sqlite store migrates on first use and two processes doing that at once collide;
    alias decisions (who becomes production) must not interleave either. The lock file
    lives in the workspace, so it serialises processes sharing that workspace; with a
    remote tracking server, processes in other workspaces are not serialised.
    """
    from filelock import FileLock

    with FileLock(str(_store_dir() / "registry.lock"), timeout=timeout):
        yield


_client_cache: dict = {}


def _point_mlflow_at(uri: str) -> None:
    """The fluent API (runs, log_model, pyfunc loading) follows the same store as the client."""
    import mlflow

    if uri.startswith("sqlite:///"):
        os.environ[_LOCAL_MARKER] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def client():
    """An MlflowClient on the tracking and registry store (initialised once per process)."""
    uri = tracking_uri()
    if uri in _client_cache:
        _point_mlflow_at(uri)
        return _client_cache[uri]
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import logging

    import mlflow

    # Migration and validation chatter goes to the log, not the user's terminal.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow import MlflowClient

    _point_mlflow_at(uri)
    with store_lock():
        store = MlflowClient(tracking_uri=uri, registry_uri=uri)
        if store.get_experiment_by_name(EXPERIMENT) is None:
            artifacts = (_store_dir() / "artifacts").as_uri() if uri.startswith("sqlite:///") else None
            try:
                store.create_experiment(EXPERIMENT, artifact_location=artifacts)
            except Exception:  # another process created it between our check and create
                if store.get_experiment_by_name(EXPERIMENT) is None:
                    raise
        try:
            store.get_registered_model(MODEL_NAME)
        except Exception:
            try:
                store.create_registered_model(MODEL_NAME, description="Movie recommender (reelops)")
            except Exception:
                store.get_registered_model(MODEL_NAME)
    _client_cache[uri] = store
    return store


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- pyfunc


def _signature():
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame({"user_id": np.array([1], dtype=np.int64), "movie_id": np.array([1], dtype=np.int64)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the hint about integer columns: ids are never missing
        return infer_signature(example, np.array([3.5]))


# ---------------------------------------------------------------------- tracking


def lineage_tags(model_meta: dict) -> dict:
    """Lineage of a model: data, code, image and the pipeline run that made it."""
    tags = {
        "reelops.dataset_version": model_meta.get("dataset_version", ""),
        "reelops.dataset_hash": model_meta.get("dataset_hash", ""),
        "reelops.dataset_source": model_meta.get("dataset_source", ""),
        "reelops.algorithm": model_meta.get("algorithm", ""),
        "reelops.git_commit": model_meta.get("git_commit") or buildinfo.git_commit(),
        "reelops.package_version": model_meta.get("package_version") or buildinfo.describe()["package_version"],
        "reelops.image": model_meta.get("image") or buildinfo.image(),
    }
    # Set by the KFP launcher in a pipeline step (or by the user for a run outside KFP).
    for variable, tag in (("KFP_RUN_ID", "reelops.kfp_run_id"), ("KFP_PIPELINE_NAME", "reelops.kfp_pipeline"),
                          ("REELOPS_KFP_RUN_ID", "reelops.kfp_run_id"), ("REELOPS_PIPELINE_NAME", "reelops.kfp_pipeline")):
        if os.environ.get(variable):
            tags[tag] = os.environ[variable]
    return tags


def _flat_metrics(report: dict | None, prefix: str = "") -> dict:
    metrics = {}
    for key, value in (report or {}).items():
        if isinstance(value, bool) or key in ("error_histogram", "k"):
            continue
        if isinstance(value, (int, float)) and value == value:
            metrics[f"{prefix}{key}".replace("@", "_at_")] = float(value)
        elif key == "slices" and isinstance(value, dict):
            for name, data in value.items():
                if isinstance(data.get("rmse"), float) and data["rmse"] == data["rmse"]:
                    safe = name.replace("=", "_").replace("'", "").replace(" ", "_")
                    metrics[f"{prefix}slice_{safe}_rmse"] = data["rmse"]
    return metrics


def log_training_run(model_dir: str | os.PathLike, fail_after_artifacts: bool = False) -> tuple:
    """Log a model directory as an MLflow run: params, metrics, artifacts, lineage, pyfunc.

    Args:
        model_dir: a model directory (``model.json``; ``evaluation.json`` and
            ``blessing.json`` are logged when present).
        fail_after_artifacts: raise after uploading artifacts (for failure-injection tests).

    Returns:
        ``(run_id, model_uri)`` of the logged pyfunc model.
    """
    import mlflow

    store = client()
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    evaluation = _read_json(model_dir / "evaluation.json")
    blessing = _read_json(model_dir / "blessing.json")
    experiment = store.get_experiment_by_name(EXPERIMENT)
    tags = lineage_tags(meta)
    with mlflow.start_run(experiment_id=experiment.experiment_id, tags=tags) as run:
        params = {f"param.{k}": v for k, v in meta.get("parameters", {}).items()}
        params.update({"algorithm": meta["algorithm"], "holdout": (meta.get("holdout") or {}).get("kind", "none"),
                       "n_users": meta.get("n_users"), "n_movies": meta.get("n_movies")})
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        metrics = _flat_metrics(evaluation)
        if blessing:
            metrics.update(_flat_metrics(blessing.get("metrics", {}).get("candidate"), prefix="gate_"))
        if metrics:
            mlflow.log_metrics(metrics)
        if blessing:
            mlflow.set_tag("reelops.gate_decision", blessing.get("decision", ""))
        # Model directory (arrays, feature tables, titles) and the reports, as artifacts.
        mlflow.log_artifacts(str(model_dir), artifact_path="model_dir")
        if fail_after_artifacts:
            raise RegistryError("injected failure after artifact upload")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # type-hint advice for predict()
            info = mlflow.pyfunc.log_model(
                name="pyfunc", python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts={"model_dir": str(model_dir)}, signature=_signature(),
                # Naming the requirement skips MLflow's inference, which imports the model.
                pip_requirements=[f"reelops=={buildinfo.describe()['package_version']}"],
            )
    return run.info.run_id, info.model_uri


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


# ---------------------------------------------------------------------- registry


def _aliases() -> dict:
    """alias -> version (str) for the aliases currently set."""
    model = client().get_registered_model(MODEL_NAME)
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def _record_move(alias: str, from_version, to_version, reason: str) -> None:
    store = client()
    tags = store.get_registered_model(MODEL_NAME).tags or {}
    sequence = 1 + max([int(k[len(_HISTORY_PREFIX):]) for k in tags if k.startswith(_HISTORY_PREFIX)] or [0])
    entry = {"time": _now(), "alias": alias, "from": from_version, "to": to_version, "reason": reason}
    store.set_registered_model_tag(MODEL_NAME, f"{_HISTORY_PREFIX}{sequence:06d}", json.dumps(entry, sort_keys=True))


def _move_alias(alias: str, version, reason: str) -> None:
    """Point ``alias`` at ``version`` (or remove it when None) and record the move."""
    store = client()
    current = _aliases().get(alias)
    if current == (None if version is None else str(version)):
        return
    if version is None:
        store.delete_registered_model_alias(MODEL_NAME, alias)
    else:
        store.set_registered_model_alias(MODEL_NAME, alias, str(version))
    _record_move(alias, current, None if version is None else str(version), reason)


def history() -> list:
    """Every alias move, oldest first."""
    tags = client().get_registered_model(MODEL_NAME).tags or {}
    return [json.loads(tags[key]) for key in sorted(k for k in tags if k.startswith(_HISTORY_PREFIX))]


def register(model_dir: str | os.PathLike, reason: str | None = None, fail_after_artifacts: bool = False) -> dict:
    """Log and register a model directory; the registry decides its alias.

    A model with a blessing (``blessing.json``, decision ``blessed``) becomes
    ``production`` when no version holds it, ``canary`` otherwise; an unblessed model is
    registered without alias.

    Returns:
        ``{"version", "alias", "run_id", "blessed"}``.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "model.json").is_file():
        raise RegistryError(f"{model_dir}: not a model directory (no model.json)")
    blessing = _read_json(model_dir / "blessing.json")
    blessed = bool(blessing and blessing.get("decision") == "blessed")
    store = client()
    meta = json.loads((model_dir / "model.json").read_text())
    run_id, model_uri = log_training_run(model_dir, fail_after_artifacts=fail_after_artifacts)
    tags = {**lineage_tags(meta), "reelops.blessed": str(blessed).lower(), "reelops.complete": "false",
            "reelops.gate_decision": (blessing or {}).get("decision", "none"),
            "reelops.gate_compared_with": str((blessing or {}).get("compared_with", {}).get("version") or "")}
    version = None
    try:
        created = store.create_model_version(MODEL_NAME, model_uri, run_id=run_id, tags=tags)
        version = str(created.version)
        store.set_model_version_tag(MODEL_NAME, version, "reelops.complete", "true")
        alias = None
        with store_lock():
            if blessed:
                alias = "production" if "production" not in _aliases() else "canary"
                _move_alias(alias, version, reason or ("first blessed model" if alias == "production"
                                                      else "blessed candidate next to production"))
    except BaseException:
        if version is not None:  # an incomplete version must not stay behind
            with contextlib.suppress(Exception):
                store.delete_model_version(MODEL_NAME, version)
        raise
    (model_dir / "registration.json").write_text(json.dumps(
        {"version": version, "alias": alias, "run_id": run_id, "model_uri": model_uri, "registered_at": _now()}, indent=2))
    return {"version": version, "alias": alias, "run_id": run_id, "blessed": blessed}


def promote(version, reason: str = "promoted") -> dict:
    """``version`` becomes production; the old production becomes ``previous``."""
    version = str(version)
    _require_complete(version)
    with store_lock():
        aliases = _aliases()
        if aliases.get("production") == version:
            raise RegistryError(f"version {version} is already production")
        if aliases.get("production"):
            _move_alias("previous", aliases["production"], f"replaced by {version}: {reason}")
        _move_alias("production", version, reason)
        if aliases.get("canary") == version:
            _move_alias("canary", None, f"{version} promoted to production")
        return _aliases()


def rollback(reason: str = "rollback") -> dict:
    """Production and previous swap back."""
    with store_lock():
        aliases = _aliases()
        if "previous" not in aliases:
            raise RegistryError("nothing to roll back to: no version holds the alias 'previous'")
        production, previous = aliases.get("production"), aliases["previous"]
        _move_alias("production", previous, reason)
        if production:
            _move_alias("previous", production, f"rolled back from {production}: {reason}")
        return _aliases()


def _require_complete(version: str) -> None:
    try:
        model_version = client().get_model_version(MODEL_NAME, version)
    except Exception as error:
        raise RegistryError(f"version {version} of {MODEL_NAME} does not exist") from error
    if (model_version.tags or {}).get("reelops.complete") != "true":
        raise RegistryError(f"version {version} is incomplete and cannot hold an alias")


def _version_row(model_version, aliases_by_version: dict) -> dict:
    tags = model_version.tags or {}
    return {
        "version": str(model_version.version),
        "aliases": sorted(aliases_by_version.get(str(model_version.version), [])),
        "algorithm": tags.get("reelops.algorithm", ""),
        "dataset_version": tags.get("reelops.dataset_version", ""),
        "dataset_source": tags.get("reelops.dataset_source", ""),
        "git_commit": tags.get("reelops.git_commit", ""),
        "package_version": tags.get("reelops.package_version", ""),
        "image": tags.get("reelops.image", ""),
        "gate_decision": tags.get("reelops.gate_decision", ""),
        "blessed": tags.get("reelops.blessed") == "true",
        "complete": tags.get("reelops.complete") == "true",
        "kfp_run_id": tags.get("reelops.kfp_run_id", ""),
        "run_id": model_version.run_id,
        "created": _dt.datetime.fromtimestamp(model_version.creation_timestamp / 1000, _dt.timezone.utc).isoformat(timespec="seconds"),
    }


def list_versions() -> list:
    """Every version, newest first, with aliases and lineage."""
    store = client()
    by_version: dict = {}
    for alias, version in _aliases().items():
        by_version.setdefault(version, []).append(alias)
    versions = store.search_model_versions(f"name='{MODEL_NAME}'")
    return sorted((_version_row(v, by_version) for v in versions), key=lambda row: -int(row["version"]))


def show(version) -> dict:
    """One version: lineage, metrics of its training run, gate decision."""
    store = client()
    try:
        model_version = store.get_model_version(MODEL_NAME, str(version))
    except Exception as error:
        raise RegistryError(f"version {version} of {MODEL_NAME} does not exist") from error
    by_version: dict = {}
    for alias, held in _aliases().items():
        by_version.setdefault(held, []).append(alias)
    row = _version_row(model_version, by_version)
    run = store.get_run(model_version.run_id) if model_version.run_id else None
    row["metrics"] = dict(run.data.metrics) if run else {}
    row["params"] = dict(run.data.params) if run else {}
    return row


def lineage(dataset_version: str) -> list:
    """Versions trained on a dataset version."""
    return [row for row in list_versions() if row["dataset_version"] == dataset_version]


def resolve_alias(alias: str) -> str:
    """The version an alias points at."""
    if alias not in ALIASES:
        raise RegistryError(f"unknown alias {alias!r}; choose from {', '.join(ALIASES)}")
    version = _aliases().get(alias)
    if version is None:
        raise RegistryError(f"no version of {MODEL_NAME} holds the alias {alias!r}")
    return version


def download_model(version) -> Path:
    """The model directory of a version, downloaded once into the workspace cache."""
    import mlflow

    version = str(version)
    target = workspace_dir() / "cache" / "models" / version
    if (target / "model.json").is_file():
        return target
    store = client()
    model_version = store.get_model_version(MODEL_NAME, version)
    staging = Path(tempfile.mkdtemp(dir=workspace_dir(), prefix=".download-"))
    try:
        mlflow.artifacts.download_artifacts(run_id=model_version.run_id, artifact_path="model_dir", dst_path=str(staging))
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.rename(staging / "model_dir", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_by_alias(alias: str = "production"):
    """``(model, version)`` of the version under an alias."""
    from reelops.models import load_model

    version = resolve_alias(alias)
    return load_model(download_model(version)), version
