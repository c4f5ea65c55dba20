"""The online drift detector: the same findings online and offline, one short run of each
benchmark scenario, bad events refused and counted, windows that wait for their labels, the
retraining trigger claimed once by two detectors and a restarted one, and the detector beside
each revision of the local plane (killed mid-run: no failed prediction, drops counted)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from reelops.deploy.detector import DriftDetector, OnlineWindows, RetrainTrigger, build_app
from reelops.monitoring import monitor_dataset
from reelops.simulate import Scenario, World, WorldConfig
from reelops.simulate.traffic import logged_events

from .processes import reelops
from .servers import free_port, stop

ROOT = Path(__file__).resolve().parents[1]
BATCH = {"content-type": "application/cloudevents-batch+json"}


@contextlib.contextmanager
def detector_server(detector: DriftDetector):
    """The detector's HTTP app on 127.0.0.1 in a thread of this process (its state stays readable)."""
    from aiohttp import web

    loop = asyncio.new_event_loop()
    port = free_port()
    runner = web.AppRunner(build_app(detector, tick_seconds=0.1))

    async def start():
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def scenario_stream(setup, scenario: str, before: int, after: int):
    """The scenario world's ratings from ``before`` ratings ahead of its onset to ``after`` past
    it, in replay order, with every user's profile; and the position of the onset."""
    world = World(WorldConfig(), Scenario.parse(scenario), setup["seed"])
    tables = world.generate()
    ratings = tables["ratings"][tables["ratings"]["timestamp"] >= setup["cut"]]
    ratings = ratings.sort_values(["timestamp", "user_id", "movie_id"], kind="stable").reset_index(drop=True)
    onset = int((ratings["timestamp"] < world.onset).sum())
    users = tables["users"]
    profiles = {int(u): {"age": int(a), "gender": str(g), "occupation": str(o)}
                for u, a, g, o in zip(users["user_id"], users["age"], users["gender"], users["occupation"])}
    return ratings.iloc[onset - before: onset + after].reset_index(drop=True), profiles, tables


def post_stream(url: str, events: list, feedback: list, binary_first: int = 0) -> None:
    """The logger's events (the first ``binary_first`` pairs one by one in binary mode, as KServe's
    logger sends them; the rest in batches, as the local plane's router does), each batch's
    feedback after it (ratings follow their requests)."""
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    with httpx.Client(timeout=30) as client:
        for event in events[:2 * binary_first]:
            attributes = {k: v for k, v in event.items() if k not in ("data", "datacontenttype")}
            headers, body = to_binary(CloudEvent(attributes, json.dumps(event["data"]).encode()))
            headers["content-type"] = "application/json"
            assert client.post(url, headers=headers, content=body).status_code == 202
        labelled = 0
        for start in range(2 * binary_first, len(events) + 1, 512):
            batch = events[start:start + 512]
            if batch:
                answer = client.post(url, headers=BATCH, content=json.dumps(batch))
                assert answer.status_code == 202, answer.text
            answered = (start + len(batch)) // 2
            if feedback[labelled:answered]:
                assert client.post(f"{url}/v1/feedback", json=feedback[labelled:answered]).status_code == 202
            labelled = answered


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_the_same_interactions_give_the_same_findings_online_and_offline(monitored_world):
    """Events over HTTP (binary and batched) and feedback make the windows the offline monitor
    makes of the same ratings: identical findings, window by window; population shift is
    caught by user data drift, and the metrics say so."""
    stream, profiles, tables = scenario_stream(monitored_world, "population_shift", before=1000, after=3000)
    events, feedback = logged_events(stream, profiles)
    detector = DriftDetector(monitored_world["monitor"], model_version="7", label_wait=30)
    with detector_server(detector) as url:
        post_stream(url, events, feedback, binary_first=20)
        wait_for(lambda: detector.judged == 4, what="four judged windows")
        status = httpx.get(f"{url}/detector/status").json()
        metrics = httpx.get(f"{url}/metrics").text
    online = [findings.to_dict() for findings in detector.findings]
    offline = [f.to_dict() for f in monitor_dataset(monitored_world["monitor"], stream, tables["users"], None)["windows"]]
    assert online == offline
    assert [f["verdict"] for f in online][0] == "none"
    assert sum(f["detectors"]["user_data_drift"]["drift"] for f in online[1:]) >= 2
    assert status["interactions"] == 4000 and status["feedback"] == 4000 and status["dropped"] == {}
    assert status["events"] == 8000
    assert 'reelops_detector_events_total{type="request"} 4000.0' in metrics
    assert 'reelops_detector_windows_total{model_version="7",verdict="none"} 1.0' in metrics
    assert 'reelops_detector_alarms_total{detector="user_data_drift"' in metrics
    assert 'reelops_detector_p_value{detector="user_data_drift",feature="age",model_version="7"}' in metrics
    assert 'reelops_detector_change_size{detector="movie_data_drift",feature="unseen_titles",model_version="7"}' in metrics


@pytest.mark.parametrize("scenario, detector_name", [("new_releases", "movie_data_drift"), ("none", None)])
def test_a_short_seeded_run_of_each_benchmark_case(monitored_world, scenario, detector_name):
    """New releases alarm movie data drift within 2,000 interactions of onset; an unchanged
    world raises no retraining decision (the benchmark runs 10 seeds through the plane)."""
    stream, profiles, _ = scenario_stream(monitored_world, scenario, before=0, after=3000)
    detector = DriftDetector(monitored_world["monitor"], label_wait=30)
    events, feedback = logged_events(stream, profiles)
    with detector_server(detector) as url:
        post_stream(url, events, feedback)
        wait_for(lambda: detector.judged == 3, what="three judged windows")
    findings = list(detector.findings)
    if detector_name:
        assert any(f.detectors[detector_name].drift for f in findings[:2])
    else:
        assert sum(f.verdict != "none" for f in findings) <= 1
        assert detector.decision["retrain"] is False


def test_bad_events_are_refused_or_counted_and_the_detector_keeps_going(monitored_world):
    detector = DriftDetector(monitored_world["monitor"], label_wait=30)
    with detector_server(detector) as url, httpx.Client(timeout=10) as client:
        assert client.post(url, content=b"hello", headers={"content-type": "text/plain"}).status_code == 400
        wrong = client.post(url, headers={"ce-id": "1", "ce-type": "com.example.other", "ce-source": "x",
                                          "ce-specversion": "1.0", "content-type": "application/json"}, content=b"{}")
        assert wrong.status_code == 400 and "org.kubeflow.serving.inference.request" in wrong.json()["error"]
        assert client.post(url, headers=BATCH, content=b'{"not": "a list"}').status_code == 400
        bad_rating = client.post(f"{url}/v1/feedback", json={"user_id": 1, "movie_id": 2, "rating": 7})
        assert bad_rating.status_code == 400 and "rating" in bad_rating.json()["error"]
        head = {"specversion": "1.0", "source": "x", "id": "r1"}
        pairs = [{**head, "type": "org.kubeflow.serving.inference.request", "data": "not json with instances"},
                 {**head, "type": "org.kubeflow.serving.inference.response", "data": {"predictions": []}},
                 {**head, "id": "r2", "type": "org.kubeflow.serving.inference.request",
                  "data": {"instances": [{"age": 30, "gender": "F", "occupation": "writer", "k": 5}]}},
                 {**head, "id": "r2", "type": "org.kubeflow.serving.inference.response",
                  "data": {"predictions": [{"movie_ids": [1, 2], "scores": [1.0, 0.5]}]}},
                 {**head, "id": "r3", "type": "org.kubeflow.serving.inference.request",
                  "data": {"instances": [{"user_id": 5, "movie_id": 10}, {"user_id": "five", "movie_id": 10}]}},
                 {**head, "id": "r3", "type": "org.kubeflow.serving.inference.response",
                  "data": {"predictions": [{"rating": 3.1}, {"rating": 2.0}]}}]
        assert client.post(url, headers=BATCH, content=json.dumps(pairs)).status_code == 202
        status = client.get(f"{url}/detector/status").json()
        metrics = client.get(f"{url}/metrics").text
    assert status["dropped"] == {"bad_event": 3, "unreadable_pair": 1, "feedback_bad_field": 1}
    assert status["unjudgeable"] == {"anonymous_user": 1, "bad_ids": 1}
    assert status["interactions"] == 1 and status["backlog_rows"] == 1
    assert 'reelops_detector_dropped_total{reason="bad_event"} 3.0' in metrics


def test_a_full_window_waits_for_its_labels_then_is_judged_without_them():
    now = [0.0]
    windows = OnlineWindows(size=3, label_wait=10, clock=lambda: now[0])
    for index in range(4):
        assert windows.add(10 + index, 20 + index, 1_000 + index, key=(f"r{index}", 10 + index, 20 + index))
    assert windows.label(("r0", 10, 20), 4.0, 900) and not windows.label(("r9", 10, 20), 4.0, None)
    assert windows.due() == []  # full, two ratings still to come
    now[0] = 10.5
    window, = windows.due()
    assert list(window["user_id"]) == [10, 11, 12]  # time order: the labelled row took its rating's time
    assert window["rating"].isna().sum() == 2 and window.loc[0, "timestamp"] == 900
    assert not windows.label(("r1", 11, 21), 3.0, None)  # too late: its window was judged
    assert windows.is_late(("r1", 11, 21)) and not windows.is_late(("r9", 10, 20))
    assert len(windows.rows) == 1 and windows.unlabelled == 1
    small = OnlineWindows(size=2, max_rows=2)
    assert small.add(1, 1, 1) and small.add(1, 2, 2) and not small.add(1, 3, 3)  # bounded


# ---------------------------------------------------------------------- processes: trigger and plane


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A workspace whose version 1 (blessed, production) was trained on a population-shift world
    before its onset; the world's folder beside it."""
    from reelops.data import ingest
    from reelops.simulate import simulate
    from reelops.training import train

    root = tmp_path_factory.mktemp("detector")
    workspace = root / "workspace"
    workspace.mkdir()
    simulate("population_shift", seed=5, out=root / "world", strength=1.5)
    world = World.from_directory(root / "world")
    simulate("population_shift", seed=5, out=root / "history", strength=1.5,
             until=(world.onset - world.start) / (world.end - world.start) * 0.9)
    data = root / "datasets" / ingest(root / "history", store=root / "datasets").version
    train(data, root / "m1")
    # Set up in this process (the commands themselves are tested in their own processes elsewhere).
    from reelops import registry
    from reelops.gate import Thresholds, run_gate

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REELOPS_WORKSPACE", str(workspace))
        run_gate(root / "m1", data, Thresholds())
        registry.register(root / "m1")
    return {"workspace": workspace, "world": world}


def world_after_onset(world, before: int, after: int):
    tables = world.generate()
    ratings = tables["ratings"].sort_values(["timestamp", "user_id", "movie_id"], kind="stable").reset_index(drop=True)
    onset = int((ratings["timestamp"] < world.onset).sum())
    users = world.users_frame()
    profiles = {int(u): {"age": int(a), "gender": str(g), "occupation": str(o)}
                for u, a, g, o in zip(users["user_id"], users["age"], users["gender"], users["occupation"])}
    return ratings.iloc[onset - before: onset + after].reset_index(drop=True), profiles


def start_detector(workspace: Path, marker: Path, log: Path, wait: bool = True) -> tuple:
    """``reelops detector serve`` watching version 1, whose retraining command appends a line to ``marker``."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "reelops.cli", "detector", "serve", "--model-version", "1", "--port", str(port),
         "--label-wait", "2", "--min-new-labels", "500", "--retrain-command", marker_command(marker)],
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=workspace, start_new_session=True,
        env={**os.environ, "REELOPS_WORKSPACE": str(workspace)})
    url = f"http://127.0.0.1:{port}"
    if wait:
        wait_up(process, url, log)
    return process, url


def marker_command(marker: Path) -> str:
    """A retraining command that only records that it started (the real pipeline runs in the benchmark)."""
    return f"{sys.executable} -c \"open({str(marker)!r}, 'a').write('started\\n')\""


def wait_up(process, url: str, log: Path) -> None:
    wait_for(lambda: _answers(f"{url}/health") or process.poll() is not None, timeout=120, what="the detector")
    assert process.poll() is None, log.read_text()[-2000:]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def triggers_of(workspace: Path) -> list:
    from reelops import registry

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REELOPS_WORKSPACE", str(workspace))
        return registry.retrain_triggers()


def status_of(url: str) -> dict:
    return httpx.get(f"{url}/detector/status", timeout=10).json()


def test_the_plane_watches_each_revision_retrains_once_and_survives_losing_its_detector(registered, tmp_path):
    """The router logs each answer and its feedback to the serving revision's detector. A
    second detector process on the same version (a replica's) gets the same drifted traffic;
    both find drift, the registry's compare-and-set lets one start the retraining run. Killed
    mid-run, the plane's detector fails no prediction and shows in the router's drop counter;
    a detector restarted afterwards decides the same and starts nothing (the cooldown holds)."""
    from reelops.simulate.traffic import TrafficReplay

    workspace, world, marker = registered["workspace"], registered["world"], tmp_path / "runs.txt"
    stream, profiles = world_after_onset(world, before=0, after=4000)
    events, feedback = logged_events(stream, profiles)
    second, url_b = start_detector(workspace, marker, tmp_path / "b.log", wait=False)  # loads while the plane starts
    restarted = None
    try:
        status = json.loads(reelops(workspace, "deploy", "1", "--label-wait", "2", "--retrain-command",
                                    marker_command(marker), "--json").stdout)
        wait_up(second, url_b, tmp_path / "b.log")
        url_a = status["revisions"][0]["detector"]["url"]
        assert status["revisions"][0]["detector"]["running"] and status["revisions"][0]["detector"]["windows_judged"] == 0
        feeder = threading.Thread(target=post_stream, args=(url_b, events, feedback))
        feeder.start()
        # The world's ratings from its onset on, through the router: the same interactions.
        # Arrivals wait rather than being skipped on a machine busy with other tests (make test
        # runs two files at once): the three windows below need 3,000 answered.
        stats = TrafficReplay(status["url"], world, rate=200, start=int(world.onset), seed=1, feedback_delay=0.2,
                              mode="ratings", max_in_flight=2000).run(4000)
        feeder.join()
        answered = len(stats.records) - len(stats.failures())  # a busy machine may skip a few arrivals
        assert answered >= 3000 and stats.failures() == []
        wait_for(lambda: status_of(url_a)["windows_judged"] == answered // 1000 and
                 status_of(url_b)["windows_judged"] == 4, timeout=120, what="both detectors' windows")
        wait_for(lambda: marker.is_file(), timeout=30, what="the retraining command")
        time.sleep(1.0)
        statuses = [status_of(url) for url in (url_a, url_b)]
        assert statuses[0]["interactions"] == answered and statuses[0]["feedback"] == answered, statuses[0]
        assert statuses[0]["dropped"] == {}
        # One started the run; the other either lost the claim or, deciding after it, found the
        # trigger recorded and the cooldown running.
        started = [s for s in statuses if s["retrain"] and s["retrain"]["trigger"]["started"]]
        assert len(started) == 1, statuses
        other = next(s for s in statuses if s is not started[0])
        assert (other["retrain"] and other["retrain"]["trigger"]["started"] is False) or (
            other["retrain"] is None and any("cooldown" in reason for reason in other["decision"]["reasons"])), other
        assert marker.read_text() == "started\n"
        wait_for(lambda: "exit_code" in (triggers_of(workspace) or [{}])[0], timeout=30, what="the run's exit code")
        table = reelops(workspace, "deploy", "status").stdout
        assert "drift detectors" in table and f"{answered:,}" in table
        assert ("RETRAIN after window" if statuses[0]["retrain"] else "keep (in cooldown after a retrain)") in table

        # The plane's detector killed while traffic flows.
        state = json.loads((workspace / "serving" / "plane" / "state.json").read_text())
        pid = state["processes"][status["revisions"][0]["revision"]]["detector"]["pid"]
        replay = TrafficReplay(status["url"], world, rate=150, start=int(world.onset), seed=2, feedback_delay=0.2,
                               mode="ratings").start_background()
        time.sleep(1.0)
        os.kill(pid, 9)
        time.sleep(2.0)
        lost = replay.stop()
        metrics = httpx.get(f"{status['url']}/metrics").text
        after = json.loads(reelops(workspace, "deploy", "status", "--json").stdout)

        # A detector started again on the same version, fed the same interactions.
        stop(second)
        restarted, url_c = start_detector(workspace, marker, tmp_path / "c.log")
        post_stream(url_c, events, feedback)
        wait_for(lambda: status_of(url_c)["windows_judged"] == 4, timeout=120, what="the restarted detector's windows")
        again = status_of(url_c)
    finally:
        for process in (second, restarted):
            if process is not None:
                stop(process)
        reelops(workspace, "deploy", "stop")
    assert lost.failures() == [] and len(lost.records) > 300
    dropped = [line for line in metrics.splitlines()
               if line.startswith("reelops_router_logger_events_total") and "dropped_unreachable" in line]
    assert dropped and float(dropped[0].split()[-1]) > 0
    assert after["revisions"][0]["detector"]["running"] is False
    assert again["retrain"] is None and any("cooldown" in reason for reason in again["decision"]["reasons"]), again
    assert marker.read_text() == "started\n"
    triggers = triggers_of(workspace)
    assert len(triggers) == 1 and triggers[0]["model_version"] == "1" and triggers[0]["decision"]["retrain"]
    assert triggers[0]["exit_code"] == 0


def test_the_retraining_claim_is_a_compare_and_set(workspace):
    """Eight concurrent claims of one decision: one wins; a claim on the state it recorded is new."""
    from reelops import registry

    decision = {"retrain": True, "data_time": 1000, "reasons": [], "last_trigger_data_time": None}
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(registry.claim_retrain("3", decision,
                                                                                     registry.TriggerState())))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(outcome is not None for outcome in outcomes) == 1
    assert registry.TriggerState().load()["last_trigger_data_time"] == 1000
    late = registry.claim_retrain("3", decision, registry.TriggerState())  # decided on the old state
    later = registry.claim_retrain("3", {**decision, "data_time": 2_000_000, "last_trigger_data_time": 1000},
                                   registry.TriggerState())
    assert late is None
    assert later is not None and later["claim"] != next(o for o in outcomes if o)["claim"]
    assert [t["decision"]["data_time"] for t in registry.retrain_triggers()] == [1000, 2_000_000]


def test_a_trigger_starts_nothing_while_its_run_is_under_way_nor_beyond_its_limit(registered, tmp_path, monkeypatch):
    """Each decision below would win its claim (new names); the trigger itself holds back a second
    run while the first runs, and any run past ``max_runs``."""
    from reelops.monitoring.policy import PolicyState

    monkeypatch.setenv("REELOPS_WORKSPACE", str(registered["workspace"]))
    marker = tmp_path / "runs.txt"
    command = [sys.executable, "-c", f"import time; open({str(marker)!r}, 'a').write('run\\n'); time.sleep(3)"]
    limited, state = RetrainTrigger(command, tmp_path / "limited", max_runs=1), PolicyState()
    first = limited.fire("1", {"data_time": 2_000_000_010, "last_trigger_data_time": 2_000_000_001}, state)
    assert first["started"] and first["claim"] == "movie-recommender-after-2000000001"
    busy = limited.fire("1", {"data_time": 2_000_000_020, "last_trigger_data_time": 2_000_000_002}, state)
    assert busy == {"started": False, "reason": f"the retraining run it started (pid {first['pid']}) is still running"}
    limited.process.wait(timeout=30)
    spent = limited.fire("1", {"data_time": 2_000_000_030, "last_trigger_data_time": 2_000_000_003}, state)
    assert spent == {"started": False, "reason": "it started the 1 run(s) it may (--max-retrains)"}
    unlimited = RetrainTrigger(command, tmp_path / "unlimited")
    again = unlimited.fire("1", {"data_time": 2_000_000_040, "last_trigger_data_time": 2_000_000_003}, state)
    assert again["started"]
    unlimited.process.wait(timeout=30)
    assert marker.read_text().splitlines() == ["run", "run"]
    claims = {t["claim"] for t in triggers_of(registered["workspace"])}
    assert {"movie-recommender-after-2000000001", "movie-recommender-after-2000000003"} <= claims
    assert "movie-recommender-after-2000000002" not in claims
