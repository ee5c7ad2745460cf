"""The checks every explorer request shares: a JSON body's fields and their types, a request
error of the library as the explorer's :class:`~bert_lrp.views.explorer.errors.ApiError` naming
the JSON field, and the registry's options as the page reads them."""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, Optional, Sequence

from ...attribution import registry
from ...errors import RequestError, UsageError
from .errors import ApiError

EXPLAIN_FIELDS = {"model": str, "text": str, "pair": (str, type(None)), "methods": list, "target": (str, type(None)),
                  "options": dict, "word": (str, type(None))}


def option_info(option: registry.Option) -> Dict[str, Any]:
    """A method option as ``/api/methods`` lists it (name, flag, kind, default, range, choices, help)."""
    default = option.default if isinstance(option.default, (str, int, float, bool)) or option.default is None \
        else str(option.default)
    return {"name": option.name, "flag": option.flag, "kind": option.kind.__name__, "default": default,
            "minimum": option.minimum, "maximum": option.maximum,
            "choices": list(option.choices) if option.choices else None, "help": option.help}


def checked(body: Any, fields: Dict[str, Any], required: Sequence[str] = ()) -> Dict[str, Any]:
    """The JSON object ``body`` with only ``fields``, each of its type; else :class:`ApiError` 400."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    for name in body:
        if name not in fields:
            raise ApiError(400, f"unknown field {str(name)[:60]!r}; the fields are {', '.join(fields)}", str(name)[:60])
    for name in required:
        if name not in body:
            raise ApiError(400, f"missing field {name!r}", name)
    for name, value in body.items():
        kind = fields[name]
        if isinstance(value, str) and not encodable(value):
            raise ApiError(400, f"field {name!r} holds a lone surrogate (not a character of UTF-8)", name)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            wanted = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ApiError(400, f"field {name!r} must be {wanted.replace('NoneType', 'null')}, got "
                           f"{type(value).__name__}", name)
    return body


def json_field(field: str) -> Optional[str]:
    """The JSON field of an explain body that a request's ``field`` names (``options.<name>`` as
    it is), or None when the body has no such field (e.g. ``stride``: the explorer sets none)."""
    if field in EXPLAIN_FIELDS or field.startswith("options."):
        return field
    return None


@contextlib.contextmanager
def api_errors() -> Iterator[None]:
    """A :class:`RequestError` -> :class:`ApiError` 400 naming its JSON field (from
    ``error.field``, never from the message); another usage error -> 400 without a field."""
    try:
        yield
    except RequestError as error:
        name = json_field(error.field)
        raise ApiError(400, error.message if name else str(error), name) from None
    except UsageError as error:
        raise ApiError(400, str(error)) from None


def encodable(text: str) -> bool:
    """``text`` is UTF-8 text (no lone surrogate, which JSON's ``\\ud800`` can carry)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = ["EXPLAIN_FIELDS", "api_errors", "checked", "encodable", "json_field", "option_info"]
