"""``bert-lrp benchmark --dataset FILE``: explaining a whole data set, timed against the gradient
floor in one run.

Entries (every round times each entry once, in turn; the report gives medians over rounds and
ratios to the floor measured in the same run):

- ``cli-5``: ``bert-lrp explain --jsonl`` with lrp, gi, gs, lat, rollout, end to end in a new
  process (start-up, model load, tokenization, writing included);
- ``cli-lrp``: the same with LRP alone;
- ``explain-lrp sorted`` / ``explain-5 sorted``: in-process ``explain`` on length-sorted batches;
- ``explain-lrp file order``: in-process, batches in file order (the padding cost);
- ``transformers floor``: transformers' model, forward + backward to the input embeddings of the
  target logit, length-sorted batches (the floor any gradient method pays);
- ``captum saliency``: captum's Saliency on transformers' model, same batches.

Peers that are not installed are skipped by name.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

from ..output import atomic_write_text

FIVE = "lrp,gi,gs,lat,rollout"


def read_sentences(path: Path, limit: int = 0) -> List[str]:
    """The texts of a table (its text column) or of a plain text file (one per line), as every
    command reads a file of texts (:func:`bert_lrp.data.read_file_inputs`); the first ``limit``."""
    from ..data import read_file_inputs

    lines = [item.text for item in read_file_inputs(path, "dataset")]
    return lines[:limit] if limit else lines


def _batches(tokenizer, sentences: List[str], size: int, by_length: bool) -> List[dict]:
    order = sorted(range(len(sentences)), key=lambda i: len(tokenizer.tokenize(sentences[i]))) if by_length \
        else list(range(len(sentences)))
    return [tokenizer([sentences[i] for i in order[k:k + size]]) for k in range(0, len(order), size)]


def _timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _cli_entry(model_dir: Path, text_file: Path, methods: str, batch_size: int, threads: int) -> Callable[[], None]:
    def run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            subprocess.run([sys.executable, "-m", "bert_lrp.cli", "explain", "--model", str(model_dir), "--file",
                            str(text_file), "--jsonl", str(Path(folder) / "out.jsonl"), "--methods", methods,
                            "--batch-size", str(batch_size), "--quiet"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
    return run


def _transformers_entries(model_dir: Path, sentences: List[str], batch_size: int, log) -> Dict[str, Callable]:
    try:
        import transformers
    except ImportError:
        log("transformers is not installed: the transformers floor and captum entries are skipped")
        return {}
    hf_model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    for parameter in hf_model.parameters():
        parameter.requires_grad_(False)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    order = sorted(range(len(sentences)), key=lambda i: len(hf_tokenizer.tokenize(sentences[i])))
    batches = [hf_tokenizer([sentences[i] for i in order[k:k + batch_size]], padding=True, truncation=True,
                            return_tensors="pt") for k in range(0, len(order), batch_size)]
    embeddings = hf_model.get_input_embeddings()

    def floor() -> None:
        for batch in batches:
            word = embeddings(batch["input_ids"]).requires_grad_(True)
            logits = hf_model(inputs_embeds=word, attention_mask=batch["attention_mask"],
                              token_type_ids=batch.get("token_type_ids")).logits
            torch.autograd.grad(logits.gather(1, logits.argmax(-1, keepdim=True)).sum(), word)

    entries = {"transformers floor": floor}
    try:
        from captum.attr import Saliency
    except ImportError:
        log("captum is not installed: the captum entry is skipped")
        return entries

    def saliency() -> None:
        for batch in batches:
            word = embeddings(batch["input_ids"])
            forward = lambda e: hf_model(inputs_embeds=e, attention_mask=batch["attention_mask"],  # noqa: E731
                                         token_type_ids=batch.get("token_type_ids")).logits
            target = forward(word).argmax(-1)
            Saliency(forward).attribute(word, target=target, abs=False)

    entries["captum saliency"] = saliency
    return entries


def run_dataset_benchmark(model_dir: Path, data: Path, out: Path, rounds: int = 3, batch_size: int = 64,
                          threads: int = 2, limit: int = 0, log=print) -> dict:
    """Time every entry ``rounds`` times in turn; write ``dataset.json`` and ``dataset.md`` to ``out``.
    The run uses ``threads`` torch threads and gives the caller's back at the end."""
    threads_before = torch.get_num_threads()  # the run sets its own; the caller's are given back
    torch.set_num_threads(threads)
    try:
        return _run_dataset_benchmark(model_dir, data, out, rounds, batch_size, threads, limit, log)
    finally:
        torch.set_num_threads(threads_before)


def _run_dataset_benchmark(model_dir: Path, data: Path, out: Path, rounds: int, batch_size: int, threads: int,
                           limit: int, log) -> dict:
    from ..attribution.explain import explain
    from ..models.loading import load_model

    sentences = read_sentences(data, limit)
    model, tokenizer = load_model(model_dir)
    sorted_batches = _batches(tokenizer, sentences, batch_size, by_length=True)
    file_batches = _batches(tokenizer, sentences, batch_size, by_length=False)
    with tempfile.TemporaryDirectory() as folder:
        text_file = Path(folder) / "texts.txt"
        atomic_write_text(text_file, "\n".join(sentences) + "\n")
        entries: Dict[str, Callable] = {
            "cli-5 (--jsonl, process start included)": _cli_entry(model_dir, text_file, FIVE, batch_size, threads),
            "cli-lrp (--jsonl, process start included)": _cli_entry(model_dir, text_file, "lrp", batch_size, threads),
            "explain-lrp sorted": lambda: [explain(model, b, ["lrp"]) for b in sorted_batches],
            "explain-5 sorted": lambda: [explain(model, b, FIVE.split(",")) for b in sorted_batches],
            "explain-lrp file order": lambda: [explain(model, b, ["lrp"]) for b in file_batches],
            **_transformers_entries(model_dir, sentences, batch_size, log),
        }
        for function in entries.values():  # warm-up (and the CLI's first start)
            function()
        times: Dict[str, List[float]] = {name: [] for name in entries}
        for round_number in range(rounds):
            for name, function in entries.items():
                times[name].append(_timed(function))
            log(f"round {round_number + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()))
    medians = {name: statistics.median(values) for name, values in times.items()}
    floor = medians.get("transformers floor")
    result = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": threads,
                          "cpu_count": os.cpu_count()},
              "config": {"model": Path(model_dir).name, "data": Path(data).name, "sentences": len(sentences),
                         "batch_size": batch_size, "rounds": rounds},
              "median_s": medians, "times_s": times,
              "ratio_to_floor": {name: value / floor for name, value in medians.items()} if floor else {}}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "dataset.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "dataset.md", dataset_markdown(result))
    return result


def dataset_markdown(result: dict) -> str:
    config = result["config"]
    lines = [f"# Explaining a data set: {config['sentences']} sentences of {config['data']}, `{config['model']}`", "",
             f"{result['machine']['threads']} threads, torch {result['machine']['torch']}, batches of "
             f"{config['batch_size']}, median of {config['rounds']} alternating rounds; ratio = median / median of "
             "transformers' forward+backward floor in the same run", "",
             "| job | time (s) | / floor |", "|---|---:|---:|"]
    for name, seconds in result["median_s"].items():
        ratio = result["ratio_to_floor"].get(name)
        lines.append(f"| {name} | {seconds:.2f} | {'' if ratio is None else f'{ratio:.2f}'} |")
    return "\n".join(lines) + "\n"
