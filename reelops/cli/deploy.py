"""`reelops deploy`: roll a model version out (canary with automatic analysis, blue-green, shadow)
and act on the rollout."""

from __future__ import annotations

from reelops.cli.common import CommandError, emit

ACTIONS = ("status", "promote", "rollback", "stop", "stop-shadow")


def add_commands(commands, with_json) -> None:
    """Add this group's commands to the ``reelops`` parser."""
    deploy = with_json(commands.add_parser(
        "deploy", help="roll out a version (canary with automatic analysis, blue-green, shadow); status, promote, "
                       "rollback, stop, stop-shadow",
        description="reelops deploy VERSION [--strategy canary|blue-green|shadow] [--percent N] [--analysis auto|manual] | "
                    "reelops deploy status|promote|rollback|stop|stop-shadow"))
    deploy.add_argument("what", metavar="VERSION|ACTION", help=f"a registered version, or one of {', '.join(ACTIONS)}")
    deploy.add_argument("--strategy", choices=["canary", "blue-green", "shadow"], default="canary",
                        help="canary (default), blue-green, or shadow: the version answers a copy of every request, "
                             "compared with the primary's answer and seen by nobody (local plane)")
    deploy.add_argument("--percent", type=int, default=10, help="the canary's share of traffic (1-99, default 10)")
    deploy.add_argument("--target", choices=["local", "kserve"], default="local",
                        help="local: the local serving plane (one router, one predictor process per revision); "
                             "kserve: a cluster through KServeClient")
    deploy.add_argument("--namespace", default=None, help="kserve: the namespace (default: the kubeconfig context's)")
    deploy.add_argument("--kubeconfig", default=None, help="kserve: kubeconfig file (default: KUBECONFIG, ~/.kube/config, "
                                                           "or the pod's in-cluster configuration)")
    deploy.add_argument("--timeout", type=float, default=600.0,
                        help="kserve: seconds to wait for an InferenceService to become ready (default 600)")
    deploy.add_argument("--storage-uri", default=None,
                        help="kserve: where the cluster reads the version's model folder (default: its artifact "
                             "location in the tracking store)")
    deploy.add_argument("--port", type=int, default=None, help="the router's port when the plane starts (default: free)")
    deploy.add_argument("--analysis", choices=["auto", "manual"], default="auto",
                        help="canary only: auto (default) watches canary and stable and promotes or rolls back on its "
                             "own, returning after the decision; manual leaves it to deploy promote|rollback")
    deploy.add_argument("--prometheus-url", default=None,
                        help="kserve with --analysis auto: the Prometheus the analysis queries (PromQL)")
    deploy.add_argument("--rule", action="append", default=[], metavar="KEY=VALUE",
                        help="a rule of the canary analysis, repeatable: stars_margin, error_margin, latency_ratio, latency_slack_ms, "
                             "alpha, min_canary_requests, min_feedback, max_canary_requests, poll_seconds, "
                             "timeout_seconds, unreachable_polls (defaults and their reasons: README, Canary analysis)")
    detector = deploy.add_mutually_exclusive_group()
    detector.add_argument("--detector", dest="detector", action="store_true", default=None,
                          help="local: start a drift detector beside each revision (the default)")
    detector.add_argument("--no-detector", dest="detector", action="store_false",
                          help="local: no drift detector beside the revisions started from now on")
    deploy.add_argument("--label-wait", type=float, default=None,
                        help="local: seconds the detector waits for a full window's ratings (default 30)")
    deploy.add_argument("--retrain-command", default=None,
                        help="local: what the detector runs when the retraining policy decides, e.g. "
                             "'reelops pipeline run training --param source=...' (default: decide and report only)")
    deploy.add_argument("--force", action="store_true", help="deploy a version the gate did not bless (needs --reason)")
    deploy.add_argument("--reason", default=None, help="why (recorded in the alias history)")
    deploy.set_defaults(handler=cmd_deploy)


def _policy(rules: list):
    """The analysis' rules from ``--rule key=value`` (the defaults for the rest)."""
    import dataclasses

    from reelops.deploy.analysis import CanaryPolicy
    from reelops.params import parse_key_values

    try:
        values = parse_key_values(rules)
    except ValueError as error:
        raise CommandError(str(error).replace("--param", "--rule")) from None
    known = {f.name for f in dataclasses.fields(CanaryPolicy)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CommandError(f"--rule {unknown[0]}: unknown rule (known: {', '.join(sorted(known))})")
    try:
        return CanaryPolicy(**values)
    except (TypeError, ValueError) as error:
        raise CommandError(f"--rule: {error}") from None


def _progress(verdict: dict) -> None:
    """One line per poll on stderr while the analysis runs."""
    import sys

    states = "  ".join(f"{c['metric']}: {c['state']}" + (f" ({c['worse_by']:+.3g})" if "worse_by" in c else "")
                       for c in verdict["comparisons"])
    print(f"[{verdict['seconds']:>6.0f} s] canary {verdict['canary_requests']:,} requests  {states}  "
          f"-> {verdict['decision']}", file=sys.stderr, flush=True)


def cmd_deploy(args) -> None:
    from reelops import deploy

    where = {"target": args.target}
    if args.target == "kserve":
        where["cluster"] = {"namespace": args.namespace, "kubeconfig": args.kubeconfig, "timeout": args.timeout}
    try:
        if args.what == "status":
            result = deploy.status(**where)
        elif args.what == "promote":
            result = deploy.promote(reason=args.reason, **where)
        elif args.what == "rollback":
            result = deploy.rollback(reason=args.reason, **where)
        elif args.what == "stop-shadow":
            result = deploy.stop_shadow(reason=args.reason)
        elif args.what == "stop":
            result = deploy.stop()
            emit(args, result, lambda r: print(f"stopped {len(r['stopped'])} revision(s) and the router"
                                               if r["stopped"] else "no local plane was running"))
            return
        else:
            policy = _policy(args.rule)
            detector = {key: value for key, value in (("enabled", args.detector), ("label_wait", args.label_wait),
                                                      ("retrain_command", args.retrain_command)) if value is not None}
            result = deploy.deploy(args.what, strategy=args.strategy, percent=args.percent, force=args.force,
                                   reason=args.reason, port=args.port, storage_uri=args.storage_uri,
                                   analysis=args.analysis, policy=policy, prometheus_url=args.prometheus_url,
                                   progress=None if args.json else _progress, detector=detector or None, **where)
    except deploy.DeployError as error:
        raise CommandError(str(error)) from error
    except KeyboardInterrupt:
        raise CommandError("canary analysis interrupted: the canary keeps its share of traffic; "
                           "reelops deploy promote or reelops deploy rollback") from None
    emit(args, result, render_cluster_status if args.target == "kserve" else render_status)


def render_status(result: dict) -> None:
    """The plane as a table: one row per revision."""
    from reelops.console import print_table

    if not result.get("revisions"):
        print("no deployment on the local plane (reelops deploy VERSION starts one)")
        return
    rows = [[r["revision"], r["version"], f"{r['traffic']}%", ",".join(r["tags"]) or "-",
             "yes" if r["ready"] else ("no" if r["running"] else "stopped"), str(r["port"] or "-")]
            for r in result["revisions"]]
    print_table(rows, ["revision", "version", "traffic", "tags", "ready", "port"],
                title=f"{result['url']}  phase: {result['phase']}  (router {'up' if result['running'] else 'DOWN'})")
    status = result["status"]
    print(f"latestRolledoutRevision {status['latestRolledoutRevision']}, "
          f"previousRolledoutRevision {status['previousRolledoutRevision'] or '-'}")
    render_detectors(result["revisions"])
    render_analysis(result.get("analysis"))
    render_shadow(result.get("shadow"))


def render_detectors(revisions: list) -> None:
    """Each revision's drift detector: windows judged, verdicts, the retraining decision."""
    from reelops.console import print_table

    rows = []
    for r in revisions:
        detector = r.get("detector")
        if not detector:
            continue
        if not detector.get("running") or "windows_judged" not in detector:
            rows.append([r["revision"], r["version"], "NOT running" if not detector.get("running") else "no answer",
                         "-", "-", "-", "-"])
            continue
        verdicts = ", ".join(f"{k} {v}" for k, v in detector["verdicts"].items()) or "-"
        dropped = sum(detector["dropped"].values())
        retrain = detector.get("retrain")
        if retrain:
            trigger = retrain.get("trigger") or {}
            decided = f"RETRAIN after window {retrain['window']}" + (
                " (run started)" if trigger.get("started") else " (claimed elsewhere)" if trigger else "")
        elif detector.get("decision"):
            cooling = any("cooldown" in reason for reason in detector["decision"]["reasons"])
            decided = "keep (in cooldown after a retrain)" if cooling else "keep"
        else:
            decided = "-"
        rows.append([r["revision"], r["version"], f"{detector['interactions']:,}", detector["windows_judged"], verdicts,
                     f"{dropped:,}", decided])
    if rows:
        print_table(rows, ["revision", "version", "interactions", "windows", "verdicts", "dropped", "decision"],
                    title="drift detectors")

def render_shadow(shadow: dict | None) -> None:
    """The shadow's report: one row per window of compared requests (the last ten)."""
    from reelops.console import print_table

    if not shadow:
        return
    report = shadow.get("report") or {}
    windows = report.get("windows", [])[-10:] + ([report["current"]] if report.get("current", {}).get("requests") else [])

    def shown(value, form="{:.3f}"):
        return "-" if value is None else form.format(value)

    rows = [[w["window"], w["requests"], shown(w["agreement"]), shown(w["rank_correlation"]),
             shown(w["score_difference"]), shown(w["primary_p50_ms"], "{:.2f}"), shown(w["shadow_p50_ms"], "{:.2f}")]
            for w in windows]
    print_table(rows, ["window", "requests", "agreement@10", "rank corr.", "score diff.", "primary p50 ms",
                       "shadow p50 ms"],
                title=f"shadow: version {shadow['version']} ({shadow['revision']}, "
                      f"{'running' if shadow['running'] else 'NOT running'})")
    if report:
        dropped = ", ".join(f"{k} {v}" for k, v in report.get("dropped", {}).items()) or "none"
        errors = ", ".join(f"{k} {v}" for k, v in report.get("shadow_errors", {}).items()) or "none"
        print(f"compared {report['compared']:,} of {report['events'] // 2:,} logged requests; dropped: {dropped}; "
              f"shadow errors: {errors}")
    else:
        print(f"the comparator at {shadow['comparator']} did not answer")


def render_analysis(analysis: dict | None) -> None:
    """The latest canary analysis: its decision and one row per comparison with its interval."""
    from reelops.console import print_table

    if not analysis:
        return
    rows = []
    for c in analysis.get("comparisons", []):
        interval = c.get("interval")
        shown = {"quality": lambda c: f"{c['canary']:.3f} vs {c['stable']:.3f} stars",
                 "errors": lambda c: f"{c['canary']:.2%} vs {c['stable']:.2%}",
                 "latency": lambda c: f"p95 {c['canary_p95_ms']:.2f} vs {c['stable_p95_ms']:.2f} ms"}
        rows.append([c["metric"], shown[c["metric"]](c) if "worse_by" in c else "-",
                     f"{c['worse_by']:+.4f}" if "worse_by" in c else "-",
                     f"[{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else "-", f"{c['margin']:g}",
                     "/".join(str(n) for n in c.get("n", [])), c["state"]])
    print_table(rows, ["comparison", "canary vs stable", "worse by", "always-valid interval", "margin",
                       "n canary/stable", "state"],
                title=f"canary analysis of version {analysis.get('version', '?')} ({analysis.get('canary')} vs "
                      f"{analysis.get('stable')}): {analysis['decision']}")
    print(f"reason: {analysis['reason']}")


def render_cluster_status(result: dict) -> None:
    """The InferenceServices as KServe reports them: one row per traffic target."""
    from reelops.console import print_table

    if not result["services"]:
        print(f"no reelops InferenceService in namespace {result['namespace']}")
        return
    for name, service in result["services"].items():
        rows = [[t.get("revisionName", ""), f"{t.get('percent', 0)}%", t.get("tag") or "-",
                 "yes" if t.get("latestRevision") else "no"] for t in service["traffic"]]
        print_table(rows, ["revision", "traffic", "tag", "latest"],
                    title=f"{result['namespace']}/{name}  {service['url'] or '-'}  ready: {'yes' if service['ready'] else 'no'}"
                          f"  phase: {service['phase']}  latest version: {service['latest_version']}")
        print(f"latestRolledoutRevision {service['latestRolledoutRevision'] or '-'}, "
              f"previousRolledoutRevision {service['previousRolledoutRevision'] or '-'}")
    render_analysis(result.get("analysis"))
