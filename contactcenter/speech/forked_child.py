"""What a process forked from the desk does first (the recognition workers)."""

from __future__ import annotations

import gc
import os
import signal


def become_child(keep_fd: int, nice: int) -> None:
    """Lower the priority by ``nice``; leave Ctrl-C to the desk (it reaches the whole group, and the desk
    stops its children itself); close every inherited descriptor but ``keep_fd`` (the desk's sockets and
    files, and other children's pipe ends, are not the child's to hold: a pipe end held here would hide a
    death from the desk); freeze the inherited objects so the collector never touches their shared pages."""
    os.nice(nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, os.sysconf("SC_OPEN_MAX"))
    gc.freeze()
