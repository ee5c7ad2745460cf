"""The explorer's web app (Starlette): the page, its static files and the JSON API of
:class:`~bert_lrp.views.explorer.explorer.Explorer` (see docs/serve.md).

Every answer carries a Content-Security-Policy that allows only the explorer's own scripts and
styles; a refused request is ``{"error": one line, "field": name}`` with its 4xx status; an
unexpected error is a 500 ``{"error": "internal error: ..."}``, logged, and the server goes on.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ...attribution.heatmaps import CSS as REPORT_CSS
from .explorer import ApiError, Explorer

STATIC = Path(__file__).parent / "static"
MAX_BODY = 2 << 20  # bytes of a request body (an upload is at most 1 MB of text)
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                      "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html",
                **dict.fromkeys(["api.js", "attention.js", "dataset.js", "dom.js", "explain.js", "form.js", "mask.js",
                                 "results.js", "tabs.js", "whatif.js"], "text/javascript")}  # the page's ES modules
log = logging.getLogger("bert_lrp.serve")


class _JSON(JSONResponse):
    """JSON as browsers read it: a float that is not finite (a conservation ratio of a target logit
    of exactly 0, a data file written with ``Infinity``) becomes ``null``, not a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:
            return super().render(_finite(content))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _json(payload: Any, status: int = 200) -> JSONResponse:
    return _JSON(payload, status_code=status, headers=HEADERS)


def _error(error: ApiError) -> JSONResponse:
    return _json({"error": str(error), "field": error.field}, error.status)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"the request body is larger than {MAX_BODY:,} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, f"the request body is not JSON ({type(error).__name__})") from None


def _endpoint(answer: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an endpoint: ApiError -> its JSON error; anything else -> a logged 500, one line."""
    async def wrapped(request: Request) -> Response:
        try:
            return await answer(request)
        except ApiError as error:
            return _error(error)
        except Exception as error:  # noqa: BLE001 -- the server keeps serving
            log.exception("internal error on %s %s", request.method, request.url.path)
            message = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            return _json({"error": f"internal error: {message}", "field": None}, 500)
    return wrapped


def create_app(explorer: Explorer) -> Starlette:
    """The Starlette app serving ``explorer``."""
    def run(method: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return run_in_threadpool(method, *args)  # off the event loop

    def on_model(method: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return asyncio.wrap_future(explorer.submit(method, *args))  # checks, model run and views on its thread

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "report.css":
            return Response(REPORT_CSS, media_type="text/css", headers=HEADERS)
        if name not in STATIC_FILES:
            raise ApiError(404, f"no static file {name[:60]!r}")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers=HEADERS)

    async def models(request: Request) -> Response:
        return _json(explorer.models_info())

    async def methods(request: Request) -> Response:
        return _json(explorer.methods_info())

    async def explain(request: Request) -> Response:
        return _json(await on_model(explorer.explain, await _body(request)))

    async def attention(request: Request) -> Response:
        return _json(await on_model(explorer.attention, await _body(request)))

    async def mask(request: Request) -> Response:
        return _json(await on_model(explorer.mask, await _body(request)))

    async def report(request: Request) -> Response:
        html = await run(explorer.report, await _body(request))
        return Response(html, media_type="text/html", headers={
            **HEADERS, "Content-Disposition": 'attachment; filename="bert-lrp-report.html"'})

    async def datasets(request: Request) -> Response:
        if request.method == "POST":
            return _json(await run(explorer.upload, await _body(request)), 202)
        return _json(explorer.datasets_info())

    async def rows(request: Request) -> Response:
        return _json(await run(explorer.rows, request.path_params["id"], dict(request.query_params)))

    async def row(request: Request) -> Response:
        return _json(await run(explorer.row, request.path_params["id"], request.path_params["index"]))

    async def words(request: Request) -> Response:
        return _json(await run(explorer.words, request.path_params["id"], dict(request.query_params)))

    async def job(request: Request) -> Response:
        return _json(explorer.job(request.path_params["id"]))

    async def not_found(request: Request, error: Exception) -> Response:
        return _json({"error": f"no such page: {request.url.path[:100]}", "field": None}, 404)

    routes = [
        Route("/", _endpoint(page)),
        Route("/static/{name}", _endpoint(static)),
        Route("/api/models", _endpoint(models)),
        Route("/api/methods", _endpoint(methods)),
        Route("/api/explain", _endpoint(explain), methods=["POST"]),
        Route("/api/attention", _endpoint(attention), methods=["POST"]),
        Route("/api/mask", _endpoint(mask), methods=["POST"]),
        Route("/api/report", _endpoint(report), methods=["POST"]),
        Route("/api/datasets", _endpoint(datasets), methods=["GET", "POST"]),
        Route("/api/datasets/{id}/rows", _endpoint(rows)),
        Route("/api/datasets/{id}/rows/{index}", _endpoint(row)),
        Route("/api/datasets/{id}/words", _endpoint(words)),
        Route("/api/jobs/{id}", _endpoint(job)),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(explorer.close)  # the runs under way finish

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found}, lifespan=lifespan)
