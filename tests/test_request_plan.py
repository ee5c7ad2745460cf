"""One checked plan per request (issue 28).

* A request becomes an immutable :class:`~bert_lrp.attribution.plan.Plan`, checked ONCE: the
  registry's check (``registry.check``) runs once per request on every road (``explain()``,
  ``explain_texts``, ``bert-lrp explain`` in the terminal, ``--json``, ``--jsonl``, ``evaluate``,
  the explorer), however many batches and windows the texts take.
* Every wrong field raises :class:`~bert_lrp.errors.RequestError` naming that field as the
  library knows it (``methods``, ``options.ig_steps``, ``target``, ``word``, ``stride``, ...),
  and no library module (outside ``cli/``) writes a command-line flag into an error message.
* The explorer answers 400 with the JSON field taken from ``error.field``, never from the message.
* The plan's cost estimate (forward rows x tokens, each method's own estimate from its registry
  entry) equals the rows x tokens counted at the model's encoder.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path
from typing import Dict, List

import pytest
import torch

import bert_lrp
from bert_lrp import cli, explain
from bert_lrp.attribution import registry
from bert_lrp.attribution.plan import Plan, Request, plan_request
from bert_lrp.attribution.registry import Method, MethodResult, Option
from bert_lrp.attribution.road import explain_texts
from bert_lrp.errors import RequestError
from bert_lrp.models.loading import load_model
from bert_lrp.views.explorer import explorer as explorer_module
from bert_lrp.views.explorer.explorer import ApiError, Explorer

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)
from test_faithfulness import write_data  # noqa: E402

TEXTS = ["the film is great", "a bad movie", "very boring and not good , the movie is bad", "a movie"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    return {"sequence": make_model_dir(root / "sequence"), "token": make_model_dir(root / "token", token=True)}


@pytest.fixture(scope="module")
def sequence(folders):
    return load_model(folders["sequence"])


@pytest.fixture(scope="module")
def token(folders):
    return load_model(folders["token"])


@pytest.fixture
def checks(monkeypatch) -> List[tuple]:
    """Every call of the registry's check of a request's methods and options."""
    calls: List[tuple] = []
    real = registry.check

    def spy(methods, options=None):
        calls.append((list(methods) if not isinstance(methods, str) else methods, dict(options or {})))
        return real(methods, options)

    monkeypatch.setattr(registry, "check", spy)
    return calls


# ---------------------------------------------------------------------- the plan
def test_a_plan_is_immutable(sequence):
    model, tokenizer = sequence
    plan = plan_request(model, tokenizer, Request(methods=["gi", "ig"], options={"ig_steps": "3"}, target="positive"))
    assert plan.methods == ("gradient_x_input", "integrated_gradients")
    assert plan.options["ig_steps"] == 3 and plan.target == 1 and plan.settings()["target"] == "positive"
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.batch_size = 2
    with pytest.raises(TypeError):
        plan.options["ig_steps"] = 4
    with pytest.raises(TypeError):
        plan.labels[0] = "other"
    assert plan_request(model, tokenizer, plan) is plan  # a plan is not checked again


def test_explain_checks_once(sequence, checks):
    model, tokenizer = sequence
    result = explain(model, tokenizer(TEXTS[:2], padding=True), ["gi", "lrp", "ig"], ig_steps=2)
    assert set(result.scores) == {"gradient_x_input", "lrp", "integrated_gradients"}
    assert len(checks) == 1


def test_explain_texts_checks_once_for_every_batch_and_window(sequence, checks):
    model, tokenizer = sequence
    long_text = " ".join(["the film is great and not boring"] * 12)  # > 64 positions: windows
    explained = explain_texts(model, tokenizer, TEXTS + [long_text], methods=["gi", "occlusion"], batch_size=2)
    assert len(explained) == 5 and explained[-1].windows > 1
    assert len(checks) == 1


@pytest.mark.parametrize("output", [[], ["--json", "{out}.json"], ["--jsonl", "{out}.jsonl"]])
def test_the_explain_command_checks_once(folders, tmp_path, capsys, checks, output):
    output = [item.format(out=tmp_path / "out") for item in output]
    assert cli.main(["explain", "--model", str(folders["sequence"]), "--methods", "gi,lrp", "--batch-size", "2",
                     *output, *TEXTS]) == 0
    assert len(checks) == 1
    if output:
        path = Path(output[1])
        settings = (json.loads(path.read_text())["settings"] if path.suffix == ".json"
                    else json.loads(Path(f"{path}.run.json").read_text()))
        assert settings["methods"] == ["gradient_x_input", "lrp"]


def test_evaluate_checks_once(folders, tmp_path, capsys, checks):
    data = write_data(tmp_path / "data.tsv", count=6)
    assert cli.main(["evaluate", "--model", str(folders["sequence"]), "--data", str(data), "--methods", "gi,lrp",
                     "--batch-size", "2", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert len(checks) == 1


def test_the_explorer_checks_once(folders, sequence, checks):
    explorer = Explorer([(folders["sequence"], *sequence)])
    try:
        payload = explorer.explain({"text": TEXTS[2], "methods": ["gi", "lrp"]})
    finally:
        explorer.close()
    assert payload["settings"]["methods"] == ["gradient_x_input", "lrp"]
    assert len(checks) == 1


# ---------------------------------------------------------------------- errors name their field
SEQUENCE_ERRORS = [
    ({"methods": ["deeplift"]}, "methods"),
    ({"methods": []}, "methods"),
    ({"methods": "lrp"}, "methods"),
    ({"methods": ["ig"], "options": {"ig_steps": 0}}, "options.ig_steps"),
    ({"methods": ["ig"], "options": {"ig_steps": "many"}}, "options.ig_steps"),
    ({"options": {"bogus": 1}}, "options.bogus"),
    ({"options": {"rule": "nope"}}, "options.rule"),
    ({"options": {"rule": "tuned"}}, "options.rule"),   # the model has no tuned composite
    ({"methods": ["lrp:tuned"]}, "methods"),
    ({"target": "neutral"}, "target"),
    ({"target": 5}, "target"),
    ({"word": "film"}, "word"),
    ({"token_index": 1}, "token_index"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_tokens": 0}, "batch_tokens"),
    ({"stride": 0}, "stride"),
    ({"window": 0}, "window"),
    ({"window": 4, "stride": 9}, "stride"),
]


@pytest.mark.parametrize("fields, field", SEQUENCE_ERRORS)
def test_every_field_of_a_request_raises_a_request_error_naming_it(sequence, fields, field):
    model, tokenizer = sequence
    with pytest.raises(RequestError) as caught:
        plan_request(model, tokenizer, Request(**fields))
    assert caught.value.field == field
    assert str(caught.value) == f"{field}: {caught.value.message}"


@pytest.mark.parametrize("fields, field", [
    ({}, "word"),                                  # a token classifier needs its word
    ({"word": "paris", "token_index": 3}, "token_index"),
    ({"token_index": "3"}, "token_index"),
])
def test_a_token_classifiers_word_is_checked_with_its_field(token, fields, field):
    model, tokenizer = token
    with pytest.raises(RequestError) as caught:
        plan_request(model, tokenizer, Request(**fields))
    assert caught.value.field == field


@pytest.mark.parametrize("fields, field", [({"word": "london"}, "word"), ({"token_index": 40}, "token_index"),
                                           ({"token_index": 0}, "token_index")])  # 0: [CLS], a special token
def test_a_word_the_text_does_not_have_names_its_field(token, fields, field):
    model, tokenizer = token
    with pytest.raises(RequestError) as caught:
        explain_texts(model, tokenizer, ["she moved to paris"], methods=["gi"], **fields)
    assert caught.value.field == field


def test_explain_names_its_own_arguments(sequence):
    model, tokenizer = sequence
    batch = tokenizer(["a film"])
    for kwargs, field in (({"reduction": "cube"}, "reduction"), ({"schedule": "later"}, "schedule"),
                          ({"methods": ["nope"]}, "methods"), ({"ig_stepz": 3}, "options.ig_stepz")):
        with pytest.raises(RequestError) as caught:
            explain(model, batch, **{"methods": ["gi"], **kwargs})
        assert caught.value.field == field


def test_an_option_error_is_a_request_error_of_options_name():
    with pytest.raises(registry.OptionError) as caught:
        registry.all_options()["ig_steps"].check(0)
    assert isinstance(caught.value, RequestError) and caught.value.field == "options.ig_steps"
    assert "--" not in caught.value.message


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
PACKAGE = Path(bert_lrp.__file__).parent


def flags_in_errors(path: Path) -> List[str]:
    """``line: flag`` for every ``--flag`` in a string of a ``raise`` statement of ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for part in ast.walk(node.exc):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    found += [f"{part.lineno}: {flag}" for flag in FLAG.findall(part.value)]
    return found


def library_modules() -> Dict[str, Path]:
    return {path.relative_to(PACKAGE).as_posix(): path for path in sorted(PACKAGE.rglob("*.py"))
            if path.relative_to(PACKAGE).parts[0] != "cli"}


def test_no_library_error_names_a_command_line_flag():
    offenders = {name: flags_in_errors(path) for name, path in library_modules().items()}
    assert {name: found for name, found in offenders.items() if found} == {}


# ---------------------------------------------------------------------- the explorer's fields
@pytest.fixture(scope="module")
def explorer(folders, sequence, token):
    loaded = Explorer([(folders["sequence"], *sequence), (folders["token"], *token)])
    yield loaded
    loaded.close()


@pytest.mark.parametrize("body, field", [
    ({"methods": ["nope"]}, "methods"),
    ({"methods": ["ig"], "options": {"ig_steps": 0}}, "options.ig_steps"),
    ({"options": {"bogus": 1}}, "options.bogus"),
    ({"options": {"rule": "tuned"}}, "options.rule"),
    ({"target": "neutral"}, "target"),
    ({"word": "film"}, "word"),                      # a sequence classifier has no word to choose
    ({"model": "token", "word": "london"}, "word"),  # not a word of the text
    ({"model": "token"}, "word"),                    # a token classifier needs one
])
def test_the_explorer_answers_400_with_the_json_field(explorer, body, field):
    with pytest.raises(ApiError) as caught:
        explorer.explain({"text": "she moved to paris", **body})
    assert caught.value.status == 400 and caught.value.field == field


def test_the_explorer_reads_the_field_not_the_message(explorer, monkeypatch):
    assert not hasattr(explorer_module, "_field_of")

    def refuse(model, tokenizer, request):
        raise RequestError("options.seed", "a message that names no field at all")

    monkeypatch.setattr(explorer_module, "plan_request", refuse)
    with pytest.raises(ApiError) as caught:
        explorer.explain({"text": "a film"})
    assert caught.value.field == "options.seed" and str(caught.value) == "a message that names no field at all"


# ---------------------------------------------------------------------- cost = rows x tokens
class EncoderRows:
    """Counts rows x tokens entering the model's first encoder layer (every forward of every method)."""

    def __init__(self, model) -> None:
        self.count = 0
        self.handle = model.base_model.encoder_layers()[0].register_forward_pre_hook(self._seen)

    def _seen(self, module, args) -> None:
        hidden = args[0]
        self.count += hidden.shape[0] * hidden.shape[1]


def counted_and_estimated(model, tokenizer, texts, **request) -> tuple:
    plan = plan_request(model, tokenizer, Request(**request))
    batch = tokenizer(texts, padding=True)
    words = [len({w for w in ids if w is not None}) for ids in batch.word_ids]
    counter = EncoderRows(model)
    try:
        explain(model, batch, list(plan.methods), target=plan.target, options=dict(plan.options))
    finally:
        counter.handle.remove()
    return counter.count, plan.cost(batch["input_ids"].shape[1], words)


@pytest.mark.parametrize("request_fields", [
    {"methods": ["gs", "gi", "lrp"]},                        # one stacked copy per composite: 2 rows
    {"methods": ["lrp:bert-lrp", "gi"]},                     # the Jacobian path: one more copy
    {"methods": ["gi"], "target": "all"},                    # one copy per label
    {"methods": ["ig", "lat"], "options": {"ig_steps": 3}},  # a plain forward, then steps + 2 rows
    {"methods": ["occlusion"]},                              # the text, then each word left out
    {"methods": ["shap"], "options": {"shap_exact_words": 12}},  # 2^words coalitions
    {"methods": ["smoothgrad", "gi"], "options": {"smoothgrad_samples": 3}},
], ids=["stacked-pass", "jacobian", "all-labels", "ig", "occlusion", "shap", "smoothgrad"])
def test_the_cost_estimate_is_the_rows_times_tokens_counted(sequence, request_fields):
    model, tokenizer = sequence
    counted, estimated = counted_and_estimated(model, tokenizer, TEXTS[:2], **request_fields)
    assert counted > 0 and estimated == counted


COPIES = Option("toy_copies", int, 2, "toy: forward copies of the batch", minimum=1)


def _toy_copies(context):
    """A method that states its own cost: ``toy_copies`` forwards of the batch."""
    inputs = context.inputs
    with torch.no_grad():
        for _ in range(context.options["toy_copies"]):
            context.model(**inputs)
    return MethodResult(inputs["attention_mask"].float())


@pytest.fixture
def toy_copies():
    registry.register(Method("toy_copies", "Toy copies", run=_toy_copies, options=(COPIES,),
                             rows=lambda options, words: options["toy_copies"]))
    yield
    registry.unregister("toy_copies")


def test_a_registered_method_states_its_own_cost(sequence, toy_copies):
    model, tokenizer = sequence
    counted, estimated = counted_and_estimated(model, tokenizer, TEXTS[:3], methods=["toy_copies", "gi"],
                                               options={"toy_copies": 3})
    assert estimated == counted
    plan = plan_request(model, tokenizer, Request(methods=["toy_copies"], options={"toy_copies": 3}))
    assert plan.cost(10, [4]) == (1 + 3) * 10  # a plain forward for the target, then its three copies
    assert isinstance(plan, Plan)
