"""The value share (issue 30): ``Composite.value_share`` is the share of the attention-times-values
product's relevance that goes to the values (the attention weights get the rest). AttnLRP gives
each factor half; with CP-LRP's detached softmax the half meant for the attention weights is lost,
so every attention block passes on half its relevance. With every bias at 0 (nothing absorbed) a
composite of value share 1 and a detached softmax conserves the logit; share 0.5 halves what the
attention branch passes on.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bert_lrp import BertForSequenceClassification, explain
from bert_lrp.rules.composites import ATTNLRP, Composite
from bert_lrp.rules.linear import Epsilon

from conftest import make_tiny_config


def biasless_model(layers: int) -> BertForSequenceClassification:
    """A tiny random BERT in float64 with every bias (linear and LayerNorm) set to 0."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(make_tiny_config(num_hidden_layers=layers)).double().eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
    return model


def relevance_over_logit(model, composite: Composite) -> torch.Tensor:
    """Sum of the input relevance (every embedding part) over the target logit, per example."""
    torch.manual_seed(1)
    batch = {"input_ids": torch.randint(5, 99, (3, 9)), "attention_mask": torch.ones(3, 9, dtype=torch.long)}
    result = explain(model, batch, ["lrp"], rule=composite)
    logits = model(**batch).logits.gather(1, result.target.view(-1, 1)).squeeze(1)
    return result.scores["lrp"].sum(-1) / logits


DETACHED = replace(ATTNLRP, name="detached", softmax="detach")


def test_value_share_1_with_a_detached_softmax_conserves_the_logit_when_biases_are_zero():
    model = biasless_model(layers=2)
    ratio = relevance_over_logit(model, replace(DETACHED, value_share=1.0))
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-6), ratio
    # AttnLRP's half-and-half split with the softmax detached does not (the shipped composite's halving)
    halved = relevance_over_logit(model, DETACHED)
    assert ((halved - 1).abs() > 1e-3).all(), halved


def test_value_share_half_halves_what_the_attention_branch_passes_on():
    """One layer: the sum of relevance is affine in the share; the branch's part at 0.5 is half its part at 1."""
    model = biasless_model(layers=1)
    at = {s: relevance_over_logit(model, replace(DETACHED, value_share=s)) for s in (0.0, 0.5, 1.0)}
    branch_full, branch_half = at[1.0] - at[0.0], at[0.5] - at[0.0]
    assert (branch_full.abs() > 1e-3).all()  # the branch carries relevance at all
    assert torch.allclose(branch_half, 0.5 * branch_full, atol=1e-9)
    # the uniform bilinear rule with a detached softmax is exactly value share 0.5
    assert torch.allclose(relevance_over_logit(model, DETACHED), at[0.5], atol=1e-12)


def test_value_share_none_is_the_bilinear_rules_share_and_the_taylor_softmax_takes_the_rest():
    model = biasless_model(layers=2)
    assert torch.allclose(relevance_over_logit(model, ATTNLRP), relevance_over_logit(model, replace(ATTNLRP, value_share=0.5)),
                          atol=1e-12)
    # with the Taylor softmax, the attention side keeps 1 - share: shares 0.25 and 0.75 differ from 0.5
    quarter = relevance_over_logit(model, replace(ATTNLRP, value_share=0.25))
    assert not torch.allclose(quarter, relevance_over_logit(model, ATTNLRP), atol=1e-6)


def test_value_share_is_checked_and_written():
    with pytest.raises(ValueError, match="value_share must be a number in 0..1"):
        replace(ATTNLRP, value_share=1.5)
    composite = replace(DETACHED, value_share=0.75, linear=Epsilon(0.01))
    assert Composite.from_dict(composite.to_dict()) == composite


# ------------------------------------------------------------------ the norm-scaled epsilon (the search's)
def test_the_norm_scaled_epsilon_is_epsilon_relative_to_the_outputs_scale():
    """Scaling a layer's input by c leaves the norm-scaled rule's input relevance shares unchanged
    (its stabilizer scales with the outputs), where the fixed epsilon's change; epsilon 0 is LRP-0."""
    from bert_lrp.rules.linear import ScaledEpsilon

    torch.manual_seed(0)
    x, weight, grad = torch.randn(4, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64), \
        torch.randn(4, 5, dtype=torch.float64)

    def shares(rule, scale):
        relevance = (x * scale) * rule.signal(x * scale, weight, None, grad, None)
        return relevance / relevance.sum(-1, keepdim=True)

    assert torch.allclose(shares(ScaledEpsilon(0.1), 1.0), shares(ScaledEpsilon(0.1), 100.0), atol=1e-12)
    assert not torch.allclose(shares(Epsilon(0.1), 0.01), shares(Epsilon(0.1), 100.0), atol=1e-3)
    assert torch.allclose(ScaledEpsilon(0.0).signal(x, weight, None, grad, None), grad @ weight)


def test_the_fused_attention_backward_applies_the_value_share_as_the_portable_one_does():
    """With the Taylor softmax the fused CPU kernel runs the attention backward; each share (and
    AttnLRP's None) gives what the portable Python backward gives."""
    from bert_lrp.rules.kernels import portable_kernels

    model = biasless_model(layers=2)
    for share in (None, 0.25, 0.75, 1.0):
        composite = replace(ATTNLRP, value_share=share)
        fused = relevance_over_logit(model, composite)
        with portable_kernels():
            portable = relevance_over_logit(model, composite)
        assert torch.allclose(fused, portable, atol=1e-9), (share, fused, portable)
