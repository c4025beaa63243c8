"""The speech monitor: every call leg recognised on a pool of worker threads, never blocking the audio path.

The phone pushes 20 ms frames into a leg's queue and returns at once. Workers (one per core by default:
Vosk releases the GIL) take a leg at a time and feed everything it has queued, so each leg's audio stays
in order and no leg waits for another's. If the machine falls behind, the backlog grows: the monitor says
so (``metrics`` and a log line) and, past ``max_backlog_seconds``, drops audio with a count of what it
dropped rather than letting memory grow without end. A recording being audited pushes with ``block=True``
and simply waits for room.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from contactcenter.audio.silence import SilenceGate
from contactcenter.records import Leg
from contactcenter.speech.recognizer import FinalHandler, LegRecognizer, PartialHandler
from contactcenter.speech.talk_activity import ActivitySettings
from contactcenter.speech.vosk_model import SpeechModel

log = logging.getLogger(__name__)

ProgressHandler = Callable[[Leg, float], None]
BATCH_SECONDS = 0.5  # at most this much audio per turn, so legs take turns fairly
BEHIND_WARNING_SECONDS = 1.0
LOG_EVERY_SECONDS = 10.0


@dataclass
class MonitorMetrics:
    """What an operator needs to know about recognition keeping up."""

    legs_active: int = 0
    audio_seconds: float = 0.0
    skipped_seconds: float = 0.0
    dropped_seconds: float = 0.0
    lags: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=2000))

    def lag_percentile(self, share: float) -> float:
        """Delay (seconds) from a frame being pushed to its recognition, at the given share (0.95 = p95)."""
        if not self.lags:
            return 0.0
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class AudioListener(Protocol):
    """Something else that follows a leg's audio on the recognition thread (who talked when)."""

    def add_audio(self, leg: Leg, pcm: bytes) -> None: ...

    def add_gap(self, leg: Leg, size: int) -> None: ...

    def finish_leg(self, leg: Leg) -> None: ...


@dataclass
class _Chunk:
    pcm: bytes
    pushed_at: float
    gap_before: int = 0  # bytes of this leg dropped just before this chunk (backlog full)


class LegStream:
    """One leg's queue into the monitor. ``push`` from the audio thread; ``finish`` when the leg ends."""

    def __init__(
        self,
        monitor: SpeechMonitor,
        recognizer: LegRecognizer,
        on_progress: ProgressHandler | None,
        live: bool = True,
        listener: AudioListener | None = None,
    ) -> None:
        self.monitor = monitor
        self.listener = listener
        self._gap_bytes = 0
        self.live = live  # a live call's lag is a health figure; a recording is pushed faster than real time
        self.recognizer = recognizer
        self.on_progress = on_progress
        self.max_backlog_bytes = int(monitor.max_backlog_seconds * recognizer.rate) * 2
        self._queue: collections.deque[_Chunk] = collections.deque()
        self._queued_bytes = 0
        self._room = threading.Condition()
        self._scheduled = False
        self._finishing = False
        self.done: Future[None] = Future()
        self._last_warning = 0.0
        self.dropped_seconds = 0.0  # audio of this leg the recogniser never heard (backlog full)

    @property
    def backlog_seconds(self) -> float:
        return self._queued_bytes / 2 / self.recognizer.rate

    def push(self, pcm: bytes, block: bool = False) -> bool:
        """Queue audio for recognition; False if it was dropped (backlog full, or the leg already finished:
        late audio after hang-up is no reason to disturb the caller's thread)."""
        with self._room:
            if self._finishing:
                log.debug("audio pushed to the %s leg after it finished; ignored", self.recognizer.leg)
                return False
            while self._queued_bytes + len(pcm) > self.max_backlog_bytes:
                if not block:
                    self.monitor._dropped(self, len(pcm))
                    self._gap_bytes += len(pcm)
                    return False
                self._room.wait()
            self._queue.append(_Chunk(pcm, time.monotonic(), self._gap_bytes))
            self._gap_bytes = 0
            self._queued_bytes += len(pcm)
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            self.monitor._schedule(self)
        return True

    def finish(self) -> Future[None]:
        """No more audio: recognise what is queued, flush the last utterance; the future says when done."""
        with self._room:
            self._finishing = True
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            self.monitor._schedule(self)
        return self.done

    def _turn(self) -> None:
        """Run by a worker: feed up to BATCH_SECONDS of queued audio, then yield or finish."""
        limit = int(BATCH_SECONDS * self.recognizer.rate) * 2
        with self._room:
            chunks: list[_Chunk] = []
            taken = 0
            while self._queue and taken < limit:
                chunk = self._queue.popleft()
                chunks.append(chunk)
                taken += len(chunk.pcm)
            self._queued_bytes -= taken
            self._room.notify_all()
        try:
            if chunks:
                for chunk in chunks:  # in place: the recogniser gathers Vosk's units itself
                    self.recognizer.feed(chunk.pcm)
                self._follow(chunks)
                self.monitor._processed(self, chunks)
                if self.on_progress is not None:
                    self.on_progress(self.recognizer.leg, self.recognizer.audio_seconds)
        except Exception:
            log.exception("recognition failed on the %s leg; the call goes on", self.recognizer.leg)
        with self._room:
            more = bool(self._queue)
            finishing = self._finishing and not more
            if not more and not finishing:
                self._scheduled = False
        if more:
            self.monitor._schedule(self)
        elif finishing:
            if self.listener is not None:
                try:
                    self.listener.finish_leg(self.recognizer.leg)
                except Exception:
                    log.exception("following the %s leg's talk failed at its end", self.recognizer.leg)
            try:
                self.recognizer.finish()
                self.monitor._leg_closed(self)
                self.done.set_result(None)
            except Exception as exc:
                log.exception("could not finish the %s leg", self.recognizer.leg)
                self.monitor._leg_closed(self)
                self.done.set_exception(exc)

    def _follow(self, chunks: list[_Chunk]) -> None:
        """The same audio to the listener; if it fails it is dropped for this leg and recognition goes on."""
        listener = self.listener
        if listener is None:
            return
        leg = self.recognizer.leg
        try:
            for chunk in chunks:
                if chunk.gap_before:
                    listener.add_gap(leg, chunk.gap_before)
                listener.add_audio(leg, chunk.pcm)
        except Exception:
            self.listener = None
            log.exception("following the %s leg's talk failed; its recognition goes on", leg)


class SpeechMonitor:
    """Recognises any number of call legs on a bounded pool of threads."""

    def __init__(
        self,
        model: SpeechModel,
        workers: int = 0,
        max_backlog_seconds: float = 30.0,
        silence_threshold_dbfs: float | None = -45.0,
        silence_hangover_ms: int = 300,
        activity: ActivitySettings | None = None,
    ) -> None:
        self.model = model
        self.activity = activity or ActivitySettings()  # how each call's talk activity is judged
        self.workers = workers or os.cpu_count() or 1
        self.max_backlog_seconds = max_backlog_seconds
        self.silence_threshold_dbfs = silence_threshold_dbfs
        self.hangover_frames = max(0, silence_hangover_ms // 20)
        self.metrics = MonitorMetrics()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="speech")
        self._lock = threading.Lock()
        self._last_behind_log = 0.0

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
        gate = (
            None
            if self.silence_threshold_dbfs is None
            else SilenceGate(self.silence_threshold_dbfs, self.hangover_frames)
        )
        recognizer = LegRecognizer(self.model, leg, rate, on_final, on_partial, gate)
        with self._lock:
            self.metrics.legs_active += 1
        return LegStream(self, recognizer, on_progress, live, listener)

    def _schedule(self, stream: LegStream) -> None:
        self._executor.submit(stream._turn)

    def _processed(self, stream: LegStream, chunks: list[_Chunk]) -> None:
        now = time.monotonic()
        seconds = sum(len(c.pcm) for c in chunks) / 2 / stream.recognizer.rate
        lag = now - chunks[-1].pushed_at
        with self._lock:
            self.metrics.audio_seconds += seconds
            if not stream.live:
                return
            self.metrics.lags.append(lag)
            behind = lag > BEHIND_WARNING_SECONDS and now - self._last_behind_log > LOG_EVERY_SECONDS
            if behind:
                self._last_behind_log = now
        if behind:
            log.warning(
                "speech recognition is %.1f s behind on %d legs (%d workers): the machine is short "
                "of CPU for this many calls",
                lag,
                self.metrics.legs_active,
                self.workers,
            )

    def _dropped(self, stream: LegStream, size: int) -> None:
        seconds = size / 2 / stream.recognizer.rate
        now = time.monotonic()
        with self._lock:
            self.metrics.dropped_seconds += seconds
            stream.dropped_seconds += seconds
            warn = now - stream._last_warning > LOG_EVERY_SECONDS
            if warn:
                stream._last_warning = now
        if warn:
            log.error(
                "speech backlog full on the %s leg (%.0f s queued): dropping audio from recognition "
                "(%.1f s dropped so far); the call itself is not affected",
                stream.recognizer.leg,
                stream.backlog_seconds,
                self.metrics.dropped_seconds,
            )

    def _leg_closed(self, stream: LegStream) -> None:
        with self._lock:
            self.metrics.legs_active -= 1
            self.metrics.skipped_seconds += stream.recognizer.skipped_samples / stream.recognizer.rate

    def close(self) -> None:
        self._executor.shutdown(wait=True)
