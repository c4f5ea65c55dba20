"""Prometheus Operator objects: the PodMonitor that scrapes the predictors and the alert rules.

Neither kind has a Python client here, so they are dictionaries shaped by the CRD schemas
(``monitoring.coreos.com/v1``); the checks validate them against those schemas with unknown
fields rejected, and the rules with ``promtool``.

Series names are the predictor's: ``reelops_predictions_total`` (answers served, by model
version and path), ``reelops_request_errors_total`` (refusals and failures, by status: an
HTTP code or a gRPC status name) and KServe's ``request_predict_seconds`` histogram. The
PodMonitor copies two pod labels onto every series: ``inferenceservice`` and ``revision``
(Knative's revision, what tells a canary from the stable revision).
"""

from __future__ import annotations

from reelops.manifests.objects import DETECTOR_PORT, REST_PORT
from reelops.manifests.settings import RenderSettings

POD_MONITOR = "reelops-predictor"
DETECTOR_MONITOR = "reelops-drift-detector"
# Server-side failures: HTTP 5xx and the gRPC statuses the predictor maps them to.
SERVER_ERRORS = 'status=~"5..|INTERNAL|UNAVAILABLE"'
BY = "namespace, inferenceservice"


def job(settings: RenderSettings) -> str:
    """The ``job`` label Prometheus Operator gives the PodMonitor's series (namespace/name)."""
    return f"{settings.namespace}/{POD_MONITOR}"


def pod_monitor(settings: RenderSettings) -> dict:
    """Scrape ``/metrics`` of both InferenceServices' predictor pods on the REST port, and of
    the drift-detector sidecar on its port.

    Ports are given by number: a Serverless revision declares one port per pod, the gRPC
    revision's declared port is not the one serving ``/metrics``, and the sidecar declares none.
    """
    pod_label = "__meta_kubernetes_pod_label_"
    relabelings = [
        {"action": "replace", "sourceLabels": [f"{pod_label}serving_kserve_io_inferenceservice"],
         "targetLabel": "inferenceservice"},
        {"action": "replace", "sourceLabels": [f"{pod_label}serving_knative_dev_revision"], "targetLabel": "revision"},
    ]
    # The detector sidecar answers on its own port of the same pods.
    ports = [REST_PORT, DETECTOR_PORT] if settings.detector_mode == "sidecar" else [REST_PORT]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": POD_MONITOR, "namespace": settings.namespace, "labels": settings.labels("monitoring")},
        "spec": {
            "selector": {"matchExpressions": [{"key": "serving.kserve.io/inferenceservice", "operator": "In",
                                               "values": [settings.name, f"{settings.name}-grpc"]}]},
            "podMetricsEndpoints": [{"portNumber": port, "path": "/metrics", "interval": "15s",
                                     "relabelings": relabelings}
                                    for port in ports],
        },
    }


def detector_pod_monitor(settings: RenderSettings) -> dict:
    """Scrape the shared drift detector of the ``broker`` variant (its own Deployment)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": DETECTOR_MONITOR, "namespace": settings.namespace, "labels": settings.labels("monitoring")},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "drift-detector", "app.kubernetes.io/part-of": "reelops"}},
            "podMetricsEndpoints": [{"portNumber": DETECTOR_PORT, "path": "/metrics", "interval": "15s"}],
        },
    }


def alert_rules(settings: RenderSettings) -> list:
    """The rule groups (what ``promtool check rules`` reads under ``groups:``)."""
    answered = f"sum by ({BY}) (rate(reelops_predictions_total[5m]))"
    failed = f"sum by ({BY}) (rate(reelops_request_errors_total{{{SERVER_ERRORS}}}[5m]))"
    refused = f"sum by ({BY}) (rate(reelops_request_errors_total[5m]))"
    p95 = f"histogram_quantile(0.95, sum by ({BY}, le) (rate(request_predict_seconds_bucket[5m])))"
    return [{
        "name": "reelops-predictor",
        "rules": [
            {"alert": "ReelopsPredictorServerErrors",
             "expr": f"{failed} / ({answered} + {refused}) > {settings.error_ratio}",
             "for": "5m", "labels": {"severity": "critical"},
             "annotations": {"summary": "{{ $labels.inferenceservice }}: more than "
                                        f"{settings.error_ratio:.0%} of requests fail on the server side",
                             "description": "Server-side failures are {{ $value | humanizePercentage }} of requests "
                                            "over 5 minutes (HTTP 5xx, gRPC INTERNAL or UNAVAILABLE)."}},
            {"alert": "ReelopsPredictorSlow",
             "expr": f"{p95} > {settings.latency_p95_seconds}",
             "for": "10m", "labels": {"severity": "warning"},
             "annotations": {"summary": "{{ $labels.inferenceservice }}: p95 prediction latency above "
                                        f"{settings.latency_p95_seconds * 1000:.0f} ms",
                             "description": "p95 of request_predict_seconds is {{ $value | humanizeDuration }} "
                                            "over 5 minutes."}},
            {"alert": "ReelopsPredictorDown",
             "expr": f'(sum(up{{job="{job(settings)}"}}) or vector(0)) == 0',
             "for": "5m", "labels": {"severity": "critical"},
             "annotations": {"summary": "no reelops predictor answers Prometheus' scrapes",
                             "description": f"No target of the PodMonitor {job(settings)} has been up for 5 minutes."}},
        ],
    }]


def drift_rules(settings: RenderSettings) -> dict:
    """Alerts of the online drift detector: what it found (drift that calls for retraining,
    alarms) and its health (no events while the predictor serves, events it drops)."""
    by = "namespace, model_version"
    return {
        "name": "reelops-drift",
        "rules": [
            {"alert": "ReelopsDriftRetrainDecided",
             "expr": f"max by ({by}) (reelops_detector_retrain_decided) == 1",
             "labels": {"severity": "warning"},
             "annotations": {"summary": "model version {{ $labels.model_version }}: the retraining policy decided to "
                                        "retrain",
                             "description": "Drift confirmed by the detector (one detector alarming in consecutive "
                                            "windows, enough new labels); the retraining run was claimed and started "
                                            "once (reelops registry history)."}},
            {"alert": "ReelopsDriftAlarms",
             "expr": f"sum by ({by}, detector) (increase(reelops_detector_alarms_total[1h])) >= 3",
             "labels": {"severity": "info"},
             "annotations": {"summary": "model version {{ $labels.model_version }}: {{ $labels.detector }} alarmed "
                                        "in {{ $value | humanize }} windows within an hour",
                             "description": "See reelops detector status or the detector's p-value and change-size "
                                            "series."}},
            {"alert": "ReelopsDetectorNoEvents",
             "expr": ("sum by (namespace) (rate(reelops_predictions_total[10m])) > 0 unless "
                      "sum by (namespace) (rate(reelops_detector_events_total[10m])) > 0"),
             "for": "10m", "labels": {"severity": "warning"},
             "annotations": {"summary": "{{ $labels.namespace }}: the predictor serves but no drift detector "
                                        "receives its logger's events",
                             "description": "The detector is down, or the InferenceService's logger does not reach "
                                            "it; drift goes unseen."}},
            {"alert": "ReelopsDetectorDropping",
             "expr": "sum by (namespace, reason) (rate(reelops_detector_dropped_total[10m])) > 0",
             "for": "10m", "labels": {"severity": "warning"},
             "annotations": {"summary": "{{ $labels.namespace }}: the drift detector drops events ({{ $labels.reason }})",
                             "description": "{{ $value | humanize }} events per second are not judged."}},
        ],
    }


def prometheus_rule(settings: RenderSettings) -> dict:
    """The alert rules as a PrometheusRule object."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "reelops-predictor", "namespace": settings.namespace,
                     "labels": settings.labels("monitoring")},
        "spec": {"groups": alert_rules(settings) + ([drift_rules(settings)] if settings.detector_mode != "none" else [])},
    }
