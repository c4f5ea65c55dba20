"""KServe logger events in: parsed with the CloudEvents SDK, paired by ``ce-id``.

KServe's logger sends each request and its response as two CloudEvents in binary mode
(``ce-type`` ``org.kubeflow.serving.inference.request`` / ``.response``, the same ``ce-id``,
``ce-time`` the moment each happened); the local plane's router sends the same events in
batches (structured mode, ``application/cloudevents-batch+json``). The shadow comparator and
the drift detector take them through one :class:`EventIntake`; a pair goes to its ``on_pair``,
an event of another accepted type (the detector's feedback) to that type's handler.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict

from reelops.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
# A request whose response never came is forgotten after this many newer unpaired events.
MAX_UNPAIRED = 10_000


def event_seconds(stamp) -> float | None:
    """A CloudEvent ``time`` (RFC 3339) as Unix seconds; None when absent or unreadable."""
    if not stamp:
        return None
    try:
        return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class EventIntake:
    """Parses logger events and pairs request with response.

    Args:
        on_pair: called with ``(event_id, request, response)``, each ``{"body": bytes, "time":
            seconds or None}``; it counts what it cannot take itself.
        on_drop: called with ``(reason, count)`` for events that are not used.
        on_event: called with the short type (``request`` / ``response`` / the other type) of
            every event taken.
        other_types: ce-types taken besides the logger's, each with its handler
            ``(body: bytes) -> (status, message)``.
    """

    def __init__(self, on_pair, on_drop, on_event=None, other_types: dict | None = None):
        self.on_pair, self.on_drop, self.on_event = on_pair, on_drop, on_event
        self.other_types = other_types or {}
        self.unpaired: OrderedDict = OrderedDict()  # ce-id -> the first of its two events

    @property
    def accepted_types(self) -> list:
        return [REQUEST_TYPE, RESPONSE_TYPE, *self.other_types]

    def take(self, headers, body: bytes) -> tuple:
        """One event in binary mode, or a batch; returns ``(status, message)`` for the HTTP answer."""
        if (headers.get("content-type") or "").split(";")[0].strip() == BATCH_CONTENT_TYPE:
            return self._take_batch(body)
        from cloudevents.http import from_http

        try:
            event = from_http(headers, body)
        except Exception as error:  # noqa: BLE001 - the SDK raises several types for one bad event
            self.on_drop("bad_event", 1)
            return 400, f"not a CloudEvent: {' '.join(str(error).split())[:200]}"
        return self._take_event(event["type"], event["id"], body, event.get("time"))

    def _take_batch(self, body: bytes) -> tuple:
        try:
            events = json.loads(body)
            if not isinstance(events, list):
                raise ValueError("not a list")
        except ValueError as error:
            self.on_drop("bad_event", 1)
            return 400, f"not a CloudEvents batch (a JSON list of events): {error}"
        for index, event in enumerate(events):
            if not isinstance(event, dict) or not all(key in event for key in ("id", "type", "data")):
                self.on_drop("bad_event", 1)
                return 400, f"batch[{index}]: an event needs id, type and data"
            status, message = self._take_event(event["type"], str(event["id"]), json.dumps(event["data"]).encode(),
                                               event.get("time"))
            if status >= 300:
                return status, f"batch[{index}]: {message}"
        return 202, "accepted"

    def _take_event(self, kind: str, event_id: str, body: bytes, stamp) -> tuple:
        known = kind in self.other_types or kind in (REQUEST_TYPE, RESPONSE_TYPE)
        if not known:
            self.on_drop("bad_event", 1)
            return 400, f"ce-type: expected one of {', '.join(self.accepted_types)}, got {kind!r}"
        if self.on_event:
            self.on_event(kind.rsplit(".", 1)[-1])
        if kind in self.other_types:
            return self.other_types[kind](body)
        other = self.unpaired.pop(event_id, None)
        mine = {"type": kind, "body": body, "time": event_seconds(stamp)}
        if other is None or other["type"] == kind:
            self.unpaired[event_id] = mine
            if len(self.unpaired) > MAX_UNPAIRED:  # a response that never came: forget the oldest
                self.unpaired.popitem(last=False)
                self.on_drop("unpaired", 1)
            return 202, "accepted"
        request, response = (mine, other) if kind == REQUEST_TYPE else (other, mine)
        self.on_pair(event_id, request, response)
        return 202, "accepted"


def event_sink_app(sink, status_path: str, max_body: int = 8 << 20):
    """An aiohttp application around an event sink (the comparator, the detector): ``POST /``
    takes events (``sink.take``), ``status_path`` answers ``sink.status()`` as JSON,
    ``/metrics`` the sink's Prometheus registry (``sink.registry``), ``/health`` that it runs.
    Callers add their own start-up, clean-up and routes."""
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    app = web.Application(client_max_size=max_body)

    async def events(request):
        status, message = sink.take(request.headers, await request.read())
        return web.json_response({"status": message} if status < 300 else {"error": message}, status=status)

    async def metrics(request):
        return web.Response(body=generate_latest(sink.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(request):
        return web.json_response(sink.status())

    async def health(request):
        return web.json_response({"ok": True})

    app.router.add_post("/", events)
    app.router.add_get("/metrics", metrics)
    app.router.add_get(status_path, status)
    app.router.add_get("/health", health)
    return app
