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

The gate is enforced here: only a version the gate blessed (``reelops.blessed`` tag, set
from a blessing bound to the model's content hash) may become ``production`` or
``canary``, unless an override is given explicitly with a reason, which the alias
history and the version's tags keep. Registration is idempotent on the model's content.

Store kinds: the workspace's sqlite store (``MLFLOW_TRACKING_URI`` unset), a sqlite store
the user names (``MLFLOW_TRACKING_URI=sqlite:///...``, artifacts beside the database), or
a tracking server (``http(s)://``, artifacts through the server).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import warnings
from pathlib import Path

from reelops import buildinfo
from reelops.cluster import MLFLOW_SECRET, NotConfigured, missing_in_pod, pod_name
from reelops.staging import clean_stale, staging_folder
from reelops.workspace import workspace_dir

MODEL_NAME = "movie-recommender"
EXPERIMENT = "movie-recommender-training"
# One MLflow run per pipeline run, written by the exit handler whatever the run's state.
OUTCOMES_EXPERIMENT = "reelops-pipeline-runs"
# The aliases a version can hold; every other module names them through these constants.
PRODUCTION, CANARY, PREVIOUS = "production", "canary", "previous"
ALIASES = (PRODUCTION, CANARY, PREVIOUS)
_HISTORY_PREFIX = "reelops.alias_history."


class RegistryError(RuntimeError):
    """A registry operation cannot be done; the message says why."""


class StoreNotConfigured(RegistryError, NotConfigured):
    """A pipeline step in a cluster pod has no tracking server configured (no silent fallback)."""


# ---------------------------------------------------------------------- store


def _store_dir() -> Path:
    path = workspace_dir() / "mlflow"
    path.mkdir(parents=True, exist_ok=True)
    return path


# mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI for subprocesses; this marker tells
# the URI of the workspace's own store (which reelops set) from one the user chose.
_LOCAL_MARKER = "REELOPS_LOCAL_MLFLOW_URI"


def _workspace_store_uri() -> str:
    return f"sqlite:///{_store_dir() / 'mlflow.db'}"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if the user set it, else the workspace's sqlite store.

    Raises:
        StoreNotConfigured: in a Kubeflow pod (``KFP_POD_NAME`` is set by the launcher)
            without a tracking URI: a sqlite store there would die with the pod, and the
            gate would compare with baselines instead of production, silently.
    """
    chosen = os.environ.get("MLFLOW_TRACKING_URI")
    if chosen and chosen != os.environ.get(_LOCAL_MARKER):
        return chosen
    if pod_name():
        raise StoreNotConfigured(missing_in_pod("MLFLOW_TRACKING_URI", MLFLOW_SECRET))
    return _workspace_store_uri()


def _artifact_root(uri: str) -> str | None:
    """Where runs of a sqlite store keep artifacts: beside the database (a server decides its own)."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///"):]).expanduser().absolute()
    return (database.parent / "artifacts").as_uri()


# One lock object per lock file and process: FileLock counts re-entries of the same object,
# but a second object on the same file waits for the first (rollback() once deadlocked on
# the lock that client() then took again).
_locks: dict = {}


def _lock_timeout() -> float:
    """Seconds to wait for the registry lock (``REELOPS_REGISTRY_LOCK_TIMEOUT``, default 300)."""
    text = os.environ.get("REELOPS_REGISTRY_LOCK_TIMEOUT", "300")
    try:
        return float(text)
    except ValueError:
        raise RegistryError(f"REELOPS_REGISTRY_LOCK_TIMEOUT={text!r} is not a number of seconds") from None


@contextlib.contextmanager
def store_lock(timeout: float | None = None):
    """Serialise first-use migrations and alias decisions between local processes.

    A sqlite store migrates on first use and two processes doing that at once collide;
    alias decisions (who becomes production) must not interleave either. The lock file
    lives in the workspace, so it serialises processes sharing that workspace; with a
    remote tracking server, processes in other workspaces are not serialised (the alias
    moves re-read what they set, see :func:`_move_alias`). Re-entrant within a process.

    Raises:
        RegistryError: another process held the lock for longer than ``timeout``.
    """
    from filelock import FileLock, Timeout

    timeout = _lock_timeout() if timeout is None else timeout
    path = str(_store_dir() / "registry.lock")
    lock = _locks.get(path)
    if lock is None:
        lock = _locks[path] = FileLock(path)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise RegistryError(f"{path}: another reelops process has held the registry lock for more than "
                            f"{timeout:.0f} s; try again when it has finished") from None
    try:
        yield
    finally:
        lock.release()


_client_cache: dict = {}


def _point_mlflow_at(uri: str) -> None:
    """The fluent API (runs, log_model, pyfunc loading) follows the same store as the client."""
    import mlflow

    if uri == _workspace_store_uri():
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
    # With a tracking server MLflow prints run links to stdout, which --json reserves for one object.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import logging

    # Migration and validation chatter goes to the log, not the user's terminal.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow import MlflowClient

    _point_mlflow_at(uri)
    with store_lock():
        store = MlflowClient(tracking_uri=uri, registry_uri=uri)
        _ensure_experiment(store, EXPERIMENT, uri)
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


def _process_start(pid: int) -> str:
    """The start time of a process in clock ticks since boot ('' when it does not exist)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _process_identity() -> str:
    """``host:pid:start`` of this process: written on what it creates, to tell later whether it is gone."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def _is_gone(identity: str) -> bool:
    """Whether the process named by ``identity`` has ended (only decidable on this host)."""
    host, _, rest = (identity or "").partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return _process_start(int(pid)) != start


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


def lineage_tags(model_meta: dict, run: dict | None = None) -> dict:
    """Lineage of a model: data, code, image, and the pipeline run that made it.

    Args:
        model_meta: the model's ``model.json``.
        run: tags of the run that registers it (``reelops.kfp_pipeline``, ``reelops.kfp_run_id``).
    """
    tags = {
        "reelops.dataset_version": model_meta.get("dataset_version", ""),
        "reelops.dataset_hash": model_meta.get("dataset_hash", ""),
        "reelops.dataset_source": model_meta.get("dataset_source", ""),
        "reelops.dataset_store": model_meta.get("dataset_store", ""),
        "reelops.algorithm": model_meta.get("algorithm", ""),
        "reelops.git_commit": model_meta.get("git_commit") or buildinfo.git_commit(),
        "reelops.package_version": model_meta.get("package_version") or buildinfo.describe()["package_version"],
        "reelops.image": model_meta.get("image") or buildinfo.image(),
        "reelops.image_id": model_meta.get("image_id") or buildinfo.image_id(),
    }
    tags.update(run or {})
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


def log_training_run(model_dir: str | os.PathLike, lineage: dict | None = None) -> tuple:
    """Log a model directory as an MLflow run: params, metrics, artifacts, lineage, pyfunc.

    Args:
        model_dir: a model directory (``model.json``; ``evaluation.json`` and
            ``blessing.json`` are logged when present).
        lineage: tags of the run that registers it (see :func:`lineage_tags`).

    Returns:
        ``(run_id, model_uri, model_id)`` of the logged pyfunc model.
    """
    import mlflow

    store = client()
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    evaluation = _read_json(model_dir / "evaluation.json")
    blessing = _read_json(model_dir / "blessing.json")
    experiment = store.get_experiment_by_name(EXPERIMENT)
    tags = {**lineage_tags(meta, lineage), "reelops.process": _process_identity()}
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # type-hint advice for predict()
            info = mlflow.pyfunc.log_model(
                name="pyfunc", python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts={"model_dir": str(model_dir)}, signature=_signature(),
                # Naming the requirement skips MLflow's inference, which imports the model.
                pip_requirements=[f"reelops=={buildinfo.describe()['package_version']}"],
            )
    return run.info.run_id, info.model_uri, info.model_id


def _ensure_experiment(store, name: str, uri: str) -> str:
    """The id of an experiment of the store at ``uri``, created on first use."""
    found = store.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return store.create_experiment(name, artifact_location=_artifact_root(uri))
    except Exception:  # another process created it between our check and create
        found = store.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def record_pipeline_outcome(entry: dict) -> str:
    """Keep a pipeline run's outcome in the tracking store: tags to search, the entry as JSON.

    Returns:
        The MLflow run id.
    """
    store = client()
    tags = {"reelops.pipeline": entry["pipeline"], "reelops.state": entry["state"], "reelops.job": entry["job"],
            "mlflow.runName": f"{entry['pipeline']} {entry['job']}"[:250]}
    if entry.get("error"):
        tags["reelops.error"] = entry["error"][:5000]
    run = store.create_run(_ensure_experiment(store, OUTCOMES_EXPERIMENT, tracking_uri()), tags=tags)
    store.log_dict(run.info.run_id, entry, "outcome.json")
    # A failed pipeline run is still a finished outcome record: the MLflow run itself succeeded.
    store.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def pipeline_outcomes(pipeline: str | None = None, limit: int = 50) -> list:
    """Outcomes of pipeline runs, newest first: ``time, pipeline, state, job, error, mlflow_run_id``."""
    store = client()
    experiment = store.get_experiment_by_name(OUTCOMES_EXPERIMENT)
    if experiment is None:
        return []
    query = f"tags.`reelops.pipeline` = '{pipeline}'" if pipeline else ""
    runs = store.search_runs([experiment.experiment_id], filter_string=query, max_results=limit,
                             order_by=["attributes.start_time DESC"])
    outcomes = []
    for run in runs:
        tags = run.data.tags
        outcomes.append({"time": _dt.datetime.fromtimestamp(run.info.start_time / 1000, _dt.timezone.utc)
                         .isoformat(timespec="seconds"), "pipeline": tags.get("reelops.pipeline", ""),
                         "state": tags.get("reelops.state", ""), "job": tags.get("reelops.job", ""),
                         "error": tags.get("reelops.error", ""), "mlflow_run_id": run.info.run_id})
    return outcomes


# ---------------------------------------------------------------------- retraining policy state

POLICY_STATE_TAG = "reelops.retraining_policy_state"


class TriggerState:
    """The retraining policy's memory (its last trigger, in data time) as a tag of the registered
    model, so that separate processes and pipeline steps share one cooldown."""

    def load(self) -> dict:
        tags = client().get_registered_model(MODEL_NAME).tags or {}
        return json.loads(tags.get(POLICY_STATE_TAG, "{}"))

    def save(self, state: dict) -> None:
        with store_lock():
            client().set_registered_model_tag(MODEL_NAME, POLICY_STATE_TAG, json.dumps(state, sort_keys=True))


RETRAIN_CLAIM_PREFIX = "reelops-retrain-claims/"
_RETRAIN_TAG_PREFIX = "reelops.retrain."


def claim_retrain(model_version: str, decision: dict, state) -> dict | None:
    """Claim a retraining decision, once for everyone: a compare-and-set on the policy's last trigger.

    The claim is named after the last trigger the decision saw (``last_trigger_data_time``,
    read from ``state`` when the policy decided): every detector that decided on the same
    state asks for the same name, and the store creates a name only once (an MLflow
    experiment: a unique row in the tracking database, atomic on a server and across
    machines, not only under this machine's lock). A decision made before another's trigger
    was recorded therefore finds its name taken, however late it claims. The claimant
    records the new trigger in ``state`` (the cooldown starts) and on the registered model;
    the others get None.

    Args:
        model_version: the version whose monitoring decided.
        decision: the policy's decision (``data_time`` is the new last trigger;
            ``last_trigger_data_time`` what it compared with, read from ``state`` if absent).
        state: the policy's state (:class:`TriggerState` for a registered model).

    Returns:
        ``{"claim": name, "experiment_id": id}``, or None when the claim was taken.
    """
    from mlflow.exceptions import MlflowException

    last = (decision["last_trigger_data_time"] if "last_trigger_data_time" in decision
            else state.load().get("last_trigger_data_time"))
    claim = f"{MODEL_NAME}-after-{last if last is not None else 'none'}"
    try:
        experiment_id = client().create_experiment(RETRAIN_CLAIM_PREFIX + claim,
                                                   tags={"reelops.model_version": str(model_version)})
    except MlflowException as error:
        if error.error_code == "RESOURCE_ALREADY_EXISTS":
            return None
        raise
    state.save({"last_trigger_data_time": int(decision["data_time"]), "recorded_at": _now(), "claim": claim,
                "model_version": str(model_version)})
    record_retrain_run(claim, {"time": _now(), "model_version": str(model_version), "decision": decision,
                               "claim_experiment_id": experiment_id})
    return {"claim": claim, "experiment_id": experiment_id}


def record_retrain_run(claim: str, details: dict) -> None:
    """Add ``details`` (the run's process, its run id once known) to a claimed retraining trigger."""
    with store_lock():
        store = client()
        key = _RETRAIN_TAG_PREFIX + claim
        entry = json.loads((store.get_registered_model(MODEL_NAME).tags or {}).get(key, "{}"))
        entry.update(details)
        store.set_registered_model_tag(MODEL_NAME, key, json.dumps(entry, sort_keys=True, default=str))


def retrain_triggers() -> list:
    """Every claimed retraining trigger, oldest first, with its decision and run."""
    tags = client().get_registered_model(MODEL_NAME).tags or {}
    entries = [{"claim": key[len(_RETRAIN_TAG_PREFIX):], **json.loads(value)}
               for key, value in tags.items() if key.startswith(_RETRAIN_TAG_PREFIX)]
    return sorted(entries, key=lambda entry: entry.get("time", ""))


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


# ---------------------------------------------------------------------- registry


def aliases() -> dict:
    """alias -> version (str) for the aliases currently set."""
    model = client().get_registered_model(MODEL_NAME)
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def _record_move(alias: str, from_version, to_version, reason: str, override: bool = False,
                 analysis: dict | None = None) -> None:
    store = client()
    tags = store.get_registered_model(MODEL_NAME).tags or {}
    sequence = 1 + max([int(k[len(_HISTORY_PREFIX):]) for k in tags if k.startswith(_HISTORY_PREFIX)] or [0])
    entry = {"time": _now(), "alias": alias, "from": from_version, "to": to_version, "reason": reason}
    if override:
        entry["override"] = True
    if analysis:
        entry["analysis"] = analysis
    store.set_registered_model_tag(MODEL_NAME, f"{_HISTORY_PREFIX}{sequence:06d}", json.dumps(entry, sort_keys=True))


def _move_alias(alias: str, version, reason: str, override: bool = False, analysis: dict | None = None) -> None:
    """Point ``alias`` at ``version`` (or remove it when None) and record the move.

    Callers hold :func:`store_lock`. Processes that share no workspace (several machines on
    one tracking server) are not serialised by it, so the alias is read back after the
    change: a concurrent move is reported instead of being recorded as ours.
    """
    store = client()
    current = aliases().get(alias)
    wanted = None if version is None else str(version)
    if current == wanted:
        return
    if version is None:
        store.delete_registered_model_alias(MODEL_NAME, alias)
    else:
        store.set_registered_model_alias(MODEL_NAME, alias, wanted)
    now = aliases().get(alias)
    if now != wanted:
        raise RegistryError(f"alias {alias!r} was moved to {now} by another process while this one set it to "
                            f"{wanted}; check 'reelops registry history' and try again")
    _record_move(alias, current, wanted, reason, override=override, analysis=analysis)


def history() -> list:
    """Every alias move, oldest first."""
    tags = client().get_registered_model(MODEL_NAME).tags or {}
    return [json.loads(tags[key]) for key in sorted(k for k in tags if k.startswith(_HISTORY_PREFIX))]


def _check_model_folder(model_dir: Path) -> str:
    """The content hash of a complete, loadable model folder trained on some ratings.

    Raises:
        RegistryError: the folder is not such a model (says what is missing or wrong).
    """
    from reelops.models import load_model, model_content_hash

    if not (model_dir / "model.json").is_file():
        raise RegistryError(f"{model_dir}: not a model directory (no model.json)")
    try:
        content = model_content_hash(model_dir)
        model = load_model(model_dir)
    except Exception as error:  # any reason the folder cannot be loaded is a reason not to register it
        raise RegistryError(f"{model_dir}: not a complete, loadable model ({type(error).__name__}: "
                            f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no detail'})") from error
    if len(model.user_ids_) == 0 or len(model.movie_ids_) == 0:
        raise RegistryError(f"{model_dir}: the model was trained on no ratings "
                            f"({len(model.user_ids_)} users, {len(model.movie_ids_)} movies)")
    return content


def clean_abandoned() -> list:
    """Finish what killed registrations on this host left behind; say what was cleaned.

    A register process killed while logging leaves its MLflow run ``RUNNING`` forever; one
    killed between creating a version and completing it leaves an incomplete version.
    Each carries the identity of the process that made it; those whose process has ended
    are closed (the run marked ``KILLED``) or deleted (the incomplete version).
    """
    store = client()
    cleaned = []
    experiment = store.get_experiment_by_name(EXPERIMENT)
    for run in store.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"):
        identity = run.data.tags.get("reelops.process", "")
        if _is_gone(identity):
            store.set_terminated(run.info.run_id, status="KILLED")
            cleaned.append(f"run {run.info.run_id} marked KILLED (its process {identity.split(':')[1]} has ended)")
    for model_version in store.search_model_versions(f"name='{MODEL_NAME}'"):
        tags = model_version.tags or {}
        if tags.get("reelops.complete") != "true" and _is_gone(tags.get("reelops.process", "")):
            store.delete_model_version(MODEL_NAME, str(model_version.version))
            cleaned.append(f"incomplete version {model_version.version} deleted (its process has ended)")
    return cleaned


def _version_with_content(content: str):
    """The registered version of a model content hash, or None."""
    for model_version in client().search_model_versions(f"name='{MODEL_NAME}'"):
        tags = model_version.tags or {}
        if tags.get("reelops.model_hash") == content and tags.get("reelops.complete") == "true":
            return model_version
    return None


def _decide_alias(version: str, reason: str | None) -> str:
    """Under the store lock: a blessed version becomes production, or canary next to one."""
    with store_lock():
        alias = PRODUCTION if PRODUCTION not in aliases() else CANARY
        _move_alias(alias, version, reason or ("first blessed model" if alias == PRODUCTION
                                              else "blessed candidate next to production"))
    return alias


def register(model_dir: str | os.PathLike, reason: str | None = None, lineage: dict | None = None) -> dict:
    """Log and register a model directory; the registry decides its alias.

    A model the gate blessed (a ``blessing.json`` whose ``model_hash`` matches the
    folder's content) becomes ``production`` when no version holds it, ``canary``
    otherwise; any other model is registered without alias. A folder whose content is
    already registered gives back that version (``created: False``) instead of a new one.

    Args:
        model_dir: the model directory (``blessing.json`` inside when it was gated).
        reason: why, for the alias history.
        lineage: tags of the run that registers it, e.g. ``{"reelops.kfp_pipeline": ...,
            "reelops.kfp_run_id": ...}`` from a pipeline step.

    Returns:
        ``{"version", "alias", "run_id", "blessed", "gate", "created", "cleaned"}``.

    Raises:
        RegistryError: the folder is not a complete, loadable model.
    """
    from reelops.blessing import BLESSED, blessing_status, write_model_report

    model_dir = Path(model_dir)
    content = _check_model_folder(model_dir)
    decision, explanation = blessing_status(model_dir)
    blessed = decision == BLESSED
    blessing = _read_json(model_dir / "blessing.json") if decision != "none" else None
    store = client()
    cleaned = clean_abandoned()
    existing = _version_with_content(content)
    if existing is not None:
        return _already_registered(existing, decision, explanation, reason, cleaned)
    meta = json.loads((model_dir / "model.json").read_text())
    run_id, model_uri, model_id = log_training_run(model_dir, lineage)
    tags = {**lineage_tags(meta, lineage), "reelops.blessed": str(blessed).lower(), "reelops.complete": "false",
            "reelops.model_hash": content, "reelops.process": _process_identity(),
            "reelops.gate_decision": decision,
            "reelops.gate_compared_with": str((blessing or {}).get("compared_with", {}).get("version") or "")}
    version = None
    try:
        with store_lock():
            existing = _version_with_content(content)
            if existing is not None:  # another process registered the same content meanwhile
                store.delete_run(run_id)
                return _already_registered(existing, decision, explanation, reason, cleaned)
            # A tracking server needs the logged model's id next to a models:/ source.
            created = store.create_model_version(MODEL_NAME, model_uri, run_id=run_id, tags=tags, model_id=model_id)
            version = str(created.version)
            store.set_model_version_tag(MODEL_NAME, version, "reelops.complete", "true")
            alias = _decide_alias(version, reason) if blessed else None
    except BaseException:
        if version is not None:  # an incomplete version must not stay behind
            with contextlib.suppress(Exception):
                store.delete_model_version(MODEL_NAME, version)
        raise
    (model_dir / "registration.json").write_text(json.dumps(
        {"version": version, "alias": alias, "run_id": run_id, "model_uri": model_uri, "registered_at": _now()}, indent=2))
    # The report names the version now; the copy logged with the run is replaced too.
    report = write_model_report(model_dir)
    if report is not None:
        store.log_artifact(run_id, str(report), artifact_path="model_dir")
    return {"version": version, "alias": alias, "run_id": run_id, "blessed": blessed, "gate": explanation,
            "created": True, "cleaned": cleaned}


def _already_registered(model_version, decision: str, explanation: str, reason: str | None, cleaned: list) -> dict:
    """The answer for content registered before; a newer gate decision on it is recorded."""
    from reelops.blessing import BLESSED

    store = client()
    version = str(model_version.version)
    tags = model_version.tags or {}
    was_blessed = tags.get("reelops.blessed") == "true"
    alias = None
    if decision != "none" and decision != tags.get("reelops.gate_decision"):
        store.set_model_version_tag(MODEL_NAME, version, "reelops.gate_decision", decision)
        store.set_model_version_tag(MODEL_NAME, version, "reelops.blessed", str(decision == BLESSED).lower())
        if decision == BLESSED and not was_blessed and version not in aliases().values():
            alias = _decide_alias(version, reason or "blessed after registration")
    held = sorted(name for name, holder in aliases().items() if holder == version)
    return {"version": version, "alias": alias or (held[0] if held else None), "run_id": model_version.run_id,
            "blessed": decision == BLESSED or (decision == "none" and was_blessed), "gate": explanation,
            "created": False, "cleaned": cleaned}


def promote(version, reason: str | None = None, force: bool = False, analysis: dict | None = None) -> dict:
    """``version`` becomes production; the old production becomes ``previous``.

    Args:
        version: a complete registered version.
        reason: why; recorded in the alias history ("promoted" when none is given).
        force: promote a version the gate did not bless (an emergency override); needs a
            reason, and the override is recorded in the history and on the version.
        analysis: the canary analysis that decided it (recorded in the history entry).

    Raises:
        RegistryError: the version does not exist, is incomplete, already production, or
            is not blessed and ``force`` is not given.
    """
    version = str(version)
    if force and not (reason or "").strip():
        raise RegistryError("--force needs --reason TEXT: an override is recorded in the alias history")
    reason = reason or "promoted"
    tags = _require_complete(version)
    blessed = tags.get("reelops.blessed") == "true"
    if not blessed and not force:
        raise RegistryError(f"version {version} is not blessed by the gate (decision: "
                            f"{tags.get('reelops.gate_decision') or 'none'}); an override needs --force --reason TEXT")
    override = not blessed
    with store_lock():
        held = aliases()
        if held.get(PRODUCTION) == version:
            raise RegistryError(f"version {version} is already production")
        if override:
            client().set_model_version_tag(MODEL_NAME, version, "reelops.override.production", reason)
        if held.get(PRODUCTION):
            _move_alias(PREVIOUS, held[PRODUCTION], f"replaced by {version}: {reason}")
        _move_alias(PRODUCTION, version, reason, override=override, analysis=analysis)
        if held.get(CANARY) == version:
            _move_alias(CANARY, None, f"{version} promoted to production")
        return aliases()


def set_canary(version, reason: str, override: bool = False) -> dict:
    """``version`` holds the alias ``canary`` (a rollout put it beside production).

    Args:
        version: a complete registered version.
        reason: recorded in the alias history.
        override: the version is not blessed and is deployed by an override (recorded).
    """
    version = str(version)
    _require_complete(version)
    with store_lock():
        if override:
            client().set_model_version_tag(MODEL_NAME, version, "reelops.override.canary", reason)
        _move_alias(CANARY, version, reason, override=override)
        return aliases()


def clear_canary(reason: str, analysis: dict | None = None) -> dict:
    """No version holds ``canary`` any more (its rollout was rolled back; ``analysis``: the canary
    analysis that decided it, recorded in the history entry)."""
    with store_lock():
        _move_alias(CANARY, None, reason, analysis=analysis)
        return aliases()


def record_canary_analysis(version, analysis: dict) -> None:
    """Keep a canary analysis' decision and evidence on the version (tag ``reelops.canary_analysis``)."""
    client().set_model_version_tag(MODEL_NAME, str(version), "reelops.canary_analysis",
                                   json.dumps(analysis, sort_keys=True, separators=(",", ":")))


def rollback(reason: str = "rollback") -> dict:
    """Production and previous swap back."""
    with store_lock():
        held = aliases()
        if PREVIOUS not in held:
            raise RegistryError("nothing to roll back to: no version holds the alias 'previous'")
        production, previous = held.get(PRODUCTION), held[PREVIOUS]
        _move_alias(PRODUCTION, previous, reason)
        if production:
            _move_alias(PREVIOUS, production, f"rolled back from {production}: {reason}")
        return aliases()


def serving_check(version: str, alias: str | None = None) -> tuple:
    """May this version serve? ``(allowed, explanation)``.

    A version serves when the gate blessed it, or when it holds ``alias`` through a
    recorded override (``promote --force``).
    """
    tags = _require_complete(str(version))
    if tags.get("reelops.blessed") == "true":
        return True, f"version {version} is blessed by the gate"
    forced = tags.get(f"reelops.override.{alias}") if alias else None
    if forced:
        return True, f"version {version} is not blessed but holds {alias!r} by an override ({forced})"
    return False, (f"version {version} is not blessed by the gate (decision: {tags.get('reelops.gate_decision') or 'none'})")


def _model_version(version):
    """A registered version, or a RegistryError saying it does not exist."""
    try:
        return client().get_model_version(MODEL_NAME, str(version))
    except Exception as error:
        raise RegistryError(f"version {version} of {MODEL_NAME} does not exist") from error


def _require_complete(version: str) -> dict:
    """The tags of a complete version."""
    tags = _model_version(version).tags or {}
    if tags.get("reelops.complete") != "true":
        raise RegistryError(f"version {version} is incomplete and cannot hold an alias")
    return tags


def _version_row(model_version, aliases_by_version: dict) -> dict:
    tags = model_version.tags or {}
    return {
        "version": str(model_version.version),
        "aliases": sorted(aliases_by_version.get(str(model_version.version), [])),
        "algorithm": tags.get("reelops.algorithm", ""),
        "dataset_version": tags.get("reelops.dataset_version", ""),
        "dataset_source": tags.get("reelops.dataset_source", ""),
        "dataset_store": tags.get("reelops.dataset_store", ""),
        "git_commit": tags.get("reelops.git_commit", ""),
        "package_version": tags.get("reelops.package_version", ""),
        "image": tags.get("reelops.image", ""),
        "image_id": tags.get("reelops.image_id", ""),
        "canary_analysis": json.loads(tags["reelops.canary_analysis"]) if tags.get("reelops.canary_analysis") else None,
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
    for alias, version in aliases().items():
        by_version.setdefault(version, []).append(alias)
    versions = store.search_model_versions(f"name='{MODEL_NAME}'")
    return sorted((_version_row(v, by_version) for v in versions), key=lambda row: -int(row["version"]))


def show(version) -> dict:
    """One version: lineage, metrics of its training run, gate decision."""
    store = client()
    model_version = _model_version(version)
    by_version: dict = {}
    for alias, held in aliases().items():
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
    version = aliases().get(alias)
    if version is None:
        raise RegistryError(f"no version of {MODEL_NAME} holds the alias {alias!r}")
    return version


def artifact_uri(version) -> str:
    """Where the tracking store keeps a version's run artifacts (its ``model_dir`` is below)."""
    return client().get_run(_model_version(version).run_id).info.artifact_uri


def download_model(version) -> Path:
    """The model directory of a version, downloaded once into the workspace cache.

    The cache is keyed by the version's run id, not its number: two stores (the
    workspace's and a server) both have a version 1.
    """
    import mlflow

    model_version = _model_version(version)
    cache = workspace_dir() / "cache" / "models"
    target = cache / model_version.run_id
    if (target / "model.json").is_file():
        return target
    clean_stale(cache, "download-")
    with staging_folder(cache, "download-") as staging:
        mlflow.artifacts.download_artifacts(run_id=model_version.run_id, artifact_path="model_dir", dst_path=str(staging))
        with contextlib.suppress(OSError):  # another process may have put the same content in place
            os.rename(staging / "model_dir", target)
    return target


def load_by_alias(alias: str = PRODUCTION):
    """``(model, version)`` of the version under an alias."""
    from reelops.models import load_model

    version = resolve_alias(alias)
    return load_model(download_model(version)), version
