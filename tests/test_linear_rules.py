"""The linear-layer rules, written as a specification: each rule against its paper's formula, against
zennit 0.5.1 (the reference implementation of these rules), and the per-site choice of rules.

Convention (the gradient signal): a signal ``g`` flows backwards and the relevance of a tensor ``x``
is ``x * g``. A linear layer ``y = x W^T + b`` receives the relevance ``R = y * g_out`` and gives its
input ``x * g_in`` with ``g_in = linear_signal(x, W, b, g_out, choice)``; through autograd, the
seed ``g_out = R / y`` (as ``tests/test_attribution.py``'s ``_relevance``) gives the same.

The hand computations write each formula with explicit loops over the outputs j and the inputs i
in Python floats (IEEE double), never through the helpers under test.
"""
from __future__ import annotations

import json
import math
import sys
import types
from dataclasses import replace

import pytest
import torch

from bert_lrp.errors import RequestError
from bert_lrp import (BertConfig, BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification,
                      RobertaConfig, RobertaForSequenceClassification, explain)
from bert_lrp.models.sites import linear_sites, site_of
from bert_lrp.rules.composites import ATTNLRP, Composite, LinearOverride, RuleSet, Site
from bert_lrp.rules.functions import LinearRule, linear_signal
from bert_lrp.rules.linear import ContributionAlphaBeta, Epsilon, Gamma, Jacobian, ZPlus

# Most parameters are exact in float32 (2^-20 ~ 1e-6, epsilon 0.25, ...);
# test_epsilon_and_stabilizer_keep_the_inputs_precision checks ones that are not (0.3, 1e-6): epsilon and
# the stabilizer are added in the input's dtype (once they were rounded to float32 first).
STABILIZER = 2.0 ** -20
RTOL = 1e-10  # float64: the same formula summed in another order differs by a few ulps (~1e-16)


# ------------------------------------------------------------------------------ inputs
def layer_case(case: str, seed: int = 0, batch=(2, 3), sizes=(6, 4)):
    """``x [*batch, in]``, ``W [out, in]``, ``b [out]`` (or None), output relevance ``R [*batch, out]``,
    all float64. Cases: ``mixed`` (inputs, weights and bias of both signs), ``zero_bias`` (a bias
    of zeros), ``no_bias`` (None), ``positive`` (non-negative inputs, as after a ReLU)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, sizes[0], generator=generator, dtype=torch.float64)
    weight = torch.randn(sizes[1], sizes[0], generator=generator, dtype=torch.float64)
    bias = torch.randn(sizes[1], generator=generator, dtype=torch.float64)
    relevance = torch.randn(*batch, sizes[1], generator=generator, dtype=torch.float64)
    if case == "zero_bias":
        bias = torch.zeros_like(bias)
    elif case == "no_bias":
        bias = None
    elif case == "positive":
        x = x.abs()
    else:
        assert case == "mixed", case
    y = torch.nn.functional.linear(x, weight, bias)
    assert float(y.abs().min()) > 1e-3, "pick another seed: an output near 0 makes R / y ill-conditioned"
    assert (x > 0).any() and ((x < 0).any() or case == "positive")
    return x, weight, bias, relevance


CASES = ["mixed", "zero_bias", "no_bias", "positive"]


def assert_float64_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float64 rounding (relative 1e-10 of the largest entry)."""
    assert got.dtype == expected.dtype == torch.float64
    scale = float(expected.abs().max())
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=RTOL * scale)


# ------------------------------------------------------------------------- the rules by hand
def sign(value: float) -> float:
    """sign with sign(0) = +1 (how a stabilizer is added to a zero denominator)."""
    return 1.0 if value >= 0 else -1.0


def share_by_hand(x, weight, bias, relevance, contribution, bias_part, stabilize, active=lambda y: True):
    """``R_i = sum_j c_ij R_j / stabilize(sum_i' c_i'j + b'_j)`` at every position (leading dims),
    over the outputs j with ``active(y_j)``; ``c_ij = contribution(x_i, w_ji, y_j)`` and
    ``b'_j = bias_part(b_j, y_j)``. Python floats, one loop per index."""
    shape = x.shape
    xs = x.reshape(-1, shape[-1]).tolist()
    rs = relevance.reshape(-1, weight.shape[0]).tolist()
    w = weight.tolist()
    b = [0.0] * len(w) if bias is None else bias.tolist()
    out = []
    for x_row, r_row in zip(xs, rs):
        r_in = [0.0] * len(x_row)
        for j, w_j in enumerate(w):
            y_j = sum(x_i * w_ji for x_i, w_ji in zip(x_row, w_j)) + b[j]
            if not active(y_j):
                continue
            c = [contribution(x_i, w_ji, y_j) for x_i, w_ji in zip(x_row, w_j)]
            z_j = sum(c) + bias_part(b[j], y_j)
            for i, c_ij in enumerate(c):
                r_in[i] += c_ij * r_row[j] / stabilize(z_j)
        out.append(r_in)
    return torch.tensor(out, dtype=torch.float64).reshape(shape)


def epsilon_by_hand(x, weight, bias, relevance, epsilon):
    """Epsilon-LRP: ``R_i = sum_j x_i w_ji R_j / (z_j + eps sign(z_j))``, ``z_j = sum_i x_i w_ji + b_j``."""
    return share_by_hand(x, weight, bias, relevance, lambda x_i, w_ji, y: x_i * w_ji, lambda b_j, y: b_j,
                         lambda z: z + epsilon * sign(z))


def gamma_by_hand(x, weight, bias, relevance, gamma, stabilizer):
    """Generalised gamma: for ``y_j > 0`` a positive input weighs ``w + gamma w+``, a negative one
    ``w + gamma w-``, the bias is ``b + gamma b+``; for ``y_j < 0`` the other way round (bias
    ``b + gamma b-``); ``y_j = 0`` sends nothing."""
    def contribution(x_i, w_ji, y_j):
        agrees = (x_i > 0) == (y_j > 0)  # the input's sign agrees with the output's: favour like-signed weights
        return x_i * (w_ji + gamma * (max(w_ji, 0.0) if agrees else min(w_ji, 0.0)))

    def bias_part(b_j, y_j):
        return b_j + gamma * (max(b_j, 0.0) if y_j > 0 else min(b_j, 0.0))

    return share_by_hand(x, weight, bias, relevance, contribution, bias_part, lambda z: z + stabilizer * sign(z),
                         active=lambda y: y != 0)


def contribution_alpha_beta_by_hand(x, weight, bias, relevance, alpha, beta, stabilizer):
    """``R_i = alpha sum_j c+_ij R_j / z+_j - beta sum_j c-_ij R_j / z-_j``: ``c+ = (x_i w_ji)+``
    (x+ W+ and x- W-) with ``b+`` in ``z+``, ``c- = (x_i w_ji)-`` (x+ W- and x- W+) with ``b-`` in ``z-``."""
    stabilize = lambda z: z + stabilizer * sign(z)  # noqa: E731
    positive = share_by_hand(x, weight, bias, relevance, lambda x_i, w_ji, y: max(x_i * w_ji, 0.0),
                             lambda b_j, y: max(b_j, 0.0), stabilize)
    if beta == 0:
        return alpha * positive
    negative = share_by_hand(x, weight, bias, relevance, lambda x_i, w_ji, y: min(x_i * w_ji, 0.0),
                             lambda b_j, y: min(b_j, 0.0), stabilize)
    return alpha * positive - beta * negative


# ------------------------------------------------------------------------------ ours, two ways
def through_linear_signal(x, weight, bias, relevance, choice):
    """``x * linear_signal(x, W, b, R / y, choice)``."""
    y = torch.nn.functional.linear(x, weight, bias)
    return x * linear_signal(x, weight, bias, relevance / y, choice)


def through_autograd(x, weight, bias, relevance, choice):
    """``LinearRule.apply`` on a leaf, seeded with ``R / y`` (0 where ``y = 0``): ``x * dx``."""
    leaf = x.clone().requires_grad_(True)
    y = LinearRule.apply(leaf, weight, bias, (choice,))
    out = y.detach()
    seed = torch.where(out == 0, 0.0, relevance / torch.where(out == 0, 1.0, out))
    (signal,) = torch.autograd.grad(y, leaf, grad_outputs=seed)
    return x * signal


PATHS = {"linear_signal": through_linear_signal, "LinearRule": through_autograd}


# ------------------------------------------------------------------ each rule = its paper's formula
@pytest.mark.parametrize("epsilon", [0.25, 2.0 ** -6])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES)
def test_epsilon_rule_is_bach_2015_formula(case, path, epsilon):
    """Epsilon-LRP (Bach et al. 2015, PLOS ONE): R_i = sum_j x_i w_ji R_j / (z_j + eps sign(z_j)),
    sign(0) = +1; the bias keeps its share of R_j."""
    x, w, b, r = layer_case(case, seed=1)
    choice = Epsilon(epsilon=epsilon)
    assert_float64_close(PATHS[path](x, w, b, r, choice), epsilon_by_hand(x, w, b, r, epsilon))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES)
def test_gamma_rule_is_the_generalised_gamma_of_montavon_2019_and_andeol_2021(case, path):
    """Gamma rule (Montavon et al. 2019, "Layer-wise relevance propagation: an overview"),
    generalised to inputs of both signs (Andeol et al. 2021; zennit's Gamma): the contributions
    that agree with y_j's sign get gamma times their like-signed weight added."""
    x, w, b, r = layer_case(case, seed=2)
    choice = Gamma(gamma=0.4, stabilizer=STABILIZER)
    assert_float64_close(PATHS[path](x, w, b, r, choice), gamma_by_hand(x, w, b, r, 0.4, STABILIZER))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES)
def test_zplus_rule_is_montavon_2017_formula(case, path):
    """z+ (Montavon et al. 2017, "Explaining nonlinear classification decisions with deep Taylor
    decomposition"), alpha = 1, beta = 0 by the sign of each contribution x_i w_ji:
    R_i = sum_j (x_i w_ji)+ R_j / (sum_i (x_i w_ji)+ + b_j+)."""
    x, w, b, r = layer_case(case, seed=3)
    choice = ZPlus(stabilizer=STABILIZER)
    assert_float64_close(PATHS[path](x, w, b, r, choice),
                         contribution_alpha_beta_by_hand(x, w, b, r, 1.0, 0.0, STABILIZER))


@pytest.mark.parametrize("beta", [0.5, 1.0])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES)
def test_contribution_alpha_beta_rule_is_bach_2015_formula(case, path, beta):
    """Alpha-beta (Bach et al. 2015), alpha = 1 + beta, split by the sign of each contribution:
    R_i = alpha sum_j c+_ij R_j / z+_j - beta sum_j c-_ij R_j / z-_j (b+ in z+, b- in z-)."""
    x, w, b, r = layer_case(case, seed=4)
    choice = ContributionAlphaBeta(beta=beta, stabilizer=STABILIZER)
    assert_float64_close(PATHS[path](x, w, b, r, choice),
                         contribution_alpha_beta_by_hand(x, w, b, r, 1.0 + beta, beta, STABILIZER))


def with_an_output_at_zero(seed: int = 5):
    """A mixed layer whose output 0 is exactly 0 at position (0, 0) (``w_0 = (.5, -.5, 0, ...)``,
    ``b_0 = 0``, ``x_0 = x_1`` there), and a signal that is finite everywhere."""
    x, w, b, _ = layer_case("mixed", seed=seed)
    w[0] = 0.0
    w[0, 0], w[0, 1], b[0] = 0.5, -0.5, 0.0
    x[0, 0, 1] = x[0, 0, 0]
    x[1, 2, 1] = x[1, 2, 0]
    y = torch.nn.functional.linear(x, w, b)
    assert y[0, 0, 0] == 0 and y[1, 2, 0] == 0 and int((y == 0).sum()) == 2
    signal = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x, w, b, y, signal


def test_gamma_rule_sends_nothing_from_an_output_at_zero():
    """Gamma (Montavon et al. 2019; zennit's Gamma): an output with y_j = 0 sends no relevance,
    and nothing becomes NaN (its modified denominator need not be 0)."""
    x, w, b, y, signal = with_an_output_at_zero()
    got = x * linear_signal(x, w, b, signal, Gamma(gamma=0.5, stabilizer=STABILIZER))
    assert torch.isfinite(got).all()
    assert_float64_close(got, gamma_by_hand(x, w, b, y * signal, 0.5, STABILIZER))


def test_gamma_zero_is_lrp_0_the_gradient_where_the_output_is_not_zero():
    """Gamma rule with gamma = 0 (Montavon et al. 2019) is LRP-0 (Bach et al. 2015), whose signal
    is the plain gradient g W, for every output with y_j != 0; an output at y_j = 0 sends nothing
    under gamma, while the gradient still sends g_j w_j."""
    x, w, b, y, signal = with_an_output_at_zero()
    gamma_zero = linear_signal(x, w, b, signal, Gamma(gamma=0.0, stabilizer=0.0))
    assert_float64_close(gamma_zero, (signal * (y != 0)) @ w)
    gradient = signal @ w
    at_zero = torch.zeros(y.shape[:-1], dtype=torch.bool)  # the two positions where an output is 0
    at_zero[0, 0], at_zero[1, 2] = True, True
    assert_float64_close(gamma_zero[~at_zero], gradient[~at_zero])
    share_of_output_0 = signal[at_zero][:, :1] * w[0]  # what the gradient sends from y_0 = 0: g_0 w_0
    assert float(share_of_output_0.abs().max()) > 1e-2
    assert_float64_close(gradient[at_zero] - gamma_zero[at_zero], share_of_output_0)


def both_signs_per_output(seed: int):
    """A bias-free layer in which every output at every position has positive and negative
    contributions (so that z+ > 0 and z- < 0: both rules have somewhere to send R_j)."""
    x, w, _, r = layer_case("no_bias", seed=seed)
    contributions = x[..., None, :] * w  # [batch, seq, out, in]
    assert (contributions.clamp(min=0).sum(-1) > 1e-2).all() and (contributions.clamp(max=0).sum(-1) < -1e-2).all()
    return x, w, r, contributions


@pytest.mark.parametrize("choice, alpha, beta", [(ZPlus(stabilizer=STABILIZER), 1.0, 0.0),
                                                 (ContributionAlphaBeta(beta=1.0, stabilizer=STABILIZER), 2.0, 1.0),
                                                 (ContributionAlphaBeta(beta=0.5, stabilizer=STABILIZER), 1.5, 0.5)],
                         ids=["zplus", "alpha2beta1", "alpha1.5beta0.5"])
def test_contribution_rules_conserve_relevance_without_bias(choice, alpha, beta):
    """z+ (Montavon et al. 2017) and alpha-beta with alpha - beta = 1 (Bach et al. 2015) conserve
    relevance at a bias-free layer: sum_i R_i = sum_j R_j at every position, up to the stabilizer
    (each output loses R_j times alpha s / (z+_j + s) and beta s / (|z-_j| + s))."""
    x, w, r, contributions = both_signs_per_output(seed=6)
    for path in PATHS.values():
        r_in = path(x, w, None, r, choice)
        z_pos, z_neg = contributions.clamp(min=0).sum(-1), contributions.clamp(max=0).sum(-1)
        stabilizer_loss = (r.abs() * (alpha * STABILIZER / z_pos + beta * STABILIZER / z_neg.abs())).sum(-1)
        gap = (r_in.sum(-1) - r.sum(-1)).abs()
        assert (gap <= stabilizer_loss + 1e-12).all(), (gap.max(), stabilizer_loss.max())
    # and with a tiny stabilizer, conservation is exact to rounding
    r_in = through_linear_signal(x, w, None, r, replace(choice, stabilizer=1e-300))
    assert_float64_close(r_in.sum(-1), r.sum(-1))


def test_zplus_keeps_the_positive_bias_share_out_of_the_inputs():
    """z+ (Montavon et al. 2017) with a bias: the inputs get R_j (z+_j - b+_j) / z+_j, the positive
    bias keeps the rest, so the layer conserves relevance only without a bias."""
    x, w, b, r = layer_case("mixed", seed=7)
    b = b.abs() + 0.5
    z_pos = (x[..., None, :] * w).clamp(min=0).sum(-1) + b
    r_in = through_linear_signal(x, w, b, r, ZPlus(stabilizer=1e-300))
    assert_float64_close(r_in.sum(-1), (r * (z_pos - b) / z_pos).sum(-1))
    assert float((r_in.sum(-1) - r.sum(-1)).abs().max()) > 1e-2


@pytest.mark.parametrize("choices", [
    (Gamma(gamma=0.5, stabilizer=STABILIZER),
     ContributionAlphaBeta(beta=1.0, stabilizer=STABILIZER)),
    (Jacobian(), Epsilon(epsilon=0.25)),
    (ZPlus(stabilizer=STABILIZER), Gamma(gamma=0.1, stabilizer=STABILIZER)),
], ids=["gamma|alpha2beta1", "gradient|epsilon", "zplus|gamma"])
def test_stacked_copies_each_get_their_own_rule(choices):
    """Stacked batches (one copy of the inputs per method, along dim 0): one LinearRule, two
    choices; each copy's forward is the layer's, and its input relevance is its own rule's formula."""
    x, w, b, r = layer_case("mixed", seed=8)
    by_hand = {
        "gamma": lambda c: gamma_by_hand(x, w, b, r, c.gamma, c.stabilizer),
        "contribution_alpha_beta": lambda c: contribution_alpha_beta_by_hand(x, w, b, r, 1 + c.beta, c.beta,
                                                                             c.stabilizer),
        "zplus": lambda c: contribution_alpha_beta_by_hand(x, w, b, r, 1.0, 0.0, c.stabilizer),
        "epsilon": lambda c: epsilon_by_hand(x, w, b, r, c.epsilon),
        "jacobian": lambda c: epsilon_by_hand(x, w, b, r, 0.0),  # LRP-0: the gradient x input
    }
    stacked = torch.cat([x, x]).requires_grad_(True)
    y = LinearRule.apply(stacked, w, b, choices)
    assert_float64_close(y.detach(), torch.nn.functional.linear(torch.cat([x, x]), w, b))
    (signal,) = torch.autograd.grad(y, stacked, grad_outputs=torch.cat([r, r]) / y.detach())
    for part, choice in zip((stacked.detach() * signal).chunk(2), choices):
        assert_float64_close(part, by_hand[choice.name](choice))
    first, second = (stacked.detach() * signal).chunk(2)
    assert float((first - second).abs().max()) > 1e-3  # the two rules do differ here


# ------------------------------------------------------------------------------ the peer: zennit
@pytest.fixture
def zennit_rules(monkeypatch):
    """zennit 0.5.1's rules module. zennit's package __init__ imports zennit.torchvision, which
    imports torchvision.models.resnet's Bottleneck and BasicBlock for its ResNet canonizer; no
    torchvision build fits beside our torch, and the linear rules never use that canonizer, so
    (only when torchvision is missing) two empty stand-in classes take their place for the import."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        resnet = types.ModuleType("torchvision.models.resnet")
        resnet.Bottleneck = type("Bottleneck", (torch.nn.Module,), {})
        resnet.BasicBlock = type("BasicBlock", (torch.nn.Module,), {})
        models = types.ModuleType("torchvision.models")
        models.resnet = resnet
        package = types.ModuleType("torchvision")
        package.models = models
        for name, module in (("torchvision", package), ("torchvision.models", models),
                             ("torchvision.models.resnet", resnet)):
            monkeypatch.setitem(sys.modules, name, module)
    import zennit
    import zennit.rules

    assert zennit.rules.__name__ == "zennit.rules"
    return zennit.rules


PEER_RULES = {
    "epsilon": (lambda z: z.Epsilon(epsilon=0.125), Epsilon(epsilon=0.125)),
    "epsilon_small": (lambda z: z.Epsilon(epsilon=2.0 ** -20), Epsilon(epsilon=2.0 ** -20)),
    "gamma": (lambda z: z.Gamma(gamma=0.25, stabilizer=STABILIZER),
              Gamma(gamma=0.25, stabilizer=STABILIZER)),
    "gamma_large": (lambda z: z.Gamma(gamma=2.0, stabilizer=STABILIZER),
                    Gamma(gamma=2.0, stabilizer=STABILIZER)),
    "zplus": (lambda z: z.ZPlus(stabilizer=STABILIZER), ZPlus(stabilizer=STABILIZER)),
    "alpha2_beta1": (lambda z: z.AlphaBeta(alpha=2.0, beta=1.0, stabilizer=STABILIZER),
                     ContributionAlphaBeta(beta=1.0, stabilizer=STABILIZER)),
    "alpha1.5_beta0.5": (lambda z: z.AlphaBeta(alpha=1.5, beta=0.5, stabilizer=STABILIZER),
                         ContributionAlphaBeta(beta=0.5, stabilizer=STABILIZER)),
}


def zennit_relevance(rule, x, weight, bias, relevance):
    """zennit's input relevance: its rule hooked on an nn.Linear, the output relevance passed as
    the gradient (zennit's convention), the input's gradient is then the input relevance."""
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None).double()
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    handle = rule.register(linear)
    try:
        leaf = x.clone().requires_grad_(True)
        (relevance_in,) = torch.autograd.grad(linear(leaf), leaf, grad_outputs=relevance)
    finally:
        handle.remove()
    return relevance_in


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", PEER_RULES)
def test_each_rule_equals_zennit(zennit_rules, name, case):
    """Our rules equal zennit 0.5.1's (Anders et al. 2021) Epsilon, Gamma, ZPlus and AlphaBeta on
    one nn.Linear with inputs [batch, seq, in], in float64 with zennit's stabilizer equal to ours. Tolerance: 1e-10 relative to the
    largest entry; both compute the same expression in float64 but sum and divide in another
    order (zennit: autograd through 2 to 5 modified copies of the layer; ours: the seed R / y times
    y, then one matmul per signal), so they differ by rounding (~1e-16 times a small condition
    number), far below 1e-10 and far above it for any real difference of rule."""
    peer_rule, choice = PEER_RULES[name]
    x, w, b, r = layer_case(case, seed=9)
    peer = zennit_relevance(peer_rule(zennit_rules), x, w, b, r)
    assert peer.abs().max() > 0
    assert_float64_close(through_linear_signal(x, w, b, r, choice), peer)
    assert_float64_close(through_autograd(x, w, b, r, choice), peer)


def test_the_zennit_comparison_can_tell_rules_apart(zennit_rules):
    """The peer comparison is sharp: zennit's AlphaBeta(2, 1) is not our z+, nor Gamma(0.25) our gamma 0.3."""
    x, w, b, r = layer_case("mixed", seed=9)
    peer = zennit_relevance(zennit_rules.AlphaBeta(alpha=2.0, beta=1.0, stabilizer=STABILIZER), x, w, b, r)
    ours = through_linear_signal(x, w, b, r, ZPlus(stabilizer=STABILIZER))
    assert float((ours - peer).abs().max()) > 1e-3
    peer = zennit_relevance(zennit_rules.Gamma(gamma=0.25, stabilizer=STABILIZER), x, w, b, r)
    ours = through_linear_signal(x, w, b, r, Gamma(gamma=0.3, stabilizer=STABILIZER))
    assert float((ours - peer).abs().max()) > 1e-3


def one_output_at_the_stabilizer():
    """``y = 1e-6 - 3``, one output, where z+ = 1e-6 equals the stabilizer."""
    x = torch.tensor([[1e-6, -3.0]], dtype=torch.float64)
    return x, torch.ones(1, 2, dtype=torch.float64), None, torch.ones(1, 1, dtype=torch.float64)


@pytest.mark.parametrize("name", ["epsilon_0.3", "zplus_stabilizer_1e-6"])
def test_epsilon_and_stabilizer_keep_the_inputs_precision(zennit_rules, name):
    """Epsilon-LRP (Bach et al. 2015) and z+ (Montavon et al. 2017) in float64 with parameters that
    float32 cannot hold (0.3, 1e-6) equal zennit's (which adds them in float64) to 1e-10."""
    if name == "epsilon_0.3":
        x, w, b, r = layer_case("mixed", seed=9)
        peer_rule, choice = zennit_rules.Epsilon(epsilon=0.3), Epsilon(epsilon=0.3)
    else:  # zennit: R_1 = 1e-6 / (1e-6 + 1e-6) = 0.5 exactly
        x, w, b, r = one_output_at_the_stabilizer()
        peer_rule, choice = zennit_rules.ZPlus(stabilizer=1e-6), ZPlus(stabilizer=1e-6)
    assert_float64_close(through_linear_signal(x, w, b, r, choice), zennit_relevance(peer_rule, x, w, b, r))


# ------------------------------------------------------------------------------ sites and overrides
def tiny_values(layers: int = 2):
    """As tests/test_attribution.py's tiny_config."""
    return dict(vocab_size=60, hidden_size=24, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=30,
                max_position_embeddings=32, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def linear_names(model):
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


def expected_sites(prefix: str, attention, ffn, layers: int = 2):
    return {f"{prefix}.layer.{n}.{part}": Site(kind, n) for n in range(layers)
            for kind, parts in (("attention", attention), ("ffn", ffn)) for part in parts}


BERT_ATTENTION = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense")
BERT_FFN = ("intermediate.dense", "output.dense")


def test_sites_of_bert_roberta_and_distilbert():
    """Every linear module of the three families gets its kind and encoder layer from its name:
    attention (Q, K, V, output projection), ffn (both dense layers), pooler, classifier (every
    head layer, RoBERTa's dense + out_proj and DistilBERT's pre_classifier included)."""
    families = {
        "bert": (BertForSequenceClassification(BertConfig(**tiny_values()), num_labels=3),
                 {**expected_sites("bert.encoder", BERT_ATTENTION, BERT_FFN),
                  "bert.pooler.dense": Site("pooler"), "classifier": Site("classifier")}),
        "roberta": (RobertaForSequenceClassification(RobertaConfig(**tiny_values()), num_labels=3),
                    {**expected_sites("roberta.encoder", BERT_ATTENTION, BERT_FFN),
                     "classifier.dense": Site("classifier"), "classifier.out_proj": Site("classifier")}),
        "distilbert": (DistilBertForSequenceClassification(DistilBertConfig(**tiny_values()), num_labels=3),
                       {**expected_sites("distilbert.transformer", ("attention.q_lin", "attention.k_lin",
                                                                    "attention.v_lin", "attention.out_lin"),
                                         ("ffn.lin1", "ffn.lin2")),
                        "pre_classifier": Site("classifier"), "classifier": Site("classifier")}),
    }
    for family, (model, expected) in families.items():
        assert sorted(linear_names(model)) == sorted(expected), family
        assert {name: site_of(name) for name in linear_names(model)} == expected, family
        modules = dict(model.named_modules())
        assert linear_sites(model) == {modules[name]: site for name, site in expected.items()}, family
    assert site_of("electra.embeddings_project") == Site("embeddings")
    assert site_of("bert.encoder.layer.11.attention.output.dense") == Site("attention", 11)


BRIEF_OVERRIDES = (LinearOverride("gamma", layers=(0, 1), gamma=0.5, stabilizer=1e-5),
                   LinearOverride("epsilon", kinds=("classifier",), epsilon=0.1))


def test_overrides_resolve_per_site():
    """LinearOverride: a rule for the linear layers of some kinds (none = all) in encoder layers
    [first, last) (a layer range selects encoder layers only: never the pooler or a head); the
    rest keep the composite's rule; an override's rule object carries all its parameters."""
    composite = replace(ATTNLRP, name="mixed", linear_overrides=BRIEF_OVERRIDES)
    default = Epsilon(epsilon=0.0)
    gamma = Gamma(gamma=0.5, stabilizer=1e-5)
    epsilon = Epsilon(epsilon=0.1)
    expected = {Site("attention", 0): gamma, Site("ffn", 0): gamma, Site("attention", 1): default,
                Site("ffn", 1): default, Site("attention", 7): default, Site("pooler"): default,
                Site("embeddings"): default, Site("classifier"): epsilon, None: default}
    for site, choice in expected.items():
        assert composite.linear_rule_at(site) == choice, site
    # per module, through a RuleSet of two copies (this composite and plain AttnLRP)
    model = BertForSequenceClassification(BertConfig(**tiny_values()), num_labels=3)
    rules = RuleSet.of([composite, ATTNLRP], sites=linear_sites(model))
    modules = dict(model.named_modules())
    plain = ATTNLRP.linear_rule_at()
    assert rules.linear_rules(modules["bert.encoder.layer.0.attention.self.key"]) == (gamma, plain)
    assert rules.linear_rules(modules["bert.encoder.layer.0.output.dense"]) == (gamma, plain)
    assert rules.linear_rules(modules["bert.encoder.layer.1.intermediate.dense"]) == (default, plain)
    assert rules.linear_rules(modules["bert.pooler.dense"]) == (default, plain)
    assert rules.linear_rules(modules["classifier"]) == (epsilon, plain)


def test_later_overrides_win():
    """Where two overrides select a site, the later one's rule applies."""
    wide = LinearOverride("gamma", layers=(0, 2), gamma=0.5)
    narrow = LinearOverride("zplus", kinds=("ffn",), layers=(1, 2))
    everywhere = LinearOverride("contribution_alpha_beta", beta=0.5)
    composite = replace(ATTNLRP, name="order", linear_overrides=(wide, narrow))
    assert composite.linear_rule_at(Site("ffn", 1)).name == "zplus"
    assert composite.linear_rule_at(Site("attention", 1)).name == "gamma"
    assert composite.linear_rule_at(Site("ffn", 0)).name == "gamma"
    reversed_order = replace(composite, linear_overrides=(narrow, wide))
    assert reversed_order.linear_rule_at(Site("ffn", 1)).name == "gamma"
    last = replace(composite, linear_overrides=(wide, narrow, everywhere))
    for site in (Site("ffn", 1), Site("attention", 0), Site("pooler"), Site("classifier"), None):
        assert last.linear_rule_at(site) == ContributionAlphaBeta(beta=0.5, stabilizer=1e-7)


def test_composite_round_trips_through_to_dict_and_json():
    """Composite.to_dict is JSON-ready and Composite.from_dict reads it back to an equal composite."""
    composite = replace(ATTNLRP, name="tuned", linear=Epsilon(1e-3), token_parts="word", linear_overrides=BRIEF_OVERRIDES + (
        LinearOverride(ContributionAlphaBeta(beta=0.5, stabilizer=1e-6), kinds=("attention", "ffn"), layers=(1, 3)),))
    values = composite.to_dict()
    assert Composite.from_dict(values) == composite
    assert Composite.from_dict(json.loads(json.dumps(values))) == composite
    assert Composite.from_dict(ATTNLRP.to_dict()) == ATTNLRP


# lrp_composite.json's first form (version 1): the linear rule by name beside every parameter, flat
VERSION_1_ATTNLRP = {"name": "attnlrp", "linear": "epsilon", "layer_norm": "detach_std", "activation": "identity",
                     "softmax": "taylor", "bilinear": "uniform", "residual": "jacobian", "signal": "gradient",
                     "epsilon": 0.0, "alpha": 0.5, "stabilizer": 1e-07, "gamma": 0.25, "beta": 1.0,
                     "linear_overrides": [], "token_parts": "all"}


@pytest.mark.parametrize("change, field", [
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"linear": {"name": "zminus"}}, "linear: unknown linear rule 'zminus'"),
    ({"linear": {"name": "gamma", "gamma": -0.5}}, "linear: gamma rule: gamma must be a finite number >= 0"),
    ({"linear": {"name": "zplus", "gamma": 0.5}}, "linear: zplus rule: unknown parameter 'gamma'"),
    ({"gamma": 0.5}, "unknown field 'gamma'"),
    ({"linear_overrides": [{"rule": "zminus"}]}, r"linear_overrides\[0\]: unknown linear rule 'zminus'"),
    ({"linear_overrides": [{"rule": {"name": "gamma", "gamma": -0.5}}]}, r"linear_overrides\[0\]: gamma rule: gamma must be"),
    ({"linear_overrides": [{"rule": "gamma", "layers": [2, 1]}]}, r"linear_overrides\[0\]: layers must be"),
    ({"linear_overrides": [{"rule": "gamma", "shade": 1}]}, r"linear_overrides\[0\]: unknown field 'shade'"),
], ids=["unknown-field", "unknown-rule", "negative-gamma", "parameter-of-another-rule", "flat-parameter",
        "unknown-override-rule", "negative-override-gamma", "layer-range-2-1", "unknown-override-field"])
def test_from_dict_refuses_a_bad_field_and_names_it(change, field):
    """Composite.from_dict raises a ValueError that names where (the caller's label) and the field."""
    with pytest.raises(ValueError, match=rf"^field 'composite': .*{field}"):
        Composite.from_dict({**ATTNLRP.to_dict(), **change}, "field 'composite'")


@pytest.mark.parametrize("change, field", [
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"linear": "zminus"}, "unknown linear rule 'zminus'"),
    ({"gamma": -0.5}, "gamma must be a finite number >= 0"),
    ({"linear_overrides": [{"rule": "zminus"}]}, r"linear_overrides\[0\]: unknown linear rule 'zminus'"),
    ({"linear_overrides": [{"rule": "gamma", "gamma": -0.5}]}, r"linear_overrides\[0\]: gamma must be"),
    ({"linear_overrides": [{"rule": "gamma", "layers": [2, 1]}]}, r"linear_overrides\[0\]: layers must be"),
    ({"linear_overrides": [{"rule": "gamma", "shade": 1}]}, r"linear_overrides\[0\]: unknown field 'shade'"),
], ids=["unknown-field", "unknown-rule", "negative-gamma", "unknown-override-rule", "negative-override-gamma",
        "layer-range-2-1", "unknown-override-field"])
def test_from_dict_refuses_a_bad_field_of_the_version_1_form_and_names_it(change, field):
    """The version-1 form (flat parameters) is read as strictly, with the same one-line errors."""
    assert Composite.from_dict(VERSION_1_ATTNLRP) == replace(ATTNLRP, name="attnlrp")
    with pytest.raises(ValueError, match=rf"^field 'composite': .*{field}"):
        Composite.from_dict({**VERSION_1_ATTNLRP, **change}, "field 'composite'")


# ---------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_bert_and_batch():
    """A tiny random BERT classifier (biases and LayerNorm weights randomised, as
    tests/test_attribution.py's tiny_classifier) and a padded batch of three sentences."""
    torch.manual_seed(0)
    # weights of std 0.2 (not BERT's 0.02): the logits then depend on the tokens, so relevance
    # spreads over them instead of sitting on [CLS] through the biases
    model = BertForSequenceClassification(BertConfig(**tiny_values(), initializer_range=0.2), num_labels=3).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias") and "LayerNorm" not in name:
                parameter.normal_(0, 0.1)
            if "LayerNorm.weight" in name:
                parameter.uniform_(0.5, 1.5)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (3, 10), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    ids[:, 0] = 2
    types_ = torch.zeros_like(ids)
    types_[0, 6:] = 1
    return model, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types_}


def lrp_scores(model, batch, composite):
    return explain(model, batch, ["lrp"], rule=composite, target=0).scores["lrp"]


def test_gamma_in_encoder_layer_0_changes_the_explanation(tiny_bert_and_batch):
    """A composite with the gamma rule in encoder layer 0 only explains differently from the same
    composite without overrides (far beyond float32 rounding), and differently again from gamma in
    both layers; a layer range past the model's last layer is refused, naming the override (issue 30:
    it used to select nothing and change nothing, silently)."""
    model, batch = tiny_bert_and_batch
    base = lrp_scores(model, batch, ATTNLRP)
    layer_0 = lrp_scores(model, batch, replace(ATTNLRP, name="g0", linear_overrides=(
        LinearOverride("gamma", layers=(0, 1), gamma=0.5),)))
    both = lrp_scores(model, batch, replace(ATTNLRP, name="g01", linear_overrides=(
        LinearOverride("gamma", layers=(0, 2), gamma=0.5),)))
    with pytest.raises(RequestError, match=r"linear_overrides\[0\].layers \[5, 6\] goes beyond the model's 2"):
        lrp_scores(model, batch, replace(ATTNLRP, name="g5", linear_overrides=(
            LinearOverride("gamma", layers=(5, 6), gamma=0.5),)))
    scale = float(base.abs().max())
    assert float((layer_0 - base).abs().max()) > 1e-2 * scale
    assert float((both - layer_0).abs().max()) > 1e-2 * scale
    assert (layer_0[batch["attention_mask"] == 0] == 0).all()  # padding still gets exactly nothing


def test_an_epsilon_zero_override_is_plain_attnlrp(tiny_bert_and_batch):
    """An override to epsilon = 0 (LRP-0, Bach et al. 2015) everywhere is AttnLRP's own linear
    rule (Achtibat et al. 2024): the same scores, bit for bit (both run the plain gradient)."""
    model, batch = tiny_bert_and_batch
    same = replace(ATTNLRP, name="same", linear_overrides=(LinearOverride("epsilon", epsilon=0.0),))
    assert same.is_gradient("linear")
    assert torch.equal(lrp_scores(model, batch, same), lrp_scores(model, batch, ATTNLRP))
    assert math.isfinite(float(lrp_scores(model, batch, same).sum()))


def test_sites_of_electra_and_the_token_classifier_head():
    assert site_of("electra.embeddings_project") == Site("embeddings")
    assert site_of("classifier") == Site("classifier")
    assert site_of("bert.encoder.layer.11.output.dense") == Site("ffn", 11)


def test_two_composites_with_per_layer_rules_in_one_pass_equal_each_alone(tiny_bert_and_batch):
    """Stacked copies with different per-site rules (one forward, one backward) give each
    composite's scores as its own pass does."""
    model, batch = tiny_bert_and_batch
    gamma = replace(ATTNLRP, name="gamma0", linear_overrides=(LinearOverride("gamma", layers=(0, 1), gamma=0.5),))
    zplus = replace(ATTNLRP, name="zplus-head", linear_overrides=(LinearOverride("zplus", kinds=("classifier",)),))
    together = explain(model, batch, ["lrp", "lrp:attnlrp"], rule=gamma, schedule="stacked")
    torch.testing.assert_close(together.scores["lrp"], explain(model, batch, ["lrp"], rule=gamma).scores["lrp"],
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(together.scores["lrp:attnlrp"], explain(model, batch, ["lrp:attnlrp"]).scores["lrp:attnlrp"],
                               rtol=1e-5, atol=1e-6)
    assert not torch.equal(explain(model, batch, ["lrp"], rule=zplus).scores["lrp"],
                           explain(model, batch, ["lrp:attnlrp"]).scores["lrp:attnlrp"])


def test_word_share_scores_keep_the_conservation_of_all_shares(tiny_bert_and_batch):
    """token_parts="word": the token scores are the word shares alone; the conservation ratio
    still counts every share (it describes the relevance, not the readout)."""
    model, batch = tiny_bert_and_batch
    every = explain(model, batch, ["lrp"], rule=ATTNLRP)
    word = explain(model, batch, ["lrp"], rule=replace(ATTNLRP, name="word", token_parts="word"))
    shares = every.embedding_shares["lrp"]["word"].sum(-1) * batch["attention_mask"]
    torch.testing.assert_close(word.scores["lrp"], shares)
    torch.testing.assert_close(word.conservation["lrp"], every.conservation["lrp"])
    assert not torch.allclose(word.scores["lrp"], every.scores["lrp"])
