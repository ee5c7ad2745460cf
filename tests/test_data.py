"""Data readers: formats, label alignment, and errors that name file, line and problem."""
from __future__ import annotations

import json

import pytest

from bert_lrp import BertTokenizer
from bert_lrp.training.data import IGNORE_INDEX, DataError, Example, encode, infer_labels, read_conll, read_table


@pytest.fixture
def tokenizer(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "john", "vis", "##ited", "paris", "a", "movie", "good"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return BertTokenizer.from_vocab(tmp_path / "vocab.txt", do_lower_case=True)


def test_tsv_csv_and_jsonl_read_the_same_examples(tmp_path):
    (tmp_path / "a.tsv").write_text("label\tsentence\tother\n1\ta good movie\tx\n0\tbad , \"quoted\"\ty\n")
    (tmp_path / "a.csv").write_text('label,sentence,other\n1,a good movie,x\n0,"bad , ""quoted""",y\n')
    (tmp_path / "a.jsonl").write_text(json.dumps({"sentence": "a good movie", "label": 1}) + "\n\n"
                                      + json.dumps({"sentence": 'bad , "quoted"', "label": 0}) + "\n")
    for name in ("a.tsv", "a.csv", "a.jsonl"):
        examples = read_table(tmp_path / name)
        assert [(e.text, e.label) for e in examples] == [("a good movie", "1"), ('bad , "quoted"', "0")], name
    assert read_table(tmp_path / "a.tsv")[1].line == 3


def test_sentence_pairs_use_token_types(tmp_path, tokenizer):
    (tmp_path / "p.tsv").write_text("premise\thypothesis\tgold\njohn visited paris\ta movie\tyes\n")
    examples = read_table(tmp_path / "p.tsv", text_column="premise", pair_column="hypothesis", label_column="gold")
    assert examples[0].pair == "a movie"
    [features] = encode(examples, tokenizer, {"yes": 0})
    assert features.token_type_ids == [0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert features.label == 0


def test_conll_skips_docstart_and_aligns_labels_to_first_pieces(tmp_path, tokenizer):
    (tmp_path / "c.txt").write_text("-DOCSTART- -X- -X- O\n\nJohn NNP B-NP I-PER\nvisited VBD B-VP O\n"
                                    "Paris NNP B-NP I-LOC\n\n-DOCSTART- -X- -X- O\n\nJohn NNP B-NP I-PER\n")
    examples = read_conll(tmp_path / "c.txt")
    assert [e.text for e in examples] == [["John", "visited", "Paris"], ["John"]]
    assert examples[0].line == 3 and examples[1].line == 9
    labels = infer_labels(examples)
    assert labels == ["O", "I-LOC", "I-PER"]
    features = encode(examples, tokenizer, {label: i for i, label in enumerate(labels)})
    # [CLS] john vis ##ited paris [SEP]
    assert features[0].label == [IGNORE_INDEX, 2, 0, IGNORE_INDEX, 1, IGNORE_INDEX]
    assert features[1].label == [IGNORE_INDEX, 2, IGNORE_INDEX]


def test_missing_column_is_named(tmp_path):
    (tmp_path / "m.tsv").write_text("text\tlabel\nfine\t1\n")
    assert [(e.text, e.label) for e in read_table(tmp_path / "m.tsv")] == [("fine", "1")]  # `text` is a text column
    with pytest.raises(DataError, match=r"m\.tsv, line 1: missing text column 'sentence'; the header has: text, label"):
        read_table(tmp_path / "m.tsv", text_column="sentence")
    (tmp_path / "r.tsv").write_text("review\tlabel\nfine\t1\n")
    with pytest.raises(DataError, match=r"r\.tsv, line 1: no text column \(a table needs one named sentence, "
                                        r"sentence1 or text\); the header has: review, label"):
        read_table(tmp_path / "r.tsv")
    (tmp_path / "m.jsonl").write_text('{"sentence": "fine", "label": 1}\n{"sentence": "bad"}\n')
    with pytest.raises(DataError, match=r"m\.jsonl, line 2: missing label field 'label'"):
        read_table(tmp_path / "m.jsonl")


def test_unknown_label_names_file_and_line(tmp_path, tokenizer):
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\na movie\t1\ngood\t7\n")
    with pytest.raises(DataError, match=r"dev\.tsv, line 3: unknown label '7'; known labels: 0, 1"):
        encode(read_table(tmp_path / "dev.tsv"), tokenizer, {"0": 0, "1": 1})


def test_empty_file_is_reported(tmp_path):
    (tmp_path / "e.tsv").write_text("\n\n")
    with pytest.raises(DataError, match=r"e\.tsv: the file is empty"):
        read_table(tmp_path / "e.tsv")
    (tmp_path / "h.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(DataError, match=r"h\.tsv: the file has a header but no examples"):
        read_table(tmp_path / "h.tsv")
    with pytest.raises(DataError, match=r"nothing\.tsv: no such file"):
        read_table(tmp_path / "nothing.tsv")


def test_wrong_number_of_fields_names_the_line(tmp_path):
    (tmp_path / "w.tsv").write_text("sentence\tlabel\ngood\t1\nbad\n")
    with pytest.raises(DataError, match=r"w\.tsv, line 3: expected 2 fields as in the header, got 1"):
        read_table(tmp_path / "w.tsv")
    (tmp_path / "w.txt").write_text("John NNP B-NP I-PER\nvisited VBD O\n")
    with pytest.raises(DataError, match=r"w\.txt, line 2: expected 4 fields as on the first line, got 3"):
        read_conll(tmp_path / "w.txt")
    (tmp_path / "x.tsv").write_text("sentence\tlabel\n \t1\n")
    with pytest.raises(DataError, match=r"x\.tsv, line 2: the text is empty"):
        read_table(tmp_path / "x.tsv")


def test_infer_labels_orders_numbers_numerically():
    examples = [Example(text="a", label=v) for v in ("10", "2", "0", "2")]
    assert infer_labels(examples) == ["0", "2", "10"]


def test_invalid_utf8_and_folders_name_file_and_line(tmp_path):
    (tmp_path / "u.tsv").write_bytes(b"sentence\tlabel\ngood\t1\nb\xe9d\t0\n")  # Latin-1, not UTF-8
    with pytest.raises(DataError, match=r"u\.tsv, line 3: not valid UTF-8 \(byte 0xe9 at column 2\)"):
        read_table(tmp_path / "u.tsv")
    with pytest.raises(DataError, match="is a folder, expected a data file"):
        read_table(tmp_path)
    (tmp_path / "bom.tsv").write_bytes(b"\xef\xbb\xbfsentence\tlabel\ngood\t1\n")  # a byte order mark is fine
    assert [(e.text, e.label) for e in read_table(tmp_path / "bom.tsv")] == [("good", "1")]


def test_optional_label_column(tmp_path):
    (tmp_path / "n.tsv").write_text("sentence\ngood\nbad\n")
    examples = read_table(tmp_path / "n.tsv", label_optional=True)
    assert [(e.text, e.label, e.line) for e in examples] == [("good", None, 2), ("bad", None, 3)]
    with pytest.raises(DataError, match="missing label column 'label'"):
        read_table(tmp_path / "n.tsv")
    (tmp_path / "l.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t\n")  # a label column needs every label
    with pytest.raises(DataError, match=r"l\.tsv, line 3: the label is empty"):
        read_table(tmp_path / "l.tsv", label_optional=True)
    (tmp_path / "n.jsonl").write_text('{"sentence": "good"}\n')
    assert read_table(tmp_path / "n.jsonl", label_optional=True)[0].label is None
