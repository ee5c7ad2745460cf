"""Linear rules as objects (bert_lrp/rules/linear.py): a rule is one class, its parameters checked
frozen fields, its backward one method, registered by name. A toy rule defined here and nowhere
else works in a Composite, in a LinearOverride, through a saved lrp_composite.json and in the
tuning search space; it is unregistered after each test that defines it.

The toy rule's signal is ``scale * g W``: the gradient times ``scale``. Every rule the presets use
below the classifier is linear in the signal under the gradient-signal convention, so the toy on
the classifier alone multiplies every token score by ``scale``.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from bert_lrp import explain
from bert_lrp.evaluation import tuning as T
from bert_lrp.models.auto import AutoModelForSequenceClassification
from bert_lrp.models.loading import load_model
from bert_lrp.models.tuned import COMPOSITE_FILE, TunedComposite, read_tuned_composite, write_tuned_composite
from bert_lrp.rules.composites import ATTNLRP, BERT_LRP, LinearOverride, RuleSet
from bert_lrp.rules.functions import LinearRule
from bert_lrp.rules.linear import (ContributionAlphaBeta, Epsilon, Gamma, LinearLayerRule, ZPlus, linear_rule,
                                   register_rule, rule_class, rule_names, unregister_rule)

from conftest import FIXTURES
from test_tune_lrp import model_dir  # noqa: E402,F401  (the shipped model without its composite)

SHIPPED = FIXTURES.parents[1] / "checkpoints" / "minilm-sst2"
TEXTS = ["a gripping , beautifully acted film", "the plot is thin and the jokes fall flat"]


@pytest.fixture
def toy():
    """The toy rule, defined and registered here, unregistered afterwards."""

    @register_rule
    class ToyRule(LinearLayerRule):
        name = "toy"
        search_grid = {"scale": (0.5, 2.0, 8.0)}
        scale: float = 2.0

        def signal(self, x, weight, bias, grad, output):
            return self.scale * (grad @ weight)

    yield ToyRule
    unregister_rule("toy")


@pytest.fixture(scope="module")
def shipped():
    model, tokenizer = load_model(SHIPPED)
    return model, tokenizer, tokenizer(TEXTS)


# ----------------------------------------------------------------------------- one class
def test_a_rule_is_a_frozen_dataclass_with_checked_parameters(toy):
    rule = toy(scale=3)
    assert rule == toy(3.0) == linear_rule("toy", scale=3.0) and rule.scale == 3.0 and isinstance(rule.scale, float)
    assert rule_class("toy") is toy and "toy" in rule_names()
    with pytest.raises(Exception):
        rule.scale = 4.0  # frozen
    for bad in (-1.0, math.inf, math.nan, True, "2"):
        with pytest.raises(ValueError, match=r"^toy rule: scale must be a finite number >= 0"):
            toy(scale=bad)
    with pytest.raises(ValueError, match=r"^toy rule: unknown parameter 'gamma' \(toy takes scale\)"):
        linear_rule("toy", gamma=0.3)
    assert rule.to_dict() == {"name": "toy", "scale": 3.0} and rule.describe() == "toy(scale=3)"
    assert toy().describe() == "toy"  # every parameter at its default


def test_the_registry_refuses_a_taken_name_and_a_nameless_rule(toy):
    with pytest.raises(ValueError, match="'toy' is already registered"):
        register_rule(type("Again", (toy,), {"name": "toy"}))
    with pytest.raises(ValueError, match="needs a class attribute name"):
        register_rule(type("Nameless", (LinearLayerRule,), {}))
    with pytest.raises(ValueError, match="'width' is not a parameter"):
        register_rule(type("Gridless", (LinearLayerRule,), {"name": "gridless", "search_grid": {"width": (1.0,)}}))
    assert "gridless" not in rule_names()


def test_no_rule_leaks_out_of_a_test():
    assert "toy" not in rule_names()
    with pytest.raises(ValueError, match="unknown linear rule 'toy'"):
        linear_rule("toy")


def test_the_toy_signal_runs_in_the_linear_function_and_beside_another_rule(toy):
    """One LinearRule Function, two stacked copies (toy, epsilon 0 = the gradient): each copy's
    signal is its rule's, from one forward."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    weight = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    bias = torch.randn(4, generator=generator, dtype=torch.float64)
    seed = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    stacked = torch.cat([x, x]).requires_grad_(True)
    y = LinearRule.apply(stacked, weight, bias, (toy(scale=3.0), Epsilon(0.0)))
    (signal,) = torch.autograd.grad(y, stacked, grad_outputs=torch.cat([seed, seed]))
    torch.testing.assert_close(signal[:3], 3.0 * (seed @ weight), rtol=1e-12, atol=0)
    torch.testing.assert_close(signal[3:], seed @ weight, rtol=1e-12, atol=0)


# ------------------------------------------------------------------ composites and overrides
def test_the_toy_rule_in_a_composite_and_by_name(toy, shipped):
    """The toy everywhere with scale 1 is the gradient rule (AttnLRP's epsilon 0) run through the
    rule Function; by name it is the toy with its default scale."""
    model, _, batch = shipped
    attnlrp = explain(model, batch, ["lrp"], rule=ATTNLRP).scores["lrp"]
    unit = explain(model, batch, ["lrp"], rule=replace(ATTNLRP, name="toy-1", linear=toy(scale=1.0))).scores["lrp"]
    torch.testing.assert_close(unit, attnlrp, rtol=1e-4, atol=1e-5 * float(attnlrp.abs().max()))
    assert replace(ATTNLRP, name="x", linear="toy").linear == toy(scale=2.0)


def test_the_toy_rule_in_an_override_scales_the_scores_by_its_factor(toy, shipped):
    """LinearOverride takes the object or its name with parameters; the toy on the classifier
    multiplies every token score by its scale (the rules below are linear in the signal)."""
    model, _, batch = shipped
    by_object = LinearOverride(toy(scale=3.0), kinds=("classifier",))
    assert LinearOverride("toy", kinds=("classifier",), scale=3.0) == by_object
    composite = replace(ATTNLRP, name="toy-head", linear_overrides=(by_object,))
    scores = explain(model, batch, ["lrp", "lrp:attnlrp"], rule=composite).scores  # one pass, two copies
    attnlrp = scores["lrp:attnlrp"]
    torch.testing.assert_close(scores["lrp"], 3.0 * attnlrp, rtol=1e-4, atol=1e-5 * float(attnlrp.abs().max()))
    with pytest.raises(ValueError, match="go into the rule object"):
        LinearOverride(toy(), kinds=("classifier",), scale=3.0)


def test_rules_are_refused_under_a_signal_they_are_not_written_for(toy):
    with pytest.raises(ValueError, match=r"composite 'x': the linear rule 'toy' needs signal='gradient'"):
        replace(BERT_LRP, name="x", linear=toy())
    with pytest.raises(ValueError, match=r"linear_overrides\[0\]: the linear rule 'gamma' needs signal='gradient'"):
        replace(BERT_LRP, name="x", linear_overrides=(LinearOverride(Gamma(0.5), kinds=("classifier",)),))
    assert replace(BERT_LRP, name="x", linear=Epsilon(0.0)).linear.is_gradient  # the gradient works with both


def test_a_rule_set_resolves_each_modules_rules_once(toy):
    """RuleSet: every linear module's rules (one per copy) are a tuple looked up, not rebuilt."""
    from bert_lrp import BertConfig, BertForSequenceClassification
    from bert_lrp.models.sites import linear_sites

    model = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=12,
                                                     max_position_embeddings=16), num_labels=2)
    composite = replace(ATTNLRP, name="toy-0", linear_overrides=(LinearOverride(toy(scale=0.5), layers=(0, 1)),))
    rules = RuleSet.of([composite, ATTNLRP], sites=linear_sites(model))
    modules = dict(model.named_modules())
    layer_0 = rules.linear_rules(modules["bert.encoder.layer.0.intermediate.dense"])
    assert layer_0 == (toy(scale=0.5), Epsilon(0.0))
    assert rules.linear_rules(modules["bert.encoder.layer.0.intermediate.dense"]) is layer_0
    assert rules.linear_rules(modules["classifier"]) == (Epsilon(0.0), Epsilon(0.0))


# ------------------------------------------------------------------ lrp_composite.json
def test_the_toy_rule_round_trips_through_a_saved_composite(toy, model_dir, shipped):
    model, _, batch = shipped
    composite = replace(ATTNLRP, name="tuned", softmax="detach", linear_overrides=(
        LinearOverride(toy(scale=0.5), layers=(0, 2)), LinearOverride(Gamma(gamma=0.3), kinds=("classifier",))))
    write_tuned_composite(model_dir, TunedComposite(composite))
    saved = json.loads((model_dir / COMPOSITE_FILE).read_text())
    assert saved["version"] == 3  # 3: normalised text keys and the weights' digest (issue 30)
    assert saved["composite"]["linear_overrides"][0] == {"rule": {"name": "toy", "scale": 0.5}, "kinds": [],
                                                          "layers": [0, 2]}
    loaded = AutoModelForSequenceClassification.from_pretrained(model_dir)
    assert loaded.tuned_composite.composite == composite
    assert torch.equal(explain(model, batch, ["lrp"], rule=composite).scores["lrp"],
                       explain(loaded.float(), batch, ["lrp"], rule="tuned").scores["lrp"])


def test_a_version_1_file_is_read_as_the_same_rule_objects(model_dir):
    """lrp_composite.json version 1 (the shipped model's, and files with overrides): the rule by
    name beside flat parameters; an override's rule takes its own epsilon, gamma and beta and the
    composite's stabilizer."""
    shipped_record = json.loads((SHIPPED / COMPOSITE_FILE).read_text())
    assert shipped_record["version"] == 1
    expected = replace(ATTNLRP, name="tuned", softmax="detach", linear=Epsilon(epsilon=0.01))
    assert read_tuned_composite(SHIPPED).composite == expected
    flat = {**ATTNLRP.to_dict(), "name": "tuned", "linear": "epsilon", "epsilon": 0.0, "alpha": 0.5,
            "stabilizer": 1e-6, "gamma": 0.25, "beta": 1.0, "linear_overrides": [
                {"rule": "gamma", "kinds": [], "layers": [0, 1], "epsilon": 0.0, "gamma": 0.3, "beta": 1.0},
                {"rule": "contribution_alpha_beta", "kinds": ["classifier"], "layers": None, "epsilon": 0.0,
                 "gamma": 0.25, "beta": 0.5},
                {"rule": "zplus", "kinds": ["pooler"], "layers": None, "epsilon": 0.0, "gamma": 0.25, "beta": 1.0}]}
    (model_dir / COMPOSITE_FILE).write_text(json.dumps({"format": "bert-lrp tuned composite", "version": 1,
                                                        "composite": flat, "tuning": {}}))
    assert read_tuned_composite(model_dir).composite == replace(ATTNLRP, name="tuned", linear_overrides=(
        LinearOverride(Gamma(gamma=0.3, stabilizer=1e-6), layers=(0, 1)),
        LinearOverride(ContributionAlphaBeta(beta=0.5, stabilizer=1e-6), kinds=("classifier",)),
        LinearOverride(ZPlus(stabilizer=1e-6), kinds=("pooler",))))


# ------------------------------------------------------------------ the tuning search space
def test_the_search_proposes_the_toy_rule_from_the_registry(toy):
    """The lower-layer axis offers every registered rule with a search_grid (the toy at its grid
    value nearest its default), and its parameter moves along that grid."""
    proposals = T.neighbours(T.Point(), "lower", layers=6)
    lower = [p.lower for p in proposals]
    assert lower == [Gamma(gamma=0.3), ZPlus(), ContributionAlphaBeta(beta=1.0), toy(scale=2.0)]
    assert all(p.lower_layers == 3 for p in proposals)
    moved = T.neighbours(T.Point(lower=toy(scale=2.0), lower_layers=3), "lower_parameters", layers=6)
    assert [p.lower for p in moved] == [toy(scale=0.5), toy(scale=8.0)]


def test_a_search_finds_the_toy_rule_and_its_best_scale(toy):
    """A synthetic objective whose best point is the toy with scale 8 in the first 2 layers: the
    grid and the coordinate descent reach it, the log and the written composite hold the object."""
    def objective(point: T.Point):
        value = 0.5 + 0.1 * isinstance(point.lower, toy) - 0.02 * abs(point.lower_layers - 2)
        if isinstance(point.lower, toy):
            value -= 0.01 * abs(math.log2(point.lower.scale / 8.0))
        return {"abpc_p": value, "comprehensiveness_aopc": 0.0, "sufficiency_aopc": 0.0}, [value, value]

    result = T.search(lambda point, part: objective(point), layers=4, budget=200)
    assert (result.best.point.lower, result.best.point.lower_layers) == (toy(scale=8.0), 2)
    record = json.loads(json.dumps(result.best.record(0)))
    assert T.Scored.from_record(record).point == result.best.point
    assert result.best.point.composite().linear_overrides == (LinearOverride(toy(scale=8.0), layers=(0, 2)),)


def test_a_point_of_the_first_search_version_is_read_as_rule_objects():
    """A search log written before rules were objects (``lower`` a name, flat gamma / beta /
    epsilon) resumes: its points read as the same candidates."""
    old = {"softmax": "detach", "lower": "gamma", "lower_layers": 2, "gamma": 0.3, "beta": 1.0, "epsilon": 0.01,
           "layer_norm": "detach_std", "bilinear": "uniform", "activation": "identity", "token_parts": "all"}
    assert T.Point.from_dict(old) == T.Point(softmax="detach", lower=Gamma(gamma=0.3), lower_layers=2,
                                             linear=Epsilon(0.01))
    none = T.Point.from_dict({**old, "lower": "none", "lower_layers": 0})
    assert none.lower is None and none.key() == T.Point(softmax="detach", linear=Epsilon(0.01)).key()
