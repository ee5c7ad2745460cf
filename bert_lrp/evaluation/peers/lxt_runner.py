#!/usr/bin/env python
"""LXT 2.1 efficient AttnLRP on transformers' BERT, run in its own process.

Run as a script (``python .../bert_lrp/evaluation/peers/lxt_runner.py MODE ...``, as ``bert-lrp
benchmark --peers`` does, or ``python -m bert_lrp.evaluation.peers.lxt_runner``). LXT is an
optional peer: it is imported only here, in this process; ``bert-lrp benchmark`` skips it (and
says so) when it is not installed.

LXT monkey-patches ``torch.nn.LayerNorm.forward`` and ``torch.nn.Dropout.forward`` for the whole
process and replaces the attributes of ``transformers.models.bert.modeling_bert``, so it must never
run in the process of a test or benchmark that also uses transformers' BERT unpatched.

Under transformers 5, LXT's BERT module (a copy of the 4.x modeling code) misses three names; this
script provides them without touching site-packages:

- ``transformers.pytorch_utils.find_pruneable_heads_and_indices`` (only head pruning uses it),
- ``BertModel.get_head_mask`` (without a head mask it returned ``[None] * num_layers``),
- ``torchvision`` (``import lxt.efficient`` imports it for its ViT patches; a stub module suffices).

A fourth, ``BertModel.get_extended_attention_mask``, is needed only with ``--attention eager`` (the
default SDPA path builds its 4-D mask with ``_prepare_4d_attention_mask_for_sdpa``).

Modes (all read the weights from a Hugging Face folder: ``config.json`` + ``model.safetensors``
holding the full ``BertForSequenceClassification`` state dict, classifier included):

``relevance --model DIR --inputs IN.npz --out OUT.npz``
    IN holds ``input_ids``, ``attention_mask``, ``token_type_ids`` ``[batch, seq]`` and ``target``
    ``[batch]``. OUT gets ``relevance`` = inputs_embeds * grad ``[batch, seq, hidden]`` (LXT's
    relevance at the word embeddings), ``embedding_relevance`` = relevance at the output of the
    embedding module (after its LayerNorm), ``logits`` and ``target_logit``.

``time --model DIR --inputs IN.npz --repeats R --threads N --out OUT.json``
    Times LXT's forward+backward and, alternately in this same process, bert_lrp's ``explain(lrp)``
    and bert_lrp's plain forward+backward reference (our model runs ``F.layer_norm`` and is in eval
    mode, so LXT's process-wide patches do not touch it). Reports median/IQR per entry and the peak
    resident-memory increase of one LXT run (``/proc/self/clear_refs`` + ``VmHWM``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types
from typing import Callable, Dict, List


def _provide_missing_names() -> None:
    """The three names LXT 2.1 needs and transformers 5 / this environment lack."""
    import torch
    import transformers.pytorch_utils as pytorch_utils

    if not hasattr(pytorch_utils, "find_pruneable_heads_and_indices"):
        def find_pruneable_heads_and_indices(heads, n_heads, head_size, already_pruned_heads):
            mask = torch.ones(n_heads, head_size)
            heads = set(heads) - already_pruned_heads
            for head in heads:
                head = head - sum(1 if h < head else 0 for h in already_pruned_heads)
                mask[head] = 0
            mask = mask.view(-1).contiguous().eq(1)
            index = torch.arange(len(mask))[mask].long()
            return heads, index

        pytorch_utils.find_pruneable_heads_and_indices = find_pruneable_heads_and_indices
    try:
        import torchvision  # noqa: F401
    except ImportError:
        package = types.ModuleType("torchvision")
        models = types.ModuleType("torchvision.models")
        vision_transformer = types.ModuleType("torchvision.models.vision_transformer")
        vision_transformer.nn = torch.nn
        models.vision_transformer = vision_transformer
        package.models = models
        package.__path__ = []  # a package, so "from torchvision.models import x" resolves
        models.__path__ = []
        sys.modules.update({"torchvision": package, "torchvision.models": models,
                            "torchvision.models.vision_transformer": vision_transformer})


def build_lxt_model(folder: str, attention: str = "sdpa"):
    """transformers' BertForSequenceClassification with LXT's efficient AttnLRP patches.

    ``attention="sdpa"`` (transformers' default): LXT halves the gradient of Q and of K before
    ``scaled_dot_product_attention`` and of its output after it. ``"eager"``: ``divide_gradient``
    after Q K^T and after A V. Both are the uniform rule on the two matmuls."""
    _provide_missing_names()
    import torch
    import transformers
    from lxt.efficient import monkey_patch
    import lxt.efficient.models.bert as lxt_bert
    from safetensors.torch import load_file

    monkey_patch(transformers.models.bert.modeling_bert)
    if not hasattr(lxt_bert.BertModel, "get_head_mask"):
        lxt_bert.BertModel.get_head_mask = lambda self, head_mask, num_layers, *a, **k: (
            [None] * num_layers if head_mask is None else _unsupported_head_mask())
    if attention == "eager" and not hasattr(lxt_bert.BertModel, "get_extended_attention_mask"):
        # a fourth name, needed only on the eager path (the SDPA path builds its mask itself)
        lxt_bert.BertModel.get_extended_attention_mask = _extended_attention_mask
    config = transformers.BertConfig.from_pretrained(folder)
    if not hasattr(config, "position_embedding_type"):  # LXT's BERT reads it; transformers 5 dropped the default
        config.position_embedding_type = "absolute"
    config._attn_implementation = attention
    model = lxt_bert.BertForSequenceClassification(config)
    state = load_file(os.path.join(folder, "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise RuntimeError(f"weights do not fit LXT's BERT: missing {missing}, unexpected {unexpected}")
    # non-persistent buffers: constructing by hand under transformers 5 may leave them uninitialised
    embeddings = model.bert.embeddings
    embeddings.position_ids = torch.arange(config.max_position_embeddings).expand((1, -1)).clone()
    embeddings.token_type_ids = torch.zeros_like(embeddings.position_ids)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _extended_attention_mask(self, attention_mask, input_shape, *args, **kwargs):
    """transformers 4.x ``get_extended_attention_mask`` for an encoder: [batch, seq] 1/0 ->
    additive [batch, 1, 1, seq] with the dtype's minimum at padding."""
    import torch

    dtype = self.dtype if hasattr(self, "dtype") else torch.float32
    extended = attention_mask[:, None, None, :] if attention_mask.dim() == 2 else attention_mask[:, None, :, :]
    extended = extended.to(dtype=dtype)
    return (1.0 - extended) * torch.finfo(dtype).min


def _unsupported_head_mask():
    raise NotImplementedError("head masks are not supported by this runner")


def lxt_relevance(model, input_ids, attention_mask, token_type_ids, target):
    """One forward + one backward: LXT's relevance at inputs_embeds and at the embedding output."""
    import torch

    word = model.bert.embeddings.word_embeddings(input_ids).detach().requires_grad_(True)
    captured = {}

    def keep(module, args, output):
        output.retain_grad()
        captured["embedding_output"] = output

    handle = model.bert.embeddings.register_forward_hook(keep)
    try:
        logits = model(inputs_embeds=word, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
    finally:
        handle.remove()
    rows = torch.arange(logits.shape[0])
    score = logits[rows, target]
    score.sum().backward()
    out = captured["embedding_output"]
    return {"relevance": (word * word.grad).detach(), "embedding_relevance": (out * out.grad).detach(),
            "logits": logits.detach(), "target_logit": score.detach()}


def _load_inputs(path: str):
    import numpy as np
    import torch

    data = np.load(path)
    tensors = {k: torch.from_numpy(data[k]).long() for k in ("input_ids", "attention_mask", "token_type_ids")}
    target = torch.from_numpy(data["target"]).long() if "target" in data else None
    return tensors, target


def _stats(times: List[float]) -> Dict[str, float]:
    ordered = sorted(times)
    q = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return {"median_s": statistics.median(ordered), "iqr_s": q[2] - q[0], "repeats": len(ordered),
            "min_s": ordered[0]}


def main_relevance(args) -> int:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    model = build_lxt_model(args.model, args.attention)
    inputs, target = _load_inputs(args.inputs)
    if target is None:
        with torch.no_grad():
            target = model(**inputs).logits.argmax(-1)
    result = lxt_relevance(model, inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], target)
    np.savez(args.out, **{k: v.numpy() for k, v in result.items()}, target=target.numpy())
    return 0


def _peak_increases(entries: Dict[str, Callable[[], object]]) -> Dict[str, int]:
    """Peak resident-memory increase in bytes of one run of each entry (``/proc/self/clear_refs``
    + ``VmHWM``); none where the peak cannot be reset, or without bert_lrp (LXT alone)."""
    try:
        from bert_lrp._peak_memory import reset_peak, status_kb  # standard library only
    except ImportError:
        return {}
    memory = {}
    for name, fn in entries.items():
        if reset_peak():
            before = status_kb("VmRSS")
            fn()
            memory[name] = max(0, status_kb("VmHWM") - before) * 1024
    return memory


def main_time(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    model = build_lxt_model(args.model, args.attention)
    inputs, target = _load_inputs(args.inputs)
    with torch.no_grad():
        if target is None:
            target = model(**inputs).logits.argmax(-1)
    entries: Dict[str, Callable[[], object]] = {
        "lxt": lambda: lxt_relevance(model, inputs["input_ids"], inputs["attention_mask"],
                                     inputs["token_type_ids"], target)}
    ours_error = None
    try:
        from bert_lrp.attribution.explain import explain
        from bert_lrp.evaluation.benchmark import reference_step
        from bert_lrp.models.bert import BertForSequenceClassification

        ours = BertForSequenceClassification.from_pretrained(args.model)
        ours.eval()
        entries["ours_lrp"] = lambda: explain(ours, inputs, methods=["lrp"], target=target)
        entries["ours_reference"] = lambda: reference_step(ours, inputs, target)
    except Exception as error:  # bert_lrp absent or unable to read the folder: LXT alone
        ours_error = f"{type(error).__name__}: {error}"
    for fn in entries.values():  # warm-up
        fn()
    times: Dict[str, List[float]] = {name: [] for name in entries}
    for repeat in range(args.repeats):
        names = list(entries)
        if repeat % 2:
            names.reverse()
        for name in names:
            start = time.perf_counter()
            entries[name]()
            times[name].append(time.perf_counter() - start)
    report = {"entries": {name: _stats(t) for name, t in times.items()}, "ours_error": ours_error}
    report["peak_rss_increase_bytes"] = _peak_increases(entries)
    if "ours_reference" in times:
        ref = report["entries"]["ours_reference"]["median_s"]
        report["ratios"] = {name: report["entries"][name]["median_s"] / ref for name in times}
        report["ratios"]["ours_lrp_over_lxt"] = (report["entries"]["ours_lrp"]["median_s"]
                                                 / report["entries"]["lxt"]["median_s"])
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("relevance", "time"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True, help="folder with config.json and model.safetensors")
        p.add_argument("--inputs", required=True, help=".npz with input_ids, attention_mask, token_type_ids[, target]")
        p.add_argument("--out", required=True)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--attention", choices=("sdpa", "eager"), default="sdpa",
                       help="transformers attention implementation LXT patches (default sdpa)")
        if name == "time":
            p.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    return main_relevance(args) if args.mode == "relevance" else main_time(args)


if __name__ == "__main__":
    sys.exit(main())
