"""Starting the predictor: ``kserve.ModelServer`` on HTTP (and gRPC), loading in the background
so readiness is honest (503 while the model loads, then 200)."""

from __future__ import annotations

import logging
import os
import sys
import threading

from reelops.serving import import_kserve


def serve(model_dir: str | None = None, alias: str | None = None, storage_uri: str | None = None,
          name: str = "movie-recommender", http_port: int = 8080, grpc_port: int | None = 8081,
          logger_url: str | None = None, max_instances: int = 1000, inference_service: str = "movie-recommender",
          allow_unblessed: bool = False) -> None:
    """Serve a model until the process is stopped.

    Args:
        model_dir / alias / storage_uri: where the model comes from (exactly one).
        name: the model name in URLs.
        http_port: the REST port (V1, V2, /metrics, health).
        grpc_port: the gRPC port (V2), or None to serve REST only.
        logger_url: where request/response CloudEvents go (KServe logger compatible).
        max_instances: the most instances one request may carry.
        inference_service: the name the payload logger reports.
        allow_unblessed: serve a model the gate did not bless.
    """
    kserve = import_kserve()
    from reelops.serving.payload_logger import PayloadLogger
    from reelops.serving.predictor import RecommenderModel

    payload_logger = PayloadLogger(logger_url, inference_service) if logger_url else None
    model = RecommenderModel(name, model_dir=model_dir, storage_uri=storage_uri, alias=alias,
                             max_instances=max_instances, payload_logger=payload_logger,
                             allow_unblessed=allow_unblessed)
    server = kserve.ModelServer(http_port=http_port, grpc_port=grpc_port or 8081, workers=1,
                                enable_grpc=grpc_port is not None, enable_latency_logging=False)
    server.register_model(model)

    def load():
        try:
            model.load()
            logging.getLogger("reelops").info("model %s version %s is ready", name, model.version)
        except Exception as error:
            # A server that can never become ready must not stay up answering 503: the
            # process ends non-zero with one line, and Kubernetes restarts (or reports) it.
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"reelops: error: loading the model failed: {message}", file=sys.stderr, flush=True)
            logging.getLogger("reelops").debug("loading the model failed", exc_info=True)
            os._exit(1)

    threading.Thread(target=load, name="model-loader", daemon=True).start()
    server.start([])
