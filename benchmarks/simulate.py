"""Time to generate (and write) a 1,000,000-rating simulated world.

Prints the generation time and the time of writing the ml-100k layout, with the bare
cost of formatting the same number of lines in the same run as the baseline.
Goal: under 10 s on the 2-core machine.

    .venv/bin/python benchmarks/simulate.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reelops.console import print_table  # noqa: E402
from reelops.simulate import Scenario, World, WorldConfig, write_world  # noqa: E402


def main() -> None:
    # ml-100k's density and activity with 10x the users and about 2.2x the movies.
    config = WorldConfig(n_users=9_430, n_movies=3_700)
    scratch = Path(tempfile.mkdtemp(prefix="reelops-bench-sim-"))
    try:
        rows = []
        for scenario in ("none", "taste_shift"):
            start = time.perf_counter()
            world = World(config, Scenario.parse(scenario), seed=1)
            built = time.perf_counter()
            description = write_world(world, scratch / scenario)
            done = time.perf_counter()
            n = description["counts"]["ratings"]
            start_format = time.perf_counter()
            "".join(f"{i}\t{i}\t{i % 5}\t{i}\n" for i in range(n))  # the bare cost of writing n lines
            bare = time.perf_counter() - start_format
            rows.append([scenario, n, built - start, done - built, done - start, bare, (done - start) / bare])
        print_table(rows, ["scenario", "ratings", "world s", "generate+write s", "total s", "bare line formatting s", "ratio"],
                    title="benchmarks/simulate.py (one run)")
        worst = max(row[4] / row[1] * 1_000_000 for row in rows)
        print(f"\ngoal: 1,000,000 ratings under 10 s -> {worst:.1f} s per million {'met' if worst < 10 else 'NOT met'}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
