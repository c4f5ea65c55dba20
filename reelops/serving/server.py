"""Starting the predictor: ``kserve.ModelServer`` on HTTP (and gRPC), loading in the background
so readiness is honest (503 while the model loads, then 200).

KServe 0.20 binds every interface (``0.0.0.0`` for REST, ``[::]`` for gRPC) with no option
and takes unbounded bodies; :class:`GuardedModelServer` is the same server with a host for
both, the :mod:`reelops.serving.guard` middleware, a gRPC receive limit, one-line logs for
client errors and an OpenAPI document that describes the V1 request body.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from reelops.serving import import_kserve

DEFAULT_MAX_BODY_BYTES = 4 << 20
logger = logging.getLogger("reelops.serving")


def serve(model_dir: str | None = None, alias: str | None = None, storage_uri: str | None = None,
          name: str = "movie-recommender", http_port: int = 8080, grpc_port: int | None = 8081,
          logger_url: str | None = None, max_instances: int = 1000, inference_service: str = "movie-recommender",
          allow_unblessed: bool = False, host: str = "127.0.0.1", max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
          access_log: bool = False) -> None:
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
        host: the address REST and gRPC bind (``0.0.0.0`` in a container).
        max_body_bytes: the largest request body (REST) or message (gRPC) accepted.
        access_log: log every request (uvicorn's access log).
    """
    import_kserve()
    from reelops.serving.payload_logger import PayloadLogger
    from reelops.serving.predictor import RecommenderModel

    payload_logger = PayloadLogger(logger_url, inference_service) if logger_url else None
    model = RecommenderModel(name, model_dir=model_dir, storage_uri=storage_uri, alias=alias,
                             max_instances=max_instances, payload_logger=payload_logger,
                             allow_unblessed=allow_unblessed)
    server = guarded_model_server(http_port=http_port, grpc_port=grpc_port, host=host, max_body_bytes=max_body_bytes,
                                  is_ready=lambda: model.ready, access_log=access_log)
    server.register_model(model)

    def load():
        try:
            model.load()
            logger.info("model %s version %s is ready", name, model.version)
        except Exception as error:
            # A server that can never become ready must not stay up answering 503: the
            # process ends non-zero with one line, and Kubernetes restarts (or reports) it.
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"reelops: error: loading the model failed: {message}", file=sys.stderr, flush=True)
            logger.debug("loading the model failed", exc_info=True)
            os._exit(1)

    threading.Thread(target=load, name="model-loader", daemon=True).start()
    server.start([])


def guarded_model_server(http_port: int, grpc_port: int | None, host: str, max_body_bytes: int, is_ready,
                         access_log: bool = False):
    """A :class:`kserve.ModelServer` bound to ``host`` with the guard middleware (see the module)."""
    kserve = import_kserve()
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.rest.server import RESTServer

    class GuardedRESTServer(RESTServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.config.host = host
            # uvicorn's access log is a log record per request (about 5% of the CPU under
            # load); refusals are logged one line each by the guard, --access-log turns it on.
            self.config.access_log = access_log

        def _add_middlewares(self, app):
            # Not KServe's TimingMiddleware: it writes two log records per request to
            # "kserve.trace" (its only output; request_predict_seconds comes from the
            # model), which cost about 15% of the server's CPU under load (py-spy).
            from reelops.serving.guard import RequestGuard

            app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes, is_ready=is_ready)

        def _register_endpoints(self, app):
            super()._register_endpoints(app)
            _describe_v1_body(app)

        def _add_exception_handlers(self, app):
            super()._add_exception_handlers(app)
            _one_line_client_errors(app)

    class GuardedGRPCServer(GRPCServer):
        async def start(self, max_workers):
            from concurrent import futures

            from grpc import aio
            from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
            from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
            from kserve.protocol.grpc.servicer import InferenceServicer

            class CountingInterceptor(ExceptionToStatusInterceptor):
                """KServe's status mapping, with refusals counted and logged as one line."""

                async def intercept(self, method, request_or_iterator, context, method_name):
                    from reelops.serving.guard import _NOTE

                    token = _NOTE.set({"reason": None})
                    try:
                        return await super().intercept(method, request_or_iterator, context, method_name)
                    finally:
                        _NOTE.reset(token)

                async def handle_exception(self, ex, request_or_iterator, context, method_name):
                    from grpc import StatusCode
                    from kserve.errors import InvalidInput

                    from reelops.serving.guard import _NOTE, count_error

                    if isinstance(ex, InvalidInput):
                        count_error("INVALID_ARGUMENT", (_NOTE.get() or {}).get("reason"))
                        logger.warning("INVALID_ARGUMENT %s", str(ex)[:300])
                        await context.abort(StatusCode.INVALID_ARGUMENT, ex.reason)
                    count_error(_GRPC_STATUS_OF.get(type(ex).__name__, "INTERNAL"))
                    await super().handle_exception(ex, request_or_iterator, context, method_name)

            servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
            # A message over the limit is refused by gRPC itself with RESOURCE_EXHAUSTED.
            self._server = aio.server(
                futures.ThreadPoolExecutor(max_workers=max_workers),
                interceptors=(LoggingInterceptor(), CountingInterceptor()),
                options=[("grpc.max_send_message_length", max_body_bytes),
                         ("grpc.max_receive_message_length", max_body_bytes)])
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
            address = f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"
            self._server.add_insecure_port(address)
            logger.info("gRPC on %s", address)
            await self._server.start()
            await self._server.wait_for_termination()

    class GuardedModelServer(kserve.ModelServer):
        def start(self, models) -> None:
            import asyncio

            from kserve.model_server import FASTAPI_APP_IMPORT_STRING

            self._register_and_check_atleast_one_model_is_ready(models)
            self._rest_server = GuardedRESTServer(
                FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
                access_log_format=self.access_log_format, workers=1, grace_period=self.grace_period,
                event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive)
            self.servers.append(self._rest_server.start())
            if self.enable_grpc:
                self._grpc_server = GuardedGRPCServer(self.grpc_port, self.dataplane, self.model_repository_extension,
                                                      kwargs={}, grace_period=self.grace_period)
                self.servers.append(self._grpc_server.start(self.max_threads))
            self.setup_event_loop()
            self.register_signal_handler()
            asyncio.run(self._serve())

    return GuardedModelServer(http_port=http_port, grpc_port=grpc_port or 8081, workers=1,
                              enable_grpc=grpc_port is not None, enable_latency_logging=False)


# How KServe's interceptor maps its errors to gRPC statuses (for the error counter).
_GRPC_STATUS_OF = {"InferenceError": "INVALID_ARGUMENT", "UnsupportedProtocol": "INVALID_ARGUMENT",
                   "ServerNotReady": "UNAVAILABLE", "ServerNotLive": "UNAVAILABLE", "ModelNotReady": "UNAVAILABLE",
                   "ModelNotFound": "NOT_FOUND", "NotImplementedError": "UNIMPLEMENTED"}


def _one_line_client_errors(app) -> None:
    """Client errors (and "not ready yet") are logged as one warning line, not a traceback
    (KServe logs each as an error with its stack)."""
    from fastapi.responses import JSONResponse
    from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady

    async def invalid_input(_, error):
        logger.warning("400 %s", str(error)[:300])
        return JSONResponse(status_code=400, content={"error": str(error)})

    async def model_not_found(_, error):
        logger.warning("404 %s", str(error)[:300])
        return JSONResponse(status_code=404, content={"error": str(error)})

    async def model_not_ready(_, error):
        logger.warning("503 %s", str(error)[:300])
        return JSONResponse(status_code=503, content={"error": str(error)})

    app.add_exception_handler(InvalidInput, invalid_input)
    app.add_exception_handler(ModelNotFound, model_not_found)
    app.add_exception_handler(ModelNotReady, model_not_ready)


V1_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["instances"],
    "additionalProperties": False,
    "properties": {
        "instances": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "description": "a user to recommend for (user_id and/or age, gender, occupation), "
                               "or a (user_id, movie_id) pair to predict a rating for",
                "properties": {
                    "user_id": {"type": "integer"},
                    "movie_id": {"type": "integer"},
                    "k": {"type": "integer", "minimum": 1, "maximum": 100},
                    "exclude_rated": {"type": "boolean"},
                    "age": {"type": "number", "minimum": 1, "maximum": 120},
                    "gender": {"type": "string", "enum": ["M", "F"]},
                    "occupation": {"type": "string"},
                },
            },
        },
    },
}


def _describe_v1_body(app) -> None:
    """KServe's V1 ``:predict`` takes a raw request, so its OpenAPI entry has no body: add one."""
    from fastapi.openapi.utils import get_openapi

    def openapi():
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            operation = schema["paths"].get("/v1/models/{model_name}:predict", {}).get("post")
            if operation is not None:
                operation["requestBody"] = {"required": True,
                                            "content": {"application/json": {"schema": V1_REQUEST_SCHEMA}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
