"""The linear rules a composite can choose, checked against their formulas and against zennit.

Each rule is written in the gradient-signal form (a signal ``g`` flows back; the relevance of ``x``
is ``x * g``): a linear layer ``y = x W^T + b`` receives ``R = y * g`` and its input relevance is
``x * linear_signal(x, W, b, g, choice)``. The hand computations below write each paper's
formula with explicit sums over inputs i and outputs j, in float64.
"""
from __future__ import annotations

import sys
import types
from dataclasses import replace

import pytest
import torch

from bert_lrp import explain
from bert_lrp.models.bert import BertForSequenceClassification
from bert_lrp.models.distilbert import DistilBertForSequenceClassification
from bert_lrp.models.config import DistilBertConfig
from bert_lrp.models.sites import linear_sites, site_of
from bert_lrp.rules.composites import ATTNLRP, Composite, LinearChoice, LinearOverride, Site
from bert_lrp.rules.functions import LinearRule, linear_signal

from conftest import make_tiny_config

STABILIZER = 1e-6


def layer(bias: bool = True, seed: int = 0, batch=(2, 3), sizes=(5, 4)):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, sizes[0], generator=generator, dtype=torch.float64)
    weight = torch.randn(sizes[1], sizes[0], generator=generator, dtype=torch.float64)
    b = torch.randn(sizes[1], generator=generator, dtype=torch.float64) if bias else None
    relevance = torch.randn(*batch, sizes[1], generator=generator, dtype=torch.float64)
    return x, weight, b, relevance


def ours(x, weight, bias, relevance, choice):
    """Input relevance under ``choice`` from the output relevance: ``x * signal(R / y)``."""
    y = torch.nn.functional.linear(x, weight, bias)
    return x * linear_signal(x, weight, bias, relevance / y, choice)


def stabilize(z):
    return z + STABILIZER * torch.where(z >= 0, 1.0, -1.0)


def by_hand(x, weight, bias, relevance, contribution, denominator_bias, select=None):
    """``R_i = sum_j c_ij R_j / stab(sum_i' c_i'j + b'_j)`` for the contributions ``c(x_i, w_ji)``."""
    out = torch.zeros_like(x)
    for index in torch.cartesian_prod(*(torch.arange(n) for n in x.shape[:-1])):
        index = tuple(int(v) for v in index.reshape(-1))
        for j in range(weight.shape[0]):
            if select is not None and not select(index, j):
                continue
            c = torch.stack([contribution(x[index + (i,)], weight[j, i], index, j) for i in range(x.shape[-1])])
            z = c.sum() + denominator_bias(j, index)
            out[index] += c * relevance[index + (j,)] / stabilize(z)
    return out


def y_of(x, weight, bias, index, j):
    return float(x[index] @ weight[j] + (0 if bias is None else bias[j]))


# ------------------------------------------------------------------ each rule = its formula
@pytest.mark.parametrize("bias", [True, False])
def test_epsilon_rule_divides_by_the_output_plus_epsilon_with_its_sign(bias):
    """Epsilon-LRP (Bach et al. 2015): R_i = sum_j x_i w_ji R_j / (y_j + eps sign(y_j))."""
    x, w, b, r = layer(bias)
    eps = 0.3
    expected = torch.zeros_like(x)
    y = torch.nn.functional.linear(x, w, b)
    for j in range(w.shape[0]):
        denominator = y[..., j] + eps * torch.where(y[..., j] >= 0, 1.0, -1.0)
        expected += x * w[j] * (r[..., j] / denominator)[..., None]
    torch.testing.assert_close(ours(x, w, b, r, LinearChoice("epsilon", epsilon=eps)), expected)


@pytest.mark.parametrize("bias", [True, False])
def test_gamma_rule_favours_the_contributions_of_the_outputs_sign(bias):
    """Generalised gamma (Montavon et al. 2019; Andeol et al. 2021): for y_j > 0, positive inputs
    weigh w + gamma w+, negative inputs w + gamma w-, bias b + gamma b+; for y_j < 0 swapped."""
    x, w, b, r = layer(bias, seed=1)
    gamma = 0.4

    def contribution(xi, wji, index, j):
        up = y_of(x, w, b, index, j) > 0
        favour_positive = (xi > 0) == up
        return xi * (wji + gamma * (wji.clamp(min=0) if favour_positive else wji.clamp(max=0)))

    def bias_term(j, index):
        if b is None:
            return 0.0
        up = y_of(x, w, b, index, j) > 0
        return b[j] + gamma * (b[j].clamp(min=0) if up else b[j].clamp(max=0))

    expected = by_hand(x, w, b, r, contribution, bias_term)
    got = ours(x, w, b, r, LinearChoice("gamma", gamma=gamma, stabilizer=STABILIZER))
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("bias", [True, False])
def test_z_plus_rule_keeps_only_positive_contributions(bias):
    """z+ (Montavon et al. 2017): R_i = sum_j (x_i w_ji)+ R_j / (sum_i (x_i w_ji)+ + b_j+)."""
    x, w, b, r = layer(bias, seed=2)
    expected = by_hand(x, w, b, r, lambda xi, wji, index, j: (xi * wji).clamp(min=0),
                       lambda j, index: 0.0 if b is None else b[j].clamp(min=0))
    torch.testing.assert_close(ours(x, w, b, r, LinearChoice("zplus", stabilizer=STABILIZER)), expected)


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_contribution_alpha_beta_weighs_positive_and_negative_contributions(beta):
    """Alpha-beta (Bach et al. 2015), alpha = 1 + beta: alpha times the positive contributions'
    share of z+ (with b+), minus beta times the negative ones' share of z- (with b-)."""
    x, w, b, r = layer(True, seed=3)
    alpha = 1 + beta
    positive = by_hand(x, w, b, r, lambda xi, wji, index, j: (xi * wji).clamp(min=0), lambda j, index: b[j].clamp(min=0))
    negative = by_hand(x, w, b, r, lambda xi, wji, index, j: (xi * wji).clamp(max=0), lambda j, index: b[j].clamp(max=0))
    got = ours(x, w, b, r, LinearChoice("contribution_alpha_beta", beta=beta, stabilizer=STABILIZER))
    torch.testing.assert_close(got, alpha * positive - beta * negative)


def test_gamma_zero_is_the_gradient_where_the_output_is_not_zero():
    x, w, b, r = layer(True, seed=4)
    y = torch.nn.functional.linear(x, w, b)
    torch.testing.assert_close(linear_signal(x, w, b, r / y, LinearChoice("gamma", gamma=0.0, stabilizer=0.0)),
                               (r / y) @ w)


@pytest.mark.parametrize("rule", ["zplus", "contribution_alpha_beta"])
def test_without_bias_the_contribution_rules_conserve_relevance(rule):
    """Where every output has positive and negative contributions (else z+ or z- is 0 and the
    rule has nothing to send its relevance to), the input relevance sums to the output's."""
    x, w, _, r = layer(False, seed=5)
    x = torch.cat([x.abs(), -0.5 * x.abs()], -1)  # each output gets contributions of both signs
    w = torch.cat([w, w], -1)
    got = ours(x, w, None, r, LinearChoice(rule, stabilizer=1e-12))
    torch.testing.assert_close(got.sum(-1), r.sum(-1))


def test_stacked_copies_each_apply_their_own_rule():
    """One LinearRule over a batch of two identical copies: copy 1 gamma, copy 2 z+."""
    x, w, b, r = layer(True, seed=6)
    choices = (LinearChoice("gamma", gamma=0.25), LinearChoice("zplus"))
    stacked = torch.cat([x, x]).requires_grad_(True)
    y = LinearRule.apply(stacked, w, b, choices)
    (signal,) = torch.autograd.grad(y, stacked, grad_outputs=torch.cat([r, r]) / y.detach())
    for part, choice in zip(signal.chunk(2), choices):
        torch.testing.assert_close(x * part, ours(x, w, b, r, choice))


# ------------------------------------------------------------------ the peer: zennit
@pytest.fixture
def zennit_rules(monkeypatch):
    """zennit 0.5.1's rules. Its package __init__ imports zennit.torchvision, which imports
    torchvision's ResNet blocks for its ResNet canonizer; torchvision has no build for our torch,
    and the linear rules never touch those blocks, so two empty stand-in classes take their place."""
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
    import zennit.rules

    return zennit.rules


PEER_CASES = [
    ("epsilon", lambda z: z.Epsilon(epsilon=0.25), LinearChoice("epsilon", epsilon=0.25)),
    ("gamma", lambda z: z.Gamma(gamma=0.3, stabilizer=STABILIZER), LinearChoice("gamma", gamma=0.3, stabilizer=STABILIZER)),
    ("zplus", lambda z: z.ZPlus(stabilizer=STABILIZER), LinearChoice("zplus", stabilizer=STABILIZER)),
    ("alpha2beta1", lambda z: z.AlphaBeta(alpha=2.0, beta=1.0, stabilizer=STABILIZER),
     LinearChoice("contribution_alpha_beta", beta=1.0, stabilizer=STABILIZER)),
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name, peer_rule, choice", PEER_CASES, ids=[c[0] for c in PEER_CASES])
def test_each_rule_equals_zennits_on_a_linear_layer(zennit_rules, name, peer_rule, choice, bias):
    """zennit passes relevance as the gradient: a hooked nn.Linear's input gradient, given the
    output relevance, is the input relevance. Float64; the tolerance is float64 rounding through
    different but equal sums (1e-10 relative)."""
    x, w, b, r = layer(bias, seed=7, batch=(3,), sizes=(6, 5))
    linear = torch.nn.Linear(6, 5, bias=bias).double()
    with torch.no_grad():
        linear.weight.copy_(w)
        if bias:
            linear.bias.copy_(b)
    rule = peer_rule(zennit_rules)
    handles = rule.register(linear)
    try:
        leaf = x.clone().requires_grad_(True)
        (peer,) = torch.autograd.grad(linear(leaf), leaf, grad_outputs=r)
    finally:
        handles.remove()
    torch.testing.assert_close(ours(x, w, b, r, choice), peer, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ sites and overrides
def test_sites_are_read_off_the_module_names_of_every_family():
    assert site_of("bert.encoder.layer.3.attention.self.query") == Site("attention", 3)
    assert site_of("bert.encoder.layer.3.attention.output.dense") == Site("attention", 3)
    assert site_of("bert.encoder.layer.0.intermediate.dense") == Site("ffn", 0)
    assert site_of("bert.encoder.layer.11.output.dense") == Site("ffn", 11)
    assert site_of("distilbert.transformer.layer.1.ffn.lin2") == Site("ffn", 1)
    assert site_of("distilbert.transformer.layer.1.attention.q_lin") == Site("attention", 1)
    assert site_of("bert.pooler.dense") == Site("pooler")
    assert site_of("classifier") == Site("classifier") and site_of("pre_classifier") == Site("classifier")
    assert site_of("electra.embeddings_project") == Site("embeddings")
    bert = BertForSequenceClassification(make_tiny_config())
    kinds = sorted({(s.kind, s.layer) for s in linear_sites(bert).values()}, key=str)
    assert kinds == sorted({("attention", 0), ("attention", 1), ("ffn", 0), ("ffn", 1), ("pooler", None),
                            ("classifier", None)}, key=str)
    distil = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                                                  num_attention_heads=2, intermediate_size=20))
    assert len(linear_sites(distil)) == 2 * 6 + 2


def test_overrides_choose_the_rule_of_each_site_and_later_ones_win():
    composite = replace(ATTNLRP, name="mixed", linear_overrides=(
        LinearOverride("gamma", layers=(0, 2), gamma=0.5),
        LinearOverride("epsilon", kinds=("classifier",), epsilon=0.1),
        LinearOverride("zplus", kinds=("ffn",), layers=(1, 2)),
    ))
    assert composite.linear_choice(Site("attention", 0)).rule == "gamma"
    assert composite.linear_choice(Site("attention", 0)).gamma == 0.5
    assert composite.linear_choice(Site("ffn", 1)).rule == "zplus"
    assert composite.linear_choice(Site("ffn", 2)).rule == "epsilon"   # outside every layer range: the default
    assert composite.linear_choice(Site("pooler")).rule == "epsilon"   # a layer range selects encoder layers only
    assert composite.linear_choice(Site("classifier")).epsilon == 0.1
    assert not composite.is_gradient("linear")


def test_a_composite_reads_back_what_it_writes_and_refuses_bad_fields():
    composite = replace(ATTNLRP, name="tuned", token_parts="word", linear_overrides=(
        LinearOverride("gamma", kinds=("attention", "ffn"), layers=(0, 3), gamma=0.3),))
    assert Composite.from_dict(composite.to_dict()) == composite
    bad = [({"colour": "red"}, "unknown field 'colour'"),
           ({"linear": "zminus"}, "unknown linear rule"),
           ({"gamma": -1.0}, "gamma must be a finite number >= 0"),
           ({"linear_overrides": [{"rule": "gamma", "layers": [2, 1]}]}, "layers must be"),
           ({"linear_overrides": [{"rule": "gamma", "kinds": ["decoder"]}]}, "unknown kind 'decoder'"),
           ({"linear_overrides": [{"rule": "gamma", "size": 2}]}, "unknown field 'size'")]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            Composite.from_dict({**ATTNLRP.to_dict(), **change})


def test_per_layer_rules_change_only_what_they_select_in_one_pass():
    """gamma in encoder layer 0 changes the explanation; an override that repeats the default rule
    changes nothing; two composites in one call equal each alone."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(make_tiny_config()).eval()
    batch = {"input_ids": torch.tensor([[2, 10, 11, 12, 13, 3]]), "attention_mask": torch.ones(1, 6, dtype=torch.long),
             "token_type_ids": torch.zeros(1, 6, dtype=torch.long)}
    base = explain(model, batch, ["lrp"], rule=ATTNLRP).scores["lrp"]
    same = replace(ATTNLRP, name="same", linear_overrides=(LinearOverride("epsilon", epsilon=0.0),))
    gamma = replace(ATTNLRP, name="gamma0", linear_overrides=(LinearOverride("gamma", layers=(0, 1), gamma=0.5),))
    torch.testing.assert_close(explain(model, batch, ["lrp"], rule=same).scores["lrp"], base, rtol=1e-6, atol=1e-7)
    alone = explain(model, batch, ["lrp"], rule=gamma).scores["lrp"]
    assert float((alone - base).abs().max()) > 1e-3 * float(base.abs().max())  # well above float32 rounding
    both = explain(model, batch, ["lrp", "lrp:attnlrp"], rule=gamma, schedule="stacked")
    torch.testing.assert_close(both.scores["lrp"], alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(both.scores["lrp:attnlrp"], base, rtol=1e-5, atol=1e-6)
