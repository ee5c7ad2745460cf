"""Word-level views: merge word-piece scores into the words of the original text."""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch


def merge_word_pieces(scores: Union[torch.Tensor, Sequence[float]], encoding, index: int = 0) -> List[dict]:
    """Sum the ``[seq]`` token ``scores`` of example ``index`` over the pieces of each word.

    Uses the tokenizer's ``word_ids``/``sequence_ids``/``offsets``; special and padding tokens are
    left out. Returns ``[{"word", "start", "end", "sequence", "score", "pieces"}]`` in text order;
    the word scores sum exactly to the sum of the non-special token scores.
    """
    word_ids = encoding.word_ids[index]
    sequence_ids = encoding.sequence_ids[index]
    offsets = encoding.offsets[index]
    tokens = encoding.tokens[index]
    texts = encoding.texts[index] if hasattr(encoding, "texts") else (None, None)
    values = scores.tolist() if isinstance(scores, torch.Tensor) else [float(v) for v in scores]  # one conversion
    words: List[dict] = []
    by_key = {}
    for position, (word, sequence) in enumerate(zip(word_ids, sequence_ids)):
        if word is None:
            continue
        key = (sequence, word)
        start, end = offsets[position]
        if key not in by_key:
            by_key[key] = {"word": "", "start": start, "end": end, "sequence": sequence,
                           "score": 0.0, "pieces": [], "positions": []}
            words.append(by_key[key])
        entry = by_key[key]
        entry["start"], entry["end"] = min(entry["start"], start), max(entry["end"], end)
        entry["score"] += values[position]
        entry["pieces"].append(tokens[position])
        entry["positions"].append(position)
    for entry in words:
        text = texts[entry["sequence"] or 0] if texts and texts[entry["sequence"] or 0] is not None else None
        if isinstance(text, str):
            entry["word"] = text[entry["start"]:entry["end"]]
        else:
            entry["word"] = "".join(p[2:] if p.startswith("##") else p for p in entry["pieces"])
    return words


def word_numbers(encoding) -> Optional[List[List[Optional[int]]]]:
    """Per example and token, the number of the word the token belongs to, counted over the whole
    example (the second text of a pair continues the count), None for special tokens and padding.

    The tokenizer's ``word_ids`` restart at 0 in the second text of a pair; with its
    ``sequence_ids`` the words of the two texts stay apart even when the model has no token types
    (RoBERTa, DistilBERT). None when ``encoding`` carries no word ids."""
    word_ids = getattr(encoding, "word_ids", None)
    if word_ids is None and isinstance(encoding, dict):
        word_ids = encoding.get("word_ids")  # a plain dict batch may carry them as a key
    if word_ids is None:
        return None
    if isinstance(word_ids, torch.Tensor):  # [batch, seq], -1 for special tokens
        word_ids = [[None if int(w) < 0 else int(w) for w in row] for row in word_ids]
    sequence_ids = getattr(encoding, "sequence_ids", None) or [[0] * len(row) for row in word_ids]
    rows = []
    for words, sequences in zip(word_ids, sequence_ids):
        numbers: dict = {}
        rows.append([None if w is None else numbers.setdefault((s, w), len(numbers)) for w, s in zip(words, sequences)])
    return rows
