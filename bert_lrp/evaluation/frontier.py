"""Faithfulness versus cost: ABPC of each method against its time per explanation (log scale),
from the ``results.json`` of ``bert-lrp evaluate`` (which measures the cost in the same run).

    python -m bert_lrp.evaluation.frontier runs/faithfulness/results.json docs/faithfulness_cost.svg

The SVG is written by this module (no plotting library), atomically.
"""
from __future__ import annotations

import math
import sys
from html import escape
from typing import List, Optional, Tuple

from ..errors import InputFileError, UsageError

Point = Tuple[str, float, float, float]  # method, ms per explanation, ABPC, forward + backward passes


def frontier_points(summary: dict, metric: str = "abpc_p") -> List[Point]:
    """``(method, ms, metric, passes)`` per method with a measured cost, cheapest first."""
    points = []
    for method, values in summary.get("methods", {}).items():
        cost = summary.get("cost", {}).get(method)
        if cost and values.get(metric) is not None:
            points.append((method, float(cost["ms"]), float(values[metric]),
                           float(cost["forward_passes"] + cost["backward_passes"])))
    return sorted(points, key=lambda p: p[1])


def pareto(points: List[Point]) -> List[Point]:
    """The points no other point beats in both cost (lower) and faithfulness (higher)."""
    best, front = -math.inf, []
    for point in sorted(points, key=lambda p: (p[1], -p[2])):
        if point[2] > best:
            front.append(point)
            best = point[2]
    return front


def frontier_svg(summary: dict, metric: str = "abpc_p", random_level: Optional[float] = None,
                 title: Optional[str] = None) -> str:
    """An SVG scatter: x = ms per explanation (log10), y = ``metric``; the Pareto front joined."""
    from ..attribution.registry import label as method_title
    from ..attribution import registry

    if title is None:
        title = f"Faithfulness vs cost ({summary.get('examples', '?')} examples, {metric})"
    points = frontier_points(summary, metric)
    if not points:
        raise UsageError("no method has a measured cost in these results (rerun bert-lrp evaluate)")
    if random_level is None and "random" in summary.get("methods", {}):
        random_level = summary["methods"]["random"].get(metric)
    width, height, left, right, top, bottom = 720, 440, 70, 190, 40, 50
    xs = [math.log10(max(p[1], 1e-3)) for p in points]
    ys = [p[2] for p in points] + ([random_level] if random_level is not None else [])
    x_lo, x_hi = math.floor(min(xs)), math.ceil(max(xs))
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    y_lo, y_hi = min(0.0, min(ys)), max(ys)
    y_hi = y_lo + 1 if y_hi <= y_lo else y_hi + 0.05 * (y_hi - y_lo)
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(ms: float) -> float:
        return left + (math.log10(max(ms, 1e-3)) - x_lo) / (x_hi - x_lo) * plot_w

    def sy(value: float) -> float:
        return top + (1 - (value - y_lo) / (y_hi - y_lo)) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="13">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>']
    for decade in range(x_lo, x_hi + 1):
        x = left + (decade - x_lo) / (x_hi - x_lo) * plot_w
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 15}" text-anchor="middle">{10 ** decade:g}</text>')
    for i in range(6):
        value = y_lo + i * (y_hi - y_lo) / 5
        y = sy(value)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.2f}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 10}" text-anchor="middle">ms per explanation '
               '(log scale)</text>')
    out.append(f'<text x="16" y="{top + plot_h / 2}" text-anchor="middle" transform="rotate(-90 16 '
               f'{top + plot_h / 2})">{escape(metric.replace("_", " "))} (higher is better)</text>')
    if random_level is not None:
        y = sy(random_level)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#7f7f7f" '
                   'stroke-dasharray="4 3"/>')
        out.append(f'<text x="{left + plot_w - 4}" y="{y - 4:.1f}" text-anchor="end" fill="#7f7f7f">random</text>')
    front = pareto(points)
    if len(front) > 1:
        path = " ".join(f"{sx(p[1]):.1f},{sy(p[2]):.1f}" for p in front)
        out.append(f'<polyline points="{path}" fill="none" stroke="#999" stroke-dasharray="2 2"/>')
    placed: List[Tuple[float, float]] = []
    for method, ms, value, passes in sorted(points, key=lambda p: -p[2]):
        color = registry.color(method)
        x, y = sx(ms), sy(value)
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{color}"/>')
        label_y = y + 4
        while any(abs(label_y - py) < 12 and abs(x - px) < 150 for px, py in placed):
            label_y += 12  # keep labels of nearby points apart
        placed.append((x, label_y))
        label = f"{method_title(method)} ({passes:.0f} pass{'' if passes == 1 else 'es'})"
        out.append(f'<text x="{x + 7:.1f}" y="{label_y:.1f}" fill="{color}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m bert_lrp.evaluation.frontier RESULTS.json OUT.svg [METRIC]``."""
    from .._io import atomic_write_text
    from ..data import read_json

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3):
        raise UsageError("usage: python -m bert_lrp.evaluation.frontier RESULTS.json OUT.svg [abpc_p|abpc_logit]")
    summary = read_json(args[0])
    if not isinstance(summary, dict) or "methods" not in summary:
        raise InputFileError(f"{args[0]}: not the results.json of bert-lrp evaluate (no methods)")
    metric = args[2] if len(args) == 3 else "abpc_p"
    if metric not in ("abpc_p", "abpc_logit", "comprehensiveness_aopc"):
        raise UsageError(f"metric {metric!r}: choose abpc_p, abpc_logit or comprehensiveness_aopc")
    atomic_write_text(args[1], frontier_svg(summary, metric))
    return 0


if __name__ == "__main__":
    from ..errors import run_command

    sys.exit(run_command("frontier", main, sys.argv[1:]))
