"""The speech monitor: every call leg recognised off the media path, never blocking the audio.

The phone pushes 20 ms frames into a leg's stream and returns at once. Two things follow each leg, in order:

* its **listener** (who talks when: :class:`~contactcenter.speech.talk_activity.TalkActivity`), fed on a
  small pool of threads of the desk process. With recognition in worker processes the listener itself runs
  in a process of its own (listener_process.py: in the desk's interpreter it starved the RTP sender at 80
  calls) and the feeders only hand it the audio (``separate_listener=False`` keeps it on the feeders). It
  follows the audio closely whatever recognition is doing,
  and it hears all of it: overload never takes audio away from it.
* its **recognition**. Silence is judged as the audio is pushed (the energy gate, with its hangover), so only
  speech is sent for decoding: a leg that listens costs recognition nothing, and the recogniser is only told
  how much silence passed (which ends the utterance in progress at once). Speech goes one batch at a time
  per leg (at most ``BATCH_SECONDS``), so each leg stays in order and no leg waits for another's. By default
  (``backend="process"``) recognition runs in worker processes (workers.py) forked after the model loaded,
  at a lower CPU priority than the desk (niced, and by default under the kernel's SCHED_IDLE policy, like the
  talk listener: ``worker_idle``): Vosk's work no longer competes with the RTP threads for the
  interpreter, and yields them the CPU. ``backend="thread"`` keeps it on threads of this process.

Whatever the backend, results come back here as the same callbacks (``on_final``, ``on_partial``,
``on_progress``) with the same call-time stamps.

If recognition falls behind, it is said (``metrics`` and a log line) and speech is dropped from recognition
rather than letting memory, or the wait at hang-up, grow without end: past ``max_backlog_seconds`` of speech
queued on a leg, and, for live calls, once recognition is ``max_lag_seconds`` behind: the oldest speech
waiting goes, and a batch a worker only reaches after its deadline is skipped there. Each drop is counted on
the leg (``dropped_seconds``: the call is then "partly checked"), and the recogniser is told, so the words
after it keep their true call time. A recording being audited pushes with ``block=True`` and simply waits
for room.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from contactcenter.audio.line import FRAME_SECONDS
from contactcenter.audio.silence import FULL_SCALE
from contactcenter.records import Leg, UtteranceRecord
from contactcenter.speech.listener_process import RemoteTalkActivity, TalkListener
from contactcenter.speech.recognizer import FRAMES_PER_UNIT, FinalHandler, LegRecognizer, PartialHandler
from contactcenter.speech.talk_activity import ActivitySettings, TalkActivity
from contactcenter.speech.vosk_model import SpeechModel
from contactcenter.speech.workers import Batch, WorkerConfig, WorkerPool, feed_parts

with warnings.catch_warnings():  # deprecated in 3.11-3.12; Python 3.13 gets it from audioop-lts (pyproject)
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

log = logging.getLogger(__name__)

ProgressHandler = Callable[[Leg, float], None]
Backend = Literal["process", "thread"]
BATCH_SECONDS = 0.5  # at most this much audio of a leg in one go, so legs take turns fairly
BEHIND_WARNING_SECONDS = 1.0
LOG_EVERY_SECONDS = 10.0
LISTENER_BACKLOG_SECONDS = 60.0  # the listener is cheap: only a stalled machine gets it this far behind
LISTEN_TURN_SECONDS = 0.2  # the listener is fed this much at a time (fewer thread hand-overs per leg)
FEEDER_THREADS = 2
CLOSE_WAIT_SECONDS = 30.0
#: Recogniser memory a process worker keeps per open leg (heap beyond what the fork shared); see workers.py.
DEFAULT_MEMORY_PER_LEG_MB = 36.0


@dataclass
class MonitorMetrics:
    """What an operator needs to know about recognition keeping up."""

    legs_active: int = 0
    audio_seconds: float = 0.0
    skipped_seconds: float = 0.0
    dropped_seconds: float = 0.0
    lags: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=2000))
    worker_restarts: int = 0  # worker processes that died and were replaced
    recognizers: int = 0  # Vosk recognisers alive (in use or kept warm)
    recognizers_created: int = 0
    recognizers_retired: int = 0  # freed to keep memory within bounds
    recognizer_memory_mb: float = 0.0  # what the workers' recognisers hold (process backend)

    def lag_percentile(self, share: float) -> float:
        """Delay (seconds) from a frame being pushed to its recognition, at the given share (0.95 = p95)."""
        if not self.lags:
            return 0.0
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class AudioListener(Protocol):
    """Something else that follows a leg's audio in the desk process (who talked when)."""

    def add_audio(self, leg: Leg, pcm: bytes) -> None: ...

    def add_gap(self, leg: Leg, size: int) -> None: ...

    def finish_leg(self, leg: Leg) -> None: ...


class _LevelGate:
    """:class:`~contactcenter.audio.silence.SilenceGate`'s rule (a frame at or above the threshold is speech,
    and so are the ``hangover_frames`` after it) on raw 16-bit frames. It runs on the phone's thread for every
    frame of every leg, so the level is audioop's RMS (in C: 0.2 µs a frame) rather than numpy's (10 µs)."""

    def __init__(self, threshold_dbfs: float, hangover_frames: int) -> None:
        self.threshold = FULL_SCALE * 10 ** (threshold_dbfs / 20)
        self.hangover_frames = hangover_frames
        self._since_speech = hangover_frames + 1  # start closed: leading silence is skipped

    def admit(self, frame: bytes) -> bool:
        if audioop.rms(frame, 2) >= self.threshold:
            self._since_speech = 0
            return True
        self._since_speech += 1
        return self._since_speech <= self.hangover_frames


class RecognitionError(RuntimeError):
    """Finishing a leg's recognition failed (the message carries the worker's traceback)."""


@dataclass
class _Chunk:
    pcm: bytes  # for recognition: speech the silence gate let through, or b"" (a marker: what comes before it)
    pushed_at: float
    gap_before: int = 0  # bytes of this leg dropped just before it
    silence_before: int = 0  # bytes of silence just before it (never sent for decoding, only counted)


class _Backend(Protocol):
    def open(self, sink: Any, start_sample: int = 0) -> Any: ...

    def send(self, handle: Any, sink: Any, batch: Batch) -> None: ...

    def finish(self, handle: Any, sink: Any) -> None: ...

    def close(self, wait: bool = True) -> None: ...


class LegStream:
    """One leg's way into the monitor. ``push`` from the audio thread; ``finish`` when the leg ends."""

    def __init__(
        self,
        monitor: SpeechMonitor,
        key: int,
        leg: Leg,
        rate: int,
        on_final: FinalHandler,
        on_partial: PartialHandler | None,
        on_progress: ProgressHandler | None,
        live: bool = True,
        listener: AudioListener | None = None,
    ) -> None:
        self.monitor = monitor
        self.key = key
        self.leg = leg
        self.rate = rate
        self.on_final = on_final
        self.on_partial = on_partial
        self.on_progress = on_progress
        self.wants_partials = on_partial is not None
        self.live = live  # a live call's lag is a health figure; a recording is pushed faster than real time
        self.listener = listener
        self.done: Future[None] = Future()
        self.dropped_seconds = 0.0  # audio of this leg the recogniser never heard
        self.max_backlog_bytes = int(monitor.max_backlog_seconds * rate) * 2
        self._frame_bytes = int(rate * FRAME_SECONDS) * 2
        unit = self._frame_bytes * FRAMES_PER_UNIT
        self._send_bytes = max(2, min(unit, self.max_backlog_bytes // 2))  # no batch smaller, unless finishing
        self._batch_bytes = max(self._send_bytes, int(BATCH_SECONDS * rate) * 2)
        self._listen_limit = max(self.max_backlog_bytes, int(LISTENER_BACKLOG_SECONDS * rate) * 2)
        self._turn_bytes = min(self._listen_limit // 2, max(self._send_bytes, int(LISTEN_TURN_SECONDS * rate) * 2))
        self._lock = threading.Condition()
        # the listener's side
        self._listen: collections.deque[_Chunk] = collections.deque()
        self._listen_bytes = 0
        self._listen_gap = 0
        self._turn_scheduled = False
        self._listener_done = listener is None
        # recognition's side: silence is judged here, so a leg that listens costs recognition nothing
        self._gate = monitor._silence_gate()
        self._remainder = b""  # the start of a frame not yet judged
        self._queue: collections.deque[_Chunk] = collections.deque()
        self._queued_bytes = 0  # speech queued
        self._markers = 0  # queued chunks that end an utterance (sent at once, however little is queued)
        self._open = False  # speech went to the recogniser since the last silence: its utterance is open
        self._gap = 0  # dropped after the last queued chunk
        self._silence = 0  # silence after the last queued chunk
        self._in_flight: Batch | None = None
        self._in_flight_skips = 0  # bytes of the batch in hand that are gaps or silence (not speech lost)
        self._progress_s = 0.0
        self._sent_samples = 0  # samples of the leg handed to recognition (gaps included)
        self._committed_samples = 0  # ... of which every result has come back
        self._shedding = False
        self._finishing = False
        self._finish_sent = False
        self._recognised_all = False
        self._moving = False  # its worker died; a new one is being opened
        self._gone = False  # no worker left: recognition is over for this leg
        self._skipped_samples = 0
        self._error: str | None = None
        self._last_warning = 0.0
        self._handle: Any = None  # the backend's: the worker, or the thread backend's recogniser

    @property
    def backlog_seconds(self) -> float:
        """Audio pushed that recognition has not finished with."""
        with self._lock:
            pending = self._queued_bytes + (self._in_flight.size if self._in_flight else 0)
        return pending / 2 / self.rate

    # ------------------------------------------------------------------------------------- the phone's side

    def push(self, pcm: bytes, block: bool = False) -> bool:
        """Queue audio; False if recognition had to drop it (backlog full, no worker left, or the leg
        already finished: late audio after hang-up is no reason to disturb the caller's thread). The listener
        hears it all the same, unless it is itself hopelessly behind."""
        size = len(pcm)
        now = time.monotonic()
        with self._lock:
            if self._finishing:
                log.debug("audio pushed to the %s leg after it finished; ignored", self.leg)
                return False
            while block and self._listen_bytes + size > self._listen_limit:
                self._lock.wait()
            if self._listen_bytes + size > self._listen_limit:
                self._listen_gap += size
            else:
                self._listen.append(_Chunk(pcm, now, self._listen_gap))
                self._listen_gap = 0
                self._listen_bytes += size
            dropped = 0
            for speech, data in self._judge(pcm):
                if not speech:
                    self._silent(len(data), now)
                    continue
                accepted = not self._gone
                while accepted and self._pending_bytes() and self._pending_bytes() + len(data) > self.max_backlog_bytes:
                    if not block:
                        accepted = False
                        break
                    self._lock.wait()
                    accepted = not self._gone
                if accepted:
                    self._queue.append(_Chunk(data, now, self._gap, self._silence))
                    self._gap = self._silence = 0
                    self._queued_bytes += len(data)
                    self._open = True
                else:
                    self._gap += len(data)
                    dropped += len(data)
            turn = not self._turn_scheduled and self._listen_bytes >= self._turn_bytes
            if turn:
                self._turn_scheduled = True
            # recognition idle: its next batch goes now (handing it over never waits), not at the next turn
            pump = self._in_flight is None and (self._queued_bytes >= self._send_bytes or self._markers > 0)
            why = "gone" if self._gone else "backlog"
        if dropped:
            self.monitor._dropped(self, dropped, why)
        if pump:
            self._pump()
        if turn:
            self.monitor._schedule(self._turn)
        return not dropped

    def _judge(self, pcm: bytes) -> list[tuple[bool, bytes]]:
        """The pushed audio as runs of speech and of silence (whole frames; lock held)."""
        if self._gate is None:
            return [(True, pcm)]
        data = self._remainder + pcm if self._remainder else pcm
        usable = len(data) - len(data) % self._frame_bytes
        self._remainder = data[usable:]
        runs: list[tuple[bool, bytes]] = []
        start, current = 0, False
        for offset in range(0, usable, self._frame_bytes):
            speech = self._gate.admit(data[offset : offset + self._frame_bytes])
            if speech != current and offset > start:
                runs.append((current, data[start:offset]))
                start = offset
            current = speech
        if usable > start:
            runs.append((current, data[start:usable]))
        return runs

    def _silent(self, size: int, now: float) -> None:
        """Silence: right after speech, a marker that ends the utterance now; otherwise only counted, and
        sent with whatever comes next (lock held)."""
        if self._open:
            self._queue.append(_Chunk(b"", now, self._gap, self._silence + size))
            self._gap = self._silence = 0
            self._markers += 1
            self._open = False
        else:
            self._silence += size

    def finish(self) -> Future[None]:
        """No more audio: follow and recognise what is queued, flush the last utterance; the future says when
        both are done."""
        with self._lock:
            if self._finishing:  # said already: its turn is under way
                return self.done
            if self._remainder or self._gap or self._silence:
                self._queue.append(_Chunk(self._remainder, time.monotonic(), self._gap, self._silence))
                self._queued_bytes += len(self._remainder)
                self._markers += 1
                self._remainder, self._gap, self._silence = b"", 0, 0
            self._finishing = True
            turn = not self._turn_scheduled
            self._turn_scheduled = True
            self._lock.notify_all()
        if turn:
            self.monitor._schedule(self._turn)
        return self.done

    # ------------------------------------------------------------------------------------- the listener

    def _turn(self) -> None:
        """On a feeder thread: the listener gets everything queued for it, then recognition is given work."""
        with self._lock:
            chunks = list(self._listen)
            self._listen.clear()
            self._listen_bytes = 0
            tail_gap = 0
            if self._finishing:
                tail_gap, self._listen_gap = self._listen_gap, 0
            self._lock.notify_all()
        self._follow(chunks, tail_gap)
        self._pump()
        self._silence_progress()
        with self._lock:
            again = bool(self._listen) and (self._finishing or self._listen_bytes >= self._turn_bytes)
            self._turn_scheduled = again
            # ``finish`` may have come since the pump above and, this turn being under way, scheduled none: with
            # no batch in flight, no worker answer would give recognition the leg's end either, so this turn
            # does (the leg never finished otherwise: a lost wake-up, seen on legs of silence)
            pump = self._finishing and not again
            end = pump and not self._listener_done
        if pump:
            self._pump()
        if end:
            self._finish_listener()
        if again:
            self.monitor._schedule(self._turn)

    def _follow(self, chunks: list[_Chunk], tail_gap: int) -> None:
        """The audio to the listener, each run without a gap in one piece (a frame at a time, the listener
        process got 8,000 messages a second at 80 calls, each pickled and answered on the desk's interpreter);
        if it fails it is dropped for this leg and recognition goes on."""
        listener = self.listener
        if listener is None:
            return
        try:
            run: list[bytes] = []
            for chunk in chunks:
                if chunk.gap_before:
                    if run:
                        listener.add_audio(self.leg, b"".join(run))
                        run = []
                    listener.add_gap(self.leg, chunk.gap_before)
                run.append(chunk.pcm)
            if run:
                listener.add_audio(self.leg, b"".join(run))
            if tail_gap:
                listener.add_gap(self.leg, tail_gap)
        except Exception:
            self.listener = None
            log.exception("following the %s leg's talk failed; its recognition goes on", self.leg)

    def _finish_listener(self) -> None:
        listener = self.listener
        if listener is not None:
            try:
                listener.finish_leg(self.leg)
            except Exception:
                log.exception("following the %s leg's talk failed at its end", self.leg)
        with self._lock:
            self._listener_done = True
        self._maybe_done()

    # ---------------------------------------------------------------------------------------- recognition

    def _silence_progress(self) -> None:
        """Recognition has everything before the silence now going on (not sent: nothing to decode): the
        rules may count that time as heard."""
        with self._lock:
            if self._in_flight is not None or self._queue or self._moving or not (self._silence or self._gap):
                return
            at_s = (self._sent_samples + (self._silence + self._gap) // 2) / self.rate
            if at_s <= self._progress_s:
                return
            self._progress_s = at_s
        self._progress(at_s)

    def _progress(self, at_s: float) -> None:
        if self.on_progress is not None:
            try:
                self.on_progress(self.leg, at_s)
            except Exception:
                log.exception("following the %s leg's progress failed; the call goes on", self.leg)

    def _pending_bytes(self) -> int:
        return self._queued_bytes + (self._in_flight.size if self._in_flight else 0)

    def _pump(self) -> None:
        """Give recognition its next batch (or the end of the leg) if it has none in hand."""
        with self._lock:
            shed = self._shed() if self.live and self.monitor.max_lag_seconds else 0
            action = self._next_action()
            handle = self._handle
        if shed:
            self.monitor._dropped(self, shed, "behind")
        if action is None:
            return
        if isinstance(action, Batch):
            self.monitor._backend.send(handle, self, action)
        else:
            self.monitor._backend.finish(handle, self)

    def _shed(self) -> int:
        """Live legs: if the oldest audio waiting is more than ``max_lag_seconds`` old, drop the oldest down to
        half that (so drops come in stretches, not a frame at a time). Bytes dropped; lock held."""
        max_lag = self.monitor.max_lag_seconds
        if not self._queue or max_lag is None:
            return 0
        now = time.monotonic()
        if not self._shedding and now - self._queue[0].pushed_at <= max_lag:
            return 0
        self._shedding = True
        keep_from = now - max_lag / 2
        dropped = gap = 0
        silence = 0
        while self._queue and self._queue[0].pushed_at < keep_from:
            chunk = self._queue.popleft()
            dropped += len(chunk.pcm)
            gap += chunk.gap_before + len(chunk.pcm)
            silence += chunk.silence_before
            self._queued_bytes -= len(chunk.pcm)
            if not chunk.pcm:
                self._markers -= 1
        if self._queue:
            self._queue[0].gap_before += gap
            self._queue[0].silence_before += silence
            self._shedding = False
        else:
            self._gap += gap
            self._silence += silence
        self._lock.notify_all()
        return dropped

    def _next_action(self) -> Batch | Literal["finish"] | None:
        """Lock held: the batch to send, "finish", or nothing (one batch at a time; none while moving)."""
        if self._in_flight is not None or self._moving or self._finish_sent or self._gone:
            return None
        if self._queue and (self._queued_bytes >= self._send_bytes or self._finishing or self._markers):
            parts: list[tuple[int, int, bytes]] = []
            size = skips = silence = 0
            pushed_at = 0.0
            oldest: float | None = None
            while self._queue and size < self._batch_bytes:
                chunk = self._queue.popleft()
                parts.append((chunk.gap_before, chunk.silence_before, chunk.pcm))
                size += len(chunk.pcm)
                silence += chunk.silence_before
                skips += chunk.gap_before + chunk.silence_before
                if chunk.pcm:
                    pushed_at = chunk.pushed_at
                    oldest = chunk.pushed_at if oldest is None else oldest
                else:
                    self._markers -= 1
                self._sent_samples += (chunk.gap_before + chunk.silence_before + len(chunk.pcm)) // 2
            self._queued_bytes -= size
            max_lag = self.monitor.max_lag_seconds if self.live else None
            deadline = None if max_lag is None or oldest is None else oldest + max_lag
            self._in_flight = Batch(parts, size, pushed_at, silence, deadline)
            self._in_flight_skips = skips
            self._lock.notify_all()
            return self._in_flight
        if self._finishing and not self._queue:
            self._finish_sent = True
            return "finish"
        return None

    # -------------------------------------------------------------------- what the backend tells the leg

    def deliver_final(self, utterance: UtteranceRecord) -> None:
        try:
            self.on_final(utterance)
        except Exception:
            log.exception("handling an utterance of the %s leg failed; the call goes on", self.leg)

    def deliver_partial(self, text: str, at_s: float) -> None:
        if self.on_partial is None:
            return
        try:
            self.on_partial(self.leg, text, at_s)
        except Exception:
            log.exception("handling a partial result of the %s leg failed; the call goes on", self.leg)

    def recognised(self, seen_s: float, committed_s: float, dropped: int = 0) -> None:
        """Recognition is done with the batch in hand: it has worked through the leg up to ``seen_s`` (and
        skipped ``dropped`` bytes of its speech, reached only after its deadline)."""
        with self._lock:
            batch, self._in_flight = self._in_flight, None
            self._committed_samples = round(committed_s * self.rate)
            self._lock.notify_all()
        if dropped:
            self.monitor._dropped(self, dropped, "behind")
        if batch is not None:
            self.monitor._processed(self, batch, dropped)
        with self._lock:
            report = seen_s > self._progress_s
            self._progress_s = max(self._progress_s, seen_s)
        if report:
            self._progress(seen_s)
        self._pump()

    def recognition_done(self, skipped_samples: int, error: str | None) -> None:
        with self._lock:
            self._recognised_all = True
            self._skipped_samples = skipped_samples
            self._error = error
        self._maybe_done()

    def recognition_lost(self) -> int:
        """Its worker died: what it had not finished is dropped (counted); the call sample to resume at."""
        with self._lock:
            # a gap ends the utterance in progress, so the only gaps past the committed point are in the batch
            # that was in hand: they were counted when dropped
            lost = max(0, (self._sent_samples - self._committed_samples) * 2 - self._in_flight_skips)
            self._in_flight = None
            self._finish_sent = False
            self._moving = True
            self._committed_samples = self._sent_samples
            self._lock.notify_all()
            start = self._sent_samples
        if lost:
            self.monitor._dropped(self, lost, "worker")
        return start

    def recognition_moved(self, handle: Any) -> None:
        """Recognition goes on with ``handle`` (a new worker), or nowhere (None): then the rest is dropped."""
        with self._lock:
            self._moving = False
            self._handle = handle
            dropped = 0
            if handle is None:
                self._gone = True
                dropped = self._queued_bytes
                self._queue.clear()
                self._queued_bytes = 0
                self._recognised_all = self._finishing or self._recognised_all
                self._lock.notify_all()
        if dropped:
            self.monitor._dropped(self, dropped, "worker")
        if handle is None:
            self._maybe_done()
        else:
            self._pump()

    def _maybe_done(self) -> None:
        with self._lock:
            if self._gone and self._finishing:
                self._recognised_all = True
            ready = self._listener_done and self._recognised_all and not self.done.done()
            error = self._error
        if not ready:
            return
        self.monitor._leg_closed(self, self._skipped_samples)
        if error is not None:
            log.error("could not finish the %s leg:\n%s", self.leg, error)
            self.done.set_exception(RecognitionError(f"could not finish the {self.leg} leg: {error.strip()}"))
        else:
            self.done.set_result(None)


class _ThreadBackend:
    """Recognition on a pool of threads of this process (Vosk releases the interpreter while it decodes)."""

    def __init__(self, model: SpeechModel, workers: int) -> None:
        self.model = model
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="speech")

    def open(self, sink: LegStream, start_sample: int = 0) -> LegRecognizer:
        on_partial: PartialHandler | None = None
        if sink.wants_partials:
            on_partial = lambda _leg, text, at_s: sink.deliver_partial(text, at_s)  # noqa: E731
        return LegRecognizer(self.model, sink.leg, sink.rate, sink.deliver_final, on_partial, None, start_sample)

    def send(self, recognizer: LegRecognizer, sink: LegStream, batch: Batch) -> None:
        self._executor.submit(self._feed, recognizer, sink, batch)

    def finish(self, recognizer: LegRecognizer, sink: LegStream) -> None:
        self._executor.submit(self._finish, recognizer, sink)

    def _feed(self, recognizer: LegRecognizer, sink: LegStream, batch: Batch) -> None:
        dropped = 0
        try:
            dropped = feed_parts(recognizer, batch.parts, batch.deadline)
        except Exception:
            log.exception("recognition failed on the %s leg; the call goes on", sink.leg)
        sink.recognised(recognizer.audio_seconds, recognizer.committed_seconds, dropped)

    def _finish(self, recognizer: LegRecognizer, sink: LegStream) -> None:
        error = None
        try:
            recognizer.finish()
        except Exception:
            error = traceback.format_exc()
        sink.recognition_done(recognizer.skipped_samples, error)

    def close(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait)


class SpeechMonitor:
    """Recognises any number of call legs on a bounded pool of worker processes (or threads)."""

    def __init__(
        self,
        model: SpeechModel,
        workers: int = 0,
        max_backlog_seconds: float = 30.0,
        silence_threshold_dbfs: float | None = -45.0,
        silence_hangover_ms: int = 300,
        activity: ActivitySettings | None = None,
        *,
        backend: Backend = "process",
        max_lag_seconds: float | None = None,
        memory_per_leg_mb: float = DEFAULT_MEMORY_PER_LEG_MB,
        worker_nice: int = 10,
        worker_idle: bool = True,
        separate_listener: bool = True,
    ) -> None:
        self.model = model
        self.activity = activity or ActivitySettings()  # how each call's talk activity is judged
        self.workers = workers or os.cpu_count() or 1
        self.max_backlog_seconds = max_backlog_seconds
        self.max_lag_seconds = max_lag_seconds or None  # live legs only; None: never drop for being late
        self.silence_threshold_dbfs = silence_threshold_dbfs
        self.hangover_frames = max(0, silence_hangover_ms // 20)
        self.backend: Backend = backend
        self._metrics = MonitorMetrics()
        self._lock = threading.Lock()
        self._last_behind_log = 0.0
        self._keys = 0
        self._streams: set[LegStream] = set()
        self._pool: WorkerPool | None = None
        if backend == "process":
            config = WorkerConfig(worker_nice, memory_per_leg_mb, worker_idle)
            self._pool = WorkerPool(model, self.workers, config)
            self._backend: _Backend = self._pool
        elif backend == "thread":
            self._backend = _ThreadBackend(model, self.workers)
        else:
            raise ValueError(f"speech backend {backend!r}: expected process or thread")
        # with recognition in worker processes, who talks when is judged out of the desk's interpreter too
        self._listener = TalkListener(worker_nice, worker_idle) if backend == "process" and separate_listener else None
        self._feeders = ThreadPoolExecutor(FEEDER_THREADS, thread_name_prefix="speech-feed")
        # a monitor nobody closed still stops its workers when it is collected, or at exit
        self._finalizer = weakref.finalize(self, _shut_down, self._backend, self._feeders, self._listener, False)

    @property
    def metrics(self) -> MonitorMetrics:
        """The figures so far (the workers' own figures as they last reported them)."""
        metrics = self._metrics
        if self._pool is not None:
            stats = self._pool.stats
            metrics.worker_restarts = stats.restarts
            metrics.recognizers = stats.recognizers
            metrics.recognizers_created = stats.recognizers_created
            metrics.recognizers_retired = stats.recognizers_retired
            metrics.recognizer_memory_mb = stats.recognizer_memory_mb
        else:
            metrics.recognizers = self.model.idle
            metrics.recognizers_created = self.model.created
            metrics.recognizers_retired = self.model.retired
        return metrics

    def talk_activity(
        self, rate: int, legs: tuple[Leg, ...], on_settled: Callable[[float], None] | None = None
    ) -> TalkActivity | RemoteTalkActivity:
        """A call's talk-activity listener: in the listener process when the monitor has one (the listener is
        the heaviest Python work of a live call), else in this process."""
        if self._listener is not None:
            return self._listener.activity(rate, legs, self.activity, on_settled)
        return TalkActivity(rate, legs, self.activity, on_settled=on_settled)

    @property
    def listener_pid(self) -> int | None:
        """The talk listener process (None on the thread backend, or while none is alive)."""
        return self._listener.pid if self._listener is not None else None

    def _silence_gate(self) -> _LevelGate | None:
        if self.silence_threshold_dbfs is None:
            return None
        return _LevelGate(self.silence_threshold_dbfs, self.hangover_frames)

    @property
    def worker_pids(self) -> list[int]:
        """The worker processes (empty on the thread backend)."""
        return self._pool.pids if self._pool is not None else []

    def open_leg(
        self,
        leg: Leg,
        rate: int,
        on_final: FinalHandler,
        on_partial: PartialHandler | None = None,
        on_progress: ProgressHandler | None = None,
        live: bool = True,
        listener: AudioListener | None = None,
    ) -> LegStream:
        with self._lock:
            self._keys += 1
            key = self._keys
            self._metrics.legs_active += 1
        stream = LegStream(self, key, leg, rate, on_final, on_partial, on_progress, live, listener)
        with self._lock:
            self._streams.add(stream)
        handle = self._backend.open(stream)
        if handle is None:  # no worker left (they kept dying): the call is taken, unrecognised
            stream.recognition_moved(None)
        else:
            stream._handle = handle
        return stream

    def _schedule(self, turn: Callable[[], None]) -> None:
        self._feeders.submit(turn)

    def _processed(self, stream: LegStream, batch: Batch, dropped: int = 0) -> None:
        now = time.monotonic()
        seconds = (batch.size - dropped + batch.silence) / 2 / stream.rate
        lag = now - batch.pushed_at
        with self._lock:
            self._metrics.audio_seconds += seconds
            if not stream.live or not batch.size or dropped:
                return
            self._metrics.lags.append(lag)
            behind = lag > BEHIND_WARNING_SECONDS and now - self._last_behind_log > LOG_EVERY_SECONDS
            if behind:
                self._last_behind_log = now
        if behind:
            log.warning(
                "speech recognition is %.1f s behind on %d legs (%d %s): the machine is short of CPU for this "
                "many calls",
                lag,
                self._metrics.legs_active,
                self.workers,
                "worker processes" if self.backend == "process" else "workers",
            )

    def _dropped(self, stream: LegStream, size: int, why: str) -> None:
        seconds = size / 2 / stream.rate
        now = time.monotonic()
        with self._lock:
            self._metrics.dropped_seconds += seconds
            stream.dropped_seconds += seconds
            warn = why == "worker" or now - stream._last_warning > LOG_EVERY_SECONDS
            if warn:
                stream._last_warning = now
        if not warn:
            return
        if why in ("backlog", "gone"):
            log.error(
                "%s on the %s leg (%.0f s queued): dropping audio from recognition "
                "(%.1f s dropped so far); the call itself is not affected",
                "speech backlog full" if why == "backlog" else "no speech worker left",
                stream.leg,
                stream.backlog_seconds,
                self._metrics.dropped_seconds,
            )
        elif why == "behind":
            log.error(
                "speech recognition more than %.1f s behind on the %s leg: dropping the oldest audio from "
                "recognition (%.1f s dropped so far; the call is partly checked); the call itself is not "
                "affected",
                self.max_lag_seconds or 0,
                stream.leg,
                self._metrics.dropped_seconds,
            )
        else:
            log.error(
                "%.1f s of the %s leg lost to recognition with its worker (the call is partly checked); the "
                "call itself is not affected",
                seconds,
                stream.leg,
            )

    def _leg_closed(self, stream: LegStream, skipped_samples: int) -> None:
        with self._lock:
            self._metrics.legs_active -= 1
            self._metrics.skipped_seconds += skipped_samples / stream.rate
            self._streams.discard(stream)

    def close(self) -> None:
        """Let legs already finishing end (up to CLOSE_WAIT_SECONDS), then stop the workers."""
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        with self._lock:
            finishing = [s for s in self._streams if s._finishing]
        for stream in finishing:
            try:
                stream.done.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                pass
        if self._finalizer.detach() is not None:
            _shut_down(self._backend, self._feeders, self._listener, True)


def _shut_down(backend: _Backend, feeders: ThreadPoolExecutor, listener: TalkListener | None, wait: bool) -> None:
    """Stop feeding and recognising; ``wait`` for the threads and workers (not when collected: the last
    reference may go on one of those threads)."""
    feeders.shutdown(wait=wait)
    backend.close(wait)
    if listener is not None:
        listener.close(wait)
