"""The explorer's web app (Starlette): the page, its static files and the JSON API of
:class:`~bert_lrp.views.explorer.explorer.Explorer` (see docs/serve.md and docs/serve_safety.md).

Every request first passes :class:`~.guard.Guard` (its Host, Origin and Content-Type; nothing
else runs for a request it refuses); a body is read in pieces up to :data:`MAX_BODY` bytes within
:data:`BODY_SECONDS` and parsed strictly (:mod:`.json_io`). Every answer carries a
Content-Security-Policy that allows only the explorer's own scripts and styles; a refused request
is ``{"error": one line, "field": name}`` with its 4xx status (a wrong method: 405 with
``Allow``); an unexpected error is a 500 ``{"error": "internal error: ..."}``, logged, and the
server goes on. Explain runs are cancelled when their client disconnects, and all at once by
``app.state.stop()`` (the server's first Ctrl-C; see :mod:`.cancelling`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Sequence

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ...attribution.heatmaps import CSS as REPORT_CSS
from .cancelling import Cancellations, set_on_disconnect, watching_disconnect
from .errors import ApiError
from .explorer import Explorer
from .guard import Guard, read_body
from .json_io import BadJson, json_bytes, parse_json
from .ndjson import EventBridge, NdjsonResponse

STATIC = Path(__file__).parent / "static"
MAX_BODY = 2 << 20      # bytes of a request body (an upload is at most 1 MB of text)
BODY_SECONDS = 30.0     # a body not all there by then: 408 (a client that stopped sending holds nothing)
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                      "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
           "X-Frame-Options": "DENY", "Cross-Origin-Resource-Policy": "same-origin",
           "Cross-Origin-Opener-Policy": "same-origin"}
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html",
                **dict.fromkeys(["api.js", "attention.js", "dataset.js", "dom.js", "explain.js", "form.js", "mask.js",
                                 "results.js", "tabs.js", "whatif.js"], "text/javascript")}  # the page's ES modules
CANCELLED = "the request was cancelled (its client went away or the server is stopping)"
log = logging.getLogger("bert_lrp.serve")


class _JSON(Response):
    """JSON as browsers read it (:func:`~.json_io.json_bytes`: a float that is not finite, e.g. a
    conservation ratio of a target logit of exactly 0, becomes ``null``, not a 500)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def _json(payload: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> Response:
    return _JSON(payload, status_code=status, headers={**HEADERS, **(headers or {})})


def _error(error: ApiError) -> Response:
    closing = {"Connection": "close"} if error.status in (408, 413) else None  # the rest of the body stays unread
    return _json({"error": str(error), "field": error.field}, error.status, closing)


def _error_fields(error: BaseException) -> Optional[Dict[str, Any]]:
    """A refused request's ``status``, ``error`` and ``field`` (an :class:`ApiError`), else None."""
    if isinstance(error, ApiError):
        return {"status": error.status, "error": str(error), "field": error.field}
    return None


async def _body(request: Request) -> Any:
    """The request's JSON body: read in pieces (413 over :data:`MAX_BODY`, 408 after
    :data:`BODY_SECONDS`) and parsed strictly (400: see :mod:`.json_io`)."""
    raw = await read_body(request, MAX_BODY, BODY_SECONDS)
    try:
        return parse_json(raw)
    except BadJson as error:
        raise ApiError(400, str(error)) from None


def _endpoint(answer: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an endpoint: ApiError -> its JSON error; anything else -> a logged 500, one line."""
    async def wrapped(request: Request) -> Response:
        try:
            return await answer(request)
        except ApiError as error:
            return _error(error)
        except ClientDisconnect:  # gone while sending its body: nobody reads an answer
            return Response(status_code=400, headers={"Connection": "close"})
        except Exception as error:  # noqa: BLE001 -- the server keeps serving
            log.exception("internal error on %s %s", request.method, request.url.path)
            message = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            return _json({"error": f"internal error: {message}", "field": None}, 500)
    return wrapped


class Endpoints:
    """The answers of the explorer's routes, for one ``explorer``; :meth:`stop` cancels its runs."""

    def __init__(self, explorer: Explorer) -> None:
        self.explorer = explorer
        self.cancellations = Cancellations()

    def routes(self) -> List[Route]:
        page = [("/", self.page, None), ("/static/{name}", self.static, None)]
        api = [("/models", self.models, None), ("/methods", self.methods, None),  # under /api
               ("/plan", self.plan, ["POST"]), ("/explain", self.explain, ["POST"]),
               ("/explain/stream", self.explain_stream, ["POST"]),
               ("/attention", self.attention, ["POST"]), ("/attention/overview", self.attention_overview, ["POST"]),
               ("/mask", self.mask, ["POST"]), ("/report", self.report, ["POST"]),
               ("/datasets", self.datasets, ["GET", "POST"]), ("/datasets/{id}", self.delete_dataset, ["DELETE"]),
               ("/datasets/{id}/rows", self.rows, None), ("/datasets/{id}/rows/{index}", self.row, None),
               ("/datasets/{id}/words", self.words, None), ("/datasets/{id}/metrics", self.metrics, None),
               ("/jobs/{id}", self.job, ["GET", "DELETE"])]
        api = page + [("/api" + path, answer, methods) for path, answer, methods in api]
        return [Route(path, _endpoint(answer), methods=methods) for path, answer, methods in api]

    def stop(self) -> None:
        """Cancel every run under way and every later one: the server is stopping."""
        self.cancellations.cancel_all()
        self.explorer.cancel_all()

    # ------------------------------------------------------------------ running
    @staticmethod
    def run(method: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return run_in_threadpool(method, *args)  # off the event loop

    def on_model(self, method: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return asyncio.wrap_future(self.explorer.submit(method, *args))  # checks, model run and views on its thread

    async def cancellable(self, request: Request, method: Callable[..., Any], body: Any) -> Any:
        """``method(body, cancelled)`` on the model thread, cancelled if the client disconnects (then 503)."""
        async with watching_disconnect(request.receive, self.cancellations) as cancelled:
            try:
                return await self.on_model(method, body, cancelled)
            except Exception:
                if cancelled.is_set():
                    raise ApiError(503, CANCELLED) from None
                raise

    # ------------------------------------------------------------------ page and catalogue
    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == "report.css":
            return Response(REPORT_CSS, media_type="text/css", headers=HEADERS)
        if name not in STATIC_FILES:
            raise ApiError(404, f"no static file {name[:60]!r}")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers=HEADERS)

    async def models(self, request: Request) -> Response:
        return _json(self.explorer.models_info())

    async def methods(self, request: Request) -> Response:
        return _json(self.explorer.methods_info())

    # ------------------------------------------------------------------ explain
    async def plan(self, request: Request) -> Response:
        return _json(await self.run(self.explorer.plan, await _body(request)))

    async def explain(self, request: Request) -> Response:
        return _json(await self.cancellable(request, self.explorer.explain, await _body(request)))

    async def explain_stream(self, request: Request) -> Response:
        """The run's events as NDJSON; a request refused before the run starts: a plain JSON error."""
        body = await _body(request)
        bridge = EventBridge(asyncio.get_running_loop())
        cancelled = self.cancellations.new()
        streaming = False
        watcher = asyncio.ensure_future(set_on_disconnect(request.receive, cancelled))
        try:
            future = self.explorer.submit(self.explorer.explain_stream, body, bridge.emit, cancelled)
            future.add_done_callback(lambda _: bridge.end())
            first = await bridge.next_line()
            if first is None:  # over before its first event: refused (or cancelled) as a whole
                if future.exception() is None:
                    return _json(future.result())
                if cancelled.is_set():
                    raise ApiError(503, CANCELLED)
                raise future.exception()
            streaming = True
            return NdjsonResponse(bridge, first, future, cancelled, _error_fields, HEADERS,
                                  on_close=lambda: self.cancellations.discard(cancelled))
        finally:
            watcher.cancel()  # the response watches from here on
            if not streaming:  # answered whole, or this task was cancelled: the run (if any) stops
                cancelled.set()
                self.cancellations.discard(cancelled)

    async def attention(self, request: Request) -> Response:
        return _json(await self.on_model(self.explorer.attention, await _body(request)))

    async def attention_overview(self, request: Request) -> Response:
        return _json(await self.on_model(self.explorer.attention_overview, await _body(request)))

    async def mask(self, request: Request) -> Response:
        return _json(await self.on_model(self.explorer.mask, await _body(request)))

    async def report(self, request: Request) -> Response:
        html = await self.run(self.explorer.report, await _body(request))
        return Response(html, media_type="text/html", headers={
            **HEADERS, "Content-Disposition": 'attachment; filename="bert-lrp-report.html"'})

    # ------------------------------------------------------------------ data sets and jobs
    async def datasets(self, request: Request) -> Response:
        if request.method == "POST":
            return _json(await self.run(self.explorer.upload, await _body(request)), 202)
        return _json(self.explorer.datasets_info())

    async def delete_dataset(self, request: Request) -> Response:
        await self.run(self.explorer.delete_dataset, request.path_params["id"])
        return Response(status_code=204, headers=HEADERS)

    async def rows(self, request: Request) -> Response:
        return _json(await self.run(self.explorer.rows, request.path_params["id"], dict(request.query_params)))

    async def row(self, request: Request) -> Response:
        return _json(await self.run(self.explorer.row, request.path_params["id"], request.path_params["index"]))

    async def words(self, request: Request) -> Response:
        return _json(await self.run(self.explorer.words, request.path_params["id"], dict(request.query_params)))

    async def metrics(self, request: Request) -> Response:
        return _json(await self.run(self.explorer.metrics, request.path_params["id"], dict(request.query_params)))

    async def job(self, request: Request) -> Response:
        if request.method == "DELETE":
            await self.run(self.explorer.cancel_job, request.path_params["id"])
            return Response(status_code=204, headers=HEADERS)
        return _json(self.explorer.job(request.path_params["id"]))


async def _not_found(request: Request, error: Exception) -> Response:
    return _json({"error": f"no such page: {request.url.path[:100]}", "field": None}, 404)


async def _wrong_method(request: Request, error: Exception) -> Response:
    allow = (getattr(error, "headers", None) or {}).get("Allow", "")
    return _json({"error": f"{request.method[:10]} is not allowed on {request.url.path[:100]} (allowed: {allow})",
                  "field": None}, 405, {"Allow": allow})


def create_app(explorer: Explorer, hosts: Sequence[str] = ()) -> Starlette:
    """The Starlette app serving ``explorer``; ``hosts``: the names it is reached by besides
    localhost, 127.0.0.1 and [::1] (the ``--host`` given). ``app.state.stop()`` cancels every
    run under way and every later one (the server is stopping)."""
    endpoints = Endpoints(explorer)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(explorer.close)  # the runs under way finish (cancelled by stop(), if called)

    app = Starlette(routes=endpoints.routes(), exception_handlers={404: _not_found, 405: _wrong_method},
                    middleware=[Middleware(Guard, hosts=hosts, max_body=MAX_BODY, headers=HEADERS)], lifespan=lifespan)
    app.state.stop = endpoints.stop
    return app
