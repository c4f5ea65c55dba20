"""`reelops train`, `evaluate` and `gate`: models in, model directories and decisions out."""

from __future__ import annotations

from reelops.cli.common import emit


def add_commands(commands, with_json) -> None:
    """Add this group's commands to the ``reelops`` parser."""
    from reelops.data import HOLDOUTS
    from reelops.models import ALGORITHMS, DEFAULT_ALGORITHM

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


def cmd_train(args) -> None:
    import time

    from reelops.training import train
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

    emit(args, result, render)


def cmd_evaluate(args) -> None:
    from reelops.services import evaluate_model

    report = evaluate_model(args.model_dir, args.data, k=args.k, report_dir=args.report_dir)

    def render(report):
        from reelops.console import print_table

        k = report["k"]
        rows = [[name, report[name]] for name in ("rmse", "mae", f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}",
                                                  "coverage", "mean_popularity")]
        print_table(rows, ["metric", "value"], title=f"{report['algorithm']} on {report['dataset_version']}: {report['scored']}")
        cold = report["slices"]["cold_users"]
        print(f"\ncold users ({cold['definition']}): {cold['rows']:,} ratings, RMSE {cold['rmse']:.4f}")
        print(f"reports: {report['reports']['html']}")

    emit(args, {k: v for k, v in report.items() if k != "error_histogram"}, render)


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

    emit(args, blessing, render)
