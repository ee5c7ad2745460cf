"""A run's own JSON files read back (``evaluate``'s ``results.json`` and ``examples.jsonl`` for
the paired tables and the frontier plot): one JSON document, or JSON objects one per line;
strictly UTF-8; invalid JSON is one :class:`~bert_lrp.data.source.DataError` naming the file
and the line."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .source import parse_json, parse_json_object, read_file, split_lines


def read_json(path, field: Optional[str] = None) -> Any:
    """The JSON value of the file ``path``. ``field``: the request field naming ``path``."""
    return parse_json(read_file(path, field), str(path))


def read_json_lines(path, field: Optional[str] = None) -> List[Dict[str, Any]]:
    """The JSON objects of the file ``path``, one per non-blank line (a run's own records read
    back, e.g. ``evaluate``'s ``examples.jsonl``); a line that is not a JSON object is a
    :class:`~bert_lrp.data.source.DataError` naming the file and the line."""
    objects = []
    for number, line in enumerate(split_lines(read_file(path, field)), 1):
        if line.strip():
            objects.append(parse_json_object(line, f"{path}, line {number}"))
    return objects
