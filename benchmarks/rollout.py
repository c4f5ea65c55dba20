"""The local serving plane's router: what it costs against calling a predictor directly, one run.

One model (the default algorithm, trained on ml-100k, top-10 of 1,682 movies per request)
is registered and deployed with ``reelops deploy`` on a scratch workspace: one predictor
process and the router in front of it, as a user runs them. wrk (Debian's package;
installed here if missing) loads the router and the predictor directly, one user per
request, at concurrency 16 and 1; the cells are interleaved and repeated, and each ratio is
the median over repeats of the ratio within one repeat (runs seconds apart, so the VM's
drifting speed lands on both sides).
Goals on 2 cores: through the router, throughput >= 0.9x the direct predictor's at
concurrency 16, and at most 0.5 ms added to the p50 latency at concurrency 1.

    .venv/bin/python benchmarks/rollout.py [--duration 3] [--repeats 7]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.serving import LUA, ML100K, ensure_wrk, free_port, load, load_arguments  # noqa: E402


def reelops(workspace: Path, *args) -> str:
    done = subprocess.run([sys.executable, "-m", "reelops.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "REELOPS_WORKSPACE": str(workspace)})
    if done.returncode != 0:
        sys.exit(f"benchmarks/rollout.py: reelops {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def main() -> None:
    args = load_arguments(__doc__, "rollout.py")
    from reelops.console import print_table
    from reelops.data import ingest
    from reelops.serving.client import wait_until_ready
    from reelops.training import train

    wrk = ensure_wrk()
    scratch = Path(tempfile.mkdtemp(prefix="reelops-bench-rollout-"))
    workspace = scratch / "workspace"
    script = scratch / "post.lua"
    script.write_text(LUA)
    proxy = None
    try:
        version = ingest(ML100K, store=scratch / "datasets").version
        train(scratch / "datasets" / version, scratch / "model", holdout="none")
        registered = json.loads(reelops(workspace, "registry", "register", str(scratch / "model"), "--json"))
        # Not gated here (the gate needs a holdout): deployed under a recorded override.
        status = json.loads(reelops(workspace, "deploy", registered["version"], "--force", "--reason",
                                    "benchmark", "--json"))
        direct = f"http://127.0.0.1:{status['revisions'][0]['port']}"
        # For context, not a goal: a plain aiohttp reverse proxy (no routing, no ids, no metrics)
        # in front of the same predictor shows what one aiohttp hop costs on this machine now.
        proxy_port = free_port()
        proxy = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "_bare_servers.py"), "proxy",
                                  str(proxy_port), direct])
        urls = {"through the router": status["url"], "predictor directly": direct,
                "plain aiohttp proxy": f"http://127.0.0.1:{proxy_port}"}
        wait_until_ready(urls["plain aiohttp proxy"], timeout=60, process=proxy)
        for url in urls.values():
            load(wrk, url, 4, 2, script)  # warm-up
        cells = {name: {c: [] for c in (16, 1)} for name in urls}
        for repeat in range(args.repeats):
            order = list(urls) if repeat % 2 == 0 else list(urls)[::-1]
            for c in (16, 1):
                for name in order:
                    cells[name][c].append(load(wrk, urls[name], c, args.duration, script))
        router, direct, plain = cells["through the router"], cells["predictor directly"], cells["plain aiohttp proxy"]
        throughput = [r["rps"] / d["rps"] for r, d in zip(router[16], direct[16])]
        added = [r["p50"] - d["p50"] for r, d in zip(router[1], direct[1])]
        plain_added = [p["p50"] - d["p50"] for p, d in zip(plain[1], direct[1])]
        rows = [[name, c, float(np.median([run["rps"] for run in runs])), float(np.median([run["p50"] for run in runs])),
                 float(np.median([run["p99"] for run in runs])), sum(run["non_2xx"] for run in runs)]
                for name, by_c in cells.items() for c, runs in by_c.items()]
        print_table(rows, ["endpoint", "concurrency", "requests/s", "p50 ms", "p99 ms", "non-2xx"],
                    title=f"benchmarks/rollout.py: wrk, median of {args.repeats} interleaved runs of {args.duration} s "
                          "per cell, one user per request, top-10 of 1,682 movies")
        ratio, extra = float(np.median(throughput)), float(np.median(added))
        print(f"\nrouter / direct requests/s at concurrency 16: {ratio:.2f}x (goal >= 0.9x): "
              f"{'met' if ratio >= 0.9 else 'NOT met'} (per repeat: {', '.join(f'{x:.2f}' for x in throughput)})")
        print(f"p50 added by the router at concurrency 1: {extra:.2f} ms (goal <= 0.5 ms): "
              f"{'met' if extra <= 0.5 else 'NOT met'} (per repeat: {', '.join(f'{x:.2f}' for x in added)})")
        print(f"p50 added by a plain aiohttp proxy at concurrency 1, same run: {float(np.median(plain_added)):.2f} ms "
              f"(per repeat: {', '.join(f'{x:.2f}' for x in plain_added)})")
    finally:
        if proxy is not None and proxy.poll() is None:
            proxy.kill()
        subprocess.run([sys.executable, "-m", "reelops.cli", "deploy", "stop"], capture_output=True,
                       env={**os.environ, "REELOPS_WORKSPACE": str(workspace)})
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
