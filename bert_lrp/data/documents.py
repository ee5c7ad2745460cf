"""One JSON document in a file (a run's ``results.json`` read back by ``evaluate``'s paired
tables and the frontier plot), strictly UTF-8; invalid JSON is one
:class:`~bert_lrp.data.source.DataError` naming the file and the line."""
from __future__ import annotations

import json
from typing import Any, Optional

from .source import DataError, read_file


def read_json(path, field: Optional[str] = None) -> Any:
    """The JSON value of the file ``path``. ``field``: the request field naming ``path``."""
    content = read_file(path, field)
    try:
        return json.loads(content)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}, line {error.lineno}: not valid JSON ({error.msg})") from None
    except RecursionError:
        raise DataError(f"{path}: not valid JSON (nested too deeply)") from None
