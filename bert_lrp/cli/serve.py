"""``bert-lrp serve``: start the explorer (a local web page) on the models given.

    bert-lrp serve                                   # the shipped model, http://127.0.0.1:8765/
    bert-lrp serve --model runs/a --model runs/b --data explanations.jsonl

Models come only from the command line; the page picks among them by name and never names a
path. It binds to 127.0.0.1 unless ``--host`` says otherwise (then it warns: the page and every
model are reachable from the network); it answers only requests addressed to it (``Host``) from
its own page (``Origin``). The first Ctrl-C cancels the run under way and stops (exit 130); a
second one stops at once. Needs the extra ``bert-lrp[serve]`` (Starlette, uvicorn).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from ..errors import BertLrpError, UsageError
from ..models.loading import resolve_model_dir
from .arguments import ArgumentParser, positive_int

LOCAL = ("127.0.0.1", "localhost", "::1")


class MissingExtra(BertLrpError):
    """The serve extra is not installed."""


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="bert-lrp serve", description="Start the explorer: a local web page to explain "
                            "texts, compare methods and browse a data set of explanations.")
    parser.add_argument("--model", action="append", metavar="DIR",
                        help="a model folder (repeat for several; default: the shipped SST-2 model)")
    parser.add_argument("--data", metavar="FILE", help="a JSONL file written by bert-lrp explain --jsonl, to browse")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: all cores)")
    return parser


def _server_parts():
    try:
        import uvicorn  # noqa: F401  (imported here to name the missing extra)
        from ..views.explorer.app import create_app
        from ..views.explorer.server import explorer_server
    except ImportError as error:
        raise MissingExtra(f"bert-lrp serve needs the serve extra ({error.name} is missing): "
                           "pip install \"bert-lrp[serve]\"") from None
    return create_app, explorer_server


def build_explorer(models: Optional[List[str]], data: Optional[str], threads: Optional[int] = None):
    """The :class:`~bert_lrp.views.explorer.explorer.Explorer` of the command line's models and data."""
    from ..views.explorer.explorer import Explorer

    folders = [resolve_model_dir(given) for given in models] if models else [resolve_model_dir(None)]  # the shipped
    folders = list(dict.fromkeys(Path(folder).resolve() for folder in folders))  # a folder given twice: loaded once
    if data is not None and not Path(data).is_file():
        raise UsageError(f"--data {data}: no such file")
    return Explorer.load(folders, Path(data) if data else None, threads)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    create_app, explorer_server = _server_parts()
    import socket

    explorer = build_explorer(args.model, args.data, args.threads)
    if args.host not in LOCAL:
        print(f"bert-lrp serve: warning: listening on {args.host}: the page and every model are reachable from "
              "the network, without a password", file=sys.stderr)
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say they are TCP; without it a
    # kept-alive connection waits 40 ms (Nagle's algorithm against the client's delayed ACK) per answer
    listener = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM,
                             socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((args.host, args.port))
    except OSError as error:
        raise UsageError(f"--host {args.host} --port {args.port}: cannot listen there ({error.strerror})") from None
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"bert-lrp serve: http://{shown}:{port}/  (Ctrl-C to stop)", file=sys.stderr, flush=True)
    # the page is reached by this name too (Host and Origin are checked: see docs/serve_safety.md)
    server = explorer_server(create_app(explorer, hosts=[args.host]))
    server.run(sockets=[listener])
    if server.started and server.should_exit:
        # stopped by Ctrl-C: uvicorn re-raises the signal after its graceful shutdown, but asyncio's
        # runner turns that into a cancel of a task that may already be finishing, and then returns
        # normally; exit as interrupted (130) either way
        raise KeyboardInterrupt
    return 0


if __name__ == "__main__":
    from . import main as cli_main

    sys.exit(cli_main(["serve", *sys.argv[1:]]))
