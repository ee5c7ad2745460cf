r"""Terminal-safe text: control characters and bidi controls shown as visible escapes.

C0 controls (U+0000-U+001F: ESC, BEL, CR, LF, TAB), DEL, C1 controls (U+0080-U+009F), the bidi
overrides, embeddings and isolates (U+202A-U+202E, U+2066-U+2069), the direction marks U+200E,
U+200F, U+061C and the separators U+2028, U+2029 become ``\x1b``, ``\u202e``, ...: so
``"\x1b]0;TITLE\x07"`` can neither retitle a terminal nor reorder a line. Used for every piece of
user text the command line prints, and for error messages.
"""
from __future__ import annotations


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


UNSAFE_CHARACTERS = ([*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A),
                      0x200E, 0x200F, 0x061C, 0x2028, 0x2029])
_SAFE = str.maketrans({code: _escape(code) for code in UNSAFE_CHARACTERS})


def printable(text) -> str:
    r"""``text`` with terminal control characters and bidi controls replaced by visible escapes
    (``\x1b``, ``\u202e``; see the module docstring); other characters are kept."""
    return str(text).translate(_SAFE)


MAX_TEXT_CHARACTERS = 300  # the "text:" line of a long input shows its start only


def shorten(text: str, limit: int = MAX_TEXT_CHARACTERS) -> str:
    """``text`` cut to ``limit`` characters, with a note of how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (+{len(text) - limit:,} characters)"
