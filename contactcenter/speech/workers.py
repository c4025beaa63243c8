"""Recognition in worker processes, off the desk's media path.

Each worker is forked from the desk process after the speech model has loaded, so the model's ~0.5 GB are
shared (copy-on-write; the model is only read), and runs at a lower CPU priority (``os.nice``) than the
desk, whose RTP threads must send a packet every 20 ms. A worker is one thread: it takes messages from its
socket in order (open a leg, a batch of speech with the silence and drops before it, finish a leg) and
answers with what it recognised (partial results, utterances) and how far it got; the desk process turns
those into the same callbacks, with the same call-time stamps, as recognition on threads gives. Silence
never comes here (the desk judges it); a batch of a live leg that the worker only reaches after its
deadline is skipped (the machine is short of CPU: the call is partly checked rather than late).

A worker holds recognisers only for utterances in progress (recognizer.py), and keeps what its recognisers
hold within ``memory_per_leg_mb`` per open leg (at least ``MIN_LEGS_BUDGETED`` legs' worth): past that,
recognisers given back at the end of an utterance are freed instead of kept warm, and a fresh one is made
for the next utterance. Nothing in Vosk or Kaldi bounds a recogniser's own growth (its lazily expanded
decoding graph: about 130 MB after 30 s of real speech on the Korean model, 240 MB after 5 minutes; libvosk
exports OpenFst's ``FLAGS_fst_default_cache_gc*``, but setting them changes nothing, Kaldi's lookahead
composition sets its own cache options), so the bound costs CPU: a fresh recogniser decodes at about twice
the cost for its first 10-20 s. bench/speech_bench.py measures both, and how much of the transcript stays the
same (Vosk's output already varies a little with the process's history).

A worker that dies (killed, out of memory, a crash in Vosk) takes with it only the speech it had not
finished: each of its legs counts that as dropped (the call becomes "partly checked") and carries on in a
new worker forked in its place. The desk and the call go on.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe
from typing import Any, Protocol

from contactcenter.records import Leg, UtteranceRecord
from contactcenter.speech.forked_child import become_child
from contactcenter.speech.recognizer import FinalHandler, LegRecognizer, PartialHandler
from contactcenter.speech.vosk_model import SpeechModel

log = logging.getLogger(__name__)

#: A worker may keep this many legs' worth of recognisers however few legs it has: with one or two legs the
#: memory is small anyway, and a recogniser freed after every few seconds of speech costs most (a fresh one
#: decodes at about twice the CPU for its first 10-20 s; bench/speech_bench.py).
MIN_LEGS_BUDGETED = 4
STATS_EVERY_SECONDS = 1.0  # a worker says how much memory its recognisers hold at most this often
TRIM_EVERY_SECONDS = 2.0  # freed recogniser memory is handed back to the system at most this often
RESPAWNS_PER_MINUTE = 10  # beyond this, a worker that dies is not replaced (something is badly wrong)
STOP_TIMEOUT_SECONDS = 5.0
# A worker with audio or a leg's end in hand that says nothing for this long is hung, not busy: a message is
# at most BATCH_SECONDS (0.5 s) of audio, decoded in a fraction of that, or one utterance's final result.
# It is killed, and its legs go on in a new worker as after a crash (without this a call whose leg never
# finished waited [speech] catch-up time, half an hour, to be stored).
SILENT_WORKER_SECONDS = 30.0
WATCH_EVERY_SECONDS = 1.0
ANSWERED = {"audio": "fed", "finish": "finished"}  # the messages a worker answers, and their answers


@dataclass
class Batch:
    """Audio of one leg sent for recognition in one go: ``(bytes dropped, bytes of silence, speech)`` parts,
    the dropped audio and the silence coming before the speech."""

    parts: list[tuple[int, int, bytes]]
    size: int  # speech bytes in it
    pushed_at: float  # when its last speech was pushed (for the lag)
    silence: int = 0  # silence bytes in it
    deadline: float | None = None  # live legs: not decoded if recognition only gets to it after this (monotonic)


def feed_parts(recognizer: LegRecognizer, parts: list[tuple[int, int, bytes]], deadline: float | None) -> int:
    """A batch's parts, in order, to a leg's recogniser; past its ``deadline`` (the clock is the machine's, the
    same in every process) its speech is skipped instead: the bytes dropped so."""
    late = deadline is not None and time.monotonic() > deadline
    dropped = 0
    for gap, silence, pcm in parts:
        if late:
            gap += len(pcm)
            dropped += len(pcm)
            pcm = b""
        if gap:
            recognizer.skip(gap // 2)
        if silence:
            recognizer.silence(silence // 2)
        if pcm:
            recognizer.feed(pcm)
    return dropped


@dataclass(frozen=True)
class WorkerConfig:
    """A worker's CPU priority (added niceness, SCHED_IDLE or not) and its recognisers' memory budget."""

    nice: int = 10
    memory_per_leg_mb: float = 0.0  # 0: recognisers are always kept warm (memory grows with use)
    idle: bool = False  # the kernel's idle policy: only CPU time no normal process wants (forked_child.py)


@dataclass
class PoolStats:
    """What the workers say about themselves (summed over workers)."""

    restarts: int = 0
    recognizers: int = 0  # alive: lent to an utterance or waiting warm in a pool
    recognizers_created: int = 0
    recognizers_retired: int = 0
    recognizer_memory_mb: float = 0.0  # heap the workers' recognisers hold, beyond what was shared at fork
    per_worker: dict[int, tuple[int, int, int, float]] = field(default_factory=dict)


class LegSink(Protocol):
    """What the pool tells a leg's stream in the desk process (``LegStream`` is one)."""

    key: int
    leg: Leg
    rate: int
    wants_partials: bool

    def deliver_final(self, utterance: UtteranceRecord) -> None: ...

    def deliver_partial(self, text: str, at_s: float) -> None: ...

    def recognised(self, seen_s: float, committed_s: float, dropped: int = 0) -> None: ...

    def recognition_done(self, skipped_samples: int, error: str | None) -> None: ...

    def recognition_lost(self) -> int:
        """Its worker died: count what it took with it, hold further audio; the call sample to resume at."""
        ...

    def recognition_moved(self, worker: _Worker | None) -> None:
        """It goes on in ``worker`` (opened there already), or nowhere (None: no worker left)."""
        ...


# ------------------------------------------------------------------------------------------ the worker side


class _Heap:
    """The C heap in use (glibc's ``mallinfo2``): Vosk's recognisers are plain C++ allocations."""

    class _Info(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
        ]

    def __init__(self) -> None:
        self._mallinfo2: Any = None
        self._trim: Any = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.mallinfo2.restype = self._Info
            self._mallinfo2 = libc.mallinfo2
            self._trim = libc.malloc_trim
        except (OSError, AttributeError):  # not glibc 2.33+: no budget, recognisers kept warm
            pass

    @property
    def available(self) -> bool:
        return self._mallinfo2 is not None

    def in_use_mb(self) -> float:
        if self._mallinfo2 is None:
            return 0.0
        info = self._mallinfo2()
        return (info.uordblks + info.hblkhd) / 2**20

    def trim(self) -> None:
        if self._trim is not None:
            self._trim(0)


class _Budget:
    """Keeps the recognisers of one worker within ``per_leg_mb`` × its open legs (at least MIN_LEGS_BUDGETED)."""

    def __init__(self, model: SpeechModel, per_leg_mb: float) -> None:
        self.model = model
        self.heap = _Heap()
        self.per_leg_mb = per_leg_mb if self.heap.available else 0.0
        self.base_mb = self.heap.in_use_mb()
        self.legs = 0
        self._freed = False
        self._last_trim = 0.0

    @property
    def used_mb(self) -> float:
        return max(0.0, self.heap.in_use_mb() - self.base_mb)

    def over(self) -> bool:
        return self.per_leg_mb > 0 and self.used_mb > self.per_leg_mb * max(MIN_LEGS_BUDGETED, self.legs)

    def keep(self, samples_fed: int) -> bool:
        """``SpeechModel.keep``: a recogniser given back stays warm only while the worker is within budget."""
        if self.over():
            self._freed = True
            return False
        return True

    def check(self) -> None:
        """After an utterance or a leg ends: free the idle recognisers if over budget, and give freed memory
        back to the system (so the worker's size, not only its heap, stays within bounds)."""
        if self.over() and self.model.drop_idle():
            self._freed = True
        now = time.monotonic()
        if self._freed and now - self._last_trim >= TRIM_EVERY_SECONDS:
            self.heap.trim()
            self._freed = False
            self._last_trim = now


def _serve(conn: Connection, model: SpeechModel, config: WorkerConfig) -> None:
    """The worker's loop: one message at a time, in order, until the desk says stop or goes away."""
    budget = _Budget(model, config.memory_per_leg_mb)
    model.keep = budget.keep if budget.per_leg_mb > 0 else None
    legs: dict[int, LegRecognizer] = {}
    last_stats = 0.0

    def send(message: tuple[Any, ...]) -> None:
        conn.send(message)

    def stats(force: bool = False) -> None:
        nonlocal last_stats
        now = time.monotonic()
        if force or now - last_stats >= STATS_EVERY_SECONDS:
            last_stats = now
            lent = sum(leg._recognizer is not None for leg in legs.values())
            send(("stats", lent + model.idle, model.created, model.retired, budget.used_mb))

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        kind: str = message[0]
        key: int = message[1] if len(message) > 1 else 0
        if kind == "audio":
            recognizer = legs.get(key)
            if recognizer is None:  # cannot happen: the desk opens a leg before sending its audio
                send(("error", key, f"audio for leg {key}, which is not open here"))
                continue
            dropped = 0
            try:
                dropped = feed_parts(recognizer, message[2], message[3])
            except Exception:
                send(("error", key, traceback.format_exc()))
            send(("fed", key, recognizer.audio_seconds, recognizer.committed_seconds, dropped))
            budget.check()
            stats()
        elif kind == "open":
            _, key, leg, rate, start_sample, partials = message
            legs[key] = LegRecognizer(  # silence was judged in the desk process: only speech comes here
                model,
                leg,
                rate,
                on_final=_sender_of_finals(send, key),
                on_partial=_sender_of_partials(send, key) if partials else None,
                start_sample=start_sample,
            )
            budget.legs = len(legs)
        elif kind == "finish":
            finished = legs.pop(key, None)
            budget.legs = len(legs)
            error = None
            try:
                if finished is not None:
                    finished.finish()
            except Exception:
                error = traceback.format_exc()
            send(("finished", key, finished.skipped_samples if finished is not None else 0, error))
            budget.check()
            stats(force=True)
        elif kind == "stop":
            return


def _sender_of_finals(send: Callable[[tuple[Any, ...]], None], key: int) -> FinalHandler:
    def on_final(utterance: UtteranceRecord) -> None:
        send(("final", key, utterance))

    return on_final


def _sender_of_partials(send: Callable[[tuple[Any, ...]], None], key: int) -> PartialHandler:
    def on_partial(_leg: Leg, text: str, at_s: float) -> None:
        send(("partial", key, text, at_s))

    return on_partial


def _child(conn: Connection, model: SpeechModel, config: WorkerConfig) -> None:
    """Runs in the forked worker and never returns (``os._exit``): nothing of the desk's runs here."""
    code = 0
    try:
        become_child(conn.fileno(), config.nice, config.idle)
        model._pool_lock = threading.Lock()  # a desk thread may have held it at the fork
        inherited = model.forget_pool()  # the desk's warm recognisers (if any) stay shared, untouched
        model.created = model.retired = 0
        _serve(conn, model, config)
        del inherited
    except BaseException:
        code = 1
        traceback.print_exc()
    finally:
        os._exit(code)


# ------------------------------------------------------------------------------------------- the desk side


class _Worker:
    """One worker process as the desk sees it: its socket, what is waiting to be sent, its legs."""

    def __init__(self, pid: int, conn: Connection, number: int) -> None:
        self.pid = pid
        self.conn = conn
        self.number = number
        self.streams: dict[int, LegSink] = {}
        self.outbox: collections.deque[tuple[Any, ...]] = collections.deque()
        self.ready = threading.Condition()
        self.alive = True
        self.stopping = False
        self.receiver: threading.Thread | None = None
        self.sender: threading.Thread | None = None
        self.awaited = 0  # messages it has been given and not yet answered
        self.heard_at = time.monotonic()  # when it last said something, or was given work while it had none

    def post(self, message: tuple[Any, ...]) -> None:
        """Queue a message for the worker; never blocks (a worker that is gone just never gets it)."""
        with self.ready:
            if self.alive:
                if message[0] in ANSWERED:
                    if not self.awaited:
                        self.heard_at = time.monotonic()
                    self.awaited += 1
                self.outbox.append(message)
                self.ready.notify()

    def heard(self, kind: str) -> None:
        with self.ready:
            self.heard_at = time.monotonic()
            if kind in ANSWERED.values():
                self.awaited = max(0, self.awaited - 1)

    def silent_for(self) -> float:
        """How long it has had work in hand and said nothing (0 when it has none)."""
        with self.ready:
            return time.monotonic() - self.heard_at if self.awaited else 0.0


class WorkerPool:
    """``count`` recognition processes forked from this one; legs are spread over them and stay on theirs."""

    def __init__(self, model: SpeechModel, count: int, config: WorkerConfig) -> None:
        self.model = model
        self.count = max(1, count)
        self.config = config
        self.stats = PoolStats()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._deaths: collections.deque[float] = collections.deque()
        self._closed = False
        self._numbers = 0
        for _ in range(self.count):
            self._workers.append(self._spawn())

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [worker.pid for worker in self._workers if worker.alive]

    def _spawn(self) -> _Worker:
        """Fork one worker (after the model loaded, so it shares it) and start its desk-side threads."""
        parent_end, child_end = Pipe(duplex=True)
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # Python 3.12+ warns of forking a process with threads: the child runs only Vosk and this module's
            # loop, re-creates the one lock it uses, and never returns to the desk's code (os._exit)
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            parent_end.close()
            _child(child_end, self.model, self.config)
        child_end.close()
        self._numbers += 1
        worker = _Worker(pid, parent_end, self._numbers)
        worker.receiver = threading.Thread(
            target=self._receive, args=(worker,), name=f"speech-worker-{worker.number}-in", daemon=True
        )
        worker.sender = threading.Thread(
            target=self._send, args=(worker,), name=f"speech-worker-{worker.number}-out", daemon=True
        )
        worker.receiver.start()
        worker.sender.start()
        log.debug("speech worker %d started (pid %d, nice +%d)", worker.number, pid, self.config.nice)
        return worker

    # ----------------------------------------------------------------------------------------- legs

    def open(self, sink: LegSink, start_sample: int = 0) -> _Worker | None:
        """Put a leg on the worker with the fewest legs; None if there is no worker left."""
        with self._lock:
            alive = [worker for worker in self._workers if worker.alive]
            if not alive:
                return None
            worker = min(alive, key=lambda w: len(w.streams))
            worker.streams[sink.key] = sink
        worker.post(("open", sink.key, sink.leg, sink.rate, start_sample, sink.wants_partials))
        return worker

    def send(self, worker: _Worker, sink: LegSink, batch: Batch) -> None:
        worker.post(("audio", sink.key, batch.parts, batch.deadline))

    def finish(self, worker: _Worker, sink: LegSink) -> None:
        worker.post(("finish", sink.key))

    # ------------------------------------------------------------------------------------- threads

    def _send(self, worker: _Worker) -> None:
        while True:
            with worker.ready:
                while worker.alive and not worker.outbox:
                    worker.ready.wait()
                if not worker.alive:
                    return
                message = worker.outbox.popleft()
            try:
                worker.conn.send(message)
            except (OSError, ValueError):  # it died: the receiver sees the end and hands its legs on
                with worker.ready:
                    worker.outbox.clear()
                return

    def _receive(self, worker: _Worker) -> None:
        while True:
            try:
                if not worker.conn.poll(WATCH_EVERY_SECONDS):
                    self._watch(worker)
                    continue
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            worker.heard(message[0])
            try:
                self._dispatch(worker, message)
            except Exception:
                log.exception("speech worker %d: handling %r failed", worker.number, message[0])
        self._ended(worker)

    def _watch(self, worker: _Worker) -> None:
        """Kill a worker that sits on its work without a word (hung): its end is then seen like a crash's."""
        silent = worker.silent_for()
        if silent < SILENT_WORKER_SECONDS or worker.stopping:
            return
        log.error(
            "speech worker %d (pid %d) has had work for %.0f s without answering: killed as hung",
            worker.number,
            worker.pid,
            silent,
        )
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        with worker.ready:
            worker.awaited = 0  # said once

    def _dispatch(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "stats":
            _, recognizers, created, retired, memory_mb = message
            with self._lock:
                self.stats.per_worker[worker.pid] = (recognizers, created, retired, memory_mb)
                self._sum_stats()
            return
        sink = worker.streams.get(message[1])
        if sink is None:
            return
        if kind == "partial":
            sink.deliver_partial(message[2], message[3])
        elif kind == "final":
            sink.deliver_final(message[2])
        elif kind == "fed":
            sink.recognised(message[2], message[3], message[4])
        elif kind == "finished":
            with self._lock:
                worker.streams.pop(message[1], None)
            sink.recognition_done(message[2], message[3])
        elif kind == "error":
            log.error(
                "speech recognition failed on the %s leg (worker %d); the call goes on:\n%s",
                sink.leg,
                worker.number,
                message[2],
            )

    def _sum_stats(self) -> None:
        values = self.stats.per_worker.values()
        self.stats.recognizers = sum(v[0] for v in values)
        self.stats.recognizers_created = sum(v[1] for v in values)
        self.stats.recognizers_retired = sum(v[2] for v in values)
        self.stats.recognizer_memory_mb = round(sum(v[3] for v in values), 1)

    def _ended(self, worker: _Worker) -> None:
        """The worker's socket closed: stopped by us, or died. Its legs move to a new worker."""
        with worker.ready:
            worker.alive = False
            worker.ready.notify_all()
        worker.conn.close()
        status = _reap(worker.pid, wait=worker.stopping)
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
            self.stats.per_worker.pop(worker.pid, None)
            self._sum_stats()
            if worker.stopping or self._closed:
                return
            self.stats.restarts += 1
            now = time.monotonic()
            self._deaths.append(now)
            while self._deaths and now - self._deaths[0] > 60:
                self._deaths.popleft()
            respawn = len(self._deaths) <= RESPAWNS_PER_MINUTE
            streams = list(worker.streams.values())
            worker.streams.clear()
        replacement = None
        if respawn:
            try:
                replacement = self._spawn()
            except OSError:
                log.exception("could not start a speech worker in place of worker %d", worker.number)
        log.error(
            "speech worker %d (pid %d) died (%s) with %d legs: their audio it had not finished is lost to "
            "recognition (those calls are partly checked); %s",
            worker.number,
            worker.pid,
            status,
            len(streams),
            f"they go on in worker {replacement.number}" if replacement else "no worker replaces it",
        )
        if replacement is not None:
            with self._lock:
                self._workers.append(replacement)
        for sink in streams:
            start = sink.recognition_lost()
            if replacement is not None:
                with self._lock:
                    replacement.streams[sink.key] = sink
                replacement.post(("open", sink.key, sink.leg, sink.rate, start, sink.wants_partials))
            sink.recognition_moved(replacement)

    def close(self, wait: bool = True) -> None:
        """Stop every worker (they finish the message in hand) and, with ``wait``, wait for them."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        for worker in workers:
            worker.stopping = True
            worker.post(("stop",))
        if not wait:
            return
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for worker in workers:
            if worker.receiver is threading.current_thread():
                continue
            if worker.receiver is not None:
                worker.receiver.join(max(0.0, deadline - time.monotonic()))
            if worker.receiver is not None and worker.receiver.is_alive():
                try:
                    os.kill(worker.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                worker.receiver.join(STOP_TIMEOUT_SECONDS)


def _reap(pid: int, wait: bool) -> str:
    """Collect a finished worker (no zombie left); how it ended, for the log."""
    deadline = time.monotonic() + (STOP_TIMEOUT_SECONDS if wait else 1.0)
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return "already collected"
        if done:
            if os.WIFSIGNALED(status):
                return f"killed by signal {os.WTERMSIG(status)}"
            return f"exit code {os.WEXITSTATUS(status)}"
        if time.monotonic() > deadline:
            return "still running"
        time.sleep(0.01)
