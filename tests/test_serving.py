"""The real KServe model server in a subprocess on 127.0.0.1, queried with httpx and with
kserve's own REST (V1, V2) and gRPC clients."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from reelops.data import ingest
from reelops.training import train
from reelops.serving import import_kserve
from reelops.simulate import simulate
from tests.servers import free_port

NAME = "movie-recommender"



@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    simulate("none", seed=6, out=root / "world", n_users=300, n_movies=400)
    version = ingest(root / "world", store=root / "datasets").version
    train(root / "datasets" / version, root / "model", parameters={"epochs": 10})
    return root / "model"


class Sink(http.server.BaseHTTPRequestHandler):
    """A payload-log sink that records events, or misbehaves on purpose."""

    events: list = []
    mode = "ok"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "hang":
            time.sleep(30)
            return
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("ce-")}
        Sink.events.append((headers, json.loads(body)))
        self.send_response(500 if self.mode == "fail" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def start_sink(mode: str):
    Sink.events, Sink.mode = [], mode
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class Server:
    def __init__(self, model_dir: Path, extra=(), env=None, stderr: Path | None = None):
        self.port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "reelops.cli", "serve", "--model-dir", str(model_dir), "--allow-unblessed",
                   "--port", str(self.port), "--grpc-port", str(self.grpc_port), "--max-instances", "50", *extra]
        self._stderr = open(stderr, "w") if stderr else subprocess.DEVNULL
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self._stderr,
                                        env={**os.environ, **(env or {})})

    def wait_listening(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return httpx.get(f"{self.url}/v2/health/live", timeout=1)
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("server did not listen")

    def wait_ready(self, timeout=90):
        from reelops.serving.client import wait_until_ready

        wait_until_ready(self.url, NAME, timeout=timeout, process=self.process)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if self._stderr is not subprocess.DEVNULL:
            self._stderr.close()


@pytest.fixture(scope="module")
def server(model_dir):
    running = Server(model_dir)
    running.wait_ready()
    yield running
    running.stop()


def predict(server, body, **kwargs):
    return httpx.post(f"{server.url}/v1/models/{NAME}:predict", json=body, timeout=10, **kwargs)


def test_recommendations_ratings_and_cold_start(server):
    response = predict(server, {"instances": [
        {"user_id": 5, "k": 7, "exclude_rated": True},
        {"user_id": 5, "movie_id": 3},
        {"age": 21, "gender": "F", "occupation": "student", "k": 4},
        {"user_id": 987654, "k": 3},
        {"user_id": 5, "movie_id": 999999},
    ]})
    assert response.status_code == 200
    first, rating, described, unknown, unknown_movie = response.json()["predictions"]
    assert len(first["movie_ids"]) == 7 and len(first["titles"]) == 7 and first["path"] == "personal"
    assert first["scores"] == sorted(first["scores"], reverse=True) and first["model_version"]
    assert 1 <= rating["rating"] <= 5 and rating["path"] == "personal"
    assert described["path"] == "side_features" and described["user_id"] is None and len(described["movie_ids"]) == 4
    assert unknown["path"] == "popularity" and len(unknown["movie_ids"]) == 3
    assert unknown_movie["path"] == "popularity" and 1 <= unknown_movie["rating"] <= 5


def test_many_users_in_one_request(server):
    body = {"instances": [{"user_id": u, "k": 5} for u in range(1, 41)]}
    predictions = predict(server, body).json()["predictions"]
    assert [p["user_id"] for p in predictions] == list(range(1, 41))


BAD = [
    (b"{not json", "Unrecognized request format"),
    ({"rows": []}, "instances: required"),
    ({"instances": "x"}, "instances: must be a non-empty list"),
    ({"instances": [7]}, "instances[0]: must be an object"),
    ({"instances": [{"k": 3}]}, "instances[0].user_id: required unless"),
    ({"instances": [{"user_id": "abc"}]}, "instances[0].user_id: must be a 64-bit integer, got 'abc'"),
    ({"instances": [{"user_id": 1, "k": 0}]}, "instances[0].k: must be an integer in 1..100, got 0"),
    ({"instances": [{"user_id": 1, "k": 101}]}, "instances[0].k: must be an integer in 1..100, got 101"),
    ({"instances": [{"user_id": 1, "exclude_rated": "yes"}]}, "instances[0].exclude_rated: must be true or false"),
    ({"instances": [{"user_id": 1, "colour": "red"}]}, "instances[0].colour: unknown field"),
    ({"instances": [{"age": 500}]}, "instances[0].age: must be a number in 1..120"),
    ({"instances": [{"user_id": 1}] * 51}, "instances: 51 instances exceed the limit of 50"),
]


@pytest.mark.parametrize("body,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_input_is_a_400_naming_the_field_and_the_server_keeps_serving(server, body, message):
    if isinstance(body, bytes):
        response = httpx.post(f"{server.url}/v1/models/{NAME}:predict", content=body,
                              headers={"content-type": "application/json"}, timeout=10)
    else:
        response = predict(server, body)
    assert response.status_code == 400 and message in response.json()["error"]
    assert predict(server, {"instances": [{"user_id": 1, "k": 2}]}).status_code == 200


def test_v2_over_rest_metadata_and_schema_errors(server):
    kserve = import_kserve()
    from kserve import InferenceRESTClient, RESTConfig
    from kserve.protocol.infer_type import InferInput, InferRequest

    metadata = httpx.get(f"{server.url}/v2/models/{NAME}", timeout=10).json()
    assert [i["name"] for i in metadata["inputs"]] == ["user_id", "k"]
    assert [o["name"] for o in metadata["outputs"]] == ["movie_ids", "scores"]

    async def call():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        users = InferInput("user_id", [3], "INT64")
        users.set_data_from_numpy(np.array([1, 2, 3], dtype=np.int64), binary_data=False)
        k = InferInput("k", [1], "INT32")
        k.set_data_from_numpy(np.array([4], dtype=np.int32), binary_data=False)
        response = await client.infer(server.url, InferRequest(model_name=NAME, infer_inputs=[users, k]), model_name=NAME)
        await client.close()
        return response

    response = asyncio.run(call())
    outputs = {o.name: o for o in response.outputs}
    assert outputs["movie_ids"].as_numpy().shape == (3, 4) and outputs["scores"].as_numpy().shape == (3, 4)
    raw = httpx.post(f"{server.url}/v2/models/{NAME}/infer", timeout=10, json={"inputs": [
        {"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]}]}).json()
    assert raw["model_version"] == "model" and raw["outputs"][0]["shape"] == [1, 10]

    wrong = httpx.post(f"{server.url}/v2/models/{NAME}/infer", json={"inputs": [{"name": "user_id"}]}, timeout=10)
    assert wrong.status_code == 422  # FastAPI's schema validation of the Open Inference Protocol
    missing = httpx.post(f"{server.url}/v2/models/{NAME}/infer",
                         json={"inputs": [{"name": "k", "shape": [1], "datatype": "INT32", "data": [3]}]}, timeout=10)
    assert missing.status_code == 400 and "inputs.user_id: required" in missing.json()["error"]
    big_k = httpx.post(f"{server.url}/v2/models/{NAME}/infer", json={"inputs": [
        {"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "k", "shape": [1], "datatype": "INT32", "data": [500]}]}, timeout=10)
    assert big_k.status_code == 400 and "inputs.k" in big_k.json()["error"]
    assert predict(server, {"instances": [{"user_id": 1}]}).status_code == 200


def test_v1_through_kserve_rest_client(server):
    import_kserve()
    from kserve import InferenceRESTClient, RESTConfig

    async def call():
        client = InferenceRESTClient(RESTConfig(protocol="v1", timeout=30))
        response = await client.infer(server.url, {"instances": [{"user_id": 2, "k": 3}]}, model_name=NAME)
        await client.close()
        return response

    assert len(asyncio.run(call())["predictions"][0]["movie_ids"]) == 3


def test_grpc(server):
    import_kserve()
    from kserve import InferenceGRPCClient
    from kserve.protocol.infer_type import InferInput, InferRequest

    async def call():
        client = InferenceGRPCClient(f"127.0.0.1:{server.grpc_port}", timeout=30)
        users = InferInput("user_id", [2], "INT64")
        users.set_data_from_numpy(np.array([3, 4], dtype=np.int64))
        response = await client.infer(InferRequest(model_name=NAME, infer_inputs=[users]))
        await client.close()
        return response

    response = asyncio.run(call())
    outputs = {o.name: o for o in response.outputs}
    assert outputs["movie_ids"].as_numpy().shape == (2, 10)


def test_metrics(server):
    predict(server, {"instances": [{"user_id": 1, "k": 2}, {"user_id": 424242, "k": 2}]})
    predict(server, {"instances": [{"user_id": 1, "k": 0}]})
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert "request_predict_seconds" in text
    assert 'reelops_predictions_total{model_version="model",path="personal"}' in text
    assert 'reelops_cold_starts_total{model_version="model",path="popularity"}' in text
    assert 'reelops_request_errors_total{reason="k_out_of_range",status="400"}' in text


def test_readiness_is_503_while_loading_then_200(model_dir):
    slow = Server(model_dir, env={"REELOPS_SERVE_LOAD_DELAY": "4"})
    try:
        slow.wait_listening()
        assert httpx.get(f"{slow.url}/v1/models/{NAME}", timeout=5).status_code == 503
        assert httpx.get(f"{slow.url}/v2/models/{NAME}/ready", timeout=5).status_code == 503
        # The server-level endpoint too (KServe's own answered 200 while loading: issue 16).
        assert httpx.get(f"{slow.url}/v2/health/ready", timeout=5).status_code == 503
        assert httpx.get(f"{slow.url}/v2/health/live", timeout=5).status_code == 200
        slow.wait_ready()
        assert httpx.get(f"{slow.url}/v2/models/{NAME}/ready", timeout=5).status_code == 200
        assert httpx.get(f"{slow.url}/v2/health/ready", timeout=5).status_code == 200
    finally:
        slow.stop()


@pytest.mark.parametrize("mode", ["ok", "fail", "hang"])
def test_payload_logging_never_delays_or_fails_predictions(model_dir, mode):
    sink, sink_url = start_sink(mode)
    logged = Server(model_dir, extra=["--logger-url", sink_url])
    try:
        logged.wait_ready()
        started = time.monotonic()
        for user in range(1, 6):
            assert predict(logged, {"instances": [{"user_id": user, "k": 3}]}).status_code == 200
        assert time.monotonic() - started < 5  # a 30 s hang in the sink must not show here
        if mode == "ok":
            deadline = time.monotonic() + 10
            while len(Sink.events) < 10 and time.monotonic() < deadline:
                time.sleep(0.1)
            kinds = {headers["ce-type"] for headers, _ in Sink.events}
            assert kinds == {"org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"}
            headers, body = Sink.events[0]
            assert headers["ce-inferenceservicename"] == "movie-recommender" and headers["ce-component"] == "predictor"
            assert headers["ce-endpoint"] == "default" and headers["ce-specversion"] == "1.0"
            ids = {}
            for headers, _ in Sink.events:
                ids.setdefault(headers["ce-id"], set()).add(headers["ce-type"])
            assert all(len(kinds) == 2 for kinds in ids.values())
        if mode == "fail":
            deadline = time.monotonic() + 10
            while "http_5xx" not in httpx.get(f"{logged.url}/metrics", timeout=5).text and time.monotonic() < deadline:
                time.sleep(0.2)
            assert 'reelops_payload_log_dropped_total{reason="http_5xx"}' in httpx.get(f"{logged.url}/metrics").text
    finally:
        logged.stop()
        sink.shutdown()
        sink.server_close()
