"""Screenshots of the explorer's main views for docs/serve.md, taken in headless Chromium.

The shipped SST-2 model explains a sentence (the explain view, the attention view) and the first
``--rows`` sentences of an SST-2 TSV (``sentence<TAB>label``, labels 0/1) become the data set
(written by ``bert-lrp explain --jsonl``, the gold labels added).

    python scripts/explorer_screenshots.py --tsv ../shared/data/sst2/dev.tsv --out docs

Needs the ``serve`` and ``test`` extras (Starlette, uvicorn, Playwright) and Debian's chromium.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from bert_lrp import cli
from bert_lrp.models.loading import resolve_model_dir
from bert_lrp.views.explorer.app import create_app
from bert_lrp.views.explorer.explorer import Explorer

SENTENCE = "a gripping , beautifully acted film that never lets go , even when its plot turns a little too neat ."
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"]


def data_set(tsv: Path, rows: int, folder: Path, model: Path) -> Path:
    """The first ``rows`` sentences of ``tsv`` explained with LRP and GI, gold labels by name."""
    with open(tsv, encoding="utf-8", newline="") as handle:
        items = [(r["sentence"].strip(), int(r["label"])) for _, r in zip(range(rows), csv.DictReader(
            handle, delimiter="\t", quoting=csv.QUOTE_NONE))]
    texts = folder / "texts.txt"
    texts.write_text("".join(text + "\n" for text, _ in items), encoding="utf-8")
    out = folder / "sst2.jsonl"
    assert cli.main(["explain", "--model", str(model), "--file", str(texts), "--jsonl", str(out),
                     "--methods", "lrp,gi", "--quiet"]) == 0
    names = json.loads((model / "config.json").read_text())["id2label"]
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for record, (_, label) in zip(records, items):
        record["label"] = names[str(label)]
    out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tsv", required=True, help="an SST-2 TSV (sentence, label)")
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    out = Path(args.out)
    model = resolve_model_dir(None)
    with tempfile.TemporaryDirectory() as temporary:
        data = data_set(Path(args.tsv), args.rows, Path(temporary), model)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(create_app(Explorer.load([model], data)), log_level="warning"))
        threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        address = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(address)
            page.wait_for_selector("body[data-ready=true]")
            page.fill("#text", SENTENCE)
            page.click("#explain-button")
            page.wait_for_selector("#attention svg")
            page.screenshot(path=str(out / "explorer_explain.png"), clip={"x": 0, "y": 0, "width": 1200, "height": 900})
            page.select_option("#layer", "2")
            page.select_option("#head", "4")
            page.locator("#attention-view").screenshot(path=str(out / "explorer_attention.png"))
            page.click("button.tab[data-tab=data]")
            page.wait_for_selector("#rows tbody tr")
            page.click("th[data-sort=confidence]")  # least confident first
            page.wait_for_timeout(300)
            page.select_option("#filter-correct", "false")
            page.wait_for_timeout(300)
            page.click("#rows tbody tr >> nth=0")
            page.wait_for_selector("#row-detail span.w")
            page.screenshot(path=str(out / "explorer_data.png"), full_page=True)
            browser.close()
        server.should_exit = True
    for name in ("explorer_explain.png", "explorer_attention.png", "explorer_data.png"):
        print(out / name, f"{(out / name).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
