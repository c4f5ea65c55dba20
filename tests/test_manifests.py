"""The cluster manifests: rendered from code, equal to the committed copies, valid against
the CRD and core schemas with unknown fields rejected, KServe annotations checked against
KServe's own keys, alert rules parsed and unit-tested with promtool; the CI/CD workflows and
the Dockerfile linted; every standalone component file loads and compiles into a pipeline."""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reelops.cli import build_parser
from reelops.manifests import RenderSettings, render, write
from reelops.manifests.check import SCHEMAS, check_folder, document_problems

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "manifests"
SHARED_SCHEMAS = ROOT.parent / "shared" / "schemas"
BIN = Path(sys.executable).parent
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (Debian package prometheus; .ci/run installs it as root)")


def documents(name: str) -> list:
    return [d for d in yaml.safe_load_all((COMMITTED / name).read_text()) if d]


def by_kind(kind: str) -> list:
    return [d for path in sorted(COMMITTED.glob("*.yaml")) for d in documents(path.name) if d["kind"] == kind]


def test_the_committed_manifests_are_what_the_code_renders(tmp_path):
    """`make manifests` refreshes them; a change to reelops/manifests/ without it fails here."""
    write(tmp_path)
    comparison = filecmp.dircmp(COMMITTED, tmp_path, ignore=["README.md"])
    assert comparison.left_only == [] and comparison.right_only == [], "rendered and committed files differ in name"
    for name in render():
        assert (COMMITTED / name).read_text() == (tmp_path / name).read_text(), f"{name} is stale: run make manifests"


def test_every_committed_manifest_passes_the_checks():
    report = check_folder(COMMITTED)
    assert report.problems == []
    assert report.documents == 22
    kinds = {d["kind"] for path in COMMITTED.glob("*.yaml") for d in documents(path.name)}
    assert kinds == {"Namespace", "ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim", "Deployment",
                     "Service", "InferenceService", "PodMonitor", "PrometheusRule", "ConfigMap", "CronJob"}


def test_the_shipped_schemas_are_the_shared_ones():
    if not SHARED_SCHEMAS.is_dir():
        pytest.skip(f"{SHARED_SCHEMAS} not present: nothing to compare the shipped copies with")
    for shared in SHARED_SCHEMAS.glob("*.json"):
        assert (SCHEMAS / shared.name).read_bytes() == shared.read_bytes(), shared.name


def _mutate(folder: Path, name: str, index: int, change) -> None:
    path = folder / name
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    change(docs[index])
    path.write_text("---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs))


def _predictor(doc):
    return doc["spec"]["predictor"]


TYPOS = {
    "InferenceService field": ("inferenceservice.yaml", 0,
                               lambda d: _predictor(d).__setitem__("canaryTraficPercent", 10),
                               "spec.predictor.canaryTraficPercent: field not declared by the InferenceService schema"),
    "container field in an InferenceService": (
        "inferenceservice-grpc.yaml", 0,
        lambda d: _predictor(d)["containers"][0].__setitem__("readinesProbe", {}),
        "spec.predictor.containers[0].readinesProbe: field not declared"),
    "KServe annotation key": ("inferenceservice.yaml", 0,
                              lambda d: d["metadata"]["annotations"].__setitem__("serving.kserve.io/enable-tag-routeing", "true"),
                              "unknown KServe annotation 'serving.kserve.io/enable-tag-routeing'"),
    "required annotation missing": ("inferenceservice.yaml", 0,
                                    lambda d: d["metadata"]["annotations"].pop("serving.kserve.io/deploymentMode"),
                                    "serving.kserve.io/deploymentMode is required"),
    "deployment mode value": ("inferenceservice.yaml", 0,
                              lambda d: d["metadata"]["annotations"].__setitem__("serving.kserve.io/deploymentMode", "serverless"),
                              "deploymentMode 'serverless' is not one of"),
    "Deployment field": ("mlflow.yaml", 1, lambda d: d["spec"].__setitem__("replica", 1),
                         "Additional properties are not allowed ('replica' was unexpected)"),
    "CronJob field": ("recurring-monitoring.yaml", 0, lambda d: d["spec"].__setitem__("concurencyPolicy", "Forbid"),
                      "'concurencyPolicy' was unexpected"),
    "Role verb list type": ("rbac.yaml", 4, lambda d: d["rules"][0].__setitem__("verbs", "get"),
                            "rules.0.verbs: 'get' is not of type 'array'"),
    "PodMonitor field": ("monitoring.yaml", 0,
                         lambda d: d["spec"]["podMetricsEndpoints"][0].__setitem__("portNumbr", 8080),
                         "spec.podMetricsEndpoints[0].portNumbr: field not declared by the PodMonitor schema"),
    "PrometheusRule field": ("monitoring.yaml", 1, lambda d: d["spec"]["groups"][0]["rules"][0].__setitem__("fro", "5m"),
                             "field not declared by the PrometheusRule schema"),
}


@pytest.mark.parametrize("case", sorted(TYPOS))
def test_a_typo_in_any_manifest_fails_the_check(tmp_path, case):
    name, index, change, expected = TYPOS[case]
    shutil.copytree(COMMITTED, tmp_path / "m")
    _mutate(tmp_path / "m", name, index, change)
    problems = check_folder(tmp_path / "m").problems
    # Found, and pinned on the document (promtool may name a rule typo a second time).
    assert problems and expected in problems[0], problems
    assert all(problem.startswith(f"{name}#{index} ") for problem in problems), problems


def test_the_check_command_fails_in_its_own_process_naming_the_problem(tmp_path):
    shutil.copytree(COMMITTED, tmp_path / "m")
    _mutate(tmp_path / "m", "inferenceservice.yaml", 0, lambda d: _predictor(d).__setitem__("minReplica", 2))
    done = subprocess.run([BIN / "reelops", "manifests", "check", str(tmp_path / "m")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    assert "problem: inferenceservice.yaml#0 InferenceService/movie-recommender .spec.predictor.minReplica" in done.stdout
    assert "22 documents checked, 1 problems" in done.stdout
    ok = subprocess.run([BIN / "reelops", "manifests", "check", str(COMMITTED), "--json"], capture_output=True,
                        text=True, timeout=300)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True


@needs_promtool
def test_a_broken_alert_expression_or_dashboard_query_fails_the_check(tmp_path):
    shutil.copytree(COMMITTED, tmp_path / "m")
    _mutate(tmp_path / "m", "monitoring.yaml", 1,
            lambda d: d["spec"]["groups"][0]["rules"][0].__setitem__("expr", "sum(rate(reelops_predictions_total[5m])"))
    board_path = tmp_path / "m" / "grafana" / "reelops-dashboard.json"
    board = json.loads(board_path.read_text())
    board["panels"][0]["targets"][0]["expr"] = "rate(reelops_predictions_total[$__rate_interval]"
    board_path.write_text(json.dumps(board))
    problems = check_folder(tmp_path / "m").problems
    assert len(problems) == 2
    assert "monitoring.yaml#1 PrometheusRule/reelops-predictor: promtool check rules" in problems[0]
    assert "could not parse expression" in problems[0]
    assert problems[1].startswith("grafana/reelops-dashboard.json: promtool check rules") and "parse error" in problems[1]


@needs_promtool
def test_the_alert_rules_fire_as_their_unit_tests_say(tmp_path):
    rule = by_kind("PrometheusRule")[0]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    for name in ("predictor_alerts_test.yaml", "drift_alerts_test.yaml"):
        shutil.copy(ROOT / "tests" / "promtool" / name, tmp_path)
    done = subprocess.run(["promtool", "test", "rules", "predictor_alerts_test.yaml", "drift_alerts_test.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_inferenceservices_are_serverless_rest_and_grpc_with_the_settings_a_cluster_needs():
    rest, grpc_ = documents("inferenceservice.yaml")[0], documents("inferenceservice-grpc.yaml")[0]
    parser = build_parser()
    for service, port, port_name in ((rest, 8080, "http1"), (grpc_, 8081, "h2c")):
        assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
        container = _predictor(service)["containers"][0]
        assert container["name"] == "kserve-container" and container["ports"] == [
            {"containerPort": port, "name": port_name, "protocol": "TCP"}]
        assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
        assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
        security = container["securityContext"]
        assert security["runAsNonRoot"] and security["runAsUser"] == 10001 and not security["allowPrivilegeEscalation"]
        assert security["readOnlyRootFilesystem"] and {"mountPath": "/tmp", "name": "scratch"} in container["volumeMounts"]
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        # The command line is one reelops itself accepts.
        args = parser.parse_args(container["args"])
        assert args.handler.__name__ == "cmd_serve" and args.host == "0.0.0.0" and args.port == 8080
        tracking = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
        assert tracking["MLFLOW_TRACKING_URI"] == {"key": "tracking_uri", "name": "reelops-mlflow", "optional": False}
    assert parser.parse_args(_predictor(rest)["containers"][0]["args"]).no_grpc
    assert parser.parse_args(_predictor(grpc_)["containers"][0]["args"]).grpc_port == 8081


def test_a_pinned_model_version_reads_the_store_with_its_credentials():
    service = render(RenderSettings(storage_uri="s3://models/movie-recommender/7"))["inferenceservice.yaml"][0]
    container = _predictor(service)["containers"][0]
    assert container["args"][:3] == ["serve", "--storage-uri", "s3://models/movie-recommender/7"]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert set(secrets) == {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert {s["name"] for s in secrets.values()} == {"reelops-object-store"}
    assert document_problems(service) == []


def test_a_shadow_renders_its_own_inferenceservice_and_a_comparator_the_primarys_logger_feeds(tmp_path):
    """A shadow needs the primary's one logger too: it posts to a Broker whose Triggers deliver
    the events to the comparator and to the shared drift detector."""
    settings = RenderSettings(namespace="recs", shadow_storage_uri="s3://models/movie-recommender/8")
    files = render(settings)
    primary, grpc = files["inferenceservice.yaml"][0], files["inferenceservice-grpc.yaml"][0]
    assert primary["spec"]["predictor"]["logger"] == {
        "mode": "all", "url": "http://broker-ingress.knative-eventing.svc.cluster.local/recs/reelops-inference-events"}
    assert len(primary["spec"]["predictor"]["containers"]) == 1  # the detector moved behind the broker
    assert "logger" not in grpc["spec"]["predictor"]  # one logger: the REST primary's
    shadow, deployment, service = files["shadow.yaml"]
    assert shadow["metadata"]["name"] == "movie-recommender-shadow" and "logger" not in shadow["spec"]["predictor"]
    args = shadow["spec"]["predictor"]["containers"][0]["args"]
    assert args[args.index("--storage-uri") + 1] == "s3://models/movie-recommender/8" and "--allow-unblessed" in args
    assert args[args.index("--name") + 1] == "movie-recommender"  # the comparator replays the primary's paths
    comparator = deployment["spec"]["template"]["spec"]["containers"][0]
    assert comparator["args"][:3] == ["shadow", "--shadow-url",
                                      "http://movie-recommender-shadow-predictor.recs.svc.cluster.local"]
    assert deployment["spec"]["replicas"] == 1 and service["metadata"]["name"] == "reelops-shadow-comparator"
    triggers = {d["metadata"]["name"]: d for d in files["drift-detector.yaml"] if d["kind"] == "Trigger"}
    assert {t["spec"]["subscriber"]["ref"]["name"] for t in triggers.values()} == {"reelops-shadow-comparator",
                                                                                  "reelops-drift-detector"}
    assert "shadow.yaml" not in render()  # the committed folder has no shadow
    write(tmp_path / "m", settings)
    assert check_folder(tmp_path / "m").problems == []


def test_the_drift_detector_is_a_sidecar_its_logger_feeds_over_localhost_and_prometheus_scrapes():
    service = documents("inferenceservice.yaml")[0]
    predictor = service["spec"]["predictor"]
    serving, detector = predictor["containers"]
    assert predictor["logger"] == {"mode": "all", "url": "http://localhost:8095/"}
    assert "ports" in serving and "ports" not in detector  # Serverless: one declared port per pod
    args = build_parser().parse_args(detector["args"])
    assert (args.detector_command, args.model_alias, args.port, args.host) == ("serve", "production", 8095, "0.0.0.0")
    retrain = build_parser().parse_args(args.retrain_command.split()[1:])  # after "reelops"
    assert (retrain.pipeline_command, retrain.name, retrain.service_account) == ("submit", "training",
                                                                                 "reelops-pipeline-runner")
    assert {e["name"] for e in detector["env"]} >= {"MLFLOW_TRACKING_URI"}
    assert {"mountPath": "/var/run/secrets/kubeflow/pipelines", "name": "kfp-token", "readOnly": True} in \
        detector["volumeMounts"]
    assert "logger" not in documents("inferenceservice-grpc.yaml")[0]["spec"]["predictor"]
    monitor = next(m for m in by_kind("PodMonitor") if m["metadata"]["name"] == "reelops-predictor")
    assert [e["portNumber"] for e in monitor["spec"]["podMetricsEndpoints"]] == [8080, 8095]
    groups = {g["name"] for g in by_kind("PrometheusRule")[0]["spec"]["groups"]}
    assert groups == {"reelops-predictor", "reelops-drift"}
    roles = {r["metadata"]["name"]: r for r in by_kind("Role")}
    assert roles["reelops-predictor"]["rules"][0]["apiGroups"] == ["pipelines.kubeflow.org"]  # it starts retraining


def test_the_shared_detector_variant_renders_a_broker_a_trigger_and_one_detector(tmp_path):
    settings = RenderSettings(drift_detector="broker", retrain_source="s3://ratings/latest")
    files = render(settings)
    kinds = [d["kind"] for d in files["drift-detector.yaml"]]
    assert kinds == ["Broker", "Trigger", "Deployment", "Service", "PodMonitor"]
    broker, trigger, deployment = files["drift-detector.yaml"][:3]
    assert trigger["spec"]["broker"] == broker["metadata"]["name"]
    assert trigger["spec"]["filter"] == {"attributes": {"inferenceservicename": "movie-recommender"}}
    # One replica: a request's two events must meet in one process.
    assert deployment["spec"]["replicas"] == 1
    args = build_parser().parse_args(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "--param source=s3://ratings/latest" in args.retrain_command
    primary = files["inferenceservice.yaml"][0]["spec"]["predictor"]
    assert len(primary["containers"]) == 1 and "reelops-inference-events" in primary["logger"]["url"]
    write(tmp_path / "m", settings)
    report = check_folder(tmp_path / "m")
    assert report.problems == [] and report.documents == 27
    broken = json.loads(json.dumps(broker))
    broken["spec"] = {"config": {"kind": "ConfigMap"}, "deliveri": {}}
    assert document_problems(broken) == [".spec.deliveri: field not declared by the Broker schema"]
    none = render(RenderSettings(drift_detector="none"))
    assert "logger" not in none["inferenceservice.yaml"][0]["spec"]["predictor"] and "drift-detector.yaml" not in none
    with pytest.raises(ValueError, match="drift_detector must be one of"):
        RenderSettings(drift_detector="sidekick")


def test_the_pipeline_runner_may_only_get_and_patch_inferenceservices_in_its_namespace():
    assert not by_kind("ClusterRole") and not by_kind("ClusterRoleBinding")
    roles = {r["metadata"]["name"]: r for r in by_kind("Role")}
    runner = roles["reelops-pipeline-runner"]
    assert runner["metadata"]["namespace"] == "reelops"
    assert runner["rules"] == [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
                                "verbs": ["get", "list", "watch", "patch"]}]
    assert roles["reelops-deployer"]["rules"][0]["verbs"] == ["get", "list", "watch", "create", "update", "patch"]
    bindings = {b["metadata"]["name"]: b for b in by_kind("RoleBinding")}
    assert bindings["reelops-pipeline-runner"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "reelops-pipeline-runner", "namespace": "reelops"}]


def test_the_recurring_run_submits_the_monitoring_pipeline_with_a_kfp_token():
    cron = by_kind("CronJob")[0]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    args = build_parser().parse_args(pod["containers"][0]["args"])
    assert (args.pipeline_command, args.name, args.service_account) == ("submit", "monitoring", "reelops-pipeline-runner")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    token = pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "pipelines.kubeflow.org"
    assert {"mountPath": "/var/run/secrets/kubeflow/pipelines", "name": "kfp-token", "readOnly": True} in \
        pod["containers"][0]["volumeMounts"]


def test_the_dashboard_queries_the_series_the_podmonitor_labels():
    board = json.loads((COMMITTED / "grafana" / "reelops-dashboard.json").read_text())
    config_map = by_kind("ConfigMap")[0]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["reelops-predictor.json"]) == board
    relabeled = {r["targetLabel"] for r in by_kind("PodMonitor")[0]["spec"]["podMetricsEndpoints"][0]["relabelings"]}
    assert relabeled == {"inferenceservice", "revision"}
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    assert all('namespace="$namespace"' in expr for expr in exprs)
    assert any("by (revision" in expr for expr in exprs)


def test_render_writes_whole_files_into_a_new_folder_from_its_own_process(tmp_path):
    out = tmp_path / "rendered"
    done = subprocess.run([BIN / "reelops", "manifests", "render", "--out", str(out), "--namespace", "recs",
                           "--serve-image", "registry.example/serve@sha256:" + "a" * 64, "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["written"]) == len(render())
    assert not list(out.rglob(".*.partial"))
    assert check_folder(out).problems == []
    service = yaml.safe_load((out / "inferenceservice.yaml").read_text().split("\n", 1)[1])
    assert service["metadata"]["namespace"] == "recs"
    assert _predictor(service)["containers"][0]["image"] == "registry.example/serve@sha256:" + "a" * 64


# ------------------------------------------------------------------ workflows and Dockerfile

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_the_ci_and_cd_workflows_exist_and_do_what_they_promise():
    assert [w.name for w in WORKFLOWS] == ["cd.yml", "ci.yml"]
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    for step in ("make test", "make compile", "actions/upload-artifact", "make manifests-check", "make lint",
                 "make image"):
        assert step in ci
    cd = yaml.safe_load((ROOT / ".github" / "workflows" / "cd.yml").read_text())
    assert cd[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    run = "\n".join(step.get("run", "") for job in cd["jobs"].values() for step in job["steps"])
    assert "docker push" in run and "RepoDigests" in run and "reelops pipeline submit training" in run
    assert cd["jobs"]["pipelines"]["env"]["REELOPS_IMAGE"] == "${{ needs.images.outputs.pipeline }}"
    assert "--wait" in run  # training finishes before anything is deployed
    assert "reelops deploy canary --strategy canary --percent 10 --target kserve" in run
    assert '--analysis auto --prometheus-url "$PROMETHEUS_URL"' in run
    assert cd["jobs"]["deploy"]["env"]["REELOPS_SERVE_IMAGE"] == "${{ needs.images.outputs.serve }}"
    assert cd["jobs"]["deploy"]["needs"] == ["images", "pipelines"]


def _lint(tool: str, *args, cwd=ROOT):
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_actionlint_and_the_workflow_schema_pass_and_catch_a_broken_workflow(tmp_path):
    done = _lint("actionlint", *map(str, WORKFLOWS))
    assert done.returncode == 0, done.stdout + done.stderr
    done = _lint("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS))
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text((ROOT / ".github" / "workflows" / "ci.yml").read_text()
                      .replace("runs-on:", "runs_on:", 1).replace("${{ github.ref }}", "${{ github.reff }}"))
    assert _lint("check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(broken)).returncode == 1
    linted = _lint("actionlint", str(broken))
    assert linted.returncode == 1 and "runs_on" in linted.stdout and "reff" in linted.stdout


def test_hadolint_passes_on_the_dockerfile_and_catches_a_bad_one(tmp_path):
    done = _lint("hadolint", "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    assert "DL3007" in _lint("hadolint", str(bad)).stdout


# ------------------------------------------------------------------ standalone components

ARTIFACT_CLASSES = {"system.Dataset": "Dataset", "system.Model": "Model", "system.Artifact": "Artifact",
                    "system.Metrics": "Metrics", "system.HTML": "HTML", "system.Markdown": "Markdown"}
VALUES = {"String": "x", "Integer": 1, "Float": 0.5, "Boolean": True}


def test_every_standalone_component_loads_and_compiles_into_a_pipeline(tmp_path):
    from kfp import compiler, dsl
    from kfp.components import load_component_from_file

    from reelops.components import IMAGE
    from reelops.pipelines import COMPONENT_NAMES

    done = subprocess.run([BIN / "reelops", "pipeline", "compile", "--components", "--out", str(tmp_path / "c"),
                           "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert sorted(Path(p).stem for p in json.loads(done.stdout)["compiled"]) == sorted(COMPONENT_NAMES)
    for name in COMPONENT_NAMES:
        component = load_component_from_file(str(tmp_path / "c" / f"{name}.yaml"))
        inputs = component.component_spec.inputs or {}

        # An exit-handler component (record_outcome) gets its PipelineTaskFinalStatus from KFP.
        exit_handler = any(spec.type == "PipelineTaskFinalStatus" for spec in inputs.values())

        @dsl.pipeline(name=f"uses-{name.replace('_', '-')}")
        def uses_it():
            arguments = {}
            for input_name, spec in inputs.items():
                if spec.optional or spec.type == "PipelineTaskFinalStatus":
                    continue
                kind = spec.type.split("@")[0]
                if kind in ARTIFACT_CLASSES:
                    arguments[input_name] = dsl.importer(
                        artifact_uri=f"s3://shared/{input_name}", reimport=False,
                        artifact_class=getattr(dsl, ARTIFACT_CLASSES[kind])).output
                else:
                    arguments[input_name] = VALUES[spec.type]
            if exit_handler:
                with dsl.ExitHandler(component(**arguments)):
                    dsl.importer(artifact_uri="s3://shared/raw", artifact_class=dsl.Dataset)
            else:
                component(**arguments)

        path = tmp_path / f"uses-{name}.yaml"
        compiler.Compiler().compile(uses_it, str(path))
        compiled = yaml.safe_load(path.read_text())
        executors = compiled["deploymentSpec"]["executors"]
        assert any(e.get("container", {}).get("image") == IMAGE for e in executors.values()), name
