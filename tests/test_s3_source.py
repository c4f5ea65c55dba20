"""`reelops data ingest s3://...` (the README offers it) against moto's S3 server on 127.0.0.1.

Credentials and the endpoint come from the environment, as a pod gets them from the
``reelops-object-store`` secret (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from reelops.simulate import simulate
from tests.servers import free_port

REELOPS = str(Path(sys.executable).parent / "reelops")
MOTO = Path(sys.executable).parent / "moto_server"


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1, stopped after the module."""
    if not MOTO.exists():
        pytest.skip("moto_server is not installed (pip install 'moto[s3]'; make test installs it)")
    import httpx

    port = free_port()
    process = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url, timeout=2)
            break
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.2)
    yield {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "reelops-test", "AWS_SECRET_ACCESS_KEY": "reelops-test",
           "AWS_DEFAULT_REGION": "us-east-1"}
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=20)


def test_ingest_reads_a_folder_and_a_zip_from_s3(s3_endpoint, tmp_path):
    import boto3

    world = tmp_path / "world"
    simulate("none", seed=2, out=world, n_users=120, n_movies=150)
    client = boto3.client("s3", endpoint_url=s3_endpoint["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="reelops-test", aws_secret_access_key="reelops-test")
    client.create_bucket(Bucket="movielens")
    archive = tmp_path / "world.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in ("u.data", "u.item", "u.user"):
            client.upload_file(str(world / name), "movielens", f"world/{name}")
            bundle.write(world / name, f"ml-small/{name}")
    client.upload_file(str(archive), "movielens", "world.zip")

    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **s3_endpoint,
           "REELOPS_WORKSPACE": str(tmp_path / "workspace")}
    results = {}
    for source in (str(world), "s3://movielens/world", "s3://movielens/world.zip"):
        run = subprocess.run([REELOPS, "data", "ingest", source, "--out", str(tmp_path / "store"), "--json"],
                             env=env, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr[-2000:]
        results[source] = json.loads(run.stdout)
    versions = {result["version"] for result in results.values()}
    assert len(versions) == 1, results  # the same ratings, wherever they came from
    assert results["s3://movielens/world"]["counts"]["u.data"]["valid"] == sum(1 for _ in open(world / "u.data"))
    assert results["s3://movielens/world.zip"]["sources"] == sorted(results)


def test_a_missing_bucket_is_one_line(s3_endpoint, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **s3_endpoint,
           "REELOPS_WORKSPACE": str(tmp_path / "workspace")}
    run = subprocess.run([REELOPS, "data", "ingest", "s3://no-such-bucket/world.zip"], env=env, capture_output=True,
                         text=True, timeout=180)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1 and lines[0].startswith("reelops: error: s3://no-such-bucket")
