"""`reelops monitor`: drift findings on new data and the retraining decision; `reelops detector`:
the same monitor online, beside a predictor."""

from __future__ import annotations

import shlex

from reelops.cli.common import CommandError, emit
from reelops.registry import ALIASES


def add_commands(commands, with_json) -> None:
    """Add this group's commands to the ``reelops`` parser."""
    monitor = with_json(commands.add_parser("monitor", help="drift findings on new data and the retraining decision"))
    which = monitor.add_mutually_exclusive_group(required=True)
    which.add_argument("--model-alias", choices=ALIASES)
    which.add_argument("--model-dir")
    monitor.add_argument("--data", required=True, help="new data: dataset version id or folder, or a raw source")
    monitor.add_argument("--min-new-labels", type=int, default=1000)
    monitor.add_argument("--cooldown-days", type=float, default=7.0)
    monitor.add_argument("--dry-run", action="store_true", help="decide without recording a trigger")
    monitor.set_defaults(handler=cmd_monitor)

    detector = commands.add_parser("detector", help="the online drift detector beside a predictor")
    detector_commands = detector.add_subparsers(dest="detector_command", required=True)
    serve = detector_commands.add_parser(
        "serve", help="take logger CloudEvents and feedback, judge windows, trigger retraining "
                      "(POST /, POST /v1/feedback, GET /detector/status, /metrics)")
    watched = serve.add_mutually_exclusive_group(required=True)
    watched.add_argument("--model-alias", choices=ALIASES)
    watched.add_argument("--model-version", help="a registry version")
    watched.add_argument("--model-dir", help="a model folder (the cooldown is then kept in memory)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, default=8095)
    serve.add_argument("--label-wait", type=float, default=30.0,
                       help="seconds a full window waits for its ratings before it is judged (default 30)")
    serve.add_argument("--min-new-labels", type=int, default=1000)
    serve.add_argument("--cooldown-days", type=float, default=7.0)
    serve.add_argument("--max-retrains", type=int, default=None,
                       help="retraining runs this detector starts at most (default: no limit, the cooldown decides)")
    serve.add_argument("--retrain-command", default=None,
                       help="the command that starts retraining when the policy decides, e.g. "
                            "'reelops pipeline submit training --host URL --json' (needs a registry version: "
                            "the decision is claimed there once for every detector)")
    serve.set_defaults(handler=cmd_detector_serve)
    status = with_json(detector_commands.add_parser("status", help="what a running detector has judged"))
    status.add_argument("--url", required=True, help="the detector, e.g. http://127.0.0.1:8095")
    status.set_defaults(handler=cmd_detector_status)


def cmd_monitor(args) -> None:
    from reelops.monitoring import DETECTORS
    from reelops.services import monitor_model

    output = monitor_model(args.data, model_dir=args.model_dir, alias=args.model_alias,
                           min_new_labels=args.min_new_labels, cooldown_days=args.cooldown_days, record=not args.dry_run)

    def render(output):
        from reelops.console import print_table

        rows = []
        for name in DETECTORS:
            item = output["summary"][name]
            sizes = item.get("latest_sizes", {})
            latest = ", ".join(f"{k} {v:.2g}" + (f" (size {sizes[k]:.2f})" if k in sizes else "")
                               for k, v in item["latest_p_values"].items()) or item["note"] or "-"
            rows.append([name, item["windows"], item["alarms"], item["first_alarm_after_ratings"], latest,
                         ", ".join(f"{k} {v}" for k, v in item["unjudged"].items()) or "-"])
        print_table(rows, ["detector", "windows", "alarms", "first alarm after", "latest p-values (size of change)", "unjudged"],
                    title=f"monitoring {output['data']} with model {output['model_version'] or output['model_dir']}")
        checked = output["input"]
        if checked["kind"] == "raw source":
            reasons = ", ".join(f"{count} {reason}" for reason, count in checked["quarantine_reasons"].items())
            print(f"\ninput: {checked['read']:,} rows read from {checked['files']} files, {checked['quarantined']:,} quarantined"
                  + (f" ({reasons}; first: {checked['first_bad_row']})" if checked["quarantined"] else ""))
        verdicts = output["summary"]["verdicts"]
        print("\nverdicts per window: " + ", ".join(f"{k} {v}" for k, v in verdicts.items() if v or k != "unjudged"))
        if output["summary"]["partial_window"]:
            print(f"only {output['summary']['ratings']:,} ratings, fewer than one window: judged as one partial window")
        decision = output["decision"]
        print(f"decision: {'RETRAIN' if decision['retrain'] else 'keep the model'}")
        for reason in decision["reasons"]:
            print(f"  - {reason}")

    emit(args, output, render)


def cmd_detector_serve(args) -> None:
    from reelops import registry
    from reelops.deploy.detector import DriftDetector, RetrainTrigger, serve_detector
    from reelops.monitoring import load_monitor
    from reelops.monitoring.policy import PolicyState, RetrainingPolicy
    from reelops.workspace import workspace_dir

    version = args.model_version or (registry.resolve_alias(args.model_alias) if args.model_alias else None)
    if args.retrain_command and version is None:
        raise CommandError("--retrain-command needs --model-alias or --model-version: the decision is claimed "
                           "in the registry so that two detectors never start two runs")
    model_dir = args.model_dir or registry.download_model(version)
    policy = RetrainingPolicy(min_new_labels=args.min_new_labels, cooldown_seconds=int(args.cooldown_days * 86_400))
    trigger = None
    if args.retrain_command:
        trigger = RetrainTrigger(shlex.split(args.retrain_command), workspace_dir() / "detector",
                                 max_runs=args.max_retrains)
    detector = DriftDetector(load_monitor(model_dir), model_version=version or str(model_dir),
                             label_wait=args.label_wait, policy=policy, trigger=trigger,
                             state=registry.TriggerState() if version is not None else PolicyState())
    serve_detector(detector, port=args.port, host=args.host)


def cmd_detector_status(args) -> None:
    import httpx

    try:
        status = httpx.get(f"{args.url.rstrip('/')}/detector/status", timeout=10).raise_for_status().json()
    except httpx.HTTPError as error:
        raise CommandError(f"{args.url}: no detector answers ({error})") from error

    def render(status):
        from reelops.console import print_table

        print(f"detector of version {status['model_version']}: {status['events']:,} events, "
              f"{status['interactions']:,} interactions, {status['feedback']:,} ratings, "
              f"{status['windows_judged']} windows judged ({status['backlog_rows']:,} rows waiting)")
        for kind in ("dropped", "unjudgeable"):
            if status[kind]:
                print(f"{kind}: " + ", ".join(f"{k} {v}" for k, v in status[kind].items()))
        latest = status.get("latest")
        if latest:
            rows = [[name, "ALARM" if r["drift"] else "-", "-" if r["p_value"] is None else f"{r['p_value']:.3g}",
                     ", ".join(f"{k} {v:.2f}" for k, v in r["sizes"].items()) or r["note"] or "-"]
                    for name, r in latest["detectors"].items()]
            print_table(rows, ["detector", "alarm", "p-value", "size of change"],
                        title=f"latest window: verdict {latest['verdict']}")
        decision = status.get("decision")
        if decision:
            print(f"decision: {'RETRAIN' if decision['retrain'] else 'keep the model'}")
            for reason in decision["reasons"]:
                print(f"  - {reason}")
        retrain = status.get("retrain")
        if retrain:
            trigger = retrain.get("trigger")
            started = ("no trigger configured" if trigger is None else
                       f"run started (pid {trigger['pid']}, log {trigger['log']})" if trigger.get("started") else
                       f"not started here: {trigger['reason']}")
            print(f"retraining decided after window {retrain['window']}: {started}")

    emit(args, status, render)
