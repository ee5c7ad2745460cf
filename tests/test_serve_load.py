"""The explorer under load: 200 requests from 8 concurrent clients on 127.0.0.1, mixed methods,
models and endpoints. Every answer equals the same request made alone (runs on one model never
interleave; runs on different models may), no request fails, and the server's memory stays
bounded (the models are loaded once; nothing is kept per request)."""
from __future__ import annotations

import concurrent.futures
import os

import httpx
import pytest

from bert_lrp.models.loading import load_model
from bert_lrp.views.explorer.app import create_app
from bert_lrp.views.explorer.explorer import Explorer

from serving import serving  # noqa: E402  (tests/ is on sys.path under pytest)
from test_explain_cli import make_model_dir  # noqa: E402

REQUESTS = [
    ("POST", "/api/explain", {"text": "a great film", "methods": ["lrp", "gi", "gs"]}),
    ("POST", "/api/explain", {"text": "the bad movie is not good", "methods": ["lrp", "lat"], "target": "all"}),
    ("POST", "/api/explain", {"text": "a film", "pair": "very good and moved", "methods": ["gi", "occlusion"]}),
    ("POST", "/api/explain", {"text": "she moved to paris in may", "methods": ["shap"], "options": {"shap_samples": 64}}),
    ("POST", "/api/explain", {"text": "the film is unbelievable", "methods": ["ig", "lrp:attnlrp"],
                              "options": {"ig_steps": 8}}),
    ("POST", "/api/explain", {"text": "not boring , very good", "methods": ["lime", "smoothgrad"],
                              "options": {"lime_samples": 40, "smoothgrad_samples": 5, "seed": 3}}),
    ("POST", "/api/explain", {"model": "token", "text": "she moved to paris", "methods": ["lrp", "gi"],
                              "word": "paris"}),
    ("POST", "/api/attention", {"text": "a great film and a bad movie", "layer": 1, "head": 2}),
    ("GET", "/api/models", None),
]
CLIENTS = 8
TOTAL = 200
MEMORY_GROWTH_LIMIT = 300 * 2 ** 20  # bytes: far above what 200 answers would keep if they leaked; far
# below what a second copy of the models or unbounded caches would take on this scale


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def send(client: httpx.Client, number: int):
    method, path, body = REQUESTS[number % len(REQUESTS)]
    answer = client.request(method, path, json=body)
    return number, answer.status_code, answer.json()


@pytest.fixture(scope="module")
def address(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    folders = [make_model_dir(root / "sequence"), make_model_dir(root / "token", token=True)]
    with serving(create_app(Explorer([(folder, *load_model(folder)) for folder in folders]))) as url:
        yield url


def test_two_hundred_concurrent_requests_equal_the_same_requests_alone(address):
    with httpx.Client(base_url=address, timeout=120) as client:
        alone = [send(client, number) for number in range(len(REQUESTS))]
        alone += [send(client, number) for number in range(len(REQUESTS))]  # warm: caches and pools settle
    assert all(status == 200 for _, status, _ in alone), [(n, s, a) for n, s, a in alone if s != 200]
    expected = {number: payload for number, _, payload in alone[:len(REQUESTS)]}
    assert [payload for _, _, payload in alone[len(REQUESTS):]] == list(expected.values())  # repeatable alone
    before = resident_bytes()

    clients = [httpx.Client(base_url=address, timeout=300) for _ in range(CLIENTS)]
    try:
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(lambda n: send(clients[n % CLIENTS], n), range(TOTAL)))
    finally:
        for client in clients:
            client.close()
    growth = resident_bytes() - before

    assert len(answers) == TOTAL
    failed = [(number, status, payload) for number, status, payload in answers if status != 200]
    assert failed == []
    different = [number for number, _, payload in answers if payload != expected[number % len(REQUESTS)]]
    assert different == []
    print(f"resident memory grew by {growth / 2 ** 20:.1f} MiB over {TOTAL} requests")
    assert growth < MEMORY_GROWTH_LIMIT, f"resident memory grew by {growth / 2 ** 20:.0f} MiB"
