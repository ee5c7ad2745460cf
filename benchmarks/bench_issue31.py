"""Issue 31's table: each method's cost in times the floor, side by side in one process.

The **floor** is transformers' forward + backward of the target logit to the input (word)
embeddings, parameters frozen: what any one-backward method pays. Every entry of a cell is timed
once per round, the order reversed every other round (``benchmarks/alternating.py``), medians of
the rounds; ratios are median / median floor. Entries:

- ``floor``: transformers' ``BertForSequenceClassification`` (SDPA attention);
- ``lxt``: LXT 2.1's efficient AttnLRP on transformers' BERT (its LayerNorm patch is switched on
  for its own calls only, so the floor runs unpatched in the same process);
- ``attnlrp``, ``cp-lrp``, ``tuned`` (the model's ``lrp_composite.json``), ``bert-lrp``: ``explain``
  with that LRP composite;
- ``gs+gi+lrp``: GS, GI and AttnLRP in one call; ``two presets``: AttnLRP and CP-LRP in one call;
- ``bert-lrp bound``: the floor plus the products the ``bert-lrp`` rules cannot do without (per
  linear layer: ``z+ = x W+^T``, the two backward products of alpha-beta and the Jacobian path's
  ``g W``; per attention layer: the Jacobian path's second attention backward), timed as literal
  matrix products on the model's weights. ``bert-lrp / bound`` is how close the preset comes;
- ``gs+gi+lrp bound``: AttnLRP alone plus the kernels a second (gradient) backward cannot do
  without (per linear layer ``g W``; per encoder layer one attention backward, one GELU backward
  and two LayerNorm backwards), timed as literal calls at the cell's size: ``gs+gi+lrp / bound``
  is how close the shared pass comes to one forward and two backwards.

    python benchmarks/bench_issue31.py --out benchmarks/results          # 11 rounds, 2 threads
    python benchmarks/bench_issue31.py --quick --out /tmp/quick           # 2 rounds, tiny cells
    python benchmarks/bench_issue31.py --clock cpu --threads 1 --out DIR  # a busy machine: CPU time

``--clock cpu`` times each call by the process's CPU time instead of the wall clock: on a machine
whose cores other jobs share, the wall clock counts the waits for a core, CPU time only the work
(with one thread; more threads add their spinning while they wait for each other).

Writes ``NAME.json`` (every time, machine, settings) and ``NAME.md`` (the table) to ``--out`` (``--name``, default ``issue31``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's bert_lrp
from alternating import alternating_times  # noqa: E402  (benchmarks/alternating.py, beside this script)
from bert_lrp import BertForSequenceClassification, BertTokenizer, explain  # noqa: E402
from bert_lrp.attribution.explain import frozen_parameters  # noqa: E402
from bert_lrp.rules import kernels  # noqa: E402

OURS = {  # entry -> explain's methods
    "attnlrp": ["lrp:attnlrp"],
    "cp-lrp": ["lrp:cp-lrp"],
    "tuned": ["lrp:tuned"],
    "gs+gi+lrp": ["gs", "gi", "lrp:attnlrp"],
    "two presets": ["lrp:attnlrp", "lrp:cp-lrp"],
    "bert-lrp": ["lrp:bert-lrp"],
}
COLUMNS = ("attnlrp", "lxt", "cp-lrp", "tuned", "gs+gi+lrp", "gs+gi+lrp bound", "two presets", "bert-lrp",
           "bert-lrp bound")


def sst2_text() -> str:
    """The 200 SST-2 dev sentences shipped with the tests, joined."""
    lines = (REPO / "tests" / "fixtures" / "sst2" / "dev_sample.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return " ".join(line.split("\t")[0] for line in lines)


def cell_inputs(tokenizer, text: str, batch: int, length: int) -> Dict[str, torch.Tensor]:
    """``batch`` rows of exactly ``length`` word pieces ([CLS] ... [SEP]) of ``text``, each row
    starting elsewhere in it; no padding."""
    ids = tokenizer([text], max_length=100_000)["input_ids"][0].tolist()
    body, rows = ids[1:-1], []
    for row in range(batch):
        start = (row * 37) % max(1, len(body) - length)
        rows.append(ids[:1] + body[start:start + length - 2] + ids[-1:])
    input_ids = torch.tensor(rows)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "token_type_ids": torch.zeros_like(input_ids)}


def transformers_model(folder: Path):
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def floor_step(model, inputs, target) -> torch.Tensor:
    word = model.bert.embeddings.word_embeddings(inputs["input_ids"]).detach().requires_grad_(True)
    logits = model(inputs_embeds=word, attention_mask=inputs["attention_mask"],
                   token_type_ids=inputs["token_type_ids"]).logits
    (grad,) = torch.autograd.grad(logits.gather(1, target.view(-1, 1)).sum(), word)
    return grad


class LxtPeer:
    """LXT 2.1's efficient AttnLRP, its process-wide patches applied only inside :meth:`step`."""

    def __init__(self, folder: Path) -> None:
        import transformers.models.bert.modeling_bert as modeling_bert

        from bert_lrp.evaluation.peers.lxt_runner import build_lxt_model, lxt_relevance

        saved = (torch.nn.LayerNorm.forward, torch.nn.Dropout.forward, dict(vars(modeling_bert)))
        self.model = build_lxt_model(str(folder))  # patches LayerNorm, Dropout and transformers' BERT module
        self.patched = (torch.nn.LayerNorm.forward, torch.nn.Dropout.forward)
        torch.nn.LayerNorm.forward, torch.nn.Dropout.forward = saved[0], saved[1]
        vars(modeling_bert).clear()
        vars(modeling_bert).update(saved[2])
        self.original = saved[:2]
        self.relevance = lxt_relevance

    @contextlib.contextmanager
    def patches(self) -> Iterator[None]:
        torch.nn.LayerNorm.forward, torch.nn.Dropout.forward = self.patched
        try:
            yield
        finally:
            torch.nn.LayerNorm.forward, torch.nn.Dropout.forward = self.original

    def step(self, inputs, target) -> None:
        with self.patches():
            self.relevance(self.model, inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"],
                           target)


def bert_lrp_extra_products(model, batch: int, length: int) -> Callable[[], None]:
    """The products the ``bert-lrp`` preset needs beyond the floor, on the model's weights and
    random activations of the right shapes: per linear layer ``x W+^T`` and two ``s W`` (alpha-beta;
    ``z- = y - z+`` needs no product) and the Jacobian path's ``g W``; per attention layer one more
    attention backward (the Jacobian path's)."""
    generator = torch.Generator().manual_seed(0)
    layers = []
    for layer in model.base_model.encoder.layer:
        attention = layer.attention.self
        linears = [attention.query, attention.key, attention.value, layer.attention.output.dense,
                   layer.intermediate.dense, layer.output.dense]
        weights = [(m.weight.detach(), m.weight.detach().clamp(min=0)) for m in linears]
        inputs = [torch.randn(batch * length, w.shape[1], generator=generator) for w, _ in weights]
        signals = [torch.randn(batch * length, w.shape[0], generator=generator) for w, _ in weights]
        heads, size = attention.num_heads, attention.head_size
        qkv = [torch.randn(batch, heads, length, size, generator=generator) for _ in range(3)]
        context, logsumexp = kernels.flash_attention_forward(*qkv, None)
        layers.append((weights, inputs, signals, qkv, context, logsumexp))

    def run() -> None:
        for weights, inputs, signals, qkv, context, logsumexp in layers:
            for (weight, positive), x, s in zip(weights, inputs, signals):
                F.linear(x, positive)      # z+
                torch.mm(s, positive)      # alpha (R / z+) W+
                torch.mm(s, weight)        # beta (R / z-) W- (one addmm with the above in the rule)
                torch.mm(s, weight)        # the Jacobian path's g W
            kernels.flash_attention_backward(context, *qkv, None, context, logsumexp)
    return run


def gradient_backward_kernels(model, batch: int, length: int) -> Callable[[], None]:
    """The kernels of one more plain-gradient backward through the encoder and the heads, on the
    model's weights and random signals of the cell's shapes: per linear layer ``g W``; per encoder
    layer one attention backward, one GELU backward and two LayerNorm backwards."""
    generator = torch.Generator().manual_seed(1)
    rows = batch * length
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    products = [(torch.randn(rows, m.weight.shape[0], generator=generator), m.weight.detach()) for m in linears]
    layers = []
    for layer in model.base_model.encoder.layer:
        attention = layer.attention.self
        qkv = [torch.randn(batch, attention.num_heads, length, attention.head_size, generator=generator)
               for _ in range(3)]
        context, logsumexp = kernels.flash_attention_forward(*qkv, None)
        hidden = layer.output.dense.weight.shape[0]
        intermediate = torch.randn(batch, length, layer.intermediate.dense.weight.shape[0], generator=generator)
        normed = torch.randn(batch, length, hidden, generator=generator)
        mean, inv_std = normed.mean(-1, keepdim=True), normed.var(-1, keepdim=True).add(1e-12).rsqrt()
        layers.append((qkv, context, logsumexp, intermediate, normed, mean, inv_std,
                       layer.output.LayerNorm.weight.detach()))

    def run() -> None:
        for signal, weight in products:
            torch.mm(signal, weight)
        for qkv, context, logsumexp, intermediate, normed, mean, inv_std, weight in layers:
            kernels.flash_attention_backward(context, *qkv, None, context, logsumexp)
            kernels.gelu_backward(intermediate, intermediate, approximate="none")
            for _ in range(2):
                kernels.layer_norm_backward(normed, normed, mean, inv_std, weight)
    return run


def measure(model, tokenizer, hf_model, lxt: Optional[LxtPeer], cells: List[Tuple[int, int]], rounds: int,
            warmup: int, clock: Callable[[], float] = time.perf_counter, log=print) -> List[dict]:
    text = sst2_text()
    rows = []
    for batch, length in cells:
        inputs = cell_inputs(tokenizer, text, batch, length)
        target = torch.zeros(batch, dtype=torch.long)
        targets = target.tolist()
        extra = bert_lrp_extra_products(model, batch, length)
        second_backward = gradient_backward_kernels(model, batch, length)
        entries: Dict[str, Callable[[], object]] = {"floor": lambda: floor_step(hf_model, inputs, target)}
        if lxt is not None:
            entries["lxt"] = lambda: lxt.step(inputs, target)
        for name, methods in OURS.items():
            entries[name] = lambda methods=methods: explain(model, inputs, methods=methods, target=targets)
        entries["bert-lrp bound"] = lambda: (floor_step(hf_model, inputs, target), extra())
        entries["gs+gi+lrp bound"] = lambda: (explain(model, inputs, methods=OURS["attnlrp"], target=targets),
                                              second_backward())
        times = alternating_times(entries, rounds, warmup, clock)
        medians = {name: statistics.median(values) for name, values in times.items()}
        ratios = {name: medians[name] / medians["floor"] for name in medians}
        derived = {"gs+gi+lrp / attnlrp": medians["gs+gi+lrp"] / medians["attnlrp"],
                   "two presets / attnlrp": medians["two presets"] / medians["attnlrp"],
                   "gs+gi+lrp / bound": medians["gs+gi+lrp"] / medians["gs+gi+lrp bound"],
                   "bert-lrp / bound": medians["bert-lrp"] / medians["bert-lrp bound"]}
        if "lxt" in medians:
            derived["attnlrp / lxt"] = medians["attnlrp"] / medians["lxt"]
        rows.append({"batch": batch, "length": length, "times_s": times, "median_s": medians, "ratio": ratios,
                     "derived": derived})
        log(f"{batch}x{length}: floor {medians['floor'] * 1e3:.1f} ms; "
            + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items() if k != "floor")
            + "; " + ", ".join(f"{k} {v:.2f}" for k, v in derived.items()))
    return rows


def table(rows: List[dict], rounds: int, threads: int, load: Tuple[str, str], clock: str = "wall") -> str:
    columns = [c for c in COLUMNS if any(c in row["ratio"] for row in rows)]
    lines = [f"# Issue 31: cost in times the floor", "",
             f"Median of {rounds} alternating rounds in one process ({clock} clock), {threads} threads, "
             f"torch {torch.__version__}; "
             f"the floor is transformers' forward + backward to the input embeddings. Load average before / after: "
             f"{load[0]} / {load[1]}.", "",
             "| cell (batch x tokens) | floor (ms) | " + " | ".join(columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    for row in rows:
        lines.append(f"| {row['batch']}x{row['length']} | {row['median_s']['floor'] * 1e3:.1f} | "
                     + " | ".join(f"{row['ratio'][c]:.2f}" if c in row["ratio"] else "-" for c in columns) + " |")
    names = list(rows[0]["derived"]) if rows else []
    lines += ["", "| cell | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for row in rows:
        lines.append(f"| {row['batch']}x{row['length']} | "
                     + " | ".join(f"{row['derived'][n]:.2f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "minilm-sst2"),
                        help="a Hugging Face folder of a BERT sequence classifier (default: the shipped MiniLM)")
    parser.add_argument("--cells", default="1x32,1x128,8x128", help="batch x tokens, comma-separated")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-lxt", action="store_true", help="leave LXT out")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall clock (default) or the process's CPU time (a machine shared with other jobs)")
    parser.add_argument("--name", default="issue31", help="file names of the results (default issue31)")
    parser.add_argument("--quick", action="store_true", help="2 rounds, 1 warm-up, cells 1x8 and 2x16")
    parser.add_argument("--out", required=True, help="folder for NAME.json and NAME.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.warmup, args.cells = 2, 1, "1x8,2x16"
    cells = [tuple(int(v) for v in cell.split("x")) for cell in args.cells.split(",")]
    torch.set_num_threads(args.threads)
    folder = Path(args.model)
    model = BertForSequenceClassification.from_pretrained(folder).float().eval()
    tokenizer = BertTokenizer.from_pretrained(folder)
    hf_model = transformers_model(folder)
    messages = []
    lxt = None
    if not args.no_lxt:
        try:
            lxt = LxtPeer(folder)
        except ImportError as error:
            messages.append(f"LXT left out: {error}")
            print(messages[-1])
    load_before = _load()
    with frozen_parameters(model):
        clock = time.perf_counter if args.clock == "wall" else time.process_time
        rows = measure(model, tokenizer, hf_model, lxt, cells, args.rounds, args.warmup, clock)
    load_after = _load()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    markdown = table(rows, args.rounds, args.threads, (load_before, load_after), args.clock)
    info = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
            "processor": platform.processor(), "model": folder.name, "rounds": args.rounds, "warmup": args.warmup,
            "quick": args.quick, "clock": args.clock, "load_before": load_before, "load_after": load_after, "messages": messages}
    (out / f"{args.name}.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    (out / f"{args.name}.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
