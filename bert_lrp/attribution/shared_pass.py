"""The methods read from the shared forward + backward pass: GS, GI and LRP (one entry per preset,
and ``lrp`` whose preset is its ``rule`` option). Each names a composite and a readout
(:class:`~bert_lrp.attribution.registry.Method`); ``explain`` stacks one copy per distinct
composite, so ``--methods lrp:attnlrp,lrp:cp-lrp,gi`` costs one forward and one backward."""
from __future__ import annotations

from ..rules.composites import GRADIENT, LRP_PRESETS, PRESETS, Composite
from .registry import Method, Option, register

RULE = Option("rule", str, "attnlrp", "preset of the lrp method, or tuned: the model's lrp_composite.json "
              "(bert-lrp tune-lrp)", choices=LRP_PRESETS + ("tuned",), accepts=(Composite,))
LRP_COLORS = {"attnlrp": "#d62728", "cp-lrp": "#ff9896", "bert-lrp": "#7f0000", "tuned": "#9467bd"}

register(Method("gradient", "GS (gradient)", aliases=("gs", "saliency"), composite=lambda options: GRADIENT,
                readout="gradient", reduction="l2", color="#2ca02c",
                summary="gradient at the embedding output (Wu & Ong's GS)"))
register(Method("gradient_x_input", "GI (gradient x input)", aliases=("gi", "input_x_gradient"),
                composite=lambda options: GRADIENT, readout="gradient_x_input", reduction="sum", color="#1f77b4",
                summary="gradient x embedding output"))
register(Method("lrp", "LRP", composite=lambda options: options["rule"], readout="relevance", reduction="sum",
                options=(RULE,), color=LRP_COLORS["attnlrp"],
                summary=f"layer-wise relevance propagation, preset --rule ({', '.join(LRP_PRESETS)}, tuned)"))
for _preset in LRP_PRESETS:
    register(Method(f"lrp:{_preset}", f"LRP ({_preset})", composite=lambda options, c=PRESETS[_preset]: c,
                    readout="relevance", reduction="sum", color=LRP_COLORS.get(_preset, "#d62728"),
                    summary=f"LRP with the {_preset} preset (several presets share one pass)"))
register(Method("lrp:tuned", "LRP (tuned)", composite=lambda options: "tuned", readout="relevance", reduction="sum",
                color=LRP_COLORS["tuned"], summary="LRP with the model's tuned composite (bert-lrp tune-lrp)"))
