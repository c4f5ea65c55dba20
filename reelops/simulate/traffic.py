"""Traffic from a simulated world, replayed against a serving endpoint at a steady rate, with the
world's oracle sending the users' ratings back as delayed feedback.

Each request asks for one user's top ``k`` (users arrive as the world's request stream has
them, from ``start`` on); each answer's user then "watches" one of the recommended movies,
chosen uniformly, and rates it as the oracle says; the rating reaches ``/v1/feedback`` with
the answer's ``X-Request-Id`` after ``feedback_delay`` seconds, in batches (what a site's
event pipeline does). Requests leave on a fixed schedule (open loop: a slow server does not
slow the arrivals), at most ``max_in_flight`` at once.

With ``mode="ratings"`` the replay follows the world's own ratings instead, in time order from
``start``: each rating ``(u, m, r, t)`` is a request for ``u``'s predicted rating of ``m`` (the
movie page a user opens, with the user's demographics as a site's profile sends them), and
``r`` reaches ``/v1/feedback`` with the request id and the rating's time ``t``. What the
drift detector sees is then exactly the world's stream of ratings (its benchmark and tests).

Used by the canary, shadow and online-detector benchmarks, their tests, and ``reelops run``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ReplayStats:
    """What a replay did: per request ``(sent_at, seconds, status, revision)``; feedback counts."""

    records: list = field(default_factory=list)
    # ratings mode: ``(sent_at, world_time, revision, predicted, rated)`` per answered request
    predictions: list = field(default_factory=list)
    # recommend mode: ``(sent_at, revision, stars)`` per rating the oracle gave a recommended movie
    stars: list = field(default_factory=list)
    feedback_sent: int = 0
    feedback_failed: int = 0
    skipped: int = 0  # arrivals not sent because max_in_flight requests were waiting

    def failures(self) -> list:
        """Requests that got no 2xx answer."""
        return [r for r in self.records if not 200 <= r[2] < 300]

    def by_revision(self) -> dict:
        counts: dict = {}
        for record in self.records:
            counts[record[3]] = counts.get(record[3], 0) + 1
        return counts


class TrafficReplay:
    """Replay a world's users against ``url`` (a router or predictor, KServe V1 paths).

    Args:
        url: the endpoint, e.g. ``http://127.0.0.1:8080``.
        world: a :class:`reelops.simulate.World` (requests and oracle).
        rate: requests per second.
        start: the world time (Unix seconds) the users are drawn from onwards (default: the world's
            onset, where a model trained on the earlier ratings meets new traffic).
        seed: the draw of users and watched movies.
        feedback: send the oracle's ratings to ``/v1/feedback``.
        feedback_delay: seconds between an answer and its rating being sent.
        k: recommendations per request.
        name: the model name in the URL.
        max_in_flight: requests waiting at once; further arrivals are skipped and counted.
        mode: ``recommend`` (top-k requests, feedback on one recommended movie) or ``ratings``
            (the world's ratings as rating requests and their feedback).
    """

    def __init__(self, url: str, world, rate: float, start: int | None = None, seed: int = 0, feedback: bool = True,
                 feedback_delay: float = 0.5, k: int = 10, name: str = "movie-recommender", max_in_flight: int = 256,
                 mode: str = "recommend"):
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if mode not in ("recommend", "ratings"):
            raise ValueError(f"mode must be recommend or ratings, got {mode!r}")
        self.url, self.world, self.rate = url.rstrip("/"), world, float(rate)
        self.start = int(world.onset if start is None else start)
        self.rng = np.random.default_rng([seed, 77])
        self.feedback, self.feedback_delay, self.k, self.name = feedback, feedback_delay, k, name
        self.max_in_flight = max_in_flight
        self.stats = ReplayStats()
        self.mode = mode
        self._users = self._user_stream() if mode == "recommend" else self._rating_stream()
        self._stop = threading.Event()
        self._draining = False  # every request answered: the feedback sender sends the rest and ends
        self._thread: threading.Thread | None = None

    def _user_stream(self):
        """Users in the order the world's request stream brings them, a day at a time, forever."""
        day = 86_400
        at = self.start
        while True:
            chunk = self.world.request_stream(at, at + day)
            yield from zip(chunk["user_id"].tolist(), chunk["timestamp"].tolist())
            at += day

    def _rating_stream(self):
        """The world's ratings from ``start`` on, in time order: ``(user, timestamp, movie, rating, profile)``."""
        ratings = self.world.generate()["ratings"]
        ratings = ratings[ratings["timestamp"] >= self.start].sort_values(["timestamp", "user_id", "movie_id"],
                                                                           kind="stable")
        users = self.world.users_frame()
        profiles = {int(u): {"age": int(a), "gender": str(g), "occupation": str(o)}
                    for u, a, g, o in zip(users["user_id"], users["age"], users["gender"], users["occupation"])}
        for user, movie, rating, stamp in zip(ratings["user_id"].tolist(), ratings["movie_id"].tolist(),
                                              ratings["rating"].tolist(), ratings["timestamp"].tolist()):
            yield user, stamp, movie, float(rating), profiles[int(user)]

    # ------------------------------------------------------------------ running

    def start_background(self) -> "TrafficReplay":
        """Run in a thread until :meth:`stop`."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run(None)), name="traffic-replay", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Started in the background and not stopped yet."""
        return self._thread is not None and not self._stop.is_set()

    def stop(self) -> ReplayStats:
        """Stop sending, wait for the requests and feedback under way, return the stats."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        return self.stats

    def run(self, requests: int) -> ReplayStats:
        """Send ``requests`` requests (and their feedback), then return the stats."""
        asyncio.run(self._run(requests))
        return self.stats

    async def _run(self, requests: int | None) -> None:
        import aiohttp

        pending_feedback: list = []
        tasks: set = set()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                         connector=aiohttp.TCPConnector(limit=0)) as session:
            sender = asyncio.create_task(self._send_feedback(session, pending_feedback))
            began, sent = time.monotonic(), 0
            while not self._stop.is_set() and (requests is None or sent < requests):
                due = began + sent / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                item = next(self._users, None)
                if item is None:  # the world's ratings ran out
                    break
                sent += 1
                if len(tasks) >= self.max_in_flight:
                    self.stats.skipped += 1
                    continue
                task = asyncio.create_task(self._one(session, item, pending_feedback))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self._draining = True
            await sender

    async def _one(self, session, item: tuple, pending_feedback: list) -> None:
        import aiohttp

        user, timestamp = item[0], item[1]
        request_id = uuid.uuid4().hex
        if self.mode == "ratings":
            body = {"instances": [{"user_id": int(user), "movie_id": int(item[2]), **item[4]}]}
        else:
            body = {"instances": [{"user_id": int(user), "k": self.k}]}
        sent_at = time.time()
        began = time.perf_counter()
        try:
            async with session.post(f"{self.url}/v1/models/{self.name}:predict", json=body,
                                    headers={"X-Request-Id": request_id}) as answer:
                payload = await answer.json(content_type=None) if answer.status == 200 else None
                revision = answer.headers.get("X-Reelops-Revision")
                self.stats.records.append([sent_at, time.perf_counter() - began, answer.status, revision])
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            self.stats.records.append([sent_at, time.perf_counter() - began, 0, None])
            return
        if payload is None:
            return
        if self.mode == "ratings":
            try:
                self.stats.predictions.append((sent_at, timestamp, revision, float(payload["predictions"][0]["rating"]),
                                               item[3]))
            except (KeyError, IndexError, TypeError, ValueError):
                pass  # an answer without a rating is the server's business; the request counted as answered
            if self.feedback:
                pending_feedback.append((time.monotonic() + self.feedback_delay, user, item[2], timestamp, request_id,
                                         item[3]))
            return
        movies = [m for m in payload["predictions"][0]["movie_ids"] if m is not None and m > 0]
        if movies and self.feedback:
            watched = movies[int(self.rng.integers(len(movies)))]
            pending_feedback.append((time.monotonic() + self.feedback_delay, user, watched, timestamp, request_id,
                                     np.nan, revision))

    async def _send_feedback(self, session, pending: list) -> None:
        """Every 0.1 s, send the ratings whose delay has passed (all of them once stopping)."""
        import aiohttp

        while True:
            stopping = self._draining
            now = time.monotonic()
            due, waiting = [], []
            for entry in pending:
                (due if stopping or entry[0] <= now else waiting).append(entry)
            if due:
                pending[:] = waiting
                users = np.array([e[1] for e in due])
                movies = np.array([e[2] for e in due])
                stamps = np.array([e[3] for e in due])
                # The oracle rates a recommended movie; a replayed rating keeps its own value.
                ratings = np.array([e[5] for e in due], dtype=float)
                asked = np.isnan(ratings)
                if asked.any():
                    ratings[asked] = self.world.rating(users[asked], movies[asked], stamps[asked])
                    sent = time.time()
                    self.stats.stars.extend((sent, e[6], float(r)) for e, r in zip(due, ratings) if len(e) > 6)
                body = [{"user_id": int(u), "movie_id": int(m), "rating": float(r), "request_id": e[4],
                         "timestamp": float(t)} for u, m, r, t, e in zip(users, movies, ratings, stamps, due)]
                try:
                    async with session.post(f"{self.url}/v1/feedback", json=body) as answer:
                        await answer.read()
                        ok = answer.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                if ok:
                    self.stats.feedback_sent += len(body)
                else:
                    self.stats.feedback_failed += len(body)
            if stopping:
                return
            await asyncio.sleep(0.1)


def logged_events(ratings, profiles: dict | None = None, name: str = "movie-recommender", at: float | None = None) -> tuple:
    """What the ratings replay makes a predictor's logger send, without a predictor: for each
    rating, the request and response CloudEvents (structured mode, as dictionaries) and the
    feedback entry with its request id. For checking the detector offline against online and
    for measuring its intake.

    Args:
        ratings: rows (user_id, movie_id, rating, timestamp) in the order they are replayed.
        profiles: user id -> ``{"age", "gender", "occupation"}`` sent with each request.
        name: the InferenceService name.
        at: the events' time (Unix seconds; now by default).

    Returns:
        ``(events, feedback)``: two events per rating, one feedback entry per rating.
    """
    import datetime as dt

    stamp = dt.datetime.fromtimestamp(time.time() if at is None else at, dt.timezone.utc).isoformat()
    events, feedback = [], []
    head = {"specversion": "1.0", "source": f"http://localhost/v1/models/{name}", "time": stamp,
            "inferenceservicename": name, "datacontenttype": "application/json"}
    for index, (user, movie, rating, timestamp) in enumerate(zip(ratings["user_id"].tolist(), ratings["movie_id"].tolist(),
                                                                 ratings["rating"].tolist(),
                                                                 ratings["timestamp"].tolist())):
        request_id = f"replay-{index}"
        instance = {"user_id": int(user), "movie_id": int(movie), **((profiles or {}).get(int(user)) or {})}
        events.append({**head, "id": request_id, "type": "org.kubeflow.serving.inference.request",
                       "data": {"instances": [instance]}})
        events.append({**head, "id": request_id, "type": "org.kubeflow.serving.inference.response",
                       "data": {"predictions": [{"user_id": int(user), "movie_id": int(movie), "rating": 3.5}]}})
        feedback.append({"user_id": int(user), "movie_id": int(movie), "rating": float(rating),
                         "request_id": request_id, "timestamp": int(timestamp)})
    return events, feedback
