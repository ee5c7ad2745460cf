"""What the explorer's browser tests share: Debian's ``chromium`` driven by Playwright (its own
browser download is not used), a data set written by ``bert-lrp explain --jsonl`` with gold
labels, a page opened on the live app that fails its test on any console or page error (or a
script run by hostile text), and the user's steps that several tests take (explain a text, read
the heatmaps, compute a colour's contrast)."""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

import pytest

from bert_lrp import cli

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "minilm-sst2"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic"]
HOSTILE = '<script>window.__xss=1</script> "><img src=x onerror="window.__xss=1"> \u202eevil \x1b[31mred'


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("the browser test needs Debian's chromium: apt-get install -y chromium (.ci/run installs it)")
    return path


@contextlib.contextmanager
def launched_browser() -> Iterator:
    """A headless Chromium for a test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def explained_data(folder: Path, data: Sequence[Tuple[str, str]], methods: str = "lrp,gi") -> Tuple[Path, List[dict]]:
    """``data`` (text, gold label) explained by the shipped model into ``folder/explained.jsonl``
    (``explain --jsonl``), each record given its gold ``label``; the file and its records."""
    texts = folder / "texts.txt"
    texts.write_text("".join(text.replace("\x1b", "") + "\n" for text, _ in data), encoding="utf-8")
    out = folder / "explained.jsonl"
    assert cli.main(["explain", "--model", str(SHIPPED), "--file", str(texts), "--jsonl", str(out),
                     "--methods", methods, "--quiet"]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for record, (_, gold) in zip(records, data):
        record["label"] = gold
    out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return out, records


def upload(address: str, name: str, text: str, methods: Sequence[str]) -> str:
    """A data set uploaded through the API (as a script would), explained; its id."""
    def call(path: str, body=None) -> dict:
        request = urllib.request.Request(address + path, data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())

    job = call("/api/datasets", {"name": name, "text": text, "methods": list(methods)})
    deadline = time.monotonic() + 120
    while not job["finished"]:
        assert time.monotonic() < deadline, "the upload did not finish"
        time.sleep(0.1)
        job = call(f"/api/jobs/{job['job']}")
    assert job["error"] is None, job["error"]
    return job["dataset"]


@contextlib.contextmanager
def opened_page(browser, address: str, tmp_path: Path, width: int = 1280, height: int = 1000) -> Iterator:
    """The explorer's page, ready; on leaving: a screenshot, no script run by hostile text, no
    console or page error (but the browser's own line for each refusal a test asked for and
    listed in ``page.expected_refusals``, e.g. ``[413]``)."""
    context = browser.new_context(accept_downloads=True, viewport={"width": width, "height": height})
    page = context.new_page()
    problems: List[str] = []
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.goto(address + "/")
    page.wait_for_selector("body[data-ready=true]")
    page.expected_refusals = []
    yield page
    page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
    assert page.evaluate("typeof window.__xss") == "undefined"
    context.close()
    refused = re.compile(r"console error: Failed to load resource: the server responded with a status of (\d+) ")
    statuses = [int(refused.match(p).group(1)) if refused.match(p) else p for p in problems]
    assert sorted(statuses, key=str) == sorted(page.expected_refusals, key=str), problems


def explain(page, text: str) -> None:
    """Type ``text`` and explain it; returns when the whole result is on the page."""
    page.fill("#text", text)
    page.click("#explain-button")
    page.wait_for_selector("#result[data-state=done]")


def heatmap_words(page) -> dict:
    """Per method block of the result, by its heading: [(word, background colour, hover title)]."""
    return dict(page.evaluate("""() => [...document.querySelectorAll('#heatmaps div.text')]
        .filter((block) => block.querySelector('span.w'))
        .map((block) => [block.previousElementSibling.textContent, [...block.querySelectorAll('span.w')]
             .map((span) => [span.textContent, getComputedStyle(span).backgroundColor, span.title])])"""))


def rgb(colour: str) -> Tuple[int, ...]:
    return tuple(int(float(v)) for v in re.findall(r"[\d.]+", colour)[:3])


def luminance(colour: Tuple[int, ...]) -> float:
    """WCAG relative luminance."""
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(v) for v in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: Tuple[int, ...], b: Tuple[int, ...]) -> float:
    """WCAG contrast ratio of two colours (1..21)."""
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def coloured_words(page) -> List[Tuple[str, str, str]]:
    """Every element on the page whose background is coloured by a score (an inline background)
    and that shows text: (text, text colour, background colour) as the browser computes them."""
    return [tuple(item) for item in page.evaluate("""() => [...document.querySelectorAll('[style*=background]')]
        .filter((node) => node.textContent.trim() && node.getClientRects().length)
        .map((node) => [node.textContent, getComputedStyle(node).color, getComputedStyle(node).backgroundColor])""")]


def choose_methods(page, methods: Sequence[str], fieldset: str = "#methods") -> None:
    """Check exactly ``methods`` in a method fieldset (the explain form's or the upload form's)."""
    for box in page.locator(f"{fieldset} input[type=checkbox]").all():
        box.set_checked(box.get_attribute("value") in methods)


def table_rows(page, selector: str) -> List[List[str]]:
    """The cells' texts of every body row of a table."""
    return page.evaluate("""(selector) => [...document.querySelectorAll(selector + ' tbody tr.row')]
        .map((row) => [...row.cells].map((cell) => cell.textContent))""", selector)


@pytest.fixture(scope="module")
def browser():
    """One headless chromium per test module."""
    with launched_browser() as launched:
        yield launched


@pytest.fixture
def page(browser, site, tmp_path):
    """A fresh page on the module's ``site`` (``(address, records)``), failing its test on any
    console or page error."""
    with opened_page(browser, site[0], tmp_path) as opened:
        yield opened
