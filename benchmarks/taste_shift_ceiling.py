"""How much of a taste shift the first 2,000 ratings after onset can show, whatever the detector.

The monitoring issue first asked the model drift detector to catch ``taste_shift`` within
2,000 ratings in 90% of seeds. This script asks how far better statistics, or a better
model, could go on the same windows, each judged alone (``benchmarks/drift_detection.py``
measures the detector itself, with its running evidence over windows). For each
seed: the drift benchmark's model and reference, and its windows of 1,000 ratings from
the ``none`` and ``taste_shift`` worlds. Six statistics, each judged at the level that
gives 1% false alarms on the ``none`` windows of the same seeds (and at 0.001 nominal):

- detector: the model drift detector's within-user genre test on the model's errors;
- detector, exact p-values: the same sums, with each user's personal genre lean (what
  the model did not learn of that user's taste, its spread measured on held-out rows)
  added to their covariance, which makes the p-values exact instead of nominal;
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

from drift_detection import DEADLINE, WINDOW, generated, trained_monitor  # noqa: E402

from reelops.console import print_table  # noqa: E402
from reelops.data import user_time_holdout  # noqa: E402
from reelops.data.layouts import GENRES  # noqa: E402
from reelops.monitoring.statistics import (  # noqa: E402
    chi_square_p_value, personal_lean_spread, within_user, within_user_genre_sums, within_user_genre_test)
from reelops.simulate import World  # noqa: E402

STATISTICS = ["detector", "detector, exact p-values", "told the answer", "perfect model", "perfect model, every user",
              "perfect model, every user, told the answer"]
FALSE_ALARMS = 0.01


def _directed_p_value(errors, flags, users, lean, direction: np.ndarray) -> float | None:
    """One-sided p-value of the within-user genre sums along the true direction of the shift."""
    sums = within_user_genre_sums(errors, flags, users, lean)
    if sums is None:
        return None
    statistic, covariance, genres = sums
    weights = direction[genres]
    variance = weights @ covariance @ weights
    return float(stats.norm.sf(weights @ statistic / np.sqrt(variance))) if variance > 0 else None


def _per_user(errors, flags, users, lean) -> list:
    """(centred genre flags, errors beyond the reference lean) of each user with enough rows."""
    residual, genres, codes, _ = within_user(errors, flags, users)
    residual = residual - genres @ lean
    return [(genres[codes == code], residual[codes == code]) for code in range(codes.max() + 1)] if len(codes) else []


def _personal_lean_spread(monitor, ratings, cut: int, lean: np.ndarray) -> float:
    """Variance of a user's own genre lean around the reference, by moments on held-out rows
    (the monitor's own estimate, :func:`reelops.monitoring.statistics.personal_lean_spread`)."""
    heldout = user_time_holdout(ratings[ratings["timestamp"] < cut], 0.2)[1]
    errors, flags = monitor._errors(heldout)
    return personal_lean_spread(errors["error"].to_numpy(float), flags, errors["user_id"].to_numpy(), lean)


def _exact_p_value(errors, flags, users, lean, spread: float) -> float | None:
    """The detector's chi-square, with each user's personal genre lean added to its covariance."""
    sums = within_user_genre_sums(errors, flags, users, lean)
    if sums is None:
        return None
    statistic, covariance, genres = sums
    columns = genres - 1  # the sums leave ``unknown`` out
    for flags_of_user, _ in _per_user(errors, flags, users, lean):
        gram = flags_of_user.T @ flags_of_user
        covariance = covariance + spread * (gram @ gram)[np.ix_(columns, columns)]
    return chi_square_p_value(statistic, covariance)


def _stream(world: World, ratings, cut: int) -> tuple:
    """The world's ratings from ``cut`` on, in time order, and the index of the first after onset."""
    stream = ratings[ratings["timestamp"] >= cut].reset_index(drop=True)
    return stream, int((stream["timestamp"] < world.onset).sum())


def _reference_lean(monitor) -> np.ndarray:
    return np.array([monitor.reference["errors"]["personal"]["within_user_genre_lean"][g] for g in GENRES[1:]])


def _p_values(monitor, world: World, stream, onset_index: int, direction: np.ndarray, spread: float) -> list:
    """(interactions after onset at the window's end, {statistic: p-value}) per window."""
    lean = _reference_lean(monitor)
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
            "detector": within_user_genre_test(signed, flags, users, lean),
            "detector, exact p-values": _exact_p_value(signed, flags, users, lean, spread),
            "told the answer": _directed_p_value(signed, flags, users, lean, direction),
            "perfect model": within_user_genre_test(perfect[known], all_flags[known], user_ids[known], no_lean),
            "perfect model, every user": within_user_genre_test(perfect, all_flags, user_ids, no_lean),
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
    budgets, spreads = [], []
    for seed in range(args.seeds):
        monitor, cut, _ = trained_monitor(seed)
        unchanged, tables = generated("none", 1.0, seed)  # the model's own world, kept by the drift benchmark
        ratings = tables["ratings"]
        spread = _personal_lean_spread(monitor, ratings, cut, _reference_lean(monitor))
        spreads.append(spread)
        taste, tables = generated("taste_shift", 1.0, seed)
        direction = np.zeros(len(GENRES))
        direction[taste.taste_shift["genres"]] = taste.taste_shift["direction"]
        for _, p_values in _p_values(monitor, unchanged, *_stream(unchanged, ratings, cut), direction, spread):
            for name in STATISTICS:
                if p_values[name] is not None:
                    nulls[name].append(p_values[name])
        stream, onset_index = _stream(taste, tables["ratings"], cut)
        budgets.append(_signal_budget(monitor, taste, stream, onset_index))
        windows = [p for end, p in _p_values(monitor, taste, stream, onset_index, direction, spread) if 0 < end <= DEADLINE]
        for name in STATISTICS:
            shifted[name].append([p[name] for p in windows if p[name] is not None])
        print(f"  seed {seed} done", file=sys.stderr, flush=True)

    rows = []
    for name in STATISTICS:
        null = np.array(nulls[name])
        level = float(np.quantile(null, FALSE_ALARMS))
        caught = np.mean([any(p <= level for p in seed) for seed in shifted[name]])
        nominal = np.mean([any(p < 0.001 for p in seed) for seed in shifted[name]])
        rows.append([name, f"{caught:.0%}", f"{level:.2g}", f"{nominal:.0%}", f"{np.mean(null < 0.001):.1%}",
                     f"{np.mean(null < 0.05):.1%}", len(null)])
    print_table(rows, ["statistic", f"caught at {FALSE_ALARMS:.0%} false alarms", "its level", "caught at 0.001",
                       "false alarms at 0.001", "at 0.05", "none windows"],
                title=f"benchmarks/taste_shift_ceiling.py: taste_shift, {args.seeds} seeds, windows of {WINDOW:,}; "
                      f"caught = a window ending within {DEADLINE:,} ratings of onset is flagged")
    print()
    print_table([[name, f"{np.median([b[name] for b in budgets]):.3g}", f"{min(b[name] for b in budgets):.3g}"]
                 for name in budgets[0]], ["in the first 2,000 ratings after onset", "median over seeds", "fewest"])
    print(f"\na user's personal genre lean the model did not learn (held-out rows): standard deviation "
          f"{np.sqrt(np.median(spreads)):.2f} stars per genre (median over seeds)")


if __name__ == "__main__":
    main()
