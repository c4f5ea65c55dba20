"""Cluster-correct pipelines: every task as in its own pod, reaching only real services.

`reelops pipeline run NAME --isolated` gives each task its own folders and only the
variables of the secrets the compiled pipeline mounts on it. The training, batch-scoring
and monitoring pipelines (retrain branch included) run that way against a real MLflow
tracking server with ``s3://`` on moto's S3 server (datasets and MLflow's artifact root), as
a user runs them on a cluster: one CLI process per pipeline; with a shared ``file://``
dataset store (the README's example) the training pipeline runs the same way: what the store
changes is where validate writes a version and where the lineage points, which training
shows; monitoring and batch scoring on a file store run in tests/test_pipelines.py, and
running them isolated here too cost ``make test`` more than its time allows. The parent's
workspace must stay untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import create_bucket, mlflow_server, moto_s3, s3_client

REELOPS = str(Path(sys.executable).parent / "reelops")
SMALL = "users=300,movies=400"
TRAINING_SOURCE = f"simulate:scenario=none,seed=11,{SMALL},until=0.55"
# Another draw of the world with a population shift: the monitor alarms, and the combined
# dataset differs from both parts (the base must really be read from the store).
NEW_SOURCE = f"simulate:scenario=population_shift,seed=12,{SMALL}"
EPOCHS = json.dumps({"epochs": 20})


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as env:
        yield env


def _pipeline(name: str, env: dict, root: Path, *params: str) -> dict:
    words = [REELOPS, "pipeline", "run", name, "--isolated", "--json", "--pipeline-root", str(root / name)]
    for param in params:
        words += ["--param", param]
    run = subprocess.run(words, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{name}: {run.stderr[-3000:]}"
    result = json.loads(run.stdout)
    assert result["state"] == "SUCCEEDED"
    return result


def _executor_output(result: dict, task: str) -> dict:
    found = sorted(Path(result["pipeline_root"]).glob(f"reelops-*/{task}/executor_output.json"))
    assert found, f"no {task} task in {result['pipeline_root']}"
    return json.loads(found[-1].read_text())


def _tree(folder: Path) -> list:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("store_kind", ["file", "s3"])
def test_pipelines_run_with_every_task_isolated(store_kind, s3, tmp_path):
    from mlflow import MlflowClient

    artifact_root = None
    if store_kind == "s3":
        create_bucket(s3, f"datasets-{store_kind}")
        create_bucket(s3, f"mlflow-{store_kind}")
        store, artifact_root = f"s3://datasets-{store_kind}/versions", f"s3://mlflow-{store_kind}/artifacts"
    else:
        store = (tmp_path / "shared-store").as_uri()
    parent = tmp_path / "parent-workspace"
    parent.mkdir()
    (parent / "kept.txt").write_text("the user's own workspace")
    with mlflow_server(tmp_path / "mlflow", artifacts=artifact_root, env=s3) as server:
        env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REELOPS_LOCAL_MLFLOW_URI")},
               **s3, "MLFLOW_TRACKING_URI": server["url"], "REELOPS_STORE": store, "REELOPS_WORKSPACE": str(parent)}
        root = tmp_path / "runs"
        training = _pipeline("training", env, root, f"source={TRAINING_SOURCE}", f"parameters_json={EPOCHS}")
        scoring = _pipeline("batch-scoring", env, root) if store_kind == "s3" else None
        if store_kind == "s3":
            monitoring = _pipeline("monitoring", env, root, f"new_source={NEW_SOURCE}", f"parameters_json={EPOCHS}")

        client = MlflowClient(tracking_uri=server["url"], registry_uri=server["url"])
        versions = {v.version: v for v in client.search_model_versions("name='movie-recommender'")}
        outcomes = client.search_runs([client.get_experiment_by_name("reelops-pipeline-runs").experiment_id])

    assert _tree(parent) == ["kept.txt"]  # the parent's workspace is left untouched

    # Training: the version validate wrote is in the store and is the model's recorded lineage.
    trained_on = _executor_output(training, "validate")["parameterValues"]["dataset_version"]
    first = versions["1"]
    assert first.tags["reelops.dataset_version"] == trained_on and first.tags["reelops.dataset_store"] == store
    if store_kind == "file":
        assert set(versions) == {"1"}
        assert {path.parent.name for path in (tmp_path / "shared-store").glob("*/manifest.json")} == {trained_on}
        assert [run.data.tags["reelops.state"] for run in outcomes] == ["SUCCEEDED"]
        for task in Path(training["tasks_root"]).iterdir():
            assert not list(task.glob("workspace/mlflow/*.db")), task
        return
    assert set(versions) == {"1", "2"}
    # Batch scoring read the production model from the tracking server.
    import pandas as pd

    table = pd.read_parquet(next(Path(scoring["pipeline_root"]).glob("reelops-*/batch-predict/predictions")))
    assert set(table["model_version"]) == {"1"} and table["user_id"].nunique() > 100

    # Monitoring: drift, then the retrain found its base dataset through the registry's lineage.
    assert _executor_output(monitoring, "detect-drift")["parameterValues"]["Output"] == "retrain"
    combined = _executor_output(monitoring, "combine-datasets")
    combined_version = combined["parameterValues"]["dataset_version"]
    new_version = _executor_output(monitoring, "validate")["parameterValues"]["dataset_version"]
    assert combined["artifacts"]["dataset"]["artifacts"][0]["metadata"]["base_dataset_version"] == trained_on
    assert len({trained_on, new_version, combined_version}) == 3
    assert versions["2"].tags["reelops.dataset_version"] == combined_version
    assert versions["2"].tags["reelops.dataset_store"] == store
    assert sorted(run.data.tags["reelops.state"] for run in outcomes) == ["SUCCEEDED"] * 3

    # Every dataset version is in the store the tasks were given, whole (manifest written last).
    bucket = s3_client(s3)
    keys = [item["Key"] for item in bucket.list_objects_v2(Bucket="datasets-s3")["Contents"]]
    manifests = {key.split("/")[1] for key in keys if key.endswith("/manifest.json") and key.count("/") == 2}
    artifacts = bucket.list_objects_v2(Bucket="mlflow-s3").get("KeyCount", 0)
    assert artifacts > 0 and not (tmp_path / "mlflow" / "artifacts").exists()
    assert manifests == {trained_on, new_version, combined_version}

    # Each task ran in its own folders; none wrote a registry or store of its own.
    tasks = sorted(path.name for path in Path(monitoring["tasks_root"]).iterdir())
    assert [name.split("-", 1)[1] for name in tasks][:4] == ["ingest", "validate", "detect_drift", "combine_datasets"]
    for result in (training, scoring, monitoring):
        for task in Path(result["tasks_root"]).iterdir():
            assert not list(task.glob("workspace/mlflow/*.db")), task
            assert not (task / "workspace" / "datasets").exists() or not any((task / "workspace" / "datasets").iterdir())


def test_a_task_gets_only_the_services_of_the_secrets_it_mounts(tmp_path):
    from reelops.pipelines.isolation import task_environment

    parent = {"PATH": "/usr/bin", "HOME": "/root", "MLFLOW_TRACKING_URI": "http://mlflow", "REELOPS_STORE": "s3://b/p",
              "AWS_ACCESS_KEY_ID": "key", "REELOPS_WORKSPACE": "/shared", "REELOPS_LOCAL_MLFLOW_URI": "sqlite:///x"}
    train = task_environment(parent, set(), tmp_path / "train", "pod-train")
    assert train["PATH"] == "/usr/bin" and train["KFP_POD_NAME"] == "pod-train"
    assert not {"MLFLOW_TRACKING_URI", "REELOPS_STORE", "AWS_ACCESS_KEY_ID", "REELOPS_LOCAL_MLFLOW_URI"} & set(train)
    assert train["HOME"] == str(tmp_path / "train" / "home") and train["REELOPS_WORKSPACE"].startswith(str(tmp_path))
    validate = task_environment(parent, {"reelops-object-store"}, tmp_path / "validate", "pod-validate")
    assert validate["REELOPS_STORE"] == "s3://b/p" and "MLFLOW_TRACKING_URI" not in validate
    gate = task_environment(parent, {"reelops-mlflow", "reelops-object-store"}, tmp_path / "gate", "pod-gate")
    assert gate["MLFLOW_TRACKING_URI"] == "http://mlflow" and gate["AWS_ACCESS_KEY_ID"] == "key"


@pytest.mark.parametrize("missing, named", [("MLFLOW_TRACKING_URI", "tracking server"), ("REELOPS_STORE", "REELOPS_STORE")])
def test_an_isolated_run_without_its_services_is_refused_in_one_line(missing, named, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
           "REELOPS_STORE": (tmp_path / "store").as_uri(), "REELOPS_WORKSPACE": str(tmp_path / "workspace")}
    env.pop(missing)
    run = subprocess.run([REELOPS, "pipeline", "run", "training", "--isolated"], env=env, capture_output=True,
                         text=True, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1 and named in lines[0], run.stderr
    assert not (tmp_path / "workspace").exists()
