"""Overhead of running the training pipeline through kfp.local, against the same library
calls made directly in one process, in one run.

Both sides train the TensorFlow model on ml-100k (held-out split), evaluate it, gate it
and register it, each in its own fresh workspace. The pipeline side pays for one process
per task (interpreter start, imports, KFP executor); the direct side imports once.
Goals: at most 2 s of overhead per task on average, under 90 s in total on 2 cores.

    .venv/bin/python benchmarks/pipeline_overhead.py
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ML100K = ROOT.parent / "shared" / "data" / "ml-100k"


def direct(source: str, scratch: Path) -> float:
    """The same steps as the pipeline's tasks, as plain calls in this process."""
    from reelops import steps

    started = time.perf_counter()
    steps.ingest_raw(source, str(scratch / "raw"))
    steps.validate_raw(str(scratch / "raw"), str(scratch / "dataset"), 0.01, source=source)
    steps.engineer_features(str(scratch / "dataset"), str(scratch / "features"))
    steps.train_model(str(scratch / "dataset"), str(scratch / "model"), "tensorflow", "user-time-20",
                      features_dir=str(scratch / "features"))
    steps.evaluate_model(str(scratch / "model"), str(scratch / "dataset"), str(scratch / "report.html"))
    decision = steps.gate_model(str(scratch / "model"), str(scratch / "dataset"), str(scratch / "candidate"))
    if decision["decision"] == "blessed":
        steps.register_model(str(scratch / "candidate"), "direct", "direct")
    steps.record_outcome("direct", "SUCCEEDED", "direct")
    return time.perf_counter() - started


def main() -> None:
    if not (ML100K / "u.data").is_file():
        sys.exit(f"benchmarks/pipeline_overhead.py: ml-100k not found at {ML100K}")
    from reelops.console import print_table
    from reelops.pipelines import run_local

    scratch = Path(tempfile.mkdtemp(prefix="reelops-bench-pipeline-"))
    try:
        os.environ["REELOPS_WORKSPACE"] = str(scratch / "pipeline-workspace")
        started = time.perf_counter()
        run_local("training", {"source": str(ML100K), "algorithm": "tensorflow"})
        pipeline_seconds = time.perf_counter() - started
        runs = sorted((scratch / "pipeline-workspace" / "pipelines" / "runs").glob("reelops-training-*"))
        tasks = [p.name for p in runs[-1].iterdir() if p.is_dir()]

        os.environ["REELOPS_WORKSPACE"] = str(scratch / "direct-workspace")
        os.environ.pop("REELOPS_LOCAL_MLFLOW_URI", None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        direct_seconds = direct(str(ML100K), scratch / "direct")
        overhead = (pipeline_seconds - direct_seconds) / len(tasks)
        print_table([["kfp.local pipeline", len(tasks), pipeline_seconds], ["direct calls, one process", len(tasks), direct_seconds]],
                    ["run", "tasks", "seconds"], title="benchmarks/pipeline_overhead.py: training pipeline, TensorFlow model, ml-100k")
        print(f"\noverhead per task: {overhead:.2f} s (goal <= 2 s): {'met' if overhead <= 2 else 'NOT met'}; "
              f"pipeline total {pipeline_seconds:.1f} s (goal < 90 s): {'met' if pipeline_seconds < 90 else 'NOT met'}; "
              f"ratio {pipeline_seconds / direct_seconds:.2f}x")
        print("tasks: " + ", ".join(sorted(tasks)))
        print(json.dumps({"pipeline_seconds": pipeline_seconds, "direct_seconds": direct_seconds, "tasks": len(tasks)}))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
