"""`reelops registry`: versions, aliases, lineage, promotion and rollback."""

from __future__ import annotations

from reelops.cli.common import emit


def add_commands(commands, with_json) -> None:
    """Add this group's commands to the ``reelops`` parser."""
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
        emit(args, result, _render_registration)
    elif action == "list":
        rows = registry.list_versions()
        emit(args, {"versions": rows, "history": registry.history()}, lambda r: (
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
            if row.get("canary_analysis"):
                from reelops.cli.deploy import render_analysis

                print()
                render_analysis(row["canary_analysis"])

        emit(args, row, render)
    elif action == "lineage":
        rows = registry.lineage(args.dataset)
        emit(args, {"dataset_version": args.dataset, "versions": rows}, lambda r: _render_versions(r["versions"]))
    elif action == "promote":
        # With --force the reason must be the user's own: registry.promote refuses none.
        reason = args.reason if args.reason or args.force else "promoted by hand"
        aliases = registry.promote(args.version, reason=reason, force=args.force)
        emit(args, {"aliases": aliases}, lambda r: print("aliases: " + ", ".join(f"{a}={v}" for a, v in sorted(r["aliases"].items()))))
    elif action == "rollback":
        aliases = registry.rollback(reason=args.reason or "rolled back by hand")
        emit(args, {"aliases": aliases}, lambda r: print("aliases: " + ", ".join(f"{a}={v}" for a, v in sorted(r["aliases"].items()))))
    elif action == "history":
        emit(args, {"history": registry.history()}, lambda r: _render_history(r["history"]))


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
