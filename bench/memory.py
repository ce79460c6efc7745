"""This process's memory, read from ``/proc`` and ``getrusage``: what the benchmarks report."""

from __future__ import annotations

import resource
from pathlib import Path


def rss_bytes() -> int:
    """Resident set size now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def maxrss_bytes() -> int:
    """Peak RSS of this process's lifetime (``ru_maxrss`` is KiB on Linux). A child started by
    vfork inherits its parent's figure: start children through a forking shell."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> bool:
    """Reset this process's peak RSS (``VmHWM``; Linux 4.0+); whether it could."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def hwm_bytes() -> int:
    """Peak RSS since the last :func:`reset_peak` (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return maxrss_bytes()
