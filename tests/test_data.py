"""Ingest, validation, quarantine, versions, sources and splits of MovieLens data."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pandas as pd
import pytest

from reelops.data import (
    DataValidationError, SourceError, ingest, kfold_split, leave_last_out_split, load_dataset,
    time_split, user_time_holdout, validate_source,
)
from tests.layouts import default_rating_lines, item_line, write_ml100k, write_ml1m, write_mllatest


def _bad_rows(validated):
    return {(row["file"], row["line"]): row["reason"] for row in validated.quarantine.rows}


def test_clean_ml100k_fixture_ingests_everything(tmp_path):
    result = ingest(write_ml100k(tmp_path / "src"), store=tmp_path / "store")
    assert result.validated.counts["u.data"] == {"read": 20, "valid": 20, "quarantined": 0}
    data = load_dataset(result.path)
    assert list(data["ratings"].columns) == ["user_id", "movie_id", "rating", "timestamp"]
    assert list(data["users"].columns) == ["user_id", "age", "gender", "occupation", "zip"]
    assert list(data["movies"].columns) == ["movie_id", "title", "year", "genres"]
    assert data["ratings"]["timestamp"].is_monotonic_increasing
    assert data["movies"].loc[0, "year"] == 1991
    assert data["manifest"]["content_hash"].startswith(result.version[3:])
    assert data["manifest"]["counts"]["u.data"]["read"] == 20


def test_each_injected_bad_row_is_quarantined_with_its_line(tmp_path):
    lines = default_rating_lines()  # 20 valid lines; line numbers below are 1-based
    lines[2] = "1\t3\t6\t880000120"  # rating off the scale
    lines[4] = "2\t1\t3"  # missing field
    lines[6] = b"2\t3\t\x81\t880000360"  # bytes that are not text
    lines[8] = "3\t1\t2\t880000480"  # fine
    lines.append("3\t1\t4\t880009999")  # duplicate pair of line 9
    lines.append("99\t1\t4\t880009999")  # unknown user
    lines.append("4\t77\t4\t880009999")  # unknown movie
    lines.append("5\t6\tfive\t880009999")  # not a number
    lines.append("5\t5\t4\t123")  # timestamp out of range
    source = write_ml100k(tmp_path / "src", rating_lines=lines)
    validated = validate_source(source, max_bad_share=1.0)
    bad = _bad_rows(validated)
    assert bad[("u.data", 3)].startswith("bad value: rating 6")
    assert bad[("u.data", 5)].startswith("wrong field count: expected 4 fields, found 3")
    assert bad[("u.data", 7)].startswith("undecodable bytes: byte 0x81")
    assert bad[("u.data", 21)] == "duplicate: (user, movie) already rated on line 9"
    assert bad[("u.data", 22)] == "unknown user: user_id 99 is not in u.user"
    assert bad[("u.data", 23)] == "unknown movie: movie_id 77 is not in u.item"
    assert bad[("u.data", 24)] == "bad value: rating is 'five', not a number"
    assert bad[("u.data", 25)].startswith("bad value: timestamp 123 is outside")
    assert len(bad) == 8
    counts = validated.counts["u.data"]
    assert counts == {"read": 25, "valid": 17, "quarantined": 8}


def test_quarantine_file_is_written_and_counts_add_up(tmp_path):
    lines = default_rating_lines() * 1
    lines.append("1\t1\t9\t880000000")
    users = [f"{u}|{20 + u}|{'MF'[u % 2]}|student|1000{u}" for u in range(1, 6)] + ["6|200|M|student|1"]
    items = [item_line(m, f"Movie {m}") for m in range(1, 7)] + [b"7|Caf\x00|01-Jan-1990|||" .decode("latin-1") + "|".join(["0"] * 19)]
    source = write_ml100k(tmp_path / "src", rating_lines=lines, user_lines=users, item_lines=items)
    result = ingest(source, store=tmp_path / "store", max_bad_share=0.5)
    quarantine = pd.read_csv(result.path / "quarantine.csv")
    assert set(quarantine["file"]) == {"u.data", "u.user", "u.item"}
    assert quarantine.loc[quarantine["file"] == "u.user", "reason"].iloc[0] == "bad value: age 200 is outside 1..120"
    assert quarantine.loc[quarantine["file"] == "u.item", "line"].iloc[0] == 7
    for file, counts in result.validated.counts.items():
        assert counts["read"] == counts["valid"] + counts["quarantined"], file
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["quarantined"] == 3


def test_too_many_bad_rows_fails_and_writes_nothing(tmp_path):
    lines = default_rating_lines()
    lines[0] = "1\t1\t0\t880000000"
    source = write_ml100k(tmp_path / "src", rating_lines=lines)
    store = tmp_path / "store"
    with pytest.raises(DataValidationError, match=r"1 of 31 rows are bad .* 1 bad value; first: u.data line 1"):
        ingest(source, store=store)
    assert not store.exists() or not any(store.iterdir())


def test_same_input_same_version_and_changed_input_new_version(tmp_path):
    source = write_ml100k(tmp_path / "src")
    first = ingest(source, store=tmp_path / "store")
    second = ingest(source, store=tmp_path / "store")
    assert first.version == second.version and first.created and not second.created
    other = write_ml100k(tmp_path / "other", rating_lines=default_rating_lines()[:-1])
    assert ingest(other, store=tmp_path / "store").version != first.version


def test_ml1m_layout(tmp_path):
    validated = validate_source(write_ml1m(tmp_path / "ml-1m"))
    assert validated.layout == "ml-1m"
    assert validated.counts["ratings.dat"] == {"read": 4, "valid": 4, "quarantined": 0}
    movies = validated.movies.set_index("movie_id")
    assert movies.loc[3, "title"] == "Star Wars: Episode IV - A New Hope (1977)"
    assert movies.loc[3, "year"] == 1977 and movies.loc[1, "genres"] == "Animation|Children's|Comedy"
    users = validated.users.set_index("user_id")
    assert users.loc[2, "occupation"] == "self-employed" and users.loc[1, "gender"] == "F"


def test_mllatest_layout_with_quotes_half_stars_and_bad_utf8(tmp_path):
    source = write_mllatest(
        tmp_path / "ml-latest",
        extra_rating_lines=["3,1,4.25,964982931", "3,11,3.0,964982931"],
        extra_movie_lines=[b"14,Caf\xe9 (1999),Drama"],
    )
    validated = validate_source(source, max_bad_share=1.0)
    assert validated.layout == "ml-latest" and validated.users.empty
    movies = validated.movies.set_index("movie_id")
    assert movies.loc[11, "title"] == "American President, The (1995)"
    assert movies.loc[12, "title"] == "Amélie (2001)" and pd.isna(movies.loc[13, "year"])
    assert movies.loc[13, "genres"] == ""
    bad = _bad_rows(validated)
    assert bad[("ratings.csv", 7)].startswith("bad value: rating 4.25 is not on the ml-latest scale")
    assert bad[("movies.csv", 6)].startswith("undecodable bytes")
    assert validated.counts["ratings.csv"] == {"read": 7, "valid": 6, "quarantined": 1}
    assert set(validated.ratings["rating"]) >= {0.5, 3.5}


def test_zip_source(tmp_path):
    folder = write_ml100k(tmp_path / "ml-100k")
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in folder.iterdir():
            bundle.write(path, f"ml-100k/{path.name}")
    assert ingest(archive, store=tmp_path / "a").version == ingest(folder, store=tmp_path / "b").version


def test_not_a_source_gives_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="no such file or folder"):
        validate_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no MovieLens layout found"):
        validate_source(tmp_path / "empty")


def test_object_store_without_extra_names_the_extra(tmp_path):
    """Without s3fs (hidden from a child process, as make test installs it), the error names the extra."""
    code = ("import sys; sys.modules['s3fs'] = None\n"
            "from reelops.cli import main; sys.exit(main(['data', 'validate', 's3://bucket/ml-100k.zip']))")
    env = {**os.environ, "REELOPS_WORKSPACE": str(tmp_path / "ws")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
    assert "pip install 'reelops[s3]'" in lines[0]


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder, with a log of the paths asked for."""
    root = tmp_path / "served"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append((self.command, self.path))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", requests, server
    server.shutdown()
    server.server_close()


def test_named_download_is_fetched_once_then_cached(tmp_path, http_server, monkeypatch):
    root, base_url, requests, server = http_server
    folder = write_ml100k(tmp_path / "ml-100k")
    with zipfile.ZipFile(root / "ml-100k.zip", "w") as bundle:
        for path in folder.iterdir():
            bundle.write(path, f"ml-100k/{path.name}")
    monkeypatch.setenv("REELOPS_MOVIELENS_100K_URL", f"{base_url}/ml-100k.zip")
    first = ingest("movielens-100k", store=tmp_path / "store")
    assert first.validated.counts["u.data"]["valid"] == 20
    assert ("GET", "/ml-100k.zip") in requests
    asked_before = len(requests)
    assert ingest("movielens-100k", store=tmp_path / "store").version == first.version
    assert len(requests) == asked_before, "the second ingest must come from the cache"
    server.shutdown()  # offline from now on: the cache must serve
    assert ingest("movielens-100k", store=tmp_path / "store").version == first.version


def test_http_download_failure_is_a_source_error(http_server):
    _, base_url, _, _ = http_server
    with pytest.raises(SourceError, match="download failed"):
        validate_source(f"{base_url}/missing.zip")


def test_real_ml100k(ml100k, tmp_path):
    result = ingest(ml100k, store=tmp_path / "store")
    assert result.validated.counts["u.data"] == {"read": 100_000, "valid": 100_000, "quarantined": 0}
    assert len(result.validated.users) == 943 and len(result.validated.movies) == 1682
    assert result.validated.total_quarantined == 0
    assert any("18 title(s)" in w for w in result.validated.warnings)
    assert any("267 (unknown)" in w for w in result.validated.warnings)
    assert ingest(ml100k, store=tmp_path / "store").version == result.version


def _ratings(n_users=4, per_user=10):
    rows = [(u, m, 1 + (u * m) % 5, 1000 + 10 * m + u) for u in range(1, n_users + 1) for m in range(1, per_user + 1)]
    return pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"])


def test_splits():
    ratings = _ratings()
    train, test = time_split(ratings, quantile=0.5)
    assert train["timestamp"].max() < test["timestamp"].min() and len(train) + len(test) == 40
    train, test = user_time_holdout(ratings, 0.2)
    assert len(test) == 8 and set(test["movie_id"]) == {9, 10}
    train, test = leave_last_out_split(ratings)
    assert len(test) == 4 and set(test["movie_id"]) == {10}
    folds = kfold_split(ratings, 5, seed=3)
    assert sorted(np.concatenate([f[1].index.size * [0] for f in folds])) == [0] * 40
    tests = pd.concat([f[1] for f in folds])
    assert len(tests.drop_duplicates()) == 40
    assert kfold_split(ratings, 5, seed=3)[0][1].equals(folds[0][1])


def test_the_dataset_store_is_a_url_and_a_missing_version_names_it(tmp_path, monkeypatch):
    from reelops.data.store import store_url
    from reelops.simulate import simulate

    simulate("none", seed=5, out=tmp_path / "world", n_users=80, n_movies=100)
    shared = tmp_path / "shared store"
    monkeypatch.setenv("REELOPS_STORE", shared.as_uri())
    assert store_url() == shared.as_uri()
    result = ingest(tmp_path / "world")
    assert result.path == shared / result.version and result.store == shared.as_uri()
    assert load_dataset(result.version)["manifest"]["version"] == result.version
    with pytest.raises(FileNotFoundError, match=f"ds-0000000000000000: .*store {shared.as_uri()}"):
        load_dataset("ds-0000000000000000")
    with pytest.raises(FileNotFoundError, match="not a dataset version folder"):
        load_dataset(tmp_path / "world")
