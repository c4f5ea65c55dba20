"""`reelops manifests`: render the cluster manifests, and check a rendered folder."""

from __future__ import annotations

from reelops.cli.common import CommandError, emit


def add_commands(commands, with_json) -> None:
    """Add this group's commands to the ``reelops`` parser."""
    manifests = commands.add_parser("manifests", help="render and check the Kubernetes manifests")
    actions = manifests.add_subparsers(dest="manifests_command", metavar="ACTION")
    actions.required = True
    render = with_json(actions.add_parser("render", help="write namespace, RBAC, MLflow, InferenceServices, "
                                                         "alerts, dashboard and the recurring run"))
    render.add_argument("--out", required=True, help="folder to write into (created)")
    render.add_argument("--namespace", default="reelops")
    render.add_argument("--serve-image", default=None,
                        help="image of the predictor, tracking server and scheduler (default: REELOPS_SERVE_IMAGE "
                             "or this version's serve image)")
    render.add_argument("--storage-uri", default="",
                        help="serve this model version (s3://, gs://, ...); default: the production alias, "
                             "resolved at start through the tracking server")
    render.add_argument("--shadow-storage-uri", default=None,
                        help="also render shadow.yaml: this model version as a shadow (its InferenceService and the "
                             "comparator), with the primary's logger feeding the comparator through the Broker of "
                             "drift-detector.yaml")
    render.add_argument("--drift-detector", choices=["sidecar", "broker", "none"], default=None,
                        help="the online drift detector: a sidecar in each predictor pod (default), one shared "
                             "detector behind a Knative Broker (drift-detector.yaml), or none")
    render.add_argument("--retrain-source", default=None,
                        help="the data source the detector's retraining run trains on (the training pipeline's "
                             "source parameter)")
    render.add_argument("--mlflow-artifacts", default=None, help="the tracking server's artifact destination")
    render.add_argument("--kfp-host", default=None, help="the Kubeflow Pipelines API the recurring run submits to")
    render.add_argument("--schedule", default=None, help='the recurring monitoring run\'s cron, e.g. "0 3 * * *" (UTC)')
    check = with_json(actions.add_parser("check", help="validate a rendered folder (schemas, annotations, promtool)"))
    check.add_argument("folder")
    manifests.set_defaults(handler=cmd_manifests)


def cmd_manifests(args) -> None:
    if args.manifests_command == "render":
        from dataclasses import replace

        from reelops.manifests import RenderSettings, write

        settings = RenderSettings(namespace=args.namespace, storage_uri=args.storage_uri)
        overrides = {"serve_image": args.serve_image, "mlflow_artifacts": args.mlflow_artifacts,
                     "kfp_host": args.kfp_host, "monitoring_schedule": args.schedule,
                     "shadow_storage_uri": args.shadow_storage_uri, "drift_detector": args.drift_detector,
                     "retrain_source": args.retrain_source}
        settings = replace(settings, **{key: value for key, value in overrides.items() if value})
        paths = [str(path) for path in write(args.out, settings)]
        emit(args, {"written": paths}, lambda r: print("\n".join(f"wrote {p}" for p in r["written"])))
        return
    from pathlib import Path

    from reelops.manifests.check import check_folder

    if not Path(args.folder).is_dir():
        raise CommandError(f"{args.folder}: no such folder (render one with `reelops manifests render --out DIR`)")
    report = check_folder(args.folder)
    result = {"documents": report.documents, "problems": report.problems, "skipped": report.skipped, "ok": report.ok}

    def render_report(r):
        for line in r["skipped"]:
            print(f"skipped: {line}")
        for line in r["problems"]:
            print(f"problem: {line}")
        print(f"{r['documents']} documents checked, {len(r['problems'])} problems")

    emit(args, result, render_report)
    if not report.ok:
        raise SystemExit(1)
