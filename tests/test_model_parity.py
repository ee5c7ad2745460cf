"""Our BERT computes what Hugging Face transformers' BERT computes, number for number.

transformers is the independent reference: same weights, same inputs, fp32, eval mode (dropout
off). Compared: logits, every layer's hidden states, every layer's attention probabilities,
and losses; for the real MiniLM weights and for randomly initialised odd-shaped configs.
transformers runs with ``attn_implementation="eager"`` so that it returns probabilities.
"""
from __future__ import annotations

import pytest
import torch

import bert_lrp
from bert_lrp import BertConfig

transformers = pytest.importorskip(
    "transformers", reason="transformers (the reference implementation) is not installed")

# fp32 parity bound asked of every compared tensor. Both sides run the same math in a different
# summation order (different matmul kernels), so they differ by a few units in the last place
# (values here are <= ~10, float32 spacing at 8..16 is ~1e-6).
TOL = 1e-5
# Rows of *padding* tokens carry no information (every real token masks them out as keys) and
# are never read by a head; rounding differences there reach ~2e-5 on MiniLM, and they are as
# large between our own fused and eager paths, so this is fp32 rounding, not a semantic
# difference. Real tokens are held to TOL.
PAD_ROWS_TOL = 1e-4

PAIRS = [
    ("it 's a charming and often affecting journey .", "unflinchingly bleak and desperate"),
    ("the acting , costumes , music , cinematography and sound are all astounding given the "
     "production 's austere locales .", "it 's slow -- very , very slow ."),
    ("a sometimes tedious film .", "you 'll probably love it ."),
]

HEADS = {
    "sequence": (bert_lrp.BertForSequenceClassification, "BertForSequenceClassification"),
    "token": (bert_lrp.BertForTokenClassification, "BertForTokenClassification"),
    "masked_lm": (bert_lrp.BertForMaskedLM, "BertForMaskedLM"),
    "pretraining": (bert_lrp.BertForPreTraining, "BertForPreTraining"),
}

ODD_CONFIGS = {
    # 3 layers, 6 heads of size 8, an intermediate size that is no multiple of anything
    "3-layers-6-heads-hidden-48": dict(vocab_size=101, hidden_size=48, num_hidden_layers=3, num_attention_heads=6,
                                       intermediate_size=50, max_position_embeddings=40, type_vocab_size=3,
                                       hidden_act="gelu_new", num_labels=5, layer_norm_eps=1e-7),
    "1-layer-1-head": dict(vocab_size=57, hidden_size=20, num_hidden_layers=1, num_attention_heads=1,
                           intermediate_size=7, max_position_embeddings=16, type_vocab_size=2,
                           hidden_act="relu", num_labels=2),
}


# --------------------------------------------------------------------------- helpers
def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return float((a - b).abs().max()) if a.numel() else 0.0


def assert_hidden_close(ours, theirs, attention_mask, what: str) -> None:
    """``[batch, seq, hidden]`` tensors: real tokens within TOL, padding rows within PAD_ROWS_TOL."""
    real = attention_mask.bool()
    assert max_diff(ours[real], theirs[real]) <= TOL, f"{what}: real tokens differ by {max_diff(ours[real], theirs[real]):.3g}"
    pad = ~real
    assert max_diff(ours[pad], theirs[pad]) <= PAD_ROWS_TOL, f"{what}: padding rows differ by {max_diff(ours[pad], theirs[pad]):.3g}"


def assert_outputs_match(ours, theirs, attention_mask, logits_name: str = "logits") -> None:
    """Logits, every hidden state and every attention map of two outputs agree."""
    ours_logits, theirs_logits = getattr(ours, logits_name), getattr(theirs, logits_name)
    if ours_logits.dim() == 3:  # per-token logits: padding rows as for hidden states
        assert_hidden_close(ours_logits, theirs_logits, attention_mask, logits_name)
    else:
        assert max_diff(ours_logits, theirs_logits) <= TOL, f"{logits_name} differ by {max_diff(ours_logits, theirs_logits):.3g}"
    assert len(ours.hidden_states) == len(theirs.hidden_states)  # embeddings + one per layer
    for index, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states)):
        assert_hidden_close(a, b, attention_mask, f"hidden_states[{index}]")
    assert len(ours.attentions) == len(theirs.attentions)
    for index, (a, b) in enumerate(zip(ours.attentions, theirs.attentions)):
        # probabilities lie in [0, 1]; rows of padding queries included (they are real softmaxes)
        assert max_diff(a, b) <= TOL, f"attentions[{index}] differ by {max_diff(a, b):.3g}"


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every parameter (biases, LayerNorm, MLM bias included) a random value, so a
    parameter that one implementation ignored or transposed would show in the outputs."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * 0.2
            parameter.copy_(1.0 + noise if name.endswith("LayerNorm.weight") else noise)


def random_inputs(config: BertConfig, generator: torch.Generator, batch: int = 3, seq: int = 11) -> dict:
    """Token ids (never the pad id), two or more segments, and right-padding on all rows but the first."""
    ids = torch.randint(1, config.vocab_size, (batch, seq), generator=generator)
    types = torch.zeros(batch, seq, dtype=torch.long)
    types[:, seq // 2:] = torch.arange(1, batch + 1).remainder(config.type_vocab_size).unsqueeze(1)
    mask = torch.ones(batch, seq, dtype=torch.long)
    for row in range(1, batch):
        mask[row, seq - 2 * row:] = 0
    ids = ids.masked_fill(mask == 0, config.pad_token_id)
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def load_theirs(folder, class_name: str, **kwargs):
    model, info = getattr(transformers, class_name).from_pretrained(
        folder, attn_implementation="eager", output_loading_info=True, **kwargs)
    return model.eval(), info


def run(model, inputs, **kwargs):
    with torch.no_grad():
        return model(**inputs, **kwargs)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def minilm_pair(minilm_path):
    """Our and transformers' sequence classifier on the MiniLM weights, with the same seeded
    3-way classification head (ours initialised from seed 0, copied into theirs)."""
    torch.manual_seed(0)
    ours, info = bert_lrp.BertForSequenceClassification.from_pretrained(
        minilm_path, num_labels=3, output_loading_info=True)
    assert info.newly_initialized == ["classifier.weight", "classifier.bias"]
    theirs, _ = load_theirs(minilm_path, "BertForSequenceClassification", num_labels=3)
    theirs.classifier.load_state_dict(ours.classifier.state_dict())
    return ours.eval(), theirs


@pytest.fixture(scope="module")
def pair_inputs(minilm_path):
    """Sentence pairs of different lengths from our tokenizer: padding and two segments."""
    encoding = bert_lrp.BertTokenizer.from_pretrained(minilm_path)([a for a, _ in PAIRS], [b for _, b in PAIRS])
    inputs = {k: encoding[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    assert (inputs["attention_mask"] == 0).any() and (inputs["token_type_ids"] == 1).any()
    return inputs


# ------------------------------------------------------------------- real weights
def test_minilm_classifier_logits_hidden_states_and_attentions_match_transformers(minilm_pair, pair_inputs):
    ours, theirs = minilm_pair
    kwargs = dict(output_attentions=True, output_hidden_states=True)
    assert_outputs_match(run(ours, pair_inputs, **kwargs), run(theirs, pair_inputs, **kwargs),
                         pair_inputs["attention_mask"])


def test_minilm_encoder_last_hidden_state_and_pooler_match_transformers(minilm_path, pair_inputs):
    ours = bert_lrp.BertModel.from_pretrained(minilm_path)
    theirs, info = load_theirs(minilm_path, "BertModel")
    a, b = run(ours, pair_inputs), run(theirs, pair_inputs)
    assert_hidden_close(a.last_hidden_state, b.last_hidden_state, pair_inputs["attention_mask"], "last_hidden_state")
    assert max_diff(a.pooler_output, b.pooler_output) <= TOL


def test_fast_path_without_attentions_equals_eager_path(minilm_pair, pair_inputs):
    """Without output_attentions we run fused SDPA; it must give the eager path's numbers."""
    ours, _ = minilm_pair
    fast = run(ours, pair_inputs, output_hidden_states=True)
    eager = run(ours, pair_inputs, output_hidden_states=True, output_attentions=True)
    assert fast.attentions is None and eager.attentions is not None
    assert max_diff(fast.logits, eager.logits) <= TOL
    for index, (a, b) in enumerate(zip(fast.hidden_states, eager.hidden_states)):
        assert_hidden_close(a, b, pair_inputs["attention_mask"], f"hidden_states[{index}]")


def test_fast_path_matches_transformers_default_attention(minilm_path, minilm_pair, pair_inputs):
    """Both libraries' default (fused) attention, as a user would run them."""
    ours, eager_theirs = minilm_pair
    theirs = transformers.BertForSequenceClassification.from_pretrained(minilm_path, num_labels=3).eval()
    theirs.load_state_dict(eager_theirs.state_dict())
    assert max_diff(run(ours, pair_inputs).logits, run(theirs, pair_inputs).logits) <= TOL


# ------------------------------------------------------------- random odd configs
@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("shape", sorted(ODD_CONFIGS))
def test_random_odd_config_matches_transformers_after_save_pretrained(head, shape, tmp_path, seeded):
    """Build ours with random weights, save_pretrained, load the folder with transformers:
    transformers finds every tensor, and logits / hidden states / attentions agree."""
    generator = seeded(1)
    config = BertConfig(**ODD_CONFIGS[shape])
    ours_class, their_class = HEADS[head]
    ours = ours_class(config).eval()
    randomize(ours, generator)
    ours.save_pretrained(tmp_path)
    theirs, info = load_theirs(tmp_path, their_class)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    inputs = random_inputs(config, generator, seq=min(11, config.max_position_embeddings))
    kwargs = dict(output_attentions=True, output_hidden_states=True)
    a, b = run(ours, inputs, **kwargs), run(theirs, inputs, **kwargs)
    logits_name = "prediction_logits" if head == "pretraining" else "logits"
    assert_outputs_match(a, b, inputs["attention_mask"], logits_name)
    if head == "pretraining":
        assert max_diff(a.seq_relationship_logits, b.seq_relationship_logits) <= TOL


def test_fast_path_equals_eager_path_on_random_config(seeded):
    generator = seeded(2)
    config = BertConfig(**ODD_CONFIGS["3-layers-6-heads-hidden-48"])
    model = bert_lrp.BertForTokenClassification(config).eval()
    randomize(model, generator)
    inputs = random_inputs(config, generator)
    fast, eager = run(model, inputs), run(model, inputs, output_attentions=True)
    assert_hidden_close(fast.logits, eager.logits, inputs["attention_mask"], "logits")


# ---------------------------------------------------------------------------- losses
@pytest.fixture
def loss_models(tmp_path, seeded):
    """``make(our_class, their_class_name, **config_changes)`` -> (ours, theirs, inputs, generator)."""
    def make(ours_class, their_class, **changes):
        generator = seeded(3)
        config = BertConfig(**{**ODD_CONFIGS["3-layers-6-heads-hidden-48"], **changes})
        ours = ours_class(config).eval()
        randomize(ours, generator)
        ours.save_pretrained(tmp_path)
        theirs, _ = load_theirs(tmp_path, their_class)
        return ours, theirs, random_inputs(config, generator), generator
    return make


# Losses are means of a few dozen terms of size ~1; 1e-5 leaves room for rounding only.
LOSS_TOL = 1e-5


def test_single_label_cross_entropy_equals_transformers(loss_models):
    ours, theirs, inputs, generator = loss_models(bert_lrp.BertForSequenceClassification,
                                                  "BertForSequenceClassification", num_labels=4)
    labels = torch.randint(0, 4, (3,), generator=generator)
    a, b = run(ours, inputs, labels=labels).loss, run(theirs, inputs, labels=labels).loss
    assert a.dim() == 0 and abs(float(a - b)) <= LOSS_TOL


def test_regression_mse_when_one_label_equals_transformers(loss_models):
    ours, theirs, inputs, generator = loss_models(bert_lrp.BertForSequenceClassification,
                                                  "BertForSequenceClassification", num_labels=1)
    labels = torch.randn(3, generator=generator)
    a, b = run(ours, inputs, labels=labels).loss, run(theirs, inputs, labels=labels).loss
    assert abs(float(a - b)) <= LOSS_TOL
    assert abs(float(a) - float(((run(ours, inputs).logits.squeeze(-1) - labels) ** 2).mean())) <= LOSS_TOL


def test_multi_label_bce_via_problem_type_equals_transformers(loss_models):
    ours, theirs, inputs, generator = loss_models(bert_lrp.BertForSequenceClassification,
                                                  "BertForSequenceClassification", num_labels=4,
                                                  problem_type="multi_label_classification")
    labels = torch.randint(0, 2, (3, 4), generator=generator).float()
    a, b = run(ours, inputs, labels=labels).loss, run(theirs, inputs, labels=labels).loss
    assert abs(float(a - b)) <= LOSS_TOL


def test_token_classification_loss_ignores_minus_100_like_transformers(loss_models):
    ours, theirs, inputs, generator = loss_models(bert_lrp.BertForTokenClassification,
                                                  "BertForTokenClassification", num_labels=5)
    labels = torch.randint(0, 5, inputs["input_ids"].shape, generator=generator)
    labels = labels.masked_fill(inputs["attention_mask"] == 0, -100)
    a, b = run(ours, inputs, labels=labels).loss, run(theirs, inputs, labels=labels).loss
    assert abs(float(a - b)) <= LOSS_TOL
    # the mean runs over the labelled (real) tokens only
    real = inputs["attention_mask"].bool()
    expected = torch.nn.functional.cross_entropy(run(ours, inputs).logits[real], labels[real])
    assert abs(float(a - expected)) <= LOSS_TOL


def test_masked_lm_loss_equals_transformers(loss_models):
    ours, theirs, inputs, generator = loss_models(bert_lrp.BertForMaskedLM, "BertForMaskedLM")
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, 2] = inputs["input_ids"][:, 2]
    labels[0, 5] = inputs["input_ids"][0, 5]
    a, b = run(ours, inputs, labels=labels).loss, run(theirs, inputs, labels=labels).loss
    assert abs(float(a - b)) <= LOSS_TOL


def test_pretraining_loss_equals_transformers(loss_models):
    ours, theirs, inputs, generator = loss_models(bert_lrp.BertForPreTraining, "BertForPreTraining")
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, 1] = inputs["input_ids"][:, 1]
    next_sentence = torch.tensor([0, 1, 1])
    kwargs = dict(labels=labels, next_sentence_label=next_sentence)
    assert abs(float(run(ours, inputs, **kwargs).loss - run(theirs, inputs, **kwargs).loss)) <= LOSS_TOL


# ------------------------------------------------------------------- output objects
def test_output_exposes_loss_logits_hidden_states_attentions(minilm_pair, pair_inputs):
    ours, _ = minilm_pair
    out = run(ours, pair_inputs, labels=torch.tensor([0, 1, 2]), output_hidden_states=True, output_attentions=True)
    batch, seq = pair_inputs["input_ids"].shape
    assert out.loss.dim() == 0
    assert out.logits.shape == (batch, 3)
    assert len(out.hidden_states) == 7 and out.hidden_states[0].shape == (batch, seq, 384)  # embeddings + 6 layers
    assert len(out.attentions) == 6 and out.attentions[0].shape == (batch, 12, seq, seq)
    assert out["logits"] is out.logits


def test_output_iterates_its_keys_and_unpacks_with_to_tuple_as_transformers(minilm_pair, pair_inputs):
    ours, theirs = minilm_pair
    out = run(ours, pair_inputs, labels=torch.tensor([0, 1, 2]))
    assert list(out) == list(run(theirs, pair_inputs, labels=torch.tensor([0, 1, 2]))) == ["loss", "logits"]
    loss, logits = out.to_tuple()  # fields that are None are skipped, as in transformers
    assert loss is out.loss and logits is out.logits
    assert out[0] is out.loss and out[1] is out.logits


@pytest.mark.parametrize("with_labels", [False, True], ids=["no-labels", "labels"])
def test_return_dict_false_gives_the_same_tuple_as_transformers(minilm_pair, pair_inputs, with_labels):
    ours, theirs = minilm_pair
    extra = dict(labels=torch.tensor([0, 1, 2])) if with_labels else {}
    kwargs = dict(return_dict=False, output_hidden_states=True, output_attentions=True, **extra)
    a, b = run(ours, pair_inputs, **kwargs), run(theirs, pair_inputs, **kwargs)
    assert type(a) is tuple and type(b) is tuple
    assert len(a) == len(b) == (4 if with_labels else 3)  # (loss,) logits, hidden_states, attentions
    offset = 1 if with_labels else 0
    if with_labels:
        assert abs(float(a[0] - b[0])) <= LOSS_TOL
    assert max_diff(a[offset], b[offset]) <= TOL
    assert len(a[offset + 1]) == len(b[offset + 1]) and len(a[offset + 2]) == len(b[offset + 2])


def test_encoder_return_dict_false_gives_the_same_tuple_as_transformers(minilm_path, pair_inputs):
    ours = bert_lrp.BertModel.from_pretrained(minilm_path)
    theirs, _ = load_theirs(minilm_path, "BertModel")
    a, b = run(ours, pair_inputs, return_dict=False), run(theirs, pair_inputs, return_dict=False)
    assert type(a) is tuple and len(a) == len(b) == 2  # last_hidden_state, pooler_output
    assert max_diff(a[1], b[1]) <= TOL


# ------------------------------------------------------------------ other entry points
@pytest.mark.parametrize("activation", ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "tanh", "silu", "swish"])
def test_every_supported_activation_matches_transformers(activation, tmp_path, seeded):
    generator = seeded(4)
    config = BertConfig(**{**ODD_CONFIGS["1-layer-1-head"], "hidden_act": activation, "num_attention_heads": 2})
    ours = bert_lrp.BertModel(config).eval()
    randomize(ours, generator)
    ours.save_pretrained(tmp_path)
    theirs, _ = load_theirs(tmp_path, "BertModel")
    inputs = random_inputs(config, generator)
    a, b = run(ours, inputs), run(theirs, inputs)
    assert_hidden_close(a.last_hidden_state, b.last_hidden_state, inputs["attention_mask"], activation)


def test_inputs_embeds_and_position_ids_match_transformers(tmp_path, seeded):
    generator = seeded(5)
    config = BertConfig(**ODD_CONFIGS["3-layers-6-heads-hidden-48"])
    ours = bert_lrp.BertForSequenceClassification(config).eval()
    randomize(ours, generator)
    ours.save_pretrained(tmp_path)
    theirs, _ = load_theirs(tmp_path, "BertForSequenceClassification")
    inputs = random_inputs(config, generator)
    embeds = torch.randn(*inputs["input_ids"].shape, config.hidden_size, generator=generator)
    positions = torch.arange(inputs["input_ids"].shape[1]).flip(0).unsqueeze(0)  # reversed positions
    kwargs = dict(inputs_embeds=embeds, position_ids=positions, attention_mask=inputs["attention_mask"],
                  token_type_ids=inputs["token_type_ids"])
    assert max_diff(run(ours, {}, **kwargs).logits, run(theirs, {}, **kwargs).logits) <= TOL


def test_parameter_gradients_of_the_loss_match_transformers(loss_models):
    """A training step (eval mode, so no dropout) gives every parameter the same gradient."""
    ours, theirs, inputs, generator = loss_models(bert_lrp.BertForSequenceClassification,
                                                  "BertForSequenceClassification", num_labels=4)
    labels = torch.randint(0, 4, (3,), generator=generator)
    ours(**inputs, labels=labels).loss.backward()
    theirs(**inputs, labels=labels).loss.backward()
    their_grads = dict(theirs.named_parameters())
    checked = 0
    for name, parameter in ours.named_parameters():
        reference = their_grads[name].grad
        if name == "bert.embeddings.word_embeddings.weight":
            assert parameter.grad is not None and reference is not None
        # same math in a different summation order (fused vs eager attention backward): rounding only
        assert max_diff(parameter.grad, reference) <= TOL, name
        checked += 1
    assert checked == len(their_grads)
