"""Bare servers the benchmarks compare with (run as scripts, one server each):

    python benchmarks/_bare_servers.py kserve PORT     # a kserve.Model that returns a constant
    python benchmarks/_bare_servers.py starlette PORT  # a bare Starlette JSON endpoint on uvicorn
    python benchmarks/_bare_servers.py proxy PORT URL  # a plain aiohttp reverse proxy to URL
"""

from __future__ import annotations

import sys


def kserve_constant(port: int) -> None:
    sys.argv = sys.argv[:1]  # kserve parses the command line at import
    import kserve

    class Constant(kserve.Model):
        def __init__(self):
            super().__init__("movie-recommender")
            self.ready = True

        def predict(self, payload, headers=None):
            return {"predictions": [{"movie_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}]}

    kserve.ModelServer(http_port=port, workers=1, enable_grpc=False, enable_latency_logging=False).start([Constant()])


def starlette_json(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request):
        await request.body()
        return JSONResponse({"predictions": [{"movie_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}]})

    app = Starlette(routes=[Route("/v1/models/movie-recommender:predict", predict, methods=["POST"]),
                            Route("/v1/models/movie-recommender", lambda r: JSONResponse({"ready": True}))])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def plain_proxy(port: int) -> None:
    """Forward every request to ``sys.argv[3]`` and nothing else: the floor of an aiohttp hop."""
    import uvloop
    from aiohttp import ClientSession, TCPConnector, web

    backend = sys.argv[3]

    async def start(app):
        app["session"] = ClientSession(connector=TCPConnector(limit=0), auto_decompress=False)

    async def forward(request):
        body = await request.read()
        async with request.app["session"].request(request.method, f"{backend}{request.rel_url}", data=body,
                                                  headers={"Content-Type": request.content_type}) as answer:
            return web.Response(body=await answer.read(), status=answer.status, content_type="application/json")

    app = web.Application()
    app.on_startup.append(start)
    app.router.add_route("*", "/{tail:.*}", forward)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    {"kserve": kserve_constant, "starlette": starlette_json, "proxy": plain_proxy}[sys.argv[1]](int(sys.argv[2]))
