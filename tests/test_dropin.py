"""A drop-in by transformers' measure (issue 32): our models take transformers' config objects,
load and save with transformers' options, train with its features (gradient checkpointing,
input gradients, resized vocabularies), switch attention implementations without changing a
relevance, have the heads transformers has, and share Parameters with a live transformers model.

Tiny random models (hidden 32, 2 layers); transformers is the peer every number is checked against.
"""
from __future__ import annotations

import json
import logging

import pytest
import torch
import transformers

import bert_lrp
from bert_lrp import explain
from bert_lrp.errors import BertLrpError

VOCAB, SEQ, BATCH = 99, 9, 3
TOLERANCE = 1e-5


def hf_config(family: str = "bert", **changes):
    """transformers' own config object of a tiny model of ``family``."""
    common = dict(vocab_size=VOCAB, max_position_embeddings=40, num_labels=3)
    common.update(changes)
    if family == "distilbert":
        return transformers.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37, **common)
    if family == "electra":
        return transformers.ElectraConfig(embedding_size=24, hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=37, **common)
    cls = {"bert": transformers.BertConfig, "roberta": transformers.RobertaConfig}[family]
    return cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
               type_vocab_size=2 if family == "bert" else 1, **common)


def batch(seed: int = 0, family: str = "bert"):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (BATCH, SEQ), generator=generator)
    mask = torch.ones(BATCH, SEQ, dtype=torch.long)
    mask[0, 6:] = 0
    ids[0, 6:] = 1 if family == "roberta" else 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if family == "bert":
        inputs["token_type_ids"] = (torch.arange(SEQ) >= 4).long().expand(BATCH, SEQ)
    return inputs


def pair(name: str, config, seed: int = 0):
    """transformers' ``name`` model and ours of the same name built from transformers' config
    object itself, holding the same weights (copied through the state dict)."""
    torch.manual_seed(seed)
    theirs = getattr(transformers, name)(config).eval()
    ours = getattr(bert_lrp, name)(config).eval()
    bert_lrp.models.checkpoint.load_into(ours, theirs.state_dict())
    return theirs, ours


class CapturedLog(logging.Handler):
    """The messages one logger (by name) receives inside a ``with`` block, as ``.text``."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.logger, self.lines = logging.getLogger(name), []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __enter__(self) -> "CapturedLog":
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max())


def gradient_difference(theirs: torch.nn.Module, ours: torch.nn.Module) -> float:
    """Largest |gradient difference| over the parameters both hold, relative to the model's largest
    gradient (a key bias's gradient is zero in exact arithmetic: rounding noise, not a scale)."""
    mine = dict(ours.named_parameters())
    pairs = [(p.grad, mine[n].grad) for n, p in theirs.named_parameters() if n in mine and p.grad is not None]
    assert pairs and all(g is not None for _, g in pairs)
    scale = max(float(g.abs().max()) for g, _ in pairs)
    return max(max_difference(a, b) for a, b in pairs) / scale


# ------------------------------------------------------------------------------ 1. configs
FAMILY_CASES = [("bert", "BertForSequenceClassification"), ("bert", "BertForTokenClassification"),
                ("bert", "BertForMaskedLM"), ("roberta", "RobertaForSequenceClassification"),
                ("roberta", "RobertaForMaskedLM"), ("distilbert", "DistilBertForSequenceClassification"),
                ("distilbert", "DistilBertForMaskedLM"), ("electra", "ElectraForSequenceClassification"),
                ("electra", "ElectraForTokenClassification")]


@pytest.mark.parametrize("family,name", FAMILY_CASES)
def test_every_family_takes_transformers_config_object_with_equal_logits_losses_gradients(family, name):
    theirs, ours = pair(name, hf_config(family))
    inputs = batch(family=family)
    labels = (torch.tensor([0, 2, 1]) if name.endswith("SequenceClassification")
              else torch.randint(0, 3 if "Token" in name else VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(1)))
    expected, got = theirs(**inputs, labels=labels), ours(**inputs, labels=labels)
    assert max_difference(expected.logits, got.logits) <= TOLERANCE
    assert max_difference(expected.loss, got.loss) <= TOLERANCE
    expected.loss.backward()
    got.loss.backward()
    assert gradient_difference(theirs, ours) <= TOLERANCE


def test_our_config_takes_every_key_transformers_writes_and_round_trips(tmp_path):
    written = hf_config("bert", is_decoder=False, output_hidden_states=True, chunk_size_feed_forward=0).to_dict()
    config = bert_lrp.BertConfig(**{k: v for k, v in written.items() if k != "model_type"})
    assert config.output_hidden_states is True and config.chunk_size_feed_forward == 0
    assert config.transformers_version == written["transformers_version"]
    config.save_pretrained(tmp_path)
    again = bert_lrp.BertConfig.from_pretrained(tmp_path)
    assert again.to_dict() == config.to_dict()
    theirs = transformers.BertConfig.from_pretrained(tmp_path)  # transformers reads what we write
    assert theirs.output_hidden_states is True and theirs.hidden_size == 32


def test_unknown_attributes_set_on_our_config_are_kept_and_written():
    config = bert_lrp.BertConfig(hidden_size=32, num_attention_heads=4)
    config.custom_note = "kept"
    assert config.custom_note == "kept" and config.to_dict()["custom_note"] == "kept"
    with pytest.raises(AttributeError, match="no attribute 'never_set'"):
        config.never_set


def test_decoder_configs_and_inputs_are_refused_naming_what_is_unsupported():
    with pytest.raises(BertLrpError, match="is_decoder=True is not supported"):
        bert_lrp.BertModel(hf_config(is_decoder=True))
    with pytest.raises(BertLrpError, match="add_cross_attention=True is not supported"):
        bert_lrp.BertModel(hf_config(add_cross_attention=True))
    with pytest.raises(BertLrpError, match="BertLMHeadModel is not supported"):
        bert_lrp.BertLMHeadModel(hf_config())
    model = bert_lrp.BertModel(hf_config())
    with pytest.raises(BertLrpError, match="encoder_hidden_states: decoder use"):
        model(**batch(), encoder_hidden_states=torch.zeros(BATCH, SEQ, 32))


# ------------------------------------------------------------------- 2. loading and saving
def test_ignore_mismatched_sizes_gives_a_new_head_and_reports_it_as_transformers(tmp_path):
    theirs = transformers.BertForSequenceClassification(hf_config(num_labels=2))
    theirs.save_pretrained(tmp_path)
    with pytest.raises(BertLrpError, match="classifier.weight has shape"):
        bert_lrp.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    model, info = bert_lrp.BertForSequenceClassification.from_pretrained(
        tmp_path, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True)
    assert model.classifier.weight.shape == (5, 32)
    assert sorted(k for k, _, _ in info["mismatched_keys"]) == ["classifier.bias", "classifier.weight"]
    assert set(info.keys()) == {"missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"}
    with CapturedLog("transformers.modeling_utils") as theirs_log, CapturedLog("bert_lrp") as ours_log:
        bert_lrp.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    for log in (theirs_log, ours_log):  # transformers' words, where transformers' users read them too
        assert "classifier.weight: Reinit due to size mismatch - ckpt: [2, 32] vs model: [5, 32]" in log.text
    peer = transformers.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5,
                                                                      ignore_mismatched_sizes=True)
    assert torch.equal(model.bert.encoder.layer[1].output.dense.weight, peer.bert.encoder.layer[1].output.dense.weight)


def test_from_pretrained_loads_an_in_memory_state_dict_without_a_folder(tmp_path):
    theirs = transformers.BertForMaskedLM(hf_config()).eval()
    model = bert_lrp.BertForMaskedLM.from_pretrained(None, config=hf_config(), state_dict=theirs.state_dict())
    assert max_difference(model(**batch()).logits, theirs(**batch()).logits) <= TOLERANCE
    auto = bert_lrp.AutoModelForMaskedLM.from_pretrained(None, config=hf_config(), state_dict=theirs.state_dict())
    assert type(auto) is bert_lrp.BertForMaskedLM
    # state_dict= with a folder: those tensors, not the folder's file (as transformers)
    transformers.BertForMaskedLM(hf_config()).save_pretrained(tmp_path)
    folder_model = bert_lrp.BertForMaskedLM.from_pretrained(tmp_path, state_dict=theirs.state_dict())
    assert max_difference(folder_model(**batch()).logits, theirs(**batch()).logits) <= TOLERANCE
    with pytest.raises(BertLrpError, match=r"from_pretrained\(None\).*config= and state_dict="):
        bert_lrp.BertForMaskedLM.from_pretrained(None, config=hf_config())


@pytest.mark.parametrize("keyword", ["dtype", "torch_dtype"])
def test_dtype_option_casts_the_loaded_model(tmp_path, keyword):
    transformers.BertForMaskedLM(hf_config()).save_pretrained(tmp_path)
    model = bert_lrp.BertForMaskedLM.from_pretrained(tmp_path, **{keyword: torch.bfloat16})
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    auto = bert_lrp.BertForMaskedLM.from_pretrained(tmp_path, dtype="auto")
    assert auto.dtype == torch.float32


def test_loading_info_lists_a_missing_head_as_transformers(tmp_path):
    transformers.BertModel(hf_config()).save_pretrained(tmp_path)
    _, info = bert_lrp.BertForTokenClassification.from_pretrained(tmp_path, output_loading_info=True)
    _, expected = transformers.BertForTokenClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert sorted(info["missing_keys"]) == sorted(expected["missing_keys"])


def test_save_pretrained_options_of_transformers(tmp_path):
    torch.manual_seed(0)
    model = bert_lrp.BertForSequenceClassification(hf_config()).eval()
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert (tmp_path / "bin" / "pytorch_model.bin").exists()
    peer = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "bin").eval()
    assert max_difference(peer(**batch()).logits, model(**batch()).logits) <= TOLERANCE
    model.save_pretrained(tmp_path / "rank1", is_main_process=False)
    assert not (tmp_path / "rank1").exists()
    with pytest.raises(BertLrpError, match="push_to_hub"):
        model.save_pretrained(tmp_path / "hub", push_to_hub=True)


def test_from_config_and_private_from_config_take_attn_implementation_and_dtype():
    model = bert_lrp.BertForSequenceClassification._from_config(hf_config(), attn_implementation="eager",
                                                                dtype=torch.float64)
    assert model.config.attn_implementation == "eager" and model.dtype == torch.float64
    auto = bert_lrp.AutoModelForQuestionAnswering.from_config(hf_config("roberta", num_labels=2))
    assert type(auto) is bert_lrp.RobertaForQuestionAnswering


# ---------------------------------------------------------------------------- 3. outputs
def test_output_flags_are_read_from_the_config_and_outputs_index_as_transformers():
    config = hf_config(output_hidden_states=True, output_attentions=True, attn_implementation="eager")
    theirs, ours = pair("BertForSequenceClassification", config)
    expected, got = theirs(**batch()), ours(**batch())
    assert len(got.hidden_states) == len(expected.hidden_states) == 3
    assert len(got.attentions) == len(expected.attentions) == 2
    assert list(got.keys()) == list(expected.keys()) == list(got) == list(expected)  # iterating yields keys
    assert max_difference(got["attentions"][1], expected["attentions"][1]) <= TOLERANCE
    assert max_difference(got[0], expected[0]) <= TOLERANCE  # by position: logits (no loss)
    assert "loss" not in got and "logits" in got
    tuple_output = ours(**batch(), return_dict=False)
    assert isinstance(tuple_output, tuple) and max_difference(tuple_output[0], expected.logits) <= TOLERANCE


# ------------------------------------------------------------------- training features
@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients(reentrant):
    torch.manual_seed(0)
    model = bert_lrp.BertForSequenceClassification(hf_config()).train()  # dropout on: RNG must replay
    inputs, labels = batch(), torch.tensor([0, 1, 2])

    def gradients():
        model.zero_grad()
        torch.manual_seed(7)
        model(**inputs, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = gradients()
    model.gradient_checkpointing_enable({"use_reentrant": reentrant})
    assert model.is_gradient_checkpointing and model.supports_gradient_checkpointing
    checkpointed = gradients()
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    assert all(max_difference(plain[n], checkpointed[n]) <= 1e-6 for n in plain)
    model.activation_checkpointing_enable({"use_reentrant": reentrant}, every_n_layers=2)  # layer 0 only
    every_other = gradients()
    assert model.is_activation_checkpointing and model.bert.gradient_checkpointing
    assert all(max_difference(plain[n], every_other[n]) <= 1e-6 for n in plain)
    assert any(float(g.abs().max()) > 0 for n, g in checkpointed.items() if "encoder.layer.0" in n)


def test_input_require_grads_lets_frozen_embeddings_pass_gradients_through_checkpoints():
    torch.manual_seed(0)
    model = bert_lrp.BertForSequenceClassification(hf_config()).train()
    model.get_input_embeddings().weight.requires_grad_(False)
    model.bert.embeddings.requires_grad_(False)
    model.gradient_checkpointing_enable({"use_reentrant": True})
    model.enable_input_require_grads()
    model(**batch(), labels=torch.tensor([0, 1, 2])).loss.backward()
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad is not None
    model.disable_input_require_grads()
    model.zero_grad(set_to_none=True)
    with pytest.warns(UserWarning):  # re-entrant checkpoint with no input requiring grad: no layer gradients
        model(**batch(), labels=torch.tensor([0, 1, 2])).loss.backward()
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad is None


@pytest.mark.parametrize("name,bias", [("BertForMaskedLM", "cls.predictions.bias"),
                                       ("RobertaForMaskedLM", "lm_head.bias"),
                                       ("DistilBertForMaskedLM", "vocab_projector.bias")])
def test_resize_token_embeddings_keeps_the_decoder_tied(name, bias):
    family = {"Bert": "bert", "Roberta": "roberta", "DistilBert": "distilbert"}[name[:-len("ForMaskedLM")]]
    theirs, ours = pair(name, hf_config(family))
    old = ours.get_input_embeddings().weight.detach().clone()
    new = ours.resize_token_embeddings(VOCAB + 5, pad_to_multiple_of=8)
    assert new.num_embeddings == 104 and ours.config.vocab_size == 104
    decoder = ours.get_output_embeddings()
    assert decoder.weight is ours.get_input_embeddings().weight and decoder.bias is ours.get_parameter(bias)
    assert torch.equal(decoder.weight[:VOCAB], old) and decoder.bias.shape == (104,)
    inputs = batch(family=family)
    assert ours(**inputs).logits.shape == (BATCH, SEQ, 104)
    theirs.resize_token_embeddings(VOCAB + 5, pad_to_multiple_of=8)
    ours.get_input_embeddings().weight.data.copy_(theirs.get_input_embeddings().weight)  # new rows: random draws
    assert max_difference(ours(**inputs).logits, theirs(**inputs).logits) <= TOLERANCE
    for model in (theirs, ours):  # a non-integer multiple is refused by both (each in its own words)
        with pytest.raises(ValueError, match="1.3"):
            model.resize_token_embeddings(VOCAB, pad_to_multiple_of=1.3)


UNTIED = [("bert", "BertForMaskedLM", "cls.predictions.decoder"),
          ("bert", "BertForPreTraining", "cls.predictions.decoder"),
          ("roberta", "RobertaForMaskedLM", "lm_head.decoder"),
          ("distilbert", "DistilBertForMaskedLM", "vocab_projector")]


@pytest.mark.parametrize("family,name,decoder", UNTIED)
def test_an_untied_decoder_computes_saves_loads_and_resizes_as_transformers(family, name, decoder, tmp_path):
    config = hf_config(family, tie_word_embeddings=False)
    theirs, ours = pair(name, config)
    own = ours.get_output_embeddings()
    assert own is ours.get_submodule(decoder) and isinstance(own, torch.nn.Linear)
    assert own.weight is not ours.get_input_embeddings().weight
    inputs = batch(family=family)
    assert max_difference(ours(**inputs)[0], theirs(**inputs)[0]) <= TOLERANCE  # the vocabulary logits
    ours.save_pretrained(tmp_path / "ours")
    reloaded, info = getattr(bert_lrp, name).from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert all(torch.equal(v, reloaded.state_dict()[k]) for k, v in ours.state_dict().items())
    peer, peer_info = getattr(transformers, name).from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert peer_info["missing_keys"] == set() and torch.equal(peer.get_output_embeddings().weight, own.weight)
    theirs.save_pretrained(tmp_path / "theirs")
    strict = getattr(bert_lrp, name).from_pretrained(tmp_path / "theirs")  # strict: every tensor found
    assert torch.equal(strict.get_output_embeddings().weight, theirs.get_output_embeddings().weight)
    ours.resize_token_embeddings(VOCAB + 10)
    resized = ours.get_output_embeddings()
    assert resized.weight.shape == (VOCAB + 10, 32) and resized.bias.shape == (VOCAB + 10,)
    assert torch.equal(resized.weight[:VOCAB], own.weight) and ours.get_input_embeddings().num_embeddings == VOCAB + 10
    assert torch.allclose(resized.weight[VOCAB:], own.weight.mean(0).expand(10, -1))  # mean resizing
    ours.post_init()  # transformers' hook re-draws nothing
    assert ours.get_output_embeddings().weight is resized.weight
    assert ours(**inputs)[0].shape[-1] == VOCAB + 10


def test_untied_decoder_gradients_equal_transformers():
    theirs, ours = pair("BertForMaskedLM", hf_config(tie_word_embeddings=False))
    labels = batch()["input_ids"].clone()
    theirs(**batch(), labels=labels).loss.backward()
    ours(**batch(), labels=labels).loss.backward()
    assert ours.cls.predictions.decoder.weight.grad is not None
    assert gradient_difference(theirs, ours) <= TOLERANCE


# ---------------------------------------------------------------- 4. attention implementations
def test_sdpa_and_eager_give_the_same_logits_and_the_same_relevance():
    torch.manual_seed(0)
    sdpa = bert_lrp.BertForSequenceClassification(hf_config(attn_implementation="sdpa")).eval()
    eager = bert_lrp.BertForSequenceClassification._from_config(hf_config(), attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.config.attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    inputs = batch()
    assert max_difference(sdpa(**inputs).logits, eager(**inputs).logits) <= TOLERANCE
    methods = ["lrp", "gradient_x_input", "gradient"]
    a, b = explain(sdpa, inputs, methods=methods, rule="cp-lrp"), explain(eager, inputs, methods=methods, rule="cp-lrp")
    for method in methods:
        assert max_difference(a.scores[method], b.scores[method]) <= TOLERANCE
    sdpa.set_attn_implementation("eager")
    assert sdpa.config.attn_implementation == "eager"
    with pytest.raises(BertLrpError, match="flash_attention_2"):
        sdpa.set_attn_implementation("flash_attention_2")


# -------------------------------------------------------------------------- 5. the new heads
def test_question_answering_matches_transformers_and_explains_start_and_end_logits():
    theirs, ours = pair("BertForQuestionAnswering", hf_config(num_labels=2))
    inputs = batch()
    starts, ends = torch.tensor([1, 3, 20]), torch.tensor([2, 5, 4])  # 20: outside, ignored
    expected = theirs(**inputs, start_positions=starts, end_positions=ends)
    got = ours(**inputs, start_positions=starts, end_positions=ends)
    assert max_difference(expected.start_logits, got.start_logits) <= TOLERANCE
    assert max_difference(expected.end_logits, got.end_logits) <= TOLERANCE
    assert max_difference(expected.loss, got.loss) <= TOLERANCE
    expected.loss.backward()
    got.loss.backward()
    assert gradient_difference(theirs, ours) <= TOLERANCE
    for label, logits in ((0, got.start_logits), (1, got.end_logits)):
        e = explain(ours, inputs, methods=["lrp"], target=(3, label), rule="cp-lrp")
        assert max_difference(e.target_logit, logits[:, 3]) <= TOLERANCE


def test_multiple_choice_and_next_sentence_match_transformers():
    inputs = batch()
    choices = {k: v.unsqueeze(1).expand(-1, 4, -1).contiguous() for k, v in inputs.items()}
    choices["input_ids"] = torch.stack([batch(seed)["input_ids"] for seed in range(4)], 1)  # 4 different answers
    for name, model_inputs, labels in (("BertForMultipleChoice", choices, torch.tensor([0, 3, 1])),
                                       ("BertForNextSentencePrediction", inputs, torch.tensor([0, 1, 1]))):
        theirs, ours = pair(name, hf_config())
        expected, got = theirs(**model_inputs, labels=labels), ours(**model_inputs, labels=labels)
        assert got.logits.shape == expected.logits.shape
        assert max_difference(expected.logits, got.logits) <= TOLERANCE
        assert max_difference(expected.loss, got.loss) <= TOLERANCE
        expected.loss.backward()
        got.loss.backward()
        assert gradient_difference(theirs, ours) <= TOLERANCE


# --------------------------------------------------------------- 6. a live transformers model
def test_from_transformers_shares_the_parameters_and_to_transformers_goes_back():
    torch.manual_seed(0)
    theirs = transformers.BertForMaskedLM(hf_config()).eval()
    ours = bert_lrp.from_transformers(theirs)
    assert type(ours) is bert_lrp.BertForMaskedLM and not ours.training
    assert ours.get_input_embeddings().weight is theirs.get_input_embeddings().weight
    inputs = batch()
    assert max_difference(ours(**inputs).logits, theirs(**inputs).logits) <= TOLERANCE
    with torch.no_grad():  # no copy: a change in one is a change in the other
        theirs.cls.predictions.transform.dense.bias.add_(1.0)
    assert max_difference(ours(**inputs).logits, theirs(**inputs).logits) <= TOLERANCE
    back = bert_lrp.to_transformers(ours)
    assert type(back) is transformers.BertForMaskedLM
    assert back.cls.predictions.transform.dense.bias is theirs.cls.predictions.transform.dense.bias


def test_from_transformers_refuses_a_class_it_does_not_have():
    with pytest.raises(BertLrpError, match="no bert-lrp class for BertLMHeadModel"):
        bert_lrp.from_transformers(transformers.BertLMHeadModel(hf_config(is_decoder=True)))


# --------------------------------------------------------------------- adapters (PEFT's LoRA)
def test_a_lora_adapter_trains_on_our_model_and_merges_for_attribution():
    import peft  # a pinned test peer (setup.py's test extra)

    torch.manual_seed(0)
    model = bert_lrp.BertForSequenceClassification(hf_config())
    inputs, labels = batch(), torch.tensor([0, 2, 1])
    before = model.eval()(**inputs).logits.detach()
    adapted = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                         init_lora_weights=False))
    frozen = {n: p.detach().clone() for n, p in adapted.named_parameters() if not p.requires_grad}
    assert all("lora_" in n for n, p in adapted.named_parameters() if p.requires_grad)
    optimizer = torch.optim.SGD([p for p in adapted.parameters() if p.requires_grad], lr=0.1)
    adapted.train()
    for _ in range(3):
        optimizer.zero_grad()
        adapted(**inputs, labels=labels).loss.backward()
        optimizer.step()
    adapted.eval()
    trained = adapted(**inputs).logits.detach()
    assert max_difference(trained, before) > 1e-4  # the adapters act in the forward pass
    assert all(torch.equal(p, frozen[n]) for n, p in adapted.named_parameters() if n in frozen)
    # a preset whose linear rule is not the plain backward (bert-lrp) would see the base weights alone
    with pytest.raises(TypeError, match="merge the adapter"):
        explain(adapted.base_model.model, inputs, methods=["lrp"], rule="bert-lrp")
    merged = adapted.merge_and_unload()
    assert type(merged) is bert_lrp.BertForSequenceClassification
    assert max_difference(merged(**inputs).logits, trained) <= TOLERANCE
    explanation = explain(merged, inputs, methods=["lrp"], rule="cp-lrp")
    assert max_difference(explanation.logits, trained) <= TOLERANCE


def test_from_pretrained_under_a_meta_device_context_is_refused(tmp_path):
    bert_lrp.BertModel(hf_config()).save_pretrained(tmp_path)
    with torch.device("meta"), pytest.raises(BertLrpError, match="meta device context manager"):
        bert_lrp.BertModel.from_pretrained(tmp_path)
