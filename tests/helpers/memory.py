"""The process's memory, as the benchmarks report it."""

from __future__ import annotations


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc), 0.0 where it cannot be read."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
