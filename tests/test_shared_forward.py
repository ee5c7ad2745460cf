"""Methods stacked in one call share one forward (and one backward per distinct composite, or one
backward of stacked copies with BERT-LRP's Jacobian path), and each equals the same method run
alone (<= 1e-6 of its largest score, float64), for every family, with per-site composites
(``lrp:tuned``-style linear overrides) among them.

Alone, a composite may run another way than stacked (epsilon as the native linear layer with a
hook, LRP-0 and the gradient natively, alpha-beta without its Jacobian-path neighbour's company):
these tests are what says the two ways agree.
"""
from __future__ import annotations

import importlib

import pytest
import torch

import bert_lrp
from bert_lrp import explain

from bert_lrp.rules.composites import ATTNLRP, CP_LRP, Composite, LinearOverride
from bert_lrp.rules.linear import Epsilon, Gamma, ZPlus

explain_module = importlib.import_module("bert_lrp.attribution.explain")  # the module (its explain shadows it)

FAMILIES = {
    "bert": ("BertConfig", "BertForSequenceClassification",
             dict(vocab_size=60, hidden_size=24, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
                  max_position_embeddings=32, type_vocab_size=2, num_labels=3)),
    "roberta": ("RobertaConfig", "RobertaForSequenceClassification",
                dict(vocab_size=60, hidden_size=24, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
                     max_position_embeddings=40, type_vocab_size=1, num_labels=3, pad_token_id=1)),
    "distilbert": ("DistilBertConfig", "DistilBertForSequenceClassification",
                   dict(vocab_size=60, dim=24, n_layers=3, n_heads=4, hidden_dim=40, max_position_embeddings=32,
                        num_labels=3)),
    "electra": ("ElectraConfig", "ElectraForSequenceClassification",
                dict(vocab_size=60, embedding_size=16, hidden_size=24, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=40, max_position_embeddings=32, num_labels=3)),
}

# a tuned-style composite: epsilon by default, gamma in the lowest layer, z+ on the feed-forward
# layers of the middle one, the softmax detached (as the shipped model's lrp_composite.json)
PER_SITE = Composite("per-site", linear=Epsilon(0.01), layer_norm="detach_std", activation="identity",
                     softmax="detach", bilinear="uniform",
                     linear_overrides=(LinearOverride(Gamma(gamma=0.3), layers=(0, 1)),
                                       LinearOverride(ZPlus(), kinds=("ffn",), layers=(1, 2))))
EPSILON_ONLY = Composite("epsilon-only", linear=Epsilon(0.1), layer_norm="detach_std", activation="identity",
                         softmax="taylor", bilinear="uniform")


def _model(family: str):
    config_name, model_name, values = FAMILIES[family]
    torch.manual_seed(0)
    model = getattr(bert_lrp, model_name)(getattr(bert_lrp, config_name)(**values)).double().eval()
    with torch.no_grad():  # non-zero biases and LayerNorm parameters
        for name, parameter in model.named_parameters():
            if "bias" in name or "norm" in name.lower():
                parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def _batch(model):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (3, 10), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:], mask[2, 4:] = 0, 0
    ids[mask == 0] = model.config.pad_token_id
    batch = {"input_ids": ids, "attention_mask": mask}
    if "DistilBert" not in type(model).__name__:
        batch["token_type_ids"] = torch.zeros_like(ids)
    return batch


@pytest.fixture(params=["stacked copies", "one walk per composite"])
def sharing(request, monkeypatch):
    """Both ways of sharing the forward: copies stacked along the batch and walked once, or the
    inputs once and one walk of the graph per composite (explain picks by batch size)."""
    monkeypatch.setattr(explain_module, "WALK_FROM_TOKENS", 10 ** 9 if request.param == "stacked copies" else 0)
    return request.param


def _close(together: torch.Tensor, alone: torch.Tensor, what: str) -> None:
    scale = float(alone.abs().max())
    assert scale > 0, what
    assert float((together - alone).abs().max()) <= 1e-6 * scale, what


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("composite", [PER_SITE, EPSILON_ONLY, "bert-lrp"], ids=["per-site", "epsilon", "bert-lrp"])
def test_stacked_methods_equal_each_method_alone(family, composite, sharing):
    model = _model(family)
    batch = _batch(model)
    target = [0, 2, 1]
    methods = ["gs", "gi", "lrp:attnlrp", "lrp:cp-lrp", "lrp"]
    together = explain(model, batch, methods=methods, rule=composite, target=target, schedule="stacked")
    # one forward; one walk of the graph per distinct composite (gradient, attnlrp, cp-lrp, the
    # composite), or one walk of stacked copies when BERT-LRP's Jacobian path is among them
    assert together.forward_passes == 1
    walks = sharing == "one walk per composite" and composite != "bert-lrp"
    assert together.backward_passes == (4 if walks else 1)
    alone = {"gradient": explain(model, batch, methods=["gs"], target=target),
             "gradient_x_input": explain(model, batch, methods=["gi"], target=target),
             "lrp:attnlrp": explain(model, batch, methods=["lrp"], rule=ATTNLRP, target=target),
             "lrp:cp-lrp": explain(model, batch, methods=["lrp"], rule=CP_LRP, target=target),
             "lrp": explain(model, batch, methods=["lrp"], rule=composite, target=target)}
    for method, result in alone.items():
        own = method if method in ("gradient", "gradient_x_input") else "lrp"
        _close(together.scores[method], result.scores[own], f"{family} {method} scores")
        _close(together.relevance[method], result.relevance[own], f"{family} {method} relevance")


@pytest.mark.parametrize("family", ["bert", "distilbert"])
@pytest.mark.parametrize("presets", [("attnlrp", "bert-lrp"), ("attnlrp", "cp-lrp")])
def test_two_presets_in_one_call_equal_each_alone(family, presets, sharing):
    model = _model(family)
    batch = _batch(model)
    together = explain(model, batch, methods=[f"lrp:{p}" for p in presets], schedule="stacked")
    assert together.forward_passes == 1
    walks = sharing == "one walk per composite" and "bert-lrp" not in presets
    assert together.backward_passes == (2 if walks else 1)
    for method, rule in ((f"lrp:{p}", p) for p in presets):
        alone = explain(model, batch, methods=["lrp"], rule=rule)
        _close(together.scores[method], alone.scores["lrp"], f"{family} {method}")


@pytest.mark.parametrize("family", ["bert", "electra"])
def test_one_walk_per_composite_equals_stacked_copies_with_layers_and_every_label(family, monkeypatch):
    """Layer and head relevance, and ``target="all"`` (one copy per composite and label): the two
    ways of sharing the forward agree."""
    model = _model(family)
    batch = _batch(model)
    results = {}
    for name, threshold in (("stacked", 10 ** 9), ("walks", 0)):
        monkeypatch.setattr(explain_module, "WALK_FROM_TOKENS", threshold)
        results[name] = explain(model, batch, methods=["gs", "gi", "lrp:attnlrp", "lrp"], rule=PER_SITE,
                                target="all", layers=True, schedule="stacked")
    stacked, walks = results["stacked"], results["walks"]
    assert (stacked.backward_passes, walks.backward_passes) == (1, 3 * 3)  # 3 composites x 3 labels
    for method in stacked.scores:
        _close(walks.scores[method], stacked.scores[method], f"{family} {method}")
    for method in stacked.layer_scores:
        for got, expected in zip(walks.layer_scores[method], stacked.layer_scores[method]):
            _close(got, expected, f"{family} {method} layer")
        for got, expected in zip(walks.head_scores[method], stacked.head_scores[method]):
            _close(got, expected, f"{family} {method} head")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("composite", [PER_SITE, EPSILON_ONLY, "bert-lrp"], ids=["per-site", "epsilon", "bert-lrp"])
def test_a_batch_of_one_stacked_as_views_equals_each_method_alone(family, composite, monkeypatch):
    """A batch of one is stacked without copying (each rule Function's output is an expanded
    view of its first copy): every method, the layer and head relevance still equal each alone."""
    monkeypatch.setattr(explain_module, "WALK_FROM_TOKENS", 10 ** 9)
    model = _model(family)
    batch = {name: tensor[:1] for name, tensor in _batch(model).items()}
    methods = ["gs", "gi", "lrp:attnlrp", "lrp:cp-lrp", "lrp"]
    together = explain(model, batch, methods=methods, rule=composite, target=[2], layers=True)
    assert (together.forward_passes, together.backward_passes) == (1, 1)
    for method, alone_method, rule in (("gradient", "gs", None), ("gradient_x_input", "gi", None),
                                       ("lrp:attnlrp", "lrp", ATTNLRP), ("lrp:cp-lrp", "lrp", CP_LRP),
                                       ("lrp", "lrp", composite)):
        alone = explain(model, batch, methods=[alone_method], rule=rule, target=[2], layers=True)
        own = alone.methods[0]
        _close(together.scores[method], alone.scores[own], f"{family} {method} scores")
        _close(together.relevance[method], alone.relevance[own], f"{family} {method} relevance")
        if method == "gradient":  # GS has no layer relevance (a gradient, not a relevance)
            continue
        for kind in ("layer_scores", "head_scores"):
            mine, theirs = getattr(together, kind)[method], getattr(alone, kind)[own]
            assert len(mine) == len(theirs) == model.config.num_hidden_layers
            for layer, (ours, single) in enumerate(zip(mine, theirs)):
                _close(ours, single, f"{family} {method} {kind} {layer}")
