"""Methods stacked in one call share one forward and one backward, and each equals the same
method run alone (<= 1e-6 of its largest score, float64), for every family, with per-site
composites (``lrp:tuned``-style linear overrides) among them.

Alone, a composite may run another way than stacked (epsilon as the native linear layer with a
hook, LRP-0 and the gradient natively, alpha-beta without its Jacobian-path neighbour's company):
these tests are what says the two ways agree.
"""
from __future__ import annotations

import pytest
import torch

import bert_lrp
from bert_lrp import explain
from bert_lrp.rules.composites import ATTNLRP, CP_LRP, Composite, LinearOverride
from bert_lrp.rules.linear import Epsilon, Gamma, ZPlus

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


def _close(together: torch.Tensor, alone: torch.Tensor, what: str) -> None:
    scale = float(alone.abs().max())
    assert scale > 0, what
    assert float((together - alone).abs().max()) <= 1e-6 * scale, what


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("composite", [PER_SITE, EPSILON_ONLY, "bert-lrp"], ids=["per-site", "epsilon", "bert-lrp"])
def test_stacked_methods_equal_each_method_alone(family, composite):
    model = _model(family)
    batch = _batch(model)
    target = [0, 2, 1]
    methods = ["gs", "gi", "lrp:attnlrp", "lrp:cp-lrp", "lrp"]
    together = explain(model, batch, methods=methods, rule=composite, target=target, schedule="stacked")
    assert together.forward_passes == 1 and together.backward_passes == 1
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
def test_two_presets_in_one_call_equal_each_alone(family):
    model = _model(family)
    batch = _batch(model)
    together = explain(model, batch, methods=["lrp:attnlrp", "lrp:bert-lrp"], schedule="stacked")
    assert together.forward_passes == 1 and together.backward_passes == 1
    for method, rule in (("lrp:attnlrp", "attnlrp"), ("lrp:bert-lrp", "bert-lrp")):
        alone = explain(model, batch, methods=["lrp"], rule=rule)
        _close(together.scores[method], alone.scores["lrp"], f"{family} {method}")
