"""The kernel's peak resident-memory counter of this process (Linux ``/proc``), for the benchmark.

Standard library only: the LXT runner (:mod:`bert_lrp.evaluation.peers.lxt_runner`, its own
process, torch patched by LXT) reads it as well as the benchmark's memory worker. Usage: call
:func:`reset_peak`, read ``status_kb("VmRSS")``, run, read ``status_kb("VmHWM")``; the increase
is the difference.
"""
from __future__ import annotations

from typing import Optional


def reset_peak() -> bool:
    """Reset this process's high-water mark ``VmHWM`` to its current resident set (writes ``5`` to
    ``/proc/self/clear_refs``). False where that is not possible (not Linux, no permission)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def status_kb(field: str) -> Optional[int]:
    """The value in kB of ``field`` (``VmRSS``, ``VmHWM``, ...) of ``/proc/self/status``; None if
    it cannot be read."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
