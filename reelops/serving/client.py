"""A small client for the predictor's V1 and V2 endpoints (what ``reelops predict`` uses)."""

from __future__ import annotations

import time

import httpx


def wait_until_ready(url: str, name: str = "movie-recommender", timeout: float = 120.0, process=None) -> None:
    """Poll ``/v1/models/{name}`` until it answers 200 (raises TimeoutError, or RuntimeError if ``process`` died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/v1/models/{name}", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url}: model {name} not ready after {timeout:.0f} s")


def request_headers(host_header: str | None = None, token: str | None = None) -> dict:
    """Headers a KServe endpoint behind an ingress needs: ``Host`` routes, a bearer token authorizes."""
    headers = {}
    if host_header:
        headers["Host"] = host_header
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def recommend(url: str, user_ids, k: int = 10, protocol: str = "v1", name: str = "movie-recommender",
              timeout: float = 30.0, host_header: str | None = None, token: str | None = None) -> list:
    """Recommendations for users: a list of ``{"user_id", "movie_ids", "scores", ...}``.

    Args:
        url: the endpoint: ``http(s)://host:port`` for ``v1``/``v2``; for ``grpc`` the same form
            (``https`` means TLS) or a bare ``host:port``.
        user_ids: the users to recommend for.
        k: how many movies each.
        protocol: ``v1`` or ``v2`` (REST), or ``grpc`` (V2 over gRPC).
        name: the model's name on the server.
        timeout: seconds to wait for the answer.
        host_header: the ``Host`` (gRPC: ``:authority``) an ingress routes by, e.g. the
            InferenceService's ``movie-recommender.reelops.example.com``.
        token: a bearer token sent as ``Authorization``.
    """
    if protocol == "grpc":
        return _recommend_grpc(url, user_ids, k, name, timeout, host_header, token)
    headers = request_headers(host_header, token)
    if protocol == "v1":
        body = {"instances": [{"user_id": int(u), "k": int(k)} for u in user_ids]}
        response = httpx.post(f"{url}/v1/models/{name}:predict", json=body, timeout=timeout, headers=headers)
        _raise_for_status(response)
        return response.json()["predictions"]
    body = {"inputs": [{"name": "user_id", "shape": [len(user_ids)], "datatype": "INT64", "data": [int(u) for u in user_ids]},
                       {"name": "k", "shape": [1], "datatype": "INT32", "data": [int(k)]}]}
    response = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=timeout, headers=headers)
    _raise_for_status(response)
    answer = response.json()
    outputs = {o["name"]: o for o in answer["outputs"]}
    return _answers(user_ids, outputs["movie_ids"]["data"], outputs["scores"]["data"],
                    outputs["movie_ids"]["shape"][1], answer.get("model_version"))


def _answers(user_ids, movies, scores, width: int, model_version) -> list:
    return [{"user_id": int(u), "movie_ids": [int(m) for m in movies[i * width:(i + 1) * width]],
             "scores": [float(s) for s in scores[i * width:(i + 1) * width]], "model_version": model_version}
            for i, u in enumerate(user_ids)]


def _recommend_grpc(url: str, user_ids, k: int, name: str, timeout: float, host_header: str | None,
                    token: str | None) -> list:
    """The V2 ``ModelInfer`` call over gRPC, answered in the same shape as the REST protocols."""
    import grpc

    from reelops.serving import import_kserve

    import_kserve()
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as stubs
    from kserve.protocol.infer_type import InferResponse

    secure = url.startswith("https://")
    target = url.split("://", 1)[-1].rstrip("/")
    options = [("grpc.default_authority", host_header)] if host_header else []
    if secure and host_header:
        options.append(("grpc.ssl_target_name_override", host_header))
    channel = (grpc.secure_channel(target, grpc.ssl_channel_credentials(), options=options) if secure
               else grpc.insecure_channel(target, options=options))
    metadata = [("authorization", f"Bearer {token}")] if token else []
    request = pb.ModelInferRequest(model_name=name, inputs=[
        pb.ModelInferRequest.InferInputTensor(name="user_id", datatype="INT64", shape=[len(user_ids)],
                                              contents=pb.InferTensorContents(int64_contents=[int(u) for u in user_ids])),
        pb.ModelInferRequest.InferInputTensor(name="k", datatype="INT32", shape=[1],
                                              contents=pb.InferTensorContents(int_contents=[int(k)]))])
    try:
        with channel:
            reply = stubs.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as error:
        raise RuntimeError(f"gRPC {error.code().name}: {error.details()}") from error
    outputs = {output.name: output for output in InferResponse.from_grpc(reply).outputs}
    movies = outputs["movie_ids"].as_numpy()
    return _answers(user_ids, movies.reshape(-1).tolist(), outputs["scores"].as_numpy().reshape(-1).tolist(),
                    movies.shape[1], reply.model_version or None)


def _raise_for_status(response) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("error") or response.text
        except ValueError:
            detail = response.text
        raise RuntimeError(f"HTTP {response.status_code}: {detail}")
