"""The worker's memory, for its start-up log line and its health output."""

from __future__ import annotations

import resource
import sys

MIB = 1024 * 1024


def _current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize()


def memory_report() -> dict[str, float]:
    """Resident memory now and at peak, and CUDA memory when torch is loaded with a GPU."""
    report: dict[str, float] = {}
    rss = _current_rss_bytes()
    if rss is not None:
        report["rss_mib"] = round(rss / MIB, 1)
    # ru_maxrss is in KiB on Linux.
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    torch = sys.modules.get("torch")  # never import torch just to report on it
    if torch is not None and torch.cuda.is_available():
        report["gpu_allocated_mib"] = round(torch.cuda.memory_allocated() / MIB, 1)
        report["gpu_reserved_mib"] = round(torch.cuda.memory_reserved() / MIB, 1)
        report["gpu_peak_mib"] = round(torch.cuda.max_memory_allocated() / MIB, 1)
    return report
