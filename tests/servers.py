"""Helpers for tests that start real servers on 127.0.0.1 (and stop them by process group)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
# Credentials moto accepts; a pod gets the same variables from the reelops-object-store secret.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "reelops-test", "AWS_SECRET_ACCESS_KEY": "reelops-test",
                  "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, what: str, log: Path | None = None, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            detail = log.read_text()[-2000:] if log and log.is_file() else ""
            pytest.fail(f"{what} did not start: {detail}")
        time.sleep(0.2)


def stop(process: subprocess.Popen) -> None:
    """Stop a server started in its own session: SIGTERM to its group, SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


@contextlib.contextmanager
def moto_s3():
    """moto's S3 server on 127.0.0.1: yields the environment a pod's storage secret gives."""
    if not (BIN / "moto_server").exists():
        pytest.skip("moto_server is not installed (pip install 'moto[s3]'; make test installs it)")
    port = free_port()
    process = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, "moto_server", timeout=60)
        yield {"AWS_ENDPOINT_URL": url, **S3_CREDENTIALS}
    finally:
        stop(process)


def s3_client(env: dict):
    """A boto3 S3 client for the endpoint and credentials of ``env``."""
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def create_bucket(env: dict, name: str):
    """Create a bucket on the S3 endpoint of ``env``; returns the boto3 client."""
    client = s3_client(env)
    client.create_bucket(Bucket=name)
    return client


@contextlib.contextmanager
def mlflow_server(root: Path, artifacts: str | None = None, env: dict | None = None):
    """A real MLflow tracking server on 127.0.0.1 with its own sqlite backend store.

    Args:
        root: its folder (backend database, log, and by default the artifacts).
        artifacts: an ``s3://`` artifact root that clients write to directly with their own
            credentials (as pods do); by default the server keeps artifacts under ``root``
            and proxies them.
        env: extra environment for the server.

    Yields:
        ``{"url", "root"}``.
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    where = (["--default-artifact-root", artifacts, "--no-serve-artifacts"] if artifacts
             else ["--artifacts-destination", (root / "artifacts").as_uri()])
    log_path = root / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri",
             f"sqlite:///{root / 'backend.db'}", *where, "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})},
            start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(f"{url}/health", process, "mlflow server", log_path)
            yield {"url": url, "root": root}
        finally:
            stop(process)


@contextlib.contextmanager
def prometheus_server(root: Path, static_configs: list, interval: str = "1s"):
    """A real Prometheus on 127.0.0.1 scraping ``static_configs`` (``[{"targets", "labels"}]``)
    every ``interval``; yields its URL. Skips when Debian's ``prometheus`` is not installed."""
    import shutil

    import yaml

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian package prometheus; .ci/run installs it as root)")
    root.mkdir(parents=True, exist_ok=True)
    config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
              "scrape_configs": [{"job_name": "reelops", "honor_labels": True, "static_configs": static_configs}]}
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = root / "prometheus.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([binary, f"--config.file={root / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(f"{url}/-/ready", process, "prometheus", log_path)
            yield url
        finally:
            stop(process)


def reply_json(handler, body, status: int = 200) -> None:
    """Answer a ``BaseHTTPRequestHandler`` request with a JSON body (the stand-in API servers)."""
    import json

    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
