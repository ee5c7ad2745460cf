"""``bert-lrp serve`` from the command line.

* Without ``--model`` it serves the shipped model: the page and its API answer on the address it
  prints, then Ctrl-C (SIGINT) stops it as every command stops on Ctrl-C: exit code 130, one
  line, no traceback.
* It answers only requests addressed to it (Host) from its own page (Origin); see
  tests/test_serve_http.py for every refusal.
* ``--host`` other than this machine warns that the page is reachable from the network; the page
  is answered at the address the connection came to.
* Bad options are one-line usage errors (exit 2) naming the option; nothing starts.
* Without the ``serve`` extra the message names the pip command.
"""
from __future__ import annotations

import builtins
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bert_lrp import cli

ROOT = Path(__file__).resolve().parents[1]


def start(*argv: str) -> tuple:
    """``python -m bert_lrp serve ...`` from another folder; (process, address) once it listens."""
    process = subprocess.Popen([sys.executable, "-m", "bert_lrp", "serve", "--port", "0", *argv],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT / "tests",
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        found = re.search(r"http://(\[[^\]]+\]|[\d.]+):(\d+)/", line)
        if found:
            return process, found.group(0).rstrip("/"), lines
        if not line and process.poll() is not None:
            break
    process.kill()
    pytest.fail(f"bert-lrp serve did not start: {''.join(lines)}")


def stop(process, lines: list) -> int:
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=60)
    lines.extend(process.stderr.read().splitlines(keepends=True))
    return code


def test_serve_without_a_model_shows_the_page_of_the_shipped_model():
    process, address, lines = start()
    try:
        assert address.startswith("http://127.0.0.1:")
        page = httpx.get(address + "/")
        assert page.status_code == 200 and "<title>bert-lrp explorer</title>" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        models = httpx.get(address + "/api/models").json()
        assert [m["name"] for m in models["models"]] == ["minilm-sst2"]
        answer = httpx.post(address + "/api/explain", json={"text": "a wonderful film", "methods": ["lrp"]}, timeout=60)
        assert answer.status_code == 200 and answer.json()["examples"][0]["prediction"] == "positive"
        port = address.rsplit(":", 1)[1]  # locked to its own page (docs/serve_safety.md)
        assert httpx.get(address + "/api/models", headers={"Host": f"attacker.example:{port}"}).status_code == 403
        assert httpx.post(address + "/api/explain", json={"text": "x"},
                          headers={"Origin": "http://attacker.example"}).status_code == 403
    finally:
        code = stop(process, lines)
    assert code == 130
    assert "Traceback" not in "".join(lines) and "warning" not in "".join(lines)


def test_another_host_warns_that_the_page_is_reachable_from_the_network():
    process, address, lines = start("--host", "0.0.0.0")
    try:
        assert httpx.get(address.replace("0.0.0.0", "127.0.0.1") + "/api/models").status_code == 200
        assert httpx.get(address.replace("0.0.0.0", "localhost") + "/api/models").status_code == 200
    finally:
        stop(process, lines)
    assert any("warning: listening on 0.0.0.0" in line and "without a password" in line for line in lines)


@pytest.mark.parametrize("argv, message", [
    (["--port", "70000"], "--port must be in 0..65535, got 70000"),
    (["--data", "no-such.jsonl"], "--data no-such.jsonl: no such file"),
    (["--model", "no-such-folder"], "--model no-such-folder: no such folder"),
    (["--threads", "0"], "--threads"),
])
def test_bad_options_are_one_line_usage_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_without_the_serve_extra_the_message_names_the_pip_command(capsys, monkeypatch):
    real_import = builtins.__import__

    def no_uvicorn(name, *args, **kwargs):
        if name == "uvicorn":
            raise ImportError("No module named 'uvicorn'", name="uvicorn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvicorn)
    code = cli.main(["serve"])
    err = capsys.readouterr().err
    assert code != 0 and 'pip install "bert-lrp[serve]"' in err and "uvicorn is missing" in err
    assert len(err.strip().splitlines()) == 1


def test_a_model_given_twice_is_loaded_once(tmp_path, monkeypatch):
    from bert_lrp.cli.serve import build_explorer
    from test_explain_cli import make_model_dir  # noqa: E402

    folder = make_model_dir(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    explorer = build_explorer([str(folder), "tiny", str(folder) + "/"], None)
    try:
        assert list(explorer.models) == ["tiny"]
    finally:
        explorer.close()
