"""`reelops monitor`: drift findings on new data and the retraining decision."""

from __future__ import annotations

from reelops.cli.common import emit
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
