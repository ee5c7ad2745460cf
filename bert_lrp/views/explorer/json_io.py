"""JSON in and out of the explorer's HTTP layer, strict where Python's :mod:`json` is lenient.

Read (:func:`parse_json`): a request body must be UTF-8 JSON without ``NaN``/``Infinity`` (nor a
number too large for a float, such as ``1e400``), without a lone UTF-16 surrogate in any string or
key (``"\\ud800"`` decodes to a ``str`` that cannot be written back as UTF-8), and nested at most
:data:`MAX_DEPTH` deep; anything else is a :class:`BadJson` whose message says what is wrong.
Written (:func:`json_bytes`): compact UTF-8; a float that is not finite becomes ``null`` (JSON has
no such number; a conservation ratio of a logit of exactly 0 is one).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64  # arrays/objects inside one another; an explain body is 3 deep
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadJson(ValueError):
    """A request body that is not the JSON the explorer reads (one line: what is wrong)."""


def _refuse_constant(name: str) -> Any:
    raise BadJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJson(f"the number {text[:40]} is too large")
    return value


def parse_json(raw: bytes) -> Any:
    """The JSON value of ``raw`` (UTF-8), checked as the module docstring says; else :class:`BadJson`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadJson(f"the request body is not UTF-8 (byte {error.start})") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadJson(f"the request body is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        raise BadJson(f"the request body is not JSON ({error.msg} at line {error.lineno} column {error.colno})") \
            from None
    except BadJson:
        raise
    except ValueError as error:  # e.g. an integer of more than 4,300 digits
        raise BadJson(f"the request body is not JSON ({' '.join(str(error).split())[:120]})") from None
    _check_tree(value)
    return value


def _check_tree(value: Any) -> None:
    """Depth and strings of a parsed value, without recursion (a deep value must not overflow the stack)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                raise BadJson("the request body holds a lone surrogate (\\ud800-\\udfff) in a string")
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise BadJson(f"the request body is nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
                pending.extend((child, depth + 1) for child in item.values())
            else:
                pending.extend((child, depth + 1) for child in item)


def finite(value: Any) -> Any:
    """``value`` with every float that is not finite replaced by None (dicts, lists and tuples walked)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def json_bytes(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON, as browsers read it (no NaN/Infinity: those become null)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(finite(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8", "backslashreplace")  # a lone surrogate of a data file: its JSON escape
