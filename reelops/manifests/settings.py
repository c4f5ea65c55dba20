"""What a rendering of the manifests may vary: namespace, images, model source, schedules."""

from __future__ import annotations

from dataclasses import dataclass, field

from reelops import buildinfo
from reelops.registry import MODEL_NAME, PRODUCTION

PART_OF = "reelops"
DRIFT_DETECTOR_MODES = ("sidecar", "broker", "none")
BROKER = "reelops-inference-events"


@dataclass(frozen=True)
class RenderSettings:
    """Settings of one rendering; the defaults render the golden files in ``manifests/``.

    Attributes:
        namespace: where every namespaced object goes (the RBAC grants stay inside it).
        name: the InferenceService name (the gRPC one is ``{name}-grpc``).
        serve_image: image of the predictor, the tracking server and the scheduler.
        storage_uri: a KServe storage URI of one model version (``s3://``, ``gs://``, ...);
            when empty the predictor serves the registry alias ``model_alias``, resolved once at
            start through the tracking server.
        model_alias: the alias served when no storage URI is given.
        mlflow_artifacts: where the tracking server keeps artifacts (it proxies them, so
            clients need no store credentials to log or download).
        kfp_host: the Kubeflow Pipelines API the recurring monitoring run submits to.
        monitoring_schedule: the recurring run's schedule (Kubernetes cron, five fields, UTC).
        latency_p95_seconds: the p95 latency above which an alert fires.
        error_ratio: the share of failed requests above which an alert fires.
        shadow_storage_uri: a model version to run as the shadow (``shadow.yaml``: its own
            InferenceService, the comparator, and the primary's logger pointed at it); none when empty.
        drift_detector: where the online drift detector runs: ``sidecar`` (a second container
            in each predictor pod, its logger posting over localhost), ``broker`` (one shared
            detector behind a Knative Broker and Trigger, ``drift-detector.yaml``) or ``none``.
            A shadow needs the primary's one logger too: with a shadow, ``sidecar`` renders
            as ``broker`` (the broker delivers the events to both).
        retrain_source: the data source the detector's retraining run trains on (the training
            pipeline's ``source`` parameter; its default when empty).
    """

    namespace: str = "reelops"
    name: str = MODEL_NAME
    serve_image: str = field(default_factory=buildinfo.serve_image)
    storage_uri: str = ""
    model_alias: str = PRODUCTION
    mlflow_artifacts: str = "s3://reelops-mlflow/artifacts"
    kfp_host: str = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
    monitoring_schedule: str = "0 3 * * *"
    latency_p95_seconds: float = 0.25
    error_ratio: float = 0.01
    shadow_storage_uri: str = ""
    drift_detector: str = "sidecar"
    retrain_source: str = ""

    def __post_init__(self):
        if self.drift_detector not in DRIFT_DETECTOR_MODES:
            raise ValueError(f"drift_detector must be one of {', '.join(DRIFT_DETECTOR_MODES)}, "
                             f"got {self.drift_detector!r}")

    @property
    def detector_mode(self) -> str:
        """The detector's placement as rendered (a shadow turns ``sidecar`` into ``broker``)."""
        return "broker" if self.drift_detector == "sidecar" and self.shadow_storage_uri else self.drift_detector

    @property
    def broker_url(self) -> str:
        """The ingress of the Broker the predictor's logger posts to in ``broker`` mode."""
        return f"http://broker-ingress.knative-eventing.svc.cluster.local/{self.namespace}/{BROKER}"

    def labels(self, component: str) -> dict:
        """The recommended ``app.kubernetes.io`` labels of one component."""
        return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": PART_OF}

    @property
    def comparator_service(self) -> str:
        """The shadow comparator's in-cluster URL (where the primary's logger posts)."""
        return f"http://reelops-shadow-comparator.{self.namespace}.svc.cluster.local"

    @property
    def mlflow_service(self) -> str:
        """The tracking server's in-cluster URL."""
        return f"http://reelops-mlflow.{self.namespace}.svc.cluster.local:5000"
