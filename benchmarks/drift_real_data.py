"""The drift monitor on real data: ml-100k's own continuation and real sub-populations of it.

For each cut point (50%, 65%, 80% of the ratings in time order) the default model and its
monitor are built on the ratings before the cut (user-time holdout inside them), then fed
windows of 1,000 consecutive ratings after the cut:

- ``unchanged``: the continuation as it came;
- real shifts, made by selecting real sub-populations of the continuation: only students,
  only women, only users over 45 (user side), only movies released before 1980, only the 100
  titles most rated before the cut (movie side).

Prints, per case, the windows, the alarms of each detector (with the feature that alarmed most
and the median size of its change: total variation or KS distance, stars for errors), the
share of ratings on titles the model never saw, the verdicts and the retraining policy's
decision; then the figures issue 20 sets goals on: the share of unchanged windows
with a user-data-drift alarm (goal <= 10%) and, for each sub-population, the share of its
windows flagged by the detector that should see it (goal >= 90%). A case with fewer than 3
full windows at a cut is reported and left out of the shares.

    .venv/bin/python benchmarks/drift_real_data.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reelops.console import print_table  # noqa: E402

ML100K = ROOT.parent / "shared" / "data" / "ml-100k"
CUTS = (0.5, 0.65, 0.8)
WINDOW = 1000
# Which detector should see each real shift.
EXPECTED = {"students": "user_data_drift", "women": "user_data_drift", "over 45": "user_data_drift",
            "released before 1980": "movie_data_drift", "top 100 titles": "movie_data_drift"}


def cases(after, before, users, movies) -> dict:
    """The continuation and its real sub-populations (row selections of the ratings after the cut)."""
    people = users.set_index("user_id")
    occupation = after["user_id"].map(people["occupation"])
    gender = after["user_id"].map(people["gender"])
    age = after["user_id"].map(people["age"])
    year = after["movie_id"].map(movies.set_index("movie_id")["year"])
    top = before["movie_id"].value_counts().index[:100]
    return {"unchanged": after, "students": after[occupation == "student"], "women": after[gender == "F"],
            "over 45": after[age > 45], "released before 1980": after[year < 1980],
            "top 100 titles": after[after["movie_id"].isin(top)]}


def largest_change(findings: list, detector: str) -> str:
    """The feature that alarmed most often in a case, with its median size over those windows."""
    sizes: dict = {}
    for f in findings:
        result = f.detectors[detector]
        if result.drift:
            for feature, p in result.p_values.items():
                if p < result.threshold:
                    sizes.setdefault(feature, []).append(result.sizes.get(feature, float("nan")))
    if not sizes:
        return ""
    feature, values = max(sizes.items(), key=lambda item: len(item[1]))
    return f"({feature} {np.median(values):.2f})"


def main() -> None:
    if not (ML100K / "u.data").is_file():
        sys.exit(f"benchmarks/drift_real_data.py: ml-100k not found at {ML100K} (it is never shipped with reelops)")
    from reelops.data import user_time_holdout, validate_source
    from reelops.models import make_model
    from reelops.monitoring import DETECTORS, Monitor, time_windows
    from reelops.monitoring.policy import PolicyState, decide

    data = validate_source(ML100K)
    ratings = data.ratings.sort_values("timestamp", kind="stable").reset_index(drop=True)
    flagged = {name: [0, 0] for name in ("unchanged", *EXPECTED)}  # [windows flagged, windows judged]
    for cut in CUTS:
        split = int(cut * len(ratings))
        before, after = ratings.iloc[:split], ratings.iloc[split:]
        train, heldout = user_time_holdout(before, 0.2)
        model = make_model("hybrid", epochs=30).fit(train, users=data.users, movies=data.movies)
        monitor = Monitor(model).build(train, heldout, data.users, data.movies)
        rows = []
        for name, selected in cases(after, before, data.users, data.movies).items():
            windows = time_windows(selected, WINDOW)
            findings = [monitor.check(window, data.users, data.movies, seed=index) for index, window in enumerate(windows)]
            alarms = {detector: sum(f.detectors[detector].drift for f in findings) for detector in DETECTORS}
            verdicts = [f.verdict for f in findings]
            decision = decide(findings, new_labels=len(selected), data_time=int(selected["timestamp"].max()),
                              state=PolicyState()) if findings else None
            unseen = np.mean([f.detectors["movie_data_drift"].sizes.get("unseen_titles", 0.0) for f in findings]) \
                if findings else 0.0
            rows.append([name, len(windows), *(f"{alarms[d]}/{len(windows)} {largest_change(findings, d)}" for d in DETECTORS),
                         f"{unseen:.1%}", ", ".join(f"{v} {verdicts.count(v)}" for v in sorted(set(verdicts))) or "-",
                         "retrain" if decision and decision.retrain else "keep"])
            if len(windows) >= 3:
                detector = EXPECTED.get(name, "user_data_drift")
                flagged[name][0] += alarms[detector]
                flagged[name][1] += len(windows)
        print_table(rows, ["case", "windows", *DETECTORS, "unseen titles", "verdicts", "policy"],
                    title=f"cut at {cut:.0%} of ml-100k in time order: {len(before):,} ratings before, "
                          f"{len(after):,} after")
        print()
    unchanged = flagged["unchanged"][0] / max(flagged["unchanged"][1], 1)
    print(f"unchanged continuation: user data drift alarms in {unchanged:.1%} of {flagged['unchanged'][1]} windows "
          f"(goal <= 10%): {'met' if unchanged <= 0.10 else 'NOT met'}")
    for name, detector in EXPECTED.items():
        hit, total = flagged[name]
        share = hit / total if total else float("nan")
        verdict = "met" if total and share >= 0.9 else "NOT met"
        print(f"{name}: flagged by {detector} in {share:.1%} of {total} windows (goal >= 90%): {verdict}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
