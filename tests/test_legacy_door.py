"""The original BERT-LRP door, without an upward import: ``init_lrp=True`` on the constructor and
on ``from_pretrained`` gives the ``backward_*`` calls; ``from_pretrained`` refuses keywords it
does not know; the task of a model is what its head declares; and rules/ and models/ import
nothing from the layers above them."""
import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from bert_lrp import (AutoModelForSequenceClassification, BertForSequenceClassification, BertForTokenClassification,
                      RobertaForSequenceClassification)
from bert_lrp.attribution.targets import task_of
from bert_lrp.models.bert import LegacyBertForSequenceClassification

TINY = Path(__file__).resolve().parent / "fixtures" / "bert_lrp_original" / "tiny"
CASE = np.load(TINY.parent / "tiny.npz")


def _inputs():
    return {key: torch.from_numpy(CASE[f"tiny_padded/{key}"]) for key in ("input_ids", "attention_mask", "token_type_ids")}


def _backward_calls(model):
    inputs = _inputs()
    logits = model(**inputs).logits
    start = torch.zeros_like(logits)
    start[:, 0] = logits[:, 0].detach()
    return {"lrp": model.backward_lrp(start), "gradient": model.backward_gradient(torch.ones_like(logits)),
            "gradient_input": model.backward_gradient_input(torch.ones_like(logits))}


@pytest.mark.parametrize("loader", ["class", "auto"])
def test_from_pretrained_with_init_lrp_equals_the_constructed_legacy_model(loader):
    loaded = (BertForSequenceClassification if loader == "class" else AutoModelForSequenceClassification) \
        .from_pretrained(TINY, init_lrp=True)
    assert isinstance(loaded, LegacyBertForSequenceClassification)
    constructed = BertForSequenceClassification(loaded.config, loaded.config.num_labels, init_lrp=True)
    constructed.load_state_dict(BertForSequenceClassification.from_pretrained(TINY).state_dict())
    constructed.eval()
    ours, reference = _backward_calls(loaded), _backward_calls(constructed)
    for name in ours:
        assert ours[name].abs().max() > 0
        torch.testing.assert_close(ours[name], reference[name], rtol=0, atol=0, msg=name)


def test_from_pretrained_refuses_a_keyword_it_does_not_know():
    with pytest.raises(TypeError, match="init_lpr"):
        BertForSequenceClassification.from_pretrained(TINY, init_lpr=True)
    with pytest.raises(TypeError, match="output_attentionz"):
        AutoModelForSequenceClassification.from_pretrained(TINY, output_attentionz=True)
    # config fields are overrides, as in transformers
    assert BertForSequenceClassification.from_pretrained(TINY, num_labels=5, strict=False).config.num_labels == 5


def test_init_lrp_is_only_for_the_bert_sequence_classifier(tmp_path):
    with pytest.raises(ValueError, match="init_lrp"):
        BertForTokenClassification.from_pretrained(TINY, init_lrp=True, strict=False)
    with pytest.raises(ValueError, match="init_lrp"):
        RobertaForSequenceClassification.from_pretrained(TINY, init_lrp=True)


def test_the_task_is_what_the_head_declares():
    from bert_lrp import (BertForMaskedLM, BertForPreTraining, DistilBertForMaskedLM, DistilBertForSequenceClassification,
                          DistilBertForTokenClassification, ElectraForSequenceClassification,
                          ElectraForTokenClassification, RobertaForMaskedLM, RobertaForTokenClassification)

    expected = {BertForSequenceClassification: "sequence", LegacyBertForSequenceClassification: "sequence",
                RobertaForSequenceClassification: "sequence", DistilBertForSequenceClassification: "sequence",
                ElectraForSequenceClassification: "sequence", BertForTokenClassification: "token",
                RobertaForTokenClassification: "token", DistilBertForTokenClassification: "token",
                ElectraForTokenClassification: "token", BertForMaskedLM: "masked_lm", BertForPreTraining: "masked_lm",
                RobertaForMaskedLM: "masked_lm", DistilBertForMaskedLM: "masked_lm"}
    for cls, task in expected.items():
        assert task_of(cls.__new__(cls)) == task, cls.__name__

    class SequenceClassificationLookalike(torch.nn.Module):  # a name is not a task
        pass

    with pytest.raises(TypeError, match="SequenceClassificationLookalike"):
        task_of(SequenceClassificationLookalike())


def test_config_and_overrides_together_apply_the_overrides():
    config = BertForSequenceClassification.from_pretrained(TINY).config  # 3 labels, named
    model = BertForSequenceClassification.from_pretrained(TINY, config=config, num_labels=5, strict=False)
    assert model.config.num_labels == 5 and model.classifier.out_features == 5


def test_init_lrp_on_a_roberta_checkpoint_through_the_auto_class_is_refused(tmp_path):
    from bert_lrp import RobertaConfig

    config = RobertaConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=16, max_position_embeddings=16)
    RobertaForSequenceClassification(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="init_lrp.*BertForSequenceClassification"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path, init_lrp=True)


# ------------------------------------------------------------------------------ import layers
PACKAGE = Path(__file__).resolve().parent.parent / "bert_lrp"
UPPER = ("attribution", "evaluation", "training", "tf", "inspection", "views", "cli")


def _imported_modules(path: Path):
    """``(line, dotted name)`` of every import in ``path``, relative imports resolved against its package."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]  # e.g. ("bert_lrp", "models")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield node.lineno, module
            if node.module is None:  # "from .. import attribution"
                yield from ((node.lineno, f"{module}.{alias.name}") for alias in node.names)


# what each lower layer may not import: everything above it
ABOVE = {"rules": ("models",) + UPPER, "models": UPPER}


@pytest.mark.parametrize("layer", sorted(ABOVE))
def test_the_lower_layers_import_nothing_above_them(layer):
    above = {f"bert_lrp.{name}" for name in ABOVE[layer]}
    upward = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
              for path in sorted((PACKAGE / layer).rglob("*.py"))
              for line, name in _imported_modules(path)
              if ".".join(name.split(".")[:2]) in above]
    assert not upward, "\n".join(upward)
