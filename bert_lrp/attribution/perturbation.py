"""What the perturbation methods (occlusion, SHAP, LIME) share: words, baselines, seeds, and the
batched scoring of coalitions.

A *word* is the set of word pieces of one word of the text (``word_ids`` of the tokenizer, one
word per ``(token type, word id)`` so the two texts of a pair stay apart); without word ids each
non-special token is a word. [CLS], [SEP] and padding are never perturbed. A *coalition* ``z`` of
an example is a boolean vector ``[words]``: True = the word is present, False = its pieces are
replaced by the baseline token (``pad``, ``mask``, ``unk``) or removed from the sequence
(``remove``: the row is shortened and padded).

The value of a coalition is the *target logit* (the output ``explain`` explains: the class logit,
or the label logit at the target position), so every perturbation score is in logit units.
Word scores are put on tokens by spreading each word's score evenly over its pieces: token scores
sum to the word score, and ``Explanation.word_scores`` gives the word score back.
"""
from __future__ import annotations

import sys
import zlib
from typing import Iterator, List, Optional, Sequence, Tuple

import torch

from ..errors import UsageError
from .progress import HookBar, is_hook
from .registry import Option
from .targets import logits_of, select

BASELINES = ("pad", "mask", "unk", "remove")
ROWS_PER_FORWARD = Option("rows_per_forward", int, 64, "perturbed or noisy rows per forward pass (bounds memory)",
                          minimum=1, maximum=4_096)  # rows held with their activations for one pass
SEED = Option("seed", int, 0, "seed of the sampling methods (SHAP, LIME, SmoothGrad)", minimum=0, maximum=2 ** 31 - 1)


def baseline_option(method: str) -> Option:
    """``<method>_baseline``: what replaces an absent word's pieces."""
    return Option(f"{method}_baseline", str, "pad", f"{method}: what replaces an absent word's pieces (pad = [PAD]; "
                  "mask, unk, or remove = drop them)", choices=BASELINES)
Words = List[List[int]]  # one example: per word, its token positions


def baseline_token(model, kind: str, option: str = "baseline", special_token_ids: Optional[dict] = None
                   ) -> Optional[int]:
    """The id that replaces an absent word's pieces (None for ``remove``): the model's pad id, or
    the tokenizer's ``mask`` / ``unk`` id from ``special_token_ids`` (else the config's
    ``mask_token_id`` / ``unk_token_id``, else BERT's 103 / 100)."""
    name = str(kind).strip().lower().strip("[]")
    if name not in BASELINES:
        raise UsageError(f"{option} {kind!r}: choose from {', '.join(BASELINES)}")
    if name == "remove":
        return None
    config = model.config
    if name == "pad":
        return int(config.pad_token_id)
    key, default = {"mask": ("mask_token_id", 103), "unk": ("unk_token_id", 100)}[name]
    value = (special_token_ids or {}).get(name)
    value = int(config.extra.get(key, default) if value is None else value)
    if not 0 <= value < config.vocab_size:
        raise UsageError(f"{option} {kind!r}: token id {value} is outside the vocabulary (give {key} in options)")
    return value


def _word_id_rows(word_ids, batch: int) -> Optional[List[List[Optional[int]]]]:
    if word_ids is None:
        return None
    if isinstance(word_ids, torch.Tensor):
        return [[None if int(w) < 0 else int(w) for w in row] for row in word_ids]
    rows = [list(row) for row in word_ids]
    if len(rows) != batch:
        raise UsageError(f"word_ids: got {len(rows)} rows for a batch of {batch}")
    return rows


def word_groups(inputs, word_ids=None) -> List[Words]:
    """Per example, the token positions of each word, in text order.

    ``inputs``: input_ids, attention_mask, token_type_ids ``[batch, seq]``; ``word_ids``: the
    tokenizer's per-example lists (None for special tokens) or a ``[batch, seq]`` tensor with -1
    for special tokens; None: every non-special token is a word ([CLS] = the first token, [SEP] =
    the last real token's id)."""
    ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]
    rows = _word_id_rows(word_ids, ids.shape[0])
    groups: List[Words] = []
    for b in range(ids.shape[0]):
        length = int(mask[b].sum())
        if rows is None:
            cls_id, sep_id = int(ids[b, 0]), int(ids[b, max(length - 1, 0)])
            words = [[p] for p in range(1, length) if mask[b, p] and int(ids[b, p]) not in (cls_id, sep_id)]
        else:
            row = rows[b]
            by_key = {}
            for p in range(min(len(row), ids.shape[1])):
                if row[p] is None or not mask[b, p]:
                    continue
                by_key.setdefault((int(types[b, p]), int(row[p])), []).append(p)
            words = list(by_key.values())
        groups.append(words)
    return groups


def example_generator(seed: int, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Generator:
    """A generator seeded by ``seed`` and the example's real tokens: the same draws whatever the
    batch, the padding or the position of the example in it."""
    tokens = input_ids[attention_mask.bool()].tolist()
    digest = zlib.crc32(",".join(map(str, tokens)).encode("ascii"))
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + digest)


def spread(word_scores: Sequence[torch.Tensor], groups: Sequence[Words], shape: Tuple[int, int]) -> torch.Tensor:
    """Word scores -> token scores ``[batch, seq]``: each word's score split evenly over its pieces."""
    scores = torch.zeros(shape, dtype=torch.float64)
    for b, (values, words) in enumerate(zip(word_scores, groups)):
        for value, positions in zip(values.tolist(), words):
            scores[b, positions] = value / len(positions)
    return scores


class CoalitionScorer:
    """Target logits of perturbed copies of a batch, ``rows_per_forward`` rows per forward pass.

    ``score(requests)`` takes ``[(example index, z [k, words] bool)]`` and returns one float64
    tensor ``[k]`` per request."""

    def __init__(self, model, inputs, labels: torch.Tensor, positions: Optional[torch.Tensor],
                 groups: Sequence[Words], replacement: Optional[int], rows_per_forward: int = 64,
                 progress: bool = False, description: str = "perturbation") -> None:
        if rows_per_forward < 1:
            raise UsageError(f"rows_per_forward must be >= 1, got {rows_per_forward}")
        if replacement is None and positions is not None:
            raise UsageError("baseline 'remove' cannot explain a token position (removing words moves it); "
                             "use pad, mask or unk")
        self.model, self.inputs, self.labels, self.positions = model, inputs, labels, positions
        self.groups, self.replacement = groups, replacement
        self.rows_per_forward, self.progress, self.description = rows_per_forward, progress, description
        self.forward_rows = 0

    def _rows(self, b: int, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = self.inputs["input_ids"][b].expand(z.shape[0], -1).clone()
        mask = self.inputs["attention_mask"][b].expand(z.shape[0], -1).clone()
        types = self.inputs["token_type_ids"][b].expand(z.shape[0], -1).clone()
        absent = torch.zeros_like(ids, dtype=torch.bool)
        for w, positions in enumerate(self.groups[b]):
            absent[:, positions] |= ~z[:, w:w + 1]
        if self.replacement is not None:
            return ids.masked_fill(absent, self.replacement), mask, types
        keep = mask.bool() & ~absent
        order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices  # kept tokens first
        kept = keep.gather(1, order)
        pad = int(self.model.config.pad_token_id)
        return (ids.gather(1, order).masked_fill(~kept, pad), kept.to(mask.dtype),
                types.gather(1, order).masked_fill(~kept, 0))

    def _chunks(self, requests) -> Iterator[Tuple[List[Tuple[int, int, int]], Tuple[torch.Tensor, ...]]]:
        """Chunks of at most ``rows_per_forward`` rows (rows of several requests share a chunk)."""
        pending, parts, room = [], [], self.rows_per_forward
        for r, (b, z) in enumerate(requests):
            start = 0
            while start < z.shape[0]:
                take = min(room, z.shape[0] - start)
                pending.append((r, start, take))
                parts.append((b, self._rows(b, z[start:start + take])))
                start += take
                room -= take
                if room == 0:
                    yield pending, self._join(parts)
                    pending, parts, room = [], [], self.rows_per_forward
        if pending:
            yield pending, self._join(parts)

    def _join(self, parts) -> Tuple[torch.Tensor, ...]:
        ids = torch.cat([rows[0] for _, rows in parts])
        mask = torch.cat([rows[1] for _, rows in parts])
        types = torch.cat([rows[2] for _, rows in parts])
        examples = torch.cat([torch.full((rows[0].shape[0],), b, dtype=torch.long) for b, rows in parts])
        return ids, mask, types, examples

    def score(self, requests: Sequence[Tuple[int, torch.Tensor]]) -> List[torch.Tensor]:
        """Each distinct coalition of a request is forwarded once (LIME and KernelSHAP draw repeats)."""
        distinct = [torch.unique(z, dim=0, return_inverse=True) if z.shape[0] and z.shape[1]
                    else (z[:1], torch.zeros(z.shape[0], dtype=torch.long))  # no words: every row is the input
                    for _, z in requests]
        values = self._score([(b, unique) for (b, _), (unique, _) in zip(requests, distinct)])
        return [v[inverse] for v, (_, inverse) in zip(values, distinct)]

    def _score(self, requests: Sequence[Tuple[int, torch.Tensor]]) -> List[torch.Tensor]:
        out = [torch.empty(z.shape[0], dtype=torch.float64) for _, z in requests]
        total = sum(int(z.shape[0]) for _, z in requests)
        bar = _progress(total, self.description, self.progress)
        try:
            with torch.no_grad():
                for pending, (ids, mask, types, examples) in self._chunks(requests):
                    logits = logits_of(self.model(input_ids=ids, attention_mask=mask, token_type_ids=types))
                    values = select(logits, self.labels[examples],
                                    None if self.positions is None else self.positions[examples]).double()
                    self.forward_rows += ids.shape[0]
                    offset = 0
                    for r, start, take in pending:
                        out[r][start:start + take] = values[offset:offset + take]
                        offset += take
                    if bar is not None:
                        bar.update(ids.shape[0])
        finally:
            if bar is not None:
                bar.close()
        return out


def _progress(total: int, description: str, wanted):
    """A tqdm bar on stderr when ``wanted`` and stderr is a terminal (else None); ``wanted`` a
    run's hook (:mod:`bert_lrp.attribution.progress`): the hook, told of every chunk's rows."""
    if is_hook(wanted):
        return HookBar(wanted)
    if not wanted or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="row", file=sys.stderr, leave=False)


def scorer_for(context, option_prefix: str, description: str) -> Tuple[CoalitionScorer, List[Words]]:
    """The scorer and word groups of a method's context (its options ``<prefix>_baseline`` and
    ``rows_per_forward``; the context's word ids, special token ids and progress flag)."""
    options = context.options
    option = f"{option_prefix}_baseline"
    replacement = baseline_token(context.model, options[option], option, context.special_token_ids)
    groups = word_groups(context.inputs, context.word_ids)
    scorer = CoalitionScorer(context.model, context.inputs, context.target, context.target_position, groups,
                             replacement, options["rows_per_forward"], context.progress, description)
    return scorer, groups
