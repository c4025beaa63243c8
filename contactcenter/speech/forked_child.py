"""What a process started from the desk does first (the recognition workers, the talk listener)."""

from __future__ import annotations

import gc
import os
import signal


def lower_priority(nice: int, idle: bool) -> None:
    """Below the desk: ``nice`` added and, with ``idle``, the kernel's SCHED_IDLE policy: the process then only
    runs on CPU time no normal process wants. With niceness alone a desk thread holding Python's interpreter
    lock can wait behind a worker for a core, and the real-time RTP sender then waits for that thread; under
    SCHED_IDLE it cannot. (bench/sip_load.py's 80-call figures did not show the difference through the shared
    machine's run-to-run spread: README.) Any process may take this policy; no privilege is needed."""
    os.nice(nice)
    if idle and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def become_child(keep_fd: int, nice: int, idle: bool = False) -> None:
    """Lower the priority (``lower_priority``); leave Ctrl-C to the desk (it reaches the whole group, and the desk
    stops its children itself); close every inherited descriptor but ``keep_fd`` (the desk's sockets and
    files, and other children's pipe ends, are not the child's to hold: a pipe end held here would hide a
    death from the desk); freeze the inherited objects so the collector never touches their shared pages."""
    lower_priority(nice, idle)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, os.sysconf("SC_OPEN_MAX"))
    gc.freeze()
