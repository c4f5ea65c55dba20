"""How much of a taste shift the first 2,000 ratings after onset can show, whatever the detector.

The monitoring issue asks the model drift detector to catch ``taste_shift`` within 2,000
ratings in 90% of seeds; ``benchmarks/drift_detection.py`` measures 45%. This script asks
how far better statistics, or a better model, could go on the same windows. For each
seed: the drift benchmark's model and reference, and its windows of 1,000 ratings from
the ``none`` and ``taste_shift`` worlds. Four statistics, each judged at the level that
gives 1% false alarms on the ``none`` windows of the same seeds (and at 0.001 nominal):

- detector: the model drift detector's within-user genre test on the model's errors;
- told the answer: the same sums, told which genres moved and which way (a one-sided
  z-test on that direction instead of a chi-square over every genre);
- perfect model: the detector's test on errors against the simulator's own expected
  ratings before onset, on the users the model knows;
- perfect model, every user: the same, with the users no model has seen counted too;
- perfect model, every user, told the answer: both at once, the most any test of these
  windows could know.

    .venv/bin/python benchmarks/taste_shift_ceiling.py [--seeds 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from drift_detection import DEADLINE, WINDOW, trained_monitor  # noqa: E402

from reelops.console import print_table  # noqa: E402
from reelops.data.layouts import GENRES  # noqa: E402
from reelops.monitoring import _within_user_genre_sums, _within_user_genre_test  # noqa: E402
from reelops.simulate import Scenario, World, WorldConfig  # noqa: E402

STATISTICS = ["detector", "told the answer", "perfect model", "perfect model, every user",
              "perfect model, every user, told the answer"]
FALSE_ALARMS = 0.01


def _directed_p_value(errors, flags, users, lean, direction: np.ndarray) -> float | None:
    """One-sided p-value of the within-user genre sums along the true direction of the shift."""
    sums = _within_user_genre_sums(errors, flags, users, lean)
    if sums is None:
        return None
    statistic, covariance, genres = sums
    weights = direction[genres]
    spread = weights @ covariance @ weights
    return float(stats.norm.sf(weights @ statistic / np.sqrt(spread))) if spread > 0 else None


def _stream(world: World, cut: int) -> tuple:
    """The world's ratings from ``cut`` on, in time order, and the index of the first after onset."""
    ratings = world.generate()["ratings"]
    stream = ratings[ratings["timestamp"] >= cut].reset_index(drop=True)
    return stream, int((stream["timestamp"] < world.onset).sum())


def _p_values(monitor, world: World, stream, onset_index: int, direction: np.ndarray) -> list:
    """(interactions after onset at the window's end, {statistic: p-value}) per window."""
    lean = np.array([monitor.reference["errors"]["personal"]["within_user_genre_lean"][g] for g in GENRES[1:]])
    no_lean = np.zeros(len(GENRES) - 1)
    model = monitor.model
    out = []
    for start in range(0, len(stream) - WINDOW + 1, WINDOW):
        window = stream.iloc[start: start + WINDOW]
        errors, flags = monitor._errors(window)
        users = errors["user_id"].to_numpy()
        signed = errors["error"].to_numpy(float)
        user_ids, movie_ids = window["user_id"].to_numpy(), window["movie_id"].to_numpy()
        # What a perfect model would have predicted: the world's expected rating, as it was before onset.
        before = np.minimum(window["timestamp"].to_numpy(), world.onset - 1)
        perfect = window["rating"].to_numpy(float) - world.expected_rating(user_ids, movie_ids, before)
        all_flags = world.movie_genres[movie_ids - 1] > 0
        known = model.personal_index(user_ids) >= 0
        out.append((start + WINDOW - onset_index, {
            "detector": _within_user_genre_test(signed, flags, users, lean),
            "told the answer": _directed_p_value(signed, flags, users, lean, direction),
            "perfect model": _within_user_genre_test(perfect[known], all_flags[known], user_ids[known], no_lean),
            "perfect model, every user": _within_user_genre_test(perfect, all_flags, user_ids, no_lean),
            "perfect model, every user, told the answer": _directed_p_value(perfect, all_flags, user_ids, no_lean,
                                                                            direction),
        }))
    return out


def _signal_budget(monitor, world: World, stream, onset_index: int) -> dict:
    """What the first ``DEADLINE`` ratings after onset hold: users, and ratings the shift moved."""
    rows = stream.iloc[onset_index: onset_index + DEADLINE]
    user_ids, movie_ids = rows["user_id"].to_numpy(), rows["movie_id"].to_numpy()
    before = np.full(len(rows), world.onset - 1)
    moved = world.expected_rating(user_ids, movie_ids, rows["timestamp"].to_numpy()) - \
        world.expected_rating(user_ids, movie_ids, before)
    known = monitor.model.personal_index(user_ids) >= 0
    affected = world.taste_shift["affected"][user_ids - 1]
    hit = np.abs(moved) > 1e-9
    return {"users": len(np.unique(user_ids)), "known users": len(np.unique(user_ids[known])),
            "known affected users": len(np.unique(user_ids[known & affected])),
            "moved ratings of known users": int((hit & known).sum()),
            "stars they moved (mean)": float(np.abs(moved[hit & known]).mean()) if (hit & known).any() else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    nulls = {name: [] for name in STATISTICS}
    shifted = {name: [] for name in STATISTICS}  # per seed: p-values of the windows within the deadline
    budgets = []
    for seed in range(args.seeds):
        monitor, cut, _ = trained_monitor(seed)
        taste = World(WorldConfig(), Scenario.parse("taste_shift"), seed)
        direction = np.zeros(len(GENRES))
        direction[taste.taste_shift["genres"]] = taste.taste_shift["direction"]
        unchanged = World(WorldConfig(), Scenario.parse("none"), seed)
        for _, p_values in _p_values(monitor, unchanged, *_stream(unchanged, cut), direction):
            for name in STATISTICS:
                if p_values[name] is not None:
                    nulls[name].append(p_values[name])
        stream, onset_index = _stream(taste, cut)
        budgets.append(_signal_budget(monitor, taste, stream, onset_index))
        windows = [p for end, p in _p_values(monitor, taste, stream, onset_index, direction) if 0 < end <= DEADLINE]
        for name in STATISTICS:
            shifted[name].append([p[name] for p in windows if p[name] is not None])
        print(f"  seed {seed} done", file=sys.stderr, flush=True)

    rows = []
    for name in STATISTICS:
        null = np.array(nulls[name])
        level = float(np.quantile(null, FALSE_ALARMS))
        caught = np.mean([any(p <= level for p in seed) for seed in shifted[name]])
        nominal = np.mean([any(p < 0.001 for p in seed) for seed in shifted[name]])
        rows.append([name, f"{caught:.0%}", f"{level:.2g}", f"{nominal:.0%}", f"{np.mean(null < 0.001):.1%}", len(null)])
    print_table(rows, ["statistic", f"caught at {FALSE_ALARMS:.0%} false alarms", "its level", "caught at 0.001",
                       "false alarms at 0.001", "none windows"],
                title=f"benchmarks/taste_shift_ceiling.py: taste_shift, {args.seeds} seeds, windows of {WINDOW:,}; "
                      f"caught = a window ending within {DEADLINE:,} ratings of onset is flagged")
    print()
    print_table([[name, f"{np.median([b[name] for b in budgets]):.3g}", f"{min(b[name] for b in budgets):.3g}"]
                 for name in budgets[0]], ["in the first 2,000 ratings after onset", "median over seeds", "fewest"])


if __name__ == "__main__":
    main()
