"""`reelops data ingest s3://...` (the README offers it) against moto's S3 server on 127.0.0.1.

Credentials and the endpoint come from the environment, as a pod gets them from the
``reelops-object-store`` secret (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from reelops.simulate import simulate
from tests.servers import create_bucket, moto_s3

REELOPS = str(Path(sys.executable).parent / "reelops")


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1, stopped after the module."""
    with moto_s3() as env:
        yield env


def test_ingest_reads_a_folder_and_a_zip_from_s3(s3_endpoint, tmp_path):
    world = tmp_path / "world"
    simulate("none", seed=2, out=world, n_users=120, n_movies=150)
    client = create_bucket(s3_endpoint, "movielens")
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
