"""Checks of rendered manifests, including what a schema cannot see.

- KServe and Prometheus Operator kinds validate against their CRD schemas (``schemas/``),
  and a field the schema does not declare is an error: the API server would prune it
  silently (``canaryTraficPercent`` would vanish and the canary take all traffic).
- Core kinds validate with ``kubernetes-validate`` in strict mode (unknown fields rejected).
- The CRD schemas leave ``metadata`` free-form, so annotation keys under
  ``serving.kserve.io/`` must be ones KServe reads (a typo passes every schema and does
  nothing), and every InferenceService must say its deployment mode and scraping.
- Alert rules and the dashboard's queries parse with ``promtool`` where it is installed.

Each problem is one line naming the file, the document and the field.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBERNETES_VERSION = "1.33.0"
CRD_SCHEMAS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve-inferenceservice-v1beta1.schema.json",
    ("serving.kserve.io/v1alpha1", "InferenceGraph"): "kserve-inferencegraph-v1alpha1.schema.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheus-operator-prometheusrule-v1.schema.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator-podmonitor-v1.schema.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-operator-servicemonitor-v1.schema.json",
    ("eventing.knative.dev/v1", "Broker"): "knative-eventing-broker-v1.schema.json",
    ("eventing.knative.dev/v1", "Trigger"): "knative-eventing-trigger-v1.schema.json",
}
KSERVE_PREFIX = "serving.kserve.io/"
# Annotation keys KServe reads on its objects (pkg/constants/constants.go and
# pkg/credentials/s3 at commit aaac4e294dae); anything else under the prefix is a typo.
KSERVE_ANNOTATIONS = frozenset(KSERVE_PREFIX + key for key in (
    "deploymentMode", "enable-tag-routing", "disable-localmodel", "autoscalerClass", "metrics",
    "targetUtilizationPercentage", "stop", "enable-metric-aggregation", "enable-prometheus-scraping",
    "gke-accelerator", "nodegroup", "logger-secret-name", "logger-secret-path", "logger-secret-file",
    "disable-auto-update", "s3-endpoint", "s3-usehttps", "s3-region", "s3-verifyssl", "s3-useanoncredential",
    "s3-cabundle",
))
DEPLOYMENT_MODES = {"Serverless", "RawDeployment", "Standard", "ModelMesh"}
REQUIRED_ISVC_ANNOTATIONS = (KSERVE_PREFIX + "deploymentMode", KSERVE_PREFIX + "enable-prometheus-scraping")


@dataclass
class Report:
    """What a check found: problems (each one line) and checks it could not run, with why."""

    problems: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    documents: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def undeclared_fields(document, schema: dict, where: str = "") -> list:
    """Paths of fields in ``document`` that ``schema`` does not declare (free-form parts excepted)."""
    found = []
    if isinstance(document, dict) and schema.get("type") == "object":
        properties = schema.get("properties")
        if properties is None or schema.get("x-kubernetes-preserve-unknown-fields"):
            return found
        for key, value in document.items():
            if key not in properties:
                found.append(f"{where}.{key}")
            else:
                found.extend(undeclared_fields(value, properties[key], f"{where}.{key}"))
    elif isinstance(document, list) and "items" in schema:
        for index, item in enumerate(document):
            found.extend(undeclared_fields(item, schema["items"], f"{where}[{index}]"))
    return found


def annotation_problems(document: dict) -> list:
    """Unknown ``serving.kserve.io/`` annotation keys anywhere in the document, and missing required ones."""
    problems = []

    def visit(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "annotations" and isinstance(value, dict):
                    problems.extend(f"{where}.annotations: unknown KServe annotation {name!r}"
                                    for name in value if name.startswith(KSERVE_PREFIX)
                                    and name not in KSERVE_ANNOTATIONS)
                visit(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                visit(item, f"{where}[{index}]")

    visit(document, "")
    if document.get("kind") == "InferenceService":
        annotations = (document.get("metadata") or {}).get("annotations") or {}
        problems.extend(f".metadata.annotations: {name} is required" for name in REQUIRED_ISVC_ANNOTATIONS
                        if name not in annotations)
        mode = annotations.get(KSERVE_PREFIX + "deploymentMode")
        if mode is not None and mode not in DEPLOYMENT_MODES:
            problems.append(f".metadata.annotations: deploymentMode {mode!r} is not one of {sorted(DEPLOYMENT_MODES)}")
    return problems


def document_problems(document: dict, schemas: Path = SCHEMAS) -> list:
    """Every problem of one Kubernetes document (schema, undeclared fields, annotations)."""
    import jsonschema

    if not isinstance(document, dict) or not document.get("kind") or not document.get("apiVersion"):
        return ["not a Kubernetes object (no apiVersion and kind)"]
    key = (document["apiVersion"], document["kind"])
    problems = annotation_problems(document)
    if key in CRD_SCHEMAS:
        schema = json.loads((schemas / CRD_SCHEMAS[key]).read_text())
        validator = jsonschema.Draft7Validator(schema)
        problems.extend(f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
                        for error in validator.iter_errors(document))
        problems.extend(f"{path}: field not declared by the {document['kind']} schema"
                        for path in undeclared_fields(document, schema))
    else:
        problems.extend(_core_problems(document))
    return problems


def _core_problems(document: dict) -> list:
    try:
        import kubernetes_validate
    except ImportError as error:
        raise RuntimeError("checking core kinds needs kubernetes-validate: pip install 'reelops[check]'") from error
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {document['apiVersion']} {document['kind']} in Kubernetes {KUBERNETES_VERSION}"]
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path) or "(top)"
        return [f"{path}: {error.message}"]
    return []


def promtool_problems(groups: list, where: str) -> tuple:
    """``(problems, skipped)`` of ``promtool check rules`` on rule groups."""
    import yaml

    promtool = shutil.which("promtool")
    if promtool is None:
        return [], [f"{where}: promtool not installed (Debian package prometheus), rules not parsed"]
    with tempfile.TemporaryDirectory() as scratch:
        rules = Path(scratch) / "rules.yaml"
        rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        detail = " ".join((result.stdout + result.stderr).replace(str(rules), "rules").split())
        return [f"{where}: promtool check rules: {detail}"], []
    return [], []


def dashboard_groups(board: dict) -> list:
    """The dashboard's queries as recording rules, so promtool parses them (Grafana's
    ``$__rate_interval`` and ``$namespace`` replaced by values first)."""
    from reelops.manifests.dashboard import expressions

    rules = [{"record": f"reelops:dashboard_query_{index}",
              "expr": expr.replace("$__rate_interval", "5m").replace("$namespace", "checked")}
             for index, expr in enumerate(expressions(board))]
    return [{"name": "dashboard-queries", "rules": rules}]


def check_folder(folder, schemas: Path = SCHEMAS) -> Report:
    """Check every ``*.yaml`` document and the Grafana dashboard(s) under ``folder``.

    Args:
        folder: a folder written by ``reelops manifests render``.
        schemas: the folder of CRD schemas (the copies shipped with the package by default).

    Returns:
        A :class:`Report`; its ``problems`` lines read ``file#n Kind/name: what``.
    """
    import yaml

    folder = Path(folder)
    report = Report()
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    if not files:
        report.problems.append(f"{folder}: no manifest (*.yaml) found")
    for path in files:
        try:
            documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        except yaml.YAMLError as error:
            report.problems.append(f"{path.name}: not YAML: {' '.join(str(error).split())}")
            continue
        for index, document in enumerate(documents):
            report.documents += 1
            name = f"{path.name}#{index} {document.get('kind', '?')}/{(document.get('metadata') or {}).get('name', '?')}" \
                if isinstance(document, dict) else f"{path.name}#{index}"
            report.problems.extend(f"{name} {problem}" for problem in document_problems(document, schemas))
            if isinstance(document, dict) and document.get("kind") == "PrometheusRule":
                problems, skipped = promtool_problems(document.get("spec", {}).get("groups", []), name)
                report.problems.extend(problems)
                report.skipped.extend(skipped)
    for path in sorted(folder.glob("grafana/*.json")):
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            report.problems.append(f"grafana/{path.name}: not JSON: {error}")
            continue
        problems, skipped = promtool_problems(dashboard_groups(board), f"grafana/{path.name}")
        report.problems.extend(problems)
        report.skipped.extend(skipped)
    return report
