"""The explorer's HTTP layer (``bert-lrp serve``): what reaches the app, how bodies are read, how
runs are cancelled and how the server stops. Each case of issue 29's "Safety" table that is about
HTTP, on a real server (uvicorn on 127.0.0.1, as ``bert-lrp serve`` configures it) with raw
sockets where a client library would hide what is sent.

* Locked to its own page: a ``text/plain`` (no-cors) POST -> 415, a foreign ``Origin`` -> 403
  (the page's own is answered), ``Host: attacker.example`` (DNS rebinding) -> 403 even on GET of
  data rows; the refused request never reaches the explorer.
* Bodies: a chunked body without ``Content-Length`` over the 2 MB cap -> 413 after reading no more
  than the cap (the server's memory does not grow by the body); a declared length over the cap ->
  413 before the body is sent; a body that stops arriving -> 408; a lone surrogate, ``NaN`` and
  100,000-deep JSON -> 400; a wrong method -> 405 with ``Allow``.
* Streaming: ``/api/explain/stream`` sends the explorer's events in order as NDJSON lines, ends
  with exactly one terminal event, at most ~5 progress events a second; a request refused before
  the run is a plain JSON 4xx.
* Cancelling: a client that disconnects from ``/api/explain`` or its stream cancels the run (the
  explorer's ``cancelled`` event is set); the server's stop cancels every run (the client gets a
  JSON 503); a connection that never sends its request head is closed.
* Ctrl-C of ``bert-lrp serve`` during a long request: exit 130 within seconds, no traceback; a
  second Ctrl-C exits at once.

The explorer here is a stand-in with the contract's method names (``explain(body, cancelled)``,
``explain_stream(body, emit, cancelled)``, ...) whose slow run waits on ``cancelled``; the real
one runs in the Ctrl-C tests.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List

import httpx
import pytest

from bert_lrp.views.explorer import app as app_module
from bert_lrp.views.explorer import server as server_module
from bert_lrp.views.explorer.app import MAX_BODY, create_app
from bert_lrp.views.explorer.errors import ApiError
from bert_lrp.views.explorer.server import explorer_server

from test_serve_cli import ROOT, start  # noqa: E402  (tests/ is on sys.path under pytest)

SLOW = "wait for cancel"  # the stand-in's text of a run that lasts until it is cancelled
STREAM_METHODS = ["gs", "gi", "shap"]
STREAM = "/api/explain" + "/stream"  # the streamed explain's path
ROWS = "/api/datasets" + "/1/rows"  # the rows of the --data set


class StandIn:
    """An explorer with the contract's method names; records what reached it."""

    def __init__(self) -> None:
        self.worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stand-in-model")
        self.calls: List[str] = []
        self.cancelled_runs: List[str] = []
        self.started = threading.Event()  # a slow run has begun
        self.cancel_all_calls = 0

    def submit(self, method, *args):
        return self.worker.submit(method, *args)

    def close(self) -> None:
        self.worker.shutdown(wait=True)

    def cancel_all(self) -> None:
        self.cancel_all_calls += 1

    def models_info(self) -> Dict[str, Any]:
        self.calls.append("models")
        return {"models": [], "default": None}

    def datasets_info(self) -> Dict[str, Any]:
        return {"datasets": []}

    def rows(self, dataset_id: str, query: Dict[str, str]) -> Dict[str, Any]:
        self.calls.append(f"rows {dataset_id}")
        return {"total": 1, "rows": [{"index": 0, "text": "a private sentence of the --data file"}]}

    def upload(self, body: Any) -> Dict[str, Any]:
        self.calls.append("upload")
        return {"job": "1"}

    def _wait(self, cancelled, name: str) -> None:
        self.started.set()
        if not cancelled.wait(30):
            raise AssertionError("the slow run was never cancelled")
        self.cancelled_runs.append(name)
        raise RuntimeError("cancelled between two forward chunks")  # as the explorer's Cancelled would

    def explain(self, body: Any, cancelled=None) -> Dict[str, Any]:
        self.calls.append("explain")
        if body.get("text") == SLOW:
            self._wait(cancelled, "explain")
        return {"examples": [{"text": body["text"], "ratio": float("nan")}]}

    def explain_stream(self, body: Any, emit, cancelled) -> None:
        self.calls.append("explain_stream")
        methods = body.get("methods", STREAM_METHODS)
        if "bogus" in methods:
            raise ApiError(400, "unknown method 'bogus'", "methods")
        emit({"event": "plan", "rows": 2, "groups": [{"methods": methods[:2]}, {"methods": methods[2:]}]})
        if body.get("text") == SLOW:
            self._wait(cancelled, "explain_stream")
        for done in range(200):  # far more than a client needs: the bridge lets ~5 a second through
            emit({"event": "progress", "rows_done": done, "rows_total": 200})
        emit({"event": "group", "methods": methods[:2], "payload": {"part": 1}})
        if body.get("fail_after_first_group"):
            raise ApiError(413, "over the budget", "options.shap_samples")
        emit({"event": "group", "methods": methods[2:], "payload": {"part": 2}})
        emit({"event": "done", "payload": {"whole": True}})


@contextlib.contextmanager
def live(app) -> Iterator[tuple]:
    """``app`` served as ``bert-lrp serve`` serves it, in a thread; yields (address, host:port, server)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = explorer_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()


@pytest.fixture()
def stand_in() -> StandIn:
    return StandIn()


@pytest.fixture()
def served(stand_in):
    with live(create_app(stand_in)) as (address, host, server):
        yield address, host, stand_in


def raw_request(host: str, head: str, body: bytes = b"") -> socket.socket:
    """A socket to the server that has sent ``head`` (request line and headers, no final blank line)."""
    name, port = host.rsplit(":", 1)
    sock = socket.create_connection((name, int(port)), timeout=10)
    sock.sendall(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n\r\n" + body)
    return sock


def read_answer(sock: socket.socket) -> tuple:
    """(status, headers, body) of the HTTP/1.1 answer on ``sock`` (read to its end or Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return int(lines[0].split()[1]), headers, body


def resident_bytes() -> int:
    with open(os.path.join("/proc", "self", "statm")) as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------- locked to its own page
@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None, "application/json; charset=latin-1"])
def test_a_body_that_is_not_json_by_its_content_type_is_refused_before_it_reaches_the_explorer(served, content_type):
    """What another site's page can send without asking first (``fetch(..., {mode: "no-cors"})``
    with a text body) carries one of these types: 415, and the upload never starts."""
    address, _, stand_in = served
    headers = {} if content_type is None else {"Content-Type": content_type}
    answer = httpx.post(address + "/api/datasets", content=b'{"text": "planted"}', headers=headers)
    assert answer.status_code == 415
    assert "application/json" in answer.json()["error"] and answer.json()["field"] is None
    assert stand_in.calls == []


def test_a_json_body_of_the_page_is_answered(served):
    address, host, stand_in = served
    answer = httpx.post(address + "/api/datasets", json={"text": "ok"},
                        headers={"Origin": f"http://{host}", "Content-Type": "application/json; charset=utf-8"})
    assert answer.status_code == 202 and stand_in.calls == ["upload"]


@pytest.mark.parametrize("origin", ["http://attacker.example", "null", "https://127.0.0.1:1", "http://127.0.0.1"])
@pytest.mark.parametrize("method, path", [("POST", "/api/datasets"), ("GET", ROWS), ("GET", "/"),
                                          ("OPTIONS", "/api/explain")])
def test_another_origin_is_refused_on_every_route(served, origin, method, path):
    """Including the browser's CORS preflight (OPTIONS): a page of another origin that asks
    before sending JSON is told no."""
    address, _, stand_in = served
    answer = httpx.request(method, address + path, json={"text": "planted"} if method == "POST" else None,
                           headers={"Origin": origin})
    assert answer.status_code == 403
    assert "another page" in answer.json()["error"]
    assert "content-security-policy" in answer.headers
    assert stand_in.calls == []


@pytest.mark.parametrize("page", ["http://{host}", "http://localhost:{port}"])
def test_the_pages_own_origin_is_answered(served, page):
    """The page opened as http://127.0.0.1:PORT or http://localhost:PORT: its requests carry its own origin."""
    address, host, stand_in = served
    port = host.rsplit(":", 1)[1]
    origin = page.format(host=host, port=port)
    answer = httpx.get(address + ROWS,
                       headers={"Origin": origin, "Host": origin.split("//", 1)[1]})
    assert answer.status_code == 200 and stand_in.calls == ["rows 1"]


@pytest.mark.parametrize("host_header", ["attacker.example", "attacker.example:{port}", "127.0.0.1.attacker.example:{port}",
                                         "127.0.0.1:{other}", "localhost", ""])
def test_a_request_for_another_host_gets_no_data_rows(served, host_header):
    """DNS rebinding: another site's name made to resolve to 127.0.0.1 arrives with that name as
    Host; the data rows are not answered (nor anything else)."""
    address, host, stand_in = served
    port = int(host.rsplit(":", 1)[1])
    sock = raw_request(host, f"GET /api/datasets/1/rows HTTP/1.1\nHost: {host_header.format(port=port, other=port + 1)}")
    with sock:
        status, headers, body = read_answer(sock)
    assert status in (400, 403)  # 400: h11 refuses an empty Host before the app sees it
    assert b"private sentence" not in body
    assert stand_in.calls == []


@pytest.mark.parametrize("host_header", ["localhost:{port}", "LOCALHOST:{port}", "127.0.0.1:{port}"])
def test_the_served_address_by_any_of_its_local_names_is_answered(served, host_header):
    address, host, stand_in = served
    port = int(host.rsplit(":", 1)[1])
    answer = httpx.get(address + ROWS, headers={"Host": host_header.format(port=port)})
    assert answer.status_code == 200 and answer.json()["rows"][0]["index"] == 0


def test_the_host_given_on_the_command_line_is_answered(stand_in):
    with live(create_app(stand_in, hosts=["explorer.lab.example"])) as (address, host, _):
        port = host.rsplit(":", 1)[1]
        mine = httpx.get(address + "/api/models", headers={"Host": f"explorer.lab.example:{port}"})
        other = httpx.get(address + "/api/models", headers={"Host": f"other.lab.example:{port}"})
    assert (mine.status_code, other.status_code) == (200, 403)


# ---------------------------------------------------------------------- bodies
def test_a_chunked_body_over_the_cap_is_refused_after_reading_no_more_than_the_cap(served):
    """No Content-Length: the server reads in pieces and answers 413 once the cap is passed; the
    rest of a 200 MB body is never read (the connection is closed), so memory does not grow by it."""
    address, host, stand_in = served
    piece = b"[" + b" " * (256 * 1024 - 2) + b"]"
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    total = 200 * 2 ** 20
    before = resident_bytes()
    sock = raw_request(host, f"POST /api/explain HTTP/1.1\nHost: {host}\nContent-Type: application/json\n"
                             "Transfer-Encoding: chunked")
    sent = 0
    with sock:
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk)
                sent += len(piece)
        except OSError:  # the server closed the connection: the rest is refused
            pass
        status, headers, body = read_answer(sock)
    growth = resident_bytes() - before
    assert status == 413 and "2,097,152 bytes" in json.loads(body)["error"]
    assert headers.get("connection") == "close"
    assert sent < total / 4, f"the client could send {sent:,} bytes"
    assert growth < 40 * 2 ** 20, f"resident memory grew by {growth / 2 ** 20:.0f} MiB"
    assert stand_in.calls == []


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_sent(served):
    address, host, stand_in = served
    sock = raw_request(host, f"POST /api/explain HTTP/1.1\nHost: {host}\nContent-Type: application/json\n"
                             f"Content-Length: {MAX_BODY + 1}")
    with sock:
        status, headers, body = read_answer(sock)
    assert status == 413 and headers.get("connection") == "close" and stand_in.calls == []


def test_a_body_that_stops_arriving_times_out_with_408(served, monkeypatch):
    address, host, stand_in = served
    monkeypatch.setattr(app_module, "BODY_SECONDS", 0.5)
    sock = raw_request(host, f"POST /api/explain HTTP/1.1\nHost: {host}\nContent-Type: application/json\n"
                             "Content-Length: 100", b'{"text": ')
    started = time.monotonic()
    with sock:
        status, headers, body = read_answer(sock)
    assert status == 408 and time.monotonic() - started < 5
    assert "0.5 s" in json.loads(body)["error"] and stand_in.calls == []


@pytest.mark.parametrize("body, message", [
    (b'{"text": "\\ud800 alone"}', "lone surrogate"),
    (b'{"text": "x", "options": {"seed": NaN}}', "NaN"),
    (b'{"text": "x", "options": {"seed": -Infinity}}', "-Infinity"),
    (b'{"text": "x", "options": {"seed": 1e400}}', "too large"),
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64"),
    (b'{"a":' * 65 + b"1" + b"}" * 65, "nested deeper than 64"),
    (b'{"text": "\xff"}', "not UTF-8"),
    (b"{not json", "not JSON"),
])
def test_json_the_explorer_cannot_take_is_a_400_not_a_500(served, body, message):
    address, _, stand_in = served
    answer = httpx.post(address + "/api/explain", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert message in answer.json()["error"] and len(answer.json()["error"].splitlines()) == 1
    assert stand_in.calls == []


def test_a_pair_of_surrogates_is_one_character_and_is_answered(served):
    address, _, stand_in = served
    answer = httpx.post(address + "/api/explain", content=b'{"text": "good \\ud83d\\ude00"}',
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json()["examples"][0]["text"] == "good \U0001F600"
    assert answer.json()["examples"][0]["ratio"] is None  # not finite -> null, as browsers read JSON


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/api/explain", "POST"), ("PUT", STREAM, "POST"), ("DELETE", "/api/models", "GET, HEAD"),
    ("POST", ROWS, "GET, HEAD"), ("PATCH", "/api/datasets", "GET, HEAD, POST"),
    ("POST", "/api/datasets" + "/1", "DELETE"),
])
def test_a_wrong_method_is_405_with_allow(served, method, path, allowed):
    address, _, stand_in = served
    answer = httpx.request(method, address + path, json={} if method in ("PUT", "POST", "PATCH") else None)
    assert answer.status_code == 405
    assert sorted(answer.headers["allow"].split(", ")) == sorted(allowed.split(", "))
    assert method in answer.json()["error"] and stand_in.calls == []


def test_an_unknown_path_is_still_404(served):
    address, _, _ = served
    answer = httpx.get(address + "/api/nothing")
    assert answer.status_code == 404 and "no such page" in answer.json()["error"]


# ---------------------------------------------------------------------- streaming
def stream_events(address: str, body: Dict[str, Any]) -> List[Dict[str, Any]]:
    with httpx.stream("POST", address + STREAM, json=body, timeout=30) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in answer.iter_lines() if line]


def test_the_stream_sends_the_explorers_events_in_order_and_ends_with_done(served):
    address, _, _ = served
    events = stream_events(address, {"text": "a good film"})
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and kinds[-1] == "done"
    first_group, second_group = [i for i, kind in enumerate(kinds) if kind == "group"]
    assert set(kinds[1:first_group]) == {"progress"}
    assert 1 <= kinds.count("progress") <= 3  # 200 emitted at once: ~5 a second come through
    assert [events[first_group]["payload"], events[second_group]["payload"]] == [{"part": 1}, {"part": 2}]
    assert [e["methods"] for e in events if e["event"] == "group"] == [STREAM_METHODS[:2], STREAM_METHODS[2:]]
    assert events[-1]["payload"] == {"whole": True}


def test_a_request_refused_before_its_run_is_a_plain_json_error_not_a_stream(served):
    address, _, _ = served
    answer = httpx.post(address + STREAM, json={"text": "x", "methods": ["bogus"]})
    assert answer.status_code == 400 and answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": "unknown method 'bogus'", "field": "methods"}


def test_an_error_during_the_run_ends_the_stream_with_one_error_event(served):
    address, _, _ = served
    events = stream_events(address, {"text": "x", "fail_after_first_group": True})
    assert [e["event"] for e in events if e["event"] != "progress"] == ["plan", "group", "error"]
    assert events[-1] == {"event": "error", "status": 413, "error": "over the budget", "field": "options.shap_samples"}


# ---------------------------------------------------------------------- cancelling
@pytest.mark.parametrize("path", ["/api/explain", STREAM])
def test_a_client_that_disconnects_cancels_its_run_and_the_next_request_is_answered_at_once(served, path):
    address, host, stand_in = served
    body = json.dumps({"text": SLOW}).encode()
    sock = raw_request(host, f"POST {path} HTTP/1.1\nHost: {host}\nContent-Type: application/json\n"
                             f"Content-Length: {len(body)}", body)
    assert stand_in.started.wait(10), "the run did not start"
    if path.endswith("stream"):
        received = b""
        while b'"event":"plan"' not in received:  # the stream has begun: the status and the plan are out
            piece = sock.recv(65536)
            assert piece, f"the stream ended before its plan: {received!r}"
            received += piece
    sock.close()  # the page's Cancel: fetch aborted
    deadline = time.monotonic() + 5
    while not stand_in.cancelled_runs and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stand_in.cancelled_runs == ["explain_stream" if path.endswith("stream") else "explain"]
    started = time.monotonic()
    answer = httpx.post(address + "/api/explain", json={"text": "good film"}, timeout=10)
    assert answer.status_code == 200 and time.monotonic() - started < 2


def test_stopping_the_server_cancels_the_running_call_and_its_client_gets_a_json_503(stand_in):
    app = create_app(stand_in)
    with live(app) as (address, host, server):
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(httpx.post, address + "/api/explain", json={"text": SLOW}, timeout=30)
            assert stand_in.started.wait(10)
            server.should_exit = True  # what the first Ctrl-C does
            answer = waiting.result(timeout=10)
    assert answer.status_code == 503 and "cancelled" in answer.json()["error"]
    assert stand_in.cancelled_runs == ["explain"] and stand_in.cancel_all_calls == 1


def test_stopping_the_server_during_a_stream_ends_it_with_one_cancelled_event(stand_in):
    with live(create_app(stand_in)) as (address, host, server):
        with httpx.stream("POST", address + STREAM, json={"text": SLOW}, timeout=30) as answer:
            lines = answer.iter_lines()
            assert json.loads(next(lines))["event"] == "plan"
            assert stand_in.started.wait(10)
            server.should_exit = True  # what the first Ctrl-C does
            rest = [json.loads(line) for line in lines if line]
    assert rest == [{"event": "cancelled"}]
    assert stand_in.cancelled_runs == ["explain_stream"]


def test_a_connection_that_never_sends_its_request_head_is_closed(served, monkeypatch):
    address, host, _ = served
    monkeypatch.setattr(server_module, "HEAD_SECONDS", 0.5)
    name, port = host.rsplit(":", 1)
    with socket.create_connection((name, int(port)), timeout=10) as silent, \
            socket.create_connection((name, int(port)), timeout=10) as trickling:
        trickling.sendall(b"GET /api/models HTTP/1.1\r\nHost: ")
        started = time.monotonic()
        assert silent.recv(1) == b"" and trickling.recv(1) == b""  # closed by the server
        assert time.monotonic() - started < 5


# ---------------------------------------------------------------------- Ctrl-C of bert-lrp serve
# 202 occlusion rows of 202 tokens, 8 rows a forward: half a minute or more of model runs, cancellable every chunk
LONG = {"text": " ".join(["a gripping , beautifully acted film that never lets go"] * 20), "methods": ["occlusion"],
        "options": {"rows_per_forward": 8}}


def test_ctrl_c_during_a_long_request_exits_130_within_seconds_without_a_traceback():
    process, address, lines = start()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(httpx.post, address + "/api/explain", json=LONG, timeout=120)
        time.sleep(2)  # the run is under way
        assert not waiting.done(), "the long request ended before Ctrl-C: make it longer"
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
        took = time.monotonic() - interrupted
        lines.extend(process.stderr.read().splitlines(keepends=True))
        try:
            answer = waiting.result(timeout=10)
        except httpx.HTTPError:  # a closed connection is also an answer a client understands
            answer = None
    if answer is not None:
        assert answer.status_code == 503 and "cancelled" in answer.json()["error"]
    output = "".join(lines)
    assert code == 130 and took < 10, (code, took)
    assert "Traceback" not in output and "CancelledError" not in output
    assert output.rstrip().endswith("bert-lrp serve: interrupted")


STUCK_SERVER = """
import concurrent.futures, socket, time
from bert_lrp.views.explorer.app import create_app
from bert_lrp.views.explorer.server import explorer_server

class Stuck:  # its model run never looks at its cancelled event
    worker = concurrent.futures.ThreadPoolExecutor(1)
    def submit(self, method, *args): return self.worker.submit(method, *args)
    def explain(self, body, cancelled=None): time.sleep(120); return {}
    def cancel_all(self): pass
    def close(self): self.worker.shutdown(wait=True)

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
listener.bind(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
explorer_server(create_app(Stuck())).run(sockets=[listener])
"""


def test_a_second_ctrl_c_exits_at_once_even_when_the_run_does_not_stop():
    process = subprocess.Popen([sys.executable, "-c", STUCK_SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        port = int(process.stdout.readline())
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(httpx.post, f"http://127.0.0.1:{port}/api/explain", json={"text": "x"}, timeout=60)
            time.sleep(1)
            process.send_signal(signal.SIGINT)
            with pytest.raises(subprocess.TimeoutExpired):
                process.wait(timeout=2)  # the first waits for the run (which ignores its cancel)
            interrupted = time.monotonic()
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=10)
            took = time.monotonic() - interrupted
            with pytest.raises(httpx.HTTPError):
                waiting.result(timeout=10)  # its connection closed
    finally:
        process.kill()
    err = process.stderr.read()
    assert code == 130 and took < 2
    assert "stopped at once" in err and "Traceback" not in err
