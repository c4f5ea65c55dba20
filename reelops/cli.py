"""The ``reelops`` command.

Every command that reports a result prints a readable summary, or exactly one JSON object
with ``--json`` (CI scripts read it); on failure it exits non-zero with a one-line reason.
Heavy libraries are imported inside the handlers that need them, so ``reelops --help``
and the data commands start quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from reelops import __version__


class CommandError(Exception):
    """A failure whose message is the one line the user sees."""


def _emit(args, result: dict, render) -> None:
    if getattr(args, "json", False):
        print(json.dumps(result, default=_json_default, sort_keys=True))
    else:
        render(result)


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---------------------------------------------------------------------------- data


def _source_size(source: str) -> int:
    path = Path(source)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size if path.is_file() else 0


@contextlib.contextmanager
def _stage_progress(args, source: str, stages: int):
    """Yield a stage callback drawing a progress bar for large inputs, or None for small ones."""
    from reelops.console import progress

    if args.json or _source_size(source) <= 20 * 1024 * 1024:
        yield None
        return
    with progress(stages, f"ingest {os.path.basename(source.rstrip('/'))}", unit="stage") as bar:

        def on_stage(name):
            bar.set_postfix_str(name)
            bar.update(1)

        yield on_stage


def _render_ingest(result: dict) -> None:
    from reelops.console import print_table

    rows = [[file, c["read"], c["valid"], c["quarantined"]] for file, c in result["counts"].items()]
    rows.append(["total", result["read"], result["valid"], result["quarantined"]])
    title = f"dataset {result.get('version', '(not written)')}  layout {result['layout']}"
    print_table(rows, ["file", "read", "valid", "quarantined"], title=title)
    if result.get("path"):
        state = "written" if result.get("created") else "already present (same content)"
        print(f"\nversion folder: {result['path']} ({state})")
        if result.get("store") and not result["store"].startswith("file://"):
            print(f"dataset store: {result['store']}")
        print(f"this run's report: {result['report']}")
        if len(result.get("sources") or []) > 1:
            print("sources of this version: " + ", ".join(result["sources"]))
    span = result.get("time_range") or {}
    if span.get("min_timestamp") is not None:
        import datetime as dt

        first = dt.datetime.fromtimestamp(span["min_timestamp"], dt.timezone.utc).date()
        last = dt.datetime.fromtimestamp(span["max_timestamp"], dt.timezone.utc).date()
        print(f"ratings from {first} to {last}")
    if result["quarantine_reasons"]:
        print("\nquarantined rows by reason:")
        for reason, count in result["quarantine_reasons"].items():
            print(f"  {count:>8,}  {reason}")
    for row in result.get("bad_rows", [])[:20]:
        print(f"  {row['file']}:{row['line']}: {row['reason']}")
    if len(result.get("bad_rows", [])) > 20:
        print(f"  ... and {len(result['bad_rows']) - 20} more (see quarantine.csv)")
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    for path in result.get("cleaned") or []:
        print(f"cleaned up: {path} (left by an ingest that did not finish)")


def cmd_data_ingest(args) -> None:
    from reelops.data import ingest

    with _stage_progress(args, args.source, 4) as on_stage:
        result = ingest(args.source, store=args.out, max_bad_share=args.max_bad_share, on_stage=on_stage,
                        max_bytes=args.max_input_bytes)
    summary = result.to_dict()
    summary["bad_rows"] = result.validated.quarantine.rows
    _emit(args, summary, _render_ingest)


def cmd_data_validate(args) -> None:
    from reelops.data import validate_source

    with _stage_progress(args, args.source, 3) as on_stage:
        validated = validate_source(args.source, max_bad_share=args.max_bad_share, on_stage=on_stage,
                                    max_bytes=args.max_input_bytes)
    summary = {
        "layout": validated.layout,
        "counts": validated.counts,
        "read": validated.total_read,
        "valid": validated.total_read - validated.total_quarantined,
        "quarantined": validated.total_quarantined,
        "quarantine_reasons": validated.quarantine.reasons(),
        "bad_rows": validated.quarantine.rows,
        "warnings": validated.warnings,
        "time_range": {
            "min_timestamp": int(validated.ratings["timestamp"].min()) if len(validated.ratings) else None,
            "max_timestamp": int(validated.ratings["timestamp"].max()) if len(validated.ratings) else None,
        },
    }
    _emit(args, summary, _render_ingest)


# ---------------------------------------------------------------------------- simulate


def _render_simulate(result: dict) -> None:
    from reelops.console import print_table

    counts = result["counts"]
    print(f"world {result['scenario']} (strength {result['strength']:g}, seed {result['seed']}) -> {result['out']}")
    print(f"{counts['ratings']:,} ratings, {counts['users']:,} users, {counts['movies']:,} movies")
    rows = [[event["name"], _date(event["onset_timestamp"]),
             ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in event["parameters"].items())]
            for event in result["events"]]
    if rows:
        print_table(rows, ["event", "onset", "parameters"])


def _date(timestamp: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _render_compare(result: dict) -> None:
    from reelops.console import print_table

    rows = [[row["statistic"], row["simulated"], row["real"], row["tolerance"], "ok" if row["ok"] else "FAIL"]
            for row in result["checks"]]
    print_table(rows, ["statistic", "simulated", "real", "tolerance", "check"],
                title=f"{result['simulated_dir']}  vs  {result['real_dir']}")
    print(f"\n{sum(r['ok'] for r in result['checks'])} of {len(result['checks'])} checks pass")


def cmd_simulate(args) -> None:
    from reelops import simulate

    if args.action:
        if args.action[0] != "compare" or len(args.action) != 3:
            raise CommandError("usage: reelops simulate compare SIM_DIR REAL_DIR")
        result = _compare(args.action[1], args.action[2])
        _emit(args, result, _render_compare)
        if not all(row["ok"] for row in result["checks"]):
            raise CommandError("the simulated world is outside the realism tolerances (see the table)")
        return
    if not args.out:
        raise CommandError("simulate needs --out DIR")
    result = simulate.simulate(args.scenario, seed=args.seed, out=args.out, strength=args.strength,
                               n_users=args.users, n_movies=args.movies, until=args.until)
    result["out"] = str(args.out)
    _emit(args, result, _render_simulate)


def _compare(sim_dir: str, real_dir: str) -> dict:
    from reelops.data import validate_source
    from reelops.simulate import compare_worlds, realism_stats

    stats = []
    for folder in (sim_dir, real_dir):
        data = validate_source(folder)
        stats.append(realism_stats(data.ratings, len(data.users) or None, len(data.movies)))
    checks = [
        {"statistic": name, "simulated": sim, "real": real, "tolerance": tolerance, "ok": bool(ok)}
        for name, sim, real, tolerance, ok in compare_worlds(stats[0], stats[1])
    ]
    return {"simulated_dir": sim_dir, "real_dir": real_dir, "simulated": stats[0], "real": stats[1], "checks": checks}


# ---------------------------------------------------------------------------- models


def cmd_train(args) -> None:
    import time

    from reelops.models import train
    from reelops.params import parse_key_values

    started = time.perf_counter()
    model = train(args.data, args.out, algorithm=args.algorithm, holdout=args.holdout,
                  parameters=parse_key_values(args.param), progress=not args.json)
    meta = model.metadata_
    result = {
        "model_dir": str(args.out), "algorithm": meta["algorithm"], "dataset_version": meta["dataset_version"],
        "holdout": meta["holdout"], "n_users": meta["n_users"], "n_movies": meta["n_movies"],
        "parameters": meta["parameters"], "git_commit": meta["git_commit"],
        "fit_seconds": round(time.perf_counter() - started, 2),
    }

    def render(result):
        print(f"trained {result['algorithm']} on {result['dataset_version']} in {result['fit_seconds']} s -> {result['model_dir']}")
        holdout = result["holdout"]
        print(f"holdout {holdout['kind']}: {holdout['train_rows']:,} training rows, {holdout['test_rows']:,} held out")

    _emit(args, result, render)


def cmd_evaluate(args) -> None:
    from reelops.data import load_dataset
    from reelops.evaluation import evaluate, evaluation_rows, write_reports
    from reelops.models import load_model

    model = load_model(args.model_dir)
    dataset = load_dataset(args.data)
    test, scored = evaluation_rows(model, dataset)
    report = evaluate(model, test, k=args.k, users=dataset["users"])
    report.update({"scored": scored, "model_dir": str(args.model_dir), "dataset_version": dataset["manifest"]["version"],
                   "algorithm": model.metadata_["algorithm"]})
    json_path, html_path = write_reports(report, args.report_dir or args.model_dir,
                                         title=f"{report['algorithm']} on {report['dataset_version']}")
    report["reports"] = {"json": str(json_path), "html": str(html_path)}

    def render(report):
        from reelops.console import print_table

        k = report["k"]
        rows = [[name, report[name]] for name in ("rmse", "mae", f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}",
                                                  "coverage", "mean_popularity")]
        print_table(rows, ["metric", "value"], title=f"{report['algorithm']} on {report['dataset_version']}: {report['scored']}")
        cold = report["slices"]["cold_users"]
        print(f"\ncold users ({cold['definition']}): {cold['rows']:,} ratings, RMSE {cold['rmse']:.4f}")
        print(f"reports: {report['reports']['html']}")

    _emit(args, {k: v for k, v in report.items() if k != "error_histogram"}, render)


# ---------------------------------------------------------------------------- gate and registry


def cmd_gate(args) -> None:
    from reelops.gate import Thresholds, run_gate

    thresholds = Thresholds(rmse_tolerance=args.rmse_tolerance, ndcg_relative_drop=args.ndcg_relative_drop,
                            cold_rmse_tolerance=args.cold_rmse_tolerance)
    blessing = run_gate(args.model_dir, args.data, thresholds, production_dir=args.production_dir)

    def render(blessing):
        from reelops.console import print_table

        metrics = blessing["metrics"]
        sides = list(metrics)
        rows = [[name] + [metrics[side][name] for side in sides] for name in ("rmse", "ndcg@10", "cold_rmse", "mae")]
        against = blessing["compared_with"]
        print_table(rows, ["metric"] + sides,
                    title=f"gate: {blessing['decision'].upper()} (compared with {against['kind']}"
                          f"{' version ' + str(against['version']) if against['version'] else ''}, "
                          f"{blessing['evaluated_rows']:,} held-out ratings)")
        for reason in blessing["reasons"]:
            print(f"  - {reason}")
        print(f"written: {args.model_dir}/blessing.json")

    _emit(args, blessing, render)


def _render_versions(rows: list) -> None:
    from reelops.console import print_table

    if not rows:
        print("no versions registered")
        return
    print_table([[r["version"], ", ".join(r["aliases"]) or "-", r["algorithm"], r["dataset_version"],
                  r["git_commit"][:10], r["gate_decision"], r["created"]] for r in rows],
                ["version", "aliases", "algorithm", "dataset", "commit", "gate", "created"],
                title="registered model movie-recommender")


def cmd_registry(args) -> None:
    from reelops import registry

    action = args.registry_command
    if action == "register":
        result = registry.register(args.model_dir, reason=args.reason)
        _emit(args, result, _render_registration)
    elif action == "list":
        rows = registry.list_versions()
        _emit(args, {"versions": rows, "history": registry.history()}, lambda r: (
            _render_versions(r["versions"]), _render_history(r["history"][-10:])))
    elif action == "show":
        row = registry.show(args.version)

        def render(row):
            from reelops.console import print_table

            fields = ["version", "aliases", "algorithm", "dataset_version", "dataset_source", "git_commit",
                      "package_version", "image", "gate_decision", "run_id", "kfp_run_id", "created"]
            print_table([[f, ", ".join(row[f]) if isinstance(row[f], list) else row[f]] for f in fields], ["field", "value"],
                        title=f"movie-recommender version {row['version']}")
            metrics = {k: v for k, v in row["metrics"].items() if not k.startswith("slice_")}
            if metrics:
                print()
                print_table([[k, v] for k, v in sorted(metrics.items())], ["metric", "value"])

        _emit(args, row, render)
    elif action == "lineage":
        rows = registry.lineage(args.dataset)
        _emit(args, {"dataset_version": args.dataset, "versions": rows}, lambda r: _render_versions(r["versions"]))
    elif action == "promote":
        # With --force the reason must be the user's own: registry.promote refuses none.
        reason = args.reason if args.reason or args.force else "promoted by hand"
        aliases = registry.promote(args.version, reason=reason, force=args.force)
        _emit(args, {"aliases": aliases}, lambda r: print("aliases: " + ", ".join(f"{a}={v}" for a, v in sorted(r["aliases"].items()))))
    elif action == "rollback":
        aliases = registry.rollback(reason=args.reason or "rolled back by hand")
        _emit(args, {"aliases": aliases}, lambda r: print("aliases: " + ", ".join(f"{a}={v}" for a, v in sorted(r["aliases"].items()))))
    elif action == "history":
        _emit(args, {"history": registry.history()}, lambda r: _render_history(r["history"]))


def _render_registration(result: dict) -> None:
    for line in result.get("cleaned") or []:
        print(f"cleaned up: {line}")
    alias = f"alias {result['alias']}" if result["alias"] else f"no alias: {result['gate']}"
    if result["created"]:
        print(f"registered version {result['version']} ({alias})")
    else:
        print(f"already registered as version {result['version']} (same model content; {alias})")


def _render_history(entries: list) -> None:
    from reelops.console import print_table

    if entries:
        print()
        print_table([[e["time"], e["alias"], e["from"] or "-", e["to"] or "-",
                      ("OVERRIDE: " if e.get("override") else "") + e["reason"]] for e in entries],
                    ["time", "alias", "from", "to", "reason"], title="alias history")


# ---------------------------------------------------------------------------- monitoring


def cmd_monitor(args) -> None:
    from reelops.monitoring import load_monitor, monitor_dataset
    from reelops.monitoring.policy import PolicyState, RetrainingPolicy, decide

    model_dir, version = _model_dir_from_args(args)
    monitor = load_monitor(model_dir)
    dataset = _load_any_dataset(args.data)
    training_end = (monitor.model.metadata_.get("holdout") or {}).get("max_train_timestamp")
    newer = dataset["ratings"][dataset["ratings"]["timestamp"] > training_end] if training_end else dataset["ratings"]
    result = monitor_dataset(monitor, dataset["ratings"], dataset["users"], dataset["movies"],
                             after_timestamp=training_end if len(newer) else None)
    if not result["windows"]:
        raise CommandError(f"{args.data}: no ratings to monitor")
    policy = RetrainingPolicy(min_new_labels=args.min_new_labels, cooldown_seconds=int(args.cooldown_days * 86_400))
    decision = decide(result["windows"], result["new_labels"], result["data_time"], policy,
                      state=PolicyState(use_registry=version is not None), record=not args.dry_run)
    output = {"model_dir": str(model_dir), "model_version": version, "data": str(args.data), "input": dataset["input"],
              "summary": result["summary"], "decision": decision.to_dict(),
              "latest_window": result["windows"][-1].to_dict()}

    def render(output):
        from reelops.console import print_table

        rows = []
        for name in ("user_data_drift", "movie_data_drift", "prediction_drift", "model_drift"):
            item = output["summary"][name]
            latest = ", ".join(f"{k} {v:.2g}" for k, v in item["latest_p_values"].items()) or item["note"] or "-"
            rows.append([name, item["windows"], item["alarms"], item["first_alarm_after_ratings"], latest,
                         ", ".join(f"{k} {v}" for k, v in item["unjudged"].items()) or "-"])
        print_table(rows, ["detector", "windows", "alarms", "first alarm after", "latest p-values", "unjudged"],
                    title=f"monitoring {output['data']} with model {output['model_version'] or output['model_dir']}")
        checked = output["input"]
        if checked["kind"] == "raw source":
            reasons = ", ".join(f"{count} {reason}" for reason, count in checked["quarantine_reasons"].items())
            print(f"\ninput: {checked['read']:,} rows read from {checked['files']} files, {checked['quarantined']:,} quarantined"
                  + (f" ({reasons}; first: {checked['first_bad_row']})" if checked["quarantined"] else ""))
        verdicts = output["summary"]["verdicts"]
        print("\nverdicts per window: " + ", ".join(f"{k} {v}" for k, v in verdicts.items()))
        decision = output["decision"]
        print(f"decision: {'RETRAIN' if decision['retrain'] else 'keep the model'}")
        for reason in decision["reasons"]:
            print(f"  - {reason}")

    _emit(args, output, render)


def _model_dir_from_args(args):
    """(model directory, registry version or None) from --model-dir or --model-alias."""
    if args.model_dir:
        return args.model_dir, None
    from reelops import registry

    version = registry.resolve_alias(args.model_alias)
    return registry.download_model(version), version


def _load_any_dataset(data: str) -> dict:
    """A dataset version (id or folder) or a raw source, as the canonical tables."""
    from reelops.data import load_dataset, validate_source

    try:
        return {**load_dataset(data), "input": {"kind": "dataset version", "note": "checked when it was ingested"}}
    except FileNotFoundError:
        validated = validate_source(data)
        # A raw source is checked here, so what was set aside must be said here too.
        first = validated.quarantine.rows[0] if validated.quarantine.rows else None
        return {"ratings": validated.ratings, "users": validated.users, "movies": validated.movies,
                "input": {"kind": "raw source", "files": len(validated.counts), "read": validated.total_read,
                          "quarantined": validated.total_quarantined,
                          "quarantine_reasons": validated.quarantine.reasons(),
                          "first_bad_row": f"{first['file']} line {first['line']}: {first['reason']}" if first else None}}


# ---------------------------------------------------------------------------- serving


def cmd_serve(args) -> None:
    from reelops.serving.server import serve

    if not args.allow_unblessed:
        # The predictor checks again when it loads (it is the only one that sees a storage
        # URI's content); checking here too makes a refusal one line before any server starts.
        _check_servable(args)
    serve(model_dir=args.model_dir, alias=args.model_alias, storage_uri=args.storage_uri, name=args.name,
          http_port=args.port, grpc_port=None if args.no_grpc else args.grpc_port, logger_url=args.logger_url,
          max_instances=args.max_instances, allow_unblessed=args.allow_unblessed, host=args.host,
          max_body_bytes=args.max_body_bytes, access_log=args.access_log)


def _check_servable(args) -> None:
    from reelops.gate import check_servable

    if args.model_dir:
        check_servable(model_dir=args.model_dir)
    elif args.model_alias:
        from reelops import registry

        check_servable(version=registry.resolve_alias(args.model_alias), alias=args.model_alias)


def cmd_predict(args) -> None:
    from reelops.serving.client import recommend

    try:
        answers = recommend(args.url.rstrip("/"), args.user, k=args.k, protocol=args.protocol, name=args.name)
    except RuntimeError as error:
        raise CommandError(f"{args.url}: {error}") from error

    def render(result):
        from reelops.console import print_table

        for answer in result["predictions"]:
            titles = answer.get("titles") or [""] * len(answer["movie_ids"])
            print_table([[rank + 1, movie, title, score] for rank, (movie, title, score)
                         in enumerate(zip(answer["movie_ids"], titles, answer["scores"]))],
                        ["rank", "movie", "title", "score"],
                        title=f"user {answer['user_id']} (model version {answer.get('model_version')}, "
                              f"path {answer.get('path', '-')})")

    _emit(args, {"predictions": answers}, render)


# ---------------------------------------------------------------------------- pipelines


def cmd_pipeline(args) -> None:
    from reelops import pipelines

    action = args.pipeline_command
    if action == "outcomes":
        from reelops import registry

        outcomes = registry.pipeline_outcomes(f"reelops-{args.name}" if args.name else None, limit=args.limit)
        _emit(args, outcomes, _render_outcomes)
        return
    params = pipelines.parse_params(args.param)
    if action == "compile":
        names = [args.name] if args.name else list(pipelines.PIPELINE_NAMES)
        paths = [str(pipelines.compile_pipeline(name, args.out)) for name in names]
        _emit(args, {"compiled": paths}, lambda r: print("\n".join(f"compiled {p}" for p in r["compiled"])))
    elif action == "run":
        result = _quiet_local_run(args.name, params, verbose=args.verbose, isolated=args.isolated,
                                  pipeline_root=args.pipeline_root)
        _emit(args, result, lambda r: print(f"pipeline {r['pipeline']} finished: {r['state']} (outputs under {r['pipeline_root']})"))
    elif action == "submit":
        result = pipelines.submit(args.name, args.host, experiment=args.experiment, params=params)
        _emit(args, result, lambda r: print(f"submitted run {r['run_id']} of pipeline {r['pipeline_id']} version {r['version_id']}"))
    elif action == "schedule":
        result = pipelines.schedule(args.name, args.host, args.cron, experiment=args.experiment, params=params)
        _emit(args, result, lambda r: print(f"recurring run {r['recurring_run_id']} ({args.cron}) of pipeline {r['pipeline_id']}"))


def _render_outcomes(outcomes: list) -> None:
    from reelops.console import print_table

    if not outcomes:
        print("no pipeline run has recorded an outcome in this tracking store yet")
        return
    rows = [[o["time"], o["pipeline"], o["state"], o["job"], (o["error"] or "")[:60]] for o in outcomes]
    print_table(rows, ["time", "pipeline", "state", "job", "error"], title="pipeline runs, newest first")


def _quiet_local_run(name: str, params: dict, verbose: bool = False, isolated: bool = False,
                     pipeline_root: str | None = None) -> dict:
    """Run a pipeline locally; KFP's per-task logs go to a file unless ``verbose``.

    An isolated run never touches the workspace: its log and artifacts go under its
    pipeline root (a new temporary folder unless given).
    """
    import logging
    import tempfile

    from reelops import pipelines

    if isolated:
        from reelops.pipelines.isolation import IsolationError, check_services

        try:
            check_services()
        except IsolationError as error:
            raise CommandError(str(error)) from error
        pipeline_root = pipeline_root or tempfile.mkdtemp(prefix=f"reelops-{name}-")
        log_path = Path(pipeline_root) / "run.log"
    else:
        from reelops.workspace import workspace_dir

        log_path = workspace_dir() / "pipelines" / f"{name}-last-run.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log, contextlib.ExitStack() as stack:
        if not verbose:
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(contextlib.redirect_stderr(log))
            handler = logging.StreamHandler(log)
            root = logging.getLogger()
            root.addHandler(handler)
            stack.callback(root.removeHandler, handler)
        try:
            result = pipelines.run_local(name, params, isolated=isolated, pipeline_root=pipeline_root)
            result["state"] = "SUCCEEDED"
        except Exception as error:  # a failed task: the one-line reason and where the full log is
            raise CommandError(f"pipeline {name} failed: {str(error).strip().splitlines()[-1] if str(error).strip() else error}"
                               f" (log: {log_path})") from error
    result["log"] = str(log_path)
    return result


# ---------------------------------------------------------------------------- run


def cmd_run(args) -> None:
    """The main job: the training pipeline on a simulated world, batch scoring, a summary."""
    import pandas as pd

    from reelops import registry
    from reelops.workspace import workspace_dir

    source = f"simulate:scenario={args.scenario},seed={args.seed}"
    if not args.json:
        print(f"training pipeline on {source} (kfp.local; task logs in {workspace_dir() / 'pipelines'})")
    training = _quiet_local_run("training", {"source": source})
    versions = registry.list_versions()
    blessings = sorted((workspace_dir() / "pipelines" / "runs").glob("reelops-training-*/gate/candidate/blessing.json"),
                       key=lambda p: p.stat().st_mtime)
    blessing = json.loads(blessings[-1].read_text()) if blessings else {}
    manifests = sorted((workspace_dir() / "pipelines" / "runs").glob("reelops-training-*/validate/dataset/manifest.json"),
                       key=lambda p: p.stat().st_mtime)
    manifest = json.loads(manifests[-1].read_text()) if manifests else {}
    summary = {"training": training, "dataset": {k: manifest.get(k) for k in ("version", "counts", "quarantined", "warnings")}, "gate": {k: blessing.get(k) for k in ("decision", "reasons", "compared_with")},
               "registered": versions[0] if versions else None}
    if "production" in registry._aliases():
        _quiet_local_run("batch-scoring", {"alias": "production", "k": 10})
        tables = sorted((workspace_dir() / "pipelines" / "runs").glob("reelops-batch-scoring-*/batch-predict/predictions"),
                        key=lambda p: p.stat().st_mtime)
        table = pd.read_parquet(tables[-1])
        summary["batch_scoring"] = {"table": str(tables[-1]), "rows": int(len(table)), "users": int(table["user_id"].nunique())}
        model, _ = registry.load_by_alias("production")
        sample = table[table["user_id"].isin(table["user_id"].unique()[:3]) & (table["rank"] <= 5)]
        summary["sample"] = [{"user_id": int(u), "movies": [model.titles_.get(int(m), str(m)) for m in group["movie_id"]]}
                             for u, group in sample.groupby("user_id")]
        summary["serving"] = _serve_and_ask(table["user_id"].unique()[:3].tolist())
    _emit(args, summary, _render_run)


def _serve_and_ask(user_ids: list) -> dict:
    """Serve the production model on a free loopback port, ask it over HTTP, stop it."""
    import socket
    import subprocess

    from reelops.serving.client import recommend, wait_until_ready

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "reelops.cli", "serve", "--model-alias", "production",
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


# ---------------------------------------------------------------------------- parser


class _VersionAction(argparse.Action):
    """``--version``: the package version and the commit, looked up only when asked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from reelops.buildinfo import git_commit

        print(f"reelops {__version__} (commit {git_commit()})")
        parser.exit()


def _share(text: str) -> float:
    """An argparse type: a share between 0 and 1 (NaN and anything outside are usage errors)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # NaN fails both comparisons
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _positive_bytes(text: str) -> int:
    """An argparse type: a positive whole number of bytes."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every reelops command."""
    parser = argparse.ArgumentParser(prog="reelops", description="MLOps lifecycle of a movie recommender",
                                     epilog="--debug (anywhere, or REELOPS_DEBUG=1) prints the traceback of a failure")
    parser.add_argument("--version", action=_VersionAction, help="show the version and the commit it was built from")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def with_json(sub):
        sub.add_argument("--json", action="store_true", help="print the result as one JSON object")
        return sub

    data = commands.add_parser("data", help="ingest and validate MovieLens data")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_commands.required = True
    ingest = with_json(data_commands.add_parser("ingest", help="read, validate and version a source"))
    ingest.add_argument("source", help="folder, .zip, fsspec URL, or movielens-100k")
    ingest.add_argument("--out", help="dataset store, a folder or fsspec URL (default: $REELOPS_STORE, else "
                                      "<workspace>/datasets)")
    ingest.add_argument("--max-bad-share", type=_share, default=0.01, help="largest share of bad rows accepted (0 to 1)")
    ingest.set_defaults(handler=cmd_data_ingest)
    validate = with_json(data_commands.add_parser("validate", help="check a raw source; writes nothing"))
    validate.add_argument("source")
    validate.add_argument("--max-bad-share", type=_share, default=0.01, help="largest share of bad rows accepted (0 to 1)")
    for sub in (ingest, validate):
        sub.add_argument("--max-input-bytes", type=_positive_bytes, default=None,
                         help="largest file or unpacked archive accepted (default 4 GiB, or REELOPS_MAX_INPUT_BYTES)")
    validate.set_defaults(handler=cmd_data_validate)

    simulate = with_json(commands.add_parser("simulate", help="generate a synthetic movie world (or compare one)"))
    simulate.add_argument("action", nargs="*", help="nothing, or: compare SIM_DIR REAL_DIR")
    simulate.add_argument("--scenario", default="none", help="none, population_shift, taste_shift, new_releases, popularity_shock, or A+B")
    simulate.add_argument("--strength", type=float, default=1.0, help="scales the size of each change")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--users", type=int, default=None, help="number of users (default 943)")
    simulate.add_argument("--movies", type=int, default=None, help="number of movies (default 1682)")
    simulate.add_argument("--out", default=None, help="output folder (ml-100k layout + scenario.json)")
    simulate.add_argument("--until", type=float, default=None,
                          help="write only the first share of the timeline (e.g. 0.55: training data before later windows)")
    simulate.set_defaults(handler=cmd_simulate)

    from reelops.models import ALGORITHMS, DEFAULT_ALGORITHM, HOLDOUTS

    train = with_json(commands.add_parser("train", help="fit a model on a dataset version"))
    train.add_argument("--data", required=True, help="dataset version id or folder")
    train.add_argument("--algorithm", default=DEFAULT_ALGORITHM, choices=list(ALGORITHMS))
    train.add_argument("--holdout", default="user-time-20", choices=list(HOLDOUTS))
    train.add_argument("--param", action="append", metavar="KEY=VALUE", help="algorithm parameter (repeatable)")
    train.add_argument("--out", required=True, help="model directory to write")
    train.set_defaults(handler=cmd_train)

    evaluate = with_json(commands.add_parser("evaluate", help="score a model on a dataset"))
    evaluate.add_argument("--model-dir", required=True)
    evaluate.add_argument("--data", required=True, help="dataset version id or folder")
    evaluate.add_argument("-k", type=int, default=10, help="cut-off of the ranking metrics")
    evaluate.add_argument("--report-dir", help="where evaluation.json/.html go (default: the model directory)")
    evaluate.set_defaults(handler=cmd_evaluate)

    gate = with_json(commands.add_parser("gate", help="bless or reject a candidate against production"))
    gate.add_argument("--model-dir", required=True)
    gate.add_argument("--data", required=True, help="dataset version id or folder")
    gate.add_argument("--rmse-tolerance", type=float, default=0.005)
    gate.add_argument("--ndcg-relative-drop", type=float, default=0.02)
    gate.add_argument("--cold-rmse-tolerance", type=float, default=0.01)
    gate.add_argument("--production-dir", help="compare with this model directory instead of the registry's production")
    gate.set_defaults(handler=cmd_gate)

    registry = commands.add_parser("registry", help="model versions, aliases, lineage, rollback (MLflow)")
    registry_commands = registry.add_subparsers(dest="registry_command", metavar="ACTION")
    registry_commands.required = True
    register = with_json(registry_commands.add_parser("register", help="log and register a model directory"))
    register.add_argument("model_dir")
    register.add_argument("--reason")
    with_json(registry_commands.add_parser("list", help="versions, aliases and lineage"))
    show = with_json(registry_commands.add_parser("show", help="one version: lineage, metrics, gate decision"))
    show.add_argument("version")
    lineage = with_json(registry_commands.add_parser("lineage", help="versions trained on a dataset version"))
    lineage.add_argument("--dataset", required=True)
    promote = with_json(registry_commands.add_parser("promote", help="make a version production"))
    promote.add_argument("version")
    promote.add_argument("--reason")
    promote.add_argument("--force", action="store_true",
                         help="promote a version the gate did not bless (needs --reason; recorded as an override)")
    rollback = with_json(registry_commands.add_parser("rollback", help="swap production and previous back"))
    rollback.add_argument("--reason")
    with_json(registry_commands.add_parser("history", help="every alias move"))
    registry.set_defaults(handler=cmd_registry)

    monitor = with_json(commands.add_parser("monitor", help="drift findings on new data and the retraining decision"))
    which = monitor.add_mutually_exclusive_group(required=True)
    which.add_argument("--model-alias", choices=["production", "canary", "previous"])
    which.add_argument("--model-dir")
    monitor.add_argument("--data", required=True, help="new data: dataset version id or folder, or a raw source")
    monitor.add_argument("--min-new-labels", type=int, default=1000)
    monitor.add_argument("--cooldown-days", type=float, default=7.0)
    monitor.add_argument("--dry-run", action="store_true", help="decide without recording a trigger")
    monitor.set_defaults(handler=cmd_monitor)

    serve = commands.add_parser("serve", help="serve a model with KServe (V1, V2, gRPC, /metrics)")
    source = serve.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-alias", choices=["production", "canary", "previous"])
    source.add_argument("--model-dir")
    source.add_argument("--storage-uri", help="a KServe storage URI (gs://, s3://, pvc://, file://)")
    serve.add_argument("--name", default="movie-recommender")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address REST and gRPC bind (default 127.0.0.1; 0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--grpc-port", type=int, default=8081)
    serve.add_argument("--no-grpc", action="store_true")
    serve.add_argument("--logger-url", help="send request/response CloudEvents here (KServe logger format)")
    serve.add_argument("--max-instances", type=int, default=1000)
    serve.add_argument("--max-body-bytes", type=_positive_bytes, default=4 << 20,
                       help="largest request body (REST) or message (gRPC) accepted; 413 / RESOURCE_EXHAUSTED above")
    serve.add_argument("--access-log", action="store_true", help="log every request (off: refusals are logged)")
    serve.add_argument("--allow-unblessed", action="store_true",
                       help="serve a model the gate did not bless (tests, benchmarks, experiments)")
    serve.set_defaults(handler=cmd_serve)

    predict = with_json(commands.add_parser("predict", help="ask a running predictor for recommendations"))
    predict.add_argument("--url", required=True)
    predict.add_argument("--user", type=int, action="append", required=True, help="user id (repeatable)")
    predict.add_argument("-k", type=int, default=10)
    predict.add_argument("--protocol", choices=["v1", "v2"], default="v1")
    predict.add_argument("--name", default="movie-recommender")
    predict.set_defaults(handler=cmd_predict)

    pipeline = commands.add_parser("pipeline", help="compile, run locally, submit or schedule the KFP pipelines")
    pipeline_commands = pipeline.add_subparsers(dest="pipeline_command", metavar="ACTION")
    pipeline_commands.required = True
    names = ["training", "batch-scoring", "monitoring"]
    compile_ = with_json(pipeline_commands.add_parser("compile", help="write IR YAML (every pipeline without NAME)"))
    compile_.add_argument("name", nargs="?", choices=names)
    compile_.add_argument("--out", required=True)
    run_pipeline = with_json(pipeline_commands.add_parser("run", help="run locally through kfp.local"))
    run_pipeline.add_argument("name", choices=names)
    run_pipeline.add_argument("--verbose", action="store_true", help="show KFP's task logs")
    run_pipeline.add_argument("--isolated", action="store_true",
                              help="each task as in its own pod: own folders, only its secrets' services "
                                   "(needs MLFLOW_TRACKING_URI=http(s)://... and REELOPS_STORE)")
    run_pipeline.add_argument("--pipeline-root", default=None,
                              help="where artifacts (and an isolated run's task folders and log) go")
    outcomes = with_json(pipeline_commands.add_parser(
        "outcomes", help="outcomes the pipelines' exit handler recorded in the tracking store"))
    outcomes.add_argument("name", nargs="?", choices=names)
    outcomes.add_argument("--limit", type=int, default=20)
    submit = with_json(pipeline_commands.add_parser("submit", help="upload and start a run on Kubeflow"))
    submit.add_argument("name", choices=names)
    submit.add_argument("--host", required=True)
    submit.add_argument("--experiment", default="reelops")
    schedule = with_json(pipeline_commands.add_parser("schedule", help="create a recurring run on Kubeflow"))
    schedule.add_argument("name", choices=names)
    schedule.add_argument("--host", required=True)
    schedule.add_argument("--cron", required=True, help='KFP cron with seconds, e.g. "0 0 3 * * *"')
    schedule.add_argument("--experiment", default="reelops")
    for sub in (compile_, run_pipeline, submit, schedule):
        sub.add_argument("--param", action="append", metavar="KEY=VALUE", help="pipeline parameter (repeatable)")
    pipeline.set_defaults(handler=cmd_pipeline)

    run = with_json(commands.add_parser("run", help="the main job (make run)"))
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--scenario", default="none")
    run.set_defaults(handler=cmd_run)
    return parser


def _user_facing_errors() -> tuple:
    """Error types whose message is written for the user: it is shown as it is, with no hint."""
    from reelops.data import DataValidationError, SourceError
    from reelops.gate import UnblessedModelError
    from reelops.monitoring import MonitoringInputError
    from reelops.cluster import NotConfigured
    from reelops.data.store import StoreError
    from reelops.registry import RegistryError

    return (CommandError, DataValidationError, SourceError, RegistryError, MonitoringInputError, UnblessedModelError,
            NotConfigured, StoreError)


def _one_line(error: BaseException) -> str:
    """The first line of an error's message, with its type when reelops did not write it."""
    text = str(error).strip()
    if isinstance(error, KeyError):  # str(KeyError) is only the quoted key
        return f"missing key {text}"
    if not text:
        return type(error).__name__
    first = text.splitlines()[0]
    if isinstance(error, _user_facing_errors()) or type(error).__module__.startswith("reelops"):
        return first
    # Errors from below (zlib, OS, numpy) get their type: "error: Error -3 ..." alone says little.
    return f"{type(error).__name__}: {first}"


def main(argv=None) -> int:
    """Entry point of the ``reelops`` console script.

    Every failure ends with one line, ``reelops: error: <what and where>``, and a non-zero
    exit; ``--debug`` (or ``REELOPS_DEBUG=1``) prints the traceback as well.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug may stand anywhere on the line, as users type it.
    debug = "--debug" in argv or os.environ.get("REELOPS_DEBUG", "") not in ("", "0")
    argv = [word for word in argv if word != "--debug"]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # usage errors: argparse has printed the one-line reason
        return int(exit_.code or 0)
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print("reelops: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the user sees one line; --debug shows the rest
        if debug:
            import traceback

            traceback.print_exc()
        expected = isinstance(error, (*_user_facing_errors(), OSError, ValueError))
        hint = "" if debug or expected else " (--debug shows the traceback)"
        print(f"reelops: error: {_one_line(error)}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
