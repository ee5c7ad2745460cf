"""The attribution engine: one pass, conservation, padding, targets, per-operation rules."""
import math

import pytest
import torch

from bert_lrp import (BertConfig, BertForMaskedLM, BertForSequenceClassification,
                      BertForTokenClassification, explain)
from bert_lrp.attribution.attention import attention_rollout, layerwise_attention_tracing
from bert_lrp.rules.composites import GRADIENT, Composite, LinearChoice, RuleSet
from bert_lrp.rules.functions import (ActivationRule, AttentionRule, LayerNormRule, LinearRule, alpha_beta_relevance,
                            softmax_rule)


def rules(**choices):
    """The single-copy slices of a composite with the given rules (the others: Jacobian)."""
    return (Composite("test", **choices),)


def tiny_config(layers=2, **changes):
    values = dict(vocab_size=60, hidden_size=24, num_hidden_layers=layers, num_attention_heads=4,
                  intermediate_size=30, max_position_embeddings=32, hidden_dropout_prob=0.1,
                  attention_probs_dropout_prob=0.1)
    values.update(changes)
    return BertConfig(**values)


def tiny_classifier(layers=2, zero_biases=False, seed=0, **changes):
    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_config(layers, **changes), num_labels=3).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias") and "LayerNorm" not in name:
                parameter.normal_(0, 0.1)
            if zero_biases and name.endswith("bias"):
                parameter.zero_()
            if "LayerNorm.weight" in name:
                parameter.uniform_(0.5, 1.5)
    return model


def padded_batch(seed=1):
    torch.manual_seed(seed)
    ids = torch.randint(5, 60, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    ids[:, 0] = 2
    types = torch.zeros_like(ids)
    types[0, 6:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


# ------------------------------------------------------------------------------ one pass
@pytest.mark.parametrize("methods", [["gs"], ["gi"], ["lrp"], ["gs", "gi"], ["gs", "gi", "lrp"]])
def test_one_forward_and_one_backward_per_call(methods):
    explanation = explain(tiny_classifier(), padded_batch(), methods=methods)
    assert (explanation.forward_passes, explanation.backward_passes) == (1, 1)


def test_stacked_methods_equal_each_method_alone():
    model, batch = tiny_classifier(), padded_batch()
    together = explain(model, batch, methods=["gs", "gi", "lrp"])
    for method in ("gs", "gi", "lrp"):
        alone = explain(model, batch, methods=[method])
        name = {"gs": "gradient", "gi": "gradient_x_input"}.get(method, method)
        # same arithmetic on the same rows; only batching differs (float32 round-off)
        torch.testing.assert_close(together.scores[name], alone.scores[name], rtol=1e-5, atol=1e-7)


def test_gradient_equals_autograd_at_embedding_output():
    model, batch = tiny_classifier(), padded_batch()
    explanation = explain(model, batch, methods=["gs", "gi"])
    embedded = model.bert.embeddings(batch["input_ids"], batch["token_type_ids"]).detach().requires_grad_(True)
    logits = model(attention_mask=batch["attention_mask"], embedding_output=embedded).logits
    (gradient,) = torch.autograd.grad(logits.gather(1, explanation.target[:, None]).sum(), embedded)
    gradient = gradient * batch["attention_mask"][..., None]
    torch.testing.assert_close(explanation.relevance["gradient"], gradient, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(explanation.relevance["gradient_x_input"], gradient * embedded.detach(), rtol=1e-5, atol=1e-8)


def test_explain_leaves_the_model_as_it_found_it():
    model = tiny_classifier().train()
    explain(model, padded_batch(), methods=["gs", "lrp"])
    assert model.training
    assert all(p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------- conservation
@pytest.mark.parametrize("layers", [1, 2, 5, 12])
def test_cp_lrp_conserves_the_target_logit_without_biases(layers):
    model = tiny_classifier(layers=layers, zero_biases=True)
    explanation = explain(model, padded_batch(), methods=["lrp"], rule="cp-lrp")
    total = explanation.scores["lrp"].sum(1)
    # every cp-lrp rule is exactly conservative without biases: only float32 round-off remains
    torch.testing.assert_close(total, explanation.target_logit, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(explanation.conservation["lrp"], torch.ones(3), rtol=1e-4, atol=1e-4)


def test_cp_lrp_conserves_without_a_pooler():
    model = tiny_classifier(layers=3, zero_biases=True, add_pooling_layer=False)
    assert model.bert.pooler is None
    explanation = explain(model, padded_batch(), methods=["lrp"], rule="cp-lrp")
    torch.testing.assert_close(explanation.conservation["lrp"], torch.ones(3), rtol=1e-4, atol=1e-4)


def test_attnlrp_reports_a_finite_conservation_gap_with_biases():
    explanation = explain(tiny_classifier(), padded_batch(), methods=["lrp"], rule="attnlrp")
    ratio = explanation.conservation["lrp"]
    assert ratio.shape == (3,) and torch.isfinite(ratio).all()
    expected = explanation.scores["lrp"].sum(1) / explanation.target_logit
    torch.testing.assert_close(ratio, expected)


def test_embedding_shares_add_up_to_the_lrp_token_scores():
    explanation = explain(tiny_classifier(), padded_batch(), methods=["lrp"])
    shares = explanation.embedding_shares["lrp"]
    total = (shares["word"] + shares["position"] + shares["token_type"]).sum(-1)
    torch.testing.assert_close(total, explanation.scores["lrp"])
    assert shares["position"].abs().sum() > 0 and shares["token_type"].abs().sum() > 0


# ------------------------------------------------------------------------------- padding
@pytest.mark.parametrize("methods", [["gs", "gi", "lrp"], ["lat", "rollout"], ["ig"]])
def test_padding_gets_exactly_zero(methods):
    batch = padded_batch()
    explanation = explain(tiny_classifier(), batch, methods=methods, ig_steps=8)
    for scores in explanation.scores.values():
        assert (scores[batch["attention_mask"] == 0] == 0).all()


def test_a_sentence_scores_the_same_alone_and_in_a_padded_batch():
    model, batch = tiny_classifier(), padded_batch()
    together = explain(model, batch, methods=["gs", "gi", "lrp", "lat", "rollout"])
    alone_batch = {k: v[2:3, :4] for k, v in batch.items()}
    alone = explain(model, alone_batch, methods=["gs", "gi", "lrp", "lat", "rollout"])
    for method, scores in alone.scores.items():
        # padded keys get exactly zero attention, so only float32 round-off differs
        torch.testing.assert_close(together.scores[method][2, :4], scores[0], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------- targets
def test_default_target_is_the_predicted_class_and_can_be_chosen():
    model, batch = tiny_classifier(), padded_batch()
    default = explain(model, batch, methods=["gs"])
    assert torch.equal(default.target, default.logits.argmax(-1))
    chosen = explain(model, batch, methods=["gs"], target=2)
    assert chosen.target.tolist() == [2, 2, 2]
    torch.testing.assert_close(chosen.target_logit, chosen.logits[:, 2])


def test_token_classification_target_is_position_and_label():
    torch.manual_seed(0)
    model = BertForTokenClassification(tiny_config(), num_labels=5).eval()
    batch = padded_batch()
    explanation = explain(model, batch, methods=["gs", "lrp"], target=(3, None))
    assert explanation.target_position.tolist() == [3, 3, 3]
    torch.testing.assert_close(explanation.target_logit, explanation.logits[:, 3].max(-1).values)
    explicit = explain(model, batch, methods=["lrp"], target=[(3, 1), (2, 4), (1, 0)])
    assert explicit.target.tolist() == [1, 4, 0]


def test_masked_lm_target_is_position_and_vocabulary_id():
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config()).eval()
    explanation = explain(model, padded_batch(), methods=["lrp"], target=(2, 17), rule="cp-lrp")
    assert explanation.target.tolist() == [17, 17, 17]
    torch.testing.assert_close(explanation.target_logit, explanation.logits[:, 2, 17])


def test_unknown_target_label_is_named():
    model = tiny_classifier()
    with pytest.raises(ValueError, match="target class 7 is outside"):
        explain(model, padded_batch(), methods=["gs"], target=7)


# ------------------------------------------------------------------------- layer relevance
def test_layer_and_head_relevance_are_returned_on_request():
    model = tiny_classifier(layers=3, zero_biases=True)
    explanation = explain(model, padded_batch(), methods=["lrp"], rule="cp-lrp", layers=True)
    layers = explanation.layer_scores["lrp"]
    heads = explanation.head_scores["lrp"]
    assert len(layers) == 3 and layers[0].shape == (3, 10)
    assert len(heads) == 3 and heads[0].shape == (3, 4, 10)
    # without biases cp-lrp conserves at every layer output too
    for scores in layers:
        torch.testing.assert_close(scores.sum(1), explanation.target_logit, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------ attention maps
def test_lat_multiplies_each_heads_attention_back_from_cls():
    torch.manual_seed(0)
    attentions = [torch.softmax(torch.randn(2, 3, 5, 5), -1) for _ in range(4)]
    start = torch.zeros(2, dtype=torch.long)
    expected = torch.zeros(2, 5)
    for h in range(3):
        row = attentions[3][:, h, 0]
        for layer in (2, 1, 0):
            row = torch.einsum("bq,bqk->bk", row, attentions[layer][:, h])
        expected += row
    torch.testing.assert_close(layerwise_attention_tracing(attentions, start), expected)


def test_rollout_adds_the_residual_identity():
    uniform = [torch.full((1, 2, 4, 4), 0.25) for _ in range(3)]
    rollout = attention_rollout(uniform, torch.zeros(1, dtype=torch.long))
    # (U/2 + I/2)^3 = I/8 + 7/8 U for an idempotent U: row 0 keeps 1/8 on itself
    expected = torch.tensor([[0.125 + 0.875 * 0.25, 0.875 * 0.25, 0.875 * 0.25, 0.875 * 0.25]])
    torch.testing.assert_close(rollout, expected)


# ------------------------------------------------------------------------ integrated gradients
def test_integrated_gradients_completeness_gap_shrinks_with_steps():
    model, batch = tiny_classifier(), padded_batch()
    coarse = explain(model, batch, methods=["ig"], ig_steps=2, ig_method="riemann_right").completeness_gap.abs()
    fine = explain(model, batch, methods=["ig"], ig_steps=64, ig_batch=50).completeness_gap.abs()
    assert (fine < 1e-3).all() and fine.max() < coarse.max()


def test_integrated_gradients_does_not_depend_on_the_internal_batch():
    model, batch = tiny_classifier(), padded_batch()
    small = explain(model, batch, methods=["ig"], ig_steps=10, ig_batch=3)
    large = explain(model, batch, methods=["ig"], ig_steps=10, ig_batch=100)
    torch.testing.assert_close(small.scores["integrated_gradients"], large.scores["integrated_gradients"])


# --------------------------------------------------------------------- per-operation rules
def _relevance(function, inputs, output_relevance, *args):
    """Run one rule Function; return input relevances (x * modified gradient)."""
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    output = function.apply(*leaves, *args)
    out = output.detach()
    seed = torch.where(out == 0, torch.zeros_like(out), output_relevance / torch.where(out == 0, 1.0, out))
    grads = torch.autograd.grad(output, leaves, grad_outputs=seed)
    return [x.detach() * g for x, g in zip(leaves, grads)], output.detach()


def test_linear_gradient_rule_is_epsilon_lrp_in_the_limit():
    torch.manual_seed(0)
    x, w, b = torch.randn(1, 4), torch.randn(3, 4), torch.randn(3)
    relevance_out = torch.randn(1, 3)
    (relevance_in,), z = _relevance(LinearRule, [x], relevance_out, w, b, (LinearChoice("epsilon", epsilon=0.0),))
    expected = (x[:, None, :] * w[None] / z[..., None] * relevance_out[..., None]).sum(1)  # sum_j x_i w_ji R_j / z_j
    torch.testing.assert_close(relevance_in, expected, rtol=1e-5, atol=1e-6)


def test_layer_norm_with_constant_std_passes_relevance_linearly():
    torch.manual_seed(0)
    x = torch.randn(2, 6)
    weight, bias = torch.rand(6) + 0.5, torch.zeros(6)
    relevance_out = torch.randn(2, 6)
    (relevance_in,), y = _relevance(LayerNormRule, [x], relevance_out, weight, bias, 1e-12, rules(layer_norm="detach_std"))
    std = (x.var(-1, unbiased=False, keepdim=True) + 1e-12).sqrt()
    jacobian = (torch.eye(6) - 1.0 / 6) * weight[:, None] / std[:, :, None]  # [b, out, in], std frozen
    expected = torch.einsum("bo,boi,bi->bi", relevance_out / y, jacobian, x)
    torch.testing.assert_close(relevance_in, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(relevance_in.sum(-1), relevance_out.sum(-1), rtol=1e-4, atol=1e-5)


def test_identity_rule_passes_relevance_unchanged_through_gelu():
    x = torch.tensor([[-2.0, -0.3, 0.0, 0.4, 3.0]])
    relevance_out = torch.tensor([[0.5, -1.0, 2.0, 0.25, 1.5]])
    (relevance_in,), _ = _relevance(ActivationRule, [x], relevance_out, "gelu", rules(activation="identity"))
    expected = relevance_out.clone()
    expected[0, 2] = 0.0  # gelu(0) = 0 carries no relevance
    torch.testing.assert_close(relevance_in, expected)


@pytest.mark.parametrize("name, ratio", [
    ("gelu", lambda x: torch.special.ndtr(x)),                       # gelu(x) = x * Phi(x)
    ("gelu_new", lambda x: 0.5 * (1 + torch.tanh((2 / math.pi) ** 0.5 * (x + 0.044715 * x ** 3)))),
    ("silu", torch.sigmoid),                                         # silu(x) = x * sigmoid(x)
    ("tanh", lambda x: torch.where(x == 0, torch.ones_like(x), torch.tanh(x) / x)),
])
def test_identity_rule_gradient_is_f_of_x_over_x_with_its_limit_at_zero(name, ratio):
    # the rule's gradient is f(x) / x, computed as a division of the forward output; at x = 0
    # (0 / 0) it must be the limit, not NaN or 0, or the signal behind the activation is lost
    x = torch.tensor([-6.0, -2.0, -0.3, -1e-20, 0.0, 1e-20, 0.4, 3.0, 9.0], requires_grad=True)
    y = ActivationRule.apply(x, name, rules(activation="identity"))
    (gradient,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(gradient, ratio(x.detach()), rtol=1e-5, atol=1e-6)  # float32 rounding


def _attention_gradients(softmax_mode, bilinear_mode):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, requires_grad=True) for _ in range(3))
    mask = torch.zeros(2, 1, 1, 5)
    mask[1, ..., 3:] = torch.finfo(torch.float32).min
    grad_out = torch.randn(2, 3, 5, 4)
    context, _ = AttentionRule.apply(q, k, v, mask, rules(softmax=softmax_mode, bilinear=bilinear_mode), False)
    ours = torch.autograd.grad(context, (q, k, v), grad_out, allow_unused=True)
    ours = tuple(torch.zeros_like(t) if g is None else g for t, g in zip((q, k, v), ours))  # None: no signal at all
    plain_context = torch.softmax(q @ k.transpose(-1, -2) / 2.0 + mask, -1) @ v
    plain = torch.autograd.grad(plain_context, (q, k, v), grad_out)
    return ours, plain


def test_attention_with_gradient_rules_is_plain_attention():
    ours, plain = _attention_gradients("jacobian", "jacobian")
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_uniform_rule_halves_each_bilinear_product():
    (gq, gk, gv), (pq, pk, pv) = _attention_gradients("taylor", "uniform")
    # A @ V: V gets half; Q K^T sits behind A, so Q and K get half of a half
    torch.testing.assert_close(gv, pv / 2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gq, pq / 4, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gk, pk / 4, rtol=1e-5, atol=1e-6)


def test_constant_softmax_sends_relevance_only_through_values():
    (gq, gk, gv), (_, _, pv) = _attention_gradients("detach", "jacobian")
    assert (gq == 0).all() and (gk == 0).all()
    torch.testing.assert_close(gv, pv, rtol=1e-5, atol=1e-6)


def test_softmax_taylor_rule():
    torch.manual_seed(0)
    x = torch.randn(1, 5)
    s = torch.softmax(x, -1)
    relevance_out = torch.randn(1, 5)
    relevance_in = x * softmax_rule(s, relevance_out / s, "taylor")
    expected = x * (relevance_out - s * relevance_out.sum(-1, keepdim=True))  # AttnLRP Prop. 3.1
    torch.testing.assert_close(relevance_in, expected, rtol=1e-5, atol=1e-6)


def test_alpha_beta_rule_conserves_per_token():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 4), torch.randn(3, 4), torch.zeros(3)
    relevance_out = torch.rand(2, 3)
    relevance_in = alpha_beta_relevance(x, w, b, relevance_out, alpha=0.5, stabilizer=1e-7)
    assert (relevance_in >= 0).all()  # BERT-LRP keeps |R| and rescales it
    # rescaled per token to the incoming total + 1e-7 (their rescale_lrp)
    torch.testing.assert_close(relevance_in.sum(-1), relevance_out.sum(-1), rtol=1e-4, atol=1e-5)


def test_stacked_slices_apply_their_own_rules():
    x = torch.tensor([[-2.0, 0.5], [-2.0, 0.5]])
    leaf = x.clone().requires_grad_(True)
    y = ActivationRule.apply(leaf, "gelu", (GRADIENT, Composite("test", activation="identity")))
    (gradient,) = torch.autograd.grad(y.sum(), leaf)
    plain = torch.autograd.functional.jacobian(lambda t: torch.nn.functional.gelu(t).sum(), x[0])
    torch.testing.assert_close(gradient[0], plain)
    torch.testing.assert_close(gradient[1], torch.nn.functional.gelu(x[1]) / x[1])


# --------------------------------------------------------------------------- BERT-LRP API
def test_legacy_backward_methods_match_explain():
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(), 3, init_lrp=True).eval()
    batch = padded_batch()
    output = model(**batch, output_attentions=True)
    grads = torch.zeros_like(output.logits)
    grads[:, 2] = 1.0
    explanation = explain(model, batch, methods=["gs", "lat"], target=2)
    mask = batch["attention_mask"][..., None]
    torch.testing.assert_close(model.backward_gradient(grads) * mask, explanation.relevance["gradient"])
    lat = model.backward_lat(batch["input_ids"], output.attentions) * batch["attention_mask"]
    torch.testing.assert_close(lat, explanation.scores["lat"])
    relevance = model.backward_lrp(output.logits.detach() * grads, rule="cp-lrp")
    assert relevance.shape == (3, 10, 24)


def test_conservation_is_defined_at_a_zero_target_logit():
    from bert_lrp.attribution.explain import conservation_ratio

    ratio = conservation_ratio(torch.tensor([2.0, 0.0, -1.0, 3.0]), torch.tensor([4.0, 0.0, 0.0, 0.0]))
    # 2/4; nothing to conserve and nothing found: 1; relevance from nothing: -inf / +inf (never NaN)
    assert ratio.tolist() == [0.5, 1.0, -math.inf, math.inf]


def test_stacked_copies_that_differ_are_refused():
    from bert_lrp import InputError

    model, batch = tiny_classifier(), padded_batch()
    two_rule_sets = RuleSet.of(["gradient", "attnlrp"])
    with pytest.raises(InputError, match="stacked copies along dim 0 differ"):
        model(input_ids=batch["input_ids"][:2], rules=two_rule_sets)  # two different sentences
    ids = batch["input_ids"][:1].repeat(2, 1)
    assert model(input_ids=ids, rules=two_rule_sets).logits.shape == (2, 3)
