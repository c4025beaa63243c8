"""Who talks when, judged in a process of its own, so the desk's interpreter keeps its time for the calls.

The talk-activity listener (talk_activity.py: WebRTC's VAD, each 10 ms level, the echo test) hears every
frame of both legs of every call. In the desk process it took most of the interpreter's time once calls
were many (bench/sip_load.py, 80 calls on 2 cores, py-spy: 70 % of the time the lock was held), and the
RTP sender, which gives the lock up at every packet it sends, could not get it back often enough: half the
packets left too late to be sent before the callers hung up. Switched off, every packet left.

So, for live calls with recognition in worker processes, each call's :class:`TalkActivity` lives in one
listener process, below the desk's CPU priority like the recognisers. It is started through multiprocessing's
fork server, not forked from the desk: it needs nothing the desk has loaded (the recognisers are forked to
share the model), and a child forked from a process with many threads can inherit a lock some thread held at
that instant and wait on it forever (one suite run saw a leg's speech never finish, cause not established;
this takes one candidate away). The fork server is a small single-threaded process of its own. The desk keeps
a :class:`RemoteTalkActivity` per call: what the compliance rules read (the settled talk of each leg, as flags
per 20 ms frame) arrives from the listener as it settles, and ``finish_leg`` waits for the listener to have
settled the leg's end, as the in-process listener does. Audio goes as it comes, a turn at a time; if the
listener falls far behind (``MAX_BACKLOG_BYTES`` waiting), further audio is sent as a gap (time, not speech)
until it catches up, never queued without end. If the listener process dies, the calls it followed keep the
timeline heard so far (their conversation rules are judged on that, and the log says so), and the next call
starts a new one.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from contactcenter.records import Leg
from contactcenter.speech.forked_child import lower_priority
from contactcenter.speech.talk_activity import ActivitySettings, Span, TalkActivity, spans_of

log = logging.getLogger(__name__)

FINISH_WAIT_SECONDS = 30.0  # a leg's end waits this long for the listener to settle it
MAX_BACKLOG_BYTES = 64 << 20  # audio waiting for the listener beyond this is sent as gaps
STOP_TIMEOUT_SECONDS = 5.0

_START = multiprocessing.get_context("forkserver")
# the fork server imports this module (numpy, the VAD) once; each listener is forked from it ready to run
_START.set_forkserver_preload([__name__])


def _serve(conn: Connection) -> None:
    """The listener's loop: messages in order; after each, the newly settled talk of that call goes back."""
    activities: dict[int, TalkActivity] = {}
    sent: dict[int, dict[Leg, int]] = {}
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        kind = message[0]
        if kind == "stop":
            return
        key = message[1]
        if kind == "open":
            _, _, rate, legs, settings = message
            activities[key] = TalkActivity(rate, legs, settings)
            sent[key] = {leg: 0 for leg in legs}
            continue
        activity = activities.get(key)
        if activity is None:
            continue
        if kind == "audio":
            activity.add_audio(message[2], message[3])
        elif kind == "gap":
            activity.add_gap(message[2], message[3])
        elif kind == "finish":
            activity.finish_leg(message[2])
        talk = {leg: activity.settled_talk(leg, start) for leg, start in sent[key].items()}
        if any(talk.values()) or kind == "finish":
            for leg, flags in talk.items():
                sent[key][leg] += len(flags)
            conn.send(("settled", key, talk, activity.echo_frames))
        if kind == "finish":
            conn.send(("finished", key, message[2]))
            if activity.finished_all:
                del activities[key], sent[key]


def _listen(conn: Connection, nice: int, idle: bool) -> None:
    """The listener process's life: below the desk's priority, Ctrl-C left to the desk (it reaches the whole
    group; the desk stops its listener itself), then messages until the desk says stop or goes away."""
    lower_priority(nice, idle)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(conn)


class RemoteTalkActivity:
    """One call's :class:`TalkActivity` as the desk sees it when it runs in the listener process: the same
    ``add_audio``/``add_gap``/``finish_leg`` and ``legs``/``both_legs``/``spans``/``settled_s``."""

    def __init__(
        self,
        process: _Process,
        key: int,
        legs: tuple[Leg, ...],
        settings: ActivitySettings,
        on_settled: Callable[[float], None] | None,
    ) -> None:
        self.process = process  # its own: after a restart, a new process knows nothing of this call
        self.key = key
        self.legs = legs
        self.settings = settings
        self.echo_frames = 0
        self.lost = False  # the listener process died while following this call
        self._on_settled = on_settled
        self._talk: dict[Leg, bytearray] = {leg: bytearray() for leg in legs}
        self._finished: set[Leg] = set()
        self._changed = threading.Condition()

    @property
    def both_legs(self) -> bool:
        return len(self.legs) == 2

    @property
    def settled_s(self) -> float:
        with self._changed:
            return min(len(flags) for flags in self._talk.values()) * 0.02

    def spans(self, leg: Leg) -> list[Span]:
        with self._changed:
            talk = bytes(self._talk[leg]) if leg in self._talk else b""
        return spans_of(talk, self.settings)

    def add_audio(self, leg: Leg, pcm: bytes) -> None:
        self.process.post(("audio", self.key, leg, pcm), len(pcm))

    def add_gap(self, leg: Leg, size: int) -> None:
        self.process.post(("gap", self.key, leg, size))

    def finish_leg(self, leg: Leg) -> None:
        """No more audio on ``leg``; returns once the listener has settled its end (or is gone)."""
        self.process.post(("finish", self.key, leg))
        deadline = time.monotonic() + FINISH_WAIT_SECONDS
        with self._changed:
            while leg not in self._finished and not self.lost:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.error("the talk listener did not settle the %s leg within %.0f s", leg, FINISH_WAIT_SECONDS)
                    return
                self._changed.wait(left)

    # ------------------------------------------------------------------------- from the listener's messages

    def settled(self, talk: dict[Leg, bytes], echo_frames: int) -> None:
        with self._changed:
            for leg, flags in talk.items():
                self._talk[leg] += flags
            self.echo_frames = echo_frames
            settled = min(len(flags) for flags in self._talk.values()) * 0.02
            self._changed.notify_all()
        if self._on_settled is not None:
            try:
                self._on_settled(settled)
            except Exception:
                log.exception("following a call's talk failed; the call goes on")

    def leg_finished(self, leg: Leg) -> None:
        with self._changed:
            self._finished.add(leg)
            self._changed.notify_all()

    def listener_lost(self) -> None:
        with self._changed:
            self.lost = True
            self._changed.notify_all()


class TalkListener:
    """The listener process as the desk sees it (started at once; again for the next call after it dies)."""

    def __init__(self, nice: int = 10, idle: bool = False) -> None:
        self.nice = nice
        self.idle = idle  # SCHED_IDLE, like the recognition workers (forked_child.py)
        self.restarts = 0
        self._lock = threading.Lock()
        self._keys = 0
        self._closed = False
        self._process: _Process | None = _Process(nice, idle)  # started now: ready for the first call

    def activity(
        self,
        rate: int,
        legs: tuple[Leg, ...],
        settings: ActivitySettings,
        on_settled: Callable[[float], None] | None = None,
    ) -> RemoteTalkActivity:
        with self._lock:
            if self._closed:
                raise RuntimeError("the talk listener is closed")
            if self._process is None or not self._process.alive:
                if self._process is not None:
                    self.restarts += 1
                self._process = _Process(self.nice, self.idle)
            process = self._process
            self._keys += 1
            key = self._keys
        remote = RemoteTalkActivity(process, key, legs, settings, on_settled)
        process.open(remote, rate)
        return remote

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.alive else None

    def close(self, wait: bool = True) -> None:
        """Stop the listener; ``wait`` for it (not when collected: the last reference may go on its thread)."""
        with self._lock:
            self._closed = True
            process, self._process = self._process, None
        if process is not None:
            process.stop(wait)


class _Process:
    """One listener process: its pipe, a sender thread with what is waiting, a receiver thread."""

    def __init__(self, nice: int, idle: bool) -> None:
        parent_end, child_end = _START.Pipe(duplex=True)
        self.process = _START.Process(target=_listen, args=(child_end, nice, idle), name="talk listener", daemon=True)
        self.process.start()
        child_end.close()
        self.pid = self.process.pid
        self.conn = parent_end
        self.alive = True
        self.stopping = False
        self.calls: dict[int, RemoteTalkActivity] = {}
        self.outbox: collections.deque[tuple[tuple[Any, ...], int]] = collections.deque()
        self.waiting_bytes = 0
        self.ready = threading.Condition()
        self._sender = threading.Thread(target=self._send, name="talk-listener-out", daemon=True)
        self._receiver = threading.Thread(target=self._receive, name="talk-listener-in", daemon=True)
        self._sender.start()
        self._receiver.start()

    def open(self, remote: RemoteTalkActivity, rate: int) -> None:
        with self.ready:
            self.calls[remote.key] = remote
        self.post(("open", remote.key, rate, remote.legs, remote.settings))
        if not self.alive:
            remote.listener_lost()

    def post(self, message: tuple[Any, ...], size: int = 0) -> None:
        """To the listener (``size``: audio bytes, counted against the backlog limit); dropped once it died."""
        with self.ready:
            if not self.alive:
                return
            if size and self.waiting_bytes + size > MAX_BACKLOG_BYTES:  # far behind: time, not audio
                message = ("gap", message[1], message[2], size)
                size = 0
            self.outbox.append((message, size))
            self.waiting_bytes += size
            self.ready.notify()

    def _send(self) -> None:
        while True:
            with self.ready:
                while self.alive and not self.outbox:
                    self.ready.wait()
                if not self.alive:
                    return
                message, size = self.outbox.popleft()
                self.waiting_bytes -= size
            try:
                self.conn.send(message)
            except (OSError, ValueError):
                return
            if message[0] == "stop":
                return

    def _receive(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                break
            kind, key = message[0], message[1]
            remote = self.calls.get(key)
            if remote is None:
                continue
            if kind == "settled":
                remote.settled(message[2], message[3])
            elif kind == "finished":
                remote.leg_finished(message[2])
                if all(leg in remote._finished for leg in remote.legs):
                    with self.ready:
                        self.calls.pop(key, None)
        with self.ready:
            self.alive = False
            self.ready.notify_all()
            calls = list(self.calls.values())
            self.calls.clear()
        self.conn.close()
        self.process.join()  # reaped: no zombie left behind
        if not self.stopping:
            log.error(
                "the talk listener process died; %d calls keep the talk heard so far (their conversation rules "
                "are judged on it), the next call starts a new listener",
                len(calls),
            )
        for remote in calls:
            remote.listener_lost()

    def stop(self, wait: bool = True) -> None:
        self.stopping = True
        self.post(("stop",))
        if not wait or self._receiver is threading.current_thread():
            return
        self._receiver.join(STOP_TIMEOUT_SECONDS)
        if self._receiver.is_alive():
            self.process.kill()
            self._receiver.join(STOP_TIMEOUT_SECONDS)
