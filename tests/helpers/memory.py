"""The process's memory, as the benchmarks report it."""

from __future__ import annotations

import os


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


def pss_mb(pids: list[int]) -> float:
    """Proportional set size of these processes in MB: pages they share (a model forked into recognition
    workers) are split between them, so the sum is what they hold together. Processes gone count 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                total += sum(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
        except OSError:
            pass
    return total / 1024


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc), 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
