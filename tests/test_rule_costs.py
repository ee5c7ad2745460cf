"""What each linear rule costs, counted in matrix products (the unit of a transformer's cost), and
that the cheaper forms still compute each rule's formula.

The floor of any one-backward method is two products per linear layer (the forward ``x W^T`` and
the backward ``g W``). A rule's backward is counted here: the signal a linear layer sends back
under it. Counting uses torch's public ``TorchFunctionMode`` and sees every call of a matrix
product (``F.linear``, ``mm``, ``addmm``, ``matmul``, ``@``).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from bert_lrp.rules.functions import linear_signal
from bert_lrp.rules.linear import AlphaBeta, Epsilon, Gamma, Jacobian, alpha_beta_relevance

PRODUCTS = {F.linear, torch.mm, torch.addmm, torch.matmul, torch.bmm, torch.Tensor.__matmul__, torch.Tensor.mm,
            torch.Tensor.matmul, torch.Tensor.addmm}


class ProductCounter(TorchFunctionMode):
    """Counts the matrix products called inside the ``with`` block."""

    def __init__(self) -> None:
        super().__init__()
        self.products = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in PRODUCTS:
            self.products += 1
        return func(*args, **(kwargs or {}))


def _layer(seed: int = 0, dtype=torch.float64):
    """``x [2, 5, 7]``, ``W [6, 7]``, ``b [6]``, ``y = x W^T + b``, a signal ``g [2, 5, 6]``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 5, 7, generator=generator, dtype=dtype)
    weight = torch.randn(6, 7, generator=generator, dtype=dtype)
    bias = torch.randn(6, generator=generator, dtype=dtype)
    grad = torch.randn(2, 5, 6, generator=generator, dtype=dtype)
    return x, weight, bias, F.linear(x, weight, bias), grad


def _products(rule, kept_output: bool = True) -> int:
    x, weight, bias, y, grad = _layer()
    with ProductCounter() as counter:
        linear_signal(x, weight, bias, grad, rule, y if kept_output else None)
    return counter.products


@pytest.mark.parametrize("rule,products", [
    (Jacobian(), 1),                          # g W: the floor's backward
    (Epsilon(0.0), 1),                        # LRP-0 is the gradient
    (Epsilon(0.01), 1),                       # a scale of the output's signal, then g W
    (Gamma(gamma=0.25), 3),                   # |x| |W|^T, S W and D |W| (the four-weight form: 8)
    (AlphaBeta(alpha=0.5), 3),                # z+ (z- = y - z+) and one addmm pair (Wu & Ong's code: 4)
])
def test_each_rule_costs_at_most_its_stated_products(rule, products):
    assert _products(rule) == products


def test_alpha_beta_recomputes_the_output_only_when_the_forward_did_not_keep_it():
    assert _products(AlphaBeta(alpha=0.5), kept_output=False) == 4


def _alpha_beta_four_products(x, weight, bias, relevance, alpha, stabilizer):
    """Wu & Ong's rule as their code writes it: both pre-activations and both backward products."""
    w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
    c_pos = (relevance / (F.linear(x, w_pos, bias.clamp(min=0)) + stabilizer)) @ w_pos
    c_neg = (relevance / (F.linear(x, w_neg, bias.clamp(max=0)) - stabilizer)) @ w_neg
    relevance_in = (x * (alpha * c_pos + (1 - alpha) * c_neg)).abs()
    return relevance_in * (relevance.sum(-1, keepdim=True) + 1e-7) / (relevance_in.sum(-1, keepdim=True) + 1e-7)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.75])
def test_three_product_alpha_beta_equals_the_four_product_form(alpha):
    x, weight, bias, y, relevance = _layer(seed=3)
    expected = _alpha_beta_four_products(x, weight, bias, relevance, alpha, 1e-7)
    for output in (y, None):
        got = alpha_beta_relevance(x, weight, bias, relevance, alpha, 1e-7, output)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10 * float(expected.abs().max()))


def _gamma_eight_products(x, weight, bias, grad, gamma, stabilizer):
    """The generalised gamma rule with its four modified weights (zennit's form)."""
    y = F.linear(x, weight, bias)
    up_w, down_w = weight + gamma * weight.clamp(min=0), weight + gamma * weight.clamp(max=0)
    up_b, down_b = bias + gamma * bias.clamp(min=0), bias + gamma * bias.clamp(max=0)
    x_pos, x_neg = x.clamp(min=0), x.clamp(max=0)
    z_up = F.linear(x_pos, up_w, up_b) + F.linear(x_neg, down_w)
    z_down = F.linear(x_pos, down_w, down_b) + F.linear(x_neg, up_w)
    stabilized = lambda z: z + stabilizer * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)  # noqa: E731
    s_up = torch.where(y > 0, y * grad / stabilized(z_up), 0.0)
    s_down = torch.where(y < 0, y * grad / stabilized(z_down), 0.0)
    return torch.where(x > 0, s_up @ up_w + s_down @ down_w, s_up @ down_w + s_down @ up_w)


@pytest.mark.parametrize("gamma", [0.0, 0.25, 3.0])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_three_product_gamma_equals_the_eight_product_form(gamma, dtype):
    x, weight, bias, y, grad = _layer(seed=5, dtype=dtype)
    expected = _gamma_eight_products(x, weight, bias, grad, gamma, 1e-7)
    got = linear_signal(x, weight, bias, grad, Gamma(gamma=gamma, stabilizer=1e-7), y)
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance * float(expected.abs().max()))


def test_epsilon_alone_runs_as_the_native_layer_with_a_hook_and_equals_the_rule_function():
    """One copy of a composite whose linear rule reads only the output (epsilon): no rule
    Function in the graph, the same input signal as the rule Function gives."""
    from bert_lrp.rules import ops
    from bert_lrp.rules.composites import Composite, RuleSet
    from bert_lrp.rules.functions import LinearRule

    layer = torch.nn.Linear(7, 6).double().requires_grad_(False)
    x, _, _, _, grad = _layer(seed=7)
    rule = Epsilon(0.1)
    rules = RuleSet.of([Composite("eps", linear=rule)])
    x_hooked = x.clone().requires_grad_(True)
    y = ops.linear(x_hooked, layer, rules)
    assert "LinearRule" not in type(y.grad_fn).__name__
    (hooked,) = torch.autograd.grad(y, x_hooked, grad)
    x_function = x.clone().requires_grad_(True)
    (function,) = torch.autograd.grad(LinearRule.apply(x_function, layer.weight, layer.bias, (rule,)), x_function,
                                      grad)
    torch.testing.assert_close(hooked, function, rtol=1e-12, atol=1e-12)
