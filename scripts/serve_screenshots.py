"""Screenshots of the explorer (``bert-lrp serve``) for docs/serve.md, taken in headless Chromium.

The shipped SST-2 model explains a sentence (the comparison grid, the what-if, all heads) and the
first ``--rows`` sentences of an SST-2 TSV (``sentence<TAB>label``, labels 0/1) become the data set
(written by ``bert-lrp explain --jsonl``, the gold labels added), shown with its metrics.

    python scripts/serve_screenshots.py --tsv ../shared/data/sst2/dev.tsv --out docs/images

Needs the ``serve`` and ``test`` extras (Starlette, uvicorn, Playwright) and Debian's chromium.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

try:
    import bert_lrp  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bert_lrp import cli  # noqa: E402
from bert_lrp.models.loading import resolve_model_dir  # noqa: E402
from bert_lrp.views.explorer.app import create_app  # noqa: E402
from bert_lrp.views.explorer.explorer import Explorer  # noqa: E402

SENTENCE = "a gripping , beautifully acted film that never lets go , even when its plot turns a little too neat ."
METHODS = ["lrp", "gradient_x_input", "gradient", "occlusion", "integrated_gradients"]
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"]
WIDTH = 1200
SHOTS = ("serve_explain.png", "serve_whatif.png", "serve_heads.png", "serve_data.png")


def data_set(tsv: Path, rows: int, folder: Path, model: Path) -> Path:
    """The first ``rows`` sentences of ``tsv`` explained with LRP and GI, gold labels by name."""
    with open(tsv, encoding="utf-8", newline="") as handle:
        items = [(r["sentence"].strip(), int(r["label"])) for _, r in zip(range(rows), csv.DictReader(
            handle, delimiter="\t", quoting=csv.QUOTE_NONE))]
    texts = folder / "texts.txt"
    texts.write_text("".join(text + "\n" for text, _ in items), encoding="utf-8")
    out = folder / "sst2-dev.jsonl"
    assert cli.main(["explain", "--model", str(model), "--file", str(texts), "--jsonl", str(out),
                     "--methods", "lrp,gi", "--quiet"]) == 0
    names = json.loads((model / "config.json").read_text())["id2label"]
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for record, (_, label) in zip(records, items):
        record["label"] = names[str(label)]
    out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return out


def region(page, first: str, last: str) -> dict:
    """The page's clip from the top of ``first`` to the bottom of ``last`` (full width)."""
    top = page.eval_on_selector(first, "(node) => node.getBoundingClientRect().top + window.scrollY")
    bottom = page.eval_on_selector(last, "(node) => node.getBoundingClientRect().bottom + window.scrollY")
    return {"x": 0, "y": max(0, top - 8), "width": WIDTH, "height": bottom - top + 16}


def shoot(address: str, out: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.goto(address)
        page.wait_for_selector("body[data-ready=true]")
        for box in page.locator("#methods input[type=checkbox]").all():
            box.set_checked(box.get_attribute("value") in METHODS)
        page.fill("#text", SENTENCE)
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("#result[data-state=done]")
        page.wait_for_selector("#overview canvas")
        page.evaluate("document.activeElement.blur()")
        page.screenshot(path=str(out / SHOTS[0]), full_page=True, clip=region(page, "header", "#agreement"))

        page.click("#whatif-words button.whatif-word:has-text('gripping')")
        page.fill("#whatif-replacement", "tedious")
        page.click("#whatif-replace")
        page.wait_for_selector("#whatif-result .side[data-side=changed] .w")
        page.locator("#whatif").screenshot(path=str(out / SHOTS[1]))

        page.click("#overview button.thumb[data-layer='2'][data-head='4']")
        page.wait_for_selector("#attention[data-layer='2'][data-head='4'] text.attention-from")
        page.locator("#attention-view").screenshot(path=str(out / SHOTS[2]))

        page.click("#tab-data")
        page.wait_for_selector("#confusion button.cell")
        wrong = [cell for cell in page.locator("#confusion button.cell").all()
                 if cell.get_attribute("data-gold") != cell.get_attribute("data-predicted")]
        max(wrong, key=lambda cell: int(cell.inner_text())).click()  # the most frequent mistake
        page.wait_for_selector("#filter-chip:not([hidden])")
        page.wait_for_timeout(300)
        page.click("#rows tbody tr.row >> nth=0")
        page.wait_for_selector("#row-detail span.w")
        page.screenshot(path=str(out / SHOTS[3]), full_page=True, clip=region(page, "header", "#rows-total"))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tsv", required=True, help="an SST-2 TSV (sentence, label)")
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = resolve_model_dir(None)
    with tempfile.TemporaryDirectory() as temporary:
        data = data_set(Path(args.tsv), args.rows, Path(temporary), model)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(create_app(Explorer.load([model], data)), log_level="warning"))
        threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        try:
            shoot(f"http://127.0.0.1:{listener.getsockname()[1]}/", out)
        finally:
            server.should_exit = True
    for name in SHOTS:
        print(out / name, f"{(out / name).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
