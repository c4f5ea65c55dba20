"""Payload logging compatible with the KServe logger: requests and responses as CloudEvents.

Events are queued (bounded by count and by bytes) and posted by one background thread, in
binary content mode (``ce-*`` headers, JSON body), with the types and extensions the KServe
agent uses. A slow, failing or absent sink never delays or fails a prediction: when the
queue is full the event is dropped and counted, and a failed post is counted by its true
reason (``timeout``, ``unreachable``, ``http_<status>``, ``error``).
"""

from __future__ import annotations

import datetime as _dt
import json
import queue
import threading

from prometheus_client import Counter

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"

DROPPED = Counter("reelops_payload_log_dropped", "Payload-log events not delivered", ["reason"])
SENT = Counter("reelops_payload_log_sent", "Payload-log events delivered", ["type"])


class PayloadLogger:
    """Posts CloudEvents to ``url`` from a bounded queue on a daemon thread.

    Args:
        url: the sink (a KServe logger URL, a Knative broker, any HTTP endpoint).
        inference_service: the ``inferenceservicename`` extension.
        namespace: the ``namespace`` extension.
        component: ``predictor``, ``transformer`` ...
        endpoint: the ``endpoint`` extension (``default``, ``canary``).
        max_queue: events held at most; further ones are dropped and counted.
        max_queue_bytes: bytes of event bodies held at most (a hanging sink and large
            requests once kept 130 MB); further events are dropped and counted.
        timeout: seconds per post.
    """

    def __init__(self, url: str, inference_service: str, namespace: str = "default", component: str = "predictor",
                 endpoint: str = "default", max_queue: int = 1000, timeout: float = 2.0,
                 max_queue_bytes: int = 16 << 20):
        import httpx

        self.url = url
        self.max_queue_bytes = max_queue_bytes
        self.queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self.extensions = {"ce-inferenceservicename": inference_service, "ce-namespace": namespace,
                           "ce-component": component, "ce-endpoint": endpoint}
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.client = httpx.Client(timeout=timeout)
        self.thread = threading.Thread(target=self._run, name="payload-logger", daemon=True)
        self.thread.start()

    def log(self, event_type: str, request_id: str, body, source: str) -> None:
        """Queue one event; never blocks."""
        content = json.dumps(body, default=_plain).encode()
        with self._bytes_lock:
            if self.queued_bytes + len(content) > self.max_queue_bytes:
                DROPPED.labels(reason="queue_bytes_full").inc()
                return
            self.queued_bytes += len(content)
        try:
            self.queue.put_nowait((event_type, request_id, content, source))
        except queue.Full:
            self._release(len(content))
            DROPPED.labels(reason="queue_full").inc()

    def _release(self, size: int) -> None:
        with self._bytes_lock:
            self.queued_bytes -= size

    def _run(self) -> None:
        import httpx

        while True:
            event_type, request_id, content, source = self.queue.get()
            headers = {
                "ce-specversion": "1.0", "ce-id": request_id, "ce-type": event_type, "ce-source": source,
                "ce-time": _dt.datetime.now(_dt.timezone.utc).isoformat(), "content-type": "application/json",
                **self.extensions,
            }
            try:
                response = self.client.post(self.url, content=content, headers=headers)
                if response.status_code >= 300:
                    DROPPED.labels(reason=f"http_{response.status_code // 100}xx").inc()
                else:
                    SENT.labels(type=event_type.rsplit(".", 1)[-1]).inc()
            except httpx.TimeoutException:
                DROPPED.labels(reason="timeout").inc()
            except httpx.TransportError:  # refused, reset, DNS: the sink cannot be reached
                DROPPED.labels(reason="unreachable").inc()
            except Exception:  # noqa: BLE001 - a broken sink must never stop the logger
                DROPPED.labels(reason="error").inc()
            finally:
                self._release(len(content))


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)
