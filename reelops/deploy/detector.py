"""The online drift detector: the Alibi Detect sidecar beside a predictor.

``reelops detector serve`` (in the ``serve`` image) takes the predictor's logger events
(KServe's CloudEvents, see :mod:`reelops.deploy.events`) and the site's feedback, builds
windows of interactions, and runs the same :class:`~reelops.monitoring.Monitor` the offline
``reelops monitor`` runs, with the references saved with the model version it watches.

**What a request tells** (each instance of a V1 request and its answer):

- ``{"user_id": u, "movie_id": m}`` (the site asks how much ``u`` will like ``m``: a movie
  page) is an *interaction*: a row ``(u, m, rating NaN, time)`` of the window. Its
  feedback (same ``request_id``, user and movie) fills in the rating and the rating's time.
- ``{"user_id": u, "k": 10}`` (recommendations) is not a row by itself: the movies in the
  answer are the model's choice, not the world's, and a reference built from what people
  rated would see drift in every window of them. The movie the user then watches and rates
  arrives as feedback and becomes a row (labelled).
- Demographics in a request (``age``, ``gender``, ``occupation`` beside a ``user_id``: a
  newcomer the model does not know) join the users table that user data drift reads; users
  the model trained on are known from its own features.
- Feedback that matches no open interaction is a row of its own (a rating of a movie the
  user found elsewhere). Rows arrive in time order; a row's time is its rating's when one
  came, its request's otherwise.

The rows of a window are ``window_size`` interactions in arrival order, judged once all of
them are labelled or ``label_wait`` seconds after the window filled (a rating that comes
after its interaction was judged is counted as ``late_feedback``, not taken for a new row). Judged in the order of ``(timestamp, user_id, movie_id)``, the
way :func:`~reelops.monitoring.time_windows` orders a ratings file: the same interactions
give the same findings online and offline (tested).

Each window's findings feed the retraining policy; when it decides, the trigger
(:class:`RetrainTrigger`) claims the decision in the registry with a compare-and-set and
only the claimant starts the pipeline. Metrics for Prometheus at ``/metrics``; JSON at
``/detector/status``. Intake never waits on judging: windows are judged in a thread, the
backlog is bounded, and what does not fit is dropped and counted.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from collections import OrderedDict, deque

import numpy as np
import pandas as pd

from reelops.deploy.events import EventIntake, event_sink_app
from reelops.deploy.feedback import FEEDBACK_EVENT_TYPE, FeedbackError, parse_feedback

# Interactions waiting to be judged at most, in windows (beyond: dropped and counted).
MAX_BACKLOG_WINDOWS = 20
KEEP_FINDINGS = 500
MAX_REMEMBERED_KEYS = 100_000


class OnlineWindows:
    """Interactions in arrival order, closed into windows of ``size`` rows.

    Args:
        size: rows per window (the monitor's window size).
        label_wait: seconds a full window waits for the ratings of its interactions.
        max_rows: rows held at most (open interactions); beyond, new ones are refused.
        clock: seconds (monotonic), replaceable in tests.
    """

    def __init__(self, size: int, label_wait: float = 30.0, max_rows: int | None = None, clock=time.monotonic):
        self.size, self.label_wait, self.clock = size, label_wait, clock
        self.max_rows = max_rows or size * MAX_BACKLOG_WINDOWS
        self.rows: deque = deque()  # [user_id, movie_id, rating, timestamp, key] in arrival order
        self.open: dict = {}  # (request_id, user_id, movie_id) -> row, while unlabelled
        self.unlabelled = 0
        self.filled_at: float | None = None
        # Keys of interactions judged without their rating (bounded): a rating that comes later
        # is late, not a new interaction.
        self.judged_unlabelled: OrderedDict = OrderedDict()

    def add(self, user_id: int, movie_id: int, timestamp: float, rating: float = float("nan"),
            key: tuple | None = None) -> bool:
        """One interaction; False when the backlog is full (the caller counts the drop)."""
        if len(self.rows) >= self.max_rows:
            return False
        row = [int(user_id), int(movie_id), float(rating), float(timestamp), key]
        self.rows.append(row)
        if np.isnan(row[2]):
            self.unlabelled += 1
            if key is not None:
                self.open[key] = row
        if self.filled_at is None and len(self.rows) >= self.size:
            self.filled_at = self.clock()
        return True

    def label(self, key: tuple, rating: float, timestamp: float | None) -> bool:
        """The rating of an open interaction; False when none waits under ``key``."""
        row = self.open.pop(key, None)
        if row is None:
            return False
        row[2] = float(rating)
        if timestamp is not None:
            row[3] = float(timestamp)
        self.unlabelled -= 1
        return True

    def is_late(self, key: tuple) -> bool:
        """Whether ``key``'s interaction was judged before its rating came."""
        return self.judged_unlabelled.pop(key, None) is not None

    def due(self) -> list:
        """Windows ready to judge (DataFrames in ``time_windows``' order), oldest first."""
        windows = []
        while len(self.rows) >= self.size:
            filled_at = self.clock() if self.filled_at is None else self.filled_at
            # Called after every event: the head is scanned only while some rating is missing
            # and the wait has not run out (NaN is the one value unequal to itself).
            if self.unlabelled and self.clock() - filled_at < self.label_wait and any(
                    row[2] != row[2] for row in itertools.islice(self.rows, self.size)):
                break
            head = []
            for _ in range(self.size):
                row = self.rows.popleft()
                head.append(row)
                if row[2] != row[2]:
                    self.unlabelled -= 1
                    if self.open.pop(row[4], None) is not None:
                        self.judged_unlabelled[row[4]] = True
                        if len(self.judged_unlabelled) > MAX_REMEMBERED_KEYS:
                            self.judged_unlabelled.popitem(last=False)
            frame = pd.DataFrame([row[:4] for row in head], columns=["user_id", "movie_id", "rating", "timestamp"])
            frame = frame.astype({"user_id": np.int64, "movie_id": np.int64})
            frame["timestamp"] = frame["timestamp"].round().astype(np.int64)
            windows.append(frame.sort_values(["timestamp", "user_id", "movie_id"], kind="stable").reset_index(drop=True))
            self.filled_at = self.clock() if len(self.rows) >= self.size else None
        return windows


class DriftDetector:
    """Events and feedback in, findings and a retraining decision out, for one model version.

    Args:
        monitor: the watched version's :class:`~reelops.monitoring.Monitor`.
        model_version: its registry version (a label of every metric), or a name.
        label_wait: see :class:`OnlineWindows`.
        policy: the retraining policy (default :class:`RetrainingPolicy`).
        trigger: what starts retraining (None: decide and report only).
        state: where the policy's last trigger is kept (the registry's ``TriggerState`` for
            a registered version; memory otherwise).
    """

    def __init__(self, monitor, model_version: str = "", label_wait: float = 30.0, policy=None, trigger=None,
                 state=None):
        from prometheus_client import CollectorRegistry, Counter, Gauge

        from reelops.monitoring.policy import PolicyState, RetrainingPolicy

        self.monitor, self.model_version = monitor, str(model_version)
        self.policy, self.trigger = policy or RetrainingPolicy(), trigger
        self.state = state or PolicyState()
        self.windows = OnlineWindows(monitor.window_size, label_wait)
        self.lock = threading.Lock()  # intake (event loop) and judging (thread) share the windows
        self.intake = EventIntake(self._take_pair, self._drop, self._count_event,
                                  other_types={FEEDBACK_EVENT_TYPE: lambda body: self.take_feedback_body(body)[:2]})
        known = monitor.model.features_.users
        self._known_users = known[["user_id", "age", "gender", "occupation"]].copy()
        self._described: dict = {}  # newcomers' demographics from requests
        self._users_table = self._known_users
        self._users_changed = False
        self.findings: deque = deque(maxlen=KEEP_FINDINGS)
        self.judged = 0
        self.data_time: int | None = None
        self.decision: dict | None = None  # the policy's answer after the latest window
        self.retrain: dict | None = None  # its latest "retrain" answer, with what the trigger did
        self.totals = {"events": 0, "interactions": 0, "feedback": 0, "dropped": {}, "unjudgeable": {}}
        self.pending: queue.Queue = queue.Queue(maxsize=MAX_BACKLOG_WINDOWS)
        self.registry = CollectorRegistry()
        labels = {"model_version": self.model_version}
        self.metric_events = Counter("reelops_detector_events", "Events received, by type", ["type"],
                                     registry=self.registry)
        self.metric_dropped = Counter("reelops_detector_dropped", "Events or interactions not used, by reason",
                                      ["reason"], registry=self.registry)
        self.metric_unjudgeable = Counter("reelops_detector_unjudgeable",
                                          "Instances that cannot become a window row, by reason", ["reason"],
                                          registry=self.registry)
        self.metric_windows = Counter("reelops_detector_windows", "Windows judged, by verdict",
                                      ["model_version", "verdict"], registry=self.registry)
        self.metric_alarms = Counter("reelops_detector_alarms", "Windows in which a detector alarmed, by kind",
                                     ["model_version", "detector", "kind"], registry=self.registry)
        self.metric_p = Gauge("reelops_detector_p_value", "Calibrated p-value of the last judged window",
                              ["model_version", "detector", "feature"], registry=self.registry)
        self.metric_size = Gauge("reelops_detector_change_size", "Size of the change in the last judged window",
                                 ["model_version", "detector", "feature"], registry=self.registry)
        self.metric_backlog = Gauge("reelops_detector_backlog_rows", "Interactions waiting for their window",
                                    registry=self.registry)
        self.metric_triggers = Counter("reelops_detector_retrain_triggers", "Retraining runs this detector started",
                                       ["model_version"], registry=self.registry)
        self._labels = labels
        self.metric_backlog.set_function(lambda: len(self.windows.rows))
        Gauge("reelops_detector_unpaired_events", "Logger events waiting for the other event of their request",
              registry=self.registry).set_function(lambda: len(self.intake.unpaired))
        self.metric_retrain_decision = Gauge("reelops_detector_retrain_decided",
                                             "1 once the policy decided to retrain the watched version",
                                             ["model_version"], registry=self.registry)
        self.metric_retrain_decision.labels(**labels).set(0)
        monitor.reset()

    # ------------------------------------------------------------------ counting

    def _count(self, where: str, reason: str, count: int = 1) -> None:
        counts = self.totals[where]
        counts[reason] = counts.get(reason, 0) + count
        (self.metric_dropped if where == "dropped" else self.metric_unjudgeable).labels(reason=reason).inc(count)

    def _drop(self, reason: str, count: int = 1) -> None:
        self._count("dropped", reason, count)

    def _count_event(self, kind: str) -> None:
        self.totals["events"] += 1
        self.metric_events.labels(type=kind).inc()

    # ------------------------------------------------------------------ events in

    def take(self, headers, body: bytes) -> tuple:
        """One logger or feedback event (binary mode) or a batch; ``(status, message)``."""
        return self.intake.take(headers, body)

    def _take_pair(self, request_id: str, request: dict, response: dict) -> None:
        try:
            instances = json.loads(request["body"])["instances"]
            predictions = json.loads(response["body"])["predictions"]
        except (ValueError, KeyError, TypeError):
            self._drop("unreadable_pair")
            return
        at = request["time"] if request["time"] is not None else time.time()
        with self.lock:
            for instance, answer in zip(instances, predictions):
                if not isinstance(instance, dict) or not isinstance(answer, dict):
                    self._count("unjudgeable", "not_an_object")
                    continue
                if instance.get("user_id") is None:
                    self._count("unjudgeable", "anonymous_user")  # no id: no feedback can join it
                    continue
                try:  # what the predictor answered it validated; an event from elsewhere may not be
                    user = int(instance["user_id"])
                    movie = None if instance.get("movie_id") is None else int(instance["movie_id"])
                except (TypeError, ValueError):
                    self._count("unjudgeable", "bad_ids")
                    continue
                if any(instance.get(name) is not None for name in ("age", "gender", "occupation")):
                    self._describe(user, instance)
                if movie is not None:
                    if self.windows.add(user, movie, at, key=(request_id, user, movie)):
                        self.totals["interactions"] += 1
                    else:
                        self._drop("backlog_full")
        self._judge_due()

    def _describe(self, user: int, instance: dict) -> None:
        entry = (instance.get("age"), instance.get("gender"), instance.get("occupation"))
        if self._described.get(user) != entry:
            self._described[user] = entry
            self._users_changed = True

    def take_feedback(self, entries: list) -> None:
        """Validated feedback entries (:func:`reelops.deploy.feedback.parse_feedback`)."""
        with self.lock:
            for entry in entries:
                self.totals["feedback"] += 1
                stamp = entry.get("timestamp")
                key = (entry.get("request_id"), entry["user_id"], entry["movie_id"])
                if entry.get("request_id") is not None:
                    if self.windows.label(key, entry["rating"], stamp):
                        continue
                    if self.windows.is_late(key):
                        self._drop("late_feedback")
                        continue
                if not self.windows.add(entry["user_id"], entry["movie_id"], stamp if stamp is not None else time.time(),
                                        rating=entry["rating"]):
                    self._drop("backlog_full")
                else:
                    self.totals["interactions"] += 1
        self._judge_due()

    def take_feedback_body(self, body: bytes, headers=None) -> tuple:
        """Feedback as it arrives (``POST /v1/feedback``, or the data of a feedback event);
        ``(status, message, ratings taken)``: a bad body is refused whole, naming the field,
        and counted."""
        try:
            entries = parse_feedback(body, headers or {"content-type": "application/json"})
        except FeedbackError as error:
            self._drop(f"feedback_{error.reason}")
            return 400, str(error), 0
        self.take_feedback(entries)
        return 202, "accepted", len(entries)

    # ------------------------------------------------------------------ judging

    def _judge_due(self) -> None:
        with self.lock:
            windows = self.windows.due()
        for window in windows:
            try:
                self.pending.put_nowait(window)
            except queue.Full:
                self._drop("judging_backlog_full", len(window))

    def tick(self) -> None:
        """Close windows whose label wait ran out (called periodically by the server)."""
        self._judge_due()

    def users(self) -> pd.DataFrame:
        """Demographics the user data drift test reads: the model's users and described newcomers."""
        if self._users_changed:
            ids = list(self._described)
            described = pd.DataFrame({"user_id": np.array(ids, dtype=np.int64),
                                      "age": [self._described[i][0] for i in ids],
                                      "gender": [self._described[i][1] for i in ids],
                                      "occupation": [self._described[i][2] for i in ids]})
            self._users_table = pd.concat([described, self._known_users], ignore_index=True).drop_duplicates(
                "user_id", keep="first")
            self._users_changed = False
        return self._users_table

    def judge(self, window: pd.DataFrame):
        """Judge one window (in the judging thread), update metrics and decide on retraining."""
        from reelops.monitoring.policy import decide

        with self.lock:
            users = self.users()
        findings = self.monitor.check(window, users, None, seed=self.judged)
        self.judged += 1
        self.findings.append(findings)
        self.data_time = max(self.data_time or 0, findings.end_timestamp or 0)
        self.metric_windows.labels(verdict=findings.verdict, **self._labels).inc()
        for name, result in findings.detectors.items():
            if result.drift:
                self.metric_alarms.labels(detector=name, kind=findings.verdict, **self._labels).inc()
            for feature, p_value in result.p_values.items():
                self.metric_p.labels(detector=name, feature=feature, **self._labels).set(float(p_value))
            for feature, size in result.sizes.items():
                self.metric_size.labels(detector=name, feature=feature, **self._labels).set(float(size))
        decision = decide(list(self.findings), self.totals["feedback"], self.data_time, self.policy, state=self.state,
                          record=False)
        self.decision = decision.to_dict()
        if decision.retrain:
            self.metric_retrain_decision.labels(**self._labels).set(1)
            if self.trigger is not None:
                started = self.trigger.fire(self.model_version, dict(self.decision), self.state)
                self.decision["trigger"] = started
                if started.get("started"):
                    self.metric_triggers.labels(**self._labels).inc()
            # Kept apart: the next window's answer is "in cooldown" once the trigger claimed it.
            self.retrain = {"window": self.judged - 1, **self.decision}
        return findings

    def work(self, stop: threading.Event) -> None:
        """The judging thread: windows in arrival order until ``stop`` is set."""
        while not stop.is_set():
            try:
                window = self.pending.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.judge(window)
            except Exception as error:  # noqa: BLE001 - a window that cannot be judged must not stop the detector
                self._drop(f"judging_failed:{type(error).__name__}", len(window))

    def status(self) -> dict:
        """Totals, the latest findings and the policy's decision, as JSON."""
        latest = self.findings[-1].to_dict() if self.findings else None
        verdicts: dict = {}
        for findings in self.findings:
            verdicts[findings.verdict] = verdicts.get(findings.verdict, 0) + 1
        first = max(0, self.judged - len(self.findings))  # the index of the oldest window kept
        return {"model_version": self.model_version, "window_size": self.monitor.window_size,
                "label_wait_seconds": self.windows.label_wait, **self.totals,
                "unpaired": len(self.intake.unpaired), "backlog_rows": len(self.windows.rows),
                "windows_judged": self.judged, "verdicts": verdicts, "labels": self.totals["feedback"], "latest": latest,
                "alarms": [{"window": index, "verdict": f.verdict,
                            "detectors": sorted(n for n, r in f.detectors.items() if r.drift)}
                           for index, f in enumerate(self.findings, start=first)
                           if f.verdict in ("data", "concept", "both")][-50:],
                # Each kept window in brief (what a report plots over time).
                "windows": [{"window": index, "verdict": f.verdict, "rows": f.window_rows,
                             "start_timestamp": f.start_timestamp, "end_timestamp": f.end_timestamp,
                             "detectors": {name: {"p_value": r.p_value, "drift": r.drift}
                                           for name, r in f.detectors.items() if r.available}}
                            for index, f in enumerate(self.findings, start=first)],
                "decision": self.decision, "retrain": self.retrain}


# ---------------------------------------------------------------------- retraining trigger


class RetrainTrigger:
    """Starts the retraining pipeline once per decision, whoever else decided the same.

    The decision is claimed in the registry first (:func:`reelops.registry.claim_retrain`, a
    compare-and-set on the policy's last trigger): two detectors watching one version, or a
    detector restarted after it triggered, find the claim taken and start nothing.

    Args:
        command: the command that starts the run, e.g. ``["reelops", "pipeline", "submit",
            "training", "--host", HOST, "--json"]`` on a cluster (``kfp.Client`` in that
            process) or ``["reelops", "pipeline", "run", "training", "--json"]`` on one machine;
            it runs in the background, its JSON answer (the run id) is recorded when it ends.
        log_dir: where the command's output goes.
        max_runs: runs it starts at most (None: no limit; the policy's cooldown spaces them).
    """

    def __init__(self, command: list, log_dir, max_runs: int | None = None):
        from pathlib import Path

        self.command, self.log_dir = list(command), Path(log_dir)
        self.process = None
        self.max_runs, self.started = max_runs, 0

    def fire(self, model_version: str, decision: dict, state) -> dict:
        import subprocess

        from reelops import registry

        if self.process is not None and self.process.poll() is None:
            # Its run has not ended: a second one would train on the same data again (the
            # policy's cooldown is in data time, which a fast replay can outrun).
            return {"started": False, "reason": f"the retraining run it started (pid {self.process.pid}) is still running"}
        if self.max_runs is not None and self.started >= self.max_runs:
            return {"started": False, "reason": f"it started the {self.max_runs} run(s) it may (--max-retrains)"}
        claim = registry.claim_retrain(model_version, decision, state)
        if claim is None:
            return {"started": False, "reason": "another detector (or an earlier run of this one) claimed it"}
        self.started += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"retrain-{claim['claim']}.log"
        with open(log_path, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        registry.record_retrain_run(claim["claim"], {"pid": self.process.pid, "command": self.command,
                                                     "log": str(log_path)})
        threading.Thread(target=self._record_when_done, args=(claim["claim"], log_path), daemon=True).start()
        return {"started": True, "claim": claim["claim"], "pid": self.process.pid, "log": str(log_path)}

    def _record_when_done(self, claim: str, log_path) -> None:
        from reelops import registry

        code = self.process.wait()
        answer = {}
        # The command's --json answer is its last line that is a JSON object.
        for line in reversed(log_path.read_text(encoding="utf-8", errors="replace").splitlines()):
            if line.startswith("{"):
                try:
                    answer = json.loads(line)
                    break
                except ValueError:
                    continue
        # The run's identity, not its whole answer (a registry tag holds a few thousand characters).
        registry.record_retrain_run(claim, {"exit_code": code, "run_id": answer.get("run_id") or answer.get("run_dir"),
                                            "state": answer.get("state")})


# ---------------------------------------------------------------------- the server


def build_app(detector: DriftDetector, tick_seconds: float = 1.0):
    """The detector as an aiohttp application: ``POST /`` events (logger and feedback),
    ``POST /v1/feedback``, ``/metrics``, ``/detector/status``, ``/health``."""
    import asyncio

    from aiohttp import web

    app = event_sink_app(detector, "/detector/status", max_body=16 << 20)
    stop = threading.Event()
    running: dict = {}  # the judging thread and the ticker task

    async def ticker():
        while True:
            await asyncio.sleep(tick_seconds)
            detector.tick()

    async def start(app):
        running["judge"] = threading.Thread(target=detector.work, args=(stop,), daemon=True, name="judge")
        running["judge"].start()
        running["ticker"] = asyncio.create_task(ticker())

    async def cleanup(app):
        running["ticker"].cancel()
        stop.set()
        running["judge"].join(timeout=30)

    async def feedback(request):
        status, message, taken = detector.take_feedback_body(await request.read(), request.headers)
        return web.json_response({"accepted": taken} if status < 300 else {"error": message}, status=status)

    app.on_startup.append(start)
    app.on_cleanup.append(cleanup)
    app.router.add_post("/v1/feedback", feedback)
    return app


def serve_detector(detector: DriftDetector, port: int, host: str = "127.0.0.1") -> None:
    """Run the detector until the process is stopped (``reelops detector serve``)."""
    from aiohttp import web

    web.run_app(build_app(detector), host=host, port=port, access_log=None,
                print=lambda *_: print(f"drift detector for version {detector.model_version or '-'} on {host}:{port}",
                                       flush=True))
