"""The explorer's uvicorn server: how it stops and how long it waits for a client.

* The first Ctrl-C (SIGINT) or SIGTERM stops accepting connections and calls ``on_stop`` (the app's
  ``state.stop``: every run under way is cancelled at its next forward chunk, its client gets a JSON
  503), then uvicorn ends once the answers are out; ``bert-lrp serve`` then exits 130.
* A second Ctrl-C exits at once (``os._exit(130)``): no waiting for the model thread.
* A connection whose request head (request line and headers) has not arrived within
  :data:`HEAD_SECONDS` of connecting, or of its previous answer, is closed (a half-open or
  trickling client holds nothing); an idle kept-alive connection is closed after
  :data:`KEEP_ALIVE_SECONDS` (uvicorn's ``timeout_keep_alive``). A body has its own deadline in
  the app (``BODY_SECONDS``, 408).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from types import FrameType
from typing import Any, Callable, List, Optional

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 5
INTERRUPTED = 130
logger = logging.getLogger("bert_lrp.serve")


class HeadDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is late (see the module docstring)."""

    _head_timer: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if not self._waiting_for_head():
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()  # the next request's head, on a kept-alive connection

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_timer = self.loop.call_later(HEAD_SECONDS, self._head_late)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.transport.close()


class ExplorerServer(uvicorn.Server):
    """uvicorn's server with the explorer's stop (see the module docstring); ``on_stop`` runs on
    the event loop when the server begins to stop, for whatever reason."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], Any]) -> None:
        super().__init__(config)
        self.on_stop = on_stop

    def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
        if self.should_exit and sig == signal.SIGINT:  # the second Ctrl-C: now
            os.write(2, b"\nbert-lrp serve: interrupted again: stopped at once\n")
            os._exit(INTERRUPTED)
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: Optional[List[socket.socket]] = None) -> None:
        try:
            self.on_stop()
        except Exception:  # noqa: BLE001 -- stopping goes on; the runs then end by themselves
            logger.exception("cancelling the runs under way failed")
        await super().shutdown(sockets)


def explorer_server(app: Any) -> ExplorerServer:
    """The server of the explorer app ``app`` (a :func:`~.app.create_app`), quiet but for warnings."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, http=HeadDeadlineH11,
                            timeout_keep_alive=KEEP_ALIVE_SECONDS)
    return ExplorerServer(config, on_stop=app.state.stop)
