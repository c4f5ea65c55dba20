"""KFP components and pipelines: compile against golden files, run through kfp.local,
the gate stopping a weak model, monitoring that retrains only on drift, and the
submit/schedule calls against a stand-in KFP API server."""

from __future__ import annotations

import ast
import http.server
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest
from kfp.components import load_component_from_file

import reelops
from reelops import registry
from reelops.pipelines import PIPELINE_NAMES, compile_pipeline, run_local, schedule, submit
from reelops.pipelines.structure import pipeline_structure
from tests.servers import reply_json

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "pipelines" / "golden"
SMALL = "users=300,movies=400"


@pytest.fixture(autouse=True)
def default_image(monkeypatch):
    monkeypatch.delenv("REELOPS_IMAGE", raising=False)


@pytest.mark.parametrize("name", PIPELINE_NAMES)
def test_compiled_pipeline_matches_golden_and_loads(name, tmp_path):
    path = compile_pipeline(name, tmp_path)
    component = load_component_from_file(str(path))
    assert component.name == f"reelops-{name}"
    assert pipeline_structure(path) == pipeline_structure(GOLDEN / f"{name}.yaml"), (
        "the pipeline graph changed: review it and refresh the golden files with `make golden`")
    text = path.read_text()
    assert f"ghcr.io/reelops/reelops:{reelops.__version__}" in text


def test_pipelines_set_what_kfp_users_expect(tmp_path):
    training = pipeline_structure(compile_pipeline("training", tmp_path))
    tasks = training["dags"]["comp-exit-handler-1"]
    assert tasks["ingest"]["retries"] == 3 and not tasks["ingest"]["caching"]
    assert tasks["train"]["caching"] and "dataset_version" in tasks["train"]["parameters"]
    assert tasks["train"]["artifacts"] == ["dataset", "features"]  # the features step feeds training
    assert not tasks["gate"]["caching"]
    assert "blessed" in tasks["condition-2"]["condition"]
    for executor in training["executors"].values():
        assert executor["resources"]["resourceCpuRequest"] and executor["resources"]["resourceMemoryRequest"]
    assert training["secrets"]["exec-register"] == ["reelops-mlflow", "reelops-object-store"]
    assert training["secrets"]["exec-validate"] == ["reelops-object-store"]  # the dataset store
    assert "exec-train" not in training["secrets"]  # artifacts in, artifacts out
    assert "record-outcome" in training["dags"]["root"]


def test_image_constant_dockerfile_and_setup_agree():
    from reelops.components import IMAGE

    assert IMAGE == f"ghcr.io/reelops/reelops:{reelops.__version__}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG REELOPS_VERSION={reelops.__version__}" in dockerfile
    assert "-c constraints.txt" in dockerfile and "AS pipeline" in dockerfile and "AS serve" in dockerfile
    assert "USER 10001" in dockerfile and "ARG BASE_IMAGE" in dockerfile
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", (ROOT / "constraints.txt").read_text(), re.M))
    def normal(name):  # PEP 503: tf_keras, tf-keras and TF.Keras are one project
        return re.sub(r"[-_.]+", "-", name).lower()

    pins = {normal(name): version for name, version in pins.items()}
    setup = (ROOT / "setup.py").read_text()
    for name, version in re.findall(r'"([A-Za-z0-9\-_.]+)(?:\[[a-z]+\])?==([0-9.]+)"', setup):
        assert pins.get(normal(name)) == version, f"setup.py pins {name}=={version}, constraints.txt {pins.get(normal(name))}"


def test_components_are_thin_python_components_on_the_image():
    import reelops.components as components
    from reelops.components import IMAGE

    for name in components.__all__:
        if name == "IMAGE":
            continue
        component = getattr(components, name)
        assert component.component_spec.implementation.container.image == IMAGE, name
        body = ast.parse(inspect.getsource(component.python_func)).body[0].body
        lines = sum(getattr(node, "end_lineno", node.lineno) - node.lineno + 1 for node in body
                    if not (isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)))
        assert lines <= 25, f"{name}: {lines} lines of work in a component; move it to reelops.steps"


@pytest.fixture(scope="module")
def trained_workspace(tmp_path_factory):
    """A workspace where the training pipeline ran on the first 55% of a small world."""

    workspace = tmp_path_factory.mktemp("pipeline") / "workspace"
    previous = os.environ.get("REELOPS_WORKSPACE")
    os.environ["REELOPS_WORKSPACE"] = str(workspace)
    try:
        run_local("training", {"source": f"simulate:scenario=none,seed=11,{SMALL},until=0.55",
                               "parameters_json": json.dumps({"epochs": 20})})
    finally:
        if previous is None:
            os.environ.pop("REELOPS_WORKSPACE", None)
        else:
            os.environ["REELOPS_WORKSPACE"] = previous
    return workspace


def _use(workspace: Path, tmp_path: Path, monkeypatch) -> Path:
    """A private copy of the trained workspace for one test."""
    copy = tmp_path / "ws"
    shutil.copytree(workspace, copy)
    monkeypatch.setenv("REELOPS_WORKSPACE", str(copy))
    monkeypatch.delenv("REELOPS_LOCAL_MLFLOW_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    db = copy / "mlflow" / "mlflow.db"
    # Artifact locations are absolute paths: point the copy's store at its own folder.
    import sqlite3

    with sqlite3.connect(db) as connection:
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                              ("model_versions", "source"), ("logged_models", "artifact_location")):
            try:
                connection.execute(f"UPDATE {table} SET {column} = REPLACE({column}, ?, ?)", (str(workspace), str(copy)))
            except sqlite3.OperationalError:
                pass
    return copy


def test_training_pipeline_registers_production_with_lineage(trained_workspace, tmp_path, monkeypatch):
    workspace = _use(trained_workspace, tmp_path, monkeypatch)
    versions = registry.list_versions()
    assert len(versions) == 1 and versions[0]["aliases"] == ["production"]
    row = versions[0]
    assert row["dataset_version"].startswith("ds-") and len(row["git_commit"]) == 40
    assert row["gate_decision"] == "blessed" and row["kfp_run_id"]
    shown = registry.show(row["version"])
    assert shown["dataset_source"].startswith("simulate:scenario=none,seed=11")
    outcomes = registry.pipeline_outcomes()
    assert [(o["pipeline"], o["state"]) for o in outcomes] == [("reelops-training", "SUCCEEDED")]
    artifact = json.loads(next(workspace.glob("pipelines/runs/reelops-training-*/record-outcome/outcome")).read_text())
    assert artifact["mlflow_run_id"] == outcomes[0]["mlflow_run_id"] and artifact["state"] == "SUCCEEDED"
    shown = subprocess.run([str(Path(sys.executable).parent / "reelops"), "pipeline", "outcomes", "training"],
                           env={**os.environ, "REELOPS_WORKSPACE": str(workspace)}, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0 and "reelops-training" in shown.stdout and "SUCCEEDED" in shown.stdout, shown.stderr
    # The model was fitted on the features step's tables, and its lineage names the store.
    assert row["dataset_store"] == (trained_workspace / "datasets").as_uri()


def test_weak_model_after_a_strong_one_is_stopped_by_the_gate(trained_workspace, tmp_path, monkeypatch):
    workspace = _use(trained_workspace, tmp_path, monkeypatch)
    run_local("training", {"source": f"simulate:scenario=none,seed=11,{SMALL},until=0.55", "algorithm": "baseline"})
    assert len(registry.list_versions()) == 1
    newest = sorted(workspace.glob("pipelines/runs/reelops-training-*"))[-1]
    blessing = json.loads((newest / "gate" / "candidate" / "blessing.json").read_text())
    assert blessing["decision"] == "rejected" and blessing["compared_with"]["version"] == "1"
    assert not (newest / "register").exists()


def _drift_decision(workspace: Path) -> str:
    findings = sorted(workspace.glob("pipelines/runs/reelops-monitoring-*/detect-drift/executor_output.json"))
    return json.loads(findings[-1].read_text())["parameterValues"]["Output"]


def test_monitoring_retrains_on_a_drifted_world(trained_workspace, tmp_path, monkeypatch):
    # At the default strength a 300-user world's shift alarms user data drift in a third of
    # the windows, never three in a row: the policy (one detector, 3 windows in a row) keeps
    # the model there, as it keeps it on ml-100k's unchanged continuation. 1.2 times as strong
    # alarms in two windows of three, and in runs.
    workspace = _use(trained_workspace, tmp_path, monkeypatch)
    run_local("monitoring", {"new_source": f"simulate:scenario=population_shift,seed=11,{SMALL},strength=1.2",
                             "parameters_json": json.dumps({"epochs": 20})})
    assert _drift_decision(workspace) == "retrain"
    assert list(workspace.glob("pipelines/runs/reelops-monitoring-*/combine-datasets/dataset/manifest.json"))
    assert list(workspace.glob("pipelines/runs/reelops-monitoring-*/train/model/model.json"))


def test_monitoring_keeps_the_model_on_an_unchanged_world(trained_workspace, tmp_path, monkeypatch):
    workspace = _use(trained_workspace, tmp_path, monkeypatch)
    run_local("monitoring", {"new_source": f"simulate:scenario=none,seed=11,{SMALL}"})
    assert _drift_decision(workspace) == "keep"
    assert not list(workspace.glob("pipelines/runs/reelops-monitoring-*/combine-datasets"))


class _KfpApi(http.server.BaseHTTPRequestHandler):
    """Answers the part of the KFP v2beta1 REST API that submit and schedule use."""

    calls: list = []
    versions: dict = {}

    def log_message(self, *args):
        pass

    def _reply(self, body: dict, status: int = 200):
        reply_json(self, body, status)

    def do_GET(self):
        self.calls.append(("GET", self.path, b""))
        path, _, query = self.path.partition("?")
        if path.startswith("/apis/v2beta1/healthz"):
            return self._reply({"multi_user": False})
        if path.startswith("/apis/v2beta1/runs/"):
            return self._reply({"run_id": path.rsplit("/", 1)[-1], "display_name": "run", "state": "SUCCEEDED"})
        if path == "/apis/v2beta1/pipelines/p-1/versions":
            # Answers the display_name filter as the server does: the versions uploaded under that name.
            wanted = json.loads(urllib.parse.parse_qs(query)["filter"][0])["predicates"][0]["stringValue"]
            matching = [{"pipeline_id": "p-1", "pipeline_version_id": version_id, "display_name": name}
                        for version_id, name in self.versions.items() if name == wanted]
            return self._reply({"pipeline_versions": matching, "total_size": len(matching)})
        if path.startswith("/apis/v2beta1/pipelines"):
            known = [{"pipeline_id": "p-1", "display_name": "reelops-training"}] if self.versions else []
            return self._reply({"pipelines": known, "total_size": len(known)})
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._reply({"experiments": [], "total_size": 0})
        return self._reply({"error": "not found"}, 404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.calls.append(("POST", self.path, body))
        if self.path.startswith("/apis/v2beta1/pipelines/upload_version"):
            name = urllib.parse.parse_qs(self.path.partition("?")[2])["name"][0]
            version_id = f"v-{len(self.versions) + 1}"
            self.versions[version_id] = name
            return self._reply({"pipeline_id": "p-1", "pipeline_version_id": version_id, "display_name": name})
        if self.path.startswith("/apis/v2beta1/pipelines/upload"):
            return self._reply({"pipeline_id": "p-1", "display_name": "reelops-training"})
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._reply({"experiment_id": "e-1", "display_name": "reelops"})
        if self.path.startswith("/apis/v2beta1/runs"):
            return self._reply({"run_id": "r-1", "display_name": "run"})
        if self.path.startswith("/apis/v2beta1/recurringruns"):
            return self._reply({"recurring_run_id": "rr-1", "display_name": "recurring"})
        return self._reply({"error": "not found"}, 404)


@pytest.fixture
def kfp_api():
    _KfpApi.calls, _KfpApi.versions = [], {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KfpApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _KfpApi.calls
    server.shutdown()
    server.server_close()


def test_submit_and_schedule_send_the_expected_requests(kfp_api):
    """A contract test: a stand-in server answers the KFP v2beta1 calls, and we check what arrives
    (not a cluster: the real API server is not available here)."""
    host, calls = kfp_api
    result = submit("training", host, experiment="nightly", params={"algorithm": "hybrid"})
    assert result == {"pipeline_id": "p-1", "version_id": "v-1", "experiment_id": "e-1", "run_id": "r-1"}
    posts = [(path.split("?")[0], body) for method, path, body in calls if method == "POST"]
    assert [path for path, _ in posts] == ["/apis/v2beta1/pipelines/upload", "/apis/v2beta1/pipelines/upload_version",
                                           "/apis/v2beta1/experiments", "/apis/v2beta1/runs"]
    assert b"reelops-training" in posts[0][1] and b"ghcr.io/reelops/reelops" in posts[0][1]
    run = json.loads(posts[-1][1])
    assert run["experiment_id"] == "e-1" and run["pipeline_version_reference"] == {"pipeline_id": "p-1", "pipeline_version_id": "v-1"}
    assert run["runtime_config"]["parameters"] == {"algorithm": "hybrid"}
    upload_version = [path for method, path, _ in calls if "upload_version" in path][0]
    assert "name=0.1.0-" in upload_version and json.loads(posts[2][1])["display_name"] == "nightly"

    # The same code submitted again (a scheduled submission does so every day): the version
    # of that name is reused, not uploaded a second time (KFP refuses duplicate names).
    calls.clear()
    again = submit("training", host, experiment="nightly", service_account="reelops-pipeline-runner")
    assert again["version_id"] == "v-1" and len(_KfpApi.versions) == 1
    assert not [path for method, path, _ in calls if "upload" in path]
    run = json.loads([body for method, path, body in calls if path.startswith("/apis/v2beta1/runs")][0])
    assert run["service_account"] == "reelops-pipeline-runner"
    # --wait: the run's final state, read back from the API (what CD waits on before deploying).
    waited = submit("training", host, wait=30)
    assert waited["state"] == "SUCCEEDED" and ("GET", "/apis/v2beta1/runs/r-1") in [
        (method, path.split("?")[0]) for method, path, _ in calls]

    calls.clear()
    result = schedule("monitoring", host, "0 0 3 * * *")
    assert result["recurring_run_id"] == "rr-1"
    recurring = json.loads([body for method, path, body in calls if path.startswith("/apis/v2beta1/recurringruns")][0])
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *" and int(recurring["max_concurrency"]) == 1
