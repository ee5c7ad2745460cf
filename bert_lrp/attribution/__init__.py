"""Attribution methods: the registry of methods, ``explain`` (GS, GI and LRP from one shared
pass), LAT and rollout, Integrated Gradients, target selection, word-level scores, and the
original BERT-LRP calling convention (``legacy``). Importing the package declares the built-in
methods in the registry."""
from .explain import Explanation, explain
from . import lime, occlusion, shap, smoothgrad  # noqa: E402,F401  (they declare the perturbation methods)

__all__ = ["Explanation", "explain"]
