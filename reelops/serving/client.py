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


def recommend(url: str, user_ids, k: int = 10, protocol: str = "v1", name: str = "movie-recommender",
              timeout: float = 30.0) -> list:
    """Recommendations for users: a list of ``{"user_id", "movie_ids", "scores", ...}``."""
    if protocol == "v1":
        body = {"instances": [{"user_id": int(u), "k": int(k)} for u in user_ids]}
        response = httpx.post(f"{url}/v1/models/{name}:predict", json=body, timeout=timeout)
        _raise_for_status(response)
        return response.json()["predictions"]
    body = {"inputs": [{"name": "user_id", "shape": [len(user_ids)], "datatype": "INT64", "data": [int(u) for u in user_ids]},
                       {"name": "k", "shape": [1], "datatype": "INT32", "data": [int(k)]}]}
    response = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=timeout)
    _raise_for_status(response)
    answer = response.json()
    outputs = {o["name"]: o for o in answer["outputs"]}
    movies = outputs["movie_ids"]["data"]
    scores = outputs["scores"]["data"]
    width = outputs["movie_ids"]["shape"][1]
    return [{"user_id": int(u), "movie_ids": movies[i * width:(i + 1) * width], "scores": scores[i * width:(i + 1) * width],
             "model_version": answer.get("model_version")} for i, u in enumerate(user_ids)]


def _raise_for_status(response) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("error") or response.text
        except ValueError:
            detail = response.text
        raise RuntimeError(f"HTTP {response.status_code}: {detail}")
