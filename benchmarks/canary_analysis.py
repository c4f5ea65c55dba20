"""Automatic canary analysis on the local plane: a bad canary rolled back, a good one promoted.

A simulated world (scenario ``none``) gives the models and the traffic: v1 (the default
algorithm) is trained on the ratings of the first 40% of the timeline, v2 (the same algorithm)
on the first 50% ("retrained on more data"), both gated; v3 scores at random and is deployed
with the gate's explicit override (``--force --reason``, recorded). Each seeded run starts
from v1 serving all traffic, replays the world's users from its onset at a steady rate with the
oracle's ratings as delayed feedback (:mod:`reelops.simulate.traffic`), and deploys the
candidate as a canary with ``--analysis auto``, every command in its own process as a user
runs it. The seed draws the users and the movies they watch, and the router's split.

Goals (issue 25): the bad canary rolled back before 2,000 requests reached it in at least 9
of 10 runs, with zero failed requests; the good one promoted within the maximum in at least 9
of 10; both decisions with their evidence in the registry history.

    .venv/bin/python benchmarks/canary_analysis.py [--runs 10] [--rate 200] [--percent 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def reelops(workspace: Path, *args, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "reelops.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "REELOPS_WORKSPACE": str(workspace)}, cwd=workspace)
    if check and done.returncode != 0:
        sys.exit(f"benchmarks/canary_analysis.py: reelops {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def prepare(scratch: Path, workspace: Path, seed: int) -> dict:
    """The world, three registered versions; returns their numbers and the world folder."""
    from reelops.data import ingest
    from reelops.simulate import simulate
    from reelops.training import train

    world = scratch / "world"
    simulate("none", seed=seed, out=world)
    versions = {}
    for name, until, algorithm in (("v1", 0.4, "hybrid"), ("v2", 0.5, "hybrid"), ("random", 0.5, "random")):
        folder = scratch / f"world-{name}"
        simulate("none", seed=seed, out=folder, until=until)
        data = scratch / "datasets" / ingest(folder, store=scratch / "datasets").version
        train(data, scratch / name, algorithm=algorithm)
        if name != "random":
            reelops(workspace, "gate", "--model-dir", str(scratch / name), "--data", str(data))
        registered = json.loads(reelops(workspace, "registry", "register", str(scratch / name), "--json").stdout)
        versions[name] = registered["version"]
    return {"world": world, **versions}


def one_run(workspace: Path, setup: dict, candidate: str, seed: int, rate: float, percent: int, rules: list) -> dict:
    """v1 alone, then ``candidate`` as an automatically analysed canary under steady traffic."""
    from reelops.simulate import World
    from reelops.simulate.traffic import TrafficReplay

    reelops(workspace, "deploy", "stop")
    aliases = json.loads(reelops(workspace, "registry", "list", "--json").stdout)
    production = next((v["version"] for v in aliases["versions"] if "production" in v["aliases"]), None)
    if production != setup["v1"]:
        reelops(workspace, "registry", "promote", setup["v1"], "--reason", "benchmark: start from v1")
    status = json.loads(reelops(workspace, "deploy", setup["v1"], "--json").stdout)
    replay = TrafficReplay(status["url"], World.from_directory(setup["world"]), rate=rate, seed=seed).start_background()
    time.sleep(2.0)  # the stable revision's latency and feedback before the canary arrives
    args = ["deploy", setup[candidate], "--strategy", "canary", "--percent", str(percent), "--json",
            *[item for rule in rules for item in ("--rule", rule)]]
    if candidate == "random":
        args += ["--force", "--reason", "benchmark: a deliberately bad model"]
    began = time.monotonic()
    done = reelops(workspace, *args, check=False)
    seconds = time.monotonic() - began
    stats = replay.stop()
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-300:]}
    result = json.loads(done.stdout)
    analysis = result["analysis"]
    reached = sum(1 for r in stats.records if r[3] == analysis["canary"])
    history = json.loads(reelops(workspace, "registry", "history", "--json").stdout)["history"]
    recorded = any(entry.get("analysis", {}).get("version") == setup[candidate]
                   and entry["analysis"].get("decision") == analysis["decision"] for entry in history)
    return {"decision": analysis["decision"], "reached": reached, "failed": len(stats.failures()),
            "requests": len(stats.records), "seconds": seconds, "recorded": recorded, "reason": analysis["reason"],
            "comparisons": analysis["comparisons"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (steady)")
    parser.add_argument("--percent", type=int, default=20, help="the canary's share of traffic")
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--rule", action="append", default=[], help="an analysis rule, key=value (see reelops deploy)")
    parser.add_argument("--only", choices=["random", "v2"], default=None, help="run one case only")
    args = parser.parse_args()
    from reelops.console import print_table

    scratch = Path(tempfile.mkdtemp(prefix="reelops-bench-canary-"))
    workspace = scratch / "workspace"
    workspace.mkdir()
    try:
        setup = prepare(scratch, workspace, args.world_seed)
        rows, outcomes = [], {"random": [], "v2": []}
        for seed in range(args.runs):
            for candidate in [args.only] if args.only else ("random", "v2"):
                outcome = one_run(workspace, setup, candidate, seed, args.rate, args.percent, args.rule)
                outcomes[candidate].append(outcome)
                rows.append([seed, "bad (random scores)" if candidate == "random" else "good (more data)",
                             outcome.get("decision", "error"), outcome.get("reached", "-"), outcome.get("failed", "-"),
                             f"{outcome['seconds']:.0f}" if "seconds" in outcome else "-",
                             "yes" if outcome.get("recorded") else "no",
                             (outcome.get("reason") or outcome.get("error", ""))[:70]])
                print(f"run {seed} {candidate}: {outcome}", file=sys.stderr, flush=True)
        print_table(rows, ["seed", "canary", "decision", "requests to canary", "failed", "seconds", "in history",
                           "reason"],
                    title=f"benchmarks/canary_analysis.py: {args.runs} seeded runs, {args.rate:g} requests/s, canary "
                          f"{args.percent}%, rules {args.rule or 'default'}")
        bad, good = outcomes["random"], outcomes["v2"]
        caught = sum(1 for o in bad if o.get("decision") == "rollback" and o["reached"] < 2000 and o["failed"] == 0)
        promoted = sum(1 for o in good if o.get("decision") == "promote")
        recorded = sum(1 for o in bad + good if o.get("recorded"))
        failed = sum(o.get("failed", 0) for o in bad + good)
        print(f"\nbad canary rolled back before 2,000 of its requests with no failed request: {caught}/{len(bad)} "
              f"(goal >= 9/10): {'met' if caught >= 0.9 * len(bad) else 'NOT met'}")
        print(f"good canary promoted: {promoted}/{len(good)} (goal >= 9/10): "
              f"{'met' if promoted >= 0.9 * len(good) else 'NOT met'}")
        print(f"decisions with their evidence in the registry history: {recorded}/{len(bad) + len(good)}; "
              f"failed requests over all runs: {failed}")
    finally:
        reelops(workspace, "deploy", "stop", check=False)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
