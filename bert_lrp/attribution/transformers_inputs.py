"""What a transformers user already has — a tokenizer and the batches it returns — as the inputs
bert-lrp reads. Duck-typed: the package never imports transformers (a test peer only).

Two doors:

* :func:`as_encoding` (``explain()`` calls it on its ``batch``): a transformers ``BatchEncoding``
  (tensors or lists; single texts or pairs; with or without ``token_type_ids``) -> the project's
  :class:`~bert_lrp.models.tokenization.Encoding`, whose ``tokens`` / ``offsets`` / ``word_ids`` /
  ``sequence_ids`` are per-row lists. Anything else (an Encoding, a dict of tensors) is returned
  as it is.
* :func:`tokenizer_for_road` (the road's entries call it once): a transformers tokenizer (fast or slow;
  BERT, RoBERTa, DistilBERT, ELECTRA) -> a :class:`TransformersTokenizer`, which the road calls as
  it calls bert-lrp's own tokenizer (``tokenizer([text], [pair], truncation=..., max_length=...)``
  gives a one-row Encoding with offsets, word ids, sequence ids and the texts). bert-lrp's own
  tokenizers are returned as they are.

A fast tokenizer (and its batch) says which word and which text each token belongs to. A slow
one (pure Python) does not; the word ids and sequence ids then follow from the tokens and the
special-token mask by this rule:

* special tokens (the template's ``[CLS]``/``[SEP]``/``<s>``/``</s>`` and padding) belong to no
  word and no text;
* the runs of other tokens between special tokens are the texts: the first run is text 0, the
  ones after it text 1 (with token type ids, a token's type is its text);
* WordPiece (BERT, DistilBERT, ELECTRA): a piece starting with ``##`` continues the word before
  it, any other piece starts a word;
* byte-level BPE (RoBERTa): the pieces of a text are decoded back to the text, which is split as
  GPT-2 and RoBERTa split a text before BPE (:data:`PRE_TOKENS`: contractions; runs of letters,
  of digits or of other characters, each with the space before it; white space); a piece starts
  a word where a split falls (BPE never merges across a split).

Word numbers restart at 0 in the second text, as in fast tokenizers and bert-lrp's own. A slow
tokenizer gives no character offsets either: :class:`TransformersTokenizer` finds each WordPiece
piece in the text (ignoring case and accents) and places byte-level pieces by their bytes, so that
words are spans of the original text.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..errors import RequestError
from ..models.tokenization import BertTokenizer, Encoding, TokenizerError
from .words import piece_bytes

WORDPIECE, BYTE_LEVEL = "wordpiece", "byte_level"
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
NO_LIMIT = 2 ** 31  # a max_length at least this large means none


# ------------------------------------------------------------------ recognising transformers' objects
def is_transformers_batch(batch: Any) -> bool:
    """A transformers ``BatchEncoding``: ``word_ids`` is a method there (a list per row in an Encoding)."""
    return callable(getattr(batch, "word_ids", None)) and hasattr(batch, "encodings") and "input_ids" in batch


def is_transformers_tokenizer(tokenizer: Any) -> bool:
    """A transformers tokenizer (fast or slow): callable, with ``is_fast`` and the special-token ids."""
    return (callable(tokenizer) and hasattr(tokenizer, "is_fast") and hasattr(tokenizer, "all_special_ids")
            and hasattr(tokenizer, "convert_ids_to_tokens"))


# ------------------------------------------------------------------ batches
def as_encoding(batch: Any, tokenizer: Any = None) -> Any:
    """``batch`` as ``explain()`` reads it: a transformers ``BatchEncoding`` becomes an
    :class:`Encoding` (``input_ids``, ``token_type_ids`` (zeros when absent), ``attention_mask``
    ``[batch, seq]`` long tensors, and per row ``tokens``, ``offsets``, ``word_ids``,
    ``sequence_ids``). A fast tokenizer's batch carries all of them; a slow one's carries ids only,
    so its tokens come from ``tokenizer`` (any transformers tokenizer) and its words from the rule
    of the module docstring; without ``tokenizer`` a slow batch becomes a plain dict of tensors
    (every token a word, as for any dict). Anything that is no ``BatchEncoding`` is returned
    unchanged. A wrong batch raises a :class:`RequestError` on field ``batch``."""
    if not is_transformers_batch(batch):
        return batch
    tensors = {key: _rows(batch[key], key) for key in MODEL_INPUTS if batch.get(key) is not None}
    ids = tensors["input_ids"]
    mask = tensors.get("attention_mask", torch.ones_like(ids))
    types = tensors.get("token_type_ids", torch.zeros_like(ids))
    for key, value in (("attention_mask", mask), ("token_type_ids", types)):
        if value.shape != ids.shape:
            raise RequestError("batch", f"{key} has shape {list(value.shape)}, input_ids {list(ids.shape)}")
    fast = getattr(batch, "encodings", None)
    if fast:
        return _from_fast(ids, types, mask, fast)
    if tokenizer is not None:
        special = batch.get("special_tokens_mask")
        special = None if special is None else _rows(special, "special_tokens_mask")
        return _from_slow(ids, types, mask, _wrapped(tokenizer), special, "token_type_ids" in tensors)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _rows(value: Any, key: str) -> torch.Tensor:
    """A ``[batch, seq]`` long tensor from a tensor, an array or (padded) lists; one row for a single text."""
    try:
        tensor = torch.as_tensor(value)
    except (ValueError, TypeError):
        lengths = sorted({len(row) for row in value}) if isinstance(value, (list, tuple)) else []
        raise RequestError("batch", f"the rows of {key} have different lengths {lengths}: tokenize with "
                                    "padding=True (and return_tensors='pt')") from None
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 2:
        raise RequestError("batch", f"{key} must be [batch, seq], got shape {list(tensor.shape)}")
    return tensor.long()


def _new_encoding(ids, types, mask) -> Encoding:
    encoding = Encoding()
    encoding["input_ids"], encoding["token_type_ids"], encoding["attention_mask"] = ids, types, mask
    encoding.tokens, encoding.offsets, encoding.word_ids, encoding.sequence_ids = [], [], [], []
    return encoding


def _from_fast(ids, types, mask, rows) -> Encoding:
    """A fast tokenizer's batch: every row's ``tokenizers.Encoding`` knows its tokens, offsets,
    words and texts; special tokens (the mask says so) and padding belong to none."""
    if len(rows) != ids.shape[0]:
        raise RequestError("batch", f"{len(rows)} encodings for {ids.shape[0]} rows of input_ids")
    encoding = _new_encoding(ids, types, mask)
    for r, row in enumerate(rows):
        if len(row.ids) != ids.shape[1]:
            raise RequestError("batch", f"row {r + 1} has {len(row.ids)} tokens, input_ids {ids.shape[1]}")
        keep = [not s and bool(m) for s, m in zip(row.special_tokens_mask, mask[r].tolist())]
        encoding.tokens.append(list(row.tokens))
        encoding.offsets.append([tuple(o) if k else (0, 0) for o, k in zip(row.offsets, keep)])
        encoding.word_ids.append([w if k else None for w, k in zip(row.word_ids, keep)])
        encoding.sequence_ids.append([s if k else None for s, k in zip(row.sequence_ids, keep)])
    return encoding


def _from_slow(ids, types, mask, tokenizer, special: Optional[torch.Tensor], has_types: bool) -> Encoding:
    """A slow tokenizer's batch: tokens from the tokenizer, words and texts by the module's rule."""
    encoding = _new_encoding(ids, types, mask)
    frame = {getattr(tokenizer, name, None) for name in
             ("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id", "pad_token_id")} - {None}
    scheme = piece_scheme(tokenizer)
    for r in range(ids.shape[0]):
        row = ids[r].tolist()
        tokens = [str(t) for t in tokenizer.convert_ids_to_tokens(row)]
        if special is not None:
            flags = [bool(s) for s in special[r].tolist()]
        else:  # the template's tokens; a [MASK] typed in the text stays a word, as in a fast tokenizer
            flags = [i in frame for i in row]
        flags = [s or not m for s, m in zip(flags, mask[r].tolist())]
        sequences = sequence_ids_from_specials(flags, types[r].tolist() if has_types else None)
        encoding.tokens.append(tokens)
        encoding.offsets.append([(0, 0)] * len(tokens))
        encoding.word_ids.append(word_ids_from_pieces(tokens, sequences, scheme))
        encoding.sequence_ids.append(sequences)
    return encoding


def sequence_ids_from_specials(special: Sequence[bool], types: Optional[Sequence[int]] = None) -> List[Optional[int]]:
    """Per token: None for a special token; else 0 in the first run of other tokens and 1 after it
    (with ``types``, a token type of 1 means text 1 too). ``[seq]`` in, ``[seq]`` out."""
    out: List[Optional[int]] = []
    runs, before = 0, True
    for position, is_special in enumerate(special):
        if is_special:
            before = True
            out.append(None)
            continue
        if before:
            runs, before = runs + 1, False
        from_types = types is not None and int(types[position]) > 0
        out.append(1 if runs > 1 or from_types else 0)
    return out


def word_ids_from_pieces(tokens: Sequence[str], sequence_ids: Sequence[Optional[int]], scheme: str
                         ) -> List[Optional[int]]:
    """Per token the number of its word in its text (None for special tokens), by the rule of the
    module docstring (``scheme``: ``"wordpiece"`` or ``"byte_level"``). ``[seq]`` in, ``[seq]`` out."""
    out: List[Optional[int]] = [None] * len(tokens)
    for sequence in sorted({s for s in sequence_ids if s is not None}):
        positions = [p for p, s in enumerate(sequence_ids) if s == sequence]
        pieces = [tokens[p] for p in positions]
        if scheme == BYTE_LEVEL:
            starts = byte_level_layout(pieces).starts
        else:
            starts = [k == 0 or not piece.startswith("##") for k, piece in enumerate(pieces)]
        number = -1
        for position, start in zip(positions, starts):
            number += bool(start)
            out[position] = number
    return out


def piece_scheme(tokenizer: Any) -> str:
    """``"byte_level"`` when the vocabulary's word starts are marked ``Ġ`` (RoBERTa, GPT-2), else
    ``"wordpiece"`` (continuations marked ``##``)."""
    if hasattr(tokenizer, "byte_encoder"):
        return BYTE_LEVEL
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    marked = sum(1 for token in vocab if token.startswith("Ġ"))
    continued = sum(1 for token in vocab if token.startswith("##"))
    return BYTE_LEVEL if marked > continued else WORDPIECE


# ------------------------------------------------------------------ byte-level pieces
# GPT-2's (and RoBERTa's) split of a text before BPE: contractions; letters, digits or other
# characters, each run with the space before it; white space (a run before a word leaves its last
# space to the word). Python's re has no \p{L}: a letter is a word character that is no digit or "_".
PRE_TOKENS = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


@dataclass(frozen=True)
class ByteLevelLayout:
    """The pieces of one text decoded together: the ``text``, each piece's character ``spans`` in
    it (the characters whose first byte the piece holds; a piece inside one character: that
    character) and whether each piece ``starts`` a word of :data:`PRE_TOKENS`."""

    text: str
    spans: List[Tuple[int, int]]
    starts: List[bool]


def byte_level_layout(pieces: Sequence[str]) -> ByteLevelLayout:
    """Decode byte-level BPE ``pieces`` (of one text) and find their spans and word starts."""
    raw = [piece_bytes(piece) or piece.encode("utf-8") for piece in pieces]
    data = b"".join(raw)
    characters: List[str] = []
    first_byte: List[int] = []   # per character: its first byte
    owner: List[int] = []        # per byte: its character
    index = 0
    while index < len(data):
        size = next((n for n in (1, 2, 3, 4) if _decodes(data[index:index + n])), 1)
        text = data[index:index + size].decode("utf-8", errors="replace")
        characters.append(text)
        first_byte.append(index)
        owner.extend([len(characters) - 1] * size)
        index += size
    text = "".join(characters)
    word_starts = {first_byte[m.start()] for m in PRE_TOKENS.finditer(text)}
    spans, starts, cursor = [], [], 0
    for k, piece in enumerate(raw):
        begin, end = cursor, cursor + len(piece)
        held = [c for c in range(owner[begin], owner[end - 1] + 1) if begin <= first_byte[c] < end] if piece else []
        spans.append((held[0], held[-1] + 1) if held else ((owner[begin], owner[begin] + 1) if piece else (0, 0)))
        starts.append(k == 0 or begin in word_starts)
        cursor = end
    return ByteLevelLayout(text, spans, starts)


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ------------------------------------------------------------------ offsets of a slow tokenizer
def _fold(text: str) -> Tuple[str, List[int]]:
    """``text`` lower-cased without accents, and for each of its characters the index of the
    original character it came from."""
    folded: List[str] = []
    origin: List[int] = []
    for index, character in enumerate(text):
        for part in unicodedata.normalize("NFD", character):
            if unicodedata.category(part) == "Mn":
                continue
            for lower in part.lower():
                folded.append(lower)
                origin.append(index)
    return "".join(folded), origin


def align_offsets(text: str, pieces: Sequence[Optional[str]]) -> List[Tuple[int, int]]:
    """Character spans of ``pieces`` (each its text, None for a special token) in ``text``, in
    order, ignoring case and accents. A piece not found (``[UNK]``, part of a character) gets the
    span between its neighbours' spans (white space left out); special tokens ``(0, 0)``."""
    folded, origin = _fold(text)
    spans: List[Optional[Tuple[int, int]]] = []
    cursor, missed = 0, False
    for piece in pieces:
        needle = _fold(piece)[0].strip() if piece else ""
        found = folded.find(needle, cursor) if needle else -1
        if found >= 0 and not missed and any(c.isalnum() for c in folded[cursor:found]):
            found = -1  # a piece may skip spaces and dropped characters, not words
        if found < 0:
            spans.append(None)
            missed = piece is not None or missed
            continue
        spans.append((origin[found], origin[found + len(needle) - 1] + 1))
        cursor, missed = found + len(needle), False
    return _fill_gaps(text, pieces, spans)


def _fill_gaps(text: str, pieces: Sequence[Optional[str]], spans: List[Optional[Tuple[int, int]]]
               ) -> List[Tuple[int, int]]:
    out: List[Tuple[int, int]] = []
    for position, span in enumerate(spans):
        if span is not None or pieces[position] is None:
            out.append(span or (0, 0))
            continue
        start = max([s[1] for s in spans[:position] if s is not None] or [0])
        end = min([s[0] for s in spans[position + 1:] if s is not None] or [len(text)])
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        out.append((start, end) if start < end else (0, 0))
    return out


# ------------------------------------------------------------------ tokenizers
class TransformersTokenizer:
    """A transformers tokenizer as the road calls a tokenizer: ``tokenizer(texts, pairs,
    truncation=, max_length=)`` -> an :class:`Encoding` (``[batch, seq]`` tensors, per row tokens,
    offsets, word ids, sequence ids; ``texts``; ``special_token_ids``). Every other attribute
    (``pad_token_id``, ``mask_token``, ``convert_ids_to_tokens``, ``model_max_length``, ...) is the
    wrapped tokenizer's. ``token_types``: whether the model reads token type ids (else they are
    all 0, as bert-lrp's tokenizers give them to RoBERTa and DistilBERT); None: as the tokenizer
    says (``model_input_names``). ``positions``: the most tokens the model reads, when fewer than
    the tokenizer's ``model_max_length`` (RoBERTa's positions start after its padding index)."""

    def __init__(self, tokenizer: Any, token_types: Optional[bool] = None, positions: Optional[int] = None) -> None:
        self.wrapped = tokenizer
        names = getattr(tokenizer, "model_input_names", ()) or ()
        self.token_types = "token_type_ids" in names if token_types is None else bool(token_types)
        self.scheme = None if tokenizer.is_fast else piece_scheme(tokenizer)
        self.model_max_length = int(min(tokenizer.model_max_length, positions or NO_LIMIT))

    def __getattr__(self, name: str) -> Any:
        if name == "wrapped":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return f"TransformersTokenizer({type(self.wrapped).__name__}, token_types={self.token_types})"

    def __call__(self, text: Union[str, Sequence[str]], text_pair: Union[None, str, Sequence[Optional[str]]] = None,
                 *, truncation: bool = True, max_length: Optional[int] = None, padding: Union[bool, str] = True
                 ) -> Encoding:
        texts = [text] if isinstance(text, str) else list(text)
        pairs = [text_pair] if isinstance(text_pair, str) else (list(text_pair) if text_pair is not None else None)
        if pairs is not None and len(pairs) != len(texts):
            raise TokenizerError(f"got {len(texts)} texts but {len(pairs)} pair texts")
        for number, (first, second) in enumerate(zip(texts, pairs or [None] * len(texts)), 1):
            for name, value in (("text", first), ("pair text", second)):
                if value is not None and not value.strip():
                    raise TokenizerError(f"{name} {number} is empty; there is nothing to encode")
        wrapped = self.wrapped
        options: Dict[str, Any] = dict(padding=padding, return_tensors="pt", return_attention_mask=True,
                                       return_special_tokens_mask=True, return_token_type_ids=self.token_types,
                                       verbose=False)
        limit = max_length or self.model_max_length
        if truncation and limit < NO_LIMIT:
            options.update(truncation=True, max_length=limit)
        else:  # transformers' "no limit" (10**30) is too large for its own truncation
            options.update(truncation=False)
        try:
            batch = wrapped(texts, pairs, **options) if pairs is not None else wrapped(texts, **options)
        except Exception as error:  # noqa: BLE001 -- transformers raises many kinds; one line names it
            raise TokenizerError(f"the {type(wrapped).__name__} failed: {' '.join(str(error).split())[:300]}") from None
        encoding = as_encoding(batch, wrapped)
        if not self.token_types:
            encoding["token_type_ids"] = torch.zeros_like(encoding["input_ids"])
        encoding.texts = list(zip(texts, pairs or [None] * len(texts)))
        encoding.special_token_ids = {name: int(value) for name, value in (
            ("pad", getattr(wrapped, "pad_token_id", None)), ("mask", getattr(wrapped, "mask_token_id", None)),
            ("unk", getattr(wrapped, "unk_token_id", None))) if value is not None}
        if not wrapped.is_fast:
            self._align(encoding)
        return encoding

    def _align(self, encoding: Encoding) -> None:
        """A slow tokenizer's offsets: each piece found in its text (:func:`align_offsets`)."""
        for r, (text, pair) in enumerate(encoding.texts):
            tokens, sequences = encoding.tokens[r], encoding.sequence_ids[r]
            offsets = [(0, 0)] * len(tokens)
            for sequence, source in ((0, text), (1, pair)):
                positions = [p for p, s in enumerate(sequences) if s == sequence]
                if source is None or not positions:
                    continue
                pieces = [tokens[p] for p in positions]
                spans = _byte_level_offsets(source, pieces) if self.scheme == BYTE_LEVEL else None
                if spans is None:
                    spans = align_offsets(source, [_piece_alone(piece, self.scheme) for piece in pieces])
                for p, span in zip(positions, spans):
                    offsets[p] = span
            encoding.offsets[r] = offsets


def _byte_level_offsets(source: str, pieces: Sequence[str]) -> Optional[List[Tuple[int, int]]]:
    """Byte-level pieces' spans in ``source``, spaces at either end left out (as a fast tokenizer's
    ``trim_offsets``); None when the decoded pieces are not ``source`` (or ``" " + source``, the
    space a tokenizer with ``add_prefix_space`` adds)."""
    layout = byte_level_layout(pieces)
    if layout.text == source:
        shift = 0
    elif layout.text == " " + source:
        shift = -1
    else:
        return None
    spans = []
    for start, end in layout.spans:
        while start < end and layout.text[start] == " ":
            start += 1
        while end > start and layout.text[end - 1] == " ":
            end -= 1
        spans.append((max(start + shift, 0), max(end + shift, 0)))
    return spans


def _piece_alone(piece: str, scheme: Optional[str]) -> Optional[str]:
    """One piece's own text: ``##`` dropped (WordPiece), bytes decoded (byte-level; a piece that
    ends inside a character keeps its whole characters)."""
    if scheme == BYTE_LEVEL:
        raw = piece_bytes(piece)
        return piece if raw is None else raw.decode("utf-8", errors="ignore")
    return piece[2:] if piece.startswith("##") else piece


def _wrapped(tokenizer: Any) -> Any:
    return tokenizer.wrapped if isinstance(tokenizer, TransformersTokenizer) else tokenizer


NO_TOKEN_TYPES = ("roberta", "distilbert")  # families whose inputs carry no token types (all 0)


def model_reads_token_types(model: Any) -> bool:
    """Whether ``model`` reads token type ids, as bert-lrp's tokenizers give them: BERT and
    ELECTRA with more than one type do; RoBERTa and DistilBERT get zeros."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) in NO_TOKEN_TYPES:
        return False
    return int(getattr(config, "type_vocab_size", 0) or 0) > 1


def model_positions(model: Any) -> Optional[int]:
    """The most tokens ``model`` reads: RoBERTa's positions start after its padding index (514
    positions read 512 tokens, as bert-lrp's RoBERTa tokenizer counts); None: as many as it has."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "roberta" or not getattr(config, "max_position_embeddings", None):
        return None
    padding = getattr(config, "pad_token_id", None)
    return int(config.max_position_embeddings) - (1 if padding is None else int(padding)) - 1


def tokenizer_for_road(tokenizer: Any, model: Any = None) -> Any:
    """The tokenizer the road calls: a transformers tokenizer wrapped in a
    :class:`TransformersTokenizer` (token types when ``model`` reads them, at most the tokens it
    reads; without ``model``, as the tokenizer says); bert-lrp's own tokenizers, and anything
    already wrapped, as they are."""
    if isinstance(tokenizer, (BertTokenizer, TransformersTokenizer)) or not is_transformers_tokenizer(tokenizer):
        return tokenizer
    if model is None:
        return TransformersTokenizer(tokenizer)
    return TransformersTokenizer(tokenizer, model_reads_token_types(model), model_positions(model))


__all__ = ["TransformersTokenizer", "as_encoding", "tokenizer_for_road", "is_transformers_batch",
           "is_transformers_tokenizer", "word_ids_from_pieces", "sequence_ids_from_specials", "byte_level_layout",
           "align_offsets"]
