"""The heads transformers has for every family (issue 32, item 5): ``RobertaForMultipleChoice``,
``DistilBertForMultipleChoice``, ``ElectraForMultipleChoice`` and ``DistilBertForQuestionAnswering``.

Each one, built from transformers' config object or from ours, gives transformers' logits, loss
and input-embedding gradients with the same weights; its ``save_pretrained`` folder loads in
transformers (same state-dict keys) and transformers' folder loads strictly in ours; the auto
classes and ``from_transformers`` find it. Question answering is explained as BERT's (start and end
logits as token targets); multiple choice explains the chosen choice's logit (GS and GI equal
transformers' gradient of it).

Tiny random models (hidden 32, 2 layers); transformers is the peer every number is checked against.
"""
from __future__ import annotations

import pytest
import torch
import transformers

import bert_lrp
from bert_lrp import explain
from bert_lrp.models.checkpoint import load_into

from test_dropin import hf_config as tiny_hf_config  # noqa: E402  (tests/ is on sys.path under pytest)

VOCAB, SEQ, BATCH, CHOICES = 99, 9, 3, 4
TOLERANCE = 1e-5

MULTIPLE_CHOICE = [("roberta", "RobertaForMultipleChoice"), ("distilbert", "DistilBertForMultipleChoice"),
                   ("electra", "ElectraForMultipleChoice")]
QUESTION_ANSWERING = [("distilbert", "DistilBertForQuestionAnswering")]
NEW_HEADS = MULTIPLE_CHOICE + QUESTION_ANSWERING


def hf_config(family: str, **changes):
    """transformers' own config object of a tiny model of ``family`` (test_dropin's; two labels, as
    question answering needs; dropout on: eval() must switch it off)."""
    return tiny_hf_config(family, **{"num_labels": 2, **changes})


def token_batch(family: str, seed: int = 0) -> dict:
    """``[batch, seq]`` ids and mask; the first row padded after 6 tokens with the family's pad id."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (BATCH, SEQ), generator=generator)
    mask = torch.ones(BATCH, SEQ, dtype=torch.long)
    mask[0, 6:] = 0
    ids[0, 6:] = 1 if family == "roberta" else 0
    return {"input_ids": ids, "attention_mask": mask}


def model_batch(family: str, name: str) -> dict:
    """The inputs of ``name``: ``[batch, choices, seq]`` (a different answer per choice) for multiple choice."""
    if "MultipleChoice" not in name:
        return token_batch(family)
    rows = [token_batch(family, seed) for seed in range(CHOICES)]
    return {key: torch.stack([row[key] for row in rows], 1) for key in rows[0]}


def labels_of(name: str) -> dict:
    if "MultipleChoice" in name:
        return {"labels": torch.tensor([0, 3, 1])}
    return {"start_positions": torch.tensor([1, 3, 20]), "end_positions": torch.tensor([2, 5, 4])}  # 20: ignored


def logits_of(output) -> torch.Tensor:
    """``[batch, choices]`` logits, or the start and end logits stacked ``[batch, seq, 2]``."""
    if hasattr(output, "start_logits"):
        return torch.stack([output.start_logits, output.end_logits], -1)
    return output.logits


def config_for(family: str, name: str):
    return hf_config(family, num_labels=2) if "QuestionAnswering" in name else hf_config(family)


def pair(family: str, name: str, config=None):
    """transformers' ``name`` and ours of the same name (from transformers' config object unless
    ``config`` is given), holding the same weights (copied through the state dict)."""
    torch.manual_seed(0)
    theirs = getattr(transformers, name)(config_for(family, name)).eval()
    ours = getattr(bert_lrp, name)(config if config is not None else theirs.config).eval()
    load_into(ours, theirs.state_dict())
    return theirs, ours


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max())


def embedded_inputs(model: torch.nn.Module, inputs: dict) -> dict:
    """``inputs`` with the ids replaced by their word embeddings (a leaf that takes gradients)."""
    embedded = dict(inputs)
    embeds = model.get_input_embeddings()(embedded.pop("input_ids")).detach().requires_grad_(True)
    embedded["inputs_embeds"] = embeds
    return embedded


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("family,name", NEW_HEADS)
def test_logits_loss_and_input_embedding_gradients_equal_transformers(family, name):
    theirs, ours = pair(family, name)
    inputs, labels = model_batch(family, name), labels_of(name)
    expected, got = theirs(**inputs, **labels), ours(**inputs, **labels)
    assert logits_of(got).shape == logits_of(expected).shape
    assert max_difference(logits_of(expected), logits_of(got)) <= TOLERANCE
    assert max_difference(expected.loss, got.loss) <= TOLERANCE

    their_inputs, our_inputs = embedded_inputs(theirs, inputs), embedded_inputs(theirs, inputs)
    their_loss, our_loss = theirs(**their_inputs, **labels).loss, ours(**our_inputs, **labels).loss
    assert max_difference(their_loss, our_loss) <= TOLERANCE
    their_loss.backward()
    our_loss.backward()
    their_gradient, our_gradient = their_inputs["inputs_embeds"].grad, our_inputs["inputs_embeds"].grad
    assert float(their_gradient.abs().max()) > 0
    assert max_difference(their_gradient, our_gradient) <= TOLERANCE * float(their_gradient.abs().max())


@pytest.mark.parametrize("family,name", NEW_HEADS)
def test_built_from_our_config_it_is_the_same_model(family, name):
    _, from_theirs = pair(family, name)
    ours_config = from_theirs.config
    assert type(ours_config).__module__.startswith("bert_lrp")
    _, from_ours = pair(family, name, config=ours_config)
    assert list(from_ours.state_dict()) == list(from_theirs.state_dict())
    inputs = model_batch(family, name)
    assert max_difference(logits_of(from_theirs(**inputs)), logits_of(from_ours(**inputs))) <= TOLERANCE


@pytest.mark.parametrize("family,name", NEW_HEADS)
def test_save_pretrained_loads_in_transformers_and_theirs_loads_strictly_in_ours(family, name, tmp_path):
    theirs, ours = pair(family, name)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    ours.save_pretrained(tmp_path / "ours")
    reloaded = getattr(transformers, name).from_pretrained(tmp_path / "ours").eval()
    inputs = model_batch(family, name)
    assert max_difference(logits_of(reloaded(**inputs)), logits_of(ours(**inputs))) <= TOLERANCE

    theirs.save_pretrained(tmp_path / "theirs")
    loaded, info = getattr(bert_lrp, name).from_pretrained(tmp_path / "theirs", output_loading_info=True)
    assert [len(info[k]) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")] == [0, 0, 0]
    assert max_difference(logits_of(loaded.eval()(**inputs)), logits_of(theirs(**inputs))) <= TOLERANCE


# --------------------------------------------------------------------------- finding them
@pytest.mark.parametrize("family,name", NEW_HEADS)
def test_the_auto_class_and_from_transformers_find_the_head(family, name):
    auto = bert_lrp.AutoModelForMultipleChoice if "MultipleChoice" in name else bert_lrp.AutoModelForQuestionAnswering
    assert type(auto.from_config(config_for(family, name))) is getattr(bert_lrp, name)
    theirs = getattr(transformers, name)(config_for(family, name)).eval()
    shared = bert_lrp.from_transformers(theirs)
    assert type(shared) is getattr(bert_lrp, name)
    assert shared.get_input_embeddings().weight is theirs.get_input_embeddings().weight
    inputs = model_batch(family, name)
    assert max_difference(logits_of(shared(**inputs)), logits_of(theirs(**inputs))) <= TOLERANCE


def test_multiple_choice_refuses_inputs_without_a_choice_dimension():
    _, ours = pair("distilbert", "DistilBertForMultipleChoice")
    with pytest.raises(bert_lrp.InputError, match=r"DistilBertForMultipleChoice takes inputs of shape \[batch, choices"):
        ours(**token_batch("distilbert"))


def test_electra_multiple_choice_refuses_a_summary_it_does_not_compute():
    with pytest.raises(bert_lrp.ConfigError, match="summary_type must be 'first'.*'mean'"):
        bert_lrp.ElectraForMultipleChoice(hf_config("electra", summary_type="mean"))


# --------------------------------------------------------------------------- attribution
def test_distilbert_question_answering_explains_start_and_end_logits():
    _, ours = pair("distilbert", "DistilBertForQuestionAnswering")
    inputs = token_batch("distilbert")
    output = ours(**inputs)
    for label, logits in ((0, output.start_logits), (1, output.end_logits)):
        explanation = explain(ours, inputs, methods=["lrp", "gradient_x_input"], target=(3, label), rule="cp-lrp")
        assert max_difference(explanation.target_logit, logits[:, 3]) <= TOLERANCE
        for method in ("lrp", "gradient_x_input"):
            scores = explanation.scores[method]
            assert scores.shape == (BATCH, SEQ) and torch.isfinite(scores).all() and scores.abs().sum() > 0
        assert torch.isfinite(explanation.conservation["lrp"]).all()


def chosen_choice_gradient(theirs: torch.nn.Module, ours: torch.nn.Module, inputs: dict, chosen: torch.Tensor
                           ) -> tuple:
    """transformers' gradient of the chosen choices' logits at the embedding output (the first
    layer's input), ``[batch, choices, seq, hidden]``, and that embedding output."""
    flat = {k: v.flatten(0, 1) for k, v in inputs.items()}
    embedded = ours.base_model.embed(flat["input_ids"], flat.get("token_type_ids")).detach().requires_grad_(True)
    base = theirs.base_model
    module = getattr(base, "embeddings_project", None) or base.embeddings
    handle = module.register_forward_hook(lambda m, args, output: embedded)
    try:
        logits = theirs(**inputs).logits
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(logits[torch.arange(BATCH), chosen].sum(), embedded)
    return gradient.view(BATCH, CHOICES, SEQ, -1), embedded.detach().view(BATCH, CHOICES, SEQ, -1)


@pytest.mark.parametrize("family,name", [("bert", "BertForMultipleChoice")] + MULTIPLE_CHOICE)
def test_explain_a_multiple_choice_score_gs_gi_equal_transformers_gradient_and_lrp_conserves(family, name):
    theirs, ours = pair(family, name)
    inputs = model_batch(family, name)
    explanation = explain(ours, inputs, methods=["gradient", "gradient_x_input", "lrp"], rule="cp-lrp")
    logits = logits_of(theirs(**inputs))
    assert max_difference(explanation.logits, logits) <= TOLERANCE
    assert torch.equal(explanation.target, logits.argmax(-1))  # default: the predicted choice
    assert max_difference(explanation.target_logit, logits[torch.arange(BATCH), explanation.target]) <= TOLERANCE
    gradient, embedded = chosen_choice_gradient(theirs, ours, inputs, explanation.target)
    keep = inputs["attention_mask"].unsqueeze(-1)
    assert explanation.relevance["gradient"].shape == (BATCH, CHOICES, SEQ, 32)
    assert max_difference(explanation.relevance["gradient"], gradient * keep) <= TOLERANCE
    assert max_difference(explanation.relevance["gradient_x_input"], embedded * gradient * keep) <= TOLERANCE
    lrp = explanation.scores["lrp"]
    others = torch.ones(BATCH, CHOICES, dtype=torch.bool)
    others[torch.arange(BATCH), explanation.target] = False
    assert lrp.shape == (BATCH, CHOICES, SEQ) and (lrp[others] == 0).all()  # only the chosen choice is read
    assert (lrp[torch.arange(BATCH), explanation.target].abs().sum(-1) > 0).all()
    torch.testing.assert_close(explanation.conservation["lrp"], torch.ones(BATCH), rtol=1e-4, atol=1e-4)


def test_explain_a_given_choice_of_each_example_and_refuse_all_choices():
    _, ours = pair("roberta", "RobertaForMultipleChoice")
    inputs = model_batch("roberta", "RobertaForMultipleChoice")
    explanation = explain(ours, inputs, methods=["gradient_x_input", "integrated_gradients"], target=[2, 0, 3],
                          ig_steps=4)
    assert explanation.target.tolist() == [2, 0, 3]
    for method in ("gradient_x_input", "integrated_gradients"):  # shared-pass and separate methods alike
        scores = explanation.scores[method]
        assert scores.shape == (BATCH, CHOICES, SEQ)
        assert (scores[torch.arange(BATCH), explanation.target] != 0).any(-1).all()
    with pytest.raises(ValueError, match="one choice per example"):
        explain(ours, inputs, methods=["lrp"], target="all")
    with pytest.raises(ValueError, match=r"\[batch, choices, seq\]"):
        explain(ours, token_batch("roberta"), methods=["lrp"])
