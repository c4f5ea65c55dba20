"""A stand-in Kubernetes API server for InferenceServices, on 127.0.0.1, for contract tests.

It records every request KServeClient sends (verb, path, body) and answers as the API server
and KServe's controller would: objects are stored with ``resourceVersion`` and
``generation`` (a PUT with a stale resourceVersion is a 409), a body with a field the CRD
schema does not declare is refused with 422 (the API server's strict field validation),
merge patches follow RFC 7386, and the status is what KServe's controller writes in
Serverless mode (revisions, traffic, latest/previous rolled-out revision), computed by
:class:`reelops.deploy.rollout.ServiceState`, which follows KServe's code. Modes: an unknown
namespace is a 404 ``namespaces "x" not found``; ``forbidden`` answers writes with 403;
``never_ready`` leaves a new revision not ready.
"""

from __future__ import annotations

import copy
import http.server
import json
import re
import threading

from reelops.deploy.rollout import ServiceState
from reelops.manifests.check import document_problems
from reelops.manifests.objects import MODEL_VERSION_ANNOTATION
from tests.servers import reply_json

PATH = re.compile(r"^/apis/serving\.kserve\.io/v1beta1/namespaces/([^/]+)/inferenceservices(?:/([^/?]+))?")


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class KubeApi:
    """The server and what it holds; ``requests`` lists ``(verb, path, body)`` in order."""

    def __init__(self, namespaces=("reelops",)):
        self.namespaces = set(namespaces)
        self.objects: dict = {}
        self.states: dict = {}
        self.requests: list = []
        self.forbidden = False
        self.never_ready = False
        self.version = 0
        self.lock = threading.Lock()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def _answer(self, status: int, body: dict):
                reply_json(self, body, status)

            def _handle(self, verb: str):
                body = self._body() if verb in ("POST", "PUT", "PATCH") else None
                with api.lock:
                    api.requests.append((verb, self.path.split("?")[0], body,
                                         self.headers.get("Content-Type", "")))
                    status, answer = api.handle(verb, self.path.split("?")[0], body)
                self._answer(status, answer)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

            def do_PATCH(self):
                self._handle("PATCH")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path, namespace="reelops"):
        """A kubeconfig whose current context points at this server."""
        import yaml

        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": "test-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": namespace}}],
        }))
        return path

    # ------------------------------------------------------------------ the API server's and controller's answers

    @staticmethod
    def status_error(code: int, reason: str, message: str):
        return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code}

    def handle(self, verb: str, path: str, body):
        match = PATH.match(path)
        if not match:
            return self.status_error(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace, name = match.groups()
        if namespace not in self.namespaces:
            return self.status_error(404, "NotFound", f'namespaces "{namespace}" not found')
        if verb != "GET" and self.forbidden:
            return self.status_error(403, "Forbidden", f'inferenceservices.serving.kserve.io "{name or body["metadata"]["name"]}" '
                                     f'is forbidden: User "system:serviceaccount:reelops:ci" cannot {verb.lower()} '
                                     f'resource "inferenceservices" in API group "serving.kserve.io" in the namespace '
                                     f'"{namespace}"')
        key = (namespace, name or (body or {}).get("metadata", {}).get("name"))
        current = self.objects.get(key)
        if verb == "GET":
            if current is None:
                return self.status_error(404, "NotFound", f'inferenceservices.serving.kserve.io "{name}" not found')
            return 200, current
        if verb == "POST":
            if current is not None:
                return self.status_error(409, "AlreadyExists", f'inferenceservices.serving.kserve.io "{key[1]}" already exists')
            return self.store(key, body, None)
        if current is None:
            return self.status_error(404, "NotFound", f'inferenceservices.serving.kserve.io "{name}" not found')
        if verb == "PUT":
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return self.status_error(409, "Conflict", "the object has been modified; please apply your changes "
                                                          "to the latest version and try again")
            return self.store(key, body, current)
        return self.store(key, merge_patch(current, body), current)

    def store(self, key, body, current):
        candidate = {k: v for k, v in copy.deepcopy(body).items() if k != "status"}
        metadata = candidate["metadata"]
        for field in ("resourceVersion", "generation", "uid", "creationTimestamp"):
            metadata.pop(field, None)
        problems = document_problems(candidate)
        if problems:
            return self.status_error(422, "Invalid", f"InferenceService.serving.kserve.io \"{key[1]}\" is invalid: "
                                                     + "; ".join(problems))
        self.version += 1
        spec_changed = current is None or current["spec"] != candidate["spec"]
        metadata.update(namespace=key[0], resourceVersion=str(self.version),
                        generation=(current["metadata"]["generation"] if current else 0) + (1 if spec_changed else 0),
                        uid=current["metadata"]["uid"] if current else f"uid-{self.version}")
        state = self.states.setdefault(key, ServiceState(key[1]))
        ready = True
        before = copy.deepcopy(state.to_dict()) if state.spec else None
        created = state.apply(candidate, metadata["annotations"].get(MODEL_VERSION_ANNOTATION, "?"))
        if created is not None and self.never_ready:
            # The new revision never gets ready: Knative keeps routing by the last ready one.
            ready = False
            restored = ServiceState.from_dict(before) if before else ServiceState(key[1])
            restored.revisions.append(created)
            restored.latest_created = created.name
            restored.spec = candidate
            self.states[key] = state = restored
        predictor = state.status()
        candidate["status"] = {
            "observedGeneration": metadata["generation"],
            "url": f"http://{key[1]}.{key[0]}.example.com",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            **({} if ready else {"reason": "RevisionFailed",
                                                 "message": f"Revision \"{predictor['latestCreatedRevision']}\" failed "
                                                            "with message: container exited with code 1"})}],
            "components": {"predictor": {**predictor, "url": f"http://{key[1]}-predictor.{key[0]}.example.com"}},
        }
        self.objects[key] = candidate
        return (201 if current is None else 200), candidate
