"""`reelops run`: the main job (`make run`), the whole lifecycle on one machine."""

from __future__ import annotations

from reelops.cli.common import CommandError, emit


def add_commands(commands, with_json) -> None:
    """Add this group's commands to the ``reelops`` parser."""
    from reelops.lifecycle.loop import STAGES

    run = with_json(commands.add_parser(
        "run", help="the main job (make run): train, deploy, serve, detect drift, retrain, canary, shadow, report"))
    run.add_argument("--scenario", default="population_shift",
                     help="the simulated site's change (default population_shift: the detector alarms on it)")
    run.add_argument("--seed", type=int, default=3)
    run.add_argument("--rate", type=float, default=150.0, help="requests per second of the replayed traffic")
    run.add_argument("--canary-percent", type=int, default=30, help="the canary's share of traffic")
    run.add_argument("--budget", action="append", metavar="STAGE=SECONDS", default=[],
                     help=f"a stage's time budget (stages: {', '.join(s.name for s in STAGES)})")
    run.set_defaults(handler=cmd_run)


def cmd_run(args) -> None:
    """The lifecycle, stage by stage, ending with the report's path; exit 1 when a stage failed."""
    from reelops.lifecycle.loop import STAGES, Lifecycle

    names = {s.name for s in STAGES}
    budgets = {}
    for item in args.budget:
        name, _, value = item.partition("=")
        try:
            budgets[name] = float(value)
        except ValueError:
            raise CommandError(f"--budget {item!r}: expected STAGE=SECONDS") from None
        if name not in names or budgets[name] < 0:
            raise CommandError(f"--budget {item!r}: the stage must be one of {', '.join(sorted(names))}, "
                               "the seconds 0 or more")
    import signal

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # A run stopped by SIGTERM (CI's timeout, kill) stops its serving plane and writes its report
    # like one stopped by Ctrl-C, instead of leaving the plane's processes behind.
    signal.signal(signal.SIGTERM, interrupted)
    import logging

    # MLflow's own notes (table migrations, a new experiment) are not the run's progress.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    say = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
    record = Lifecycle(args.scenario, args.seed, rate=args.rate, canary_percent=args.canary_percent, budgets=budgets,
                       say=say).run()
    summary = {"report": record["report_path"], "seconds": record.get("seconds"),
               "stages": record.get("stages"), "mlflow_run": record.get("mlflow_run"),
               "versions": [{k: v.get(k) for k in ("version", "aliases", "gate_decision", "algorithm")}
                            for v in record.get("versions") or []]}
    emit(args, summary, _render)
    if any(stage["outcome"] == "failed" for stage in record.get("stages") or []):
        raise SystemExit(1)


def _render(summary: dict) -> None:
    from reelops.console import print_table
    from reelops.lifecycle.loop import clock_text

    rows = [[s["name"], clock_text(s["budget"]), clock_text(s["seconds"]), s["outcome"], s["note"][:90]]
            for s in summary["stages"]]
    print()
    print_table(rows, ["stage", "budget", "took", "outcome", "note"], title=f"reelops run: {clock_text(summary['seconds'])}")
    if summary["versions"]:
        print_table([[v["version"], v["algorithm"], ", ".join(v["aliases"]) or "-", v["gate_decision"]]
                     for v in summary["versions"]], ["version", "algorithm", "aliases", "gate"], title="\nregistry")
    print(f"\nreport: {summary['report']}")
    if summary.get("mlflow_run"):
        print(f"logged to MLflow: experiment reelops-lifecycle, run {summary['mlflow_run']}")
