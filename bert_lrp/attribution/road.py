"""The one road from texts to explanations. The Python API (:func:`explain_texts`), ``bert-lrp
explain`` (terminal, ``--json``, ``--html``, ``--jsonl``), ``evaluate``, ``inspect``, the layer
ablation and the explorer all take it; nothing else tokenises, batches or windows a user's text
(``tests/test_architecture.py`` lists the modules that may call a tokenizer, and why). Code that
runs the model itself (predictions, hidden states) gets the road's tokens and batches from
:func:`encoded_batches`.

1. **Inputs**: :class:`TextInput` (a text, an optional second text of a pair, where it came from);
   :func:`bert_lrp.data.read_inputs` reads files (lines or a table's rows), ``-`` (stdin) and
   arguments, strictly as UTF-8 (re-exported here).
2. **Plan**: :class:`~bert_lrp.attribution.plan.Request` holds the methods, the target, every
   method option, the word of a token classifier, batching and windows;
   :func:`~bert_lrp.attribution.plan.plan_request` checks it ONCE against the model (the
   registry's check included) into an immutable :class:`~bert_lrp.attribution.plan.Plan`, which
   every later stage reads as it is (a Plan given to :func:`stream_chunks` is not checked again).
3. **Tokens**: each text is tokenised once, whole (word ids and sequence ids included).
4. **Batches**: inputs are taken in chunks of ``chunk_batches x batch_size`` (in input order);
   inside a chunk they are sorted by length into batches of at most ``batch_size`` texts and,
   when ``batch_tokens`` is set, at most that many padded tokens. Batches depend on the input
   only, never on what a resumed run skips, and every method gives the same scores in any batch.
5. **Windows**: a sequence classifier's text longer than the model's positions is explained in
   overlapping windows over its first text (:mod:`bert_lrp.attribution.windows`); the second
   text of a pair and the special tokens are in every window. Word ids and every option go
   through. A text that fits is never windowed; a token classifier's text is cut, with a warning.
6. **Assembly**: each text's :class:`~bert_lrp.attribution.records.TextExplanation` is built in
   one place (``_assemble``), its per-method fields cut and merged by
   :mod:`bert_lrp.attribution.method_scores`;
   :meth:`~bert_lrp.attribution.records.TextExplanation.record` is the one JSON record of an
   explanation (:mod:`bert_lrp.attribution.records`).
"""
from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..data import TextInput, parse_texts, read_inputs  # noqa: F401  (re-exported: the road's inputs)
from ..errors import RequestError, UsageError
from . import method_scores
from .explain import Explanation, run_methods
from .plan import DEFAULT_METHODS, Plan, Request, model_limit, parse_target, plan_request
from .progress import Cancelled, is_hook, rows_done
from .records import ALL, Explanations, FailedText, LabelScores, TextExplanation
from .transformers_inputs import tokenizer_for_road
from .windows import window_positions
from .words import merge_word_pieces

Warn = Callable[[str], None]
__all__ = ["ALL", "DEFAULT_METHODS", "Plan", "Prepared", "Request", "TextInput", "explain_texts", "explain_windows",
           "json_payload", "parse_target", "plan_request", "prepare", "stream_chunks", "stream_texts"]


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
Prepared = Plan  # the name of a checked request before plan.py (tune-lrp, evaluate)


def prepare(model, tokenizer, request: Union[Request, Plan]) -> Plan:
    """``request`` checked once against ``model`` (:func:`~bert_lrp.attribution.plan.plan_request`;
    a Plan is returned as it is)."""
    return plan_request(model, tokenizer, request)


# ------------------------------------------------------------------ the road
def explain_texts(model, tokenizer, texts: Iterable[Union[str, Tuple[str, Optional[str]], TextInput]],
                  request: Optional[Request] = None, pairs: Optional[Sequence[Optional[str]]] = None,
                  warn: Optional[Warn] = None, progress: Any = None, **settings: Any) -> Explanations:
    """Explain every text (see the module docstring); ``settings`` are :class:`Request` fields
    (``methods``, ``target``, ``options``, ``word``, ...) when no ``request`` is given, and
    method options (``ig_steps=20``) otherwise unknown to Request. ``texts`` and ``pairs``: see
    :func:`as_inputs` (one string is one text). ``tokenizer``: bert-lrp's or a transformers
    tokenizer (fast or slow). ``progress``: a run's hook (:mod:`bert_lrp.attribution.progress`:
    told of every chunk of forward rows, may cancel the run between chunks); True/False: the
    Request's progress bar. Returns one :class:`TextExplanation` per text, in input order, in a
    list that a notebook shows as one compact table (:class:`~bert_lrp.attribution.records.Explanations`)."""
    if progress is not None and not is_hook(progress):
        settings["progress"], progress = progress, None  # the Request's bar on stderr
    request = request or _request_from(settings)
    _check_target(request.target)
    inputs = as_inputs(texts, pairs)
    tokenizer = tokenizer_for_road(tokenizer, model)
    return Explanations(explained for _, explained in stream_texts(model, tokenizer, inputs, request, warn=warn,
                                                                  progress=progress))


def json_payload(model_name: str, request: Union[Request, Plan], explained: Sequence[TextExplanation]
                 ) -> Dict[str, Any]:
    """The JSON document of ``bert-lrp explain --json`` (and the explorer's ``/api/explain``):
    ``{"model": model_name, "settings": request.settings(), "examples": [record per text]}``,
    records as :meth:`TextExplanation.record` writes them (``hidden_relevance`` as the request
    asks; no per-layer scores or attention, which only the HTML views draw). Give the Plan the
    texts were explained with: a Request is checked again for its settings."""
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


def stream_texts(model, tokenizer, inputs: Sequence[TextInput], request: Union[Request, Plan], skip: Iterable[int] = (),
                 warn: Optional[Warn] = None, only: Optional[Sequence[int]] = None, go_on: bool = False,
                 progress: Any = None) -> Iterator[Tuple[int, Union[TextExplanation, FailedText]]]:
    """``(index, explanation)`` for every input not in ``skip``, in input order (``only``: the
    indices this process owns, e.g. one rank's share; default all). ``go_on``: a text that cannot
    be explained becomes a :class:`FailedText` saying why (with a warning) and the others go on;
    otherwise its error is raised. ``tokenizer``: bert-lrp's or a transformers tokenizer.
    ``progress``: a run's hook (:mod:`bert_lrp.attribution.progress`); its :class:`Cancelled`
    ends the run (never a FailedText)."""
    _check_target(request.target)
    tokenizer = tokenizer_for_road(tokenizer, model)
    for chunk in stream_chunks(model, tokenizer, inputs, request, skip, warn, only, go_on, progress=progress):
        yield from chunk


def stream_chunks(model, tokenizer, inputs: Sequence[TextInput], request: Union[Request, Plan],
                  skip: Iterable[int] = (), warn: Optional[Warn] = None, only: Optional[Sequence[int]] = None,
                  go_on: bool = False, describe: Optional[Callable[[BaseException], str]] = None,
                  progress: Any = None) -> Iterator[List[Tuple[int, Union[TextExplanation, FailedText]]]]:
    """As :func:`stream_texts`, one list per chunk of inputs (a writer flushes after each). A
    Request is planned (checked) here, once; a Plan is used as it is. ``describe``: the one line
    of a text's error in its FailedText (default: the error as the library words it; a command
    line shows a request error's field as its flag)."""
    tokenizer = tokenizer_for_road(tokenizer, model)
    plan = plan_request(model, tokenizer, request)
    if is_hook(progress):
        plan = replace(plan, progress=progress)  # the hook rides with this run's plan to every chunk loop
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    skip = set(skip)
    owned = list(range(len(inputs))) if only is None else list(only)
    chunk_size = plan.batch_size * plan.chunk_batches
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
            except Cancelled:
                raise
            except Exception as error:  # noqa: BLE001 -- one text must not end a data set's run
                if len(indices) > 1:
                    for i in indices:
                        if i not in skip:
                            attempt([i], lambda i=i: solo[i]())
                    return
                done[indices[0]] = _failed(inputs[indices[0]], indices[0], error, warn, describe)

        whole: Dict[int, Any] = {}  # every input of the chunk, skipped ones too: batches depend on the input only
        for i in chunk:
            try:
                whole[i] = _encode(tokenizer, inputs[i])
            except Exception as error:  # noqa: BLE001
                if not go_on:
                    raise
                if i not in skip:
                    done[i] = _failed(inputs[i], i, error, warn, describe)
        short: List[int] = []
        for i in whole:
            length = len(whole[i].tokens[0])
            if length <= plan.limit and not _needs_windows(plan, whole[i]):
                short.append(i)
            elif plan.task == "sequence" and plan.windows and _windowable(plan, whole[i]):
                if i not in skip:
                    attempt([i], lambda i=i: [_explain_windowed(model, plan, inputs[i], i, whole[i], warn)])
            else:
                short.append(i)
        short.sort(key=lambda i: len(whole[i].tokens[0]))
        lengths = {i: min(len(whole[i].tokens[0]), plan.limit) for i in short}
        rows: Dict[int, Any] = {}
        solo = {i: (lambda i=i: _explain_batch(model, plan, inputs, [i], [rows[i]])) for i in short}
        for batch in length_batches(short, lengths, plan.batch_size, plan.batch_tokens):
            if all(i in skip for i in batch):
                continue
            rows.update({i: _fitted(tokenizer, plan.limit, inputs[i], i, whole[i], warn) for i in batch})
            attempt(batch, lambda batch=batch: _explain_batch(model, plan, inputs, batch, [rows[i] for i in batch]))
        yield [(i, done[i]) for i in chunk if i not in skip]


def _failed(item: TextInput, index: int, error: BaseException, warn: Warn,
            describe: Optional[Callable[[BaseException], str]] = None) -> FailedText:
    """The one-line record of a text that could not be explained (and its warning)."""
    from .._text import printable, shorten

    if describe is not None:
        message = describe(error)
    else:
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
def _targets(model, plan: Plan, rows) -> Any:
    """explain()'s target for a batch: the label (or None / "all"); for a token classifier one
    ``(position, label)`` per row, the position from the plan's word or token index."""
    if plan.task != "token":
        return plan.target
    return [(word_position(row, plan.token_index, plan.word), plan.target) for row, _ in rows]


def word_position(encoding, token_index: Optional[int], word: Optional[str], index: int = 0) -> int:
    """Position of the first piece of the word chosen by ``token_index`` (a piece position,
    negative from the end) or ``word`` (its first occurrence, exact case first); a
    RequestError of field ``token_index`` or ``word`` when the text has no such piece or word."""
    word_ids, sequence_ids = encoding.word_ids[index], encoding.sequence_ids[index]
    length = int(encoding["attention_mask"][index].sum())
    if token_index is not None:
        position = token_index if token_index >= 0 else length + token_index
        if not 0 <= position < length:
            raise RequestError("token_index", f"{token_index} is outside the {length} tokens of the text")
        if word_ids[position] is None:
            raise RequestError("token_index", f"{token_index} is a special token ({encoding.tokens[index][position]})")
    else:
        words = merge_word_pieces([0.0] * len(word_ids), encoding, index)
        matches = [w for w in words if w["word"] == word] or [w for w in words if w["word"].lower() == word.lower()]
        if not matches:
            raise RequestError("word", f"{word!r} is not a word of the text (words: "
                               f"{', '.join(w['word'] for w in words)})")
        position = matches[0]["positions"][0]
    key = (sequence_ids[position], word_ids[position])
    return next(p for p, k in enumerate(zip(sequence_ids, word_ids)) if k == key)


def _run_explain(model, plan: Plan, batch, target) -> Explanation:
    result = run_methods(model, batch, plan.method_plan, target, layers=plan.layers, progress=plan.progress)
    rows_done(plan.progress, batch["input_ids"].shape[0])  # the batch's shared (or plain) pass
    return result


def _label_views(result: Explanation) -> List[Explanation]:
    """One Explanation per explained label (``target="all"``: every label)."""
    return [result.for_label(k) for k in range(result.target.shape[1])] if result.all_labels else [result]


def _label_scores(view: Explanation, b: int, length: int, plan: Plan) -> LabelScores:
    """Row ``b`` of an explanation (one label), cut to the row's ``length`` tokens."""
    return LabelScores(target=int(view.target[b]), target_logit=float(view.target_logit[b]),
                       **method_scores.text_row(view, b, length, plan.hidden_relevance, plan.layers))


def _assemble(plan: Plan, item: TextInput, index: int, encoding, logits: torch.Tensor, labels: List[LabelScores],
              all_labels: bool, **more: Any) -> TextExplanation:
    """THE one place a text's explanation is built (a batch's row, a window, a windowed text)."""
    return TextExplanation(index=index, source=item.source, text=item.text, pair=item.pair, gold=item.label,
                           encoding=encoding, methods=list(plan.methods), label_names=dict(plan.labels),
                           logits=logits.detach().float(), labels=labels, all_labels=all_labels, **more)


def _batch_rows(plan: Plan, result: Explanation, rows) -> List[Tuple[Optional[int], torch.Tensor, List[LabelScores]]]:
    """``(target position, logits [labels], label scores)`` of every row of a batch's result."""
    views = _label_views(result)
    out = []
    for b, (row, _) in enumerate(rows):
        length = len(row.tokens[0])
        position = None if result.target_position is None else int(result.target_position[b])
        logits = result.logits[b] if position is None else result.logits[b, position]
        out.append((position, logits, [_label_scores(view, b, length, plan) for view in views]))
    return out


def _explain_batch(model, plan: Plan, inputs: Sequence[TextInput], indices: List[int], rows
                   ) -> List[TextExplanation]:
    batch = collate([row for row, _ in rows], plan.pad_id, plan.pad_token)
    result = _run_explain(model, plan, batch, _targets(model, plan, rows))
    attentions = None
    if plan.attentions:
        with torch.no_grad():
            output = model(**_model_inputs(batch), output_attentions=True)
        attentions = torch.stack([a.detach() for a in output.attentions], 1)  # [batch, layers, heads, seq, seq]
    out = []
    for b, (i, (row, dropped), (position, logits, labels)) in enumerate(zip(indices, rows, _batch_rows(plan, result, rows))):
        length = len(row.tokens[0])
        out.append(_assemble(plan, inputs[i], i, row, logits, labels, result.all_labels, target_position=position,
                             dropped_tokens=dropped,
                             attentions=None if attentions is None else attentions[b, :, :, :length, :length]))
    return out


# ------------------------------------------------------------------ windows
def _needs_windows(plan: Plan, whole) -> bool:
    """A window size smaller than the text was asked for explicitly."""
    return plan.window is not None and sum(1 for s in whole.sequence_ids[0] if s == 0) > plan.window


def _windowable(plan: Plan, whole) -> bool:
    """The frame (special tokens and the second text) leaves room for at least one piece."""
    frame = sum(1 for s in whole.sequence_ids[0] if s != 0)
    return frame < plan.limit


def _document_target(model, plan: Plan, rows) -> Any:
    """The plan's target; without one, the document's label: argmax of the mean of the windows' logits."""
    if plan.target is not None:
        return plan.target
    with torch.no_grad():
        logits = torch.cat([model(**_model_inputs(collate([r for r, _ in rows[f:f + plan.batch_size]],
                                                          plan.pad_id, plan.pad_token))).logits
                            for f in range(0, len(rows), plan.batch_size)])
    return int(logits.mean(0).argmax())


def _explain_windowed(model, plan: Plan, item: TextInput, index: int, whole, warn: Warn) -> TextExplanation:
    spans, positions = window_positions(whole.sequence_ids[0], plan.limit, plan.window, plan.stride)
    rows = [(_select(whole, p), 0) for p in positions]
    target = _document_target(model, plan, rows)
    parts: List[Tuple[Optional[int], torch.Tensor, List[LabelScores]]] = []
    all_labels = False
    for first in range(0, len(rows), plan.batch_size):
        chunk = rows[first:first + plan.batch_size]
        result = _run_explain(model, plan, collate([r for r, _ in chunk], plan.pad_id, plan.pad_token), target)
        parts += _batch_rows(plan, result, chunk)
        all_labels = result.all_labels
    length = len(whole.tokens[0])
    reason = (f"more than the model's {plan.limit:,} positions" if length > plan.limit
              else f"more than a window of {plan.window:,} pieces")
    warn(f"input {index + 1} ({item.source}): {length:,} tokens, {reason}: explained in {len(rows)} overlapping "
         "windows (logits averaged over the windows)")
    labels = [_merge_labels([labels[k] for _, _, labels in parts], positions, length)
              for k in range(len(parts[0][2]))]
    logits = torch.stack([logits.detach().float() for _, logits, _ in parts]).mean(0)
    return _assemble(plan, item, index, whole, logits, labels, all_labels, windows=len(rows), spans=spans)


def _model_inputs(batch) -> Dict[str, torch.Tensor]:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def _merge_labels(entries: List[LabelScores], positions: List[List[int]], length: int) -> LabelScores:
    """One label's scores of every window -> the whole text's: a position's value is the mean over
    the windows that contain it (special tokens and the second text are in every window);
    target logit, conservation and extras are means over the windows."""
    return LabelScores(target=entries[0].target, target_logit=sum(e.target_logit for e in entries) / len(entries),
                       **method_scores.merge_windows(entries, positions, length))
