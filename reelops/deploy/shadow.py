"""Shadow deployment: the new model answers every request too, and nobody waits for it or sees it.

KServe has no traffic mirror (kserve#2978), but every predictor can log: KServe's logger sends
each request and its response as CloudEvents (binary mode, ``ce-type``
``org.kubeflow.serving.inference.request`` / ``.response``, paired by ``ce-id``, ``ce-time`` the
moment each happened). The **comparator** (``reelops shadow``, in the ``serve`` image) takes
those events, replays each request against the shadow predictor and compares the two answers.
The primary answered before its events left, so callers never wait on the shadow; the
comparator's queue is bounded and whatever it cannot take is dropped and counted, never
pushed back.

- On the local plane the router is the logger (:class:`EventLogger`, the same events, sent in
  batches); the shadow predictor and the comparator only get CPU time the serving processes
  leave idle (``SCHED_IDLE``), as pods of their own would not compete with the primary's.
- On KServe the primary InferenceService's ``spec.predictor.logger`` (``mode: all``) points at
  the comparator's Service (rendered by :mod:`reelops.manifests`).

The report, per window of ``window`` compared requests: **agreement@k** (the share of the
primary's top k the shadow also recommends), **rank correlation** (Spearman's, over the movies
either recommends, a movie one of them left out ranked k+1), the mean absolute **score
difference** on the movies both recommend (the scores of different algorithms may live on
different scales: read it for versions of one algorithm), and the **latency** of each side (the
primary's from its two events' times, the shadow's as the comparator waited for it, on every
20th request replayed alone; the others are replayed together, up to 64 as one request of many
instances, which the shadow answers for a fraction of the cost of as many requests). The
comparator's own drops (queue full, a request whose response never came) and the shadow's
errors are counted. ``GET /shadow/status`` gives it as JSON, ``/metrics`` for Prometheus.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections import deque

from reelops.deploy.events import BATCH_CONTENT_TYPE, EventIntake, event_sink_app
from reelops.deploy.feedback import FEEDBACK_EVENT_TYPE
from reelops.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE

WINDOW = 200
KEEP_WINDOWS = 50
# Events the router sends in one batch at most.
MAX_BATCH = 256


# ------------------------------------------------------------------ comparing two answers


def compare_answers(primary: dict, shadow: dict, k: int = 10) -> dict:
    """Agreement@k, Spearman rank correlation and mean absolute score difference of two V1 answers,
    averaged over their instances (None where undefined)."""
    agreements, correlations, differences = [], [], []
    for mine, theirs in zip(primary.get("predictions", []), shadow.get("predictions", [])):
        first, second = list(mine.get("movie_ids", []))[:k], list(theirs.get("movie_ids", []))[:k]
        if not first:
            continue
        common = set(first) & set(second)
        agreements.append(len(common) / len(first))
        correlation = _spearman(first, second, k)
        if correlation is not None:
            correlations.append(correlation)
        if common:
            mine_scores = dict(zip(first, mine.get("scores", [])))
            their_scores = dict(zip(second, theirs.get("scores", [])))
            differences.append(sum(abs(mine_scores[m] - their_scores[m]) for m in common) / len(common))
    mean = lambda values: sum(values) / len(values) if values else None  # noqa: E731
    return {"agreement": mean(agreements), "rank_correlation": mean(correlations), "score_difference": mean(differences)}


def _spearman(first: list, second: list, k: int) -> float | None:
    union = list(dict.fromkeys(first + second))
    if len(union) < 2:
        return None
    rank_first = {movie: i + 1 for i, movie in enumerate(first)}
    rank_second = {movie: i + 1 for i, movie in enumerate(second)}
    xs = [rank_first.get(movie, k + 1) for movie in union]
    ys = [rank_second.get(movie, k + 1) for movie in union]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    var_x = sum((x - mean_x) ** 2 for x in xs)
    var_y = sum((y - mean_y) ** 2 for y in ys)
    return cov / (var_x * var_y) ** 0.5 if var_x > 0 and var_y > 0 else None


class Window:
    """One window of compared requests."""

    def __init__(self, index: int):
        self.index = index
        self.requests = 0
        self.sums = {"agreement": [0.0, 0], "rank_correlation": [0.0, 0], "score_difference": [0.0, 0]}
        self.primary_seconds: list = []
        self.shadow_seconds: list = []

    def add(self, comparison: dict, primary_seconds: float | None, shadow_seconds: float | None) -> None:
        self.requests += 1
        for name, value in comparison.items():
            if value is not None:
                self.sums[name][0] += value
                self.sums[name][1] += 1
        if primary_seconds is not None:
            self.primary_seconds.append(primary_seconds)
        if shadow_seconds is not None:
            self.shadow_seconds.append(shadow_seconds)

    def summary(self) -> dict:
        def p50(values):
            return round(sorted(values)[len(values) // 2] * 1000, 3) if values else None

        report = {"window": self.index, "requests": self.requests}
        for name, (total, count) in self.sums.items():
            report[name] = round(total / count, 4) if count else None
        report["primary_p50_ms"], report["shadow_p50_ms"] = p50(self.primary_seconds), p50(self.shadow_seconds)
        if report["primary_p50_ms"] is not None and report["shadow_p50_ms"] is not None:
            report["latency_difference_p50_ms"] = round(report["shadow_p50_ms"] - report["primary_p50_ms"], 3)
        return report


# ------------------------------------------------------------------ the comparator server


class Comparator:
    """Pairs logger events, replays requests against the shadow, keeps the report.

    Args:
        shadow_url: the shadow predictor (V1 paths), e.g. ``http://127.0.0.1:8081``.
        name: the model name in its URLs.
        window: compared requests per report window.
        max_queue: pairs waiting for the shadow at most; further ones are dropped and counted.
        workers: replays in flight to the shadow at once.
        timeout: seconds to wait for the shadow's answer.
        k: the cut-off of agreement@k.
        batch: the most logged requests replayed together as one request.
        latency_every: every this many requests one is replayed alone, for the shadow's latency.
        linger: seconds a worker waits for a batch to gather.
    """

    def __init__(self, shadow_url: str, name: str = "movie-recommender", window: int = WINDOW, max_queue: int = 5000,
                 workers: int = 2, timeout: float = 10.0, k: int = 10, batch: int = 64, latency_every: int = 20,
                 linger: float = 0.2):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        from reelops.serving.guard import INFERENCE_BUCKETS

        self.shadow_url, self.name, self.window_size, self.k = shadow_url.rstrip("/"), name, window, k
        self.workers, self.timeout = workers, timeout
        self.batch, self.latency_every, self.linger = batch, latency_every, linger
        self.replayed = 0
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self.intake = EventIntake(self._queue_pair, lambda reason, count: self._drop(reason, count=count),
                                  self._count_event)
        self.window = Window(1)
        self.windows: deque = deque(maxlen=KEEP_WINDOWS)
        self.totals = {"events": 0, "compared": 0, "dropped": {}, "shadow_errors": {}}
        self.registry = CollectorRegistry()
        self.events = Counter("reelops_shadow_events", "Logger events received, by type", ["type"],
                              registry=self.registry)
        self.dropped = Counter("reelops_shadow_dropped", "Requests not compared, by reason", ["reason"],
                               registry=self.registry)
        self.errors = Counter("reelops_shadow_errors", "Shadow requests that failed, by reason", ["reason"],
                              registry=self.registry)
        self.compared = Counter("reelops_shadow_compared", "Requests answered by both and compared",
                                registry=self.registry)
        self.latency = Histogram("reelops_shadow_latency_seconds", "Answer time, by side", ["side"],
                                 buckets=INFERENCE_BUCKETS, registry=self.registry)
        self.gauges = {name: Gauge(f"reelops_shadow_{name}", f"{name.replace('_', ' ')} over the last window",
                                   registry=self.registry)
                       for name in ("agreement", "rank_correlation", "score_difference")}
        self.session = None

    def _drop(self, reason: str, where: str = "dropped", count: int = 1) -> None:
        counts = self.totals[where]
        counts[reason] = counts.get(reason, 0) + count
        (self.dropped if where == "dropped" else self.errors).labels(reason=reason).inc(count)

    # ------------------------------------------------------------------ events in

    def take(self, headers, body: bytes) -> tuple:
        """One logger event (binary mode, as KServe's logger sends), or a batch of them
        (``application/cloudevents-batch+json``, as the local plane's router sends); returns
        ``(status, message)`` for the HTTP answer."""
        return self.intake.take(headers, body)

    def _count_event(self, kind: str) -> None:
        self.totals["events"] += 1
        self.events.labels(type=kind).inc()

    def _queue_pair(self, event_id: str, request: dict, response: dict) -> None:
        try:
            self.queue.put_nowait((request, response))
        except asyncio.QueueFull:
            self._drop("queue_full")

    # ------------------------------------------------------------------ replaying

    async def work(self) -> None:
        """Replay what the logger sent: every ``latency_every``-th request alone and timed, the
        rest together as one V1 request of many instances (the shadow answers a batch for a
        fraction of the cost of as many requests: the shadow's work must stay small beside the
        primary's on a shared machine)."""
        while True:
            pairs = [await self.queue.get()]
            await asyncio.sleep(self.linger)  # let a batch gather
            while len(pairs) < self.batch and not self.queue.empty():
                pairs.append(self.queue.get_nowait())
            alone, together = [], []
            for pair in pairs:
                self.replayed += 1
                (alone if self.replayed % self.latency_every == 0 else together).append(pair)
            for pair in alone:
                await self._replay([pair], timed=True)
            if together:
                await self._replay(together, timed=False)

    async def _replay(self, pairs: list, timed: bool) -> None:
        import aiohttp

        instances, counts, kept = [], [], []
        for request, response in pairs:
            try:
                asked = json.loads(request["body"])["instances"]
                if not isinstance(asked, list):
                    raise TypeError("instances is not a list")
            except (ValueError, TypeError, KeyError):
                self._drop("unreadable_request")
                continue
            instances += asked
            counts.append(len(asked))
            kept.append((request, response))
        if not kept:
            return
        began = time.perf_counter()
        try:
            async with self.session.post(f"{self.shadow_url}/v1/models/{self.name}:predict",
                                         json={"instances": instances}) as answer:
                content = await answer.read()
                status = answer.status
        except asyncio.TimeoutError:
            self._drop("timeout", "shadow_errors", len(kept))
            return
        except aiohttp.ClientError:
            self._drop("unreachable", "shadow_errors", len(kept))
            return
        shadow_seconds = time.perf_counter() - began if timed else None
        if status != 200:
            self._drop(f"http_{status // 100}xx", "shadow_errors", len(kept))
            return
        try:
            predictions = json.loads(content)["predictions"]
        except (ValueError, TypeError, KeyError):
            self._drop("unreadable_answer", "dropped", len(kept))
            return
        at = 0
        for (request, response), count in zip(kept, counts):
            theirs = {"predictions": predictions[at:at + count]}
            at += count
            try:
                comparison = compare_answers(json.loads(response["body"]), theirs, self.k)
            except (ValueError, TypeError, AttributeError):
                self._drop("unreadable_answer")
                continue
            self._count(comparison, request, response, shadow_seconds)

    def _count(self, comparison: dict, request: dict, response: dict, shadow_seconds: float | None) -> None:
        primary_seconds = None
        if request["time"] is not None and response["time"] is not None:
            primary_seconds = max(response["time"] - request["time"], 0.0)
            self.latency.labels(side="primary").observe(primary_seconds)
        if shadow_seconds is not None:
            self.latency.labels(side="shadow").observe(shadow_seconds)
        self.compared.inc()
        self.totals["compared"] += 1
        self.window.add(comparison, primary_seconds, shadow_seconds)
        if self.window.requests >= self.window_size:
            summary = self.window.summary()
            self.windows.append(summary)
            for name, gauge in self.gauges.items():
                if summary[name] is not None:
                    gauge.set(summary[name])
            self.window = Window(self.window.index + 1)

    def status(self) -> dict:
        """The report: totals, the windows so far (newest last) and the window being filled."""
        return {"shadow_url": self.shadow_url, "window_size": self.window_size, "queued": self.queue.qsize(),
                "unpaired": len(self.intake.unpaired), **self.totals, "windows": list(self.windows),
                "current": self.window.summary()}


def build_app(comparator: Comparator):
    """The comparator as an aiohttp application: ``POST /`` events, ``/metrics``, ``/shadow/status``, ``/health``."""
    from aiohttp import ClientSession, ClientTimeout, TCPConnector

    app = event_sink_app(comparator, "/shadow/status")
    workers: list = []

    async def start(app):
        comparator.session = ClientSession(connector=TCPConnector(limit=0),
                                           timeout=ClientTimeout(total=comparator.timeout))
        workers.extend(asyncio.create_task(comparator.work()) for _ in range(comparator.workers))

    async def stop(app):
        for task in workers:
            task.cancel()
        await comparator.session.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def serve_comparator(shadow_url: str, port: int, host: str = "127.0.0.1", name: str = "movie-recommender",
                     window: int = WINDOW, workers: int = 2) -> None:
    """Run the comparator until the process is stopped (``reelops shadow``)."""
    from aiohttp import web

    web.run_app(build_app(Comparator(shadow_url, name=name, window=window, workers=workers)), host=host, port=port,
                access_log=None, print=lambda *_: print(f"shadow comparator on {host}:{port} -> {shadow_url}", flush=True))


# ------------------------------------------------------------------ the router's logger (local plane)


class EventLogger:
    """What KServe's logger does, for the local plane's router: each answered request becomes two
    CloudEvents, queued (bounded) and sent by a background task in batches (structured mode,
    ``application/cloudevents-batch+json``: one POST per batch keeps the router's own work per
    request small); a full queue or a failed post drops the events and counts them
    (``reelops_router_logger_events_total{outcome}``).

    Two kinds of destination: the shadow comparator (``url``) takes every answer; the drift
    detector of a revision (``detectors[revision]``) takes the answers of its revision and the
    feedback on them (``org.reelops.feedback`` events; a rating no request id attributes goes to
    every detector), as the logger of each KServe predictor posts to its own sidecar."""

    def __init__(self, registry, inference_service: str, max_queue: int = 2000):
        from prometheus_client import Counter

        self.url: str | None = None
        self.detectors: dict = {}  # revision -> the URL of its drift detector
        self.inference_service = inference_service
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self.outcomes = Counter("reelops_router_logger_events", "Logger events, by outcome", ["outcome"],
                                registry=registry)
        self._children = {}

    def _count(self, outcome: str, by: int = 1) -> None:
        child = self._children.get(outcome)
        if child is None:
            child = self._children[outcome] = self.outcomes.labels(outcome=outcome)
        child.inc(by)

    @property
    def active(self) -> bool:
        return self.url is not None or bool(self.detectors)

    def log(self, request_id: str, request_body: bytes, response_body: bytes, requested_at: float,
            answered_at: float, revision: str = "") -> None:
        """Queue one request/response pair (never waits)."""
        if self.url is None and revision not in self.detectors:
            return
        try:
            self.queue.put_nowait((request_id, request_body, response_body, requested_at, answered_at, revision))
        except asyncio.QueueFull:
            self._count("dropped_queue_full", 2)

    def log_feedback(self, entry: dict, revision: str) -> None:
        """Queue one accepted rating for the detector of the revision that served it (every
        detector when no request id attributes it)."""
        if not self.detectors:
            return
        try:
            self.queue.put_nowait((None, entry, None, time.time(), None, revision))
        except asyncio.QueueFull:
            self._count("dropped_queue_full", 1)

    def _event(self, kind: str, event_id: str, body: bytes, at: float) -> bytes:
        # The body is the JSON the router passed on (a request it forwarded, a 200 answer): it
        # is spliced in as the event's data, not parsed again.
        head = {"specversion": "1.0", "id": event_id, "type": kind,
                "source": f"http://localhost/v1/models/{self.inference_service}",
                "time": dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat(),
                "inferenceservicename": self.inference_service, "component": "predictor", "endpoint": "default",
                "datacontenttype": "application/json"}
        return json.dumps(head)[:-1].encode() + b', "data": ' + body + b"}"

    def _batches(self, items: list) -> dict:
        """Destination URL -> the events of ``items`` it takes."""
        batches: dict = {}
        for request_id, request_body, response_body, requested_at, answered_at, revision in items:
            if request_id is None:  # a rating
                event = self._event(FEEDBACK_EVENT_TYPE, uuid.uuid4().hex, json.dumps(request_body).encode(),
                                    requested_at)
                targets = [self.detectors[revision]] if revision in self.detectors else list(self.detectors.values())
                for url in targets:
                    batches.setdefault(url, []).append(event)
                continue
            pair = [self._event(REQUEST_TYPE, request_id, request_body, requested_at),
                    self._event(RESPONSE_TYPE, request_id, response_body, answered_at)]
            for url in (self.url, self.detectors.get(revision)):
                if url is not None:
                    batches.setdefault(url, []).extend(pair)
        return batches

    async def run(self, session) -> None:
        import aiohttp

        while True:
            items = [await self.queue.get()]
            while len(items) * 2 < MAX_BATCH and not self.queue.empty():
                items.append(self.queue.get_nowait())
            for url, events in self._batches(items).items():
                try:
                    async with session.post(url, data=b"[" + b",".join(events) + b"]",
                                            headers={"content-type": BATCH_CONTENT_TYPE},
                                            timeout=aiohttp.ClientTimeout(total=2)) as answer:
                        await answer.read()
                        self._count("sent" if answer.status < 300 else f"dropped_http_{answer.status // 100}xx",
                                    len(events))
                except asyncio.TimeoutError:
                    self._count("dropped_timeout", len(events))
                except aiohttp.ClientError:
                    self._count("dropped_unreachable", len(events))
