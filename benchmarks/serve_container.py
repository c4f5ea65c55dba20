"""Start-up of the `serve` image with an ml-100k model, against the same server started natively.

Trains the default model on ml-100k (time-ordered holdout), then starts the predictor three
times as a container of the built `serve` image (the model folder mounted read-only) and
three times as a plain `reelops serve` process, each until `/v1/models/...` answers 200.
Goal: the container ready within 10 s of its start. Needs `make image` (podman as root, or
a Docker engine) and ../shared/data/ml-100k.

    .venv/bin/python benchmarks/serve_container.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ML100K = ROOT.parent / "shared" / "data" / "ml-100k"
REPEATS = 3


def _ready_seconds(start, stop) -> float:
    """Seconds from ``start()`` until the predictor answers, then ``stop()``."""
    from reelops.serving.client import wait_until_ready
    from tests.servers import free_port

    port = free_port()
    began = time.perf_counter()
    handle = start(port)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout=300)
        return time.perf_counter() - began
    finally:
        stop(handle)


def main() -> None:
    from containers.engine import IMAGES_FILE, engine_environment, pick_engine
    from reelops.console import print_table

    if not (ML100K / "u.data").is_file():
        sys.exit(f"benchmarks/serve_container.py: ml-100k not found at {ML100K}")
    engine = pick_engine()
    if engine is None or not IMAGES_FILE.is_file():
        sys.exit("benchmarks/serve_container.py: needs a container engine and the built images (make image)")
    image = json.loads(IMAGES_FILE.read_text())["serve"]["name"]
    env = engine_environment(engine)
    with tempfile.TemporaryDirectory(prefix="reelops-bench-serve-") as scratch:
        os.environ["REELOPS_WORKSPACE"] = str(Path(scratch) / "workspace")
        from reelops.data import ingest
        from reelops.training import train

        model_dir = Path(scratch) / "model"
        train(ingest(ML100K).path, model_dir, "hybrid")
        os.chmod(scratch, 0o755)

        def container(port):
            name = f"reelops-bench-{port}"
            subprocess.run([engine, "run", "-d", "--name", name, "--network", "host", "-v", f"{model_dir}:/model:ro",
                            image, "reelops", "serve", "--model-dir", "/model", "--allow-unblessed", "--no-grpc",
                            "--port", str(port)], env=env, check=True, capture_output=True)
            return name

        def native(port):
            return subprocess.Popen([sys.executable, "-m", "reelops.cli", "serve", "--model-dir", str(model_dir),
                                     "--allow-unblessed", "--no-grpc", "--port", str(port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop_container(name):
            subprocess.run([engine, "rm", "-f", name], env=env, capture_output=True)

        def stop_native(process):
            process.terminate()
            process.wait(timeout=30)

        # Alternating, so both sides see the same machine state.
        times = {"container": [], "native": []}
        for _ in range(REPEATS):
            times["container"].append(_ready_seconds(container, stop_container))
            times["native"].append(_ready_seconds(native, stop_native))
    rows = [[side, REPEATS, f"{statistics.median(values):.2f}", f"{max(values):.2f}"] for side, values in times.items()]
    print_table(rows, ["predictor", "starts", "median s to ready", "max s"],
                title=f"benchmarks/serve_container.py: {image} ({engine}) with a hybrid model of ml-100k")
    slowest = max(times["container"])
    ratio = statistics.median(times["container"]) / statistics.median(times["native"])
    print(f"\ncontainer ready within {slowest:.1f} s at the slowest (goal <= 10 s): {'met' if slowest <= 10 else 'NOT met'}; "
          f"container / native median: {ratio:.2f}x")


if __name__ == "__main__":
    main()
