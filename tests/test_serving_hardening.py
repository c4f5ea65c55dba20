"""The predictor under bad, oversized and careless requests, over HTTP and gRPC (issue 16).

Every case goes through the wire to a real ``reelops serve`` process on 127.0.0.1, and every
bad request is followed by a good one that must still get 200.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from reelops.serving import import_kserve
from tests.servers import free_port
from tests.test_serving import NAME, Server, model_dir, start_sink  # noqa: F401  (model_dir is a fixture)

V1 = f"/v1/models/{NAME}:predict"
V2 = f"/v2/models/{NAME}/infer"


@pytest.fixture(scope="module")
def guarded(model_dir, tmp_path_factory):  # noqa: F811
    log = tmp_path_factory.mktemp("guarded") / "server.log"
    running = Server(model_dir, extra=["--max-body-bytes", str(1 << 20)], stderr=log)
    running.wait_ready()
    running.log = log
    yield running
    running.stop()


def good(server) -> None:
    response = httpx.post(f"{server.url}{V1}", json={"instances": [{"user_id": 1, "k": 3}]}, timeout=10)
    assert response.status_code == 200, response.text


def post(server, path: str, body, **kwargs) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.post(f"{server.url}{path}", content=body, headers={"content-type": "application/json"},
                          timeout=30, **kwargs)
    return httpx.post(f"{server.url}{path}", json=body, timeout=30, **kwargs)


def v2(*tensors) -> dict:
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}
                       for name, shape, datatype, data in tensors]}


# ------------------------------------------------------------------ item 1: client errors are 4xx, never 5xx


V2_BAD = [
    (v2(("user_id", [3], "INT64", [1, 2])), "inputs.user_id: shape [3] does not match its 2 values"),
    (v2(("user_id", [1], "INT64", ["a"])), "inputs.user_id.data[0]: must be an integer"),
    ('{"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [NaN]}]}', "user_id"),
    (v2(("user_id", [1], "INT64", [2**70])), "inputs.user_id.data[0]: must be an integer in the INT64 range"),
    (v2(("user_id", [1], "INT64", [1]), ("k", [1], "INT32", [2**70])), "inputs.k.data[0]"),
    (v2(("user_id", [1], "INT64", [5.7])), "inputs.user_id.data[0]: must be an integer"),
    (v2(("user_id", [2, 2], "INT64", [1, 2, 3, 4])), "inputs.user_id: shape must be [n]"),
    (v2(("user_id", [1], "INT64", [1]), ("user_id", [1], "INT64", [2])), "inputs.user_id: given twice"),
]


@pytest.mark.parametrize("body, message", V2_BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(V2_BAD)])
def test_v2_client_errors_are_400_naming_the_field(guarded, body, message):
    response = post(guarded, V2, body)
    assert response.status_code in (400, 422), response.text
    assert message in response.text
    good(guarded)


def test_v1_integers_beyond_64_bits_are_400(guarded):
    response = post(guarded, V1, {"instances": [{"user_id": 9223372036854775808}]})
    assert response.status_code == 400 and "instances[0].user_id: must be a 64-bit integer" in response.json()["error"]
    response = post(guarded, V1, {"instances": [{"user_id": 1, "movie_id": -(2**64)}]})
    assert response.status_code == 400 and "instances[0].movie_id" in response.json()["error"]
    good(guarded)


def _grpc_call(server, inputs: list, raw: list | None = None):
    import grpc

    import_kserve()
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as stubs

    tensors = []
    for name, shape, values in inputs:
        contents = pb.InferTensorContents(int64_contents=values) if values is not None else None
        tensors.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype="INT64", shape=shape,
                                                             contents=contents))
    request = pb.ModelInferRequest(model_name=NAME, inputs=tensors, raw_input_contents=raw or [])
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        try:
            return stubs.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30), None
        except grpc.RpcError as error:
            return None, error


def test_grpc_client_errors_are_invalid_argument_naming_the_field(guarded):
    import grpc

    answer, error = _grpc_call(guarded, [("user_id", [3], [1, 2])])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "inputs.user_id: shape [3]" in error.details()
    answer, error = _grpc_call(guarded, [("user_id", [3], None)], raw=[np.array([1, 2], dtype="<i8").tobytes()])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "needs 24 bytes of raw contents, got 16" in error.details()
    answer, error = _grpc_call(guarded, [("user_id", [2, 1], [1, 2])])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "shape must be [n]" in error.details()
    answer, error = _grpc_call(guarded, [("user_id", [2], [3, 4])])
    assert error is None and list(answer.outputs[0].shape) == [2, 10]


# ------------------------------------------------------------------ item 2: instances never leak into each other


def test_each_instance_is_answered_from_its_own_fields(guarded):
    student = {"user_id": 777777, "age": 19, "gender": "F", "occupation": "student", "k": 5}
    retired = {"user_id": 777777, "age": 70, "gender": "M", "occupation": "retired", "k": 5}
    together = post(guarded, V1, {"instances": [student, retired]}).json()["predictions"]
    alone = [post(guarded, V1, {"instances": [one]}).json()["predictions"][0] for one in (student, retired)]
    assert [p["movie_ids"] for p in together] == [p["movie_ids"] for p in alone]
    assert together[0]["movie_ids"] != together[1]["movie_ids"]
    negative = post(guarded, V1, {"instances": [{"user_id": -1, "k": 3}, {"age": 30, "gender": "F", "k": 3}]})
    first, second = negative.json()["predictions"]
    assert first["user_id"] == -1 and first["path"] == "popularity"
    assert second["user_id"] is None and second["path"] == "side_features"


# ------------------------------------------------------------------ item 3: bounded bodies and messages


def test_bodies_over_the_limit_get_413_before_they_are_parsed(guarded):
    huge = json.dumps({"instances": [{"user_id": 1}] * 200_000})
    assert len(huge) > 1 << 20
    response = post(guarded, V1, huge)
    assert response.status_code == 413 and "exceed the limit of 1,048,576" in response.json()["error"]

    def chunks():
        for _ in range(40):
            yield b" " * 65536

    chunked = httpx.post(f"{guarded.url}{V1}", content=chunks(), headers={"content-type": "application/json"},
                         timeout=30)
    assert chunked.status_code == 413 and "more than 1,048,576 bytes" in chunked.json()["error"]
    good(guarded)


def test_grpc_messages_over_the_limit_are_resource_exhausted(guarded):
    import grpc

    _, error = _grpc_call(guarded, [("user_id", [200_000], [2**62] * 200_000)])  # about 1.8 MB
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    good(guarded)


def test_echoed_values_are_cut_and_client_errors_log_one_line(guarded):
    response = post(guarded, V1, {"instances": [{"user_id": "x" * 500_000}]})
    assert response.status_code == 400 and len(response.json()["error"]) < 200
    assert "(500,002 characters)" in response.json()["error"]
    good(guarded)
    log = guarded.log.read_text()
    assert "Traceback" not in log and re.search(r"400 instances\[0\]\.user_id: must be a 64-bit integer", log)


# ------------------------------------------------------------------ item 4: the payload-log queue is bounded by bytes


def test_payload_log_queue_is_bounded_by_bytes_and_drops_say_why(model_dir):  # noqa: F811
    sink, url = start_sink("hang")
    logged = Server(model_dir, extra=["--logger-url", url, "--no-grpc"])
    try:
        logged.wait_ready()
        big = {"instances": [{"user_id": u, "occupation": "o" * 20_000, "age": 30, "k": 2} for u in range(1, 41)]}
        for _ in range(25):  # about 0.8 MB each: 20 MB asked of a 16 MB queue, the sink never answers
            assert post(logged, V1, big).status_code == 200
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            text = httpx.get(f"{logged.url}/metrics", timeout=5).text
            if 'reason="queue_bytes_full"' in text and 'reason="timeout"' in text:
                break
            time.sleep(0.5)
        assert 'reelops_payload_log_dropped_total{reason="queue_bytes_full"}' in text
        assert 'reelops_payload_log_dropped_total{reason="timeout"}' in text
        assert 'reason="unreachable"' not in text
    finally:
        logged.stop()
        sink.shutdown()


# ------------------------------------------------------------------ item 5: readiness tells the truth


# The server-level /v2/health/ready is checked in tests/test_serving.py,
# test_readiness_is_503_while_loading_then_200, next to the model-level endpoints.


def test_a_failed_load_ends_the_process_with_one_line(tmp_path, model_dir):  # noqa: F811
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "arrays.npz").write_bytes(b"not an archive")
    result = subprocess.run([sys.executable, "-m", "reelops.cli", "serve", "--model-dir", str(broken),
                             "--allow-unblessed", "--port", str(free_port()), "--no-grpc"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "reelops: error: loading the model failed:" in result.stderr and "Traceback" not in result.stderr


def test_the_inferenceservice_manifest_has_a_liveness_probe():
    import yaml

    manifest = yaml.safe_load((Path(__file__).resolve().parents[1] / "manifests" / "inferenceservice.yaml").read_text())
    container = manifest["spec"]["predictor"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert "0.0.0.0" in container["args"]


# ------------------------------------------------------------------ item 6: every non-2xx is counted, labels bounded


def _errors(server) -> dict:
    counts = {}
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        match = re.match(r'reelops_request_errors_total\{reason="([^"]+)",status="([^"]+)"\} ([0-9.e+]+)', line)
        if match:
            counts[(match.group(2), match.group(1))] = float(match.group(3))
    return counts


def test_every_non_2xx_answer_is_counted_with_bounded_labels(guarded):
    from reelops.serving.guard import GRPC_STATUSES, REASONS

    before = _errors(guarded)
    answers = [
        post(guarded, V1, b"{not json"),
        post(guarded, V2, {"inputs": [{"name": "user_id"}]}),
        post(guarded, V1, {"instances": [{"user_id": 1, "k": 0}]}),
        httpx.get(f"{guarded.url}/nope/123", timeout=10),
        httpx.get(f"{guarded.url}/nope/456", timeout=10),
        httpx.get(f"{guarded.url}{V1}", timeout=10),
        post(guarded, "/v1/models/other:predict", {"instances": [{"user_id": 1}]}),
        post(guarded, V1, b"x" * (2 << 20)),
        httpx.post(f"{guarded.url}{V1}", content=b'{"instances": []}', timeout=10),
    ]
    statuses = sorted(response.status_code for response in answers)
    assert all(status >= 400 for status in statuses), statuses
    after = _errors(guarded)
    assert sum(after.values()) - sum(before.values()) == len(answers)
    for status, reason in after:
        assert reason in REASONS and (status.isdigit() or status in GRPC_STATUSES)
    assert after.get(("404", "not_found"), 0) - before.get(("404", "not_found"), 0) >= 3


# ------------------------------------------------------------------ item 7: answers that say what is wrong


def test_wrong_content_type_and_wrong_method_are_said_so(guarded):
    response = httpx.post(f"{guarded.url}{V1}", content=b'{"instances": [{"user_id": 1}]}', timeout=10)
    assert response.status_code == 400 and "content-type: must be application/json" in response.json()["error"]
    response = httpx.get(f"{guarded.url}{V1}", timeout=10)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    good(guarded)


# ------------------------------------------------------------------ item 8: serve binds where it is told


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_serve_binds_loopback_by_default_and_another_host_when_told(model_dir):  # noqa: F811
    loopback = Server(model_dir)
    try:
        loopback.wait_ready()
        assert _reachable("127.0.0.1", loopback.port) and _reachable("127.0.0.1", loopback.grpc_port)
        assert not _reachable("127.0.0.2", loopback.port) and not _reachable("127.0.0.2", loopback.grpc_port)
    finally:
        loopback.stop()
    everywhere = Server(model_dir, extra=["--host", "0.0.0.0"])
    try:
        everywhere.wait_ready()
        assert _reachable("127.0.0.2", everywhere.port) and _reachable("127.0.0.2", everywhere.grpc_port)
    finally:
        everywhere.stop()


# ------------------------------------------------------------------ acceptance: the documented V1 body


def test_openapi_describes_the_v1_request_body(guarded):
    document = httpx.get(f"{guarded.url}/openapi.json", timeout=10).json()
    body = document["paths"]["/v1/models/{model_name}:predict"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["required"] == ["instances"] and "user_id" in schema["properties"]["instances"]["items"]["properties"]


# ------------------------------------------------------------------ acceptance: fuzzing over the wire

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Derandomized and without an example database: the same examples on every run, nothing
# written into the checkout.
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                database=None)


def test_schemathesis_finds_no_5xx_on_any_documented_endpoint(guarded):
    """Every operation of the served OpenAPI document, valid and invalid cases, on the real model."""
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{guarded.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/v1/models/{model_name}:predict" for op in operations)
    checked = []
    for operation in operations:
        parameters = {"model_name": NAME} if "{model_name}" in operation.path else None
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                      database=None)
            @given(case=operation.as_strategy(mode, path_parameters=parameters))
            def call(case):
                response = case.call(base_url=guarded.url, timeout=30)
                assert response.status_code < 500, (f"{case.method} {case.formatted_path} {case.body!r:.200}: "
                                                    f"{response.status_code} {response.text[:300]}")
                good(guarded)

            try:
                call()
            except Unsatisfiable:  # an operation with nothing to get wrong (GET /metrics) has no negative case
                assert mode == GenerationMode.NEGATIVE, operation.path
                continue
            checked.append((operation.method.upper(), operation.path, mode.value))
    assert len(checked) >= 20 and any(path.endswith(":predict") and mode == "negative" for _, path, mode in checked)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**80), max_value=2**80),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                             max_size=3), max_leaves=6)
instances = st.dictionaries(st.sampled_from(["user_id", "movie_id", "k", "exclude_rated", "age", "gender",
                                             "occupation", "other"]), values, max_size=5)
v1_bodies = st.one_of(values, st.fixed_dictionaries({"instances": st.one_of(values, st.lists(instances, max_size=4))}))
tensors = st.fixed_dictionaries({
    "name": st.sampled_from(["user_id", "k", "x"]), "datatype": st.sampled_from(["INT64", "INT32", "FP32", "BYTES", "?"]),
    "shape": st.lists(st.integers(min_value=-2, max_value=5), max_size=3), "data": st.lists(scalars, max_size=5)})
v2_bodies = st.one_of(values, st.fixed_dictionaries({"inputs": st.lists(tensors, max_size=3)}))


def _send_json(server, path: str, body) -> httpx.Response:
    text = json.dumps(body, allow_nan=True)  # NaN and Infinity too: clients do send them
    return httpx.post(f"{server.url}{path}", content=text, headers={"content-type": "application/json"}, timeout=30)


@pytest.mark.parametrize("path, bodies", [(V1, v1_bodies), (V2, v2_bodies)], ids=["v1", "v2"])
@FUZZ
@given(data=st.data())
def test_generated_rest_payloads_never_get_a_5xx(guarded, path, bodies, data):
    body = data.draw(bodies)
    response = _send_json(guarded, path, body)
    assert response.status_code < 500, (body, response.text[:300])
    good(guarded)


@FUZZ
@given(shape=st.lists(st.integers(min_value=0, max_value=4), max_size=3),
       values=st.one_of(st.none(), st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=6)),
       raw=st.one_of(st.none(), st.binary(max_size=40)), name=st.sampled_from(["user_id", "k", "x"]))
def test_generated_grpc_payloads_are_answered_or_refused_as_invalid(guarded, shape, values, raw, name):
    import grpc

    _, error = _grpc_call(guarded, [(name, shape, values)], raw=[raw] if raw is not None else None)
    if error is not None:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (shape, values, raw, error.code(), error.details())
    good(guarded)


def test_the_repository_api_cannot_unload_the_model(guarded):
    response = httpx.post(f"{guarded.url}/v2/repository/models/{NAME}/unload", timeout=10)
    assert response.status_code == 404 and "no load/unload API" in response.json()["error"]
    good(guarded)
