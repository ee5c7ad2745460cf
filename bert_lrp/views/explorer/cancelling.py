"""Cancelling the explorer's model runs from the HTTP side.

A run takes a ``cancelled`` :class:`threading.Event` that the Explorer checks between forward
chunks on its model thread. The app sets it when the run's client goes away
(:func:`watching_disconnect`: the ASGI ``http.disconnect`` message) and, for every run at once,
when the server stops (:meth:`Cancellations.cancel_all`: the first Ctrl-C).
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Set


class Cancellations:
    """The ``cancelled`` events of the runs under way on one app (no state shared between apps)."""

    def __init__(self) -> None:
        self._live: Set[threading.Event] = set()
        self._lock = threading.Lock()
        self.stopped = False

    def new(self) -> threading.Event:
        """A run's event, registered until :meth:`discard`; already set once the server stops."""
        event = threading.Event()
        with self._lock:
            if self.stopped:
                event.set()
            self._live.add(event)
        return event

    def discard(self, event: threading.Event) -> None:
        with self._lock:
            self._live.discard(event)

    def cancel_all(self) -> int:
        """Set every live event and every later one (the server is stopping); how many were live."""
        with self._lock:
            self.stopped = True
            live = list(self._live)
        for event in live:
            event.set()
        return len(live)

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)


async def set_on_disconnect(receive: Callable[[], Awaitable[Dict[str, Any]]], cancelled: threading.Event) -> None:
    """Wait for the client's disconnect (the ASGI ``http.disconnect`` message); then set ``cancelled``."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            cancelled.set()
            return


@contextlib.asynccontextmanager
async def watching_disconnect(receive: Callable[[], Awaitable[Dict[str, Any]]], cancellations: Cancellations
                              ) -> AsyncIterator[threading.Event]:
    """A registered ``cancelled`` event, set when the client disconnects while the block runs.

    Call it after the request body has been read whole: the next ASGI message is then the
    disconnect (or nothing, until the response is complete)."""
    cancelled = cancellations.new()
    watcher = asyncio.ensure_future(set_on_disconnect(receive, cancelled))
    try:
        yield cancelled
    finally:
        watcher.cancel()
        cancellations.discard(cancelled)
