"""``bert-lrp evaluate`` on a token classifier (CoNLL-2003 sentences): each sentence's first word
the model labels as an entity is explained; the metrics mask the *other* words and read that
word's label probability; sentences with no predicted entity are recorded as skipped."""
from __future__ import annotations

import json

import torch

from bert_lrp import explain
from bert_lrp.cli import evaluate as evaluate_cli
from bert_lrp.evaluation.faithfulness import count_for_fraction
from bert_lrp.models.loading import load_model

from test_explain_cli import make_model_dir

SENTENCES = [
    [("she", "O"), ("moved", "O"), ("to", "O"), ("paris", "B-LOC"), ("in", "O"), ("may", "O"), (".", "O")],
    [("the", "O"), ("film", "O"), ("is", "O"), ("very", "O"), ("good", "O"), ("and", "O"), ("not", "O"),
     ("boring", "O"), (".", "O")],
    [("paris", "B-LOC"), ("is", "O"), ("great", "O"), (",", "O"), ("the", "O"), ("movie", "O"), ("is", "O"),
     ("bad", "O"), ("and", "O"), ("the", "O"), ("film", "O"), ("is", "O"), ("good", "O")],
    [("a", "O"), ("great", "O"), ("movie", "O"), ("in", "O"), ("paris", "B-LOC"), (".", "O")],
]


def write_conll(path):
    lines = ["-DOCSTART- -X- -X- O", ""]
    for sentence in SENTENCES:
        lines += [f"{word} X X {tag}" for word, tag in sentence] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_evaluate_explains_the_first_predicted_entity_of_each_sentence(tmp_path):
    folder = make_model_dir(tmp_path / "ner", token=True, seed=3)
    data = write_conll(tmp_path / "valid.txt")
    out = tmp_path / "faith"
    assert evaluate_cli.main(["--model", str(folder), "--data", str(data), "--methods", "lrp,gi", "--out", str(out),
                              "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    summary = json.loads((out / "results.json").read_text())
    model, tokenizer = load_model(folder)
    outside = model.config.label2id["O"]
    expected_skipped = 0
    for record, sentence in zip(records, SENTENCES):
        words = [w for w, _ in sentence]
        batch = tokenizer([" ".join(words)])
        with torch.no_grad():
            logits = model(**batch).logits[0]
        first_pieces = [batch.word_ids[0].index(w) for w in range(len(words))]  # one word = one piece here
        entity = next((w for w, p in enumerate(first_pieces) if int(logits[p].argmax()) != outside), None)
        if entity is None:
            expected_skipped += 1
            assert record == {"index": record["index"], "skipped": "no word predicted as an entity"}
            continue
        position = first_pieces[entity]
        probabilities = logits[position].double().softmax(-1)
        predicted = int(probabilities.argmax())
        assert record["prediction"] == predicted
        assert abs(record["p_prediction"] - float(probabilities[predicted])) < 1e-6
        assert record["label"] == model.config.label2id[sentence[entity][1]]
        for method in ("lrp", "gradient_x_input", "random"):
            metrics = record["methods"][method]
            assert abs(metrics["morf_p"][0] - record["p_prediction"]) < 1e-6  # nothing masked yet
            # every other word masked (the explained word is never a candidate): the model still sees it
            masked = [tokenizer.mask_token_id if p not in (0, position, len(words) + 1) else int(i)
                      for p, i in enumerate(batch["input_ids"][0])]
            with torch.no_grad():
                all_masked = model(input_ids=torch.tensor([masked]), token_type_ids=batch["token_type_ids"]).logits[0]
            assert abs(metrics["morf_p"][-1] - float(all_masked[position].double().softmax(-1)[predicted])) < 1e-5
        # MoRF's first step masks the words LRP ranks highest for (explained piece, predicted label)
        scores = explain(model, batch, ["lrp"], target=[(position, predicted)]).scores["lrp"][0]
        candidates = [p for p in range(1, len(words) + 1) if p != position]
        top = sorted(candidates, key=lambda p: (-float(scores[p]), p))[:count_for_fraction(1, len(candidates))]
        ids = [tokenizer.mask_token_id if p in top else int(i) for p, i in enumerate(batch["input_ids"][0])]
        with torch.no_grad():
            first_step = model(input_ids=torch.tensor([ids]), token_type_ids=batch["token_type_ids"]).logits[0]
        assert abs(record["methods"]["lrp"]["morf_p"][1] - float(first_step[position].double().softmax(-1)[predicted])) \
            < 1e-5
    assert expected_skipped < len(SENTENCES)  # the random model predicts entities somewhere
    assert summary["skipped"]["count"] == expected_skipped
    assert summary["examples"] == len(SENTENCES) - expected_skipped


def test_tune_lrp_tunes_a_token_classifier_on_conll_sentences(tmp_path):
    from bert_lrp.cli import tune as tune_cli
    from bert_lrp.errors import UsageError
    from bert_lrp.models.tuned import read_tuned_composite, text_key

    folder = make_model_dir(tmp_path / "ner", token=True, seed=3)
    train = write_conll(tmp_path / "train.txt")
    assert tune_cli.main(["--model", str(folder), "--data", str(train), "--examples", "4", "--min-words", "3",
                          "--budget", "2", "--no-progress"]) == 0
    tuned = read_tuned_composite(folder)
    assert tuned.tuning_texts == {text_key(" ".join(w for w, _ in s)) for s in SENTENCES}
    try:
        evaluate_cli.main(["--model", str(folder), "--data", str(train), "--methods", "lrp:tuned",
                           "--out", str(tmp_path / "refused"), "--no-progress"])
    except UsageError as error:
        assert "4 of its texts were used to tune" in str(error)
    else:
        raise AssertionError("evaluate scored the tuned composite on its tuning sentences")
