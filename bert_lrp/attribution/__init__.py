"""Attribution methods: the registry of methods and their options, ``explain`` (every shared-pass
method from one forward + one backward, the others beside), the one road from texts to
explanations (``road``) and its records, target selection and word-level scores. Importing the
package declares the built-in methods in the registry."""
from .explain import Explanation, explain
from . import lime, occlusion, shap, smoothgrad  # noqa: E402,F401  (they declare the perturbation methods)

__all__ = ["Explanation", "explain"]
