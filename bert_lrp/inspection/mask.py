"""The masked-word view (as exBERT shows it): what a masked-LM BERT predicts for ``[MASK]``, layer
by layer, and where the masked position attends.

**Output**: the model's masked-LM logits at the masked position, softmax, top-k tokens.

**Logit lens** (per layer): the model's *own* masked-LM head (``cls.predictions``: dense,
activation, LayerNorm, then the decoder tied to the word embeddings, plus its bias) applied to the
hidden state of the masked position after each layer, ``hidden_states[l]`` for ``l = 0`` (the
embedding output) to ``L``. At ``l = L`` this is exactly the output. The head was trained on the
last layer only, so earlier readouts show what the residual stream already holds *in the
output's vocabulary space*; low probabilities at early layers mean "not yet readable by this
head", not "unknown to the layer". Each layer also reports the probability and rank of the
output's top-1 token.

**Attention from the masked position**: for layer ``l`` and head ``h``, the row
``attentions[l - 1][0, h - 1, mask_position, :]`` (the probabilities with which the masked
token's query attends to every token, summing to 1), with its top attended tokens; and the mean
over heads.

Layers and heads are numbered from 1 (layer 0 = the embedding output, in the logit lens only).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import torch

from ..errors import RequestError, UsageError

MLM_ARCHITECTURES = ("BertForMaskedLM", "BertForPreTraining", "RobertaForMaskedLM", "DistilBertForMaskedLM")
HOW_TO_GET_AN_MLM = ("convert a Google BERT TensorFlow checkpoint (e.g. uncased_L-12_H-768_A-12) with "
                     "`bert-lrp convert`, or save a transformers BertForMaskedLM with save_pretrained")

__all__ = ["load_masked_lm", "mask_positions", "masked_word_view", "logit_lens", "top_tokens"]


def load_masked_lm(directory: Path, field: str = "model"):
    """The masked-LM model in ``directory`` (``BertForMaskedLM`` or ``BertForPreTraining``,
    ``RobertaForMaskedLM``, ``DistilBertForMaskedLM``, as ``config.json``'s ``architectures`` says;
    the family's masked LM when it says nothing) and its tokenizer, loaded by
    :func:`bert_lrp.models.loading.load_pretrained`. A model without masked-LM head weights is a
    :class:`~bert_lrp.errors.RequestError` of ``field`` (the request's name for the model) naming
    the class found and how to get a masked LM."""
    from ..models.auto import model_class
    from ..models.bert import BertForPreTraining
    from ..models.loading import load_pretrained, read_config

    config = read_config(directory, field)
    architectures = list(config.extra.get("architectures") or [])
    found = [name for name in architectures if name in MLM_ARCHITECTURES]
    if architectures and not found:
        raise RequestError(field, f"{directory}: the model is a {architectures[0]} (config.json architectures), "
                                  "which has no masked-LM head; inspect mask needs one of "
                                  f"{', '.join(MLM_ARCHITECTURES)}: {HOW_TO_GET_AN_MLM}")
    try:
        cls = BertForPreTraining if found == ["BertForPreTraining"] else model_class(config.model_type, "masked_lm")
    except Exception:  # noqa: BLE001 -- a family without a masked LM (ELECTRA's discriminator)
        raise RequestError(field, f"{directory}: {config.model_type} models have no masked-LM head here; inspect "
                                  f"mask needs one of {', '.join(MLM_ARCHITECTURES)}: {HOW_TO_GET_AN_MLM}") from None
    logger = logging.getLogger("bert_lrp")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "no weights for the head, newly initialised" becomes our error below
    try:
        model, tokenizer, info = load_pretrained(directory, cls, config=config)
    finally:
        logger.setLevel(level)
    head = ("cls.predictions", "lm_head", "vocab_transform", "vocab_layer_norm", "vocab_projector")
    missing = [key for key in info.newly_initialized if key.startswith(head)]
    if missing:
        raise RequestError(field, f"{directory}: the checkpoint has no masked-LM head weights ({missing[0]}, ...; "
                                  f"loaded as {cls.__name__}); inspect mask needs a trained masked-LM head: "
                                  f"{HOW_TO_GET_AN_MLM}")
    return model, tokenizer


def mask_positions(input_ids: torch.Tensor, mask_token_id: int) -> List[int]:
    """Positions of ``[MASK]`` in one row of token ids ``[seq]``."""
    return [int(p) for p in (input_ids == mask_token_id).nonzero().flatten()]


def logit_lens(model, hidden_states: Sequence[torch.Tensor], index: int, position: int) -> torch.Tensor:
    """The masked-LM head of ``model`` applied to ``hidden_states[l][index, position]`` for every
    ``l``: logits ``[L + 1, vocab]`` (row ``l``: after layer ``l``; row 0: the embedding output)."""
    stacked = torch.stack([h[index, position] for h in hidden_states])        # [L + 1, hidden]
    return model.vocabulary_logits(stacked)                                   # [L + 1, vocab]


def top_tokens(logits: torch.Tensor, tokenizer, k: int) -> List[dict]:
    """Softmax of ``logits [vocab]`` and its ``k`` most probable tokens, best first:
    ``{"token", "id", "probability", "logit"}``."""
    probabilities = torch.softmax(logits.double(), -1)
    values, ids = probabilities.topk(min(k, probabilities.numel()))
    tokens = tokenizer.convert_ids_to_tokens([int(i) for i in ids])
    return [{"token": token, "id": int(i), "probability": float(p), "logit": float(logits[int(i)])}
            for token, i, p in zip(tokens, ids, values)]


def _attended(row: torch.Tensor, tokens: Sequence[str], k: int) -> List[dict]:
    values, positions = row.topk(min(k, row.numel()))
    return [{"position": int(p), "token": tokens[int(p)], "weight": float(v)} for v, p in zip(values, positions)]


@torch.no_grad()
def masked_word_view(model, tokenizer, text: str, top_k: int = 5, top_attended: int = 3,
                     warn: Optional[Callable[[str], None]] = None) -> dict:
    """The masked-word view of ``text`` (one or more ``[MASK]``) as a JSON-ready dict.

    ``{"text", "tokens", "layers", "heads", "masks": [{"position", "output": top-k,
    "logit_lens": [{"layer", "top", "output_top_probability", "output_top_rank"}] (layer 0..L),
    "attention": [{"layer", "mean": {"row", "top"}, "heads": [{"head", "row", "top"}]}] (1..L)}]}``;
    ``row`` is the attention from the masked position to each of the ``len(tokens)`` tokens.
    """
    from ..attribution.road import TextInput, encode_whole, encoded_batches, model_limit

    item = TextInput(text, None, "text")
    mask = tokenizer.mask_token
    whole = encode_whole(tokenizer, item)
    everywhere = mask_positions(whole["input_ids"][0], tokenizer.mask_token_id)
    if not everywhere:
        raise UsageError(f"the text has no {mask} token: write {mask} where the hidden word goes, e.g. "
                         f"\"The girl ran to a local pub to {mask} the din of her city.\"")
    limit = model_limit(model, tokenizer)
    beyond = [p for p in everywhere if p >= limit - 1]  # the last position holds the closing special token
    if beyond:
        raise UsageError(f"{mask} at token {beyond[0]} is beyond the model's {limit} positions (the text has "
                         f"{len(whole.tokens[0]):,} tokens); shorten the text before it")
    _, encoding = next(encoded_batches(model, tokenizer, [item], 1, warn=warn))
    length = int(encoding["attention_mask"][0].sum())
    tokens = list(encoding.tokens[0][:length])
    positions = mask_positions(encoding["input_ids"][0, :length], tokenizer.mask_token_id)
    output = model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"],
                   token_type_ids=encoding["token_type_ids"], output_hidden_states=True, output_attentions=True)
    logits = output.logits                                                   # [1, seq, vocab]
    masks = []
    for position in positions:
        final = top_tokens(logits[0, position], tokenizer, top_k)
        best = final[0]["id"]
        lens = []
        for layer, row in enumerate(logit_lens(model, output.hidden_states, 0, position)):
            probabilities = torch.softmax(row.double(), -1)
            lens.append({"layer": layer, "top": top_tokens(row, tokenizer, top_k),
                         "output_top_probability": float(probabilities[best]),
                         "output_top_rank": int((probabilities > probabilities[best]).sum()) + 1})
        attention = []
        for layer, probabilities in enumerate(output.attentions, 1):            # [1, heads, seq, seq]
            rows = probabilities[0, :, position, :length].double()              # [heads, seq]
            mean = rows.mean(0)
            attention.append({
                "layer": layer,
                "mean": {"row": [float(v) for v in mean], "top": _attended(mean, tokens, top_attended)},
                "heads": [{"head": head, "row": [float(v) for v in row], "top": _attended(row, tokens, top_attended)}
                          for head, row in enumerate(rows, 1)]})
        masks.append({"position": position, "output": final, "logit_lens": lens, "attention": attention})
    return {"text": text, "tokens": tokens, "layers": len(output.attentions),
            "heads": int(output.attentions[0].shape[1]), "top_k": top_k, "masks": masks}


# ------------------------------------------------------------------ terminal
def _tops(entries: Sequence[dict], key: str = "probability") -> str:
    from .._text import printable

    return ", ".join(f"{printable(e['token'])} {e[key]:.3f}" for e in entries)


def render_terminal(report: dict, all_heads: bool = False) -> str:
    """Text view of :func:`masked_word_view`'s report; input text goes through ``printable``."""
    from .._text import printable
    from .._text import shorten

    lines = [f"text: {printable(shorten(report['text']))}"]
    for mask in report["masks"]:
        lines.append(f"[MASK] at token {mask['position']}: output top-{report['top_k']}: {_tops(mask['output'])}")
        best = printable(mask["output"][0]["token"])
        lines.append(f"logit lens (the masked-LM head applied to each layer's hidden state; p and rank of "
                     f"'{best}' in brackets):")
        for entry in mask["logit_lens"]:
            name = "embeddings" if entry["layer"] == 0 else f"layer {entry['layer']}"
            lines.append(f"  {name:<10}  {_tops(entry['top'])}   [{best}: p {entry['output_top_probability']:.3f}, "
                         f"rank {entry['output_top_rank']}]")
        lines.append("attention from [MASK] (top tokens; mean over heads" + (", then each head):" if all_heads else
                                                                             "; --all-heads for each head):"))
        for entry in mask["attention"]:
            lines.append(f"  layer {entry['layer']:<3}  mean: {_tops(entry['mean']['top'], 'weight')}")
            if all_heads:
                for head in entry["heads"]:
                    lines.append(f"    head {head['head']:<3}  {_tops(head['top'], 'weight')}")
    return "\n".join(lines)
