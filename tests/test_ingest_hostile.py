"""Ingest on hostile and damaged files, through the commands a user runs (issue 17).

Memory is measured as the peak RSS of the ``reelops`` child process (``tests/processes.py``
forks it from a small launcher, so the figure is its own). Times are never asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from tests.layouts import default_rating_lines, write_ml100k
from tests.processes import Launcher

REELOPS = str(Path(sys.executable).parent / "reelops")
MB = 1 << 20


@pytest.fixture(scope="module")
def launcher():
    process = Launcher()
    yield process
    process.close()


@pytest.fixture
def env(tmp_path) -> dict:
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "REELOPS_WORKSPACE": str(tmp_path / "ws")}


def one_line(result: dict) -> str:
    lines = [line for line in result["stderr"].strip().splitlines() if line.strip()]
    assert result["code"] != 0 and len(lines) == 1 and lines[0].startswith("reelops: error: "), result["stderr"][-2000:]
    return lines[0]


def source_with(tmp_path: Path, name: str, ratings: bytes) -> Path:
    folder = write_ml100k(tmp_path / name)
    (folder / "u.data").write_bytes(ratings)
    return folder


def clean_ratings() -> bytes:
    return ("\n".join(default_rating_lines()) + "\n").encode()


# ------------------------------------------------------------------ item 1: bounded memory on hostile files


def test_nul_bytes_before_the_ratings_cost_one_row_not_one_per_byte(launcher, env, tmp_path):
    source = source_with(tmp_path, "nul", b"\x00" * (40 * MB) + clean_ratings())
    result = launcher.run([REELOPS, "data", "ingest", source, "--out", tmp_path / "store", "--max-bad-share", "0.1",
                           "--json"], env)
    assert result["code"] == 0, result["stderr"][-2000:]
    summary = json.loads(result["stdout"])
    lines = len(default_rating_lines())
    assert summary["counts"]["u.data"] == {"read": lines, "valid": lines - 1, "quarantined": 1}
    assert "undecodable bytes: byte 0x00 at column 1" in open(Path(summary["path"]) / "quarantine.csv").read()
    # 40 MB of input; it once took 868 MB for 10 MB (a tuple and a string per byte).
    assert result["peak_kb"] < 600 * 1024, f"peak {result['peak_kb'] / 1024:.0f} MB"


def test_blank_lines_and_long_lines_stay_within_memory(launcher, env, tmp_path):
    blank = source_with(tmp_path, "blank", clean_ratings() + b"\n" * (60 * MB))
    result = launcher.run([REELOPS, "data", "validate", blank, "--json"], env)
    assert result["code"] == 0, result["stderr"][-2000:]
    assert f"{60 * MB} blank line(s) skipped" in json.loads(result["stdout"])["warnings"]
    assert result["peak_kb"] < 700 * 1024, f"peak {result['peak_kb'] / 1024:.0f} MB"
    long_line = source_with(tmp_path, "long", clean_ratings() + b"7" * (60 * MB) + b"\n")
    result = launcher.run([REELOPS, "data", "validate", long_line, "--max-bad-share", "0.1", "--json"], env)
    assert result["code"] == 0 and json.loads(result["stdout"])["quarantined"] == 1
    assert result["peak_kb"] < 700 * 1024, f"peak {result['peak_kb'] / 1024:.0f} MB"


def test_millions_of_bad_lines_are_refused_without_holding_them(launcher, env, tmp_path):
    source = source_with(tmp_path, "bad", clean_ratings() + b"1\tx\n" * (8 * MB))
    result = launcher.run([REELOPS, "data", "validate", source], env)
    message = one_line(result)
    assert "rows are bad already" in message and "reading stopped there" in message
    assert result["peak_kb"] < 800 * 1024, f"peak {result['peak_kb'] / 1024:.0f} MB"


def test_a_zip_that_unpacks_absurdly_is_refused_before_extraction(launcher, env, tmp_path):
    archive = tmp_path / "bomb.zip"
    template = write_ml100k(tmp_path / "template")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("u.data", clean_ratings() + b"\n" * (50 * MB))
        for name in ("u.item", "u.user"):
            bundle.write(template / name, name)
    message = one_line(launcher.run([REELOPS, "data", "ingest", archive], env))
    assert "member 'u.data' unpacks" in message and "times its compressed size" in message
    assert not list((Path(env["REELOPS_WORKSPACE"]) / "cache").rglob("u.data"))


def test_inputs_over_the_cap_are_refused_before_reading(launcher, env, tmp_path):
    source = source_with(tmp_path, "big", clean_ratings() * 1000)
    size = (source / "u.data").stat().st_size
    message = one_line(launcher.run([REELOPS, "data", "ingest", source, "--max-input-bytes", size - 1], env))
    assert f"u.data is {size:,} bytes, over the input limit of {size - 1:,} bytes" in message
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in ("u.data", "u.item", "u.user"):
            bundle.write(source / name, name)
    message = one_line(launcher.run([REELOPS, "data", "ingest", archive], {**env, "REELOPS_MAX_INPUT_BYTES": "1000"}))
    assert "over the input limit of 1,000 bytes" in message


# ------------------------------------------------------------------ item 2: a truncated file is said to be truncated


def test_a_file_cut_mid_line_is_reported_as_truncated(launcher, env, tmp_path):
    text = clean_ratings()
    source = source_with(tmp_path, "cut", text[: len(text) - 7])  # the last line loses its end and its newline
    result = launcher.run([REELOPS, "data", "ingest", source, "--max-bad-share", "0.1"], env)
    assert result["code"] == 0, result["stderr"][-2000:]
    lines = len(default_rating_lines())
    assert f"warning: u.data: the last line ({lines}) has no newline and was quarantined: the file looks truncated" \
        in result["stdout"]
    whole = source_with(tmp_path, "whole", text.rstrip(b"\n"))  # no final newline, but the line is complete
    result = launcher.run([REELOPS, "data", "validate", whole, "--json"], env)
    assert result["code"] == 0 and not any("truncated" in w for w in json.loads(result["stdout"])["warnings"])


# ------------------------------------------------------------------ item 3: every run keeps its report


def test_each_ingest_keeps_its_report_even_when_the_version_exists(launcher, env, tmp_path):
    clean = source_with(tmp_path, "clean", clean_ratings())
    lines = default_rating_lines()
    duplicated = source_with(tmp_path, "dup", ("\n".join(lines + [lines[0]] * 50) + "\n").encode())
    store = tmp_path / "store"
    first = json.loads(launcher.run([REELOPS, "data", "ingest", clean, "--out", store, "--json"], env)["stdout"])
    result = launcher.run([REELOPS, "data", "ingest", duplicated, "--out", store, "--max-bad-share", "0.9", "--json"],
                          env)
    second = json.loads(result["stdout"])
    assert second["version"] == first["version"] and not second["created"] and second["quarantined"] == 50
    assert second["sources"] == sorted([str(clean), str(duplicated)])
    report = json.loads((Path(second["report"]) / "report.json").read_text())
    assert report["source"] == str(duplicated) and report["quarantined"] == 50 and not report["created_version"]
    rows = (Path(second["report"]) / "quarantine.csv").read_text().splitlines()
    assert len(rows) == 51 and "duplicate" in rows[1]
    first_report = json.loads((Path(first["report"]) / "report.json").read_text())
    assert first_report["source"] == str(clean) and first_report["created_version"]


# Items 4 (a damaged zip member in one line) and 5 (folders follow the umask) are covered by
# tests/test_user_paths.py: test_failures_are_one_line_and_debug_shows_the_traceback and
# test_ingest_cleans_staging_folders_of_killed_writers_only.


def test_version_folders_follow_the_umask(launcher, env, tmp_path):
    result = launcher.run([REELOPS, "data", "ingest", source_with(tmp_path, "src", clean_ratings()), "--out",
                           tmp_path / "store", "--json"], env)
    version = Path(json.loads(result["stdout"])["path"])
    mask = os.umask(0)
    os.umask(mask)
    for folder in (version, *version.joinpath("ingests").iterdir()):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~mask, folder
    shutil.rmtree(tmp_path / "store")
