"""The process's memory, as the benchmarks report it."""

from __future__ import annotations

import os


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process (this one by default) in MB (Linux /proc), 0.0 where it cannot be read.
    Read from the kernel's counters: unlike PSS it does not walk the process's page tables."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pss_mb(pids: list[int]) -> float:
    """Proportional set size of these processes in MB: pages they share (a model forked into recognition
    workers) are split between them, so the sum is what they hold together. Processes gone count 0.

    The kernel walks each process's page tables under its memory-map lock to count this: a thread of that
    process that maps memory meanwhile (an allocation, with Python's interpreter lock held) waits for it.
    Sampling a process whose timing is being measured this way disturbs what is measured (bench/sip_load.py
    reads the desk's RSS while calls run instead)."""
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
