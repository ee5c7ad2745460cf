"""Method variants of an evaluation: a perturbation method with another baseline, scored beside its
default (``shap`` and ``shap[baseline=mask]``).

A perturbation method (SHAP, LIME, occlusion) fills absent words with a baseline token, ``[PAD]``
by default, while ABPC and ERASER's AOPC (:mod:`bert_lrp.evaluation.faithfulness`) delete words
with ``[MASK]``: the method is then scored on a deletion it did not simulate. ``bert-lrp evaluate``
scores each perturbation method both ways, with its default and with the *matched* baseline (the
deletion being scored), so that a comparison with it is made at its best (issue 30).
"""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Tuple

BASELINE_OPTIONS = {"shap": "shap_baseline", "lime": "lime_baseline", "occlusion": "occlusion_baseline"}
MATCHED_BASELINE = "mask"  # the metrics' deletion: ABPC and AOPC replace words by [MASK]
_VARIANT = re.compile(r"^\s*([^\[\]\s]+)\s*\[\s*baseline\s*=\s*([a-z]+)\s*\]\s*$")


def parse(spec: str) -> Tuple[str, Dict[str, str]]:
    """``"shap[baseline=mask]"`` -> ``("shap", {"shap_baseline": "mask"})``; a plain name -> ``(name, {})``.
    A variant of a method without a baseline raises ValueError naming it."""
    match = _VARIANT.match(spec)
    if match is None:
        if "[" in spec or "]" in spec:
            raise ValueError(f"{spec!r}: a variant is written METHOD[baseline=VALUE], e.g. shap[baseline=mask]")
        return spec.strip(), {}
    name, value = match.group(1), match.group(2)
    if name not in BASELINE_OPTIONS:
        raise ValueError(f"{spec!r}: only {', '.join(BASELINE_OPTIONS)} take a baseline")
    return name, {BASELINE_OPTIONS[name]: value}


def spec(name: str, baseline: str) -> str:
    return f"{name}[baseline={baseline}]"


def with_matched_baselines(methods: List[str], options: Mapping[str, object]) -> List[str]:
    """``methods`` (canonical names or variants) with, after each perturbation method whose baseline
    (``options`` or its default, [PAD]) is not the matched one, its matched variant."""
    out: List[str] = []
    for method in methods:
        if method not in out:
            out.append(method)
        name, own = parse(method)
        if name in BASELINE_OPTIONS and not own:
            baseline = str(options.get(BASELINE_OPTIONS[name]) or "pad")
            matched = spec(name, MATCHED_BASELINE)
            if baseline != MATCHED_BASELINE and matched not in out:
                out.append(matched)
    return out


def call(method: str, options: Mapping[str, object]) -> Tuple[str, Dict[str, object]]:
    """The registered method a (variant) name runs and the options it runs with (None: the plan's own)."""
    name, own = parse(method)
    return name, ({**options, **own} if own else None)
