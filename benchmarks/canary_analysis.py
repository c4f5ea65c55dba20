"""Automatic canary analysis on the local plane: a bad canary rolled back, a good one promoted.

A simulated world (scenario ``none``) gives the models and the traffic: v1 (the default
algorithm) is trained on the ratings of the first 40% of the timeline, v2 (the same algorithm)
on the first 50% ("retrained on more data"), both gated; v3 scores at random and is deployed
with the gate's explicit override (``--force --reason``, recorded). Each seeded run starts
from v1 serving all traffic, replays the world's users from its onset at a steady rate with the
oracle's ratings as delayed feedback (:mod:`reelops.simulate.traffic`), and deploys the
candidate as a canary with ``--analysis auto``, every command in its own process as a user
runs it. The seed draws the users and the movies they watch, and the router's split.

Then the shadow: the serving path's maximum request rate is measured with wrk (concurrency 16,
through the router), and callers' p50 latency at a steady 30% of it is measured with the
shadow off and on, interleaved (off, on, off, on, ...), the serving model as its own shadow
and then the random-scores model as the shadow.

Goals (issue 25): the bad canary rolled back before 2,000 requests reached it in at least 9
of 10 runs, with zero failed requests; the good one promoted within the maximum in at least 9
of 10; both decisions with their evidence in the registry history; shadow on, callers' p50
within 10% of shadow off; agreement@10 1.0 for the same model, below 0.5 for random scores.

    .venv/bin/python benchmarks/canary_analysis.py [--runs 10] [--rate 200] [--percent 20] [--only random|v2|shadow]
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


def shadow_part(workspace: Path, setup: dict, args) -> None:
    """Callers' p50 with the shadow off and on at 30% of the maximum rate; the shadow's agreement."""
    import numpy as np

    from benchmarks.serving import LUA, ensure_wrk, load
    from reelops.console import print_table
    from reelops.simulate import World
    from reelops.simulate.traffic import TrafficReplay

    reelops(workspace, "deploy", "stop")
    production = json.loads(reelops(workspace, "registry", "list", "--json").stdout)
    if not any("production" in v["aliases"] and v["version"] == setup["v1"] for v in production["versions"]):
        reelops(workspace, "registry", "promote", setup["v1"], "--reason", "benchmark: shadow part")
    url = json.loads(reelops(workspace, "deploy", setup["v1"], "--json").stdout)["url"]
    script = workspace / "post.lua"
    script.write_text(LUA)
    wrk = ensure_wrk()
    load(wrk, url, 4, 2, script)  # warm-up
    maximum = float(np.median([load(wrk, url, 16, 3, script)["rps"] for _ in range(3)]))
    rate = 0.3 * maximum
    world = World.from_directory(setup["world"])
    rows, ratios, agreements = [], {}, {}
    for shadow in (setup["v1"], setup["random"]):
        p50 = {"off": [], "on": []}
        for repeat in range(args.shadow_repeats):
            for state in ("off", "on"):
                if state == "on":
                    reelops(workspace, "deploy", shadow, "--strategy", "shadow")
                stats = TrafficReplay(url, world, rate=rate, seed=100 + repeat, feedback=False).run(
                    int(rate * args.shadow_seconds))
                p50[state].append(float(np.median([r[1] for r in stats.records])) * 1000)
                if state == "on":
                    report = json.loads(reelops(workspace, "deploy", "status", "--json").stdout)["shadow"]["report"]
                    reelops(workspace, "deploy", "stop-shadow")
                    windows = report["windows"] or [report["current"]]
                    agreements.setdefault(shadow, []).append(float(np.mean([w["agreement"] for w in windows])))
                    dropped = sum(report["dropped"].values()) + sum(report["shadow_errors"].values())
                    rows.append([shadow, repeat, f"{p50['off'][-1]:.2f}", f"{p50['on'][-1]:.2f}",
                                 f"{p50['on'][-1] / p50['off'][-1]:.3f}", report["compared"], dropped,
                                 f"{agreements[shadow][-1]:.3f}", len(stats.failures())])
        ratios[shadow] = float(np.median([on / off for on, off in zip(p50["on"], p50["off"])]))
    print_table(rows, ["shadow version", "repeat", "p50 off ms", "p50 on ms", "on/off", "compared", "dropped+errors",
                       "agreement@10", "failed"],
                title=f"shadow: callers' p50 at {rate:.0f} requests/s (30% of the measured maximum {maximum:.0f}/s), "
                      f"{args.shadow_seconds:g} s per cell, off/on interleaved; primary version {setup['v1']}")
    for shadow, ratio in ratios.items():
        what = "same model" if shadow == setup["v1"] else "random scores"
        print(f"shadow {what}: p50 on/off {ratio:.3f} (goal <= 1.10): {'met' if ratio <= 1.10 else 'NOT met'}; "
              f"agreement@10 {np.mean(agreements[shadow]):.3f} (goal {'1.0' if what == 'same model' else '< 0.5'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (steady)")
    parser.add_argument("--percent", type=int, default=20, help="the canary's share of traffic")
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--rule", action="append", default=[], help="an analysis rule, key=value (see reelops deploy)")
    parser.add_argument("--only", choices=["random", "v2", "shadow"], default=None, help="run one part only")
    parser.add_argument("--shadow-seconds", type=float, default=15.0, help="seconds per shadow on/off cell")
    parser.add_argument("--shadow-repeats", type=int, default=3, help="on/off pairs per shadow model")
    args = parser.parse_args()
    from reelops.console import print_table

    scratch = Path(tempfile.mkdtemp(prefix="reelops-bench-canary-"))
    workspace = scratch / "workspace"
    workspace.mkdir()
    try:
        setup = prepare(scratch, workspace, args.world_seed)
        if args.only == "shadow":
            shadow_part(workspace, setup, args)
            return
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
        if args.only is None:
            shadow_part(workspace, setup, args)
    finally:
        reelops(workspace, "deploy", "stop", check=False)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
