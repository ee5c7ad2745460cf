"""Work the shared pass does not do: nothing copied to stack a batch of one, no signal (and so no
backward product) for the query and key layers of a copy whose softmax is detached, and no kernel
handed a size-1 dim of stride 0 (torch's CPU GELU, first called on one, stays slow for the process).

The equalities these paths must keep are in ``tests/test_shared_forward.py``; here, what they save.
"""
from __future__ import annotations

import importlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bert_lrp import BertConfig, BertForSequenceClassification, explain
from bert_lrp.rules.composites import ATTNLRP, CP_LRP, GRADIENT, RuleSet
from bert_lrp.rules.functions import AttentionRule, first_copy, stack_copies

explain_module = importlib.import_module("bert_lrp.attribution.explain")  # the module (its explain shadows it)


def _model():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=40, max_position_embeddings=32, num_labels=3)
    return BertForSequenceClassification(config).double().eval()


def test_a_batch_of_one_is_stacked_as_a_view_and_its_first_copy_has_ordinary_strides():
    one = torch.randn(1, 5, 7)
    stacked = stack_copies(one, 3)
    assert stacked.shape == (3, 5, 7)
    assert stacked.data_ptr() == one.data_ptr() and stacked.stride(0) == 0  # nothing copied
    first = first_copy(stacked, 3)
    assert first.shape == (1, 5, 7) and first.stride(0) != 0
    assert torch.equal(first, one)
    several = torch.randn(2, 5, 7)
    repeated = stack_copies(several, 3)  # a larger batch: real copies (a view cannot merge them)
    assert repeated.stride(0) != 0 and torch.equal(repeated[4:], several)
    assert torch.equal(first_copy(repeated, 3), several)


@pytest.mark.parametrize("copies", [(CP_LRP,), (CP_LRP, CP_LRP)], ids=["one copy", "two detached copies"])
def test_a_detached_softmax_sends_query_and_key_no_signal(copies):
    """Every copy detached: Q and K get None (their layers' backwards never run), V the share of
    ``P^T g`` its rule gives."""
    rules = RuleSet.of(list(copies))
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(len(copies), 2, 4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    context, _ = AttentionRule.apply(q, k, v, None, rules, False)
    grad = torch.randn(context.shape, generator=generator, dtype=torch.float64)
    grad_q, grad_k, grad_v = torch.autograd.grad(context, (q, k, v), grad, allow_unused=True)
    assert grad_q is None and grad_k is None
    probabilities = torch.softmax(q[:1] @ k[:1].transpose(-1, -2) / 3 ** 0.5, -1).detach()
    expected = torch.cat([probabilities.transpose(-1, -2) @ g for g in grad.chunk(len(copies))])
    assert torch.allclose(grad_v, expected, rtol=1e-12, atol=1e-12)


def test_a_walk_of_a_detached_copy_sends_query_and_key_no_signal():
    """One walk per copy, the other copy's softmax its Jacobian (the fused kernel runs): the walk
    of the detached copy gives Q and K None and V its share of ``P^T g``; the other walk gives all three."""
    rules = RuleSet.of([ATTNLRP, CP_LRP], separate_backward=True)
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 4, 3, generator=generator, requires_grad=True) for _ in range(3))
    context, _ = AttentionRule.apply(q, k, v, None, rules, False)
    grad = torch.randn(context.shape, generator=generator)
    rules.active[0] = 1  # the CP-LRP walk
    grad_q, grad_k, grad_v = torch.autograd.grad(context, (q, k, v), grad, allow_unused=True, retain_graph=True)
    assert grad_q is None and grad_k is None
    probabilities = torch.softmax(q @ k.transpose(-1, -2) / 3 ** 0.5, -1).detach()
    assert torch.allclose(grad_v, probabilities.transpose(-1, -2) @ grad, rtol=1e-5, atol=1e-6)
    rules.active[0] = 0  # the AttnLRP walk
    assert all(g is not None for g in torch.autograd.grad(context, (q, k, v), grad))


class ProductCounter(TorchDispatchMode):
    """Counts the ``aten.mm`` calls (each linear layer's backward product ``g W``; the forward runs
    ``addmm``, attention its own kernels) inside the ``with`` block."""

    def __init__(self) -> None:
        super().__init__()
        self.products = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.mm.default:
            self.products += 1
        return func(*args, **(kwargs or {}))


def test_a_detached_copy_runs_no_backward_product_for_the_query_and_key_layers(monkeypatch):
    """Per encoder layer, CP-LRP's backward runs two products fewer than AttnLRP's (the query and
    key layers' ``g W``): alone, and as its own walk beside AttnLRP."""
    model = _model()
    batch = {"input_ids": torch.tensor([[2, 9, 14, 23, 3]])}
    monkeypatch.setattr(explain_module, "WALK_FROM_TOKENS", 0)  # one walk per composite
    counts = {}
    for name, methods in (("attnlrp", ["lrp:attnlrp"]), ("cp-lrp", ["lrp:cp-lrp"]),
                          ("both", ["lrp:attnlrp", "lrp:cp-lrp"])):
        with ProductCounter() as counter:
            explain(model, batch, methods=methods, target=[0])
        counts[name] = counter.products
    assert counts["attnlrp"] - counts["cp-lrp"] == 2 * model.config.num_hidden_layers
    assert counts["both"] == counts["attnlrp"] + counts["cp-lrp"]


def test_no_gelu_kernel_is_handed_a_stride_zero_dim_of_size_one(monkeypatch):
    """GS, GI and AttnLRP stacked on a batch of one: every GELU and GELU backward call gets
    tensors whose size-1 dims have ordinary strides."""
    model = _model()
    batch = {"input_ids": torch.tensor([[2, 9, 14, 23, 3]])}
    monkeypatch.setattr(explain_module, "WALK_FROM_TOKENS", 10 ** 9)  # stacked copies
    seen = []

    class GeluInputs(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (torch.ops.aten.gelu.default, torch.ops.aten.gelu_backward.default):
                seen.extend(a for a in args if isinstance(a, torch.Tensor))
            return func(*args, **(kwargs or {}))

    with GeluInputs():
        explain(model, batch, methods=["gs", "gi", "lrp:attnlrp"], target=[0])
    assert seen, "no GELU ran"
    for tensor in seen:
        assert all(stride != 0 for size, stride in zip(tensor.shape, tensor.stride()) if size == 1), \
            (tuple(tensor.shape), tensor.stride())
