r"""Terminal views of explanations: relevance colours, word lines, readable without colour.

Colours: the records' scale (:mod:`bert_lrp.attribution.heatmaps`, the same as the HTML report's
and the explorer's): red for relevance *for* the explained output, blue *against*, white at 0,
each method normalised on its own, symmetrically around 0.

Terminal safety: every piece of text that comes from the input (texts, words, labels) goes through
:func:`printable` in every colour mode, ``none`` included. C0 controls (U+0000-U+001F, so ESC,
BEL, CR, LF, TAB), DEL (U+007F), C1 controls (U+0080-U+009F), the bidirectional overrides,
embeddings and isolates (U+202A-U+202E, U+2066-U+2069), the direction marks U+200E, U+200F,
U+061C and the line/paragraph separators U+2028, U+2029 are shown as visible Python-style escapes:
``\x1b``, ``\x07``, ``\u202e``. So ``"\x1b]0;TITLE\x07"`` in a text prints as the 16 visible
characters ``\x1b]0;TITLE\x07`` and can neither set the terminal title nor reorder the line.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional, Sequence, Tuple

from .._text import printable, shorten
from ..attribution.heatmaps import (RGB, method_title, relevance_rgb, symmetric_scale, target_word_shares, text_rgb,
                                    word_scores)


# ------------------------------------------------------------------- terminal colour
def colour_mode(stream=None, force: Optional[str] = None) -> str:
    """``truecolor``, ``256`` or ``none``. ``none`` unless ``stream`` is a terminal (or ``force``);
    ``NO_COLOR`` disables colour, ``COLORTERM=truecolor|24bit`` selects 24-bit colour."""
    if force:
        if force not in ("truecolor", "256", "none"):
            raise ValueError(f"unknown colour mode {force!r}; choose truecolor, 256 or none")
        return force
    stream = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR") or not getattr(stream, "isatty", lambda: False)():
        return "none"
    if os.environ.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
        return "truecolor"
    return "256"


def _cube(value: int) -> int:
    """Nearest level (0-5) of the xterm 6x6x6 colour cube."""
    levels = (0, 95, 135, 175, 215, 255)
    return min(range(6), key=lambda i: abs(levels[i] - value))


def ansi_background(rgb: RGB, mode: str) -> str:
    r, g, b = rgb
    fr, fg, fb = text_rgb(rgb)
    if mode == "truecolor":
        return f"\x1b[48;2;{r};{g};{b}m\x1b[38;2;{fr};{fg};{fb}m"
    if mode == "256":
        index = 16 + 36 * _cube(r) + 6 * _cube(g) + _cube(b)
        return f"\x1b[48;5;{index}m\x1b[{30 if (fr, fg, fb) == (0, 0, 0) else 97}m"
    return ""


RESET = "\x1b[0m"


def format_score(score: float) -> str:
    return f"{score:+.3f}" if abs(score) >= 1e-3 or score == 0 else f"{score:+.1e}"


def coloured_words(words: Sequence[Tuple[str, float]], mode: str, scale: Optional[float] = None,
                   marked: Optional[int] = None) -> str:
    """One line of words. With colour: each word on its relevance colour. Without: ``word[+0.123]``.
    The word at index ``marked`` (the explained word of a token classifier) is shown as ``*word*``."""
    scale = symmetric_scale(s for _, s in words) if scale is None else scale
    parts = []
    for index, (word, score) in enumerate(words):
        word = printable(word)
        if index == marked:
            word = f"*{word}*"
        if mode == "none":
            parts.append(f"{word}[{format_score(score)}]")
        else:
            parts.append(f"{ansi_background(relevance_rgb(score, scale), mode)}{word}{RESET}")
    return " ".join(parts)


def legend_line(mode: str) -> str:
    if mode == "none":
        return "scores in brackets: > 0 speaks for the explained label, < 0 against it"
    samples = [(-1.0, " against "), (-0.5, "  "), (0.0, "  "), (0.5, "  "), (1.0, " for ")]
    return "legend: " + "".join(f"{ansi_background(relevance_rgb(v, 1.0), mode)}{t}{RESET}" for v, t in samples)


def render_terminal(report: dict, mode: str = "none") -> str:
    """Text for one record of one label (:func:`bert_lrp.attribution.road.label_views`). Text from
    the input goes through :func:`printable`; a long text is shortened in the ``text:`` line."""
    lines: List[str] = []
    text = shorten(report["text"]) if report.get("pair") is None else \
        f"{shorten(report['text'])}  ||  {shorten(report['pair'])}"
    lines.append(f"text: {printable(text)}")
    probs = ", ".join(f"{printable(label)} {p:.3f}" for label, p in report["probabilities"].items())
    prediction, target = printable(report["prediction"]), printable(report["target"])
    if report.get("target_word") is not None:
        tw = report["target_word"]
        lines.append(f"word {tw['index']} '{printable(tw['word'])}' (token {tw['position']}): predicted "
                     f"{prediction} ({probs}); explaining {target}")
    else:
        lines.append(f"prediction: {prediction} ({probs}); explaining {target}")
    lines.append(legend_line(mode))
    width = max(len(method_title(m)) for m in report["methods"]) if report["methods"] else 0
    for method in report["methods"]:
        words = word_scores(report, method)
        marked = report["target_word"]["index"] if report.get("target_word") else None
        lines.append(f"{method_title(method):<{width}}  {coloured_words(words, mode, marked=marked)}")
    if report.get("conservation"):
        lines.append("conservation (sum of relevance / explained logit): " + ", ".join(
            f"{method_title(m)} {v:.4f}" for m, v in report["conservation"].items()))
    shares = target_word_shares(report)
    if shares:
        total = sum(shares.values())
        lines.append("relevance of the word by embedding part (LRP): " + ", ".join(
            f"{printable(name)} {value:+.4f}" + (f" ({100 * value / total:.0f}%)" if total else "")
            for name, value in shares.items()))
    return "\n".join(lines)
