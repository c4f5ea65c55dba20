"""`reelops serve` and `reelops predict`: the KServe predictor and its client."""

from __future__ import annotations

import os

from reelops.cli.common import CommandError, emit, positive_bytes
from reelops.registry import ALIASES, MODEL_NAME


def add_commands(commands, with_json) -> None:
    """Add this group's commands to the ``reelops`` parser."""
    serve = commands.add_parser("serve", help="serve a model with KServe (V1, V2, gRPC, /metrics)")
    source = serve.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-alias", choices=ALIASES)
    source.add_argument("--model-dir")
    source.add_argument("--storage-uri", help="a KServe storage URI (gs://, s3://, pvc://, file://)")
    serve.add_argument("--name", default=MODEL_NAME)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address REST and gRPC bind (default 127.0.0.1; 0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--grpc-port", type=int, default=8081)
    serve.add_argument("--no-grpc", action="store_true")
    serve.add_argument("--logger-url", help="send request/response CloudEvents here (KServe logger format)")
    serve.add_argument("--max-instances", type=int, default=1000)
    serve.add_argument("--max-body-bytes", type=positive_bytes, default=4 << 20,
                       help="largest request body (REST) or message (gRPC) accepted; 413 / RESOURCE_EXHAUSTED above")
    serve.add_argument("--access-log", action="store_true", help="log every request (off: refusals are logged)")
    serve.add_argument("--allow-unblessed", action="store_true",
                       help="serve a model the gate did not bless (tests, benchmarks, experiments)")
    serve.set_defaults(handler=cmd_serve)

    shadow = commands.add_parser(
        "shadow", help="the shadow comparator: takes KServe logger CloudEvents, replays each request against the "
                       "shadow predictor, compares the answers (GET /shadow/status, /metrics)")
    shadow.add_argument("--shadow-url", required=True, help="the shadow predictor, e.g. http://127.0.0.1:8081")
    shadow.add_argument("--name", default=MODEL_NAME, help="the model name in its URLs")
    shadow.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    shadow.add_argument("--port", type=int, default=8090)
    shadow.add_argument("--window", type=int, default=200, help="compared requests per report window (default 200)")
    shadow.add_argument("--workers", type=int, default=2, help="replays in flight to the shadow (default 2)")
    shadow.set_defaults(handler=cmd_shadow)

    predict = with_json(commands.add_parser("predict", help="ask a running predictor for recommendations"))
    predict.add_argument("--url", required=True)
    predict.add_argument("--user", type=int, action="append", required=True, help="user id (repeatable)")
    predict.add_argument("-k", type=int, default=10)
    predict.add_argument("--protocol", choices=["v1", "v2", "grpc"], default="v1",
                         help="REST V1 or V2, or V2 over gRPC (--url host:port, or https://host:port for TLS)")
    predict.add_argument("--name", default=MODEL_NAME)
    predict.add_argument("--host-header", "--service-hostname", dest="host_header", default=None,
                         help="Host header for an ingress that routes by it (KServe: the InferenceService's hostname)")
    predict.add_argument("--token", default=None,
                         help="bearer token sent as Authorization (default: the REELOPS_TOKEN environment variable)")
    predict.set_defaults(handler=cmd_predict)


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


def cmd_shadow(args) -> None:
    from reelops.deploy.shadow import serve_comparator

    serve_comparator(args.shadow_url, port=args.port, host=args.host, name=args.name, window=args.window,
                     workers=args.workers)


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
        answers = recommend(args.url.rstrip("/"), args.user, k=args.k, protocol=args.protocol, name=args.name,
                            host_header=args.host_header, token=args.token or os.environ.get("REELOPS_TOKEN") or None)
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

    emit(args, {"predictions": answers}, render)
