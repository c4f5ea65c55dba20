"""Automatic canary analysis: compare canary and stable while traffic flows, decide on its own.

Three comparisons, each as "how much worse the canary is" (positive is worse):

- **quality**: the stable revision's mean feedback rating minus the canary's, in stars (users
  rate what each revision recommended; :mod:`reelops.deploy.feedback`);
- **errors**: the canary's share of 5xx inference answers minus the stable one's;
- **latency**: the share of the canary's answers slower than the stable revision's p95 times
  ``latency_ratio`` (or plus ``latency_slack_ms``, whichever is more), minus 5%. The canary's
  p95 is within that bound exactly when at most 5% of its answers are slower, so a p95
  comparison becomes a proportion, which a sequential test handles with the same formula as the
  others. (The stable p95, from about nine times as many answers at a 10% canary, is taken as
  known.) The absolute slack is there because a ratio alone judges milliseconds nobody feels
  and that traffic share alone produces: a revision with a fifth of the traffic answered with a
  p95 31% above its neighbour's (4.1 against 3.1 ms) with the very same model, its caches
  colder between requests.

**The sequential test.** Each difference gets an always-valid confidence interval: the
mixture sequential probability ratio test of Johari, Koomen, Pekelis and Walsh ("Peeking at
A/B tests", KDD 2017; what Optimizely runs), with a normal mixture of variance ``tau²`` over
the difference and plug-in variances. Its interval holds at every moment at once, so the
analysis may look after every scrape and stop the moment the evidence suffices, without the
inflated error of repeated fixed-sample tests. ``tau`` is set to each comparison's margin, the
size of change where a fast decision matters most. ``alpha`` is split over the three
comparisons (union bound): the chance that any interval ever misses its true value is at most
``alpha``. An SPRT against one fixed alternative would decide faster when that alternative is
right, but a canary may be worse by any amount; the mixture is near-optimal across them.

**The rules.** Roll back as soon as any comparison's interval lies wholly above its margin (the
canary is shown worse by more than the margin). Promote once every interval lies wholly below
its margin (shown non-inferior within the margins) and the canary answered at least
``min_canary_requests``. When the canary has answered ``max_canary_requests`` without either,
the decision is "inconclusive", and a canary that has not earned promotion is rolled back. A
canary whose metrics cannot be read for ``unreachable_polls`` polls in a row is rolled back.

**One code path for both targets.** The inputs are Prometheus series, per revision: the
predictor's ``reelops_inference_requests_total{code}`` and ``reelops_inference_seconds``
(histogram; :mod:`reelops.serving.guard`) and the feedback counters
``reelops_feedback_{total,stars_total,stars_squared_total}``. :class:`PlaneMetrics` reads them
from each predictor's ``/metrics`` (and the router's, for feedback) on the local plane;
:class:`PrometheusMetrics` reads the same series by PromQL over Prometheus' HTTP API, selecting
revisions by the ``revision`` label the PodMonitor copies from Knative's
``serving.knative.dev/revision`` pod label. The analysis itself (:func:`judge`,
:func:`analyse`) sees only counters taken at the start and at each poll.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

PROMOTE, ROLLBACK, INCONCLUSIVE, CONTINUE = "promote", "rollback", "inconclusive", "continue"
# Share of answers above the p95, by definition.
TAIL_SHARE = 0.05
# The latency comparison's margin is 0 (the ratio is in its threshold); its mixture is tuned to a
# slow share 2 points off the 5% line.
LATENCY_TAU = 0.02


@dataclass(frozen=True)
class CanaryPolicy:
    """The rules of the automatic analysis (the README gives the reasons for the defaults).

    Attributes:
        stars_margin: how much lower the canary's mean feedback rating may be (stars).
        error_margin: how much larger the canary's share of failed answers may be.
        latency_ratio: how much slower the canary's p95 may be (1.2: within 20%) ...
        latency_slack_ms: ... or how many milliseconds slower, whichever is more.
        alpha: the chance of any wrong decision, split over the three comparisons.
        min_canary_requests: answers from the canary before it may be promoted.
        min_feedback: ratings per revision before quality is judged either way.
        max_canary_requests: answers from the canary after which the analysis gives up
            (inconclusive: rolled back).
        poll_seconds: seconds between reads of the metrics.
        timeout_seconds: the longest an analysis runs (inconclusive after it).
        unreachable_polls: polls in a row without the canary's metrics before it is rolled back.
    """

    stars_margin: float = 0.05
    error_margin: float = 0.005
    latency_ratio: float = 1.2
    latency_slack_ms: float = 5.0
    alpha: float = 0.05
    min_canary_requests: int = 500
    min_feedback: int = 50
    max_canary_requests: int = 20_000
    poll_seconds: float = 2.0
    timeout_seconds: float = 3600.0
    unreachable_polls: int = 10

    def __post_init__(self):
        problems = [name for name, value in (("stars_margin", self.stars_margin), ("error_margin", self.error_margin),
                                             ("poll_seconds", self.poll_seconds),
                                             ("timeout_seconds", self.timeout_seconds)) if not value > 0]
        if not 0 < self.alpha < 1:
            problems.append("alpha")
        if not self.latency_ratio > 1:
            problems.append("latency_ratio")
        if not self.latency_slack_ms >= 0:
            problems.append("latency_slack_ms")
        if not 0 < self.min_canary_requests <= self.max_canary_requests:
            problems.append("min_canary_requests/max_canary_requests")
        if problems:
            raise ValueError(f"canary policy: {', '.join(problems)} out of range")


@dataclass
class RevisionSeries:
    """The counters of one revision (since its process started, or since a baseline)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict = field(default_factory=dict)  # upper bound (s) -> answers that took at most that long
    feedback: float = 0.0
    stars: float = 0.0
    stars_squared: float = 0.0

    @property
    def timed(self) -> float:
        """Answers in the latency histogram (its ``+Inf`` bucket, the largest count)."""
        return max(self.buckets.values(), default=0.0)

    def since(self, earlier: "RevisionSeries") -> "RevisionSeries":
        """What happened after ``earlier``; a counter that went down was reset (the process restarted)."""

        def delta(now: float, before: float) -> float:
            return now - before if now >= before else now

        reset = self.requests < earlier.requests
        return RevisionSeries(
            requests=delta(self.requests, earlier.requests), errors=delta(self.errors, earlier.errors),
            buckets={le: (count if reset else delta(count, earlier.buckets.get(le, 0.0)))
                     for le, count in self.buckets.items()},
            feedback=delta(self.feedback, earlier.feedback), stars=delta(self.stars, earlier.stars),
            stars_squared=delta(self.stars_squared, earlier.stars_squared))


# ------------------------------------------------------------------ the statistics


def half_width(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the mixture SPRT's always-valid interval for a difference of estimate variance ``variance``.

    The test rejects ``difference = d`` when the mixture likelihood ratio
    ``sqrt(V / (V + tau²)) * exp(tau² (estimate - d)² / (2 V (V + tau²)))`` reaches ``1 / alpha``;
    the interval is the set of ``d`` not rejected.
    """
    if variance <= 0:
        return 0.0
    tau2 = tau * tau
    return math.sqrt(variance * (variance + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((variance + tau2) / variance)))


def quantile(buckets: dict, q: float) -> float | None:
    """The ``q`` quantile of a cumulative histogram, interpolated inside its bucket (PromQL's
    ``histogram_quantile``); None without observations."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


def share_above(buckets: dict, threshold: float) -> float:
    """How many observations of a cumulative histogram exceed ``threshold`` (interpolated inside its bucket)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if threshold <= bound:
            if math.isinf(bound):
                return total - below
            inside = (count - below) * (threshold - lower) / (bound - lower) if bound > lower else 0.0
            return total - (below + inside)
        lower, below = bound, count
    return 0.0


def _comparison(name: str, estimate: float, variance: float, margin: float, alpha: float, ready: bool,
                tau: float | None = None, **shown) -> dict:
    width = half_width(variance, tau or margin, alpha)
    low, high = estimate - width, estimate + width
    if not ready:
        state = "waiting"
    elif low > margin:
        state = "worse"
    elif high <= margin:
        state = "non-inferior"
    else:
        state = "undecided"
    return {"metric": name, "worse_by": round(estimate, 6), "interval": [round(low, 6), round(high, 6)],
            "margin": margin, "state": state, **shown}


def _mean_and_variance(n: float, total: float, squares: float) -> tuple:
    mean = total / n
    variance = max(squares / n - mean * mean, 0.0) * n / (n - 1) if n > 1 else 0.0
    return mean, variance


def _share_variance(count: float, n: float) -> float:
    """Variance of a share's estimate, ``count`` of ``n``, with the share by Laplace's rule: a share
    seen as 0 of n still has a variance, so an interval never collapses to a point on a clean start."""
    share = (count + 1.0) / (n + 2.0)
    return share * (1 - share) / max(n, 1)


def judge(canary: RevisionSeries, stable: RevisionSeries, policy: CanaryPolicy) -> dict:
    """The decision on the evidence so far: ``{"decision", "reason", "canary_requests", "comparisons"}``."""
    alpha = policy.alpha / 3
    comparisons = []
    # Quality: stable mean rating - canary mean rating.
    ready = min(canary.feedback, stable.feedback) >= max(policy.min_feedback, 2)
    if ready:
        canary_mean, canary_var = _mean_and_variance(canary.feedback, canary.stars, canary.stars_squared)
        stable_mean, stable_var = _mean_and_variance(stable.feedback, stable.stars, stable.stars_squared)
        comparisons.append(_comparison(
            "quality", stable_mean - canary_mean, canary_var / canary.feedback + stable_var / stable.feedback,
            policy.stars_margin, alpha, True, canary=round(canary_mean, 4), stable=round(stable_mean, 4),
            n=[int(canary.feedback), int(stable.feedback)], unit="stars"))
    else:
        comparisons.append({"metric": "quality", "state": "waiting", "margin": policy.stars_margin,
                            "n": [int(canary.feedback), int(stable.feedback)], "unit": "stars"})
    # Errors: canary share of 5xx - stable share.
    ready = canary.requests >= 1 and stable.requests >= 1
    canary_share = canary.errors / canary.requests if canary.requests else 0.0
    stable_share = stable.errors / stable.requests if stable.requests else 0.0
    comparisons.append(_comparison(
        "errors", canary_share - stable_share,
        _share_variance(canary.errors, canary.requests) + _share_variance(stable.errors, stable.requests),
        policy.error_margin, alpha, ready, canary=round(canary_share, 5), stable=round(stable_share, 5),
        n=[int(canary.requests), int(stable.requests)], unit="share of answers"))
    # Latency: canary share slower than the bound (stable p95 x ratio, or + slack), minus 5%.
    stable_p95, canary_p95 = quantile(stable.buckets, 0.95), quantile(canary.buckets, 0.95)
    timed = [int(canary.timed), int(stable.timed)]
    if stable_p95 and canary.timed >= 1 and stable.timed >= 20:
        bound = max(policy.latency_ratio * stable_p95, stable_p95 + policy.latency_slack_ms / 1000)
        slow = share_above(canary.buckets, bound)
        comparisons.append(_comparison(
            "latency", slow / canary.timed - TAIL_SHARE, _share_variance(slow, canary.timed), 0.0, alpha, True,
            tau=LATENCY_TAU, canary_p95_ms=round(canary_p95 * 1000, 3), stable_p95_ms=round(stable_p95 * 1000, 3),
            bound_ms=round(bound * 1000, 3), slow_share=round(slow / canary.timed, 5), n=timed,
            unit="share slower than the bound, minus 5%"))
    else:
        comparisons.append({"metric": "latency", "state": "waiting", "margin": 0.0, "n": timed})
    worse = [c for c in comparisons if c["state"] == "worse"]
    verdict = {"canary_requests": int(canary.requests), "comparisons": comparisons}
    if worse:
        return {"decision": ROLLBACK, "reason": "canary worse on " + ", ".join(_said(c) for c in worse), **verdict}
    if all(c["state"] == "non-inferior" for c in comparisons) and canary.requests >= policy.min_canary_requests:
        return {"decision": PROMOTE, "reason": "canary non-inferior on quality, errors and latency", **verdict}
    if canary.requests >= policy.max_canary_requests:
        open_ = ", ".join(c["metric"] for c in comparisons if c["state"] != "non-inferior")
        return {"decision": INCONCLUSIVE, "reason": f"no decision within {policy.max_canary_requests:,} canary "
                                                    f"requests (undecided: {open_})", **verdict}
    return {"decision": CONTINUE, "reason": "gathering evidence", **verdict}


def _said(comparison: dict) -> str:
    low, high = comparison["interval"]
    return f"{comparison['metric']} (worse by {comparison['worse_by']:+.4g}, interval {low:+.4g} to {high:+.4g}, " \
           f"margin {comparison['margin']:g})"


# ------------------------------------------------------------------ reading the series


def series_from_samples(samples) -> dict:
    """Per-revision counters from Prometheus samples ``(name, labels, value)`` that carry a ``revision`` label."""
    by_revision: dict = {}
    for name, labels, value in samples:
        revision = labels.get("revision")
        if not revision:
            continue
        series = by_revision.setdefault(revision, RevisionSeries())
        if name == "reelops_inference_requests_total":
            series.requests += value
            if labels.get("code") == "5xx":
                series.errors += value
        elif name == "reelops_inference_seconds_bucket":
            bound = float(labels["le"])
            series.buckets[bound] = series.buckets.get(bound, 0.0) + value
        elif name == "reelops_feedback_total":
            series.feedback += value
        elif name == "reelops_feedback_stars_total":
            series.stars += value
        elif name == "reelops_feedback_stars_squared_total":
            series.stars_squared += value
    return by_revision


class PlaneMetrics:
    """The series on the local plane: each predictor's ``/metrics`` (labelled with its revision,
    as the PodMonitor labels a pod's series) and the router's (feedback, labelled already)."""

    def __init__(self, plane=None, timeout: float = 2.0):
        from reelops.deploy.local import LocalPlane

        self.plane = plane or LocalPlane()
        self.timeout = timeout

    def read(self, revisions) -> tuple:
        """``(series by revision, revisions whose metrics could not be read)``."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        state = self.plane.read() or {}
        processes = state.get("processes", {})
        samples, unreachable = [], set()
        with httpx.Client(timeout=self.timeout) as http:
            for revision in revisions:
                process = processes.get(revision)
                try:
                    text = http.get(f"http://127.0.0.1:{process['port']}/metrics").text if process else None
                except httpx.HTTPError:
                    text = None
                if text is None:
                    unreachable.add(revision)
                    continue
                samples += [(s.name, {**s.labels, "revision": revision}, s.value)
                            for family in text_string_to_metric_families(text) for s in family.samples]
            router = state.get("router")
            if router:
                try:
                    text = http.get(f"{router['url']}/metrics").text
                    samples += [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
                                for s in family.samples if s.name.startswith("reelops_feedback_")]
                except httpx.HTTPError:
                    pass
        return series_from_samples(samples), unreachable


class PrometheusMetrics:
    """The same series by PromQL over Prometheus' HTTP API (``/api/v1/query``).

    Args:
        url: Prometheus, e.g. ``http://prometheus-operated.monitoring:9090``.
        selector: label matchers every series must carry, e.g. ``namespace="reelops"``.
        timeout: seconds per query.
    """

    QUERIES = {
        "reelops_inference_requests_total": "sum by (revision, code) (reelops_inference_requests_total{%s})",
        "reelops_inference_seconds_bucket": "sum by (revision, le) (reelops_inference_seconds_bucket{%s})",
        "reelops_feedback_total": "sum by (revision) (reelops_feedback_total{%s})",
        "reelops_feedback_stars_total": "sum by (revision) (reelops_feedback_stars_total{%s})",
        "reelops_feedback_stars_squared_total": "sum by (revision) (reelops_feedback_stars_squared_total{%s})",
    }

    def __init__(self, url: str, selector: str = "", timeout: float = 10.0):
        self.url, self.selector, self.timeout = url.rstrip("/"), selector, timeout

    def read(self, revisions) -> tuple:
        """``(series by revision, revisions with no series)``; a failed query raises :class:`MetricsError`."""
        import httpx

        wanted = set(revisions)
        matchers = ", ".join(m for m in (self.selector, 'revision=~"%s"' % "|".join(sorted(wanted))) if m)
        samples = []
        with httpx.Client(timeout=self.timeout) as http:
            for name, query in self.QUERIES.items():
                try:
                    answer = http.get(f"{self.url}/api/v1/query", params={"query": query % matchers})
                    body = answer.json()
                except (httpx.HTTPError, ValueError) as error:
                    raise MetricsError(f"Prometheus at {self.url} did not answer {name}: {error}") from error
                if body.get("status") != "success":
                    raise MetricsError(f"Prometheus at {self.url} refused {query % matchers}: {body.get('error')}")
                samples += [(name, item["metric"], float(item["value"][1])) for item in body["data"]["result"]]
        series = series_from_samples(samples)
        return series, {revision for revision in wanted if revision not in series}


class MetricsError(RuntimeError):
    """The metrics could not be read at all (says where)."""


def analyse(source, canary: str, stable: str, policy: CanaryPolicy = CanaryPolicy(), progress=None,
            clock=time.monotonic, sleep=time.sleep) -> dict:
    """Watch canary and stable until a decision; returns :func:`judge`'s verdict with the timings.

    Args:
        source: :class:`PlaneMetrics` or :class:`PrometheusMetrics` (anything with ``read(revisions)``).
        canary, stable: the two revisions.
        policy: the rules.
        progress: called with each verdict (the CLI prints it, the plane writes it for ``status``).
    """
    started = clock()
    before, _ = source.read([canary, stable])
    empty = RevisionSeries()
    base_canary, base_stable = before.get(canary, empty), before.get(stable, empty)
    missing, polls = 0, 0
    while True:
        sleep(policy.poll_seconds)
        polls += 1
        now, unreachable = source.read([canary, stable])
        missing = missing + 1 if canary in unreachable else 0
        verdict = judge(now.get(canary, base_canary).since(base_canary), now.get(stable, base_stable).since(base_stable),
                        policy)
        if missing >= policy.unreachable_polls:
            verdict.update(decision=ROLLBACK, reason=f"the canary's metrics could not be read {missing} polls in a row")
        elif verdict["decision"] == CONTINUE and clock() - started >= policy.timeout_seconds:
            verdict.update(decision=INCONCLUSIVE, reason=f"no decision within {policy.timeout_seconds:g} s")
        verdict.update(canary=canary, stable=stable, seconds=round(clock() - started, 1), polls=polls,
                       policy=asdict(policy))
        if progress is not None:
            progress(verdict)
        if verdict["decision"] != CONTINUE:
            return verdict


def summary(verdict: dict) -> str:
    """One line: the decision, its reason, the canary's answers and each comparison's state."""
    states = ", ".join(f"{c['metric']} {c['state']}" for c in verdict["comparisons"])
    return f"{verdict['decision']}: {verdict['reason']} ({verdict['canary_requests']:,} canary requests; {states})"
