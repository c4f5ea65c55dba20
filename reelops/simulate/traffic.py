"""Traffic from a simulated world, replayed against a serving endpoint at a steady rate, with the
world's oracle sending the users' ratings back as delayed feedback.

Each request asks for one user's top ``k`` (users arrive as the world's request stream has
them, from ``start`` on); each answer's user then "watches" one of the recommended movies,
chosen uniformly, and rates it as the oracle says; the rating reaches ``/v1/feedback`` with
the answer's ``X-Request-Id`` after ``feedback_delay`` seconds, in batches (what a site's
event pipeline does). Requests leave on a fixed schedule (open loop: a slow server does not
slow the arrivals), at most ``max_in_flight`` at once.

Used by the canary and shadow benchmarks, their tests, and ``reelops run``.
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
    """

    def __init__(self, url: str, world, rate: float, start: int | None = None, seed: int = 0, feedback: bool = True,
                 feedback_delay: float = 0.5, k: int = 10, name: str = "movie-recommender", max_in_flight: int = 256):
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.url, self.world, self.rate = url.rstrip("/"), world, float(rate)
        self.start = int(world.onset if start is None else start)
        self.rng = np.random.default_rng([seed, 77])
        self.feedback, self.feedback_delay, self.k, self.name = feedback, feedback_delay, k, name
        self.max_in_flight = max_in_flight
        self.stats = ReplayStats()
        self._users = self._user_stream()
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

    # ------------------------------------------------------------------ running

    def start_background(self) -> "TrafficReplay":
        """Run in a thread until :meth:`stop`."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run(None)), name="traffic-replay", daemon=True)
        self._thread.start()
        return self

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
                user, timestamp = next(self._users)
                sent += 1
                if len(tasks) >= self.max_in_flight:
                    self.stats.skipped += 1
                    continue
                task = asyncio.create_task(self._one(session, user, timestamp, pending_feedback))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self._draining = True
            await sender

    async def _one(self, session, user: int, timestamp: int, pending_feedback: list) -> None:
        import aiohttp

        request_id = uuid.uuid4().hex
        body = {"instances": [{"user_id": int(user), "k": self.k}]}
        sent_at = time.time()
        began = time.perf_counter()
        try:
            async with session.post(f"{self.url}/v1/models/{self.name}:predict", json=body,
                                    headers={"X-Request-Id": request_id}) as answer:
                payload = await answer.json(content_type=None) if answer.status == 200 else None
                self.stats.records.append([sent_at, time.perf_counter() - began, answer.status,
                                           answer.headers.get("X-Reelops-Revision")])
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            self.stats.records.append([sent_at, time.perf_counter() - began, 0, None])
            return
        if payload is None or not self.feedback:
            return
        movies = [m for m in payload["predictions"][0]["movie_ids"] if m is not None and m > 0]
        if movies:
            watched = movies[int(self.rng.integers(len(movies)))]
            pending_feedback.append((time.monotonic() + self.feedback_delay, user, watched, timestamp, request_id))

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
                ratings = self.world.rating(users, movies, stamps)
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
