"""Audits spread over N processes of one machine (``contactcenter audit --workers N``), or threads of this one.

Recognition is CPU work in Vosk; threads of one process share one Python interpreter and one store session,
processes do not. The processes are forked *after* the parent has loaded the speech model, so they share its
pages (copy-on-write: the model is read, never written) rather than each loading its own copy; each child then
builds its own recogniser pool and database connections (``setup``), which must not cross a fork.

The parent hands out one recording at a time over a pipe and keeps which child has which, so a child that dies
mid-file (killed, out of memory, a crash in native code) loses nothing: its recording goes to another child
(once; a recording that kills its worker twice is reported as failed, never stored half), and a new child is
forked in its place. Results come back as they finish (for progress bars); what is stored is what the
in-process audit stores, one row per recording (see ``audit_recording``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Protocol

from contactcenter.qa.audit import AuditResult, Target, target_files

log = logging.getLogger(__name__)

#: What a child enters once, after the fork: it builds what the child needs (recognisers, database connections),
#: gives the function that audits one recording, and closes them when the child is done.
Setup = Callable[[], AbstractContextManager[Callable[[Target], AuditResult]]]
#: How many times a recording is handed out again after the process auditing it died.
RETRIES_AFTER_DEATH = 1


class Auditor(Protocol):
    """Audits recordings handed to it, reporting each result when done (``collect``)."""

    def submit(self, target: Target) -> int:
        """Queue one recording; its number, which ``collect`` gives back with its result."""
        ...

    @property
    def pending(self) -> int:
        """Recordings submitted whose result has not been collected."""
        ...

    def collect(self, timeout: float | None) -> list[tuple[int, AuditResult]]:
        """Results finished within ``timeout`` seconds (None: wait for at least one, if any is pending)."""
        ...

    def close(self) -> None: ...


class ThreadAuditor:
    """Recordings audited on threads of this process: what ``audit`` has always done."""

    def __init__(self, audit: Callable[[Target], AuditResult], threads: int) -> None:
        self._audit = audit
        self._executor = concurrent.futures.ThreadPoolExecutor(max(1, threads), thread_name_prefix="audit")
        self._futures: dict[concurrent.futures.Future[AuditResult], int] = {}
        self._count = 0

    def submit(self, target: Target) -> int:
        number = self._count
        self._count += 1
        self._futures[self._executor.submit(self._audit, target)] = number
        return number

    @property
    def pending(self) -> int:
        return len(self._futures)

    def collect(self, timeout: float | None) -> list[tuple[int, AuditResult]]:
        if not self._futures:
            return []
        done, _ = concurrent.futures.wait(self._futures, timeout, concurrent.futures.FIRST_COMPLETED)
        return [(self._futures.pop(future), future.result()) for future in done]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Child:
    process: BaseProcess
    conn: Connection  # the parent's end of the pipe
    job: tuple[int, Target] | None = None  # what it is auditing now
    ready: bool = False  # set up (model, database): a death before that is a failure to start, not a file's


class AuditProcessError(Exception):
    """The audit processes cannot start (the reason a child gave, e.g. the database or the model)."""


def _child_main(conn: Connection, setup: Setup) -> None:
    """A worker process: audit what the parent sends until the pipe closes. Ctrl-C is the parent's to handle
    (it stops the children), so a terminal's SIGINT to the whole group does not leave half-told results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.ExitStack() as stack:
        try:
            audit = stack.enter_context(setup())
        except Exception as exc:
            conn.send(("failed", str(exc) or type(exc).__name__))
            return
        conn.send(("ready",))
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message is None:
                return
            number, target = message
            result = audit(target)
            conn.send(("result", number, replace(result, outcome=None)))  # the row; the transcript is stored


class ProcessAuditor:
    """Recordings audited by ``workers`` processes forked from this one (after the speech model is loaded)."""

    def __init__(self, workers: int, setup: Setup, retries: int = RETRIES_AFTER_DEATH) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._context = multiprocessing.get_context("fork")  # shares the loaded model (Linux: the desk's platform)
        self._setup = setup
        self._retries = retries
        self._workers = workers
        self._children: list[_Child] = []
        self._waiting: collections.deque[tuple[int, Target]] = collections.deque()
        self._deaths: collections.Counter[int] = collections.Counter()
        self._count = 0
        for _ in range(workers):
            self._start_child()

    def _start_child(self) -> None:
        parent_end, child_end = self._context.Pipe()
        # not a daemon: a daemonic process may not start processes of its own (a recogniser pool may)
        process = self._context.Process(target=_child_main, args=(child_end, self._setup))
        sys.stdout.flush()  # what is buffered here would be written again by the child when it exits
        sys.stderr.flush()
        process.start()
        child_end.close()
        self._children.append(_Child(process, parent_end))

    def submit(self, target: Target) -> int:
        number = self._count
        self._count += 1
        self._waiting.append((number, target))
        self._dispatch()
        return number

    @property
    def pending(self) -> int:
        return len(self._waiting) + sum(child.job is not None for child in self._children)

    def _dispatch(self) -> None:
        for child in self._children:
            if child.job is None and self._waiting:
                child.job = self._waiting.popleft()
                try:
                    child.conn.send(child.job)
                except OSError:  # it died just now: _reap hands its recording on
                    pass

    def collect(self, timeout: float | None) -> list[tuple[int, AuditResult]]:
        if not self.pending:
            return []
        results: list[tuple[int, AuditResult]] = []
        conns = {child.conn: child for child in self._children}
        for ready in wait([*conns, *(child.process.sentinel for child in self._children)], timeout):
            child = conns.get(ready)  # type: ignore[call-overload]
            if child is not None:
                results += self._receive(child)
        for child in [c for c in self._children if not c.process.is_alive()]:
            results += self._receive(child)  # what it said before it died counts
            results += self._reap(child)
        self._dispatch()
        return results

    def _receive(self, child: _Child) -> list[tuple[int, AuditResult]]:
        """What ``child`` has sent: that it is ready, results, or why it cannot start (raised)."""
        results: list[tuple[int, AuditResult]] = []
        while True:
            try:
                if child.conn.closed or not child.conn.poll():
                    return results
                message = child.conn.recv()
            except (EOFError, OSError):  # died while sending: handled as a death
                return results
            if message[0] == "failed":
                self.close()
                raise AuditProcessError(message[1])
            if message[0] == "ready":
                child.ready = True
            else:
                results.append((message[1], message[2]))
                child.job = None

    def _reap(self, child: _Child) -> list[tuple[int, AuditResult]]:
        """A child that died: its recording to another child (or failed, if it killed one before), a new child."""
        child.process.join()
        child.conn.close()
        self._children.remove(child)
        results: list[tuple[int, AuditResult]] = []
        code = child.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        if child.job is not None:
            number, target = child.job
            self._deaths[number] += 1
            path = target_files(target)[0]
            if self._deaths[number] > self._retries:
                log.error("the process auditing %s died (%s) again: reported as failed", path, how)
                error = f"{path}: the process auditing it died {self._deaths[number]} times ({how}); not stored"
                results.append((number, AuditResult(path, ok=False, error=error)))
            else:
                log.warning("the process auditing %s died (%s); it is audited again by another", path, how)
                self._waiting.appendleft(child.job)
        if not child.ready:
            self.close()
            raise AuditProcessError(f"an audit process died while starting ({how})")
        self._start_child()
        return results

    def close(self) -> None:
        """Stop the children: the idle ones at once, a busy one when it is killed (Ctrl-C) or finishes."""
        for child in self._children:
            with contextlib.suppress(OSError):
                child.conn.send(None)
        for child in self._children:
            child.process.join(timeout=None if child.job is None else 0)
            if child.process.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(child.process.pid or 0, signal.SIGTERM)
                child.process.join()
            child.conn.close()
        self._children.clear()
