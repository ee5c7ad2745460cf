"""The one road from texts to explanations. The Python API (:func:`explain_texts`), ``bert-lrp
explain`` (terminal, ``--json``, ``--html``, ``--jsonl``), ``evaluate``, ``inspect``, the layer
ablation and the explorer all take it; nothing else tokenises, batches or windows a user's text
(``tests/test_architecture.py`` lists the modules that may call a tokenizer, and why). Code that
runs the model itself (predictions, hidden states) gets the road's tokens and batches from
:func:`encoded_batches`.

1. **Inputs**: :class:`TextInput` (a text, an optional second text of a pair, where it came from);
   :func:`bert_lrp.data.read_inputs` reads files (lines or a table's rows), ``-`` (stdin) and
   arguments, strictly as UTF-8 (re-exported here).
2. **Request**: :class:`Request` holds the methods, the target, every method option (checked by
   the registry), the word of a token classifier, batching and windows; :func:`prepare` checks it
   against the model once.
3. **Tokens**: each text is tokenised once, whole (word ids and sequence ids included).
4. **Batches**: inputs are taken in chunks of ``chunk_batches x batch_size`` (in input order);
   inside a chunk they are sorted by length into batches of at most ``batch_size`` texts and,
   when ``batch_tokens`` is set, at most that many padded tokens. Batches depend on the input
   only, never on what a resumed run skips, and every method gives the same scores in any batch.
5. **Windows**: a sequence classifier's text longer than the model's positions is explained in
   overlapping windows over its first text (:mod:`bert_lrp.attribution.windows`); the second
   text of a pair and the special tokens are in every window. Word ids and every option go
   through. A text that fits is never windowed; a token classifier's text is cut, with a warning.
6. **Records**: :meth:`~bert_lrp.attribution.records.TextExplanation.record` is the one JSON
   record of an explanation (:mod:`bert_lrp.attribution.records`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..data import TextInput, parse_texts, read_inputs  # noqa: F401  (re-exported: the road's inputs)
from ..errors import RequestError, UsageError
from . import registry
from .explain import Explanation, explain
from .records import ALL, FailedText, LabelScores, TextExplanation
from .targets import task_of
from .transformers_inputs import tokenizer_for_road
from .windows import window_positions
from .words import merge_word_pieces

DEFAULT_METHODS: Tuple[str, ...] = ("lrp", "gradient_x_input", "gradient")
Warn = Callable[[str], None]


# ------------------------------------------------------------------ inputs
# TextInput and the readers of files, stdin and arguments live in bert_lrp.data (re-exported here)
TextLike = Union[str, Tuple[str, Optional[str]], TextInput]


def as_inputs(texts: Union[TextLike, Iterable[TextLike]],
              pairs: Union[None, str, Iterable[Optional[str]]] = None) -> List[TextInput]:
    """The texts of the Python API as TextInputs, numbered from 1 (``"text 2"``) in messages.

    ``texts``: one string or TextInput (one text), or any iterable (list, generator) of strings,
    ``(text, pair)`` tuples (exactly two items; the pair may be None) and TextInputs. ``pairs``:
    one string (the pair of the one text) or an iterable with one pair (or None) per text.
    A value of the wrong kind raises a ``TypeError`` naming the argument and the text; a wrong
    number of pairs, or a pair given twice, a :class:`RequestError` on field ``pairs``."""
    items = [texts] if isinstance(texts, TextInput) else _as_list(texts, "texts")
    given = None if pairs is None else _as_list(pairs, "pairs")
    if given is not None and len(given) != len(items):
        raise RequestError("pairs", f"got {len(items)} texts but {len(given)} pair texts; give one pair "
                                    "(or None) per text")
    out = []
    for number, item in enumerate(items, 1):
        if isinstance(item, TextInput):
            found = item if item.source else replace(item, source=f"text {number}")
        elif isinstance(item, tuple):
            if len(item) != 2:
                raise TypeError(f"texts: text {number} is a tuple of {len(item)} item{'s' * (len(item) != 1)}; "
                                "a tuple must be (text, pair)")
            found = TextInput(item[0], item[1], f"text {number}")
        elif isinstance(item, str):
            found = TextInput(item, None, f"text {number}")
        else:
            raise TypeError(f"texts: text {number} is {_a(item)}; give a string, a (text, pair) tuple or a TextInput")
        if not isinstance(found.text, str):
            raise TypeError(f"texts: text {number} is {_a(found.text)}, not a string")
        if found.pair is not None and not isinstance(found.pair, str):
            raise TypeError(f"texts: the pair of text {number} is {_a(found.pair)}, not a string")
        pair = None if given is None else given[number - 1]
        if pair is not None:
            if not isinstance(pair, str):
                raise TypeError(f"pairs: the pair of text {number} is {_a(pair)}, not a string")
            if found.pair is not None:
                raise RequestError("pairs", f"text {number} has a pair already; give each pair once")
            found = replace(found, pair=pair)
        out.append(found)
    return out


def _as_list(value: Any, name: str) -> list:
    """One string -> a list of it; any other iterable -> its items; anything else a TypeError."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{name}: bytes, not text; decode them first (e.g. .decode('utf-8'))")
    if isinstance(value, Mapping):
        raise TypeError(f"{name}: {_a(value)} is no list of texts; give a string or an iterable of them")
    try:
        return list(value)
    except TypeError:
        raise TypeError(f"{name}: expected a string or an iterable of texts, got {_a(value)}") from None


def _a(value: Any) -> str:
    """``"an int (3)"``: a value's kind for a message, with the start of its repr."""
    name = type(value).__name__
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:39] + "…"
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name} ({shown})"


def _check_target(target: Any) -> None:
    """A bool is no label (``True`` would silently mean label 1)."""
    if isinstance(target, bool):
        raise TypeError(f"target: {target} is a bool, not a label; give a label name, a label id (0, 1, ...), "
                        "None (the predicted label) or 'all'")


# ------------------------------------------------------------------ the request
@dataclass
class Request:
    """How to explain: the same on every road.

    ``target``: None (the predicted label), a label name or id, or ``"all"`` (every label from
    one pass). ``options``: method options by name (``rule``, ``ig_steps``, ``shap_samples``,
    ...; see the registry). ``word`` / ``token_index``: which word a token classifier explains.
    ``windows``: explain long texts in windows (else cut them); ``stride``/``window``: window
    step and size in pieces (defaults: half a window, the model's positions). ``layers``:
    per-layer relevance; ``attentions``: each text's attention probabilities;
    ``hidden_relevance``: relevance per hidden unit in the records."""

    methods: Sequence[str] = DEFAULT_METHODS
    target: Any = None
    options: Dict[str, Any] = field(default_factory=dict)
    word: Optional[str] = None
    token_index: Optional[int] = None
    batch_size: int = 8
    batch_tokens: Optional[int] = None
    windows: bool = True
    stride: Optional[int] = None
    window: Optional[int] = None
    layers: bool = False
    attentions: bool = False
    hidden_relevance: bool = False
    progress: bool = False
    chunk_batches: int = 16
    targets_per_example: bool = False  # the caller gives each text's target (evaluation of a token classifier)

    def settings(self) -> Dict[str, Any]:
        """What changes the results, JSON-ready: methods, target, the options the methods read
        (defaults filled), the word, windows."""
        methods = registry.canonical(self.methods)
        given = registry.check_options(dict(self.options))
        options = {}
        for name in methods:
            for key, value in registry.method_options(registry.get(name), given).items():
                options[key] = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
        return {"methods": methods, "target": self.target, "options": options, "word": self.word,
                "token_index": self.token_index, "windows": self.windows, "stride": self.stride,
                "window": self.window, "hidden_relevance": self.hidden_relevance}


@dataclass
class Prepared:
    """A request checked against a model: canonical methods, checked options, the target as the
    model knows it, the task, the label names and the longest sequence the model reads."""

    request: Request
    methods: List[str]
    options: Dict[str, Any]
    target: Any
    task: str
    labels: Dict[int, str]
    limit: int
    pad_id: int
    pad_token: str


def prepare(model, tokenizer, request: Request) -> Prepared:
    """Check ``request`` against ``model`` (one-line :class:`UsageError` naming the option)."""
    try:
        methods = registry.canonical(request.methods)
    except ValueError as error:
        raise UsageError(f"--methods: {error}") from None
    if not methods:
        raise UsageError("--methods is empty")
    options = registry.check_options(dict(request.options))
    task = task_of(model)
    if task == "masked_lm":
        raise UsageError("explaining texts needs a sequence or token classifier; for a masked LM use "
                         "explain() with target=(position, token id) or bert-lrp inspect mask")
    if task == "token" and request.token_index is None and request.word is None and not request.targets_per_example:
        raise UsageError("this is a token-classification model: choose the word with --word W or --token-index I")
    if task != "token" and (request.token_index is not None or request.word is not None):
        raise UsageError("--word/--token-index need a token-classification model")
    if request.token_index is not None and request.word is not None:
        raise UsageError("give either --word or --token-index, not both")
    if request.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {request.batch_size}")
    for name, value in (("--stride", request.stride), ("window", request.window), ("--batch-tokens", request.batch_tokens)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    limit = model_limit(model, tokenizer)
    window = min(request.window or limit, limit - 2)  # [CLS] and [SEP] (<s>, </s>) frame every window
    if request.stride is not None and request.stride > window:
        raise UsageError(f"--stride {request.stride} is larger than the window ({window} pieces): pieces between "
                         "windows would be left out")
    return Prepared(request, methods, options, parse_target(model, request.target), task,
                    model.config.labels_by_id(), limit, int(tokenizer.pad_token_id), str(tokenizer.pad_token))


def parse_target(model, target: Any) -> Any:
    """None, ``"all"``, a label name of the model, or a label id (text or int) -> None, ``"all"`` or an id."""
    if target is None or target == ALL:
        return target
    labels = model.config.label2id
    if isinstance(target, str) and target in labels:
        return int(labels[target])
    try:
        value = int(target)
    except (TypeError, ValueError):
        raise UsageError(f"unknown --target {target!r}; the model's labels are {', '.join(labels)}") from None
    if not 0 <= value < model.config.num_labels:
        raise UsageError(f"--target {value} is outside 0..{model.config.num_labels - 1}")
    return value


# ------------------------------------------------------------------ the road
def explain_texts(model, tokenizer, texts: Iterable[Union[str, Tuple[str, Optional[str]], TextInput]],
                  request: Optional[Request] = None, pairs: Optional[Sequence[Optional[str]]] = None,
                  warn: Optional[Warn] = None, **settings: Any) -> List[TextExplanation]:
    """Explain every text (see the module docstring); ``settings`` are :class:`Request` fields
    (``methods``, ``target``, ``options``, ``word``, ...) when no ``request`` is given, and
    method options (``ig_steps=20``) otherwise unknown to Request. ``texts`` and ``pairs``: see
    :func:`as_inputs` (one string is one text). ``tokenizer``: bert-lrp's or a transformers
    tokenizer (fast or slow). Returns one :class:`TextExplanation` per text, in input order."""
    request = request or _request_from(settings)
    _check_target(request.target)
    inputs = as_inputs(texts, pairs)
    tokenizer = tokenizer_for_road(tokenizer, model)
    return [explained for _, explained in stream_texts(model, tokenizer, inputs, request, warn=warn)]


def json_payload(model_name: str, request: Request, explained: Sequence[TextExplanation]) -> Dict[str, Any]:
    """The JSON document of ``bert-lrp explain --json`` (and the explorer's ``/api/explain``):
    ``{"model": model_name, "settings": request.settings(), "examples": [record per text]}``,
    records as :meth:`TextExplanation.record` writes them (``hidden_relevance`` as the request
    asks; no per-layer scores or attention, which only the HTML views draw)."""
    return {"model": model_name, "settings": request.settings(),
            "examples": [item.record(hidden_relevance=request.hidden_relevance) for item in explained]}


def explain_windows(model, tokenizer, text: str, methods: Sequence[str] = ("lrp",), target=None,
                    stride: Optional[int] = None, window: Optional[int] = None, batch_size: int = 8,
                    pair: Optional[str] = None, **options):
    """Explain one ``text`` whatever its length, in windows when it does not fit (the road's
    :func:`~bert_lrp.attribution.road.explain_texts` for one text). ``options`` are method
    options (``rule``, ``ig_steps``, ``seed``, ...). Returns a
    :class:`~bert_lrp.attribution.road.TextExplanation`."""
    request = Request(methods=list(methods), target=target, options=options, stride=stride, window=window,
                      batch_size=batch_size)
    return explain_texts(model, tokenizer, [(text, pair)], request)[0]


def _request_from(settings: Dict[str, Any]) -> Request:
    fields = set(Request.__dataclass_fields__)
    options = dict(settings.pop("options", None) or {})
    options.update({k: settings.pop(k) for k in list(settings) if k not in fields})
    if "methods" in settings and isinstance(settings["methods"], str):
        settings["methods"] = [m for m in settings["methods"].split(",") if m.strip()]
    return Request(options=options, **settings)


def stream_texts(model, tokenizer, inputs: Sequence[TextInput], request: Request, skip: Iterable[int] = (),
                 warn: Optional[Warn] = None, only: Optional[Sequence[int]] = None, go_on: bool = False
                 ) -> Iterator[Tuple[int, Union[TextExplanation, FailedText]]]:
    """``(index, explanation)`` for every input not in ``skip``, in input order (``only``: the
    indices this process owns, e.g. one rank's share; default all). ``go_on``: a text that cannot
    be explained becomes a :class:`FailedText` saying why (with a warning) and the others go on;
    otherwise its error is raised. ``tokenizer``: bert-lrp's or a transformers tokenizer."""
    _check_target(request.target)
    tokenizer = tokenizer_for_road(tokenizer, model)
    for chunk in stream_chunks(model, tokenizer, inputs, request, skip, warn, only, go_on):
        yield from chunk


def stream_chunks(model, tokenizer, inputs: Sequence[TextInput], request: Request, skip: Iterable[int] = (),
                  warn: Optional[Warn] = None, only: Optional[Sequence[int]] = None, go_on: bool = False
                  ) -> Iterator[List[Tuple[int, Union[TextExplanation, FailedText]]]]:
    """As :func:`stream_texts`, one list per chunk of inputs (a writer flushes after each)."""
    tokenizer = tokenizer_for_road(tokenizer, model)
    prepared = prepare(model, tokenizer, request)
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    skip = set(skip)
    owned = list(range(len(inputs))) if only is None else list(only)
    chunk_size = request.batch_size * request.chunk_batches
    for first in range(0, len(owned), chunk_size):
        chunk = owned[first:first + chunk_size]
        if all(i in skip for i in chunk):
            continue
        done: Dict[int, Union[TextExplanation, FailedText]] = {}

        def attempt(indices: List[int], work: Callable[[], List[Any]]) -> None:
            """Run ``work`` for ``indices``; with ``go_on``, a failure is retried text by text
            (alone it may fit) and a text that fails alone becomes a FailedText."""
            if not go_on:
                for i, result in zip(indices, work()):
                    done[i] = result
                return
            try:
                for i, result in zip(indices, work()):
                    done[i] = result
            except Exception as error:  # noqa: BLE001 -- one text must not end a data set's run
                if len(indices) > 1:
                    for i in indices:
                        if i not in skip:
                            attempt([i], lambda i=i: solo[i]())
                    return
                done[indices[0]] = _failed(inputs[indices[0]], indices[0], error, warn)

        whole: Dict[int, Any] = {}  # every input of the chunk, skipped ones too: batches depend on the input only
        for i in chunk:
            try:
                whole[i] = _encode(tokenizer, inputs[i])
            except Exception as error:  # noqa: BLE001
                if not go_on:
                    raise
                if i not in skip:
                    done[i] = _failed(inputs[i], i, error, warn)
        short: List[int] = []
        for i in whole:
            length = len(whole[i].tokens[0])
            if length <= prepared.limit and not _needs_windows(prepared, whole[i]):
                short.append(i)
            elif prepared.task == "sequence" and request.windows and _windowable(prepared, whole[i]):
                if i not in skip:
                    attempt([i], lambda i=i: [_explain_windowed(model, prepared, inputs[i], i, whole[i], warn)])
            else:
                short.append(i)
        short.sort(key=lambda i: len(whole[i].tokens[0]))
        lengths = {i: min(len(whole[i].tokens[0]), prepared.limit) for i in short}
        rows: Dict[int, Any] = {}
        solo = {i: (lambda i=i: _explain_batch(model, prepared, inputs, [i], [rows[i]])) for i in short}
        for batch in length_batches(short, lengths, request.batch_size, request.batch_tokens):
            if all(i in skip for i in batch):
                continue
            rows.update({i: _fitted(tokenizer, prepared.limit, inputs[i], i, whole[i], warn) for i in batch})
            attempt(batch, lambda batch=batch: _explain_batch(model, prepared, inputs, batch, [rows[i] for i in batch]))
        yield [(i, done[i]) for i in chunk if i not in skip]


def _failed(item: TextInput, index: int, error: BaseException, warn: Warn) -> FailedText:
    """The one-line record of a text that could not be explained (and its warning)."""
    from .._text import printable, shorten

    message = str(error) if isinstance(error, UsageError) else f"{type(error).__name__}: {error}"
    message = shorten(printable(" ".join(message.split())), 300) or type(error).__name__
    warn(f"input {index + 1} ({item.source}): not explained: {message}")
    return FailedText(index, item.source, item.text, item.pair, message, item.label)


def length_batches(indices: Sequence[int], lengths: Dict[int, int], batch_size: int,
                   batch_tokens: Optional[int] = None) -> Iterator[List[int]]:
    """Consecutive runs of the (length-sorted) ``indices``: at most ``batch_size`` texts and, with
    ``batch_tokens``, at most that many padded tokens (a longer single text is a batch alone)."""
    batch: List[int] = []
    for i in indices:
        width = max([lengths[j] for j in batch] + [lengths[i]])
        if batch and (len(batch) == batch_size or
                      (batch_tokens is not None and width * (len(batch) + 1) > batch_tokens)):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


# ------------------------------------------------------------------ tokens
def _encode(tokenizer, item: TextInput):
    """The whole text (and pair), one row, no truncation; an empty text (or pair) is a
    :class:`UsageError` naming it (``"text 2: ..."``)."""
    from ..models.tokenization import TokenizerError

    for what, value in (("text", item.text), ("pair text", item.pair)):
        if value is not None and not value.strip():
            raise UsageError(f"{item.source or 'text'}: the {what} is empty; there is nothing to explain")
    try:
        return tokenizer([item.text], None if item.pair is None else [item.pair], truncation=False,
                         max_length=10 ** 9)
    except TokenizerError as error:
        raise UsageError(f"{item.source or 'text'}: {error}") from None


def encode_whole(tokenizer, item: TextInput):
    """The one-row Encoding of the whole of ``item`` (and its pair), not cut to any length: to
    see what a cut would lose."""
    return _encode(tokenizer_for_road(tokenizer), item)


def encode_text(tokenizer, prepared: Prepared, item: TextInput, index: int, warn: Warn):
    """``(row, dropped)``: the one-row Encoding of ``item`` the model reads without windows (the
    whole text if it fits, else cut to the model's positions, with a warning) and how many
    tokens were cut."""
    tokenizer = tokenizer_for_road(tokenizer)
    return _fitted(tokenizer, prepared.limit, item, index, _encode(tokenizer, item), warn)


def model_limit(model, tokenizer) -> int:
    """The longest sequence (in tokens, specials included) ``model`` reads with ``tokenizer``."""
    return min(tokenizer.model_max_length, model.config.max_position_embeddings)


def encoded_batches(model, tokenizer, texts: Sequence[Union[str, Tuple[str, Optional[str]], TextInput]],
                    batch_size: int, batch_tokens: Optional[int] = None, warn: Optional[Warn] = None) -> Iterator[Tuple[List[int], Any]]:
    """The road's tokens and batches for code that runs the model itself (predictions, hidden
    states, masked words): ``(indices, encoding)`` pairs, ``encoding`` one padded Encoding
    ``[len(indices), longest]`` with word ids and sequence ids. Each text is tokenised whole and
    cut to the model's positions (with a warning); the texts are sorted by length (ties in input
    order) into batches of at most ``batch_size`` texts and ``batch_tokens`` padded tokens. Every
    index of ``texts`` comes exactly once. ``tokenizer``: bert-lrp's or a transformers tokenizer."""
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    inputs = as_inputs(texts)
    tokenizer = tokenizer_for_road(tokenizer, model)
    limit = model_limit(model, tokenizer)
    pad_id, pad_token = int(tokenizer.pad_token_id), str(tokenizer.pad_token)
    rows = [_fitted(tokenizer, limit, item, i, _encode(tokenizer, item), warn)[0] for i, item in enumerate(inputs)]
    lengths = {i: len(row.tokens[0]) for i, row in enumerate(rows)}
    order = sorted(range(len(rows)), key=lambda i: (lengths[i], i))
    for indices in length_batches(order, lengths, batch_size, batch_tokens):
        yield indices, collate([rows[i] for i in indices], pad_id, pad_token)


def _fitted(tokenizer, limit: int, item: TextInput, index: int, whole, warn: Warn):
    """The one-row Encoding the model reads: the whole text if it fits, else cut (with a warning)."""
    length = len(whole.tokens[0])
    if all(word is None for word in whole.word_ids[0]):
        warn(f"input {index + 1} ({item.source}): no words to explain (the tokenizer drops control characters and "
             "most invisible characters)")
    if length <= limit:
        return whole, 0
    row = tokenizer([item.text], None if item.pair is None else [item.pair], truncation=True, max_length=limit)
    kept = len(row.tokens[0])
    warn(f"input {index + 1} ({item.source}): {length:,} tokens, cut to {kept:,} ({length - kept:,} dropped; "
         f"the model reads at most {limit:,})")
    return row, length - kept


def collate(rows: Sequence[Any], pad_token_id: int, pad_token: str = "[PAD]") -> Any:
    """One-row Encodings -> one padded Encoding ``[rows, longest]`` with the same per-token lists."""
    from ..models.tokenization import Encoding

    width = max(len(r.tokens[0]) for r in rows)
    batch = Encoding()
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    batch.tokens, batch.offsets, batch.word_ids, batch.sequence_ids, batch.texts = [], [], [], [], []
    for r, row in enumerate(rows):
        n = len(row.tokens[0])
        pad = width - n
        ids[r, :n], types[r, :n], mask[r, :n] = row["input_ids"][0, :n], row["token_type_ids"][0, :n], 1
        batch.tokens.append(list(row.tokens[0][:n]) + [pad_token] * pad)
        batch.offsets.append(list(row.offsets[0][:n]) + [(0, 0)] * pad)
        batch.word_ids.append(list(row.word_ids[0][:n]) + [None] * pad)
        batch.sequence_ids.append(list(row.sequence_ids[0][:n]) + [None] * pad)
        batch.texts.append(row.texts[0])
    batch["input_ids"], batch["token_type_ids"], batch["attention_mask"] = ids, types, mask
    batch.special_token_ids = dict(getattr(rows[0], "special_token_ids", {}) or {})
    return batch


def _select(whole, positions: List[int]):
    """The one-row Encoding of ``whole`` restricted to ``positions`` (a window)."""
    from ..models.tokenization import Encoding

    row = Encoding()
    index = torch.tensor(positions, dtype=torch.long)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        row[key] = whole[key][:, index]
    row.tokens = [[whole.tokens[0][p] for p in positions]]
    row.offsets = [[whole.offsets[0][p] for p in positions]]
    row.word_ids = [[whole.word_ids[0][p] for p in positions]]
    row.sequence_ids = [[whole.sequence_ids[0][p] for p in positions]]
    row.texts = list(whole.texts)
    row.special_token_ids = dict(getattr(whole, "special_token_ids", {}) or {})
    return row


# ------------------------------------------------------------------ one batch
def _targets(model, prepared: Prepared, rows) -> Any:
    """explain()'s target for a batch: the label (or None / "all"); for a token classifier one
    ``(position, label)`` per row, the position from ``--word`` / ``--token-index``."""
    if prepared.task != "token":
        return prepared.target
    request = prepared.request
    label = prepared.target
    return [(word_position(row, request.token_index, request.word), label) for row, _ in rows]


def word_position(encoding, token_index: Optional[int], word: Optional[str], index: int = 0) -> int:
    """Position of the first piece of the word chosen by ``token_index`` (a piece position,
    negative from the end) or ``word`` (its first occurrence, exact case first)."""
    word_ids, sequence_ids = encoding.word_ids[index], encoding.sequence_ids[index]
    length = int(encoding["attention_mask"][index].sum())
    if token_index is not None:
        position = token_index if token_index >= 0 else length + token_index
        if not 0 <= position < length:
            raise UsageError(f"--token-index {token_index} is outside the {length} tokens of the text")
        if word_ids[position] is None:
            raise UsageError(f"--token-index {token_index} is a special token ({encoding.tokens[index][position]})")
    else:
        words = merge_word_pieces([0.0] * len(word_ids), encoding, index)
        matches = [w for w in words if w["word"] == word] or [w for w in words if w["word"].lower() == word.lower()]
        if not matches:
            raise UsageError(f"--word {word!r} is not a word of the text (words: {', '.join(w['word'] for w in words)})")
        position = matches[0]["positions"][0]
    key = (sequence_ids[position], word_ids[position])
    return next(p for p, k in enumerate(zip(sequence_ids, word_ids)) if k == key)


def _run_explain(model, prepared: Prepared, batch, target) -> Explanation:
    request = prepared.request
    return explain(model, batch, prepared.methods, target=target, options=prepared.options,
                   layers=request.layers, progress=request.progress)


def _explain_batch(model, prepared: Prepared, inputs: Sequence[TextInput], indices: List[int], rows
                   ) -> List[TextExplanation]:
    batch = collate([row for row, _ in rows], prepared.pad_id, prepared.pad_token)
    result = _run_explain(model, prepared, batch, _targets(model, prepared, rows))
    attentions = None
    if prepared.request.attentions:
        with torch.no_grad():
            output = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                           output_attentions=True)
        attentions = torch.stack([a.detach() for a in output.attentions], 1)  # [batch, layers, heads, seq, seq]
    out = []
    for b, (i, (row, dropped)) in enumerate(zip(indices, rows)):
        length = len(row.tokens[0])
        position = None if result.target_position is None else int(result.target_position[b])
        logits = result.logits[b] if position is None else result.logits[b, position]
        views = [(k, result.for_label(k)) for k in range(result.target.shape[1])] if result.all_labels else [(None, result)]
        labels = [_label_scores(view, b, length, prepared.request) for _, view in views]
        out.append(TextExplanation(
            index=i, source=inputs[i].source, text=inputs[i].text, pair=inputs[i].pair, gold=inputs[i].label,
            encoding=row,
            methods=list(prepared.methods), label_names=prepared.labels, logits=logits.detach().float(),
            labels=labels, all_labels=result.all_labels, target_position=position, dropped_tokens=dropped,
            attentions=None if attentions is None else attentions[b, :, :, :length, :length]))
    return out


def _label_scores(view: Explanation, b: int, length: int, request: Request) -> LabelScores:
    """Row ``b`` of an explanation (one label), cut to the row's ``length`` tokens."""
    entry = LabelScores(
        target=int(view.target[b]), target_logit=float(view.target_logit[b]),
        scores={m: v[b, :length].detach().float() for m, v in view.scores.items()},
        conservation={m: float(v[b]) for m, v in view.conservation.items()},
        shares={m: {part: v[b, :length].sum(-1).detach().float() for part, v in parts.items()}
                for m, parts in view.embedding_shares.items()},
        extras={k: float(v[b]) for k, v in view.extras.items() if v.dim() == 1})
    if request.hidden_relevance:
        entry.relevance = {m: v[b, :length].detach().float() for m, v in view.relevance.items()}
    if request.layers:
        entry.layer_scores = {m: [layer[b, :length].detach().float() for layer in layers]
                              for m, layers in view.layer_scores.items()}
    return entry


# ------------------------------------------------------------------ windows
def _needs_windows(prepared: Prepared, whole) -> bool:
    """A window size smaller than the text was asked for explicitly."""
    window = prepared.request.window
    return window is not None and sum(1 for s in whole.sequence_ids[0] if s == 0) > window


def _windowable(prepared: Prepared, whole) -> bool:
    """The frame (special tokens and the second text) leaves room for at least one piece."""
    frame = sum(1 for s in whole.sequence_ids[0] if s != 0)
    return frame < prepared.limit


def _explain_windowed(model, prepared: Prepared, item: TextInput, index: int, whole, warn: Warn) -> TextExplanation:
    request = prepared.request
    spans, positions = window_positions(whole.sequence_ids[0], prepared.limit, request.window, request.stride)
    rows = [(_select(whole, p), 0) for p in positions]
    target = prepared.target
    if target is None:  # the document's label: argmax of the mean of the windows' logits
        with torch.no_grad():
            logits = torch.cat([model(**_model_inputs(collate([r for r, _ in rows[f:f + request.batch_size]],
                                                              prepared.pad_id, prepared.pad_token))).logits
                                for f in range(0, len(rows), request.batch_size)])
        target = int(logits.mean(0).argmax())
    parts: List[TextExplanation] = []
    for first in range(0, len(rows), request.batch_size):
        chunk = rows[first:first + request.batch_size]
        batch = collate([r for r, _ in chunk], prepared.pad_id, prepared.pad_token)
        result = _run_explain(model, prepared, batch, target)
        views = [result.for_label(k) for k in range(result.target.shape[1])] if result.all_labels else [result]
        for b, (row, _) in enumerate(chunk):
            length = len(row.tokens[0])
            parts.append(TextExplanation(
                index=index, source=item.source, text=item.text, pair=item.pair, gold=item.label, encoding=row,
                methods=list(prepared.methods), label_names=prepared.labels, logits=result.logits[b].detach().float(),
                labels=[_label_scores(view, b, length, request) for view in views], all_labels=result.all_labels))
    length = len(whole.tokens[0])
    reason = (f"more than the model's {prepared.limit:,} positions" if length > prepared.limit
              else f"more than a window of {request.window:,} pieces")
    warn(f"input {index + 1} ({item.source}): {length:,} tokens, {reason}: explained in {len(rows)} overlapping "
         "windows (logits averaged over the windows)")
    labels = [_merge_labels([part.labels[k] for part in parts], positions, len(whole.tokens[0]))
              for k in range(len(parts[0].labels))]
    return TextExplanation(index=index, source=item.source, text=item.text, pair=item.pair, gold=item.label,
                           encoding=whole,
                           methods=list(prepared.methods), label_names=prepared.labels,
                           logits=torch.stack([part.logits for part in parts]).mean(0), labels=labels,
                           all_labels=parts[0].all_labels, windows=len(rows), spans=spans)


def _model_inputs(batch) -> Dict[str, torch.Tensor]:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def _merge_labels(entries: List[LabelScores], positions: List[List[int]], length: int) -> LabelScores:
    """One label's scores of every window -> the whole text's: a position's value is the mean over
    the windows that contain it (special tokens and the second text are in every window);
    target logit, conservation and extras are means over the windows."""
    counts = torch.zeros(length)
    for p in positions:
        counts[p] += 1

    def merge(values: List[torch.Tensor]) -> torch.Tensor:
        total = torch.zeros((length, *values[0].shape[1:]), dtype=values[0].dtype)
        for value, p in zip(values, positions):
            total[p] += value
        return total / counts.view(-1, *([1] * (total.dim() - 1))).to(total.dtype)

    first = entries[0]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return LabelScores(
        target=first.target, target_logit=mean([e.target_logit for e in entries]),
        scores={m: merge([e.scores[m] for e in entries]) for m in first.scores},
        conservation={m: mean([e.conservation[m] for e in entries]) for m in first.conservation},
        shares={m: {part: merge([e.shares[m][part] for e in entries]) for part in parts}
                for m, parts in first.shares.items()},
        relevance={m: merge([e.relevance[m] for e in entries]) for m in first.relevance},
        layer_scores={m: [merge([e.layer_scores[m][k] for e in entries]) for k in range(len(layers))]
                      for m, layers in first.layer_scores.items()},
        extras={k: mean([e.extras[k] for e in entries]) for k in first.extras})
