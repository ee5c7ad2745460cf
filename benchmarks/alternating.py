"""Timing on a shared, noisy machine: every entry once per round, the order reversed every other
round, so that a slow spell hits every entry alike; per-round times kept for paired ratios."""
from __future__ import annotations

import time
from typing import Callable, Dict, List


def alternating_times(entries: Dict[str, Callable[[], object]], rounds: int, warmup: int = 3,
                      clock: Callable[[], float] = time.perf_counter) -> Dict[str, List[float]]:
    """``{name: [seconds per round]}`` of each entry over ``rounds`` alternating rounds, after
    ``warmup`` untimed calls of each; ``clock``: wall clock (default) or e.g. ``time.process_time``."""
    for run in entries.values():
        for _ in range(warmup):
            run()
    times: Dict[str, List[float]] = {name: [] for name in entries}
    for round_ in range(rounds):
        for name in (list(entries) if round_ % 2 else list(entries)[::-1]):
            start = clock()
            entries[name]()
            times[name].append(clock() - start)
    return times
