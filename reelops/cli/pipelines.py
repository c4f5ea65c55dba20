"""`reelops pipeline`: compile, run locally (optionally isolated), outcomes, submit, schedule."""

from __future__ import annotations

import contextlib
from pathlib import Path

from reelops.cli.common import CommandError, emit
from reelops.pipelines import PIPELINE_NAMES


def add_commands(commands, with_json) -> None:
    """Add this group's commands to the ``reelops`` parser."""
    pipeline = commands.add_parser("pipeline", help="compile, run locally, submit or schedule the KFP pipelines")
    pipeline_commands = pipeline.add_subparsers(dest="pipeline_command", metavar="ACTION")
    pipeline_commands.required = True
    names = list(PIPELINE_NAMES)
    compile_ = with_json(pipeline_commands.add_parser("compile", help="write IR YAML (every pipeline without NAME)"))
    compile_.add_argument("name", nargs="?", choices=names)
    compile_.add_argument("--out", required=True)
    compile_.add_argument("--components", action="store_true",
                          help="write every component as a standalone YAML (kfp.components.load_component_from_file)")
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
    submit.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                        help="wait for the run to finish; a run that does not succeed is an error")
    schedule = with_json(pipeline_commands.add_parser("schedule", help="create a recurring run on Kubeflow"))
    schedule.add_argument("name", choices=names)
    schedule.add_argument("--host", required=True)
    schedule.add_argument("--cron", required=True, help='KFP cron with seconds, e.g. "0 0 3 * * *"')
    schedule.add_argument("--experiment", default="reelops")
    for sub in (submit, schedule):
        sub.add_argument("--service-account", default=None,
                         help="Kubernetes service account of the run's pods (KFP's default when not given)")
    for sub in (compile_, run_pipeline, submit, schedule):
        sub.add_argument("--param", action="append", metavar="KEY=VALUE", help="pipeline parameter (repeatable)")
    pipeline.set_defaults(handler=cmd_pipeline)


def cmd_pipeline(args) -> None:
    from reelops import pipelines

    action = args.pipeline_command
    if action == "outcomes":
        from reelops import registry

        outcomes = registry.pipeline_outcomes(f"reelops-{args.name}" if args.name else None, limit=args.limit)
        emit(args, outcomes, _render_outcomes)
        return
    params = pipelines.parse_params(args.param)
    if action == "compile" and args.components:
        if args.name:
            raise CommandError("--components writes every component; give no pipeline NAME with it")
        paths = [str(path) for path in pipelines.compile_components(args.out)]
        emit(args, {"compiled": paths}, lambda r: print("\n".join(f"compiled {p}" for p in r["compiled"])))
    elif action == "compile":
        names = [args.name] if args.name else list(pipelines.PIPELINE_NAMES)
        paths = [str(pipelines.compile_pipeline(name, args.out)) for name in names]
        emit(args, {"compiled": paths}, lambda r: print("\n".join(f"compiled {p}" for p in r["compiled"])))
    elif action == "run":
        result = quiet_local_run(args.name, params, verbose=args.verbose, isolated=args.isolated,
                                  pipeline_root=args.pipeline_root)
        emit(args, result, lambda r: print(f"pipeline {r['pipeline']} finished: {r['state']} (outputs under {r['pipeline_root']})"))
    elif action == "submit":
        result = pipelines.submit(args.name, args.host, experiment=args.experiment, params=params,
                                  service_account=args.service_account, wait=args.wait)
        if args.wait and result.get("state") != "SUCCEEDED":
            raise CommandError(f"run {result['run_id']} of pipeline {args.name} ended {result.get('state')}, "
                               f"not SUCCEEDED (waited up to {args.wait:g} s)")
        emit(args, result, lambda r: print(f"submitted run {r['run_id']} of pipeline {r['pipeline_id']} version {r['version_id']}"))
    elif action == "schedule":
        result = pipelines.schedule(args.name, args.host, args.cron, experiment=args.experiment, params=params,
                                    service_account=args.service_account)
        emit(args, result, lambda r: print(f"recurring run {r['recurring_run_id']} ({args.cron}) of pipeline {r['pipeline_id']}"))


def _render_outcomes(outcomes: list) -> None:
    from reelops.console import print_table

    if not outcomes:
        print("no pipeline run has recorded an outcome in this tracking store yet")
        return
    rows = [[o["time"], o["pipeline"], o["state"], o["job"], (o["error"] or "")[:60]] for o in outcomes]
    print_table(rows, ["time", "pipeline", "state", "job", "error"], title="pipeline runs, newest first")


def quiet_local_run(name: str, params: dict, verbose: bool = False, isolated: bool = False,
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
