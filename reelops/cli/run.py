"""`reelops run`: the main job (`make run`)."""

from __future__ import annotations

import sys
from pathlib import Path

from reelops.cli.common import emit
from reelops.cli.pipelines import quiet_local_run


def add_commands(commands, with_json) -> None:
    """Add this group's commands to the ``reelops`` parser."""
    run = with_json(commands.add_parser("run", help="the main job (make run)"))
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--scenario", default="none")
    run.set_defaults(handler=cmd_run)


def cmd_run(args) -> None:
    """The main job: the training pipeline on a simulated world, batch scoring, a summary."""
    import pandas as pd

    from reelops import registry
    from reelops.services import training_run_summary
    from reelops.workspace import workspace_dir

    source = f"simulate:scenario={args.scenario},seed={args.seed}"
    if not args.json:
        print(f"training pipeline on {source} (kfp.local; task logs in {workspace_dir() / 'pipelines'})")
    training = quiet_local_run("training", {"source": source})
    versions = registry.list_versions()
    summary = {"training": training, **training_run_summary(training["run_dir"]),
               "registered": versions[0] if versions else None}
    if registry.PRODUCTION in registry.aliases():
        scoring = quiet_local_run("batch-scoring", {"alias": registry.PRODUCTION, "k": 10})
        predictions = Path(scoring["run_dir"]) / "batch-predict" / "predictions"
        table = pd.read_parquet(predictions)
        summary["batch_scoring"] = {"table": str(predictions), "rows": int(len(table)),
                                    "users": int(table["user_id"].nunique())}
        model, _ = registry.load_by_alias(registry.PRODUCTION)
        sample = table[table["user_id"].isin(table["user_id"].unique()[:3]) & (table["rank"] <= 5)]
        summary["sample"] = [{"user_id": int(u), "movies": [model.titles_.get(int(m), str(m)) for m in group["movie_id"]]}
                             for u, group in sample.groupby("user_id")]
        summary["serving"] = _serve_and_ask(table["user_id"].unique()[:3].tolist())
    emit(args, summary, _render_run)


def _serve_and_ask(user_ids: list) -> dict:
    """Serve the production model on a free loopback port, ask it over HTTP, stop it."""
    import socket
    import subprocess

    from reelops import registry
    from reelops.serving.client import recommend, wait_until_ready

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "reelops.cli", "serve", "--model-alias", registry.PRODUCTION,
                                "--port", str(port), "--no-grpc"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_ready(url, timeout=120, process=process)
        answers = recommend(url, user_ids, k=5)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    return {"url": url, "answers": answers}


def _render_run(summary: dict) -> None:
    dataset = summary["dataset"]
    if dataset.get("counts"):
        from reelops.console import print_table

        rows = [[file, c["read"], c["valid"], c["quarantined"]] for file, c in dataset["counts"].items()]
        print_table(rows, ["file", "read", "valid", "quarantined"], title=f"ingest: dataset {dataset['version']}")
        for warning in dataset.get("warnings") or []:
            print(f"warning: {warning}")
    gate = summary["gate"]
    print(f"gate: {str(gate.get('decision')).upper()}")
    for reason in gate.get("reasons") or []:
        print(f"  - {reason}")
    registered = summary["registered"]
    if registered:
        print(f"registered: movie-recommender version {registered['version']} "
              f"({', '.join(registered['aliases']) or 'no alias'}), dataset {registered['dataset_version']}, "
              f"commit {registered['git_commit'][:10]}")
    if "batch_scoring" in summary:
        scoring = summary["batch_scoring"]
        print(f"batch scoring: {scoring['rows']:,} recommendations for {scoring['users']:,} users -> {scoring['table']}")
        for entry in summary["sample"]:
            print(f"  user {entry['user_id']}: " + "; ".join(entry["movies"]))
    if "serving" in summary:
        serving = summary["serving"]
        print(f"served the production model at {serving['url']} (KServe, stopped again); answers over HTTP:")
        for answer in serving["answers"]:
            print(f"  user {answer['user_id']} (version {answer['model_version']}, {answer['path']}): "
                  + "; ".join(answer["titles"]))
