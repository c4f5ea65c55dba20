"""Feedback, defined once: the delayed label of a recommendation (a user's rating of a movie).

It enters the serving plane at ``POST /v1/feedback`` as JSON, one object or a list::

    {"user_id": 42, "movie_id": 318, "rating": 4.5, "request_id": "<X-Request-Id of the answer>",
     "timestamp": 893286638}

or as a CloudEvent in binary mode with the same body, ``ce-type: org.reelops.feedback``
(and ``ce-id``, ``ce-source``, ``ce-specversion``). ``rating`` is 0.5 to 5 stars;
``request_id`` (optional) attributes the rating to the revision that served that request,
``timestamp`` (optional, Unix seconds) defaults to the time it arrived.

Each accepted rating is appended to ``feedback.jsonl`` beside the plane's state and counted
for Prometheus per revision and version (``reelops_feedback_total`` and
``reelops_feedback_stars_total``: their ratio is the mean rating users gave each revision's
recommendations; ``reelops_feedback_stars_squared_total`` gives their variance), which is what
the canary analysis and the drift detector read. A bad
rating gets a 400 naming the field and is counted by reason
(``reelops_feedback_rejected_total``).
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

from prometheus_client import Counter

FEEDBACK_EVENT_TYPE = "org.reelops.feedback"
FIELDS = {"user_id", "movie_id", "rating", "request_id", "timestamp"}
MAX_BATCH = 10_000


class FeedbackError(ValueError):
    """A feedback body that cannot be taken; ``reason`` is the counter's label."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _integer(entry: dict, name: str, where: str) -> int:
    value = entry.get(name)
    if value is None:
        raise FeedbackError(f"{where}.{name}: required", "missing_field")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise FeedbackError(f"{where}.{name}: must be a non-negative integer, got {value!r}", "bad_field")
    return value


def _entry(raw, where: str) -> dict:
    if not isinstance(raw, dict):
        raise FeedbackError(f"{where}: must be an object with user_id, movie_id and rating", "bad_body")
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise FeedbackError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(sorted(FIELDS))})",
                            "unknown_field")
    rating = raw.get("rating")
    if rating is None:
        raise FeedbackError(f"{where}.rating: required", "missing_field")
    if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not math.isfinite(rating) \
            or not 0.5 <= rating <= 5:
        raise FeedbackError(f"{where}.rating: must be a number of stars from 0.5 to 5, got {rating!r}", "bad_field")
    request_id = raw.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or not 0 < len(request_id) <= 128):
        raise FeedbackError(f"{where}.request_id: must be the X-Request-Id string of an answer", "bad_field")
    timestamp = raw.get("timestamp", time.time())
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp) \
            or timestamp < 0:
        raise FeedbackError(f"{where}.timestamp: must be Unix seconds, got {timestamp!r}", "bad_field")
    return {"user_id": _integer(raw, "user_id", where), "movie_id": _integer(raw, "movie_id", where),
            "rating": float(rating), "request_id": request_id, "timestamp": float(timestamp)}


def parse_feedback(body: bytes, headers) -> list:
    """Validated feedback entries from a request body (JSON, or a binary-mode CloudEvent).

    Raises:
        FeedbackError: the body or one entry is not valid feedback (names the field).
    """
    event_type = headers.get("ce-type")
    if event_type is not None and event_type != FEEDBACK_EVENT_TYPE:
        raise FeedbackError(f"ce-type: expected {FEEDBACK_EVENT_TYPE!r}, got {event_type!r}", "bad_event_type")
    if event_type is not None:
        missing = [name for name in ("ce-id", "ce-source", "ce-specversion") if not headers.get(name)]
        if missing:
            raise FeedbackError(f"{missing[0]}: required in a binary-mode CloudEvent", "bad_event")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FeedbackError("body: not JSON (one feedback object or a list of them)", "bad_body") from None
    items = payload if isinstance(payload, list) else [payload]
    if not items or len(items) > MAX_BATCH:
        raise FeedbackError(f"body: 1 to {MAX_BATCH} feedback entries, got {len(items)}", "bad_body")
    where = "feedback" if not isinstance(payload, list) else None
    return [_entry(item, where or f"feedback[{index}]") for index, item in enumerate(items)]


class FeedbackBook:
    """Where accepted feedback goes: a JSON-lines file and Prometheus counters."""

    def __init__(self, path: Path, registry):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.count = Counter("reelops_feedback", "Ratings received, by the revision and version that served them",
                             ["revision", "version"], registry=registry)
        self.stars = Counter("reelops_feedback_stars", "Sum of the ratings received, by revision and version",
                             ["revision", "version"], registry=registry)
        self.stars_squared = Counter("reelops_feedback_stars_squared",
                                     "Sum of the squared ratings received, by revision and version",
                                     ["revision", "version"], registry=registry)
        self.rejected = Counter("reelops_feedback_rejected", "Feedback refused, by reason", ["reason"],
                                registry=registry)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason=reason).inc()

    def record(self, entry: dict, served: tuple | None) -> dict:
        """Attribute one entry (``served`` is ``(revision, version)`` of its request, when known) and keep it."""
        revision, version = served or ("", "")
        kept = {**entry, "revision": revision, "version": version}
        labels = {"revision": revision or "unattributed", "version": version or "unknown"}
        self.count.labels(**labels).inc()
        self.stars.labels(**labels).inc(entry["rating"])
        self.stars_squared.labels(**labels).inc(entry["rating"] ** 2)
        with self.lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(kept) + "\n")
        return kept


def read_feedback(path: Path) -> list:
    """Every feedback entry kept in a plane's ``feedback.jsonl`` (oldest first)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
