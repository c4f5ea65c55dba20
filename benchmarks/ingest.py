"""Ingest + validate + version, against a bare ``pandas.read_csv`` of the same file.

Prints, for ml-100k (when present) and for a generated 1,000,000-rating file in the same
layout, the time of the bare read and of the full ingest, measured side by side in one
run (best of 3 each), and their ratio. Goal: within 3x of the bare read for the 1M file.

    .venv/bin/python benchmarks/ingest.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reelops.console import print_table  # noqa: E402
from reelops.data import ingest  # noqa: E402

ML100K = ROOT.parent / "shared" / "data" / "ml-100k"


def best_of(function, repeat=3) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return min(timings)


def write_million(folder: Path, n_ratings=1_000_000, n_users=10_000, n_movies=4_000) -> Path:
    """A 1M-rating ml-100k layout: unique (user, movie) pairs, plausible values."""
    rng = np.random.default_rng(0)
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


def measure(name: str, folder: Path, scratch: Path) -> list:
    def bare():
        pd.read_csv(folder / "u.data", sep="\t", header=None, names=["user_id", "movie_id", "rating", "timestamp"])

    counter = iter(range(100))

    def full():
        store = scratch / f"store-{next(counter)}"  # a fresh store: the version is written every time
        ingest(folder, store=store)

    bare_seconds = best_of(bare)
    full_seconds = best_of(full)
    rows = sum(1 for _ in open(folder / "u.data", "rb"))
    return [name, rows, bare_seconds, full_seconds, full_seconds / bare_seconds]


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="reelops-bench-ingest-"))
    try:
        rows = []
        if (ML100K / "u.data").is_file():
            rows.append(measure("ml-100k", ML100K, scratch))
        else:
            print(f"ml-100k not found at {ML100K}; measuring the 1M file only")
        rows.append(measure("1M ratings (ml-100k layout)", write_million(scratch / "million"), scratch))
        print_table(rows, ["dataset", "ratings", "bare read_csv s", "ingest+validate+version s", "ratio"],
                    title="benchmarks/ingest.py (best of 3, one run)")
        ratio = rows[-1][-1]
        print(f"\ngoal: 1M ingest within 3x of the bare read -> {ratio:.2f}x {'met' if ratio <= 3 else 'NOT met'}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
