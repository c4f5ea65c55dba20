"""The canary analysis' statistics: the always-valid interval keeps its error under peeking (a
fixed-sample interval checked as often does not), decisions in both directions, histogram
quantiles as PromQL computes them, counters across a restart."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reelops.deploy.analysis import (INCONCLUSIVE, PROMOTE, ROLLBACK, CanaryPolicy, RevisionSeries, half_width, judge,
                                     quantile, series_from_samples, share_above)

STARS = np.array([1, 2, 3, 4, 5], dtype=float)
# ml-100k's star shares.
SHARES = np.array([0.061, 0.114, 0.271, 0.342, 0.212])
MEAN = float(STARS @ SHARES)


def _latency_buckets(seconds: np.ndarray) -> dict:
    from reelops.serving.guard import INFERENCE_BUCKETS

    bounds = [*INFERENCE_BUCKETS, math.inf]
    return {bound: float((seconds <= bound).sum()) for bound in bounds}


def _series(ratings: np.ndarray, requests: int, latency: np.ndarray, errors: int = 0) -> RevisionSeries:
    return RevisionSeries(requests=requests, errors=errors, buckets=_latency_buckets(latency), feedback=len(ratings),
                          stars=float(ratings.sum()), stars_squared=float((ratings ** 2).sum()))


def _shifted_shares(shift: float) -> np.ndarray:
    """Star shares whose mean is ``MEAN - shift`` (mass moved between 4 and 3 stars)."""
    shares = SHARES.copy()
    shares[3] -= shift
    shares[2] += shift
    return shares


def _sequential_run(rng, canary_shares, policy, peek_every: int = 200, limit: int = 6000, fixed_interval=False):
    """One analysis with a look every ``peek_every`` canary requests; returns its decision."""
    latency = rng.lognormal(np.log(0.003), 0.2, limit * 4)
    stable_ratings = rng.choice(STARS, size=limit * 4, p=SHARES)
    canary_ratings = rng.choice(STARS, size=limit, p=canary_shares)
    for n in range(peek_every, limit + 1, peek_every):
        canary = _series(canary_ratings[:n], n, latency[:n])
        stable = _series(stable_ratings[:4 * n], 4 * n, latency[limit:limit + 4 * n])
        if fixed_interval:
            difference = stable.stars / stable.feedback - canary.stars / canary.feedback
            spread = 1.96 * math.sqrt(np.var(canary_ratings[:n]) / n + np.var(stable_ratings[:4 * n]) / (4 * n))
            if difference - spread > policy.stars_margin:
                return ROLLBACK
            if difference + spread <= policy.stars_margin:
                return PROMOTE
            continue
        decision = judge(canary, stable, policy)["decision"]
        if decision != "continue":
            return decision
    return INCONCLUSIVE


def test_the_interval_is_the_mixture_sprt_boundary():
    variance, tau, alpha = 0.004, 0.05, 0.05 / 3
    width = half_width(variance, tau, alpha)
    ratio = math.sqrt(variance / (variance + tau ** 2)) * math.exp(tau ** 2 * width ** 2 / (2 * variance * (variance + tau ** 2)))
    assert ratio == pytest.approx(1 / alpha)
    assert half_width(variance / 4, tau, alpha) < width  # more evidence, a narrower interval


def test_peeking_keeps_the_error_of_the_always_valid_interval_and_breaks_a_fixed_one():
    """A canary worse by exactly the margin must not be promoted, however often one looks."""
    policy = CanaryPolicy(stars_margin=0.1, min_canary_requests=100, min_feedback=50, max_canary_requests=6000)
    at_margin = _shifted_shares(0.1)
    runs = 120
    sequential = [_sequential_run(np.random.default_rng(seed), at_margin, policy) for seed in range(runs)]
    fixed = [_sequential_run(np.random.default_rng(seed), at_margin, policy, fixed_interval=True) for seed in range(runs)]
    wrongly_promoted = sequential.count(PROMOTE) / runs
    assert wrongly_promoted <= policy.alpha, sequential
    # The same looks with a 95% fixed-sample interval promote far more often than 5% of the time.
    assert fixed.count(PROMOTE) / runs > 2 * policy.alpha


def test_a_clearly_worse_canary_is_rolled_back_and_an_equal_one_promoted():
    policy = CanaryPolicy(stars_margin=0.1, min_canary_requests=100, min_feedback=50, max_canary_requests=6000)
    worse = [_sequential_run(np.random.default_rng(seed), _shifted_shares(0.3), policy) for seed in range(40)]
    equal = [_sequential_run(np.random.default_rng(seed), SHARES, policy) for seed in range(40)]
    assert worse.count(ROLLBACK) == 40
    assert equal.count(PROMOTE) >= 38 and equal.count(ROLLBACK) == 0


def test_errors_and_latency_roll_back_and_the_maximum_ends_undecided():
    rng = np.random.default_rng(3)
    ratings = rng.choice(STARS, size=2000, p=SHARES)
    fast = rng.lognormal(np.log(0.003), 0.2, 8000)
    stable = _series(ratings, 8000, fast)
    policy = CanaryPolicy()
    failing = judge(_series(ratings[:1000], 2000, fast[:2000], errors=60), stable, policy)
    assert failing["decision"] == ROLLBACK and "errors" in failing["reason"]
    slow = judge(_series(ratings[:1000], 2000, fast[:2000] * 4), stable, policy)
    assert slow["decision"] == ROLLBACK and "latency" in slow["reason"]
    latency = next(c for c in slow["comparisons"] if c["metric"] == "latency")
    assert latency["canary_p95_ms"] == pytest.approx(4 * latency["stable_p95_ms"], rel=0.1)
    # A few milliseconds more than a 3 ms p95 is within the slack: not a reason to roll back.
    nudged = judge(_series(ratings[:1000], 2000, fast[:2000] * 1.3), stable, policy)
    assert next(c for c in nudged["comparisons"] if c["metric"] == "latency")["state"] == "non-inferior"
    undecided = judge(_series(ratings[:60], 20_000, fast[:2000]), stable, policy)
    assert undecided["decision"] == INCONCLUSIVE and "quality" in undecided["reason"]


def test_histogram_quantiles_match_numpy_within_a_bucket():
    seconds = np.random.default_rng(0).lognormal(np.log(0.004), 0.5, 20_000)
    buckets = _latency_buckets(seconds)
    assert quantile(buckets, 0.95) == pytest.approx(np.quantile(seconds, 0.95), rel=0.05)
    threshold = float(np.quantile(seconds, 0.9))
    assert share_above(buckets, threshold) / len(seconds) == pytest.approx(0.1, abs=0.005)
    assert quantile({}, 0.95) is None


def test_series_by_revision_and_a_restarted_process():
    samples = [("reelops_inference_requests_total", {"revision": "r2", "code": "2xx"}, 90.0),
               ("reelops_inference_requests_total", {"revision": "r2", "code": "5xx"}, 10.0),
               ("reelops_inference_seconds_bucket", {"revision": "r2", "le": "0.005"}, 80.0),
               ("reelops_inference_seconds_bucket", {"revision": "r2", "le": "+Inf"}, 90.0),
               ("reelops_feedback_total", {"revision": "r2", "version": "2"}, 4.0),
               ("reelops_feedback_stars_total", {"revision": "r2", "version": "2"}, 14.0),
               ("reelops_feedback_total", {"revision": "unattributed", "version": "unknown"}, 7.0),
               ("reelops_inference_requests_total", {"code": "2xx"}, 5.0)]  # no revision: not ours
    series = series_from_samples(samples)
    assert set(series) == {"r2", "unattributed"}
    assert (series["r2"].requests, series["r2"].errors, series["r2"].feedback) == (100.0, 10.0, 4.0)
    assert series["r2"].buckets == {0.005: 80.0, math.inf: 90.0}
    later = RevisionSeries(requests=130, errors=10, buckets={0.005: 110.0, math.inf: 120.0}, feedback=9, stars=30)
    assert later.since(series["r2"]).requests == 30 and later.since(series["r2"]).buckets[0.005] == 30
    restarted = RevisionSeries(requests=12, errors=0, buckets={0.005: 12.0, math.inf: 12.0}, feedback=1, stars=4)
    assert restarted.since(series["r2"]).requests == 12 and restarted.since(series["r2"]).buckets[0.005] == 12


def test_the_policy_refuses_rules_out_of_range():
    with pytest.raises(ValueError, match="alpha"):
        CanaryPolicy(alpha=1.5)
    with pytest.raises(ValueError, match="latency_ratio"):
        CanaryPolicy(latency_ratio=0.9)
