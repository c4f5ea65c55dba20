"""Ingest + validate + version: speed against a bare ``pandas.read_csv``, and hostile input.

Part 1 prints, for ml-100k (when present) and for a generated 1,000,000-rating file in the
same layout, the bare read and the full ingest measured as pairs (bare, then ingest, five
times) and the median of the per-pair ratios. Goal: the 1M ingest within 3x of the bare read.

Part 2 runs ``reelops data ingest`` in a child process on hostile inputs of about 100 MB
(and a zip that unpacks to 200 MB) next to a clean file of the same size, and prints each
one's outcome, wall time and peak memory (``os.wait4``'s rusage of that child). Goal: every
hostile input answered within 10 s and under 1 GB.

    .venv/bin/python benchmarks/ingest.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reelops.console import print_table  # noqa: E402
from reelops.data import ingest  # noqa: E402
from tests.processes import Launcher  # noqa: E402  (children's peak memory measured truthfully)

ML100K = ROOT.parent / "shared" / "data" / "ml-100k"
REELOPS = str(Path(sys.executable).parent / "reelops")
HOSTILE_BYTES = 100 << 20


def write_ratings(folder: Path, n_ratings=1_000_000, n_users=10_000, n_movies=4_000, seed=0) -> Path:
    """An ml-100k layout with ``n_ratings`` unique (user, movie) pairs and plausible values."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    pairs = rng.choice(n_users * n_movies, size=n_ratings, replace=False)
    frame = pd.DataFrame({
        "user_id": pairs // n_movies + 1, "movie_id": pairs % n_movies + 1,
        "rating": rng.integers(1, 6, n_ratings), "timestamp": rng.integers(874_724_710, 893_286_638, n_ratings),
    })
    frame.to_csv(folder / "u.data", sep="\t", header=False, index=False)
    users = [f"{u}|{rng.integers(10, 70)}|{'MF'[u % 2]}|student|{10000 + u}" for u in range(1, n_users + 1)]
    (folder / "u.user").write_text("\n".join(users) + "\n", encoding="latin-1")
    flags = "|".join(["0"] * 8 + ["1"] + ["0"] * 10)
    items = [f"{m}|Movie {m} (1995)|01-Jan-1995|||{flags}" for m in range(1, n_movies + 1)]
    (folder / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1")
    return folder


def paired(name: str, folder: Path, scratch: Path, pairs: int = 5) -> list:
    """Bare read and full ingest, one after the other, ``pairs`` times; the median ratio."""
    ratios, bares, fulls = [], [], []
    for index in range(pairs):
        start = time.perf_counter()
        pd.read_csv(folder / "u.data", sep="\t", header=None, names=["user_id", "movie_id", "rating", "timestamp"])
        bare = time.perf_counter() - start
        start = time.perf_counter()
        ingest(folder, store=scratch / f"store-{name}-{index}")  # a fresh store: the version is written every time
        full = time.perf_counter() - start
        bares.append(bare)
        fulls.append(full)
        ratios.append(full / bare)
    rows = sum(1 for _ in open(folder / "u.data", "rb"))
    return [name, rows, statistics.median(bares), statistics.median(fulls), statistics.median(ratios)]


def hostile_inputs(scratch: Path, template: Path) -> dict:
    """name -> source: each an ml-100k layout (or zip) whose u.data is hostile."""
    clean = template.joinpath("u.data").read_bytes()
    cases = {
        "NUL bytes before u.data": b"\x00" * HOSTILE_BYTES + clean,
        "blank lines after u.data": clean + b"\n" * HOSTILE_BYTES,
        "one line of digits, no newline": clean + b"7" * HOSTILE_BYTES,
        "random bytes": np.random.default_rng(1).integers(0, 256, HOSTILE_BYTES, dtype=np.uint8).tobytes(),
        "a bad short line, repeated": b"1\tx\n" * (HOSTILE_BYTES // 4),
    }
    sources = {}
    for index, (name, content) in enumerate(cases.items()):
        folder = scratch / f"hostile-{index}"
        folder.mkdir()
        for other in ("u.item", "u.user"):
            shutil.copy(template / other, folder / other)
        (folder / "u.data").write_bytes(content)
        sources[name] = folder
    bomb = scratch / "blank-lines.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("u.data", clean + b"\n" * (2 * HOSTILE_BYTES))
        for other in ("u.item", "u.user"):
            bundle.write(template / other, other)
    sources["zip unpacking to 200 MB of blank lines"] = bomb
    return sources


def run_child(launcher: Launcher, source: Path, scratch: Path) -> tuple:
    """``reelops data ingest`` in a child process: (outcome, seconds, peak MB)."""
    store = Path(tempfile.mkdtemp(dir=scratch, prefix="store-"))
    env = {**os.environ, "REELOPS_WORKSPACE": str(scratch / "workspace")}
    result = launcher.run([REELOPS, "data", "ingest", str(source), "--out", str(store)], env)
    lines = result["stderr"].strip().splitlines()
    error = lines[-1] if lines else "?"
    outcome = "ingested" if result["code"] == 0 else "refused: " + error.replace("reelops: error: ", "")
    return outcome.replace(str(source), "SOURCE")[:100], result["seconds"], result["peak_kb"] / 1024


def main() -> None:
    launcher = Launcher()
    scratch = Path(tempfile.mkdtemp(prefix="reelops-bench-ingest-"))
    try:
        rows = []
        if (ML100K / "u.data").is_file():
            rows.append(paired("ml-100k", ML100K, scratch))
        else:
            print(f"ml-100k not found at {ML100K}; measuring the generated files only")
        million = write_ratings(scratch / "million")
        rows.append(paired("1M ratings (ml-100k layout)", million, scratch))
        print_table(rows, ["dataset", "ratings", "bare read_csv s", "ingest+validate+version s", "median ratio"],
                    title="benchmarks/ingest.py part 1: 5 pairs (bare read, then ingest), medians")
        ratio = rows[-1][-1]
        print(f"\ngoal: 1M ingest within 3x of the bare read -> {ratio:.2f}x {'met' if ratio <= 3 else 'NOT met'}\n")

        template = ML100K if (ML100K / "u.data").is_file() else million
        same_size = write_ratings(scratch / "clean-100mb", n_ratings=int(HOSTILE_BYTES / 21.5), n_users=50_000,
                                  n_movies=20_000, seed=2)
        measured = [["clean file of the same size", (same_size / "u.data").stat().st_size, *run_child(launcher, same_size, scratch)]]
        for name, source in hostile_inputs(scratch, template).items():
            size = source.stat().st_size if source.is_file() else (source / "u.data").stat().st_size
            measured.append([name, size, *run_child(launcher, source, scratch)])
        print_table(measured, ["input (u.data)", "bytes", "outcome", "seconds", "peak MB"],
                    title="benchmarks/ingest.py part 2: `reelops data ingest` in a child process per input")
        hostile = measured[1:]
        worst_seconds = max(row[3] for row in hostile)
        worst_memory = max(row[4] for row in hostile)
        met = worst_seconds <= 10 and worst_memory < 1024
        print(f"\ngoal: every hostile input answered within 10 s and under 1 GB -> slowest {worst_seconds:.1f} s, "
              f"largest {worst_memory:.0f} MB: {'met' if met else 'NOT met'}")
    finally:
        launcher.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
