"""Adding a method = one run function + one registry entry: it then appears in explain, in the
command line's --methods help, in evaluate's tables and in benchmark, with no other edit."""
import json

import pytest
import torch

from bert_lrp import cli, explain
from bert_lrp.attribution import registry
from bert_lrp.attribution.registry import Method, MethodResult, Option

from test_explain_cli import make_model_dir  # noqa: E402  (tests/ is on sys.path under pytest)
from test_faithfulness import write_data  # noqa: E402


def _position_score(context):
    """A toy method: each token's score is its position (so the ranking is known)."""
    ids = context.inputs["input_ids"]
    return MethodResult(torch.arange(ids.shape[1], dtype=torch.float32).expand(ids.shape[0], -1).clone())


@pytest.fixture
def toy():
    method = registry.register(Method("toy_position", "Toy (position)", aliases=("toy",), run=_position_score,
                                      summary="a test method"))
    yield method
    registry.unregister("toy_position")


def test_a_registered_method_runs_in_explain_with_padding_zeroed(toy, tmp_path):
    from bert_lrp import BertForSequenceClassification, BertTokenizer

    folder = make_model_dir(tmp_path / "model")
    model = BertForSequenceClassification.from_pretrained(folder)
    batch = BertTokenizer.from_pretrained(folder)(["a b c d", "a"])
    result = explain(model, batch, methods=["toy", "gs"])
    assert result.methods == ["toy_position", "gradient"]
    expected = torch.arange(batch["input_ids"].shape[1]).float() * batch["attention_mask"]
    torch.testing.assert_close(result.scores["toy_position"], expected)


def test_a_registered_method_appears_in_the_command_line_help(toy, capsys):
    try:
        assert cli.main(["explain", "--help"]) == 0
    except SystemExit as stop:  # argparse's own --help exit
        assert stop.code == 0
    assert "toy_position (toy)" in " ".join(capsys.readouterr().out.split())  # help text is wrapped


def test_a_registered_method_is_evaluated_with_its_label(toy, tmp_path, capsys):
    model_dir, data = make_model_dir(tmp_path / "model"), write_data(tmp_path / "data.tsv", count=6)
    out = tmp_path / "run"
    assert cli.main(["evaluate", "--model", str(model_dir), "--data", str(data), "--methods", "toy,lrp",
                     "--batch-size", "4", "--out", str(out), "--no-progress"]) == 0
    assert "| Toy (position) |" in capsys.readouterr().out
    assert list(json.loads((out / "results.json").read_text())["methods"]) == ["toy_position", "lrp", "random"]


def test_a_registered_method_is_a_benchmark_entry(toy):
    from bert_lrp.evaluation.benchmark import our_methods

    assert "toy" in our_methods()


# ------------------------------------------------------------------ a method with an option
TILT = Option("toy_tilt", float, 1.0, "toy: the score of each position is position x tilt", minimum=0.0, maximum=10.0)


def _tilted(context):
    """Position x the ``toy_tilt`` option: a method whose scores show the option's value."""
    ids = context.inputs["input_ids"]
    scores = torch.arange(ids.shape[1], dtype=torch.float32) * context.options["toy_tilt"]
    return MethodResult(scores.expand(ids.shape[0], -1).clone())


@pytest.fixture
def tilted():
    method = registry.register(Method("toy_tilted", "Toy (tilted)", run=_tilted, options=(TILT,),
                                      summary="a test method with an option"))
    yield method
    registry.unregister("toy_tilted")


def test_a_method_declares_its_option_once_and_every_door_takes_it(tilted, tmp_path, capsys):
    from bert_lrp import BertForSequenceClassification, BertTokenizer

    folder = make_model_dir(tmp_path / "model")
    model = BertForSequenceClassification.from_pretrained(folder)
    batch = BertTokenizer.from_pretrained(folder)(["a b c"])
    # Python: a keyword of explain(), checked against the option's range
    assert explain(model, batch, ["toy_tilted"], toy_tilt=2.5).scores["toy_tilted"][0, 2] == 5.0
    with pytest.raises(ValueError, match="toy_tilt"):
        explain(model, batch, ["toy_tilted"], toy_tilt=11)
    # the command line: a flag with its help, and the value in the --json settings and scores
    try:
        cli.main(["explain", "--help"])
    except SystemExit:
        pass
    assert "--toy-tilt" in capsys.readouterr().out
    out = tmp_path / "out.json"
    assert cli.main(["explain", "--model", str(folder), "--methods", "toy_tilted", "--toy-tilt", "3", "--quiet",
                     "--json", str(out), "the film"]) == 0
    payload = json.loads(out.read_text())
    assert payload["settings"]["options"] == {"toy_tilt": 3.0}
    assert payload["examples"][0]["scores"]["toy_tilted"]["tokens"] == [0.0, 3.0, 6.0, 9.0]
    assert cli.main(["explain", "--model", str(folder), "--methods", "toy_tilted", "--toy-tilt", "-1", "the film"]) == 2
    assert "--toy-tilt" in capsys.readouterr().err
    # --jsonl: the option is part of the run's settings (a resumed run with another value is refused)
    stream = tmp_path / "out.jsonl"
    assert cli.main(["explain", "--model", str(folder), "--methods", "toy_tilted", "--toy-tilt", "3", "--quiet",
                     "--jsonl", str(stream), "the film"]) == 0
    assert json.loads((tmp_path / "out.jsonl.run.json").read_text())["options"] == {"toy_tilt": 3.0}
    assert cli.main(["explain", "--model", str(folder), "--methods", "toy_tilted", "--toy-tilt", "4", "--quiet",
                     "--jsonl", str(stream), "--resume", "the film"]) == 2
    # evaluate: the same flag, recorded in the run's settings
    data = write_data(tmp_path / "data.tsv", count=4)
    run = tmp_path / "run"
    assert cli.main(["evaluate", "--model", str(folder), "--data", str(data), "--methods", "toy_tilted",
                     "--toy-tilt", "0.5", "--out", str(run), "--no-progress"]) == 0
    assert json.loads((run / "run.json").read_text())["settings"]["toy_tilt"] == 0.5  # the run record (docs/outputs.md)


def test_names_are_unique_and_unknown_names_list_the_choices(toy):
    with pytest.raises(ValueError, match="taken"):
        registry.register(Method("gs", "again", run=_position_score))
    with pytest.raises(ValueError, match="toy_position"):
        registry.get("nonexistent")
