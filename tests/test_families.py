"""RoBERTa, DistilBERT and ELECTRA against transformers (a test peer): random models with small
odd configurations saved by transformers, loaded by ours; outputs, losses, gradients, checkpoints
both ways, and the attribution engine (GS/GI = autograd, CP-LRP conservation, padding = 0)."""
from __future__ import annotations

import json

import pytest
import torch

import bert_lrp
from bert_lrp import explain

transformers = pytest.importorskip("transformers")

VOCAB = 99
FAMILIES = {
    "roberta": dict(cls="Roberta", heads=("Model", "ForSequenceClassification", "ForTokenClassification", "ForMaskedLM"),
                    config=lambda: transformers.RobertaConfig(
                        vocab_size=VOCAB, hidden_size=48, num_hidden_layers=3, num_attention_heads=6,
                        intermediate_size=72, max_position_embeddings=40, type_vocab_size=1, layer_norm_eps=1e-5,
                        num_labels=3)),
    "distilbert": dict(cls="DistilBert", heads=("Model", "ForSequenceClassification", "ForTokenClassification",
                                                "ForMaskedLM"),
                       config=lambda: transformers.DistilBertConfig(
                           vocab_size=VOCAB, dim=48, n_layers=2, n_heads=4, hidden_dim=72,
                           max_position_embeddings=40, num_labels=3)),
    "electra": dict(cls="Electra", heads=("Model", "ForSequenceClassification", "ForTokenClassification"),
                    config=lambda: transformers.ElectraConfig(
                        vocab_size=VOCAB, embedding_size=32, hidden_size=48, num_hidden_layers=3,
                        num_attention_heads=4, intermediate_size=72, max_position_embeddings=40, num_labels=3)),
}
CASES = [(family, head) for family, spec in FAMILIES.items() for head in spec["heads"]]


def _peer(family: str, head: str, seed: int = 0):
    torch.manual_seed(seed)
    config = FAMILIES[family]["config"]()
    config._attn_implementation = "eager"  # attentions as probabilities
    model = getattr(transformers, FAMILIES[family]["cls"] + head)(config).eval()
    with torch.no_grad():  # non-zero biases and LayerNorm parameters: nothing hides behind an init value
        for name, parameter in model.named_parameters():
            if "bias" in name or "LayerNorm" in name or "layer_norm" in name:
                parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def _batch(family: str, pad: int):
    torch.manual_seed(1)
    ids = torch.randint(3, VOCAB, (3, 9))
    ids[:, 0] = 0
    mask = torch.ones_like(ids)
    for row, length in ((1, 6), (2, 4)):
        ids[row, length:] = pad
        mask[row, length:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    if family != "distilbert":
        batch["token_type_ids"] = torch.zeros_like(ids)
    return batch


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """transformers-saved folders, one per (family, head)."""
    out = {}
    for family, head in CASES:
        folder = tmp_path_factory.mktemp(f"{family}-{head}")
        _peer(family, head).save_pretrained(folder)
        out[family, head] = folder
    return out


def _ours(family, head, folder):
    return getattr(bert_lrp, FAMILIES[family]["cls"] + head).from_pretrained(folder)


def _theirs(family, head, folder):
    return getattr(transformers, FAMILIES[family]["cls"] + head).from_pretrained(folder, attn_implementation="eager").eval()


@pytest.mark.parametrize("family,head", CASES)
def test_outputs_match_transformers_on_a_padded_batch(folders, family, head):
    ours, theirs = _ours(family, head, folders[family, head]), _theirs(family, head, folders[family, head])
    batch = _batch(family, ours.config.pad_token_id)
    with torch.no_grad():
        mine = ours(**batch, output_hidden_states=True, output_attentions=True)
        peer = theirs(**batch, output_hidden_states=True, output_attentions=True)
    first = "last_hidden_state" if head == "Model" else "logits"
    torch.testing.assert_close(getattr(mine, first), getattr(peer, first), rtol=0, atol=1e-5)
    assert len(mine.hidden_states) == len(peer.hidden_states) and len(mine.attentions) == len(peer.attentions)
    for a, b in zip(mine.hidden_states, peer.hidden_states):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    for a, b in zip(mine.attentions, peer.attentions):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family,head", [c for c in CASES if c[1] != "Model"])
def test_losses_and_parameter_gradients_match(folders, family, head):
    ours, theirs = _ours(family, head, folders[family, head]), _theirs(family, head, folders[family, head])
    batch = _batch(family, ours.config.pad_token_id)
    torch.manual_seed(2)
    if head == "ForSequenceClassification":
        labels = torch.tensor([0, 2, 1])
    else:
        labels = torch.randint(0, 3 if head == "ForTokenClassification" else VOCAB, batch["input_ids"].shape)
        if head == "ForMaskedLM":  # token classification keeps labels at padding: their gradients count too
            labels[batch["attention_mask"] == 0] = -100
    mine = ours(**batch, labels=labels, num_items_in_batch=torch.tensor(3))  # as transformers' Trainer passes
    peer = theirs(**batch, labels=labels)
    torch.testing.assert_close(mine.loss, peer.loss, rtol=0, atol=1e-6)
    mine.loss.backward()
    peer.loss.backward()
    theirs_grads = dict(theirs.named_parameters())
    compared = 0
    for name, parameter in ours.named_parameters():
        other = theirs_grads[name].grad
        torch.testing.assert_close(parameter.grad, other, rtol=1e-4, atol=1e-6, msg=name)
        compared += 1
    assert compared == len(list(ours.parameters()))


@pytest.mark.parametrize("family,head", CASES)
def test_save_and_load_both_ways(folders, family, head, tmp_path):
    ours = _ours(family, head, folders[family, head])
    ours.save_pretrained(tmp_path)
    back = _theirs(family, head, tmp_path)
    again = getattr(bert_lrp, FAMILIES[family]["cls"] + head).from_pretrained(tmp_path)
    batch = _batch(family, ours.config.pad_token_id)
    with torch.no_grad():
        expected = ours(**batch)[0]
        torch.testing.assert_close(back(**batch)[0], expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(again(**batch)[0], expected, rtol=0, atol=0)
    assert type(again.config) is type(ours.config) and again.config.to_dict() == ours.config.to_dict()


@pytest.mark.parametrize("family", FAMILIES)
def test_strict_loading_names_the_tensor(folders, family, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = folders[family, "ForSequenceClassification"]
    state = load_file(folder / "model.safetensors")
    key = next(k for k in state if k.endswith("query.weight") or k.endswith("q_lin.weight"))
    state[key] = state[key][:, :-1].contiguous()
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(bert_lrp.CheckpointError, match=key.replace(".", r"\.")):
        _ours(family, "ForSequenceClassification", tmp_path)


def _embedding_output_hook(theirs, embedded):
    """Make transformers' model use ``embedded`` as the input of its first layer."""
    base = theirs.base_model
    module = getattr(base, "embeddings_project", None) or base.embeddings
    return module.register_forward_hook(lambda m, args, output: embedded)


@pytest.mark.parametrize("family,head", [c for c in CASES if c[1] in ("ForSequenceClassification",
                                                                        "ForTokenClassification")])
def test_gs_and_gi_equal_transformers_autograd(folders, family, head):
    ours, theirs = _ours(family, head, folders[family, head]), _theirs(family, head, folders[family, head])
    batch = _batch(family, ours.config.pad_token_id)
    target = None if head == "ForSequenceClassification" else (2, None)
    result = explain(ours, batch, methods=["gs", "gi"], target=target)
    embedded = ours.base_model.embed(batch["input_ids"], batch.get("token_type_ids")).detach().requires_grad_(True)
    handle = _embedding_output_hook(theirs, embedded)
    try:
        logits = theirs(**batch).logits
    finally:
        handle.remove()
    rows = torch.arange(3)
    score = logits[rows, result.target] if target is None else logits[rows, 2, result.target]
    (gradient,) = torch.autograd.grad(score.sum(), embedded)
    keep = batch["attention_mask"].unsqueeze(-1)
    torch.testing.assert_close(result.relevance["gradient"], gradient * keep, rtol=0, atol=1e-5)
    torch.testing.assert_close(result.relevance["gradient_x_input"], embedded.detach() * gradient * keep,
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("rule", ["cp-lrp", "attnlrp", "bert-lrp"])
def test_lrp_presets_run_in_one_pass_and_cp_lrp_conserves_without_biases(folders, family, rule):
    ours = _ours(family, "ForSequenceClassification", folders[family, "ForSequenceClassification"])
    with torch.no_grad():
        for name, parameter in ours.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
    batch = _batch(family, ours.config.pad_token_id)
    result = explain(ours, batch, methods=["gs", "gi", "lrp"], rule=rule)
    assert result.forward_passes == 1 and result.backward_passes == 1
    padding = batch["attention_mask"] == 0
    for method in ("gradient", "gradient_x_input", "lrp"):
        assert torch.isfinite(result.scores[method]).all()
        assert (result.scores[method][padding] == 0).all()  # exactly 0 at padding
    if rule == "cp-lrp":
        torch.testing.assert_close(result.conservation["lrp"], torch.ones(3), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_integrated_gradients_and_masked_lm_targets_run(folders, family):
    ours = _ours(family, "ForSequenceClassification", folders[family, "ForSequenceClassification"])
    batch = _batch(family, ours.config.pad_token_id)
    result = explain(ours, batch, methods=["ig"], ig_steps=8)
    assert (result.scores["integrated_gradients"][batch["attention_mask"] == 0] == 0).all()
    if (family, "ForMaskedLM") in folders:
        mlm = _ours(family, "ForMaskedLM", folders[family, "ForMaskedLM"])
        result = explain(mlm, batch, methods=["lrp"], target=(1, None), rule="cp-lrp")
        assert result.logits.shape == (3, 9, VOCAB)


def test_roberta_positions_count_from_the_padding_index(folders):
    ours = _ours("roberta", "Model", folders["roberta", "Model"])
    ids = torch.tensor([[0, 5, 6, 2, 1, 1]])
    _, position, _ = ours.embedding_parts(ids)
    expected = ours.embeddings.position_embeddings(torch.tensor([[2, 3, 4, 5, 1, 1]]))
    torch.testing.assert_close(position, expected, rtol=0, atol=0)


def test_distilbert_rejects_token_types_it_does_not_have(folders):
    ours = _ours("distilbert", "ForSequenceClassification", folders["distilbert", "ForSequenceClassification"])
    batch = _batch("distilbert", 0)
    ours(**batch, token_type_ids=torch.zeros_like(batch["input_ids"]))  # zeros are fine (explain passes them)
    with pytest.raises(bert_lrp.InputError, match="token_type_ids"):
        ours(**batch, token_type_ids=torch.ones_like(batch["input_ids"]))


@pytest.mark.parametrize("family,head", [c for c in CASES if c[1] == "ForSequenceClassification"])
def test_what_transformers_scripts_read(folders, family, head):
    ours, theirs = _ours(family, head, folders[family, head]), _theirs(family, head, folders[family, head])
    assert ours.device == theirs.device and ours.dtype == theirs.dtype
    assert ours.num_parameters() == theirs.num_parameters()
    assert ours.num_parameters(only_trainable=True) == theirs.num_parameters(only_trainable=True)
    assert ours.get_input_embeddings() is ours.base_model.embeddings.word_embeddings
    assert ours.can_generate() is False
    assert ours.base_model is getattr(ours, ours.base_model_prefix)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_transformers_style_training_loop_matches_with_dropout_off(folders, family, tmp_path):
    """What transformers' Trainer does per step (forward with labels and num_items_in_batch, backward,
    AdamW): ours and transformers' model from the same folder stay together. (The Trainer itself
    needs accelerate, which is not installed here.)"""
    source = folders[family, "ForSequenceClassification"]
    (tmp_path / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes())
    config = json.loads((source / "config.json").read_text())
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                "seq_classif_dropout"):
        if key in config:
            config[key] = 0.0
    (tmp_path / "config.json").write_text(json.dumps(config))
    models = [_ours(family, "ForSequenceClassification", tmp_path).train(),
              _theirs(family, "ForSequenceClassification", tmp_path).train()]
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in models]
    batch = _batch(family, models[0].config.pad_token_id)
    labels = torch.tensor([0, 2, 1])
    for _ in range(3):
        losses = []
        for model, optimizer in zip(models, optimizers):
            extra = {"num_items_in_batch": torch.tensor(3)} if model is models[0] else {}
            loss = model(**batch, labels=labels, **extra).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(models[0].eval()(**batch).logits, models[1].eval()(**batch).logits,
                                   rtol=0, atol=1e-4)


def test_transformers_pipeline_gives_the_same_scores(folders, tmp_path):
    folder = folders["distilbert", "ForSequenceClassification"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(VOCAB - 5)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.DistilBertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))
    texts = ["w1 w2 w3", "w40 w41"]
    ours = transformers.pipeline("text-classification", model=_ours("distilbert", "ForSequenceClassification", folder),
                                 tokenizer=tokenizer, top_k=None)
    theirs = transformers.pipeline("text-classification", model=_theirs("distilbert", "ForSequenceClassification",
                                                                        folder), tokenizer=tokenizer, top_k=None)
    for mine, peer in zip(ours(texts), theirs(texts)):
        assert [m["label"] for m in mine] == [p["label"] for p in peer]
        assert [m["score"] for m in mine] == pytest.approx([p["score"] for p in peer], abs=1e-6)
