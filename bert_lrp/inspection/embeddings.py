"""Contextual embeddings across layers: self-similarity, anisotropy, PCA (after Ethayarajh 2019,
"How Contextual are Contextualized Word Representations?").

Definitions (``l = 0`` is the embedding output, ``1..L`` the layers' outputs, ``hidden_states[l]``):

* **A word's embedding** at layer ``l`` in one sentence is the hidden state of its word piece;
  a word made of several word pieces (``["em", "##bed", "##ding"]``) gets the **mean of its
  pieces' hidden states**. Words are the tokenizer's words (``word_ids``: punctuation splits off,
  ``"film."`` is ``film`` and ``.``); a target matches case-insensitively.
* **Self-similarity** of a target word at layer ``l``: the mean cosine similarity over all pairs
  ``i < j`` of its occurrences (each pair of contexts). 1 would mean "the same vector in every
  context"; lower means more contextual.
* **Anisotropy** of layer ``l``: the mean cosine similarity over all pairs ``i < j`` of
  ``--samples`` word occurrences drawn uniformly (without replacement, seeded by ``--seed``) from
  all word occurrences of the same file. Two *random* words of an isotropic space would average
  about 0; BERT's layers are far from that, increasingly with depth.
* **Corrected self-similarity** = self-similarity - anisotropy of the same layer (Ethayarajh's
  baseline correction): how much more alike a word's occurrences are than two random words.
* **Between words**: the mean cosine over all pairs (one occurrence of each) of two target words.
* **PCA** per layer: all target occurrences ``X [n, hidden]`` centred, ``X_c = U S V^T``
  (``numpy.linalg.svd``), coordinates ``U[:, :2] * S[:2]`` (= ``X_c V[:, :2]``), each axis' sign
  fixed so that its largest-magnitude coordinate is positive; explained variance ``S^2 / sum S^2``.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..attribution.road import TextInput, encoded_batches
from ..errors import RequestError, UsageError

__all__ = ["Occurrence", "word_occurrences", "embed_occurrences", "cosine_matrix", "mean_pair_cosine",
           "anisotropy", "pca_2d", "embedding_report", "read_sentences"]


@dataclass(frozen=True)
class Occurrence:
    """One word in one sentence: its text as written, the sentence index, its word-piece positions."""

    word: str
    sentence: int
    positions: Tuple[int, ...]


def read_sentences(path: str) -> List[str]:
    """The sentences of ``path`` as every command reads a file of texts
    (:func:`bert_lrp.data.read_file_inputs`): a table's text column (e.g. SST-2's ``dev.tsv``), or
    one sentence per line. Blank lines are skipped; ``path`` is the request field ``file``."""
    from ..data import read_file_inputs

    return [item.text for item in read_file_inputs(path, "file")]


def word_occurrences(encoding, row: int, sentence: int, text: str) -> List[Occurrence]:
    """Every word of row ``row`` of a tokenizer ``encoding`` (of ``text``): the text as written
    (from the offsets) and its word-piece positions. Special tokens and padding are left out."""
    groups: Dict[int, List[int]] = {}
    for position, word in enumerate(encoding.word_ids[row]):
        if word is not None:
            groups.setdefault(word, []).append(position)
    out = []
    offsets = encoding.offsets[row]
    for word, positions in groups.items():
        start, end = offsets[positions[0]][0], offsets[positions[-1]][1]
        out.append(Occurrence(text[start:end], sentence, tuple(positions)))
    return out


@torch.no_grad()
def embed_occurrences(model, tokenizer, sentences: Sequence[str], wanted: Sequence[Occurrence],
                      batch_size: int = 32) -> torch.Tensor:
    """The embeddings of ``wanted`` at every layer: ``[len(wanted), L + 1, hidden]`` (float64),
    each the mean of the word's pieces' ``hidden_states[l]``. Only the sentences that hold a
    wanted word are run, ``batch_size`` at a time."""
    by_sentence: Dict[int, List[int]] = {}
    for index, occurrence in enumerate(wanted):
        by_sentence.setdefault(occurrence.sentence, []).append(index)
    order = sorted(by_sentence)
    result: Optional[torch.Tensor] = None
    for rows, encoding in encoded_batches(model, tokenizer, [sentences[s] for s in order], batch_size):
        output = model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"],
                       token_type_ids=encoding["token_type_ids"], output_hidden_states=True)
        hidden = torch.stack(output.hidden_states, 1).double()                # [batch, L + 1, seq, hidden]
        if result is None:
            result = torch.zeros(len(wanted), hidden.shape[1], hidden.shape[3], dtype=torch.float64)
        for row, sentence in enumerate(order[r] for r in rows):
            for index in by_sentence[sentence]:
                positions = list(wanted[index].positions)
                result[index] = hidden[row, :, positions].mean(1)
    if result is None:
        raise UsageError("no word occurrences to embed")
    return result


def cosine_matrix(x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cosine similarities ``[n, m]`` between the rows of ``x [n, hidden]`` and ``y [m, hidden]``
    (``y = x`` when not given)."""
    a = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    b = a if y is None else y / y.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return a @ b.T


def mean_pair_cosine(x: torch.Tensor) -> Optional[float]:
    """Mean cosine similarity over the pairs ``i < j`` of the rows of ``x [n, hidden]``; None for n < 2."""
    n = x.shape[0]
    if n < 2:
        return None
    matrix = cosine_matrix(x)
    upper = torch.triu_indices(n, n, offset=1)
    return float(matrix[upper[0], upper[1]].mean())


def anisotropy(sample: torch.Tensor) -> List[float]:
    """Per layer, the mean pairwise cosine similarity of a sample of random words:
    ``sample [n, L + 1, hidden]`` -> ``L + 1`` values."""
    return [mean_pair_cosine(sample[:, layer]) for layer in range(sample.shape[1])]


def pca_2d(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Two principal components of ``x [n, hidden]``: coordinates ``[n, 2]`` and the explained
    variance ratios ``[2]``, by ``numpy.linalg.svd`` of the centred data (signs fixed: the
    largest-magnitude coordinate of each axis is positive). Fewer than 2 components available
    (n < 2) gives zero columns."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(0, keepdims=True)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    k = min(2, s.shape[0])
    coordinates = np.zeros((x.shape[0], 2))
    coordinates[:, :k] = u[:, :k] * s[:k]
    for axis in range(k):
        column = coordinates[:, axis]
        if column[np.argmax(np.abs(column))] < 0:
            coordinates[:, axis] = -column
    total = float((s ** 2).sum())
    ratios = np.zeros(2)
    if total > 0:
        ratios[:k] = s[:k] ** 2 / total
    return coordinates, ratios


def _snippet(text: str, occurrence_start: int, occurrence_end: int, width: int = 40) -> str:
    left = text[max(0, occurrence_start - width):occurrence_start]
    right = text[occurrence_end:occurrence_end + width]
    return ("…" if occurrence_start > width else "") + left + "[" + text[occurrence_start:occurrence_end] + "]" + \
        right + ("…" if occurrence_end + width < len(text) else "")


def embedding_report(model, tokenizer, sentences: Sequence[str], words: Sequence[str], samples: int = 1000,
                     seed: int = 0, max_occurrences: int = 50, batch_size: int = 32, source: str = "the sentences",
                     warn: Optional[Callable[[str], None]] = None) -> dict:
    """Self-similarity, anisotropy, corrected self-similarity, between-word similarity and a PCA per
    layer for the target ``words`` in ``sentences`` (see the module docstring); JSON-ready.

    At most ``max_occurrences`` occurrences per word are used (the first ones, in file order).
    Empty ``words``, ``samples`` below 2 and a target word that does not occur (in ``source``: what
    the sentences are, e.g. their file) are a :class:`~bert_lrp.errors.RequestError` of that
    argument."""
    targets = [w.strip() for w in words if w.strip()]
    if not targets:
        raise RequestError("words", "none given; give the words to follow, e.g. bank,film")
    all_words: List[Occurrence] = []
    texts: List[str] = list(sentences)
    found: Dict[str, List[Tuple[Occurrence, Tuple[int, int]]]] = {t.lower(): [] for t in targets}
    inputs = [TextInput(text, None, f"{source}: sentence {i + 1}") for i, text in enumerate(texts)]
    encoded: Dict[int, List[Tuple[Occurrence, Tuple[int, int]]]] = {}
    notes: List[str] = []  # the road's warnings (texts cut to the model's positions): one summary line
    for rows, encoding in encoded_batches(model, tokenizer, inputs, 256, warn=notes.append):
        for row, index in enumerate(rows):
            offsets = encoding.offsets[row]
            encoded[index] = [(occurrence, (offsets[occurrence.positions[0]][0], offsets[occurrence.positions[-1]][1]))
                              for occurrence in word_occurrences(encoding, row, index, texts[index])]
    if notes and warn is not None:
        warn(f"{len(notes):,} of {len(texts):,} sentences were cut or have no words (first: {notes[0]})")
    if samples < 2:
        raise RequestError("samples", f"{samples}: the anisotropy baseline needs at least 2 random words")
    for index in range(len(texts)):  # in file order: the first occurrences of each word
        for occurrence, span in encoded[index]:
            all_words.append(occurrence)
            key = occurrence.word.lower()
            if key in found and len(found[key]) < max_occurrences:
                found[key].append((occurrence, span))
    missing = [t for t in targets if not found[t.lower()]]
    if missing:
        raise RequestError("words", f"{', '.join(repr(m) for m in missing)} does not occur in {source} "
                                    f"({len(texts):,} sentences, {len(all_words):,} words)")
    if len(all_words) < 2:
        raise UsageError(f"{source}: fewer than 2 words; the anisotropy baseline needs at least 2")
    rng = random.Random(seed)
    sample = rng.sample(all_words, min(samples, len(all_words)))
    target_list = [(t, o, span) for t in dict.fromkeys(t.lower() for t in targets) for o, span in found[t]]
    wanted = [o for _, o, _ in target_list] + sample
    vectors = embed_occurrences(model, tokenizer, texts, wanted, batch_size)    # [n, L + 1, hidden]
    target_vectors, sample_vectors = vectors[:len(target_list)], vectors[len(target_list):]
    layers = vectors.shape[1]
    baseline = anisotropy(sample_vectors)
    names = list(dict.fromkeys(t.lower() for t in targets))
    rows_of = {name: [i for i, (t, _, _) in enumerate(target_list) if t == name] for name in names}
    per_word = {}
    for name in names:
        rows = rows_of[name]
        raw = [mean_pair_cosine(target_vectors[rows, layer]) for layer in range(layers)]
        per_word[name] = {
            "occurrences": len(rows),
            "self_similarity": raw,
            "corrected": [None if r is None else r - b for r, b in zip(raw, baseline)],
            "matrices": [[[round(float(v), 6) for v in line] for line in cosine_matrix(target_vectors[rows, layer])]
                         for layer in range(layers)]}
    between = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            values = [float(cosine_matrix(target_vectors[rows_of[a], layer], target_vectors[rows_of[b], layer]).mean())
                      for layer in range(layers)]
            between[f"{a}|{b}"] = {"similarity": values, "corrected": [v - base for v, base in zip(values, baseline)]}
    pca = []
    for layer in range(layers):
        coordinates, ratios = pca_2d(target_vectors[:, layer].numpy())
        pca.append({"layer": layer, "explained_variance": [float(r) for r in ratios],
                    "points": [[round(float(x), 6), round(float(y), 6)] for x, y in coordinates]})
    occurrences = [{"word": t, "as_written": o.word, "sentence": o.sentence + 1,
                    "context": _snippet(texts[o.sentence], *span)} for t, o, span in target_list]
    return {"layers": list(range(layers)), "words": names, "sentences": len(texts), "corpus_words": len(all_words),
            "samples": len(sample), "seed": seed, "max_occurrences": max_occurrences,
            "anisotropy": baseline, "per_word": per_word, "between": between, "pca": pca,
            "occurrences": occurrences}


def render_terminal(report: dict) -> str:
    """A table: per layer the anisotropy and each word's self-similarity (raw / corrected)."""
    from .._text import printable

    def fmt(value: Optional[float]) -> str:
        return "   n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.3f}"

    words = report["words"]
    header = ["layer", "anisotropy"] + [f"{printable(w)} (n={report['per_word'][w]['occurrences']}) raw / corr."
                                        for w in words]
    lines = [f"{report['sentences']:,} sentences, {report['corpus_words']:,} words; anisotropy from "
             f"{report['samples']:,} random words (seed {report['seed']}). Layer 0 = embedding output.",
             "  ".join(header)]
    for layer in report["layers"]:
        cells = [f"{layer:>5}", f"{fmt(report['anisotropy'][layer]):>10}"]
        for w in words:
            entry = report["per_word"][w]
            cells.append(f"{fmt(entry['self_similarity'][layer])} / {fmt(entry['corrected'][layer])}")
        lines.append("  ".join(cells))
    for pair, entry in report["between"].items():
        a, b = pair.split("|")
        lines.append(f"between {printable(a)} and {printable(b)} (per layer): "
                     + ", ".join(fmt(v) for v in entry["similarity"]))
    return "\n".join(lines)
