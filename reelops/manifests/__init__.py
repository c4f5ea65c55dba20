"""Cluster manifests rendered from code: what a team applies to run reelops on Kubernetes.

Every document is built from the kserve SDK and kubernetes client objects (Prometheus
Operator kinds and the Grafana dashboard, which have no Python client here, as plain
dictionaries shaped by their CRD schemas) and written as YAML by :func:`write`. The checks
in :mod:`reelops.manifests.check` validate what was written.

``manifests/`` in the repository holds the output of ``reelops manifests render`` with the
default settings; a test renders again and compares.
"""

from __future__ import annotations

from pathlib import Path

from reelops.manifests.settings import RenderSettings

__all__ = ["RenderSettings", "render", "write"]


def render(settings: RenderSettings | None = None) -> dict:
    """Every manifest file: ``{file name: [document, ...]}`` (the dashboard JSON as one dict).

    Args:
        settings: namespace, images, model source and schedules; the defaults when None.

    Returns:
        File names (relative to the output folder) mapped to their documents, in apply order.
    """
    from reelops.manifests import dashboard, monitoring, objects

    settings = settings or RenderSettings()
    files = {
        "namespace.yaml": [objects.namespace(settings)],
        "rbac.yaml": objects.rbac(settings),
        "mlflow.yaml": objects.mlflow_server(settings),
        "inferenceservice.yaml": [objects.inference_service(settings, protocol="rest")],
        "inferenceservice-grpc.yaml": [objects.inference_service(settings, protocol="grpc")],
        "monitoring.yaml": [monitoring.pod_monitor(settings), monitoring.prometheus_rule(settings)],
        "grafana-dashboard.yaml": [dashboard.config_map(settings)],
        "recurring-monitoring.yaml": [objects.recurring_monitoring(settings)],
        # Outside the folder's top level on purpose: `kubectl apply -f manifests/` reads every
        # .json there too, and a dashboard is not a Kubernetes object.
        "grafana/reelops-dashboard.json": dashboard.dashboard(settings),
    }
    if settings.shadow_storage_uri:
        files["shadow.yaml"] = objects.shadow(settings)
    if settings.detector_mode == "broker":
        files["drift-detector.yaml"] = objects.drift_detector_broker(settings) + [monitoring.detector_pod_monitor(settings)]
    return files


def write(out_dir, settings: RenderSettings | None = None) -> list:
    """Render and write every file under ``out_dir``; returns the paths written.

    Files are written whole or not at all (a temporary name, then a rename), so an
    interrupted render never leaves a truncated manifest behind.
    """
    import json
    import os

    import yaml

    out = Path(out_dir)
    written = []
    for name, content in render(settings).items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".json"):
            text = json.dumps(content, indent=2, sort_keys=True) + "\n"
        else:
            text = HEADER + "---\n".join(yaml.safe_dump(document, sort_keys=False, width=120) for document in content)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
        written.append(path)
    return written


HEADER = "# Rendered by `reelops manifests render`; edit reelops/manifests/, not this file.\n"
