"""Checkpoints move between us and transformers in both directions, old BERT-LRP state dicts
load, and anything that does not fit the model is reported tensor by tensor."""
from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file, save_file

import bert_lrp
from bert_lrp import BertConfig, BertForSequenceClassification, CheckpointError

# Same weights, same eager math, small random model (values ~1): only summation order can
# differ between the two libraries, which stays far below this.
TOL = 1e-5


def random_classifier(make_config, seeded, **changes) -> BertForSequenceClassification:
    seeded(0)
    model = BertForSequenceClassification(make_config(**changes)).eval()
    with torch.no_grad():  # non-trivial biases and LayerNorm so that a dropped tensor would show
        for name, parameter in model.named_parameters():
            if name.endswith(("bias", "LayerNorm.weight")):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def sample_inputs(config: BertConfig) -> dict:
    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(1, config.vocab_size, (2, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    return {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask, "token_type_ids": types}


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


@pytest.fixture
def model(make_config, seeded):
    return random_classifier(make_config, seeded)


def save_state(state: dict, folder, config: BertConfig, name: str = "model.safetensors") -> None:
    folder.mkdir(exist_ok=True)
    config.save_pretrained(folder)
    if name.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / name))
    else:
        torch.save(state, folder / name)


# -------------------------------------------------------------------- with transformers
def test_saved_by_us_loads_in_transformers_with_identical_logits(model, tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    model.save_pretrained(tmp_path)
    theirs, info = transformers.BertForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    theirs.eval()
    inputs = sample_inputs(model.config)
    assert float((logits(model, inputs) - logits(theirs, inputs)).abs().max()) <= TOL


def test_saved_by_transformers_loads_in_ours_with_identical_logits(model, tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    model.save_pretrained(tmp_path / "ours")
    theirs = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "ours").eval()
    theirs.save_pretrained(tmp_path / "theirs")
    loaded, info = BertForSequenceClassification.from_pretrained(tmp_path / "theirs", output_loading_info=True)
    assert info.problems() == [] and info.newly_initialized == []
    inputs = sample_inputs(model.config)
    assert float((logits(loaded, inputs) - logits(theirs, inputs)).abs().max()) <= TOL


def test_transformers_state_dict_saved_as_pytorch_model_bin_loads(model, tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    model.save_pretrained(tmp_path / "ours")
    theirs = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "ours").eval()
    save_state(theirs.state_dict(), tmp_path / "bin", model.config, "pytorch_model.bin")
    loaded = BertForSequenceClassification.from_pretrained(tmp_path / "bin")
    inputs = sample_inputs(model.config)
    assert float((logits(loaded, inputs) - logits(theirs, inputs)).abs().max()) <= TOL


# ------------------------------------------------------------------------- our formats
def test_round_trip_through_save_pretrained_restores_every_tensor_exactly(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = BertForSequenceClassification.from_pretrained(tmp_path)
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    assert loaded.config.num_labels == model.config.num_labels


def test_pytorch_model_bin_is_read_with_weights_only(model, tmp_path):
    """A .bin that pickles anything but tensors is refused, not executed."""
    state = dict(model.state_dict())
    state["payload"] = ExplodingPickle()
    save_state(state, tmp_path, model.config, "pytorch_model.bin")
    ExplodingPickle.triggered = False
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        BertForSequenceClassification.from_pretrained(tmp_path)
    assert not ExplodingPickle.triggered


class ExplodingPickle:
    triggered = False

    def __reduce__(self):
        return (_trigger, ())


def _trigger():
    ExplodingPickle.triggered = True
    return 0


def test_bert_lrp_research_state_dict_with_gamma_beta_and_module_prefix_loads(model, tmp_path):
    """BERT-LRP checkpoints name LayerNorm parameters gamma/beta and, saved from
    DataParallel, prefix every key with ``module.``."""
    renamed = {}
    for key, tensor in model.state_dict().items():
        key = re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma", key)
        key = re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", key)
        renamed["module." + key] = tensor
    assert any(k.endswith(".gamma") for k in renamed) and any(k.endswith(".beta") for k in renamed)
    save_state(renamed, tmp_path, model.config, "pytorch_model.bin")
    loaded, info = BertForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert info.problems() == [] and info.newly_initialized == []
    inputs = sample_inputs(model.config)
    assert torch.equal(logits(loaded, inputs), logits(model, inputs))


# ------------------------------------------------------------------- strict loading
@pytest.fixture
def broken_folder(model, tmp_path):
    """A checkpoint with two missing, one unexpected and one mis-shaped tensor."""
    state = dict(model.state_dict())
    del state["bert.encoder.layer.1.output.dense.weight"]
    del state["bert.embeddings.LayerNorm.bias"]
    state["bert.encoder.layer.9.attention.self.query.weight"] = torch.zeros(32, 32)
    state["bert.pooler.dense.weight"] = torch.zeros(16, 32)
    save_state(state, tmp_path, model.config)
    return tmp_path


def test_strict_loading_names_every_missing_unexpected_and_misshaped_tensor(broken_folder):
    with pytest.raises(CheckpointError) as caught:
        BertForSequenceClassification.from_pretrained(broken_folder)
    message = str(caught.value)
    assert "4 problem(s)" in message
    assert "missing tensor bert.encoder.layer.1.output.dense.weight" in message
    assert "missing tensor bert.embeddings.LayerNorm.bias" in message
    assert "unexpected tensor bert.encoder.layer.9.attention.self.query.weight" in message
    assert "bert.pooler.dense.weight has shape [16, 32] in the checkpoint but [32, 32] in the model" in message


def test_non_strict_loading_reports_the_problems_in_loading_info(broken_folder, model):
    loaded, info = BertForSequenceClassification.from_pretrained(broken_folder, strict=False,
                                                                 output_loading_info=True)
    assert sorted(info.missing_keys) == ["bert.embeddings.LayerNorm.bias", "bert.encoder.layer.1.output.dense.weight"]
    assert info.unexpected_keys == ["bert.encoder.layer.9.attention.self.query.weight"]
    assert info.mismatched_keys == [("bert.pooler.dense.weight", (16, 32), (32, 32))]
    # what fitted was loaded
    assert torch.equal(loaded.classifier.weight, model.classifier.weight)


def test_mismatched_classifier_size_is_an_error_in_strict_mode(model, tmp_path):
    model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"classifier\.weight has shape \[3, 32\] in the checkpoint but \[5, 32\]"):
        BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5)


def test_missing_classifier_head_is_initialised_and_reported(minilm_path):
    torch.manual_seed(0)
    model, info = BertForSequenceClassification.from_pretrained(minilm_path, num_labels=2, output_loading_info=True)
    assert info.newly_initialized == ["classifier.weight", "classifier.bias"]
    assert info.problems() == []
    # initialised as transformers does: N(0, initializer_range) weights, zero bias
    std = float(model.classifier.weight.detach().std())
    assert 0.015 < std < 0.025, std  # 768 samples of N(0, 0.02): the estimate is within ~5%
    assert torch.count_nonzero(model.classifier.bias) == 0


def test_missing_weights_file_is_a_checkpoint_error(tmp_path, tiny_config):
    tiny_config.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        BertForSequenceClassification.from_pretrained(tmp_path)


def test_encoder_loads_from_a_classifier_checkpoint_and_reports_the_unused_head(model, tmp_path):
    model.save_pretrained(tmp_path)
    encoder, info = bert_lrp.BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info.problems() == []
    assert sorted(info.unused_head_keys) == ["classifier.bias", "classifier.weight"]
    assert torch.equal(encoder.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)


def test_saved_safetensors_hold_transformers_key_names(model, tmp_path):
    model.save_pretrained(tmp_path)
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    assert "bert.embeddings.LayerNorm.weight" in keys and "classifier.weight" in keys
    assert "bert.encoder.layer.1.attention.self.query.weight" in keys
