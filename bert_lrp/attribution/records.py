"""The results of the road (:mod:`bert_lrp.attribution.road`): one text's explanation and its
one JSON record, which ``--json``, ``--jsonl``, the views and the explorer all read.

A record: ``index``, ``source`` (file and line), ``text`` (``pair``; ``label``, the gold label of
a table's row), ``prediction``,
``probabilities`` and ``logits`` by label name, ``tokens`` (word pieces), ``words`` (word, start,
end, sequence, piece positions), ``methods``; then ``target``, ``target_logit``, ``scores`` (per
method: ``tokens`` and ``words`` scores, words summing their pieces), ``conservation``,
``embedding_shares`` (LRP: per word, its word / position / token-type parts), ``extras``;
``target="all"``: ``target`` is ``"all"`` and ``labels`` holds those per label name. Token
classifiers add ``target_position`` and ``target_word``; windowed texts ``windows``; cut texts
``dropped_tokens``; ``--hidden-relevance`` adds ``relevance`` (per method, piece, hidden unit).

A text the road could not explain (when asked to go on, as ``--jsonl`` does) is a
:class:`FailedText`, whose record is ``index``, ``source``, ``text`` (``pair``) and ``error``
(one line saying why).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from .heatmaps import e, notebook_html, show_html
from .words import merge_word_pieces

ALL = "all"


@dataclass
class LabelScores:
    """The explanation of one label of one text; per-token tensors are ``[seq]`` over
    :attr:`TextExplanation.tokens`. Its per-method fields are an Explanation row's
    (:data:`bert_lrp.attribution.method_scores.FIELDS`: cut to the text, merged over windows)."""

    target: int
    target_logit: float
    scores: Dict[str, torch.Tensor]                   # [seq] per method
    conservation: Dict[str, float] = field(default_factory=dict)
    shares: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict)  # LRP: [seq] per embedding part
    relevance: Dict[str, torch.Tensor] = field(default_factory=dict)          # [seq, hidden] when asked
    layer_scores: Dict[str, List[torch.Tensor]] = field(default_factory=dict)  # per layer [seq] when asked
    extras: Dict[str, float] = field(default_factory=dict)                   # "<method>.<name>"


@dataclass
class TextExplanation:
    """One text's explanation. ``encoding`` is a one-row Encoding of the text as the model read it
    (the whole text when windowed); ``logits`` ``[labels]`` (at the target position for a token
    classifier; the mean over windows when windowed); ``labels`` holds one :class:`LabelScores`,
    or one per label with ``all_labels``; ``attentions`` ``[layers, heads, seq, seq]`` when asked."""

    index: int
    source: str
    text: str
    pair: Optional[str]
    encoding: Any
    methods: List[str]
    label_names: Dict[int, str]
    logits: torch.Tensor
    labels: List[LabelScores]
    all_labels: bool = False
    target_position: Optional[int] = None
    windows: int = 1
    dropped_tokens: int = 0
    attentions: Optional[torch.Tensor] = None
    spans: List[Tuple[int, int]] = field(default_factory=list)  # windowed: each window's piece span [start, end)
    gold: Optional[str] = None  # the gold label the input gave (a table's label column): the record's "label"

    @property
    def tokens(self) -> List[str]:
        return list(self.encoding.tokens[0])

    @property
    def prediction(self) -> int:
        return int(self.logits.argmax())

    @property
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits.double(), -1)

    def words(self) -> List[dict]:
        """``[{"word", "start", "end", "sequence", "pieces"}]``: the text's words in order, each
        with its piece positions (special tokens are no words)."""
        merged = merge_word_pieces([0.0] * len(self.tokens), self.encoding, 0)
        return [{"word": w["word"], "start": w["start"], "end": w["end"], "sequence": w["sequence"],
                 "pieces": w["positions"]} for w in merged]

    def label(self, label: Union[int, str, None] = None) -> LabelScores:
        """The scores of ``label`` (name or id; default: the only / the explained one)."""
        if label is None:
            return self.labels[0]
        wanted = label if isinstance(label, int) else {v: k for k, v in self.label_names.items()}[label]
        return next(entry for entry in self.labels if entry.target == wanted)

    def __repr__(self) -> str:
        """One line: index, the text (shortened), the prediction by name and its probability, the
        methods (never the tensors)."""
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        name = self.label_names.get(self.prediction, str(self.prediction))
        return (f"TextExplanation(index={self.index}, text={text!r}, prediction={name!r} "
                f"({float(self.probabilities[self.prediction]):.2f}), methods={list(self.methods)})")

    def _repr_html_(self) -> str:
        """Jupyter's view of the explanation: per explained label, the prediction and per method the
        words coloured by relevance (word pieces on hover), as in the HTML report and the explorer."""
        return notebook_html(label_views(self.record(layers=True)))

    def show(self) -> None:
        """Display :meth:`_repr_html_` in the running notebook (needs IPython)."""
        show_html(self._repr_html_())

    def record(self, hidden_relevance: bool = False, layers: bool = False) -> Dict[str, Any]:
        """The JSON record (see the module docstring; floats as computed, no rounding)."""
        names = self.label_names
        words = self.words()
        pieces = [w["pieces"] for w in words]
        record: Dict[str, Any] = {"index": self.index, "source": self.source, "text": self.text}
        if self.pair is not None:
            record["pair"] = self.pair
        if self.gold is not None:
            record["label"] = self.gold
        probabilities = self.probabilities.tolist()
        record.update({"prediction": names[self.prediction],
                       "probabilities": {names[k]: p for k, p in enumerate(probabilities)},
                       "logits": {names[k]: v for k, v in enumerate(self.logits.tolist())},
                       "tokens": self.tokens, "words": words, "methods": list(self.methods)})
        if self.target_position is not None:
            record["target_position"] = self.target_position
            chosen = next(i for i, p in enumerate(pieces) if self.target_position in p)
            record["target_word"] = {"index": chosen, "word": words[chosen]["word"], "position": self.target_position}
        entries = [(names[entry.target], _label_entry(entry, names[entry.target], pieces, hidden_relevance, layers))
                   for entry in self.labels]
        if self.all_labels:
            record["target"] = ALL
            record["labels"] = dict(entries)
        else:
            record.update(entries[0][1])
        if self.windows > 1:
            record["windows"] = self.windows
        if self.dropped_tokens:
            record["dropped_tokens"] = self.dropped_tokens
        return record


class Explanations(list):
    """The list :func:`bert_lrp.explain_texts` returns (a plain ``list`` of :class:`TextExplanation`
    and :class:`FailedText`), shown in a notebook as one compact table: per text its number, text,
    prediction by the model's label name with its probability, gold label, and per method the
    words that count most for the explained label. Show one explanation in full with
    ``explanations[i]``."""

    TOP_WORDS = 3

    def _repr_html_(self) -> str:
        records = [item.record() for item in self]
        methods = list(dict.fromkeys(m for r in records for m in r.get("methods", [])))
        head = "".join(f"<th>{e(h)}</th>" for h in ["#", "text", "prediction", "gold", *methods])
        rows = [_table_row(record, methods, self.TOP_WORDS) for record in records]
        return (f'<table class="bert-lrp-explanations"><thead><tr>{head}</tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table>')


def _table_row(record: Dict[str, Any], methods: List[str], top: int) -> str:
    """One text's row of :class:`Explanations`' table (every value through :func:`e`)."""
    text = record["text"] if len(record["text"]) <= 80 else record["text"][:77] + "..."
    cells = [str(record["index"]), text]
    if "error" in record:
        return "<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + \
            f'<td colspan="{len(methods) + 2}">error: {e(record["error"])}</td></tr>'
    view = label_views(record)[0] if record.get("target") != ALL else \
        next(v for v in label_views(record) if v["target"] == record["prediction"])
    cells.append(f"{record['prediction']} ({record['probabilities'][record['prediction']]:.2f})")
    cells.append(str(record.get("label", "")))
    for method in methods:
        scores = view.get("scores", {}).get(method)
        if scores is None:
            cells.append("")
            continue
        ranked = sorted(zip(scores["words"], (w["word"] for w in record["words"])), key=lambda p: -p[0])[:top]
        cells.append(", ".join(word for _, word in ranked))
    return "<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>"


def _word_values(values: List[float], pieces: List[List[int]]) -> List[float]:
    return [values[p[0]] if len(p) == 1 else sum(values[i] for i in p) for p in pieces]


def _label_entry(entry: LabelScores, name: str, pieces, hidden_relevance: bool, layers: bool) -> Dict[str, Any]:
    out: Dict[str, Any] = {"target": name, "target_logit": entry.target_logit, "scores": {}}
    for method, scores in entry.scores.items():
        values = scores.tolist()  # one conversion per row
        out["scores"][method] = {"tokens": values, "words": _word_values(values, pieces)}
    out["conservation"] = dict(entry.conservation)
    if entry.shares:
        out["embedding_shares"] = {m: {part: _word_values(v.tolist(), pieces) for part, v in parts.items()}
                                   for m, parts in entry.shares.items()}
    if entry.extras:
        out["extras"] = dict(entry.extras)
    if hidden_relevance:
        out["relevance"] = {m: v.tolist() for m, v in entry.relevance.items()}
    if layers and entry.layer_scores:
        out["layer_scores"] = {m: [layer.tolist() for layer in per_layer] for m, per_layer in entry.layer_scores.items()}
    return out


def label_views(record: Dict[str, Any]) -> List[Dict[str, Any]]:
    """A record -> one flat record per explained label (``target="all"``: one per label, each
    with ``target``, ``target_logit``, ``scores``, ... of that label at the top)."""
    if record.get("target") != ALL:
        return [record]
    views = []
    for name, entry in record["labels"].items():
        flat = {k: v for k, v in record.items() if k != "labels"}
        flat.update(entry)
        flat["target"] = name
        views.append(flat)
    return views


@dataclass
class FailedText:
    """A text that could not be explained, and why (``error``: one line)."""

    index: int
    source: str
    text: str
    pair: Optional[str]
    error: str
    label: Optional[str] = None

    def record(self, **_: Any) -> Dict[str, Any]:
        """``{"index", "source", "text", ("pair"), ("label"), "error"}``."""
        record: Dict[str, Any] = {"index": self.index, "source": self.source, "text": self.text}
        if self.pair is not None:
            record["pair"] = self.pair
        if self.label is not None:
            record["label"] = self.label
        record["error"] = self.error
        return record
