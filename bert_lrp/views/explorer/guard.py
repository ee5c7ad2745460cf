"""The explorer's door: which HTTP requests reach the app at all, and how a body is read.

:class:`Guard` (ASGI middleware) looks at a request's head only, before any route runs or any byte
of the body is read, and refuses (see docs/serve_safety.md):

* a ``Host`` that is not the address served (``localhost``, ``127.0.0.1``, ``[::1]``, the
  ``--host`` given, or the address the connection came to; with the port served) -> 403: a page
  of another site whose name was made to resolve to 127.0.0.1 (DNS rebinding) sends its own name;
* an ``Origin`` other than the page's own (``http://`` + that Host) -> 403: a page of another
  origin may send requests here, never read or change anything;
* a request body (POST, PUT, PATCH) whose ``Content-Type`` is not ``application/json`` -> 415: the
  ``no-cors`` requests a browser sends without asking first are ``text/plain``, form or multipart;
* a declared ``Content-Length`` above the cap -> 413.

:func:`read_body` then reads a body in pieces, stopping at the cap (413) or a deadline (408), so
a body without ``Content-Length`` (chunked) never takes more memory than the cap.
"""
from __future__ import annotations

import asyncio
import ipaddress
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from starlette.requests import Request

from .explorer import ApiError
from .json_io import json_bytes

LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
BODY_METHODS = ("POST", "PUT", "PATCH")
JSON_TYPE = "application/json"

Scope = Dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Dict[str, Any]]], Callable[[Dict[str, Any]], Awaitable[None]]],
                   Awaitable[None]]


def host_name(host: str) -> str:
    """``host`` as a Host header writes it: an IPv6 address in brackets, names lower-case."""
    host = host.strip().lower()
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            return f"[{host.strip('[]')}]"
    except ValueError:
        pass
    return host


def split_host(value: str) -> Tuple[str, Optional[int]]:
    """A Host header's name and port (None when it has none); ``("", None)`` when it is malformed."""
    value = value.strip().lower()
    name, colon, port = value.rpartition(":") if not value.endswith("]") else (value, "", "")
    if not colon:
        name, port = value, ""
    if not name or (port and not (port.isascii() and port.isdigit())):
        return "", None
    return name, int(port) if port else None


class Guard:
    """ASGI middleware: the refusals of the module docstring, answered as the explorer's JSON errors
    (``{"error": one line, "field": null}``) with ``headers``, before ``app`` sees the request.

    ``hosts``: the names the server is reached by besides the local ones (the ``--host`` given);
    ``max_body``: the cap of a request body in bytes."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str] = (), max_body: int = 2 << 20,
                 headers: Optional[Mapping[str, str]] = None) -> None:
        self.app = app
        self.names = {host_name(name) for name in (*LOCAL_NAMES, *hosts)}
        self.max_body = max_body
        self.headers = dict(headers or {})

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                status, message = refusal
                await answer_error(send, status, message, self.headers, close=True)  # its body stays unread
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> Optional[Tuple[int, str]]:
        """``(status, message)`` of a request the explorer refuses by its head, or None."""
        headers = _headers(scope)
        hosts = headers.get("host", [])
        if len(hosts) != 1 or not self.host_served(hosts[0], scope.get("server")):
            shown = hosts[0][:80] if len(hosts) == 1 else f"{len(hosts)} Host headers"
            return 403, f"this server answers only on its own address, not Host {shown!r}"
        origins = headers.get("origin", [])
        page = f"{scope.get('scheme', 'http')}://{hosts[0].strip().lower()}"
        if origins and (len(origins) != 1 or origins[0].strip().lower() != page):
            return 403, f"requests from another page (Origin {origins[0][:80]!r}) are refused; open {page}/"
        if scope["method"] in BODY_METHODS:
            kind = headers.get("content-type", [""])[0]
            media, _, parameters = kind.partition(";")
            charset = [p.split("=", 1)[1].strip().strip('"').lower() for p in parameters.split(";")
                       if p.strip().lower().startswith("charset=")]
            if media.strip().lower() != JSON_TYPE or any(c not in ("utf-8", "utf8") for c in charset):
                return 415, f"a request body must be {JSON_TYPE} (UTF-8), not {kind[:60] or 'untyped'!r}"
            length = headers.get("content-length", ["0"])[0]
            if length.isascii() and length.strip().isdigit() and int(length) > self.max_body:
                return 413, f"the request body is larger than {self.max_body:,} bytes"
        return None

    def host_served(self, value: str, server: Optional[Tuple[str, int]]) -> bool:
        """Whether a Host header names this server: a known name or the connection's own address,
        with the port served (no port: 80)."""
        name, port = split_host(value)
        if not name:
            return False
        own = host_name(str(server[0])) if server else None
        served_port = server[1] if server else None
        if name not in self.names and name != own:
            return False
        return served_port is None or (port or 80) == served_port


def _headers(scope: Scope) -> Dict[str, List[str]]:
    found: Dict[str, List[str]] = {}
    for key, value in scope.get("headers", []):
        found.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return found


async def answer_error(send: Any, status: int, message: str, headers: Mapping[str, str], close: bool = False) -> None:
    """Send the explorer's JSON error ``{"error": message, "field": null}`` with ``status`` (``close``:
    and end the connection, e.g. a body left unread)."""
    body = json_bytes({"error": message, "field": None})
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def read_body(request: Request, limit: int, seconds: float) -> bytes:
    """The body of ``request``, read in pieces: more than ``limit`` bytes -> :class:`ApiError` 413,
    not all there within ``seconds`` -> 408 (a client that stops sending holds nothing for long)."""
    pieces: List[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            async for piece in request.stream():
                size += len(piece)
                if size > limit:
                    raise ApiError(413, f"the request body is larger than {limit:,} bytes")
                pieces.append(piece)
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {seconds:g} s") from None
    return b"".join(pieces)
