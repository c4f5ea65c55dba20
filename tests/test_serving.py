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


# ------------------------------------------------------------------ reaching a KServe endpoint behind an ingress

INGRESS_HOST, TOKEN = "movie-recommender.reelops.example.com", "s3cret-token"


class _Ingress(http.server.BaseHTTPRequestHandler):
    """Routes like a KServe ingress: by Host to the InferenceService, 404 for an unknown host,
    401 without the bearer token an auth policy asks for; records what arrives."""

    backend = ""
    seen: list = []

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: bytes, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Ingress.seen.append({"host": self.headers.get("Host"), "authorization": self.headers.get("Authorization")})
        if self.headers.get("Host") != INGRESS_HOST:
            return self._answer(404, b'{"error": "no route for this host"}')
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._answer(401, b'{"error": "RBAC: access denied"}')
        answer = httpx.post(f"{self.backend}{self.path}", content=body, timeout=30,
                            headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
        self._answer(answer.status_code, answer.content)


@pytest.fixture
def ingress(server):
    _Ingress.backend, _Ingress.seen = server.url, []
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ingress)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{proxy.server_address[1]}"
    proxy.shutdown()
    proxy.server_close()


def _predict_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "reelops.cli", "predict", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_predict_reaches_an_endpoint_behind_an_ingress_with_host_header_and_token(server, ingress):
    direct = json.loads(_predict_cli("--url", server.url, "--user", "3", "-k", "4", "--json").stdout)["predictions"]
    for protocol in ("v1", "v2"):
        done = _predict_cli("--url", ingress, "--user", "3", "-k", "4", "--protocol", protocol, "--json",
                            "--host-header", INGRESS_HOST, env={"REELOPS_TOKEN": TOKEN})
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)["predictions"]
        assert [a["movie_ids"] for a in answer] == [a["movie_ids"] for a in direct]
    assert _Ingress.seen[-1] == {"host": INGRESS_HOST, "authorization": f"Bearer {TOKEN}"}
    # --service-hostname is the same option (kserve's docs call it that); --token beats the variable.
    done = _predict_cli("--url", ingress, "--user", "3", "--service-hostname", INGRESS_HOST, "--token", TOKEN,
                        env={"REELOPS_TOKEN": "stale"})
    assert done.returncode == 0, done.stderr
    assert _Ingress.seen[-1]["authorization"] == f"Bearer {TOKEN}"
    # Without the host the ingress has no route; without the token it refuses: one line each, naming the URL.
    no_host = _predict_cli("--url", ingress, "--user", "3", "--token", TOKEN)
    assert no_host.returncode != 0 and "HTTP 404: no route for this host" in no_host.stderr
    no_token = _predict_cli("--url", ingress, "--user", "3", "--host-header", INGRESS_HOST)
    assert no_token.returncode != 0 and "HTTP 401" in no_token.stderr and ingress in no_token.stderr


def test_predict_over_grpc_matches_rest_and_sends_the_token(server):
    import grpc

    rest = json.loads(_predict_cli("--url", server.url, "--user", "3", "--user", "5", "-k", "4", "--json").stdout)
    done = _predict_cli("--url", f"127.0.0.1:{server.grpc_port}", "--protocol", "grpc", "--user", "3", "--user", "5",
                        "-k", "4", "--json")
    assert done.returncode == 0, done.stderr
    grpc_answer = json.loads(done.stdout)["predictions"]
    assert [a["movie_ids"] for a in grpc_answer] == [a["movie_ids"] for a in rest["predictions"]]
    assert [len(a["scores"]) for a in grpc_answer] == [4, 4]

    # A gRPC front that forwards ModelInfer only with the bearer token, as an ingress auth policy does.
    seen = []
    backend = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    forward = backend.unary_unary("/inference.GRPCInferenceService/ModelInfer")

    def model_infer(request: bytes, context):
        metadata = dict(context.invocation_metadata())
        seen.append(metadata.get("authorization"))
        if metadata.get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        return forward(request, timeout=30)

    from concurrent import futures

    front = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    front.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(model_infer)})])
    port = front.add_insecure_port("127.0.0.1:0")
    front.start()
    try:
        done = _predict_cli("--url", f"127.0.0.1:{port}", "--protocol", "grpc", "--user", "3", "-k", "4", "--json",
                            "--host-header", INGRESS_HOST, env={"REELOPS_TOKEN": TOKEN})
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["predictions"][0]["movie_ids"] == grpc_answer[0]["movie_ids"]
        refused = _predict_cli("--url", f"127.0.0.1:{port}", "--protocol", "grpc", "--user", "3")
        assert refused.returncode != 0 and "gRPC UNAUTHENTICATED: missing or wrong bearer token" in refused.stderr
        assert seen == [f"Bearer {TOKEN}", None]
    finally:
        front.stop(0)
        backend.close()
