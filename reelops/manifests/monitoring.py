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

from reelops.manifests.objects import REST_PORT
from reelops.manifests.settings import RenderSettings

POD_MONITOR = "reelops-predictor"
# Server-side failures: HTTP 5xx and the gRPC statuses the predictor maps them to.
SERVER_ERRORS = 'status=~"5..|INTERNAL|UNAVAILABLE"'
BY = "namespace, inferenceservice"


def job(settings: RenderSettings) -> str:
    """The ``job`` label Prometheus Operator gives the PodMonitor's series (namespace/name)."""
    return f"{settings.namespace}/{POD_MONITOR}"


def pod_monitor(settings: RenderSettings) -> dict:
    """Scrape ``/metrics`` of both InferenceServices' predictor pods on the REST port.

    The port is given by number: a Serverless revision declares one port per container, and
    the gRPC revision's declared port is not the one serving ``/metrics``.
    """
    pod_label = "__meta_kubernetes_pod_label_"
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": POD_MONITOR, "namespace": settings.namespace, "labels": settings.labels("monitoring")},
        "spec": {
            "selector": {"matchExpressions": [{"key": "serving.kserve.io/inferenceservice", "operator": "In",
                                               "values": [settings.name, f"{settings.name}-grpc"]}]},
            "podMetricsEndpoints": [{
                "portNumber": REST_PORT, "path": "/metrics", "interval": "15s",
                "relabelings": [
                    {"action": "replace", "sourceLabels": [f"{pod_label}serving_kserve_io_inferenceservice"],
                     "targetLabel": "inferenceservice"},
                    {"action": "replace", "sourceLabels": [f"{pod_label}serving_knative_dev_revision"],
                     "targetLabel": "revision"},
                ],
            }],
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


def prometheus_rule(settings: RenderSettings) -> dict:
    """The alert rules as a PrometheusRule object."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "reelops-predictor", "namespace": settings.namespace,
                     "labels": settings.labels("monitoring")},
        "spec": {"groups": alert_rules(settings)},
    }
