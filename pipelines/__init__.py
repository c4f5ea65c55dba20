"""Pipelines: compile to KFP IR YAML, run locally through ``kfp.local``, submit and schedule
on Kubeflow through ``kfp.Client``."""

from __future__ import annotations

import os
from pathlib import Path

PIPELINE_NAMES = ("training", "batch-scoring", "monitoring")
# Every component, as `reelops pipeline compile --components` writes them (reelops.components' names).
COMPONENT_NAMES = ("ingest", "validate", "combine_datasets", "engineer_features", "train", "evaluate", "gate",
                   "register", "batch_predict", "detect_drift", "record_outcome")


def pipeline_function(name: str):
    """The pipeline function of a name in ``PIPELINE_NAMES``."""
    from reelops.pipelines import definitions

    functions = dict(zip(PIPELINE_NAMES, (definitions.training_pipeline, definitions.batch_scoring_pipeline,
                                          definitions.monitoring_pipeline)))
    if name not in functions:
        raise ValueError(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINE_NAMES)}")
    return functions[name]


def compile_pipeline(name: str, out_dir: str | os.PathLike) -> Path:
    """Compile one pipeline to ``OUT_DIR/<name>.yaml`` (KFP IR)."""
    from kfp import compiler

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.yaml"
    compiler.Compiler().compile(pipeline_function(name), str(path))
    return path


def compile_components(out_dir: str | os.PathLike) -> list:
    """Write every component as a standalone YAML, ``OUT_DIR/<component>.yaml``.

    Other teams load one with ``kfp.components.load_component_from_file`` and use it in
    their own pipelines. A standalone component carries no Kubernetes settings: the secrets
    its step needs (see README, Running on Kubeflow) are mounted by the pipeline that uses it.
    """
    from kfp import compiler

    from reelops import components

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in COMPONENT_NAMES:
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(getattr(components, name), str(path))
        paths.append(path)
    return paths


def parse_params(pairs) -> dict:
    """Pipeline parameters from ``key=value`` pairs (see :func:`reelops.params.parse_key_values`)."""
    from reelops.params import parse_key_values

    return parse_key_values(pairs)


def run_local(name: str, params: dict | None = None, isolated: bool = False,
              pipeline_root: str | os.PathLike | None = None) -> dict:
    """Run a pipeline with ``kfp.local.SubprocessRunner`` in the installed environment.

    Args:
        name: one of ``PIPELINE_NAMES``.
        params: pipeline parameters.
        isolated: run every task as if in its own pod (see :mod:`reelops.pipelines.isolation`):
            its own folders, only the services of its secrets. Needs ``MLFLOW_TRACKING_URI``
            (a tracking server) and ``REELOPS_STORE``; the workspace is not touched.
        pipeline_root: where artifacts go; default ``<workspace>/pipelines/runs``, or a new
            temporary folder when isolated.

    Returns:
        ``{"pipeline", "pipeline_root", "run_dir", "outputs"}`` (and ``"tasks_root"`` when
        isolated); ``run_dir`` holds one folder of outputs per task.
    """
    import contextlib
    import tempfile

    from kfp import local

    result = {"pipeline": name}
    context = contextlib.nullcontext()
    if isolated:
        from reelops.pipelines.isolation import check_services, isolated_tasks
        from reelops.pipelines.structure import function_secrets

        check_services()
        base = Path(pipeline_root) if pipeline_root else Path(tempfile.mkdtemp(prefix=f"reelops-{name}-"))
        root, tasks = base / "artifacts", base / "tasks"
        with tempfile.TemporaryDirectory() as scratch:
            secrets = function_secrets(compile_pipeline(name, scratch))
        context = isolated_tasks(tasks, secrets, name)
        result["tasks_root"] = str(tasks)
    else:
        from reelops.workspace import workspace_dir

        workspace = workspace_dir()
        # Each task is a new process: it must find the same workspace (and MLflow store).
        os.environ["REELOPS_WORKSPACE"] = str(workspace)
        root = Path(pipeline_root) if pipeline_root else workspace / "pipelines" / "runs"
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    earlier = set(root.iterdir())
    with context:
        task = pipeline_function(name)(**(params or {}))
    outputs = {}
    for key, value in (getattr(task, "outputs", None) or {}).items():
        outputs[key] = getattr(value, "path", value)
    # kfp.local puts each run in a new folder of the root (one task folder per task in it),
    # named after the pipeline: another pipeline's run started meanwhile in the same workspace
    # (a retrain a drift detector triggered) is not this run's.
    new = sorted(path for path in set(root.iterdir()) - earlier
                 if path.is_dir() and path.name.startswith(f"reelops-{name}-"))
    return {**result, "pipeline_root": str(root), "run_dir": str(new[-1]) if new else None, "outputs": outputs}


def _client(host: str):
    """A KFP client; ``REELOPS_KFP_TOKEN`` is sent as the bearer token when set.

    Inside a cluster kfp.Client finds the pod's projected service-account token itself; from
    outside (a CD runner) the token has to be given.
    """
    from kfp import Client

    return Client(host=host, existing_token=os.environ.get("REELOPS_KFP_TOKEN") or None)


def version_name() -> str:
    """A pipeline version name that says what changed: package version and code commit."""
    from reelops import buildinfo

    info = buildinfo.describe()
    return f"{info['package_version']}-{info['git_commit'][:12]}"


def upload(name: str, host: str, client=None) -> tuple:
    """Upload the pipeline, or a new version of it: ``(pipeline_id, version_id)``.

    A version is named after the package version, the commit and the compiled package's
    content; when a version of that name exists it is reused (a scheduled submission runs
    the same code every day, and KFP refuses a second version with the same name).
    """
    import hashlib
    import json
    import tempfile

    client = client or _client(host)
    display_name = pipeline_function(name).name
    with tempfile.TemporaryDirectory() as scratch:
        package = compile_pipeline(name, scratch)
        version = f"{version_name()}-{hashlib.sha256(package.read_bytes()).hexdigest()[:8]}"
        pipeline_id = client.get_pipeline_id(display_name)
        if pipeline_id is None:
            pipeline = client.upload_pipeline(str(package), pipeline_name=display_name,
                                              description=pipeline_function(name).description)
            pipeline_id = pipeline.pipeline_id
        else:
            same_name = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name",
                                                    "stringValue": version}]})
            existing = client.list_pipeline_versions(pipeline_id, filter=same_name).pipeline_versions or []
            if existing:
                return pipeline_id, existing[0].pipeline_version_id
        uploaded = client.upload_pipeline_version(str(package), pipeline_version_name=version, pipeline_id=pipeline_id)
    return pipeline_id, uploaded.pipeline_version_id


def submit(name: str, host: str, experiment: str = "reelops", params: dict | None = None,
           service_account: str | None = None, wait: float | None = None) -> dict:
    """Upload the pipeline (or a new version) and start a run on a Kubeflow Pipelines host.

    Args:
        name: the pipeline (one of :data:`PIPELINE_NAMES`).
        host: the KFP API, e.g. ``http://ml-pipeline.kubeflow.svc.cluster.local:8888``.
        experiment: the experiment the run goes to (created when missing).
        params: pipeline parameters.
        service_account: the Kubernetes service account the run's pods use (KFP's default when None).
        wait: seconds to wait for the run to finish (not at all when None); its final state is
            returned as ``state``.
    """
    client = _client(host)
    pipeline_id, version_id = upload(name, host, client)
    experiment_id = client.create_experiment(experiment).experiment_id
    run = client.run_pipeline(experiment_id=experiment_id, job_name=f"{name}-{version_name()}", params=params or {},
                              pipeline_id=pipeline_id, version_id=version_id, enable_caching=True,
                              service_account=service_account)
    result = {"pipeline_id": pipeline_id, "version_id": version_id, "experiment_id": experiment_id, "run_id": run.run_id}
    if wait:
        finished = client.wait_for_run_completion(run.run_id, timeout=wait, sleep_duration=min(15, max(1, int(wait / 20))))
        result["state"] = str(finished.state)
    return result


def schedule(name: str, host: str, cron: str, experiment: str = "reelops", params: dict | None = None,
             max_concurrency: int = 1, service_account: str | None = None) -> dict:
    """A recurring run of the pipeline's current version (cron with seconds, as KFP expects)."""
    client = _client(host)
    pipeline_id, version_id = upload(name, host, client)
    experiment_id = client.create_experiment(experiment).experiment_id
    job = client.create_recurring_run(experiment_id=experiment_id, job_name=f"{name}-recurring", cron_expression=cron,
                                      max_concurrency=max_concurrency, params=params or {}, pipeline_id=pipeline_id,
                                      version_id=version_id, enable_caching=True,
                                      service_account=service_account)
    return {"pipeline_id": pipeline_id, "version_id": version_id, "experiment_id": experiment_id,
            "recurring_run_id": job.recurring_run_id}
