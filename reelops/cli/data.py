"""`reelops data` and `reelops simulate`: ingest, validate, generate and compare worlds."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from reelops.cli.common import CommandError, emit, positive_bytes, share


def add_commands(commands, with_json) -> None:
    """Add this group's commands to the ``reelops`` parser."""
    data = commands.add_parser("data", help="ingest and validate MovieLens data")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_commands.required = True
    ingest = with_json(data_commands.add_parser("ingest", help="read, validate and version a source"))
    ingest.add_argument("source", help="folder, .zip, fsspec URL, or movielens-100k")
    ingest.add_argument("--out", help="dataset store, a folder or fsspec URL (default: $REELOPS_STORE, else "
                                      "<workspace>/datasets)")
    ingest.add_argument("--max-bad-share", type=share, default=0.01, help="largest share of bad rows accepted (0 to 1)")
    ingest.set_defaults(handler=cmd_data_ingest)
    validate = with_json(data_commands.add_parser("validate", help="check a raw source; writes nothing"))
    validate.add_argument("source")
    validate.add_argument("--max-bad-share", type=share, default=0.01, help="largest share of bad rows accepted (0 to 1)")
    for sub in (ingest, validate):
        sub.add_argument("--max-input-bytes", type=positive_bytes, default=None,
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
    emit(args, summary, _render_ingest)


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
    emit(args, summary, _render_ingest)


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
        emit(args, result, _render_compare)
        if not all(row["ok"] for row in result["checks"]):
            raise CommandError("the simulated world is outside the realism tolerances (see the table)")
        return
    if not args.out:
        raise CommandError("simulate needs --out DIR")
    result = simulate.simulate(args.scenario, seed=args.seed, out=args.out, strength=args.strength,
                               n_users=args.users, n_movies=args.movies, until=args.until)
    result["out"] = str(args.out)
    emit(args, result, _render_simulate)


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
