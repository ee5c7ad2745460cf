"""Tokenization with the ``tokenizers`` library (WordPiece for BERT, DistilBERT, ELECTRA; byte-level
BPE for RoBERTa); returns model-ready tensors, offsets and word ids."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, WordPiece

from ..errors import BertLrpError

TextInput = Union[str, Sequence[str]]


class TokenizerError(BertLrpError, ValueError):
    """A text cannot be tokenized as asked (empty text, too long, bad vocabulary file)."""


class Encoding(dict):
    """A dict of model inputs (``input_ids``, ``token_type_ids``, ``attention_mask``: ``[batch, seq]``
    long tensors), so ``model(**encoding)`` works; per text also ``tokens``, ``offsets`` (character
    spans into the original text, ``(0, 0)`` for special and padding tokens), ``word_ids``
    (index of the word each token belongs to, None for special/padding) and ``sequence_ids``
    (0 or 1 for the two texts of a pair, None for special/padding)."""

    tokens: List[List[str]]
    offsets: List[List[Tuple[int, int]]]
    word_ids: List[List[Optional[int]]]
    sequence_ids: List[List[Optional[int]]]
    texts: List[Tuple[str, Optional[str]]]
    special_token_ids: Dict[str, int]  # the tokenizer's "pad", "mask" and "unk" ids


class BertTokenizer:
    """BERT's WordPiece tokenizer, built from ``vocab.txt`` or read from ``tokenizer.json``.

    ``return_token_type_ids=False`` (DistilBERT, RoBERTa: no token types) makes ``token_type_ids``
    all 0, pairs included; the key stays so every caller can pass it on (those models accept zeros).
    """

    cls_token, sep_token, pad_token, unk_token, mask_token = "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"

    def __init__(self, tokenizer: Tokenizer, do_lower_case: bool, model_max_length: int = 512,
                 return_token_type_ids: bool = True) -> None:
        self._tokenizer = tokenizer
        self.do_lower_case = do_lower_case
        self.model_max_length = model_max_length
        self.return_token_type_ids = return_token_type_ids
        vocab = tokenizer.get_vocab()
        names = (self.cls_token, self.sep_token, self.pad_token, self.unk_token, self.mask_token)
        missing = [t for t in names if t not in vocab]
        if missing:
            raise TokenizerError(f"vocabulary lacks the special tokens {', '.join(missing)}")
        self.cls_token_id, self.sep_token_id = vocab[self.cls_token], vocab[self.sep_token]
        self.pad_token_id, self.unk_token_id = vocab[self.pad_token], vocab[self.unk_token]
        self.mask_token_id = vocab[self.mask_token]

    # ---------------------------------------------------------------- building
    @classmethod
    def from_vocab(cls, vocab_file: str | os.PathLike, do_lower_case: bool = True,
                   model_max_length: int = 512) -> "BertTokenizer":
        vocab = _read_vocab(vocab_file)
        missing = [t for t in (cls.cls_token, cls.sep_token, cls.pad_token, cls.unk_token, cls.mask_token)
                   if t not in vocab]
        if missing:
            raise TokenizerError(f"{vocab_file}: the vocabulary lacks the special token(s) {', '.join(missing)}")
        model = WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100)
        tokenizer = Tokenizer(model)
        tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                          strip_accents=None, lowercase=do_lower_case)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        tokenizer.decoder = decoders.WordPiece(prefix="##")
        # "[MASK]" typed into a text is the mask token, as in transformers
        tokenizer.add_special_tokens([t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in vocab])
        return cls(tokenizer, do_lower_case, model_max_length)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, do_lower_case: Optional[bool] = None,
                        model_max_length: Optional[int] = None) -> "BertTokenizer":
        """Read ``tokenizer.json`` if present, else ``vocab.txt``; lower-casing from
        ``tokenizer_config.json``/``config.json`` (``do_lower_case``), else guessed from the vocabulary."""
        from .checkpoint import resolve_pretrained

        directory = resolve_pretrained(directory)
        settings = _read_settings(directory)
        types = settings.get("model_type") != "distilbert"  # DistilBERT has no token types
        lower = do_lower_case if do_lower_case is not None else settings.get("do_lower_case")
        max_length = int(model_max_length or min(settings.get("model_max_length") or 512,
                                                 settings.get("max_position_embeddings") or 512))
        vocab_path = os.path.join(directory, "vocab.txt")
        json_path = os.path.join(directory, "tokenizer.json")
        if os.path.isfile(vocab_path):
            if lower is None:
                lower = _looks_uncased(_read_vocab(vocab_path))
            tokenizer = _named(vocab_path, lambda: cls.from_vocab(vocab_path, lower, max_length))
            tokenizer.return_token_type_ids = types
            return tokenizer
        if os.path.isfile(json_path):
            tokenizer = _load_json_tokenizer(json_path)
            if lower is None:
                lower = _looks_uncased(tokenizer.get_vocab())
            return _named(json_path, lambda: cls(tokenizer, bool(lower), max_length, return_token_type_ids=types))
        raise TokenizerError(f"no vocab.txt or tokenizer.json in {directory}")

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        from .._io import atomic_write_text

        os.makedirs(directory, exist_ok=True)
        vocab = sorted(self._tokenizer.get_vocab().items(), key=lambda item: item[1])
        atomic_write_text(os.path.join(directory, "vocab.txt"), "".join(token + "\n" for token, _ in vocab))
        atomic_write_text(os.path.join(directory, "tokenizer_config.json"), json.dumps(
            {"do_lower_case": self.do_lower_case, "model_max_length": self.model_max_length,
             "tokenizer_class": "BertTokenizer"}, indent=2) + "\n")

    # ------------------------------------------------------------------ basics
    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def get_vocab(self) -> Dict[str, int]:
        return self._tokenizer.get_vocab()

    def tokenize(self, text: str) -> List[str]:
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> List[int]:
        return [self._tokenizer.token_to_id(t) if self._tokenizer.token_to_id(t) is not None else self.unk_token_id
                for t in tokens]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> List[str]:
        return [self._tokenizer.id_to_token(int(i)) or self.unk_token for i in ids]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    # --------------------------------------------------------------- encoding
    def __call__(self, text: TextInput, text_pair: Optional[TextInput] = None, *, padding: Union[bool, str] = True,
                 truncation: bool = True, max_length: Optional[int] = None,
                 pad_to_multiple_of: Optional[int] = None, is_split_into_words: bool = False) -> Encoding:
        """Encode one text or a batch (optionally with pairs) into ``[batch, seq]`` tensors.

        ``padding``: True/"longest" pads to the longest text, "max_length" to ``max_length``,
        False requires equal lengths. ``truncation`` cuts the longer text of a pair first.
        ``is_split_into_words``: each text is a list of words (as in CoNLL data).
        """
        texts = _as_batch(text, is_split_into_words)
        pairs = _as_batch(text_pair, is_split_into_words) if text_pair is not None else [None] * len(texts)
        if len(pairs) != len(texts):
            raise TokenizerError(f"got {len(texts)} texts but {len(pairs)} pair texts")
        for index, (a, b) in enumerate(zip(texts, pairs)):
            for name, value in (("text", a), ("pair text", b)):
                if value is not None and not (" ".join(value) if is_split_into_words else value).strip():
                    raise TokenizerError(f"{name} {index} is empty; there is nothing to encode")
        limit = max_length or self.model_max_length
        encodings = [self._encode_one(a, b, limit, truncation, is_split_into_words, i)
                     for i, (a, b) in enumerate(zip(texts, pairs))]
        return self._collate(encodings, texts, pairs, padding, limit, pad_to_multiple_of)

    def _encode_one(self, a, b, limit: int, truncation: bool, split: bool, index: int):
        encoding = self._tokenizer.encode(a, b, is_pretokenized=split, add_special_tokens=True)
        if len(encoding.ids) <= limit:
            return encoding
        if not truncation:
            raise TokenizerError(f"text {index} has {len(encoding.ids)} tokens, more than max_length {limit}; "
                                 "pass truncation=True or a larger max_length")
        first = self._tokenizer.encode(a, is_pretokenized=split, add_special_tokens=False)
        second = self._tokenizer.encode(b, is_pretokenized=split, add_special_tokens=False) if b is not None else None
        budget = limit - self._tokenizer.num_special_tokens_to_add(second is not None)
        if budget < 1:
            raise TokenizerError(f"max_length {limit} leaves no room for text {index}")
        first_len, second_len = len(first.ids), len(second.ids) if second is not None else 0
        first_was_longer = first_len > second_len
        while first_len + second_len > budget:  # longest-first, ties as transformers breaks them
            if first_len > second_len or (first_len == second_len and not first_was_longer):
                first_len -= 1
            else:
                second_len -= 1
        first.truncate(first_len)
        if second is not None:
            second.truncate(second_len)
        return self._tokenizer.post_process(first, second, add_special_tokens=True)

    def _collate(self, encodings, texts, pairs, padding, limit, multiple) -> Encoding:
        lengths = [len(e.ids) for e in encodings]
        if padding == "max_length":
            width = limit
        elif padding in (True, "longest"):
            width = max(lengths)
        elif padding in (False, "do_not_pad"):
            if len(set(lengths)) > 1:
                raise TokenizerError(f"texts have different lengths {sorted(set(lengths))}; pass padding=True")
            width = lengths[0]
        else:
            raise TokenizerError(f"unknown padding {padding!r}: use True, 'longest', 'max_length' or False")
        if multiple:
            width = -(-width // multiple) * multiple
        batch = len(encodings)
        ids = torch.full((batch, width), self.pad_token_id, dtype=torch.long)
        types = torch.zeros((batch, width), dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        result = Encoding()
        result.tokens, result.offsets, result.word_ids, result.sequence_ids = [], [], [], []
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = torch.tensor(encoding.ids, dtype=torch.long)
            types[row, :n] = torch.tensor(encoding.type_ids, dtype=torch.long)
            mask[row, :n] = 1
            pad = width - n
            special = encoding.special_tokens_mask
            result.tokens.append(list(encoding.tokens) + [self.pad_token] * pad)
            result.offsets.append([(0, 0) if s else tuple(o) for o, s in zip(encoding.offsets, special)] + [(0, 0)] * pad)
            result.word_ids.append([None if s else w for w, s in zip(encoding.word_ids, special)] + [None] * pad)
            result.sequence_ids.append([None if s else q for q, s in zip(encoding.sequence_ids, special)] + [None] * pad)
        if not self.return_token_type_ids:  # a family without token types: all type 0 (pairs too)
            types.zero_()
        result["input_ids"], result["token_type_ids"], result["attention_mask"] = ids, types, mask
        result.texts = list(zip(texts, pairs))
        result.special_token_ids = {"pad": self.pad_token_id, "mask": self.mask_token_id, "unk": self.unk_token_id}
        return result


class RobertaTokenizer(BertTokenizer):
    """RoBERTa's byte-level BPE tokenizer, from ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``.

    ``<s> A </s>`` and ``<s> A </s></s> B </s>``; ``token_type_ids`` all 0 (as transformers'). A word's
    pieces carry its leading space (``Ġ``), which offsets leave out (``trim_offsets``), so word-level
    views merge ``Ġwor`` + ``ld`` into ``world``.
    """

    cls_token, sep_token, pad_token, unk_token, mask_token = "<s>", "</s>", "<pad>", "<unk>", "<mask>"

    def __init__(self, tokenizer: Tokenizer, model_max_length: int = 512) -> None:
        super().__init__(tokenizer, do_lower_case=False, model_max_length=model_max_length,
                         return_token_type_ids=False)

    @classmethod
    def from_files(cls, vocab_file: str | os.PathLike, merges_file: str | os.PathLike, model_max_length: int = 512,
                   add_prefix_space: bool = False, trim_offsets: bool = True) -> "RobertaTokenizer":
        """Build from ``vocab.json`` and ``merges.txt`` as transformers' RobertaTokenizer does."""
        for path in (vocab_file, merges_file):
            if not os.path.isfile(path):
                raise TokenizerError(f"vocabulary file not found: {path}")
        try:
            model = BPE.from_file(os.fspath(vocab_file), os.fspath(merges_file))
        except Exception as error:
            raise TokenizerError(f"cannot read BPE files {vocab_file}, {merges_file}: {error}") from None
        tokenizer = Tokenizer(model)
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
        tokenizer.decoder = decoders.ByteLevel()
        vocab = tokenizer.get_vocab()
        for token in (cls.cls_token, cls.sep_token):
            if token not in vocab:
                raise TokenizerError(f"{vocab_file} lacks the special token {token}")
        tokenizer.post_processor = processors.RobertaProcessing(  # positional: sep, cls
            (cls.sep_token, vocab[cls.sep_token]), (cls.cls_token, vocab[cls.cls_token]),
            trim_offsets=trim_offsets, add_prefix_space=add_prefix_space)
        tokenizer.add_special_tokens([cls.cls_token, cls.pad_token, cls.sep_token, cls.unk_token,
                                      AddedToken(cls.mask_token, lstrip=True, special=True)])
        return cls(tokenizer, model_max_length)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, model_max_length: Optional[int] = None,
                        **unused) -> "RobertaTokenizer":
        """Read ``tokenizer.json`` if present, else ``vocab.json`` + ``merges.txt``."""
        from .checkpoint import resolve_pretrained

        directory = resolve_pretrained(directory)
        settings = _read_settings(directory)
        limit = min(settings.get("model_max_length") or 512, (settings.get("max_position_embeddings") or 514) - 2)
        max_length = int(model_max_length or limit)
        json_path = os.path.join(directory, "tokenizer.json")
        if os.path.isfile(json_path):
            tokenizer = _load_json_tokenizer(json_path)
            return _named(json_path, lambda: cls(tokenizer, max_length))
        vocab, merges = os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt")
        if os.path.isfile(vocab) and os.path.isfile(merges):
            return cls.from_files(vocab, merges, max_length, add_prefix_space=bool(settings.get("add_prefix_space")),
                                  trim_offsets=settings.get("trim_offsets", True))
        raise TokenizerError(f"no tokenizer.json or vocab.json + merges.txt in {directory}")

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        from .._io import atomic_write, atomic_write_text

        os.makedirs(directory, exist_ok=True)
        atomic_write(os.path.join(directory, "tokenizer.json"), lambda path: self._tokenizer.save(path))
        atomic_write_text(os.path.join(directory, "tokenizer_config.json"), json.dumps(
            {"model_max_length": self.model_max_length, "tokenizer_class": "RobertaTokenizer"}, indent=2) + "\n")


def _as_batch(text: Optional[TextInput], split: bool) -> list:
    if text is None:
        raise TokenizerError("no text given")
    if isinstance(text, str):
        return [text]
    items = list(text)
    if split and items and all(isinstance(t, str) for t in items):
        return [items]  # one pre-split text
    if not items:
        raise TokenizerError("the list of texts is empty")
    for index, item in enumerate(items):
        if split and not isinstance(item, (list, tuple)):
            raise TokenizerError(f"text {index} must be a list of words when is_split_into_words=True")
        if not split and not isinstance(item, str):
            raise TokenizerError(f"text {index} is a {type(item).__name__}, expected str")
    return items


def _read_vocab(path: str | os.PathLike) -> Dict[str, int]:
    try:
        with open(path, encoding="utf-8") as handle:
            tokens = [line.rstrip("\n").rstrip("\r") for line in handle]
    except FileNotFoundError:
        raise TokenizerError(f"vocabulary file not found: {path}") from None
    if not tokens:
        raise TokenizerError(f"vocabulary file {path} is empty")
    vocab: Dict[str, int] = {}
    for index, token in enumerate(tokens):
        vocab.setdefault(token, index)
    return vocab


def _looks_uncased(vocab: Dict[str, int]) -> bool:
    words = [t for t in vocab if t.isalpha() and not t.startswith("[")]
    return not any(t[0].isupper() for t in words[:5000])


def _read_settings(directory: str) -> dict:
    """The tokenizer settings of ``config.json`` and ``tokenizer_config.json`` (the latter wins),
    checked: each file a JSON object, ``model_max_length`` a positive integer (transformers'
    huge "no limit" value included), ``do_lower_case`` true or false; else a
    :class:`TokenizerError` naming the file and the field."""
    settings: dict = {}
    for name in ("config.json", "tokenizer_config.json"):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                values = json.load(handle)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise TokenizerError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(values, dict):
            raise TokenizerError(f"{path}: must hold a JSON object, found {type(values).__name__}")
        if name == "tokenizer_config.json":
            _check_settings(path, values)
        settings.update({k: v for k, v in values.items() if v is not None})
    return settings


def _check_settings(path: str, values: dict) -> None:
    length = values.get("model_max_length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
        raise TokenizerError(f"{path}: model_max_length must be a positive integer, got {length!r}")
    lower = values.get("do_lower_case")
    if lower is not None and not isinstance(lower, bool):
        raise TokenizerError(f"{path}: do_lower_case must be true or false, got {lower!r}")


def _load_json_tokenizer(path: str) -> Tokenizer:
    """``tokenizer.json`` through the tokenizers library; its errors name the file."""
    try:
        tokenizer = Tokenizer.from_file(path)
    except Exception as error:  # noqa: BLE001 -- the library raises its own Exception types
        message = " ".join(str(error).split())[:200]
        raise TokenizerError(f"{path}: not a tokenizer file the tokenizers library reads ({message})") from None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _named(path: str, build):
    """``build()``, with a :class:`TokenizerError` (e.g. a missing special token) naming ``path``."""
    try:
        return build()
    except TokenizerError as error:
        text = str(error)
        raise TokenizerError(text if text.startswith(path) else f"{path}: {text}") from None
