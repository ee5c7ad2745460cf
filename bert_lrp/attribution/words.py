"""Word-level views: merge word-piece scores into the words of the original text.

A word's text is its span of the original text (the Encoding's ``texts`` and ``offsets``); an
Encoding without texts (a transformers batch given to ``explain()``), or a word whose span is
empty, is spelled from its pieces: WordPiece's ``##`` dropped, byte-level BPE pieces (RoBERTa's
``Ġ`` for a space) decoded to their bytes' UTF-8 text."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

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
        if isinstance(text, str) and entry["start"] < entry["end"]:
            entry["word"] = text[entry["start"]:entry["end"]]
        else:
            entry["word"] = piece_text(entry["pieces"])
    return words


def _byte_table() -> Dict[str, int]:
    """Byte-level BPE's printable stand-in for each byte -> the byte: printable Latin-1 bytes stand
    for themselves, the other bytes (controls, space, ...) in order for the characters from U+0100."""
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    table = {chr(b): b for b in printable}
    others = [b for b in range(256) if b not in table.values()]
    table.update({chr(0x100 + n): b for n, b in enumerate(others)})
    return table


BYTES = _byte_table()  # a constant table, never changed


def piece_bytes(piece: str) -> Optional[bytes]:
    """The bytes a byte-level BPE piece stands for; None if it holds a character outside the table."""
    if not all(c in BYTES for c in piece):
        return None
    return bytes(BYTES[c] for c in piece)


def piece_text(pieces: Sequence[str]) -> str:
    """The text of one word's pieces: WordPiece ``##`` marks dropped; byte-level pieces decoded
    (white space at the ends left out); pieces that decode to no UTF-8 text (a WordPiece word with
    Latin-1 letters) joined as they are."""
    joined = "".join(p[2:] if p.startswith("##") else p for p in pieces)
    raw = piece_bytes(joined)
    if raw is None:
        return joined
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return joined


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
