"""The local serving plane's router: one port, KServe's URL paths, traffic split by revision.

Run by the plane (``python -m reelops.deploy.router --state STATE --port P``), never by hand.
It reads the plane's state file (written by ``reelops deploy``; re-read whenever it changes)
and sends each request to a revision:

- by default, at random in proportion to the traffic KServe's rules give each revision
  (``canaryTrafficPercent``; see :mod:`reelops.deploy.rollout`);
- to a tagged revision when the ``Host`` header starts with ``latest-`` or ``prev-``, as
  KServe's tag routes do (``latest-movie-recommender-predictor.<namespace>.<domain>``); a tag
  that no route carries answers 404.

A revision whose process is gone or whose ``/v2/health/ready`` does not answer 200 gets no
traffic (checked every 0.2 s, and at once when a connection to it fails); its share goes
to the others. A request that could not be delivered (connection refused or reset before an
answer) is sent to another revision, so a killed predictor costs no request that had not
reached it. Each answer carries ``X-Request-Id`` (the caller's, or a new one) and
``X-Reelops-Revision``.

Feedback (delayed labels) enters at ``POST /v1/feedback``; see :mod:`reelops.deploy.feedback`.
While a shadow runs, the router logs each answered ``:predict`` as KServe's logger would (two
CloudEvents to the shadow comparator, from a bounded queue; :mod:`reelops.deploy.shadow`).
``/metrics`` has the router's counters, ``/plane/health`` answers 200 once it routes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import OrderedDict
from pathlib import Path

from aiohttp import ClientConnectionError, ClientSession, ClientTimeout, TCPConnector, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from reelops.deploy.feedback import FeedbackBook, FeedbackError, parse_feedback
from reelops.deploy.local import alive
from reelops.deploy.shadow import EventLogger

HEALTH_INTERVAL = 0.2
TAG_PREFIXES = ("latest-", "prev-")
# Headers that belong to one hop (RFC 9110) or that aiohttp sets itself.
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
               "proxy-authenticate", "content-length", "host"}
REMEMBERED_REQUESTS = 200_000


class Router:
    """Routes requests to the revisions of one InferenceService, as the plane's state says."""

    def __init__(self, state_path: Path):
        self.state_path = Path(state_path)
        self.state_mtime = None
        self.routes: list = []  # [{"revision", "version", "percent", "tag"}]
        self.backends: dict = {}  # revision -> {"url", "pid"}
        self.ready: dict = {}  # revision -> bool
        self.served: OrderedDict = OrderedDict()  # request id -> (revision, version)
        self.registry = CollectorRegistry()
        self.requests = Counter("reelops_router_requests", "Requests answered, by revision and status",
                                ["revision", "status"], registry=self.registry)
        self.retries = Counter("reelops_router_retries", "Requests sent again after a revision failed to take them",
                               ["revision"], registry=self.registry)
        self.feedback = FeedbackBook(self.state_path.parent / "feedback.jsonl", self.registry)
        self.event_logger = EventLogger(self.registry, "movie-recommender")
        self.session: ClientSession | None = None
        self._children: dict = {}

    # ------------------------------------------------------------------ state and health

    async def load_state(self) -> None:
        """Re-read the state file when it changed (it is replaced whole by ``os.replace``).

        A revision that is new to the router (or runs in a new process) is probed before the
        new routes take effect, so a switch never passes through "no ready revision".
        """
        try:
            mtime = self.state_path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self.state_mtime:
            return
        state = json.loads(self.state_path.read_text())
        backends = {name: {"url": f"http://127.0.0.1:{p['port']}", "pid": p["pid"]}
                    for name, p in state.get("processes", {}).items()}
        fresh = {name: backend for name, backend in backends.items() if self.backends.get(name) != backend}
        await asyncio.gather(*(self._probe(name, backend) for name, backend in fresh.items()))
        self.backends, self.routes = backends, state.get("routes", [])
        comparator = (state.get("shadow") or {}).get("comparator")
        self.event_logger.url = f"{comparator['url']}/" if comparator else None
        self.event_logger.detectors = {name: f"{p['detector']['url']}/" for name, p in state.get("processes", {}).items()
                                       if p.get("detector")}
        self.event_logger.inference_service = state.get("service", {}).get("name", "movie-recommender")
        self.state_mtime = mtime

    async def watch(self) -> None:
        """Keep the state and each revision's readiness current."""
        while True:
            try:
                await self.load_state()
                await asyncio.gather(*(self._probe(name, backend) for name, backend in list(self.backends.items())))
            except Exception:  # a bad moment (a half-read file, a probe error) must not stop the watch
                pass
            await asyncio.sleep(HEALTH_INTERVAL)

    async def _probe(self, name: str, backend: dict) -> None:
        if not alive(backend["pid"]):
            self.ready[name] = False
            return
        try:
            async with self.session.get(f"{backend['url']}/v2/health/ready", timeout=ClientTimeout(total=0.5)) as answer:
                self.ready[name] = answer.status == 200
        except ClientConnectionError:
            self.ready[name] = False
        except asyncio.TimeoutError:
            # Slow is not down: a predictor busy at its limit answers its probe late, and taking
            # the only revision out of service then turned load into 503s. A revision that was
            # never ready stays out until it answers.
            self.ready.setdefault(name, False)

    # ------------------------------------------------------------------ choosing a revision

    def choose(self, tag: str | None, exclude: frozenset = frozenset()) -> dict | None:
        """The route for one request: by tag, or at random by percent among ready revisions."""
        if tag is not None:
            route = next((r for r in self.routes if r.get("tag") == tag), None)
            return route if route and self.ready.get(route["revision"]) and route["revision"] not in exclude else None
        candidates = [r for r in self.routes if r["percent"] > 0 and self.ready.get(r["revision"])
                      and r["revision"] not in exclude]
        if not candidates:
            return None
        pick = random.uniform(0, sum(r["percent"] for r in candidates))
        for route in candidates:
            pick -= route["percent"]
            if pick <= 0:
                return route
        return candidates[-1]

    # ------------------------------------------------------------------ handlers

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        tag = _tag_of(request.headers.get("Host", ""))
        if tag is not None and not any(r.get("tag") == tag for r in self.routes):
            return _error(404, f"no {tag!r} tag route: the InferenceService has none now")
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        requested_at = time.time()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        headers["X-Request-Id"] = request_id
        tried = frozenset()
        while True:
            route = self.choose(tag, tried)
            if route is None:
                self._answered("none", 503).inc()
                return _error(503, "no ready revision to take the request" + (f" on the {tag!r} route" if tag else ""))
            revision = route["revision"]
            backend = self.backends.get(revision)
            try:
                async with self.session.request(request.method, f"{backend['url']}{request.rel_url}", data=body,
                                                headers=headers) as answer:
                    content = await answer.read()
                    status = answer.status
                    content_type = answer.headers.get("Content-Type")
                break
            except ClientConnectionError:
                # Not delivered or not answered: the revision is gone; mark it and try another.
                self.ready[revision] = False
                self.retries.labels(revision=revision).inc()
                tried = tried | {revision}
        self._answered(revision, status).inc()
        if status < 400:
            self._remember(request_id, revision, route["version"])
            if status == 200 and self.event_logger.active and request.path.endswith(":predict"):
                self.event_logger.log(request_id, body, content, requested_at, time.time(), revision)
        response = web.Response(body=content, status=status, headers={
            "X-Request-Id": request_id, "X-Reelops-Revision": revision})
        if content_type:
            response.headers["Content-Type"] = content_type
        return response

    def _answered(self, revision: str, status: int):
        # The labelled child is looked up once per (revision, status): labels() takes a lock
        # and builds a key on every call, which shows at one request in flight.
        key = (revision, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(revision=revision, status=str(status))
        return child

    def _remember(self, request_id: str, revision: str, version: str) -> None:
        self.served[request_id] = (revision, version)
        if len(self.served) > REMEMBERED_REQUESTS:
            self.served.popitem(last=False)

    async def take_feedback(self, request: web.Request) -> web.Response:
        try:
            entries = parse_feedback(await request.read(), request.headers)
        except FeedbackError as error:
            self.feedback.reject(error.reason)
            return _error(400, str(error))
        recorded = [self.feedback.record(entry, self.served.get(entry.get("request_id") or "")) for entry in entries]
        for entry, kept in zip(entries, recorded):
            self.event_logger.log_feedback(entry, kept["revision"])
        return web.json_response({"accepted": len(recorded), "attributed": sum(1 for r in recorded if r["revision"])})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"routes": self.routes, "ready": self.ready})


def _tag_of(host: str) -> str | None:
    for prefix in TAG_PREFIXES:
        if host.startswith(prefix):
            return prefix[:-1]
    return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def build_app(state_path: Path) -> web.Application:
    """The router as an aiohttp application (its watch task starts and stops with it)."""
    router = Router(state_path)
    app = web.Application(client_max_size=8 << 20)

    async def start(app):
        router.session = ClientSession(connector=TCPConnector(limit=0, keepalive_timeout=30),
                                       timeout=ClientTimeout(total=60), auto_decompress=False)
        await router.load_state()
        app["watch"] = asyncio.create_task(router.watch())
        app["logger"] = asyncio.create_task(router.event_logger.run(router.session))

    async def stop(app):
        app["watch"].cancel()
        app["logger"].cancel()
        await router.session.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/v1/feedback", router.take_feedback)
    app.router.add_get("/metrics", router.metrics)
    app.router.add_get("/plane/health", router.health)
    app.router.add_route("*", "/{tail:.*}", router.proxy)
    app["router"] = router
    return app


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="the local serving plane's router")
    parser.add_argument("--state", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    started = time.monotonic()
    web.run_app(build_app(Path(args.state)), host="127.0.0.1", port=args.port, access_log=None,
                print=lambda *_: print(f"router on 127.0.0.1:{args.port} after {time.monotonic() - started:.2f} s",
                                       flush=True))


if __name__ == "__main__":
    main()
