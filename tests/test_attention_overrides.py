"""Per-layer attention rules (issue 30): ``AttentionOverride(layers=(first, last), softmax=...,
value_share=...)`` gives the encoder layers ``first <= layer < last`` another softmax rule and
another share of the attention-times-values relevance for the values. The attention of a layer is
found by its query projection's site, so an override changes that layer's backward and no other;
the tuning search proposes such ranges (``Point.attention_layers``).

The model is a tiny random BERT in float64 whose biases are all 0, where a composite that is
conservative in every operation (detached softmax, value share 1, epsilon 0, LayerNorm's 1/sigma
detached) passes on exactly the logit.
"""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from bert_lrp import explain
from bert_lrp.errors import RequestError
from bert_lrp.evaluation import tuning as T
from bert_lrp.models.sites import linear_sites
from bert_lrp.rules.composites import ATTNLRP, GRADIENT, AttentionOverride, Composite, RuleSet
from bert_lrp.rules.kernels import portable_kernels

from test_value_share import biasless_model


def batch_of(rows: int, length: int = 9) -> dict:
    torch.manual_seed(1)
    ids = torch.randint(5, 99, (rows, length))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def explained(model, composite, rows: int = 3):
    """The explanation of ``composite`` with per-layer relevance (``layer_scores[i]``: at the output of layer i)."""
    return explain(model, batch_of(rows), ["lrp"], rule=composite, layers=True)


def relevance_over_logit(model, composite, rows: int = 3) -> torch.Tensor:
    """Sum of the input relevance (every embedding part) over the target logit, per example."""
    batch = batch_of(rows)
    result = explain(model, batch, ["lrp"], rule=composite)
    logits = model(**batch).logits.gather(1, result.target.view(-1, 1)).squeeze(1)
    return result.scores["lrp"].sum(-1) / logits


CP = replace(ATTNLRP, name="cp", softmax="detach", value_share=1.0)  # true CP-LRP, in every layer


def only(layers, name: str, base: Composite = ATTNLRP, **rules) -> Composite:
    """``base`` with the attention rules ``rules`` in ``layers`` [first, last) alone."""
    return replace(base, name=name, attention_overrides=(AttentionOverride(layers, **rules),))


# ------------------------------------------------------------------ one layer's rules, and no other's
def test_an_override_of_the_first_layer_changes_the_backward_below_it_only():
    """The relevance at a layer's output depends only on the rules above it: CP-LRP's attention in
    layer 0 leaves AttnLRP's relevance at both layers' outputs and changes the input's; in layer 1 it
    gives CP-LRP's relevance at layer 0's output, and the input's is neither composite's."""
    model = biasless_model(layers=2)
    attnlrp, cp = explained(model, ATTNLRP), explained(model, CP)
    first = explained(model, only((0, 1), "first", softmax="detach", value_share=1.0))
    second = explained(model, only((1, 2), "second", softmax="detach", value_share=1.0))
    lrp = "lrp"
    for layer in (0, 1):
        assert torch.allclose(first.layer_scores[lrp][layer], attnlrp.layer_scores[lrp][layer], atol=1e-12)
    assert not torch.allclose(first.scores[lrp], attnlrp.scores[lrp], atol=1e-6)
    assert not torch.allclose(first.scores[lrp], cp.scores[lrp], atol=1e-6)
    assert torch.allclose(second.layer_scores[lrp][1], attnlrp.layer_scores[lrp][1], atol=1e-12)
    assert torch.allclose(second.layer_scores[lrp][0], cp.layer_scores[lrp][0], atol=1e-12)
    assert not torch.allclose(second.layer_scores[lrp][0], attnlrp.layer_scores[lrp][0], atol=1e-6)
    assert not torch.allclose(second.scores[lrp], cp.scores[lrp], atol=1e-6)
    assert not torch.allclose(second.scores[lrp], first.scores[lrp], atol=1e-6)


def test_overrides_of_every_layer_are_the_composites_own_rules_and_conserve_the_logit():
    model = biasless_model(layers=2)
    every = only((0, 2), "every", softmax="detach", value_share=1.0)
    piecewise = replace(ATTNLRP, name="piecewise", attention_overrides=(
        AttentionOverride((0, 1), softmax="detach", value_share=1.0),
        AttentionOverride((1, 2), softmax="detach", value_share=1.0)))
    expected = relevance_over_logit(model, CP)
    for composite in (every, piecewise):
        ratio = relevance_over_logit(model, composite)
        assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-6), (composite.name, ratio)
        assert torch.allclose(ratio, expected, atol=1e-12)


def test_a_share_of_one_half_in_one_layer_halves_that_layers_attention_branch():
    """On CP-LRP (conservative everywhere), the input relevance is affine in one layer's value share:
    share 1/2 in layer 1 passes on half of what share 1 passes through that layer's attention branch,
    and is not the share 1/2 of every layer."""
    model = biasless_model(layers=2)
    at = {s: relevance_over_logit(model, only((1, 2), f"share {s}", base=CP, value_share=s)) for s in (0.0, 0.5, 1.0)}
    branch_full, branch_half = at[1.0] - at[0.0], at[0.5] - at[0.0]
    assert (branch_full.abs() > 1e-3).all()  # the branch carries relevance at all
    assert torch.allclose(branch_half, 0.5 * branch_full, atol=1e-9)
    assert torch.allclose(at[1.0], relevance_over_logit(model, CP), atol=1e-12)
    assert not torch.allclose(at[0.5], relevance_over_logit(model, replace(CP, value_share=0.5)), atol=1e-6)


def test_later_overrides_win_field_by_field():
    composite = replace(ATTNLRP, name="layered", value_share=0.25, attention_overrides=(
        AttentionOverride((0, 3), softmax="detach", value_share=1.0), AttentionOverride((1, 2), value_share=0.75),
        AttentionOverride((2, 4), softmax="jacobian")))
    assert [composite.attention_rule_at(layer) for layer in (None, 0, 1, 2, 3, 4)] == [
        ("taylor", 0.25), ("detach", 1.0), ("detach", 0.75), ("jacobian", 1.0), ("jacobian", 0.25), ("taylor", 0.25)]


def test_the_gradient_with_a_detached_softmax_in_one_layer_is_not_run_as_the_plain_gradient():
    """The plain attention shortcut is decided per layer: the gradient composite with one layer's
    softmax detached is neither the gradient nor the gradient with every softmax detached (token
    scores: a model without biases is scale-invariant, its gradient x input sums to 0)."""
    model = biasless_model(layers=2)

    def scores(composite):
        return explain(model, batch_of(3), ["lrp"], rule=composite).scores["lrp"]

    def differ(a, b):
        return bool((a - b).abs().max() > 1e-6 * a.abs().max())

    one = scores(only((0, 1), "one", base=GRADIENT, softmax="detach"))
    every = scores(replace(GRADIENT, name="every", softmax="detach"))
    assert differ(one, scores(GRADIENT)) and differ(one, every)
    assert torch.allclose(scores(only((0, 2), "both", base=GRADIENT, softmax="detach")), every, rtol=0, atol=1e-12)


def test_the_fused_and_the_portable_attention_backward_agree_per_layer():
    """The fused kernel's fast path is chosen per layer (Taylor in one layer, detached in the other)."""
    model = biasless_model(layers=2)
    for composite in (only((0, 1), "a", softmax="detach", value_share=0.75), only((1, 2), "b", value_share=0.25)):
        fused = relevance_over_logit(model, composite)
        with portable_kernels():
            portable = relevance_over_logit(model, composite)
        assert torch.allclose(fused, portable, atol=1e-9), composite.name


@pytest.mark.parametrize("rows", [3, 8], ids=["stacked-copies", "one-walk-per-copy"])
def test_several_composites_in_one_pass_each_get_their_own_layers_rules(rows):
    """Stacked copies (27 tokens) and one walk per copy (72 tokens): each composite's scores equal
    its scores alone, while the copies' softmax rules differ in layer 0."""
    model = biasless_model(layers=2)
    first = only((0, 1), "first", softmax="detach", value_share=1.0)
    second = only((1, 2), "second", value_share=0.75)
    batch = batch_of(rows)
    together = explain(model, batch, ["lrp", "lrp:attnlrp", "gradient_x_input"], rule=first)
    assert torch.allclose(together.scores["lrp"], explain(model, batch, ["lrp"], rule=first).scores["lrp"], atol=1e-12)
    assert torch.allclose(together.scores["lrp:attnlrp"], explain(model, batch, ["lrp"]).scores["lrp"], atol=1e-12)
    pair = RuleSet.of([first, second], sites=linear_sites(model))
    query = model.bert.encoder.layer[0].attention.self.query
    assert [r.softmax for r in pair.attention_rules(query)] == ["detach", "taylor"]


# ------------------------------------------------------------------ checks and the JSON form
@pytest.mark.parametrize("override, field", [
    (AttentionOverride((1, 1), softmax="detach"), r"attention_overrides\[0\]: layers must be \[first, last\)"),
    (AttentionOverride((0.5, 2), softmax="detach"), r"attention_overrides\[0\]: layers must be whole layer numbers"),
    (AttentionOverride((0, 2), softmax="linear"), r"attention_overrides\[0\]: softmax: unknown softmax rule 'linear'"),
    (AttentionOverride((0, 2), value_share=1.5), r"attention_overrides\[0\]: value_share must be a number in 0..1"),
    (AttentionOverride((0, 2)), r"attention_overrides\[0\]: sets neither softmax nor value_share"),
], ids=["empty-range", "half-layer", "unknown-softmax", "share-above-1", "changes-nothing"])
def test_a_bad_override_is_refused_naming_the_composite_the_index_and_the_field(override, field):
    with pytest.raises(ValueError, match=rf"^composite 'bad': {field}"):
        replace(ATTNLRP, name="bad", attention_overrides=(override,))


def test_an_override_beyond_the_models_depth_is_refused_by_name():
    model = biasless_model(layers=2)
    composite = replace(ATTNLRP, name="deep", attention_overrides=(
        AttentionOverride((0, 1), softmax="detach"), AttentionOverride((1, 3), value_share=1.0)))
    with pytest.raises(RequestError, match=r"composite 'deep': attention_overrides\[1\]\.layers \[1, 3\] goes beyond "
                                           r"the model's 2 encoder layers") as error:
        explain(model, batch_of(1), ["lrp"], rule=composite)
    assert error.value.field == "options.rule"


def test_a_rule_set_without_sites_refuses_per_layer_rules():
    with pytest.raises(ValueError, match="composite 'first' has per-layer overrides; pass sites="):
        RuleSet.of([only((0, 1), "first", softmax="detach")])


def test_attention_overrides_round_trip_through_json_and_old_descriptions_still_load():
    composite = replace(ATTNLRP, name="tuned", attention_overrides=(
        AttentionOverride((0, 3), softmax="detach", value_share=1.0), AttentionOverride([3, 6], value_share=0.25)))
    values = json.loads(json.dumps(composite.to_dict()))
    assert values["attention_overrides"][1] == {"layers": [3, 6], "softmax": None, "value_share": 0.25}
    assert Composite.from_dict(values) == composite
    old = ATTNLRP.to_dict()  # no attention overrides: written as before
    assert "attention_overrides" not in old and Composite.from_dict(old) == ATTNLRP
    with pytest.raises(ValueError, match=r"^field 'composite': attention_overrides\[0\]: unknown field 'kinds'"):
        Composite.from_dict({**values, "attention_overrides": [{"layers": [0, 1], "kinds": []}]}, "field 'composite'")
    with pytest.raises(ValueError, match=r"^field 'composite': composite 'tuned': attention_overrides\[0\]: layers"):
        Composite.from_dict({**values, "attention_overrides": [{"layers": [2, 1], "softmax": "detach"}]},
                            "field 'composite'")


# ------------------------------------------------------------------ the search's points
def test_a_point_with_attention_layers_builds_the_override_and_attnlrp_elsewhere():
    composite = T.Point(softmax="detach", value_share=1.0, attention_layers=(3, 6)).composite()
    assert (composite.softmax, composite.value_share) == ("taylor", None)
    assert composite.attention_overrides == (AttentionOverride((3, 6), softmax="detach", value_share=1.0),)
    assert T.Point(softmax="detach").composite().attention_overrides == ()


def test_equal_points_are_written_one_way_only():
    assert T.Point(softmax="detach", attention_layers=(0, 6)).normalised(layers=6) == T.Point(softmax="detach")
    assert T.Point(attention_layers=(0, 3)).normalised() == T.Point()  # Taylor and the bilinear share: AttnLRP
    assert T.Point(value_share=0.5, attention_layers=(2, 4)).normalised() == T.Point()
    assert T.Point(softmax="detach", attention_layers=(0, 3)).normalised(layers=6).attention_layers == (0, 3)


@pytest.mark.parametrize("layers", [1, 2, 6, 12])
def test_the_attention_grid_is_softmax_by_share_by_layers_without_duplicates(layers):
    grid = T.attention_grid(T.Point(), layers)
    keys = [p.normalised(layers).key() for p in grid]
    assert len(keys) == len(set(keys))
    ranges = {None} if layers == 1 else {None, (0, layers // 2), (layers // 2, layers)}
    expected = {T.Point(softmax=s, value_share=v, attention_layers=r).normalised(layers).key()
                for s in ("taylor", "detach") for v in T.VALUE_SHARES for r in ranges}
    assert set(keys) == expected
    assert len(keys) == (8 if layers == 1 else 22)  # 2 x 4 x 3, AttnLRP's three ranges one point


def test_the_attention_layers_axis_moves_the_range_by_one_layer_or_to_a_half():
    point = T.Point(softmax="detach", value_share=1.0, attention_layers=(3, 6))
    ranges = [p.attention_layers for p in T.neighbours(point, "attention_layers", layers=6)]
    assert ranges == [None, (0, 3), (2, 6), (4, 6), (3, 5)]
    assert T.neighbours(T.Point(), "attention_layers", layers=6) == []  # AttnLRP's attention: nothing to place


def test_a_search_log_row_without_attention_layers_still_reads():
    row = T.Point(softmax="detach", value_share=1.0).to_dict()
    del row["attention_layers"]
    assert T.Point.from_dict(row) == T.Point(softmax="detach", value_share=1.0)
    ranged = T.Point(softmax="detach", attention_layers=(0, 3))
    assert T.Point.from_dict(json.loads(json.dumps(ranged.to_dict()))) == ranged


@pytest.mark.parametrize("layers", [2, 6, 12, 24])
def test_the_default_budget_covers_the_grids_and_one_coordinate_descent_pass(layers):
    """Whatever the point, one pass proposes at most ``pass_size`` candidates, and the default
    budget is the start, the three grids and one such pass."""
    budget = T.default_budget(layers)
    probes = [T.Point(), T.Point(softmax="detach", value_share=0.75, attention_layers=(1, layers)),
              T.Point(lower=T.Gamma(gamma=0.1), lower_layers=max(1, layers // 2), lower_kind="ffn",
                      linear=T.ScaledEpsilon(0.01))]
    for probe in probes:
        assert sum(len(T.neighbours(probe, axis, layers)) for axis in T.AXES) <= T.pass_size(layers)
    grids = sum(len(build(T.Point(), layers)) for _, build in T.STAGES)
    assert budget == 1 + grids + T.pass_size(layers)
