"""Rollouts on the local serving plane, with every CLI command in its own process and a constant
load from a separate load-generator process for the whole of each rollout: blue-green switch
and switch back, a 10% canary's share, promote and rollback, a predictor killed mid-canary,
the gate enforced, feedback attributed; and the rollout model against KServe's rules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reelops.deploy.rollout import ServiceState, with_canary
from reelops.manifests import RenderSettings
from reelops.manifests.check import document_problems
from reelops.manifests.objects import inference_service
from tests.processes import reelops

ROOT = Path(__file__).resolve().parents[1]
LOADGEN = ROOT / "tests" / "loadgen.py"
NAME = "movie-recommender"
R1, R2, R3 = (f"{NAME}-predictor-{n:05d}" for n in (1, 2, 3))


# ------------------------------------------------------------------ the rollout model (KServe's rules)


def _spec(version: int, percent=None, tags=None):
    spec = inference_service(RenderSettings(), storage_uri=f"s3://models/{version}")
    return with_canary(spec, percent, tag_routing=tags)


def _traffic(service: ServiceState) -> list:
    return [(r["revision"][-5:], r["percent"], r["tag"]) for r in service.routes()]


def test_canary_promote_and_rollback_follow_kserve_rules():
    service = ServiceState(NAME)
    service.apply(_spec(1), "1")
    assert _traffic(service) == [("00001", 100, None)] and service.latest_rolled_out == R1
    service.apply(_spec(2, 10), "2")
    assert _traffic(service) == [("00002", 10, None), ("00001", 90, "prev")]
    assert (service.latest_rolled_out, service.latest_ready) == (R1, R2)
    # Changing only canaryTrafficPercent makes no revision.
    assert service.apply(with_canary(service.spec, 30), "2") is None and len(service.revisions) == 2
    assert _traffic(service) == [("00002", 30, None), ("00001", 70, "prev")]
    service.apply(with_canary(service.spec, None), "2")  # promote: the field removed
    assert _traffic(service) == [("00002", 100, None)]
    assert (service.latest_rolled_out, service.previous_rolled_out) == (R2, R1)
    service.apply(with_canary(service.spec, 0), "2")  # roll back after the promotion
    assert _traffic(service) == [("00002", 0, None), ("00001", 100, "prev")] and service.latest_rolled_out == R1
    # Rolled back during a canary: the canary keeps no traffic.
    other = ServiceState(NAME)
    other.apply(_spec(1), "1")
    other.apply(_spec(2, 10), "2")
    other.apply(with_canary(other.spec, 0), "2")
    assert _traffic(other) == [("00002", 0, None), ("00001", 100, "prev")] and other.latest_rolled_out == R1


def test_blue_green_uses_tag_routes_and_prev_exists_only_below_100():
    service = ServiceState(NAME)
    service.apply(_spec(1), "1")
    service.apply(_spec(2, 0, tags=True), "2")
    assert _traffic(service) == [("00002", 0, "latest"), ("00001", 100, "prev")]
    assert service.serving() == {R1, R2}
    service.apply(with_canary(service.spec, None), "2")  # switch
    assert _traffic(service) == [("00002", 100, "latest")] and service.serving() == {R2}
    service.apply(with_canary(service.spec, 0), "2")  # switch back
    assert _traffic(service) == [("00002", 0, "latest"), ("00001", 100, "prev")]
    assert service.latest_rolled_out == R1


def test_every_step_is_a_valid_inferenceservice():
    for spec in (_spec(1), _spec(2, 10), _spec(2, 0, tags=True), with_canary(_spec(2, 10), None)):
        assert document_problems(spec) == []
    assert _spec(2, 0, tags=True)["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"


# ------------------------------------------------------------------ the plane, in processes


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A workspace with versions 1 and 2 blessed (1 production), 3 never gated, 4 random scores
    (never gated); the world's folder beside the workspace."""
    from reelops.data import ingest
    from reelops.simulate import simulate
    from reelops.training import train

    root = tmp_path_factory.mktemp("deploy")
    workspace = root / "workspace"
    workspace.mkdir()
    simulate("none", seed=11, out=root / "world", n_users=300, n_movies=400)
    version = ingest(root / "world", store=root / "datasets").version
    data = root / "datasets" / version
    from reelops import registry
    from reelops.gate import Thresholds, run_gate

    # Set up in this process (gate and register are tested in their own processes elsewhere).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REELOPS_WORKSPACE", str(workspace))
        for index, epochs in ((1, 8), (2, 10), (3, 12), (4, None)):
            if epochs is None:
                train(data, root / f"m{index}", algorithm="random")
            else:
                train(data, root / f"m{index}", parameters={"epochs": epochs})
            if index < 3:
                run_gate(root / f"m{index}", data, Thresholds())
            registry.register(root / f"m{index}")
    yield workspace
    reelops(workspace, "deploy", "stop", check=False)


@pytest.fixture
def plane(models):
    """Version 1 deployed alone (production), stopped afterwards whatever happened."""
    from reelops import registry

    if (models / "serving" / "plane" / "state.json").exists():  # a test that stopped halfway
        reelops(models, "deploy", "stop")
    with pytest.MonkeyPatch.context() as patch:  # set up here; promote is tested in its own process elsewhere
        patch.setenv("REELOPS_WORKSPACE", str(models))
        if registry.aliases().get("production") != "1":
            registry.promote("1", reason="test start")
    status = json.loads(reelops(models, "deploy", "1", "--no-detector", "--json").stdout)
    assert [(r["version"], r["traffic"]) for r in status["revisions"]] == [("1", 100)]
    yield {"workspace": models, "url": status["url"]}
    reelops(models, "deploy", "stop")


class Load:
    """The load generator in its own process at fixed concurrency."""

    def __init__(self, url: str, out: Path, concurrency: int = 8):
        self.out = out
        self.process = subprocess.Popen([sys.executable, str(LOADGEN), "--url", url, "--out", str(out),
                                         "--concurrency", str(concurrency)])
        time.sleep(1.0)

    def stop(self) -> list:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        return json.loads(self.out.read_text())


def aliases_of(workspace) -> dict:
    """``{alias: version}`` in the workspace's registry, read in this process (the commands under
    test each run in their own; reading here saves a process start per check)."""
    from reelops import registry

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REELOPS_WORKSPACE", str(workspace))
        return registry.aliases()


def failures(records: list) -> list:
    return [r for r in records if r[2] != 200]


def answered(url: str) -> float:
    """Requests the router answered with 200 so far (its own counter)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("reelops_router_requests_total") and 'status="200"' in line)


def served_by(records: list, start: float, end: float) -> dict:
    counts = {}
    for began, ended, status, revision, _ in records:
        if began >= start and ended <= end:
            counts[revision] = counts.get(revision, 0) + 1
    return counts


def test_blue_green_switch_and_switch_back_under_load_fail_no_request(plane, tmp_path):
    workspace = plane["workspace"]
    load = Load(plane["url"], tmp_path / "load.json")
    try:
        moments = {"start": time.time()}
        status = json.loads(reelops(workspace, "deploy", "2", "--strategy", "blue-green", "--json").stdout)
        moments["deployed"] = time.time()
        assert {(r["version"], r["traffic"], tuple(r["tags"])) for r in status["revisions"]} == {
            ("1", 100, ("prev",)), ("2", 0, ("latest",))}
        # The candidate answers on its latest tag route (Host prefix, as KServe's tag routes).
        tagged = reelops(workspace, "predict", "--url", plane["url"], "--user", "7", "--json",
                         "--host-header", f"latest-{NAME}-predictor.reelops.example.com")
        assert len(json.loads(tagged.stdout)["predictions"][0]["movie_ids"]) == 10
        time.sleep(1.5)
        reelops(workspace, "deploy", "promote")
        moments["switched"] = time.time()
        time.sleep(1.5)
        moments["before_back"] = time.time()
        status = json.loads(reelops(workspace, "deploy", "rollback", "--json").stdout)
        moments["back"] = time.time()
        time.sleep(1.5)
    finally:
        records = load.stop()
    assert len(records) > 500
    assert failures(records) == []
    # Before the switch only the stable revision took traffic, between switch and back only the
    # new one, after switching back the stable one again (restarted from its own command line).
    assert set(served_by(records, moments["start"], moments["deployed"])) == {R1}
    assert set(served_by(records, moments["switched"], moments["before_back"])) == {R2}
    assert set(served_by(records, moments["back"], time.time())) == {R1}
    assert [(r["version"], r["traffic"]) for r in status["revisions"]] == [("1", 100), ("2", 0)]
    held = aliases_of(workspace)
    assert held["production"] == "1" and held["previous"] == "2"


def test_a_ten_percent_canary_then_promote_and_rollback_under_load(plane, tmp_path):
    workspace = plane["workspace"]
    load = Load(plane["url"], tmp_path / "load.json")
    try:
        reelops(workspace, "deploy", "2", "--strategy", "canary", "--percent", "10", "--analysis", "manual")
        canary_from, before = time.time(), answered(plane["url"])
        deadline = time.time() + 120
        while time.time() < deadline and answered(plane["url"]) - before < 5_600:  # >= 5,000 within the canary
            time.sleep(1)
        canary_to = time.time()
        assert aliases_of(workspace)["canary"] == "2"
        reelops(workspace, "deploy", "promote")
        promoted = time.time()
        time.sleep(1.5)
        reelops(workspace, "deploy", "rollback")
        rolled_back = time.time()
        time.sleep(1.5)
    finally:
        records = load.stop()
    assert failures(records) == []
    during = served_by(records, canary_from, canary_to)
    total = sum(during.values())
    assert total >= 5_000, during
    assert abs(during.get(R2, 0) / total - 0.10) <= 0.03, during
    assert set(served_by(records, promoted + 0.5, promoted + 1.5)) == {R2}
    assert set(served_by(records, rolled_back, time.time())) == {R1}
    held = aliases_of(workspace)
    assert held["production"] == "1" and held["previous"] == "2"


def test_a_predictor_killed_mid_canary_stops_getting_traffic_within_a_second(plane, tmp_path):
    workspace = plane["workspace"]
    status = json.loads(reelops(workspace, "deploy", "2", "--percent", "50", "--analysis", "manual", "--json").stdout)
    canary = next(r for r in status["revisions"] if r["version"] == "2")
    state = json.loads((workspace / "serving" / "plane" / "state.json").read_text())
    pid = state["processes"][canary["revision"]]["pid"]
    load = Load(plane["url"], tmp_path / "load.json")
    try:
        time.sleep(1.5)
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        time.sleep(2.5)
    finally:
        records = load.stop()
    to_canary = [r for r in records if r[3] == R2]
    assert to_canary and max(r[0] for r in to_canary) <= killed + 1.0
    # The router sends a request the dead revision did not answer to the stable one: nothing fails.
    assert failures(records) == []
    assert len(served_by(records, killed + 1.0, time.time())) == 1
    after = json.loads(reelops(workspace, "deploy", "status", "--json").stdout)
    dead = next(r for r in after["revisions"] if r["revision"] == R2)
    assert not dead["running"] and not dead["ready"]
    retries = [line for line in httpx.get(f"{plane['url']}/metrics").text.splitlines()
               if line.startswith("reelops_router_retries_total")]
    assert retries  # counted, whether or not a request was in flight at the kill
    reelops(workspace, "deploy", "rollback")


def test_deploy_enforces_the_gate_and_a_restarted_cli_finds_the_plane(plane):
    workspace = plane["workspace"]
    refused = reelops(workspace, "deploy", "3", check=False)
    assert refused.returncode == 1 and "version 3" in refused.stderr and "--force --reason" in refused.stderr
    no_reason = reelops(workspace, "deploy", "3", "--force", check=False)
    assert no_reason.returncode == 1 and "--force needs --reason" in no_reason.stderr
    status = json.loads(reelops(workspace, "deploy", "status", "--json").stdout)
    assert [r["version"] for r in status["revisions"]] == ["1"]  # nothing changed
    reelops(workspace, "deploy", "3", "--force", "--reason", "hotfix test", "--percent", "20", "--analysis", "manual")
    history = json.loads(reelops(workspace, "registry", "history", "--json").stdout)["history"]
    assert history[-1]["alias"] == "canary" and history[-1]["to"] == "3" and history[-1]["override"]
    busy = reelops(workspace, "deploy", "2", check=False)
    assert busy.returncode == 1 and "canary of version 3 is in progress" in busy.stderr
    reelops(workspace, "deploy", "rollback")
    assert aliases_of(workspace).get("canary") != "3"


def test_automatic_canary_analysis_rolls_back_a_bad_model_and_promotes_a_good_one(plane):
    """Steady traffic from the world with the oracle's feedback; one short run of each case
    (looser rules than the defaults, so it decides within seconds; the benchmark runs the defaults)."""
    from reelops.simulate import World
    from reelops.simulate.traffic import TrafficReplay

    workspace = plane["workspace"]
    quick = ["--rule", "poll_seconds=0.5", "--rule", "min_canary_requests=150", "--rule", "min_feedback=40"]
    replay = TrafficReplay(plane["url"], World.from_directory(workspace.parent / "world"), rate=250, seed=3,
                           feedback_delay=0.2).start_background()
    try:
        time.sleep(1.0)
        bad = reelops(workspace, "deploy", "4", "--percent", "30", "--force", "--reason", "test: random scores",
                      *quick, "--json")
        bad_analysis = json.loads(bad.stdout)["analysis"]
        # The default margin (0.05 stars) needs thousands of ratings to promote; 0.5 decides in seconds.
        good = json.loads(reelops(workspace, "deploy", "2", "--percent", "50", *quick, "--rule", "stars_margin=0.5",
                                  "--json").stdout)
    finally:
        stats = replay.stop()
    assert bad_analysis["decision"] == "rollback" and "quality" in bad_analysis["reason"], bad_analysis
    quality = next(c for c in bad_analysis["comparisons"] if c["metric"] == "quality")
    assert quality["interval"][0] > 0.05 and quality["canary"] < quality["stable"]
    assert good["analysis"]["decision"] == "promote", good["analysis"]
    assert {c["state"] for c in good["analysis"]["comparisons"]} == {"non-inferior"}
    assert stats.failures() == [] and stats.feedback_sent > 0
    assert {r["version"]: r["traffic"] for r in good["revisions"] if r["traffic"]} == {"2": 100}
    # Both decisions with their evidence: in the alias history and on the versions.
    history = json.loads(reelops(workspace, "registry", "history", "--json").stdout)["history"]
    deployed = next(e for e in reversed(history) if e["alias"] == "canary" and e["to"] == "4")
    assert deployed["override"] is True and deployed["reason"] == "test: random scores"
    withdrawn = next(e for e in reversed(history) if e["alias"] == "canary" and e["from"] == "4")
    assert withdrawn["analysis"]["decision"] == "rollback" and "canary analysis, rollback" in withdrawn["reason"]
    promoted = next(e for e in reversed(history) if e["alias"] == "production" and e["to"] == "2")
    assert promoted["analysis"]["decision"] == "promote" and promoted["analysis"]["canary_requests"] >= 150
    shown = json.loads(reelops(workspace, "registry", "show", "4", "--json").stdout)
    assert shown["canary_analysis"]["decision"] == "rollback"
    assert "canary analysis of version 4" in reelops(workspace, "registry", "show", "4").stdout
    table = reelops(workspace, "deploy", "status").stdout
    assert "canary analysis of version 2" in table and "non-inferior" in table and "always-valid interval" in table


def _shadow_report(workspace, compared: int, timeout: float = 60) -> dict:
    """The comparator's report once it compared ``compared`` requests, as ``deploy status`` shows it."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{comparator_url(workspace)}/shadow/status").json()["compared"] < compared \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    return json.loads(reelops(workspace, "deploy", "status", "--json").stdout)["shadow"]


def test_a_shadow_answers_every_request_unseen_and_its_report_tells_same_from_random(plane):
    """The router logs each answer to the comparator, which replays it against the shadow:
    the serving model as its own shadow agrees fully, random scores do not; callers see only
    the primary."""
    from reelops.simulate import World
    from reelops.simulate.traffic import TrafficReplay

    workspace = plane["workspace"]
    world = World.from_directory(workspace.parent / "world")
    before = aliases_of(workspace)
    started = json.loads(reelops(workspace, "deploy", "1", "--strategy", "shadow", "--json").stdout)
    assert started["shadow"]["version"] == "1" and started["shadow"]["running"]
    same = TrafficReplay(plane["url"], world, rate=250, seed=5, feedback=False).run(250)
    itself = _shadow_report(workspace, 250)
    report = itself["report"]
    assert report["compared"] == 250 and report["dropped"] == {} and report["shadow_errors"] == {}
    window = report["windows"][0]
    assert window["requests"] == 200 and window["agreement"] == 1.0 and window["rank_correlation"] == 1.0
    assert window["score_difference"] == 0.0 and window["primary_p50_ms"] > 0 and window["shadow_p50_ms"] > 0
    stopped = json.loads(reelops(workspace, "deploy", "stop-shadow", "--json").stdout)
    assert stopped["shadow"] is None and stopped["history"][-1]["last_window"]["agreement"] == 1.0
    reelops(workspace, "deploy", "4", "--strategy", "shadow")
    other = TrafficReplay(plane["url"], world, rate=250, seed=6, feedback=False).run(250)
    random_scores = _shadow_report(workspace, 250)["report"]
    assert random_scores["windows"][0]["agreement"] < 0.5
    assert all(r[3] == R1 for r in same.records + other.records)  # callers never got a shadow answer
    assert same.failures() == [] and other.failures() == []
    assert "reelops_shadow_compared_total 250.0" in httpx.get(f"{comparator_url(workspace)}/metrics").text
    assert 'reelops_router_logger_events_total{outcome="sent"}' in httpx.get(f"{plane['url']}/metrics").text
    table = reelops(workspace, "deploy", "status").stdout
    assert "shadow: version 4" in table and "agreement@10" in table
    reelops(workspace, "deploy", "stop-shadow")
    assert aliases_of(workspace) == before  # a shadow moves no alias


def comparator_url(workspace) -> str:
    return json.loads((workspace / "serving" / "plane" / "state.json").read_text())["shadow"]["comparator"]["url"]


def test_feedback_is_attributed_to_the_revision_that_served_and_bad_feedback_is_refused(plane):
    from reelops.deploy.feedback import read_feedback

    workspace, url = plane["workspace"], plane["url"]
    answer = httpx.post(f"{url}/v1/models/{NAME}:predict", json={"instances": [{"user_id": 5}]}, timeout=30)
    request_id, movie = answer.headers["X-Request-Id"], answer.json()["predictions"][0]["movie_ids"][0]
    taken = httpx.post(f"{url}/v1/feedback", json={"user_id": 5, "movie_id": movie, "rating": 4.5,
                                                     "request_id": request_id})
    assert taken.json() == {"accepted": 1, "attributed": 1}
    event = httpx.post(f"{url}/v1/feedback", content=json.dumps([{"user_id": 6, "movie_id": 1, "rating": 2}]),
                       headers={"ce-type": "org.reelops.feedback", "ce-id": "e-1", "ce-source": "site",
                                "ce-specversion": "1.0", "Content-Type": "application/json"})
    assert event.json() == {"accepted": 1, "attributed": 0}
    for body, field in (({"user_id": 5, "movie_id": 1, "rating": 9}, "feedback.rating"),
                        ({"user_id": 5, "rating": 3}, "feedback.movie_id"),
                        ([{"user_id": -1, "movie_id": 1, "rating": 3}], "feedback[0].user_id"),
                        ({"user_id": 5, "movie_id": 1, "rating": 3, "stars": 3}, "feedback.stars")):
        refused = httpx.post(f"{url}/v1/feedback", json=body)
        assert refused.status_code == 400 and refused.json()["error"].startswith(field), refused.text
    wrong_type = httpx.post(f"{url}/v1/feedback", json={"user_id": 1, "movie_id": 1, "rating": 3},
                            headers={"ce-type": "org.kubeflow.serving.inference.request", "ce-id": "x",
                                     "ce-source": "s", "ce-specversion": "1.0"})
    assert wrong_type.status_code == 400 and "ce-type" in wrong_type.json()["error"]
    kept = read_feedback(workspace / "serving" / "plane" / "feedback.jsonl")
    assert kept[-2]["revision"] == R1 and kept[-2]["version"] == "1" and kept[-2]["rating"] == 4.5
    metrics = httpx.get(f"{url}/metrics").text
    assert f'reelops_feedback_total{{revision="{R1}",version="1"}} 1.0' in metrics
    assert f'reelops_feedback_stars_total{{revision="{R1}",version="1"}} 4.5' in metrics
    for reason, count in (("bad_field", 2), ("missing_field", 1), ("unknown_field", 1), ("bad_event_type", 1)):
        assert f'reelops_feedback_rejected_total{{reason="{reason}"}} {count}.0' in metrics
    # The predictor behind the router keeps serving.
    assert httpx.post(f"{url}/v1/models/{NAME}:predict", json={"instances": [{"user_id": 5}]}).status_code == 200


# ------------------------------------------------------------------ the KServe target (a stand-in API server)

ISVC_PATH = "/apis/serving.kserve.io/v1beta1/namespaces/reelops/inferenceservices"


@pytest.fixture
def cluster(models, tmp_path):
    """A copy of the registry workspace (its aliases are the test's own) and a stand-in API server."""
    import shutil

    from tests.kube_api import KubeApi

    workspace = tmp_path / "workspace"
    shutil.copytree(models, workspace, ignore=shutil.ignore_patterns("serving"))
    reelops(workspace, "registry", "promote", "1", "--reason", "cluster test start", check=False)
    api = KubeApi()
    yield {"workspace": workspace, "api": api, "kubeconfig": str(api.kubeconfig(tmp_path / "kubeconfig"))}
    api.close()


def kube(cluster, *args, check=True):
    return reelops(cluster["workspace"], "deploy", *args, "--analysis", "manual", "--target", "kserve",
                   "--kubeconfig", cluster["kubeconfig"], "--timeout", "2", "--json", check=check)


def writes(api) -> list:
    """The writes the API server received: ``(verb, name, body)``, both InferenceServices."""
    return [(verb, (body or {}).get("metadata", {}).get("name") or path.rsplit("/", 1)[-1], body, content_type)
            for verb, path, body, content_type in api.requests if verb != "GET"]


def predictor_status(result: dict, name: str = NAME) -> tuple:
    service = result["services"][name]
    return ([(t["revisionName"][-5:], t["percent"], t.get("tag")) for t in service["traffic"]],
            service["latestRolledoutRevision"][-5:], (service["previousRolledoutRevision"] or "")[-5:])




def test_canary_promote_and_rollback_on_kserve_send_what_kserve_expects(cluster):
    api, workspace = cluster["api"], cluster["workspace"]
    first = json.loads(kube(cluster, "1", "--storage-uri", "s3://models/1").stdout)
    assert [(verb, name) for verb, name, _, _ in writes(api)] == [("POST", NAME), ("POST", f"{NAME}-grpc")]
    assert predictor_status(first) == ([("00001", 100, None)], "00001", "")
    api.requests.clear()

    canary = json.loads(kube(cluster, "2", "--strategy", "canary", "--percent", "10", "--storage-uri",
                             "s3://models/2").stdout)
    sent = writes(api)
    assert [(verb, name) for verb, name, _, _ in sent] == [("PUT", NAME), ("PUT", f"{NAME}-grpc")]
    predictor = sent[0][2]["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10 and "s3://models/2" in predictor["containers"][0]["args"]
    assert sent[0][2]["metadata"]["annotations"]["reelops.io/model-version"] == "2"
    assert predictor_status(canary) == ([("00002", 10, None), ("00001", 90, "prev")], "00001", "")
    assert predictor_status(canary, f"{NAME}-grpc")[0] == [("00002", 10, None), ("00001", 90, "prev")]
    held = aliases_of(workspace)
    assert held["production"] == "1" and held["canary"] == "2"
    api.requests.clear()

    promoted = json.loads(kube(cluster, "promote").stdout)
    sent = writes(api)
    assert [verb for verb, _, _, _ in sent] == ["PUT", "PUT"]
    assert "canaryTrafficPercent" not in sent[0][2]["spec"]["predictor"]
    assert predictor_status(promoted) == ([("00002", 100, None)], "00002", "00001")
    assert aliases_of(workspace) == {"production": "2", "previous": "1"}
    api.requests.clear()

    rolled_back = json.loads(kube(cluster, "rollback").stdout)
    sent = writes(api)
    assert [verb for verb, _, _, _ in sent] == ["PATCH", "PATCH"]
    assert sent[0][3] == "application/merge-patch+json"
    assert sent[0][2]["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert predictor_status(rolled_back) == ([("00002", 0, None), ("00001", 100, "prev")], "00001", "00001")
    assert aliases_of(workspace) == {"production": "1", "previous": "2"}
    shown = json.loads(kube(cluster, "status").stdout)
    assert shown["services"][NAME]["phase"] == "rolled-back" and shown["services"][NAME]["ready"]

    # A canary rolled back before its promotion: the same template makes no new revision.
    again = json.loads(kube(cluster, "2", "--percent", "20", "--storage-uri", "s3://models/2").stdout)
    assert predictor_status(again) == ([("00002", 20, None), ("00001", 80, "prev")], "00001", "00001")
    assert aliases_of(workspace) == {"production": "1", "previous": "2", "canary": "2"}
    withdrawn = json.loads(kube(cluster, "rollback").stdout)
    assert predictor_status(withdrawn) == ([("00002", 0, None), ("00001", 100, "prev")], "00001", "00001")
    assert aliases_of(workspace) == {"production": "1", "previous": "2"}


def test_automatic_analysis_on_kserve_reads_prometheus_and_promotes_through_kserveclient(plane, cluster, tmp_path):
    """The kserve path of the analysis end to end: the local plane plays the cluster's pods (its
    revisions carry the names KServe gives them), a real Prometheus scrapes them with the labels
    the PodMonitor sets, the analysis reads PromQL and promotes through the stand-in API server.
    One code path for both targets: PromQL gives the very counters read from the predictors'
    and the router's /metrics."""
    from reelops.deploy.analysis import PlaneMetrics, PrometheusMetrics
    from reelops.deploy.local import LocalPlane
    from reelops.simulate import World
    from reelops.simulate.traffic import TrafficReplay
    from tests.servers import prometheus_server

    reelops(plane["workspace"], "deploy", "2", "--percent", "50", "--analysis", "manual")
    state = json.loads((plane["workspace"] / "serving" / "plane" / "state.json").read_text())
    targets = [{"targets": [f"127.0.0.1:{p['port']}"], "labels": {"revision": name, "namespace": "reelops"}}
               for name, p in state["processes"].items()]
    targets.append({"targets": [f"127.0.0.1:{state['router']['port']}"], "labels": {"namespace": "reelops"}})
    api, workspace = cluster["api"], cluster["workspace"]
    kube(cluster, "1", "--storage-uri", "s3://models/1")
    api.requests.clear()
    replay = TrafficReplay(plane["url"], World.from_directory(plane["workspace"].parent / "world"), rate=250, seed=7,
                           feedback_delay=0.2).start_background()
    try:
        with prometheus_server(tmp_path / "prometheus", targets) as url:
            done = reelops(workspace, "deploy", "2", "--percent", "50", "--target", "kserve", "--kubeconfig",
                           cluster["kubeconfig"], "--timeout", "2", "--storage-uri", "s3://models/2",
                           "--prometheus-url", url, "--rule", "poll_seconds=1", "--rule", "stars_margin=0.5",
                           "--rule", "min_canary_requests=150", "--rule", "min_feedback=40", "--json")
            replay.stop()
            direct, _ = PlaneMetrics(LocalPlane(plane["workspace"] / "serving" / "plane")).read([R1, R2])
            deadline = time.monotonic() + 30
            while True:  # until Prometheus has scraped every target after the traffic stopped
                through, missing = PrometheusMetrics(url, selector='namespace="reelops"').read([R1, R2])
                if (not missing and all(through[r] == direct[r] for r in (R1, R2))) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
    finally:
        replay.stop()
    for revision in (R1, R2):
        assert direct[revision].requests > 0 and direct[revision].feedback > 0
        assert through[revision] == direct[revision], revision
    analysis = json.loads(done.stdout)["analysis"]
    assert analysis["decision"] == "promote", analysis
    assert (analysis["canary"], analysis["stable"]) == (R2, R1)
    sent = writes(api)
    assert [verb for verb, _, _, _ in sent] == ["PUT", "PUT", "PUT", "PUT"]  # the canary, then its promotion
    assert sent[0][2]["spec"]["predictor"]["canaryTrafficPercent"] == 50
    assert "canaryTrafficPercent" not in sent[2][2]["spec"]["predictor"]
    assert aliases_of(workspace) == {"production": "2", "previous": "1"}
    history = json.loads(reelops(workspace, "registry", "history", "--json").stdout)["history"]
    promoted = next(e for e in reversed(history) if e["alias"] == "production" and e["to"] == "2")
    assert promoted["analysis"]["decision"] == "promote" and "canary analysis" in promoted["reason"]
    reelops(plane["workspace"], "deploy", "rollback")


def test_blue_green_switch_and_switch_back_on_kserve(cluster):
    api, workspace = cluster["api"], cluster["workspace"]
    kube(cluster, "1", "--storage-uri", "s3://models/1")
    api.requests.clear()
    staged = json.loads(kube(cluster, "2", "--strategy", "blue-green", "--storage-uri", "s3://models/2").stdout)
    body = writes(api)[0][2]
    assert body["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"
    assert body["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert predictor_status(staged) == ([("00002", 0, "latest"), ("00001", 100, "prev")], "00001", "")
    switched = json.loads(kube(cluster, "promote").stdout)
    assert predictor_status(switched) == ([("00002", 100, "latest")], "00002", "00001")
    back = json.loads(kube(cluster, "rollback").stdout)
    assert predictor_status(back) == ([("00002", 0, "latest"), ("00001", 100, "prev")], "00001", "00001")
    assert [verb for verb, name, _, _ in writes(api) if name == NAME] == ["PUT", "PUT", "PATCH"]
    assert aliases_of(workspace) == {"production": "1", "previous": "2"}


def test_cluster_failures_are_one_line_and_move_no_alias(cluster, tmp_path):
    api, workspace = cluster["api"], cluster["workspace"]
    kube(cluster, "1", "--storage-uri", "s3://models/1")
    before = aliases_of(workspace)

    no_prometheus = reelops(workspace, "deploy", "2", "--target", "kserve", "--kubeconfig", cluster["kubeconfig"],
                            "--storage-uri", "s3://models/2", check=False)
    assert no_prometheus.returncode == 1 and "pass --prometheus-url URL" in no_prometheus.stderr
    missing = reelops(workspace, "deploy", "2", "--target", "kserve", "--kubeconfig", str(tmp_path / "nope"),
                      "--storage-uri", "s3://models/2", "--analysis", "manual", check=False)
    assert missing.returncode == 1 and f"no kubeconfig at {tmp_path / 'nope'}" in missing.stderr
    unknown = reelops(workspace, "deploy", "2", "--target", "kserve", "--kubeconfig", cluster["kubeconfig"],
                      "--namespace", "elsewhere", "--storage-uri", "s3://models/2", "--analysis", "manual", check=False)
    assert unknown.returncode == 1 and "namespace 'elsewhere' not found" in unknown.stderr
    api.forbidden = True
    refused = kube(cluster, "2", "--storage-uri", "s3://models/2", check=False)
    assert refused.returncode == 1 and "forbidden to replace InferenceService reelops/movie-recommender" in refused.stderr
    api.forbidden = False
    api.never_ready = True
    stuck = kube(cluster, "2", "--storage-uri", "s3://models/2", check=False)
    assert stuck.returncode == 1 and "did not become ready within 2 s: RevisionFailed" in stuck.stderr
    local_store = kube(cluster, "2", check=False)  # the registry's artifacts are on this machine's disk
    assert local_store.returncode == 1 and "which a cluster cannot read" in local_store.stderr
    for error in (no_prometheus, missing, unknown, refused, stuck, local_store):
        assert len(error.stderr.strip().splitlines()) == 1, error.stderr
    assert aliases_of(workspace) == before
