"""The online drift detector beside the predictor of the local plane.

**Detection.** For each seed a default world; the default model trained on its ratings up to
90% of the way to the onset (the same history for every scenario of a seed), gated,
registered and deployed alone on the local plane with its detector. The scenario world's
ratings are then replayed through the router in time order from 1,000 ratings before the
onset to 3,000 after it (``TrafficReplay(mode="ratings")``: each rating a request with the
user's profile, its value as feedback), at a steady rate, every command in its own process.
Per scenario: the share of seeds in which the expected detector alarmed in a window ending
within 2,000 requests of onset, and for ``none`` the share of windows that alarmed.

**Keeping up.** One plane: the serving path's maximum rate measured with wrk through the
router (concurrency 16, rating requests) with the detector on, the detector's backlog and
drops sampled throughout; callers' p50 at a steady 30% of that rate with the detector on and
off (A/B/A blocks, each a fresh deployment: ``--detector`` / ``--no-detector``); then the
detector killed mid-replay: failed predictions and the router's drop counter. In-process: the
detector's intake and judging of logger batches, pairs per second.

**Retraining, once.** A drifted world watched by the plane's detector and a second detector
process on the same version, both with the real retraining command (the training pipeline
through kfp.local): the runs started, counted in the registry.

Goals (issue 26): population_shift and new_releases alarmed by the right detector within
2,000 requests of onset in >= 90% of seeds; none: <= 5% of windows alarm; no growing backlog
and no drops at the maximum rate; >= 10,000 pairs per second in-process; p50 with the
detector within 10% of without; the retraining pipeline started exactly once.

    .venv/bin/python benchmarks/online_detector.py [--seeds 10] [--rate 200] [--only detection|capacity|retrain]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXPECTED = {"population_shift": "user_data_drift", "new_releases": "movie_data_drift", "none": None}
BEFORE, AFTER, DEADLINE, WINDOW = 1000, 3000, 2000, 1000
RATING_LUA = """
math.randomseed(7)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, nil, nil, '{"instances": [{"user_id": ' .. math.random(1, 943) .. ', "movie_id": ' ..
    math.random(1, 1682) .. ', "age": 30, "gender": "F", "occupation": "writer"}]}')
end
"""


def reelops(workspace: Path, *args, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "reelops.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "REELOPS_WORKSPACE": str(workspace)}, cwd=workspace)
    if check and done.returncode != 0:
        sys.exit(f"benchmarks/online_detector.py: reelops {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done


def train_version(scratch: Path, workspace: Path, seed: int, scenario: str = "none", strength: float = 1.0) -> tuple:
    """The default model trained on the seed's history before its onset; returns (version, data folder)."""
    from reelops.data import ingest
    from reelops.simulate import World, WorldConfig, Scenario, simulate
    from reelops.training import train

    world = World(WorldConfig(), Scenario.parse(scenario, strength), seed)
    share = 0.9 * (world.onset - world.start) / (world.end - world.start)
    history = scratch / f"history-{scenario}-{seed}"
    simulate(scenario, seed=seed, out=history, strength=strength, until=share)
    data = scratch / "datasets" / ingest(history, store=scratch / "datasets").version
    model = scratch / f"model-{scenario}-{seed}"
    train(data, model)
    reelops(workspace, "gate", "--model-dir", str(model), "--data", str(data))
    return json.loads(reelops(workspace, "registry", "register", str(model), "--json").stdout)["version"], history


def deploy_alone(workspace: Path, version: str, *options) -> dict:
    reelops(workspace, "deploy", "stop")
    reelops(workspace, "registry", "promote", version, "--reason", "benchmark", check=False)
    return json.loads(reelops(workspace, "deploy", version, *options, "--json").stdout)


def detector_status(url: str) -> dict:
    import httpx

    return httpx.get(f"{url}/detector/status", timeout=10).json()


def wait_judged(url: str, windows: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = detector_status(url)
        if status["windows_judged"] >= windows or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


# ---------------------------------------------------------------------- detection


def detection(scratch: Path, workspace: Path, args) -> dict:
    from reelops.console import print_table
    from reelops.simulate import Scenario, World, WorldConfig
    from reelops.simulate.traffic import TrafficReplay

    caught = {scenario: [] for scenario in EXPECTED}
    none_windows, rows = [], []
    for seed in range(args.seeds):
        version, _ = train_version(scratch, workspace, seed)
        for scenario, expected in EXPECTED.items():
            world = World(WorldConfig(), Scenario.parse(scenario), seed)
            ratings = world.generate()["ratings"].sort_values(["timestamp", "user_id", "movie_id"], kind="stable")
            stamps = ratings["timestamp"].to_numpy()
            onset = int((stamps < world.onset).sum())
            status = deploy_alone(workspace, version, "--label-wait", "2")
            detector = status["revisions"][0]["detector"]["url"]
            began = time.monotonic()
            stats = TrafficReplay(status["url"], world, rate=args.rate, start=int(stamps[onset - BEFORE]), seed=seed,
                                  feedback_delay=0.3, mode="ratings").run(BEFORE + AFTER)
            seconds = time.monotonic() - began
            final = wait_judged(detector, (BEFORE + AFTER) // WINDOW)
            alarms = {a["window"]: a["detectors"] for a in final["alarms"]}
            # Window i holds requests [1000 i, 1000 (i+1)); onset is at request BEFORE.
            due = [i for i in range(final["windows_judged"]) if (i + 1) * WINDOW - BEFORE <= DEADLINE and
                   (i + 1) * WINDOW > BEFORE]
            if expected:
                hit = any(expected in alarms.get(i, []) for i in due)
                caught[scenario].append(hit)
                first = min((i for i in alarms if expected in alarms[i] and (i + 1) * WINDOW > BEFORE), default=None)
                delay = "-" if first is None else f"{(first + 1) * WINDOW - BEFORE:,}"
            else:
                none_windows.extend(bool(alarms.get(i)) for i in range(final["windows_judged"]))
                hit, delay = None, "-"
            rows.append([seed, scenario, final["windows_judged"], ", ".join(
                f"{i}:{'+'.join(d)}" for i, d in sorted(alarms.items())) or "-", delay,
                "-" if hit is None else ("yes" if hit else "NO"), len(stats.failures()), sum(final["dropped"].values()),
                f"{(BEFORE + AFTER) / seconds:.0f}"])
            print(f"seed {seed} {scenario}: {rows[-1]}", flush=True)
    reelops(workspace, "deploy", "stop")
    print_table(rows, ["seed", "scenario", "windows", "alarms (window:detectors)", "first alarm after onset (requests)",
                       "caught within 2,000", "failed requests", "dropped", "requests/s"],
                title=f"detection through the local plane: {BEFORE:,} ratings before onset, {AFTER:,} after, "
                      f"replayed at {args.rate:g}/s")
    summary = {scenario: float(np.mean(hits)) for scenario, hits in caught.items() if hits}
    summary["none_window_alarm_share"] = float(np.mean(none_windows)) if none_windows else None
    for scenario, share in summary.items():
        if scenario == "none_window_alarm_share":
            print(f"none: {share:.1%} of {len(none_windows)} windows alarmed (goal <= 5%): "
                  f"{'met' if share <= 0.05 else 'NOT met'}")
        else:
            print(f"{scenario}: caught by {EXPECTED[scenario]} within {DEADLINE:,} requests of onset in {share:.0%} "
                  f"of {args.seeds} seeds (goal >= 90%): {'met' if share >= 0.9 else 'NOT met'}")
    return summary


# ---------------------------------------------------------------------- keeping up


def capacity(scratch: Path, workspace: Path, args) -> None:
    import httpx

    from benchmarks.serving import ensure_wrk, load
    from reelops.console import print_table
    from reelops.simulate import Scenario, World, WorldConfig
    from reelops.simulate.traffic import TrafficReplay

    version, history = train_version(scratch, workspace, 100)
    world = World(WorldConfig(), Scenario.parse("none"), 100)
    start = int(world.onset)
    script = scratch / "rating.lua"
    script.write_text(RATING_LUA)
    wrk = ensure_wrk()

    status = deploy_alone(workspace, version, "--detector", "--label-wait", "2")
    url, detector = status["url"], status["revisions"][0]["detector"]["url"]
    load(wrk, url, 4, 2, script)  # warm-up
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            status = detector_status(detector)
            samples.append((time.monotonic(), status["backlog_rows"], sum(status["dropped"].values()),
                            status["events"]))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    maximum = load(wrk, url, 16, args.max_seconds, script)
    time.sleep(3.0)  # the last label wait and judging
    stop.set()
    sampler.join()
    router = httpx.get(f"{url}/metrics").text
    logger_drops = sum(float(line.split()[-1]) for line in router.splitlines()
                       if line.startswith("reelops_router_logger_events_total") and "dropped" in line)
    backlog = [s[1] for s in samples]
    half = len(backlog) // 2
    print(f"maximum rate through the router with the detector on: {maximum['rps']:.0f} requests/s "
          f"(wrk, concurrency 16, {args.max_seconds} s; p50 {maximum['p50']:.2f} ms, non-2xx {maximum['non_2xx']})")
    print(f"detector backlog (rows waiting for their window), sampled each second: max {max(backlog):,}, "
          f"mean first half {np.mean(backlog[:half]):.0f}, second half {np.mean(backlog[half:]):.0f}; "
          f"events received {samples[-1][3]:,}; dropped by the detector {samples[-1][2]}, by the router's logger "
          f"{logger_drops:.0f}")
    keeps_up = samples[-1][2] == 0 and logger_drops == 0 and max(backlog) <= 2 * WINDOW
    print(f"keeps up at the maximum rate (no drops, backlog within two windows): {'met' if keeps_up else 'NOT met'}")

    rate = 0.3 * maximum["rps"]
    p50 = {"on": [], "off": []}
    rows = []
    for block, state in enumerate(("on", "off", "on", "off")):
        if block:
            url = deploy_alone(workspace, version, "--detector" if state == "on" else "--no-detector",
                               "--label-wait", "2")["url"]
        for repeat in range(args.repeats):
            stats = TrafficReplay(url, world, rate=rate, start=start, seed=block * 10 + repeat, feedback_delay=0.3,
                                  mode="ratings").run(int(rate * args.cell_seconds))
            value = float(np.median([r[1] for r in stats.records])) * 1000
            p50[state].append(value)
            rows.append([block, state, repeat, f"{value:.2f}", len(stats.failures())])
    ratio = float(np.median(p50["on"]) / np.median(p50["off"]))
    print_table(rows, ["block", "detector", "repeat", "p50 ms", "failed"],
                title=f"callers' p50 at {rate:.0f} requests/s (30% of the maximum), {args.cell_seconds:g} s per cell")
    print(f"p50 with the detector / without: {ratio:.3f} (goal <= 1.10): {'met' if ratio <= 1.10 else 'NOT met'}")

    status = deploy_alone(workspace, version, "--detector", "--label-wait", "2")
    url = status["url"]
    state = json.loads((workspace / "serving" / "plane" / "state.json").read_text())
    pid = state["processes"][status["revisions"][0]["revision"]]["detector"]["pid"]
    replay = TrafficReplay(url, world, rate=rate, start=start, seed=7, feedback_delay=0.3, mode="ratings")
    replay.start_background()
    time.sleep(3.0)
    os.kill(pid, 9)
    time.sleep(5.0)
    stats = replay.stop()
    router = httpx.get(f"{url}/metrics").text
    unreachable = sum(float(line.split()[-1]) for line in router.splitlines()
                      if line.startswith("reelops_router_logger_events_total") and "dropped" in line)
    print(f"detector killed mid-replay: {len(stats.records):,} requests, {len(stats.failures())} failed; the router's "
          f"logger counted {unreachable:.0f} events it could not deliver")
    reelops(workspace, "deploy", "stop")

    in_process(scratch, history)


def in_process(scratch: Path, history: Path) -> None:
    """Logger batches and feedback into a detector in this process, judged as they fill."""
    from reelops.deploy.detector import DriftDetector
    from reelops.monitoring import load_monitor
    from reelops.simulate import World
    from reelops.simulate.traffic import logged_events

    monitor = load_monitor(scratch / "model-none-100")
    world = World.from_directory(history)
    ratings = world.generate()["ratings"].sort_values(["timestamp", "user_id", "movie_id"], kind="stable")
    ratings = ratings[ratings["timestamp"] >= world.onset].iloc[:20_000]
    users = world.users_frame()
    profiles = {int(u): {"age": int(a), "gender": str(g), "occupation": str(o)}
                for u, a, g, o in zip(users["user_id"], users["age"], users["gender"], users["occupation"])}
    events, feedback = logged_events(ratings, profiles)
    batches = [json.dumps(events[i:i + 512]).encode() for i in range(0, len(events), 512)]
    labels = [json.dumps(feedback[i // 2:(i + 512) // 2]).encode() for i in range(0, len(events), 512)]
    detector = DriftDetector(monitor, label_wait=60)
    headers = {"content-type": "application/cloudevents-batch+json"}
    feedback_headers = {"content-type": "application/json"}
    from reelops.deploy.feedback import parse_feedback

    began = time.perf_counter()
    for batch, label in zip(batches, labels):
        detector.take(headers, batch)
        detector.take_feedback(parse_feedback(label, feedback_headers))
        while not detector.pending.empty():
            detector.judge(detector.pending.get())
    seconds = time.perf_counter() - began
    pairs = len(ratings)
    print(f"in-process: {pairs:,} request/response pairs with their feedback, {detector.judged} windows judged, in "
          f"{seconds:.2f} s: {pairs / seconds:,.0f} pairs/s (goal >= 10,000): "
          f"{'met' if pairs / seconds >= 10_000 else 'NOT met'}")


# ---------------------------------------------------------------------- retraining once


def retrain_once(scratch: Path, workspace: Path, args) -> None:
    import httpx

    from benchmarks.serving import free_port
    from reelops import registry
    from reelops.simulate import World, simulate
    from reelops.simulate.traffic import TrafficReplay

    version, _ = train_version(scratch, workspace, 3, "population_shift")
    full = scratch / "world-population_shift-3"
    simulate("population_shift", seed=3, out=full)
    world = World.from_directory(full)
    command = f"{sys.executable} -m reelops.cli pipeline run training --param source={full} --json"
    status = deploy_alone(workspace, version, "--detector", "--label-wait", "2", "--retrain-command", command)
    url = status["url"]
    second_port = free_port()
    log = open(scratch / "second-detector.log", "ab")
    second = subprocess.Popen([sys.executable, "-m", "reelops.cli", "detector", "serve", "--model-version", version,
                               "--port", str(second_port), "--label-wait", "2", "--retrain-command", command],
                              stdout=log, stderr=subprocess.STDOUT, cwd=workspace, start_new_session=True,
                              env={**os.environ, "REELOPS_WORKSPACE": str(workspace)})
    second_url = f"http://127.0.0.1:{second_port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{second_url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    # The second detector (a replica's) is sent the same interactions the router logs to the first.
    ratings = world.generate()["ratings"].sort_values(["timestamp", "user_id", "movie_id"], kind="stable")
    onset = int((ratings["timestamp"] < world.onset).sum())
    from reelops.simulate.traffic import logged_events

    events, feedback = logged_events(ratings.iloc[onset:onset + 5000], {
        int(u): {"age": int(a), "gender": str(g), "occupation": str(o)} for u, a, g, o in
        zip(*(world.users_frame()[c] for c in ("user_id", "age", "gender", "occupation")))})
    feeder = threading.Thread(target=_post, args=(second_url, events, feedback))
    feeder.start()
    stats = TrafficReplay(url, world, rate=args.rate, start=int(world.onset), seed=3, feedback_delay=0.3,
                          mode="ratings").run(5000)
    feeder.join()
    first = wait_judged(status["revisions"][0]["detector"]["url"], 5)
    other = wait_judged(second_url, 5)
    print("waiting for the retraining run to finish ...", flush=True)
    deadline = time.monotonic() + 900
    os.environ["REELOPS_WORKSPACE"] = str(workspace)
    while time.monotonic() < deadline:
        triggers = registry.retrain_triggers()
        if triggers and all("exit_code" in t for t in triggers):
            break
        time.sleep(5)
    triggers = registry.retrain_triggers()
    outcomes = registry.pipeline_outcomes("reelops-training")
    second.terminate()
    reelops(workspace, "deploy", "stop")
    for name, state in (("plane's detector", first), ("second detector", other)):
        retrain = state["retrain"]
        print(f"{name}: {state['windows_judged']} windows, decision: "
              f"{'retrain' if retrain else 'keep'}; trigger: {(retrain or {}).get('trigger')}; "
              f"latest reasons: {state['decision']['reasons']}")
    print(f"replayed {len(stats.records):,} requests ({len(stats.failures())} failed); retraining runs claimed: "
          f"{len(triggers)} ({[{k: t.get(k) for k in ('claim', 'exit_code', 'run_id')} for t in triggers]}); "
          f"training pipeline runs recorded: {len(outcomes)} "
          f"({', '.join(o['state'] for o in outcomes)}): {'met' if len(triggers) == 1 == len(outcomes) else 'NOT met'}")


def _post(url: str, events: list, feedback: list) -> None:
    import httpx

    with httpx.Client(timeout=30) as client:
        for start in range(0, len(events), 512):
            client.post(url, headers={"content-type": "application/cloudevents-batch+json"},
                        content=json.dumps(events[start:start + 512]))
            client.post(f"{url}/v1/feedback", json=feedback[start // 2:(start + 512) // 2])
            time.sleep(512 / 2 / 200)  # about the replay's pace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second of the replays")
    parser.add_argument("--max-seconds", type=int, default=20, help="seconds of the maximum-rate run")
    parser.add_argument("--cell-seconds", type=float, default=15.0, help="seconds per p50 cell")
    parser.add_argument("--repeats", type=int, default=2, help="p50 cells per block")
    parser.add_argument("--only", choices=["detection", "capacity", "retrain"], default=None)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="reelops-bench-detector-"))
    workspace = scratch / "workspace"
    workspace.mkdir()
    try:
        if args.only in (None, "capacity"):
            capacity(scratch, workspace, args)
        if args.only in (None, "retrain"):
            retrain_once(scratch, workspace, args)
        if args.only in (None, "detection"):
            detection(scratch, workspace, args)
    finally:
        reelops(workspace, "deploy", "stop", check=False)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
