"""Plain text: one text per line, and :class:`TextInput`, the record of one text to explain."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from .source import split_lines


@dataclass(frozen=True)
class TextInput:
    """One text to explain: ``text``, the second text of a pair (or None), where it came from
    (``"data.txt, line 3"``, ``"argument 1"``) for messages and records, and its gold ``label``
    when the input says it (a table's ``label`` column), kept in the record."""

    text: str
    pair: Optional[str] = None
    source: str = ""
    label: Optional[str] = None


def text_lines(content: str, name: str, pair: Optional[str] = None) -> List[TextInput]:
    """One :class:`TextInput` per non-blank line of ``content`` (kept as written, tabs and
    spaces included), its source ``"<name>, line <n>"``; ``pair`` is the second text of each."""
    return [TextInput(line, pair, f"{name}, line {number}")
            for number, line in enumerate(split_lines(content), 1) if line.strip()]
