"""Serving throughput and latency: the reelops predictor against two ceilings, one run.

Three servers on loopback: the reelops predictor (the default algorithm trained on
ml-100k, top-10 over all 1,682 movies for one user per request), a bare kserve.Model that
returns a constant (the framework's ceiling) and a bare Starlette/uvicorn JSON endpoint
(Python's HTTP ceiling). Load: wrk (Debian's package; installed here if missing) for a
bounded duration at concurrency 1, 4 and 16, one user per request drawn at random; the
cells are interleaved across the servers and repeated; ratios are medians of the ratios
within a repeat. Then
the server time of a 100-user request, read from KServe's ``request_predict_seconds``.
Goals on 2 cores: predictor >= 0.7x the bare kserve.Model's requests/s at concurrency 16;
p99 <= 20 ms at concurrency 4; a 100-user request <= 10 ms of server time.

    .venv/bin/python benchmarks/serving.py [--duration 3] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ML100K = ROOT.parent / "shared" / "data" / "ml-100k"
CONCURRENCY = (1, 4, 16)

LUA = """
math.randomseed(7)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, nil, nil, '{"instances": [{"user_id": ' .. math.random(1, 943) .. ', "k": 10}]}')
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_wrk() -> str:
    if shutil.which("wrk"):
        return shutil.which("wrk")
    subprocess.run(["apt-get", "update"], check=False, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk")


def load(wrk: str, url: str, connections: int, duration: int, script: Path) -> dict:
    out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
                          f"{url}/v1/models/movie-recommender:predict"], capture_output=True, text=True, check=True).stdout

    def latency(label):
        value, unit = re.search(rf"\s{label}\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": latency("50%"),
            "p99": latency("99%"), "non_2xx": int(errors.group(1)) if errors else 0}


def predict_seconds(url: str) -> tuple:
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=5).text
    total = sum(float(v) for v in re.findall(r'request_predict_seconds_sum\{[^}]*\} ([\d.e+-]+)', text))
    count = sum(float(v) for v in re.findall(r'request_predict_seconds_count\{[^}]*\} ([\d.e+-]+)', text))
    return total, count


def load_arguments(doc: str, script: str) -> argparse.Namespace:
    """``--duration`` and ``--repeats`` of a wrk benchmark; exits when ml-100k is missing."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds of load per run")
    parser.add_argument("--repeats", type=int, default=7, help="runs of each cell (medians are printed)")
    args = parser.parse_args()
    if not (ML100K / "u.data").is_file():
        sys.exit(f"benchmarks/{script}: ml-100k not found at {ML100K}")
    return args


def main() -> None:
    args = load_arguments(__doc__, "serving.py")
    import httpx

    from reelops.console import print_table
    from reelops.data import ingest
    from reelops.training import train
    from reelops.serving.client import wait_until_ready

    wrk = ensure_wrk()
    scratch = Path(tempfile.mkdtemp(prefix="reelops-bench-serving-"))
    script = scratch / "post.lua"
    script.write_text(LUA)
    processes = []
    try:
        os.environ["REELOPS_WORKSPACE"] = str(scratch / "workspace")
        version = ingest(ML100K, store=scratch / "datasets").version
        train(scratch / "datasets" / version, scratch / "model", holdout="none")
        ports = {name: free_port() for name in ("reelops predictor", "bare kserve.Model", "bare Starlette")}
        commands = {
            "reelops predictor": [sys.executable, "-m", "reelops.cli", "serve", "--model-dir", str(scratch / "model"),
                                  "--allow-unblessed", "--port", str(ports["reelops predictor"]), "--no-grpc"],
            "bare kserve.Model": [sys.executable, str(ROOT / "benchmarks" / "_bare_servers.py"), "kserve",
                                  str(ports["bare kserve.Model"])],
            "bare Starlette": [sys.executable, str(ROOT / "benchmarks" / "_bare_servers.py"), "starlette",
                               str(ports["bare Starlette"])],
        }
        # All three servers run side by side (an idle server costs nothing) and the cells
        # are interleaved and repeated: this VM's speed drifts by tens of percent within a
        # minute, which would otherwise land on whichever server happened to run then. A
        # ratio is the median over repeats of the ratio within one repeat (runs seconds
        # apart), the other columns the median of the runs.
        urls = {name: f"http://127.0.0.1:{ports[name]}" for name in commands}
        for name, command in commands.items():
            processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_until_ready(urls[name], timeout=120, process=processes[-1])
            load(wrk, urls[name], 4, 2, script)  # warm-up
        cells = {name: {c: [] for c in CONCURRENCY} for name in commands}
        for repeat in range(args.repeats):
            # Every other repeat runs the servers in reverse order, so a drift of the VM's
            # speed within a repeat does not always favour the same server.
            order = list(commands) if repeat % 2 == 0 else list(commands)[::-1]
            for c in CONCURRENCY:
                for name in order:
                    cells[name][c].append(load(wrk, urls[name], c, args.duration, script))
        results = {name: {c: {key: float(np.median([run[key] for run in runs])) for key in runs[0]}
                          for c, runs in by_c.items()} for name, by_c in cells.items()}
        url = urls["reelops predictor"]
        body = {"instances": [{"user_id": u, "k": 10} for u in range(1, 101)]}
        before = predict_seconds(url)
        for _ in range(50):
            assert httpx.post(f"{url}/v1/models/movie-recommender:predict", json=body, timeout=30).status_code == 200
        after = predict_seconds(url)
        hundred_ms = (after[0] - before[0]) / (after[1] - before[1]) * 1000

        def paired(name, baseline, c):
            return [run["rps"] / base["rps"] for run, base in zip(cells[name][c], cells[baseline][c])]

        rows = []
        for name, by_c in results.items():
            for c, r in by_c.items():
                rows.append([name, c, r["rps"], r["p50"], r["p99"], r["non_2xx"],
                             float(np.median(paired(name, "bare kserve.Model", c))),
                             float(np.median(paired(name, "bare Starlette", c)))])
        print_table(rows, ["server", "concurrency", "requests/s", "p50 ms", "p99 ms", "non-2xx", "x kserve", "x starlette"],
                    title=f"benchmarks/serving.py: wrk, median of {args.repeats} interleaved runs of {args.duration} s per cell, "
                          "one user per request, top-10 of 1,682 movies")
        ratios = paired("reelops predictor", "bare kserve.Model", 16)
        ratio = float(np.median(ratios))
        p99 = results["reelops predictor"][4]["p99"]
        print(f"\nload tool: {subprocess.run([wrk, '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")
        print(f"predictor / bare kserve.Model at concurrency 16: {ratio:.2f}x (goal >= 0.7x): {'met' if ratio >= 0.7 else 'NOT met'}"
              f" (per repeat: {', '.join(f'{x:.2f}' for x in ratios)})")
        print(f"predictor p99 at concurrency 4: {p99:.1f} ms (goal <= 20 ms): {'met' if p99 <= 20 else 'NOT met'}")
        print(f"100-user request, server time (request_predict_seconds): {hundred_ms:.1f} ms (goal <= 10 ms): "
              f"{'met' if hundred_ms <= 10 else 'NOT met'}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
