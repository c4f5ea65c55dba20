"""Core and KServe objects: namespace, RBAC, the tracking server, the InferenceServices and the
recurring monitoring run, built with the kubernetes client and kserve SDK classes.

Each builder returns plain dictionaries (what ``kubectl apply`` reads), serialized by the
kubernetes client from the SDK objects, so a field the SDK does not know cannot be written.
"""

from __future__ import annotations

from kubernetes import client as k8s

from reelops.cluster import MLFLOW_SECRET, SECRET_ENV, STORAGE_SECRET
from reelops.manifests.settings import BROKER, RenderSettings

# The serve image's non-root user (Dockerfile: useradd --uid 10001).
RUN_AS = 10001
PIPELINE_RUNNER = "reelops-pipeline-runner"
PREDICTOR_ACCOUNT = "reelops-predictor"
SCHEDULER_ACCOUNT = "reelops-scheduler"
DEPLOYER_ACCOUNT = "reelops-deployer"
# KServe's Serverless mode (Knative) is the one that implements canaryTrafficPercent and tag routes.
SERVERLESS = "Serverless"
REST_PORT, GRPC_PORT = 8080, 8081
# The drift detector's port (``reelops detector serve``): undeclared in a Serverless pod, where
# only the serving container may declare one; Prometheus scrapes it by number.
DETECTOR_PORT = 8095
DETECTOR_SERVICE = "reelops-drift-detector"
# Where kfp.Client looks for a service-account token in a pod (KF_PIPELINES_SA_TOKEN_PATH's default).
KFP_TOKEN_DIR = "/var/run/secrets/kubeflow/pipelines"
# Secret keys a pod cannot do without: their absence must stop the pod from starting (a
# predictor without a tracking URI would otherwise look for models in an empty local store).
REQUIRED_KEYS = {"tracking_uri", "access_key", "secret_key"}


def serialize(obj) -> dict:
    """An SDK object as the dictionary ``kubectl`` reads (camelCase keys, no empty fields)."""
    return k8s.ApiClient().sanitize_for_serialization(obj)


def namespace(settings: RenderSettings) -> dict:
    """The namespace everything else lives in."""
    return serialize(k8s.V1Namespace(api_version="v1", kind="Namespace", metadata=k8s.V1ObjectMeta(
        name=settings.namespace, labels=settings.labels("reelops"))))


def _meta(settings: RenderSettings, name: str, component: str, annotations: dict | None = None) -> k8s.V1ObjectMeta:
    return k8s.V1ObjectMeta(name=name, namespace=settings.namespace, labels=settings.labels(component),
                            annotations=annotations)


def rbac(settings: RenderSettings) -> list:
    """Service accounts and the namespaced roles they hold.

    The pipeline runner (the account pipeline runs use) may read and patch InferenceServices
    in this namespace only: a rollout moves traffic on an existing service. The scheduler
    may create runs in Kubeflow Pipelines (multi-user KFP checks these verbs on
    ``pipelines.kubeflow.org`` with a SubjectAccessReview). The deployer (what CD's
    ``reelops deploy --target kserve`` uses) may also create and replace them. The
    predictor's account may create KFP runs and nothing else: its drift-detector sidecar
    starts the retraining pipeline (a pod has one account, so the sidecar cannot hold the
    scheduler's); its secrets arrive as environment variables.
    """
    accounts = [k8s.V1ServiceAccount(api_version="v1", kind="ServiceAccount",
                                     metadata=_meta(settings, name, component))
                for name, component in ((PIPELINE_RUNNER, "pipeline-runner"), (PREDICTOR_ACCOUNT, "predictor"),
                                        (SCHEDULER_ACCOUNT, "scheduler"), (DEPLOYER_ACCOUNT, "deployer"))]
    rules = {
        PIPELINE_RUNNER: [k8s.V1PolicyRule(api_groups=["serving.kserve.io"], resources=["inferenceservices"],
                                           verbs=["get", "list", "watch", "patch"])],
        # `reelops deploy --target kserve` creates the InferenceServices and replaces them on a rollout.
        DEPLOYER_ACCOUNT: [k8s.V1PolicyRule(api_groups=["serving.kserve.io"], resources=["inferenceservices"],
                                            verbs=["get", "list", "watch", "create", "update", "patch"])],
        SCHEDULER_ACCOUNT: [k8s.V1PolicyRule(api_groups=["pipelines.kubeflow.org"],
                                             resources=["pipelines", "pipelines/versions", "experiments", "runs"],
                                             verbs=["get", "list", "create"])],
        PREDICTOR_ACCOUNT: [k8s.V1PolicyRule(api_groups=["pipelines.kubeflow.org"],
                                             resources=["pipelines", "pipelines/versions", "experiments", "runs"],
                                             verbs=["get", "list", "create"])],
    }
    documents = [serialize(account) for account in accounts]
    for account, account_rules in rules.items():
        documents.append(serialize(k8s.V1Role(api_version="rbac.authorization.k8s.io/v1", kind="Role",
                                              metadata=_meta(settings, account, "rbac"), rules=account_rules)))
        documents.append(serialize(k8s.V1RoleBinding(
            api_version="rbac.authorization.k8s.io/v1", kind="RoleBinding", metadata=_meta(settings, account, "rbac"),
            role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=account),
            subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name=account, namespace=settings.namespace)])))
    return documents


def secret_env(secret: str, keys=None) -> list:
    """Environment variables from one of the secrets ``reelops.cluster`` names.

    Args:
        secret: the secret's name (``reelops-mlflow`` or ``reelops-object-store``).
        keys: the secret keys to map (all of the secret's keys when None).
    """
    mapping = SECRET_ENV[secret]
    return [k8s.V1EnvVar(name=mapping[key], value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(
        name=secret, key=key, optional=key not in REQUIRED_KEYS))) for key in (keys or mapping)]


def _container_security() -> k8s.V1SecurityContext:
    # All of it on the container: Knative accepts these container fields by default, while a
    # pod-level securityContext beyond seccomp needs its kubernetes.podspec-securitycontext flag.
    return k8s.V1SecurityContext(allow_privilege_escalation=False, read_only_root_filesystem=True,
                                 run_as_non_root=True, run_as_user=RUN_AS, run_as_group=RUN_AS,
                                 capabilities=k8s.V1Capabilities(drop=["ALL"]),
                                 seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"))


def _pod_security() -> k8s.V1PodSecurityContext:
    """Pod-level settings for plain pods (fsGroup makes a mounted volume writable by the user)."""
    return k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=RUN_AS, run_as_group=RUN_AS, fs_group=RUN_AS,
                                    seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"))


# With a read-only root filesystem the processes write only here (model downloads, caches).
_SCRATCH_VOLUME = k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource())
_SCRATCH_MOUNT = k8s.V1VolumeMount(name="scratch", mount_path="/tmp")
SCRATCH_ENVIRONMENT = {"HOME": "/tmp/home", "REELOPS_WORKSPACE": "/tmp/reelops"}
_SCRATCH_ENV = [k8s.V1EnvVar(name=name, value=value) for name, value in SCRATCH_ENVIRONMENT.items()]


MODEL_VERSION_ANNOTATION = "reelops.io/model-version"
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"


def inference_service(settings: RenderSettings, protocol: str = "rest", storage_uri: str | None = None,
                      canary_traffic_percent: int | None = None, allow_unblessed: bool = False) -> dict:
    """The predictor as a KServe InferenceService (a dictionary); see :func:`inference_service_object`."""
    return serialize(inference_service_object(settings, protocol, storage_uri, canary_traffic_percent,
                                              allow_unblessed))


def shadow(settings: RenderSettings) -> list:
    """The shadow: its InferenceService (``{name}-shadow``, answers reach nobody), and the
    comparator (``reelops shadow``, the serve image) as a Deployment and a Service, which the
    primary's logger feeds (see :func:`inference_service_object`)."""
    from dataclasses import replace

    twin = replace(settings, name=f"{settings.name}-shadow")
    isvc = serialize(inference_service_object(twin, "rest", settings.shadow_storage_uri, allow_unblessed=True))
    # The shadow is judged by the comparator, not scraped as a serving revision or logged itself.
    isvc["metadata"]["labels"]["app.kubernetes.io/name"] = "shadow"
    isvc["spec"]["predictor"]["containers"][0]["args"][
        isvc["spec"]["predictor"]["containers"][0]["args"].index(twin.name)] = settings.name
    meta = _meta(settings, "reelops-shadow-comparator", "shadow-comparator")
    selector = {"app.kubernetes.io/name": "shadow-comparator", "app.kubernetes.io/part-of": "reelops"}
    shadow_url = f"http://{twin.name}-predictor.{settings.namespace}.svc.cluster.local"
    container = k8s.V1Container(
        name="comparator", image=settings.serve_image, command=["reelops"],
        args=["shadow", "--shadow-url", shadow_url, "--name", settings.name, "--host", "0.0.0.0", "--port", "8080"],
        ports=[k8s.V1ContainerPort(container_port=8080, name="http")],
        readiness_probe=k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/health", port="http"), period_seconds=5),
        liveness_probe=k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/health", port="http"),
                                   initial_delay_seconds=10, period_seconds=10),
        resources=k8s.V1ResourceRequirements(requests={"cpu": "250m", "memory": "256Mi"}, limits={"memory": "1Gi"}),
        security_context=_container_security(), env=_SCRATCH_ENV, volume_mounts=[_SCRATCH_MOUNT])
    return [isvc, *_event_sink(meta, selector, container, [_SCRATCH_VOLUME])]


def _event_sink(meta, selector: dict, container, volumes: list, account: str | None = None) -> list:
    """A Deployment of one replica and its Service on port 80: a sink of logger events pairs
    each request's two events, which must reach the same process."""
    deployment = k8s.V1Deployment(
        api_version="apps/v1", kind="Deployment", metadata=meta,
        spec=k8s.V1DeploymentSpec(
            replicas=1, selector=k8s.V1LabelSelector(match_labels=selector),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=selector),
                spec=k8s.V1PodSpec(containers=[container], security_context=_pod_security(),
                                   service_account_name=account, volumes=volumes))))
    service = k8s.V1Service(api_version="v1", kind="Service", metadata=meta, spec=k8s.V1ServiceSpec(
        selector=selector, ports=[k8s.V1ServicePort(name="http", port=80, target_port="http")]))
    return [serialize(deployment), serialize(service)]


def inference_service_object(settings: RenderSettings, protocol: str = "rest", storage_uri: str | None = None,
                             canary_traffic_percent: int | None = None, allow_unblessed: bool = False,
                             tag_routing: bool = False, model_version: str | None = None):
    """The predictor as a KServe ``V1beta1InferenceService`` in Serverless mode.

    A Serverless revision exposes one port, so REST and gRPC are two InferenceServices: the
    REST one declares 8080 (``http1``), the gRPC one 8081 named ``h2c`` (Knative then speaks
    HTTP/2 to it). Both containers also listen on 8080 for the health endpoints: readiness is
    the model being loaded (``/v2/health/ready`` answers 503 before), and a Knative probe may
    reach a port other than the declared one.

    Args:
        settings: the rendering's settings.
        protocol: ``rest`` or ``grpc``.
        storage_uri: the model version to serve; ``settings.storage_uri`` (or its alias) when None.
        canary_traffic_percent: the share of traffic for this revision during a canary rollout.
        allow_unblessed: serve a model the gate did not bless (a deployment override).
        tag_routing: give revisions their ``latest-`` and ``prev-`` tag routes (blue-green).
        model_version: the registry version the storage URI holds (an annotation, read back
            by ``reelops deploy status --target kserve``).
    """
    from reelops.serving import import_kserve

    kserve = import_kserve()
    storage_uri = settings.storage_uri if storage_uri is None else storage_uri
    if protocol not in ("rest", "grpc"):
        raise ValueError(f"protocol must be rest or grpc, not {protocol!r}")
    name = settings.name if protocol == "rest" else f"{settings.name}-grpc"
    if storage_uri:
        source, env = ["--storage-uri", storage_uri], secret_env(STORAGE_SECRET, ["endpoint", "access_key", "secret_key"])
    else:
        source, env = ["--model-alias", settings.model_alias], secret_env(MLFLOW_SECRET)
    served = ["--port", str(REST_PORT), "--grpc-port", str(GRPC_PORT)] if protocol == "grpc" else [
        "--port", str(REST_PORT), "--no-grpc"]
    port = (k8s.V1ContainerPort(container_port=GRPC_PORT, name="h2c", protocol="TCP") if protocol == "grpc"
            else k8s.V1ContainerPort(container_port=REST_PORT, name="http1", protocol="TCP"))
    container = k8s.V1Container(
        name="kserve-container", image=settings.serve_image, command=["reelops"],
        args=["serve", *source, "--name", settings.name, "--host", "0.0.0.0", *served,
              *(["--allow-unblessed"] if allow_unblessed else [])],
        env=env + _SCRATCH_ENV, ports=[port],
        # Ready once the model is loaded (503 before); a failed load ends the process, so
        # liveness only has to catch a server that hangs.
        readiness_probe=k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/v2/health/ready", port=REST_PORT),
                                    period_seconds=5, failure_threshold=3),
        liveness_probe=k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/v2/health/live", port=REST_PORT),
                                   initial_delay_seconds=10, period_seconds=10, failure_threshold=3),
        resources=k8s.V1ResourceRequirements(requests={"cpu": "1", "memory": "2Gi"}, limits={"memory": "4Gi"}),
        security_context=_container_security(), volume_mounts=[_SCRATCH_MOUNT])
    # The REST primary's logger sends every request and response (KServe's CloudEvents) to the
    # drift detector beside it over localhost, or to the Broker that delivers them to the shared
    # detector and the shadow comparator (KServe has one logger URL and no traffic mirror;
    # kserve#2978).
    primary = protocol == "rest" and not settings.name.endswith("-shadow")
    mode = settings.detector_mode if primary else "none"
    logger_url = {"sidecar": f"http://localhost:{DETECTOR_PORT}/", "broker": settings.broker_url}.get(mode)
    if logger_url is None and primary and settings.shadow_storage_uri:
        logger_url = settings.comparator_service
    containers, volumes = [container], [_SCRATCH_VOLUME]
    if mode == "sidecar":
        containers.append(drift_detector_container(settings, model_version, host="0.0.0.0"))
        volumes.append(_KFP_TOKEN_VOLUME)
    predictor = kserve.V1beta1PredictorSpec(
        containers=containers, min_replicas=1, max_replicas=4, container_concurrency=16, timeout=30,
        service_account_name=PREDICTOR_ACCOUNT, volumes=volumes,
        canary_traffic_percent=canary_traffic_percent,
        logger=kserve.V1beta1LoggerSpec(mode="all", url=logger_url) if logger_url else None)
    service = kserve.V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1", kind="InferenceService",
        metadata=_meta(settings, name, "predictor", annotations={
            "serving.kserve.io/deploymentMode": SERVERLESS,
            "serving.kserve.io/enable-prometheus-scraping": "true",
            **({TAG_ROUTING_ANNOTATION: "true"} if tag_routing else {}),
            **({MODEL_VERSION_ANNOTATION: str(model_version)} if model_version is not None else {}),
        }),
        spec=kserve.V1beta1InferenceServiceSpec(predictor=predictor))
    return service


_KFP_TOKEN_VOLUME = k8s.V1Volume(name="kfp-token", projected=k8s.V1ProjectedVolumeSource(sources=[
    k8s.V1VolumeProjection(service_account_token=k8s.V1ServiceAccountTokenProjection(
        path="token", audience="pipelines.kubeflow.org", expiration_seconds=3600))]))


def retrain_command(settings: RenderSettings) -> str:
    """What the detector runs when the retraining policy decides: the training pipeline on KFP."""
    source = f" --param source={settings.retrain_source}" if settings.retrain_source else ""
    return (f"reelops pipeline submit training --host {settings.kfp_host} --service-account {PIPELINE_RUNNER}"
            f"{source} --json")


def drift_detector_container(settings: RenderSettings, model_version: str | None = None, host: str = "0.0.0.0"):
    """The drift detector (``reelops detector serve``, the serve image): the watched version's
    monitor from the registry, the retraining trigger on KFP (claimed in the registry once for
    every replica), metrics on :data:`DETECTOR_PORT`."""
    watched = ["--model-version", str(model_version)] if model_version is not None else [
        "--model-alias", settings.model_alias]
    return k8s.V1Container(
        name="drift-detector", image=settings.serve_image, command=["reelops"],
        args=["detector", "serve", *watched, "--host", host, "--port", str(DETECTOR_PORT),
              "--retrain-command", retrain_command(settings)],
        env=secret_env(MLFLOW_SECRET) + _SCRATCH_ENV,
        resources=k8s.V1ResourceRequirements(requests={"cpu": "100m", "memory": "512Mi"}, limits={"memory": "1Gi"}),
        security_context=_container_security(),
        volume_mounts=[k8s.V1VolumeMount(name="kfp-token", mount_path=KFP_TOKEN_DIR, read_only=True), _SCRATCH_MOUNT])


def drift_detector_broker(settings: RenderSettings) -> list:
    """The shared-detector variant: a Knative Broker the predictors' loggers post to, a Trigger
    delivering the inference events to one detector (a Deployment of one replica: a request's
    two events must meet in one process) and, with a shadow, a Trigger to its comparator."""
    selector = {"app.kubernetes.io/name": "drift-detector", "app.kubernetes.io/part-of": "reelops"}
    container = drift_detector_container(settings)
    container.ports = [k8s.V1ContainerPort(container_port=DETECTOR_PORT, name="http")]
    container.readiness_probe = k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/health", port="http"), period_seconds=5)
    sink = _event_sink(_meta(settings, DETECTOR_SERVICE, "drift-detector"), selector, container,
                       [_KFP_TOKEN_VOLUME, _SCRATCH_VOLUME], account=PREDICTOR_ACCOUNT)
    broker = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
              "metadata": {"name": BROKER, "namespace": settings.namespace, "labels": settings.labels("events")}}

    def trigger(name: str, service_name: str) -> dict:
        return {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
                "metadata": {"name": name, "namespace": settings.namespace, "labels": settings.labels("events")},
                "spec": {"broker": BROKER,
                         "filter": {"attributes": {"inferenceservicename": settings.name}},
                         "subscriber": {"ref": {"apiVersion": "v1", "kind": "Service", "name": service_name}}}}

    documents = [broker, trigger(DETECTOR_SERVICE, DETECTOR_SERVICE), *sink]
    if settings.shadow_storage_uri:
        documents.insert(2, trigger("reelops-shadow-comparator", "reelops-shadow-comparator"))
    return documents


def mlflow_server(settings: RenderSettings) -> list:
    """The MLflow tracking server: a volume for its sqlite store, one replica, and a Service.

    One replica with the ``Recreate`` strategy: sqlite takes one writer, and two pods must
    never hold the volume at once. Artifacts go to the object store and are proxied by the
    server (``--artifacts-destination``), so clients log and download through it.
    """
    meta = _meta(settings, "reelops-mlflow", "mlflow")
    selector = {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/part-of": "reelops"}
    hosts = ",".join(f"reelops-mlflow{suffix}:*" for suffix in (
        "", f".{settings.namespace}", f".{settings.namespace}.svc", f".{settings.namespace}.svc.cluster.local"))
    claim = k8s.V1PersistentVolumeClaim(
        api_version="v1", kind="PersistentVolumeClaim", metadata=meta,
        spec=k8s.V1PersistentVolumeClaimSpec(access_modes=["ReadWriteOnce"],
                                             resources=k8s.V1VolumeResourceRequirements(requests={"storage": "10Gi"})))
    container = k8s.V1Container(
        name="mlflow", image=settings.serve_image, command=["mlflow"],
        args=["server", "--host", "0.0.0.0", "--port", "5000", "--workers", "1",
              "--backend-store-uri", "sqlite:////var/lib/mlflow/mlflow.db",
              "--artifacts-destination", settings.mlflow_artifacts,
              # MLflow refuses Host headers it does not know; these are the Service's names.
              "--allowed-hosts", hosts],
        env=secret_env(STORAGE_SECRET, ["endpoint", "access_key", "secret_key"]) + _SCRATCH_ENV,
        ports=[k8s.V1ContainerPort(container_port=5000, name="http")],
        readiness_probe=k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/health", port="http"), period_seconds=5),
        liveness_probe=k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/health", port="http"),
                                   initial_delay_seconds=30, period_seconds=20),
        resources=k8s.V1ResourceRequirements(requests={"cpu": "500m", "memory": "1Gi"}, limits={"memory": "2Gi"}),
        security_context=_container_security(),
        volume_mounts=[k8s.V1VolumeMount(name="store", mount_path="/var/lib/mlflow"), _SCRATCH_MOUNT])
    deployment = k8s.V1Deployment(
        api_version="apps/v1", kind="Deployment", metadata=meta,
        spec=k8s.V1DeploymentSpec(
            replicas=1, strategy=k8s.V1DeploymentStrategy(type="Recreate"),
            selector=k8s.V1LabelSelector(match_labels=selector),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=selector),
                spec=k8s.V1PodSpec(containers=[container], security_context=_pod_security(), volumes=[
                    k8s.V1Volume(name="store", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                        claim_name="reelops-mlflow")), _SCRATCH_VOLUME]))))
    service = k8s.V1Service(api_version="v1", kind="Service", metadata=meta, spec=k8s.V1ServiceSpec(
        selector=selector, ports=[k8s.V1ServicePort(name="http", port=5000, target_port="http")]))
    return [serialize(claim), serialize(deployment), serialize(service)]


def recurring_monitoring(settings: RenderSettings) -> dict:
    """A CronJob that submits the monitoring pipeline to Kubeflow Pipelines on a schedule.

    The schedule lives in git with the other manifests; ``reelops pipeline schedule`` makes
    a KFP recurring run instead, for teams that keep schedules in KFP. The pod authenticates
    to KFP with a projected service-account token (audience ``pipelines.kubeflow.org``) at
    the path ``kfp.Client`` reads.
    """
    container = k8s.V1Container(
        name="submit", image=settings.serve_image, command=["reelops"],
        args=["pipeline", "submit", "monitoring", "--host", settings.kfp_host,
              "--service-account", PIPELINE_RUNNER, "--json"],
        env=_SCRATCH_ENV, security_context=_container_security(),
        resources=k8s.V1ResourceRequirements(requests={"cpu": "250m", "memory": "512Mi"}, limits={"memory": "1Gi"}),
        volume_mounts=[k8s.V1VolumeMount(name="kfp-token", mount_path=KFP_TOKEN_DIR, read_only=True), _SCRATCH_MOUNT])
    token = k8s.V1Volume(name="kfp-token", projected=k8s.V1ProjectedVolumeSource(sources=[k8s.V1VolumeProjection(
        service_account_token=k8s.V1ServiceAccountTokenProjection(path="token", audience="pipelines.kubeflow.org",
                                                                  expiration_seconds=3600))]))
    job = k8s.V1JobSpec(backoff_limit=2, active_deadline_seconds=1800, ttl_seconds_after_finished=86400,
                        template=k8s.V1PodTemplateSpec(spec=k8s.V1PodSpec(
                            service_account_name=SCHEDULER_ACCOUNT, restart_policy="Never", containers=[container],
                            security_context=_pod_security(), volumes=[token, _SCRATCH_VOLUME])))
    cron = k8s.V1CronJob(api_version="batch/v1", kind="CronJob",
                         metadata=_meta(settings, "reelops-monitoring", "monitoring"),
                         spec=k8s.V1CronJobSpec(schedule=settings.monitoring_schedule, time_zone="Etc/UTC",
                                                concurrency_policy="Forbid", starting_deadline_seconds=3600,
                                                job_template=k8s.V1JobTemplateSpec(spec=job)))
    return serialize(cron)
