"""The Grafana dashboard of the predictors, and the ConfigMap Grafana's sidecar loads it from.

Panels are split by ``revision`` (the PodMonitor's label) so a canary is seen beside the
stable revision. ``$datasource`` and ``$namespace`` are dashboard variables.
"""

from __future__ import annotations

import json

from kubernetes import client as k8s

from reelops.manifests.objects import serialize
from reelops.manifests.settings import RenderSettings

UID = "reelops-predictor"
# kube-prometheus-stack's Grafana sidecar loads ConfigMaps that carry this label.
SIDECAR_LABEL = "grafana_dashboard"

SCOPE = 'namespace="$namespace"'
PANELS = [
    ("Requests answered per second", "reqps", [
        ("{{revision}}", f"sum by (revision) (rate(reelops_predictions_total{{{SCOPE}}}[$__rate_interval]))")]),
    ("Server-side failures (share of requests)", "percentunit", [
        ("{{revision}}", f'sum by (revision) (rate(reelops_request_errors_total{{{SCOPE}, status=~"5..|INTERNAL|UNAVAILABLE"}}'
                         f"[$__rate_interval])) / (sum by (revision) (rate(reelops_predictions_total{{{SCOPE}}}"
                         f"[$__rate_interval])) + sum by (revision) (rate(reelops_request_errors_total{{{SCOPE}}}"
                         "[$__rate_interval])))")]),
    ("Prediction latency", "s", [
        ("p50 {{revision}}", f"histogram_quantile(0.5, sum by (revision, le) (rate(request_predict_seconds_bucket"
                             f"{{{SCOPE}}}[$__rate_interval])))"),
        ("p95 {{revision}}", f"histogram_quantile(0.95, sum by (revision, le) (rate(request_predict_seconds_bucket"
                             f"{{{SCOPE}}}[$__rate_interval])))")]),
    ("Refusals by reason", "reqps", [
        ("{{status}} {{reason}}", f"sum by (status, reason) (rate(reelops_request_errors_total{{{SCOPE}}}"
                                  "[$__rate_interval]))")]),
    ("Cold-start answers (share)", "percentunit", [
        ("{{revision}}", f"sum by (revision) (rate(reelops_cold_starts_total{{{SCOPE}}}[$__rate_interval])) / "
                         f"sum by (revision) (rate(reelops_predictions_total{{{SCOPE}}}[$__rate_interval]))")]),
    ("Answers by model version", "reqps", [
        ("v{{model_version}} {{path}}", f"sum by (model_version, path) (rate(reelops_predictions_total{{{SCOPE}}}"
                                        "[$__rate_interval]))")]),
]


def dashboard(settings: RenderSettings) -> dict:
    """The dashboard JSON (Grafana's schema version 39)."""
    source = {"type": "prometheus", "uid": "${datasource}"}
    panels = []
    for index, (title, unit, queries) in enumerate(PANELS):
        panels.append({
            "id": index + 1, "type": "timeseries", "title": title, "datasource": source,
            "gridPos": {"h": 8, "w": 12, "x": (index % 2) * 12, "y": (index // 2) * 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + n), "datasource": source, "expr": expr, "legendFormat": legend}
                        for n, (legend, expr) in enumerate(queries)],
        })
    return {
        "uid": UID, "title": "reelops predictors", "tags": ["reelops", "kserve"], "timezone": "utc",
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            {"name": "namespace", "type": "custom", "query": settings.namespace, "label": "Namespace",
             "current": {"text": settings.namespace, "value": settings.namespace}},
        ]},
        "panels": panels,
    }


def expressions(board: dict) -> list:
    """Every PromQL expression of a dashboard, for checking."""
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def config_map(settings: RenderSettings) -> dict:
    """The dashboard in a ConfigMap that Grafana's dashboard sidecar picks up."""
    labels = {**settings.labels("grafana"), SIDECAR_LABEL: "1"}
    return serialize(k8s.V1ConfigMap(
        api_version="v1", kind="ConfigMap",
        metadata=k8s.V1ObjectMeta(name="reelops-dashboard", namespace=settings.namespace, labels=labels),
        data={"reelops-predictor.json": json.dumps(dashboard(settings), indent=2, sort_keys=True)}))
