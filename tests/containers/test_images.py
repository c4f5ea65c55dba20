"""The built images, run (`make test-containers`, after `make image`).

- `reelops --version` in each image names the commit it was built from;
- the training pipeline runs with kfp.local's DockerRunner on the `pipeline` image, every
  task in its own container, reaching only a real MLflow tracking server and an S3 endpoint
  (moto) on 127.0.0.1 with the variables a pod gets from its secrets, and registers a version
  whose lineage names the image and its local id;
- the `serve` image serves that registered version (fetched from the tracking server and the
  bucket) and answers V1, V2 and gRPC, and runs the drift detector on it as the sidecar does.

Skipped, with the reason, where no engine can run containers (no root for podman, no Docker
engine); never replaced by something that does not run the images.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from containers.engine import IMAGES_FILE, WORK, engine_environment, pick_engine
from tests.servers import create_bucket, free_port, mlflow_server, moto_s3, stop

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "simulate:scenario=none,seed=11,users=300,movies=400,until=0.55"


@pytest.fixture(scope="module")
def engine():
    name = pick_engine()
    if name is None:
        pytest.skip("no container engine here: `docker info` does not answer and podman needs root "
                    "(apt-get install podman runc debootstrap fuse-overlayfs uidmap)")
    if not IMAGES_FILE.is_file():
        pytest.fail(f"{IMAGES_FILE} is missing: run `make image` first")
    images = json.loads(IMAGES_FILE.read_text())
    missing = {"pipeline", "serve"} - set(images)
    assert not missing, f"images not built: {sorted(missing)} (make image)"
    return {"name": name, "env": engine_environment(name), "images": images}


@pytest.fixture(scope="module")
def docker_api(engine):
    """The Docker-compatible API kfp's DockerRunner talks to (podman serves one on a socket)."""
    if engine["name"] == "docker":
        yield dict(engine["env"])
        return
    socket = WORK / "podman.sock"
    socket.unlink(missing_ok=True)
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"], env=engine["env"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while not socket.exists():
        if service.poll() is not None or time.monotonic() > deadline:
            stop(service)
            pytest.fail("podman system service did not start")
        time.sleep(0.2)
    yield {**engine["env"], "DOCKER_HOST": f"unix://{socket}"}
    stop(service)


@pytest.mark.parametrize("target", ["pipeline", "serve"])
def test_each_image_names_the_commit_it_was_built_from(engine, target):
    from reelops.buildinfo import git_commit

    name = engine["images"][target]["name"]
    run = subprocess.run([engine["name"], "run", "--rm", name, "reelops", "--version"], env=engine["env"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"reelops 0.1.0 (commit {git_commit()})"
    user = subprocess.run([engine["name"], "run", "--rm", name, "id", "-u"], env=engine["env"], capture_output=True,
                          text=True, timeout=300)
    assert user.stdout.strip() == "10001"  # not root


def test_the_serve_image_carries_no_tensorflow(engine):
    code = ("import importlib.util as u; print([m for m in ('tensorflow', 'tensorflow_probability', 'keras', "
            "'tf_keras') if u.find_spec(m)])")
    run = subprocess.run([engine["name"], "run", "--rm", engine["images"]["serve"]["name"], "python", "-c", code],
                         env=engine["env"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stdout + run.stderr


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """An S3 endpoint with two buckets and a tracking server whose artifact root is in one."""
    root = tmp_path_factory.mktemp("container-services")
    with moto_s3() as s3:
        create_bucket(s3, "datasets")
        create_bucket(s3, "mlflow")
        with mlflow_server(root / "mlflow", artifacts="s3://mlflow/artifacts", env=s3) as server:
            yield {**s3, "MLFLOW_TRACKING_URI": server["url"], "REELOPS_STORE": "s3://datasets/versions"}


@pytest.fixture(scope="module")
def trained(engine, docker_api, services, tmp_path_factory):
    """The training pipeline, every task in a container of the pipeline image."""
    root = tmp_path_factory.mktemp("container-pipeline")
    root.chmod(0o777)  # the tasks run as the image's non-root user and write their outputs here
    image = engine["images"]["pipeline"]
    task_env = {**services, "KFP_POD_NAME": "reelops-training-containers"}
    env = {**{k: v for k, v in docker_api.items() if k != "PYTHONPATH"}, "REELOPS_TASK_ENV": json.dumps(task_env),
           "REELOPS_IMAGE": image["name"], "REELOPS_IMAGE_ID": image["id"], "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "containers" / "run_pipeline.py"), "training",
                          str(root), f"source={SOURCE}", 'parameters_json={"epochs": 20}'],
                         env=env, capture_output=True, text=True, timeout=1200)
    (root / "run.log").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return {"root": root, "log": run.stdout + run.stderr}


def test_the_training_pipeline_runs_in_containers_and_registers_a_version(engine, trained, services):
    from mlflow import MlflowClient

    image = engine["images"]["pipeline"]
    assert trained["log"].count(f"Found image '{image['name']}'") >= 7  # every task in a container of the image
    client = MlflowClient(tracking_uri=services["MLFLOW_TRACKING_URI"], registry_uri=services["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions("name='movie-recommender'")
    assert [v.version for v in versions] == ["1"]
    tags = versions[0].tags
    assert tags["reelops.image"] == image["name"] and tags["reelops.image_id"] == image["id"]
    assert tags["reelops.dataset_store"] == services["REELOPS_STORE"] and tags["reelops.blessed"] == "true"
    assert client.get_registered_model("movie-recommender").aliases == {"production": "1"}


@pytest.fixture(scope="module")
def served(engine, trained, services):
    """The serve image serving the registered production version on 127.0.0.1."""
    from reelops.serving.client import wait_until_ready

    port, grpc_port = free_port(), free_port()
    name = f"reelops-serve-test-{os.getpid()}"
    from reelops.manifests.objects import SCRATCH_ENVIRONMENT

    # As the rendered InferenceService runs it: read-only root filesystem, writable /tmp only.
    environment = [item for key, value in {**services, **SCRATCH_ENVIRONMENT}.items() for item in ("-e", f"{key}={value}")]
    subprocess.run([engine["name"], "run", "-d", "--name", name, *environment, "--network", "host",
                    "--read-only", "--tmpfs", "/tmp:rw,mode=1777",
                    engine["images"]["serve"]["name"], "reelops", "serve", "--model-alias", "production",
                    "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port)],
                   env=engine["env"], check=True, capture_output=True, timeout=300)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout=300)
        yield {"url": url, "grpc": f"127.0.0.1:{grpc_port}"}
    except Exception:
        logs = subprocess.run([engine["name"], "logs", name], env=engine["env"], capture_output=True, text=True)
        raise AssertionError(f"the serve container did not get ready: {(logs.stdout + logs.stderr)[-3000:]}")
    finally:
        subprocess.run([engine["name"], "rm", "-f", name], env=engine["env"], capture_output=True, timeout=120)


def test_the_serve_image_answers_v1_v2_and_grpc(served):
    from reelops.serving import import_kserve
    from reelops.serving.client import recommend

    v1 = recommend(served["url"], [1, 2], k=5, protocol="v1")
    v2 = recommend(served["url"], [1, 2], k=5, protocol="v2")
    assert [a["movie_ids"] for a in v1] == [a["movie_ids"] for a in v2] and len(v1[0]["movie_ids"]) == 5
    assert v1[0]["model_version"] == "1"

    import_kserve()
    from kserve import InferenceGRPCClient
    from kserve.protocol.infer_type import InferInput, InferRequest

    async def call():
        client = InferenceGRPCClient(served["grpc"], timeout=30)
        users = InferInput("user_id", [2], "INT64")
        users.set_data_from_numpy(np.array([1, 2], dtype=np.int64))
        response = await client.infer(InferRequest(model_name="movie-recommender", infer_inputs=[users]))
        await client.close()
        return response

    outputs = {o.name: o for o in asyncio.run(call()).outputs}
    assert outputs["movie_ids"].as_numpy()[:, :5].tolist() == [a["movie_ids"] for a in v1]


def test_the_serve_image_runs_the_drift_detector_as_the_sidecar_does(engine, trained, services):
    """`reelops detector serve` in the serve image, as the rendered sidecar runs it (read-only
    root filesystem, /tmp writable, the registry from the tracking server): it loads the
    version's monitor, takes a batch of logger events and the feedback, and reports them."""
    import httpx

    from reelops.manifests.objects import SCRATCH_ENVIRONMENT

    port = free_port()
    name = f"reelops-detector-test-{os.getpid()}"
    environment = [item for key, value in {**services, **SCRATCH_ENVIRONMENT}.items() for item in ("-e", f"{key}={value}")]
    subprocess.run([engine["name"], "run", "-d", "--name", name, *environment, "--network", "host",
                    "--read-only", "--tmpfs", "/tmp:rw,mode=1777", engine["images"]["serve"]["name"],
                    "reelops", "detector", "serve", "--model-alias", "production", "--host", "127.0.0.1",
                    "--port", str(port)], env=engine["env"], check=True, capture_output=True, timeout=300)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the detector did not answer within 300 s"
            time.sleep(1)
        head = {"specversion": "1.0", "source": "http://localhost/v1/models/movie-recommender"}
        events = []
        for index in range(20):
            request = {"instances": [{"user_id": 1 + index, "movie_id": 50 + index}]}
            events += [{**head, "id": f"r{index}", "type": "org.kubeflow.serving.inference.request", "data": request},
                       {**head, "id": f"r{index}", "type": "org.kubeflow.serving.inference.response",
                        "data": {"predictions": [{"rating": 3.5}]}}]
        answer = httpx.post(url, content=json.dumps(events), timeout=30,
                            headers={"content-type": "application/cloudevents-batch+json"})
        assert answer.status_code == 202, answer.text
        feedback = [{"user_id": 1 + i, "movie_id": 50 + i, "rating": 4.0, "request_id": f"r{i}"} for i in range(20)]
        assert httpx.post(f"{url}/v1/feedback", json=feedback, timeout=30).status_code == 202
        status = httpx.get(f"{url}/detector/status", timeout=30).json()
        assert status["model_version"] == "1" and status["interactions"] == 20 and status["feedback"] == 20
        assert status["dropped"] == {} and status["backlog_rows"] == 20
        assert "reelops_detector_events_total" in httpx.get(f"{url}/metrics", timeout=30).text
    except Exception:
        logs = subprocess.run([engine["name"], "logs", name], env=engine["env"], capture_output=True, text=True)
        print((logs.stdout + logs.stderr)[-3000:])
        raise
    finally:
        subprocess.run([engine["name"], "rm", "-f", name], env=engine["env"], capture_output=True, timeout=120)
