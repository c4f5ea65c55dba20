"""The KServe target: the rollout's InferenceService objects applied through ``KServeClient``.

The same ``V1beta1InferenceService`` objects the local plane applies (built by
:func:`reelops.manifests.objects.inference_service_object`), in a namespace of the cluster the
kubeconfig (``--kubeconfig``, ``KUBECONFIG`` or ``~/.kube/config``) or the pod's in-cluster
configuration names. KServe's controller does the rest, by the rules written in
:mod:`reelops.deploy.rollout`: a new model version is a new revision; ``canaryTrafficPercent``
splits traffic; its removal promotes; 0 rolls back.

Verbs: the first deployment is ``create``; a new version and a promotion ``replace`` the
whole object (a promotion removes ``canaryTrafficPercent``, which a merge patch of the SDK
object cannot express); a rollback is a ``patch`` that sets ``canaryTrafficPercent: 0``.
After each change the target waits until the InferenceService is ready for that generation.
The gRPC InferenceService (``<name>-grpc``) follows the REST one through every step.

What the target cannot see in KServe's status (which model version a revision serves, which
step of a strategy is in progress) it keeps as annotations on the object:
``reelops.io/model-version`` and ``reelops.io/rollout``.
"""

from __future__ import annotations

import os
import time

from reelops.deploy.rollout import BLUE_GREEN, CANARY, STRATEGIES, DeployError
from reelops.manifests.objects import MODEL_VERSION_ANNOTATION, TAG_ROUTING_ANNOTATION

ROLLOUT_ANNOTATION = "reelops.io/rollout"
STABLE, ROLLED_BACK = "stable", "rolled-back"
# Schemes a KServe storage initializer reads from inside a cluster.
CLUSTER_SCHEMES = ("s3://", "gs://", "pvc://", "hdfs://", "webhdfs://", "https://", "oci://")


def cluster_storage_uri(version: str) -> str:
    """The storage URI of a version's model folder, readable from a cluster.

    The folder is the version's ``model_dir`` artifact. A tracking server that proxies
    artifacts (``mlflow-artifacts:/...``) keeps them under its ``--artifacts-destination``,
    which the client cannot see: ``REELOPS_ARTIFACTS_DESTINATION`` names it.

    Raises:
        DeployError: the artifacts are somewhere a cluster cannot read (a local store).
    """
    from reelops import registry

    uri = registry.artifact_uri(version).rstrip("/") + "/model_dir"
    if uri.startswith("mlflow-artifacts:"):
        destination = os.environ.get("REELOPS_ARTIFACTS_DESTINATION", "").rstrip("/")
        if not destination:
            raise DeployError(f"version {version}'s model is at {uri} behind the tracking server: set "
                              "REELOPS_ARTIFACTS_DESTINATION to the server's --artifacts-destination, or pass "
                              "--storage-uri")
        uri = destination + "/" + uri.split(":", 1)[1].lstrip("/")
    if not uri.startswith(CLUSTER_SCHEMES):
        raise DeployError(f"version {version}'s model is at {uri}, which a cluster cannot read: use a tracking "
                          "server with an s3:// or gs:// artifact root, or pass --storage-uri")
    return uri


class KServeTarget:
    """Rollout steps on a cluster through ``KServeClient``.

    Args:
        namespace: where the InferenceServices live (the kubeconfig context's, or the pod's, when None).
        kubeconfig: a kubeconfig file (``KUBECONFIG`` or ``~/.kube/config`` when None; in a pod,
            the in-cluster configuration).
        timeout: seconds to wait for an InferenceService to become ready.
        poll: seconds between readiness checks.
    """

    def __init__(self, namespace: str | None = None, kubeconfig: str | None = None, timeout: float = 600.0,
                 poll: float = 2.0):
        from reelops.serving import import_kserve

        kserve = import_kserve()
        from kubernetes.config import ConfigException

        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
        if kubeconfig and not os.path.isfile(kubeconfig):
            raise DeployError(f"no kubeconfig at {kubeconfig}")
        try:
            self.client = kserve.KServeClient(config_file=kubeconfig)
        except (ConfigException, OSError, TypeError) as error:
            where = kubeconfig or "~/.kube/config"
            raise DeployError(f"no Kubernetes configuration: {where} is missing or unusable and this is not a "
                              f"pod of a cluster ({' '.join(str(error).split())})") from None
        self.namespace = namespace or _default_namespace(kubeconfig)
        self.timeout, self.poll = timeout, poll

    # ------------------------------------------------------------------ talking to the API server

    def _call(self, what: str, name: str, action):
        """Run one KServeClient call; an API error becomes one line naming it."""
        try:
            return action()
        except RuntimeError as error:
            raise self._explain(what, name, error) from None

    def _explain(self, what: str, name: str, error: Exception) -> DeployError:
        # KServeClient wraps the API server's answer (an ApiException) in a RuntimeError.
        cause = error.__cause__ or error.__context__
        status = getattr(cause, "status", None)
        reason = _api_message(cause) if status else " ".join(str(error).split())[:300]
        if status == 404 and "namespaces" in reason:
            return DeployError(f"namespace {self.namespace!r} not found on the cluster ({what} {name})")
        if status == 403:
            return DeployError(f"forbidden to {what} InferenceService {self.namespace}/{name}: {reason}")
        return DeployError(f"{what} InferenceService {self.namespace}/{name} failed"
                           f"{f' (HTTP {status})' if status else ''}: {reason}")

    def read(self, name: str) -> dict | None:
        """The InferenceService as the API server has it, or None when it does not exist."""
        try:
            return self.client.get(name, namespace=self.namespace)
        except RuntimeError as error:
            cause = error.__cause__ or error.__context__
            if getattr(cause, "status", None) == 404 and "namespaces" not in _api_message(cause):
                return None
            raise self._explain("get", name, error) from None

    def wait_ready(self, name: str, generation: int) -> dict:
        """Wait until the InferenceService is ready at ``generation`` (or raise after the timeout)."""
        deadline = time.monotonic() + self.timeout
        while True:
            current = self._call("get", name, lambda: self.client.get(name, namespace=self.namespace))
            status = current.get("status") or {}
            ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
            predictor = (status.get("components") or {}).get("predictor", {})
            if (status.get("observedGeneration", 0) >= generation and ready.get("status") == "True"
                    and predictor.get("latestReadyRevision") == predictor.get("latestCreatedRevision")):
                return current
            if time.monotonic() >= deadline:
                raise DeployError(f"InferenceService {self.namespace}/{name} did not become ready within "
                                  f"{self.timeout:g} s: {ready.get('reason') or 'no Ready condition'}"
                                  f"{': ' + ready['message'] if ready.get('message') else ''}")
            time.sleep(self.poll)

    # ------------------------------------------------------------------ rollout steps

    def _objects(self, version: str, storage_uri: str, canary: int | None, tag_routing: bool, override: bool,
                 phase: str):
        from reelops.manifests import RenderSettings
        from reelops.manifests.objects import inference_service_object

        settings = RenderSettings(namespace=self.namespace, storage_uri=storage_uri)
        objects = []
        for protocol in ("rest", "grpc"):
            service = inference_service_object(settings, protocol=protocol, storage_uri=storage_uri,
                                               canary_traffic_percent=canary, allow_unblessed=override,
                                               tag_routing=tag_routing, model_version=version)
            service.metadata.annotations[ROLLOUT_ANNOTATION] = phase
            objects.append(service)
        return objects

    def _apply(self, verb: str, objects: list) -> list:
        applied = []
        for service in objects:
            name = service.metadata.name
            if verb == "create":
                result = self._call("create", name, lambda: self.client.create(service, namespace=self.namespace))
            elif verb == "replace":
                service.metadata.resource_version = None  # KServeClient.replace reads the current one
                result = self._call("replace", name,
                                    lambda: self.client.replace(name, service, namespace=self.namespace))
            else:
                result = self._call("patch", name, lambda: self.client.patch(name, service, namespace=self.namespace))
            applied.append((name, result["metadata"].get("generation", 1)))
        return [self.wait_ready(name, generation) for name, generation in applied]

    def deploy(self, version: str, strategy: str, percent: int, storage_uri: str, override: bool) -> str:
        """Apply the strategy's first step for ``version``; returns ``"first"`` or the strategy."""
        from reelops.registry import MODEL_NAME

        current = self.read(MODEL_NAME)
        if current is None:
            self._apply("create", self._objects(version, storage_uri, None, False, override, STABLE))
            return "first"
        annotations = current["metadata"].get("annotations") or {}
        if annotations.get(ROLLOUT_ANNOTATION) in STRATEGIES:
            raise DeployError(f"a {annotations[ROLLOUT_ANNOTATION]} of version "
                              f"{annotations.get(MODEL_VERSION_ANNOTATION)} is in progress on "
                              f"{self.namespace}/{MODEL_NAME}: promote or roll back first")
        rolled_out = _rolled_out_version(current)
        if rolled_out == version:
            raise DeployError(f"version {version} already serves all traffic on {self.namespace}/{MODEL_NAME}")
        canary = percent if strategy == CANARY else 0
        self._apply("replace", self._objects(version, storage_uri, canary, strategy == BLUE_GREEN, override, strategy))
        return strategy

    def promote(self) -> tuple:
        """Remove ``canaryTrafficPercent``: the latest revision takes all traffic.

        Returns:
            ``(version, whether it serves under an override of the gate)``.
        """
        from reelops.registry import MODEL_NAME

        current = self._current_rollout(MODEL_NAME)
        annotations = current["metadata"]["annotations"]
        if annotations.get(ROLLOUT_ANNOTATION) not in STRATEGIES:
            raise DeployError(f"nothing to promote on {self.namespace}/{MODEL_NAME}: no rollout in progress")
        version, override = annotations[MODEL_VERSION_ANNOTATION], "--allow-unblessed" in _args(current)
        self._apply("replace", self._objects(version, _storage_uri_of(current), None,
                                             annotations.get(TAG_ROUTING_ANNOTATION) == "true", override, STABLE))
        return version, override

    def rollback(self) -> tuple:
        """``canaryTrafficPercent: 0``: all traffic to the last rolled-out revision.

        Returns:
            ``(version of the latest revision, whether a rollout was in progress)``.
        """
        from reelops.registry import MODEL_NAME

        current = self._current_rollout(MODEL_NAME)
        annotations = current["metadata"]["annotations"]
        phase = annotations.get(ROLLOUT_ANNOTATION)
        predictor = current.get("status", {}).get("components", {}).get("predictor", {})
        if phase == ROLLED_BACK or (phase not in STRATEGIES and not predictor.get("previousRolledoutRevision")):
            raise DeployError(f"nothing to roll back on {self.namespace}/{MODEL_NAME}: no rollout in progress and "
                              "no earlier revision rolled out")
        version = annotations[MODEL_VERSION_ANNOTATION]
        self._apply("patch", self._objects(version, _storage_uri_of(current), 0,
                                           annotations.get(TAG_ROUTING_ANNOTATION) == "true",
                                           "--allow-unblessed" in _args(current), ROLLED_BACK))
        return version, phase in STRATEGIES

    def _current_rollout(self, name: str) -> dict:
        current = self.read(name)
        if current is None:
            raise DeployError(f"no InferenceService {self.namespace}/{name}: reelops deploy VERSION --target kserve first")
        return current

    def status(self) -> dict:
        """Both InferenceServices as KServe reports them: revisions, traffic, readiness, URL."""
        from reelops.registry import MODEL_NAME

        services = {}
        for name in (MODEL_NAME, f"{MODEL_NAME}-grpc"):
            current = self.read(name)
            if current is None:
                continue
            status = current.get("status") or {}
            predictor = (status.get("components") or {}).get("predictor", {})
            ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
            annotations = current["metadata"].get("annotations") or {}
            services[name] = {
                "url": status.get("url") or predictor.get("url"), "ready": ready.get("status") == "True",
                "phase": annotations.get(ROLLOUT_ANNOTATION), "latest_version": annotations.get(MODEL_VERSION_ANNOTATION),
                "canaryTrafficPercent": current["spec"]["predictor"].get("canaryTrafficPercent"),
                **{key: predictor.get(key, "") for key in ("latestCreatedRevision", "latestReadyRevision",
                                                           "latestRolledoutRevision", "previousRolledoutRevision")},
                "traffic": predictor.get("traffic", []),
            }
        return {"target": "kserve", "namespace": self.namespace, "running": bool(services), "services": services}


def _default_namespace(kubeconfig: str | None) -> str:
    """The pod's namespace in a cluster, else the kubeconfig's current context's (``default`` without one)."""
    in_pod = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if os.path.isfile(in_pod) and not kubeconfig:
        with open(in_pod, encoding="utf-8") as handle:
            return handle.read().strip()
    from kubernetes import config

    _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    return (active or {}).get("context", {}).get("namespace") or "default"


def _api_message(error) -> str:
    import json

    body = getattr(error, "body", None)
    try:
        return json.loads(body)["message"]
    except (TypeError, ValueError, KeyError):
        return " ".join(str(getattr(error, "reason", "") or error).split())[:300]


def _args(service: dict) -> list:
    return service["spec"]["predictor"]["containers"][0].get("args", [])


def _storage_uri_of(service: dict) -> str:
    args = _args(service)
    return args[args.index("--storage-uri") + 1]


def _rolled_out_version(service: dict) -> str | None:
    """The version serving all traffic when no rollout is in progress (the latest, unless rolled back)."""
    annotations = service["metadata"].get("annotations") or {}
    if annotations.get(ROLLOUT_ANNOTATION) == ROLLED_BACK:
        return None
    return annotations.get(MODEL_VERSION_ANNOTATION)
