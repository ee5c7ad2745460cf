"""Our GS, GI, IG and AttnLRP against independent implementations on the real MiniLM weights.

- GS  == captum ``Saliency(abs=False)`` at the embedding output (the raw gradient there),
- GI  == captum ``InputXGradient`` at the embedding output,
- IG  == captum ``LayerIntegratedGradients`` on transformers' ``bert.embeddings`` (same steps,
         quadrature and baseline ``[CLS] [PAD] ... [SEP]``),
- LRP (``attnlrp``) == LXT 2.1 efficient AttnLRP, run in a subprocess (bert_lrp/evaluation/peers/lxt_runner.py)
  because LXT patches ``nn.LayerNorm`` / ``nn.Dropout`` process-wide. LXT reads relevance at
  ``inputs_embeds`` = the word embeddings, which is our ``embedding_shares["lrp"]["word"]``
  (element-wise, not only summed over hidden); the runner also reports LXT's relevance at the
  embedding output, our ``relevance["lrp"]``.

Every comparison: max|ours - peer| / max|peer| <= 1e-4. Inputs are padded (three sentences of
different lengths). Peers that are not installed are skipped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bert_lrp import BertForSequenceClassification, BertTokenizer, explain
from bert_lrp.attribution.integrated_gradients import baseline_ids

TOLERANCE = 1e-4
RUNNER = Path(__file__).resolve().parents[1] / "bert_lrp" / "evaluation" / "peers" / "lxt_runner.py"
SENTENCES = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's "
    "austere locales .",
]

pytestmark = pytest.mark.slow


def relative_error(ours: torch.Tensor, peer: torch.Tensor) -> float:
    ours, peer = torch.as_tensor(ours).detach().double(), torch.as_tensor(peer).detach().double()
    assert ours.shape == peer.shape, (ours.shape, peer.shape)
    return float((ours - peer).abs().max() / peer.abs().max().clamp_min(1e-30))


@pytest.fixture(scope="module")
def setup(minilm_path, tmp_path_factory):
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(minilm_path, num_labels=2, strict=False)
    torch.manual_seed(1234)  # a seeded head with logits of a useful size
    torch.nn.init.normal_(model.classifier.weight, std=0.5)
    torch.nn.init.normal_(model.classifier.bias, std=0.1)
    model.eval()
    tokenizer = BertTokenizer.from_pretrained(minilm_path)
    encoding = tokenizer(SENTENCES)
    batch = {k: encoding[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    assert (batch["attention_mask"] == 0).any(), "the test needs padded inputs"
    folder = tmp_path_factory.mktemp("seeded_minilm")
    model.save_pretrained(folder)
    return model, batch, folder


@pytest.fixture(scope="module")
def hf_model(setup):
    transformers = pytest.importorskip("transformers")
    model, _, folder = setup
    config = transformers.BertConfig.from_pretrained(folder)
    config._attn_implementation = "eager"
    peer = transformers.BertForSequenceClassification(config)
    missing, unexpected = peer.load_state_dict(model.state_dict(), strict=False)
    assert not [k for k in missing if "position_ids" not in k and "token_type_ids" not in k], missing
    assert not unexpected, unexpected
    peer.eval()
    for p in peer.parameters():
        p.requires_grad_(False)
    return peer


def _forward_from_embedding_output(peer, batch):
    """f(embedding_output) -> logits, running transformers' model with its embedding module's output
    replaced by the given tensor (a forward hook)."""

    def forward(embedding_output):
        handle = peer.bert.embeddings.register_forward_hook(lambda module, args, output: embedding_output)
        try:
            return peer(**batch).logits
        finally:
            handle.remove()

    return forward


def test_logits_agree_with_transformers(setup, hf_model):
    model, batch, _ = setup
    with torch.no_grad():
        ours = model(**batch).logits
        theirs = hf_model(**batch).logits
    assert relative_error(ours, theirs) <= TOLERANCE


@pytest.fixture(scope="module")
def ours(setup):
    model, batch, _ = setup
    return explain(model, batch, methods=["gs", "gi", "lrp"], rule="attnlrp")


def test_gs_equals_captum_saliency(setup, hf_model, ours):
    captum_attr = pytest.importorskip("captum.attr")
    model, batch, _ = setup
    with torch.no_grad():
        embedded = hf_model.bert.embeddings(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])
    saliency = captum_attr.Saliency(_forward_from_embedding_output(hf_model, batch))
    signed = saliency.attribute(embedded.clone(), target=ours.target, abs=False)
    keep = batch["attention_mask"].unsqueeze(-1)
    assert relative_error(ours.relevance["gradient"], signed * keep) <= TOLERANCE
    absolute = saliency.attribute(embedded.clone(), target=ours.target)  # captum's default |grad|
    assert relative_error(ours.relevance["gradient"].abs(), absolute * keep) <= TOLERANCE


def test_gi_equals_captum_input_x_gradient(setup, hf_model, ours):
    captum_attr = pytest.importorskip("captum.attr")
    model, batch, _ = setup
    with torch.no_grad():
        embedded = hf_model.bert.embeddings(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])
    ixg = captum_attr.InputXGradient(_forward_from_embedding_output(hf_model, batch))
    attribution = ixg.attribute(embedded.clone(), target=ours.target)
    keep = batch["attention_mask"].unsqueeze(-1)
    assert relative_error(ours.relevance["gradient_x_input"], attribution * keep) <= TOLERANCE


@pytest.mark.parametrize("steps,method,scale", [
    (50, "gausslegendre", 1.0),
    (20, "riemann_middle", 1.0),
    # captum's trapezoid weights are 1/n (ends 1/(2n)) and sum to (n-1)/n; ours are 1/(n-1) (ends
    # halved) and sum to 1, so ours = captum * n / (n-1) exactly (captum
    # attr/_utils/approximation_methods.py, riemann_builders).
    (20, "riemann_trapezoid", 20 / 19),
])
def test_ig_equals_captum_layer_integrated_gradients(setup, hf_model, steps, method, scale):
    captum_attr = pytest.importorskip("captum.attr")
    model, batch, _ = setup
    result = explain(model, batch, methods=["ig"], ig_steps=steps, ig_method=method,
                     ig_baseline="pad", ig_batch=32)

    def forward(input_ids, attention_mask, token_type_ids):
        return hf_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    lig = captum_attr.LayerIntegratedGradients(forward, hf_model.bert.embeddings)
    baseline = baseline_ids(model, batch["input_ids"], batch["attention_mask"], "pad")
    # the baseline is [CLS] [PAD] ... [SEP] (then the padding)
    lengths = batch["attention_mask"].sum(1)
    for row, length in enumerate(lengths.tolist()):
        assert baseline[row, 0] == batch["input_ids"][row, 0]
        assert baseline[row, length - 1] == batch["input_ids"][row, length - 1]
        assert (baseline[row, 1:length - 1] == model.config.pad_token_id).all()
    attribution, delta = lig.attribute(
        batch["input_ids"], baselines=baseline, target=result.target,
        additional_forward_args=(batch["attention_mask"], batch["token_type_ids"]),
        n_steps=steps, method=method, internal_batch_size=32, return_convergence_delta=True)
    keep = batch["attention_mask"].unsqueeze(-1)
    assert relative_error(result.relevance["integrated_gradients"], attribution * keep * scale) <= TOLERANCE
    if scale == 1.0:  # both report the same completeness gap (sum of attributions - (f(x) - f(baseline)))
        size = attribution.sum((1, 2)).abs().max()
        assert float((result.completeness_gap - delta).abs().max() / size) <= 1e-3


def _lxt_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("lxt") is not None and importlib.util.find_spec("transformers") is not None
    except Exception:
        return False


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def lxt_result(request, setup, ours, tmp_path_factory):
    if not _lxt_available():
        pytest.skip("LXT (lxt) or transformers is not installed")
    model, batch, folder = setup
    work = tmp_path_factory.mktemp("lxt")
    inputs, out = work / "inputs.npz", work / "out.npz"
    np.savez(inputs, **{k: v.numpy() for k, v in batch.items()}, target=ours.target.numpy())
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    run = subprocess.run([sys.executable, str(RUNNER), "relevance", "--model", str(folder),
                          "--inputs", str(inputs), "--out", str(out), "--attention", request.param],
                         capture_output=True, text=True, env=env, timeout=600)
    if run.returncode != 0:
        pytest.fail(f"LXT runner failed:\n{run.stderr[-4000:]}")
    return {k: torch.from_numpy(v) for k, v in np.load(out).items()}


def test_lxt_logits_match(setup, ours, lxt_result):
    assert relative_error(ours.logits, lxt_result["logits"]) <= TOLERANCE
    assert torch.equal(ours.target, lxt_result["target"])


def test_attnlrp_equals_lxt_at_word_embeddings(setup, ours, lxt_result):
    keep = setup[1]["attention_mask"].unsqueeze(-1)
    word = ours.embedding_shares["lrp"]["word"]
    assert relative_error(word, lxt_result["relevance"] * keep) <= TOLERANCE
    assert relative_error(word.sum(-1), (lxt_result["relevance"] * keep).sum(-1)) <= TOLERANCE


def test_attnlrp_equals_lxt_at_embedding_output(setup, ours, lxt_result):
    keep = setup[1]["attention_mask"].unsqueeze(-1)
    assert relative_error(ours.relevance["lrp"], lxt_result["embedding_relevance"] * keep) <= TOLERANCE


def test_lxt_drops_position_and_type_shares(setup, ours, lxt_result):
    """What LXT leaves out: our token scores add the position and token-type shares, so the sum of
    LXT's relevance is our conserved total minus those two shares."""
    shares = ours.embedding_shares["lrp"]
    dropped = (shares["position"] + shares["token_type"]).sum((1, 2))
    total = ours.scores["lrp"].sum(1)
    lxt_total = lxt_result["relevance"].sum((1, 2)).double()
    assert torch.allclose((total - dropped).double(), lxt_total, rtol=1e-3, atol=1e-4 * float(total.abs().max()))
