"""``POST /api/explain/stream``: a run's events, emitted on the model thread, sent as NDJSON lines.

:class:`EventBridge` is the ``emit(event)`` the Explorer's ``explain_stream`` calls on its model
thread: each event is encoded there (one JSON object, one line) and handed to the event loop's
:class:`asyncio.Queue` with ``loop.call_soon_threadsafe``; ``progress`` events come through at
least :data:`PROGRESS_GAP` seconds apart (about 5 a second: the explorer paces them itself, this
bounds a run that does not). :class:`NdjsonResponse` sends the lines as they come
and ends the stream with exactly one terminal event (``done``, ``error`` or ``cancelled``): the
Explorer's own, or, when the run ended without one, the one its outcome calls for.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional

from .cancelling import set_on_disconnect
from .json_io import json_bytes

PROGRESS_GAP = 0.15  # seconds between two progress events let through
TERMINAL = ("done", "error", "cancelled")
log = logging.getLogger("bert_lrp.serve")


class EventBridge:
    """Events from the model thread to the event loop ``loop`` (see the module docstring)."""

    _END = b""  # queued once the run is over

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: "asyncio.Queue[bytes]" = asyncio.Queue()
        self.emitted = 0        # events queued (the first tells that the run has started)
        self.last_kind: Optional[str] = None
        self._last_progress = float("-inf")

    def emit(self, event: Dict[str, Any]) -> None:
        """Queue ``event`` (a JSON object with an ``"event"`` name) as one NDJSON line; thread-safe."""
        kind = event.get("event")
        if kind == "progress":
            now = time.monotonic()
            if now - self._last_progress < PROGRESS_GAP:
                return
            self._last_progress = now
        self.last_kind = kind
        self.emitted += 1
        self._put(json_bytes(event) + b"\n")

    def end(self) -> None:
        """Mark the run over (after its last event); thread-safe."""
        self._put(self._END)

    def _put(self, line: bytes) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, line)
        except RuntimeError:  # the loop is closed: the server has stopped, nobody reads
            pass

    async def next_line(self) -> Optional[bytes]:
        """The next line, or None once the run is over."""
        line = await self.queue.get()
        return None if line == self._END else line


def closing_event(future: "concurrent.futures.Future[Any]", cancelled: threading.Event,
                  error_fields: Callable[[BaseException], Optional[Dict[str, Any]]]) -> Dict[str, Any]:
    """The terminal event of a run that ended without one: from its ``future``'s outcome.

    ``error_fields(exception)``: ``{"status", "error", "field"}`` of a refused request, None for an
    unexpected error (then a logged ``internal error``)."""
    error = future.exception()
    if error is None:
        result = future.result()
        if result is None:
            return {"event": "error", "status": 500, "error": "internal error: the run ended without a result",
                    "field": None}
        return {"event": "done", "payload": result}
    if cancelled.is_set():
        return {"event": "cancelled"}
    fields = error_fields(error)
    if fields is not None:
        return {"event": "error", **fields}
    log.error("internal error in /api/explain/stream", exc_info=error)
    message = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    return {"event": "error", "status": 500, "error": f"internal error: {message}", "field": None}


class NdjsonResponse:
    """An ASGI response streaming the lines of ``bridge`` (``application/x-ndjson``, status 200).

    ``first``: a line already taken from the bridge; ``future``: the run; ``cancelled``: its event,
    set here if the client disconnects mid-stream; ``on_close``: called once the response is over
    (sent whole or abandoned)."""

    media_type = "application/x-ndjson"

    def __init__(self, bridge: EventBridge, first: bytes, future: "concurrent.futures.Future[Any]",
                 cancelled: threading.Event, error_fields: Callable[[BaseException], Optional[Dict[str, Any]]],
                 headers: Mapping[str, str], on_close: Callable[[], None]) -> None:
        self.bridge, self.first, self.future, self.cancelled = bridge, first, future, cancelled
        self.error_fields, self.headers, self.on_close = error_fields, dict(headers), on_close

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        watcher = asyncio.ensure_future(set_on_disconnect(receive, self.cancelled))
        try:
            raw = [(b"content-type", self.media_type.encode()), (b"x-accel-buffering", b"no")]
            raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
            await send({"type": "http.response.start", "status": 200, "headers": raw})
            line: Optional[bytes] = self.first
            while line is not None:  # after a disconnect the sends go nowhere; the run ends at its next chunk
                await send({"type": "http.response.body", "body": line, "more_body": True})
                line = await self.bridge.next_line()
            if self.bridge.last_kind not in TERMINAL:
                closing = closing_event(self.future, self.cancelled, self.error_fields)
                await send({"type": "http.response.body", "body": json_bytes(closing) + b"\n", "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away while a line was being sent
            self.cancelled.set()
        finally:
            watcher.cancel()
            self.on_close()
