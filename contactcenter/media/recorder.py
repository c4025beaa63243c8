"""The call's stereo recording, written while the call goes on: agent on the left, customer on the right.

Frames of the two legs arrive on two threads (the RTP sender and receiver) and are kept only until the
next flush, at most ``flush_seconds`` apart, on the recorder's own thread, so neither RTP thread ever waits
for the disk and memory per call stays flat however long the call lasts.

The file is a plain WAV written with the standard library's :mod:`wave`, which rewrites the header's sizes
after every block it writes. After a crash or ``kill -9`` the file therefore needs no repair: it plays up
to the last flush (at most ``flush_seconds`` lost). Why not soundfile: libsndfile writes the sizes only when
the file is closed, so a killed desk left a header that claims no audio.

The legs are aligned by position: each leg's audio is continuous (the receiver fills lost packets with
silence by RTP timestamp). When one leg falls more than ``max_skew_seconds`` behind (the far end stopped
sending), it is padded with silence, and as much of that leg's late silence is skipped when the receiver
delivers the gap, so the two channels never drift apart. Only digital silence is skipped: sound that
arrives instead (the sender restarted its timeline) is kept, a little later than it was said.
"""

from __future__ import annotations

import logging
import threading
import wave
from pathlib import Path

import numpy as np

from contactcenter.audio.line import LEGS, RATE, SAMPLE_WIDTH, Leg

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
MAX_SKEW_SECONDS = 2.0


class StreamingRecorder:
    """One call's recording; :meth:`write` from the RTP threads, :meth:`close` when the call ends."""

    def __init__(
        self, path: Path, flush_seconds: float = FLUSH_SECONDS, max_skew_seconds: float = MAX_SKEW_SECONDS
    ) -> None:
        self.path = path
        self.flush_seconds = flush_seconds
        self.max_skew_bytes = int(max_skew_seconds * RATE) * SAMPLE_WIDTH
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("wb")
        self._wav = wave.open(self._file, "wb")  # closed in close(), after the last flush
        self._wav.setnchannels(2)
        self._wav.setsampwidth(SAMPLE_WIDTH)
        self._wav.setframerate(RATE)
        self._wav.writeframes(b"")  # the header now: a file that exists is a valid (empty) WAV
        self._file.flush()
        self._pending: dict[Leg, bytearray] = {leg: bytearray() for leg in LEGS}
        self._skip: dict[Leg, int] = {leg: 0 for leg in LEGS}  # bytes of late audio to drop (padded before)
        self._lock = threading.Lock()  # the pending buffers (RTP threads vs the flusher)
        self._file_lock = threading.Lock()  # the file (the flusher vs close)
        self._closed = threading.Event()
        self.seconds_written = 0.0
        self.failed: str | None = None
        self._flusher = threading.Thread(target=self._flush_loop, name=f"recorder {path.name}", daemon=True)
        self._flusher.start()

    def write(self, leg: Leg, frame: bytes) -> None:
        """The next stretch of one leg (line audio); returns at once."""
        with self._lock:
            skip = self._skip[leg]
            if skip:
                if frame.count(0) == len(frame):  # the gap's silence, already padded
                    dropped = min(skip, len(frame))
                    self._skip[leg] -= dropped
                    frame = frame[dropped:]
                else:  # sound, not the gap: never dropped
                    self._skip[leg] = 0
            self._pending[leg] += frame

    def close(self) -> Path | None:
        """Write what is left (the shorter leg padded with silence) and close; the path, or None if the
        recording could not be written."""
        if self._closed.is_set():
            return None if self.failed else self.path
        self._closed.set()
        self._flusher.join()
        self._flush(final=True)
        with self._file_lock:
            try:
                self._wav.close()
                self._file.close()
            except OSError as exc:
                self._fail(exc)
        return None if self.failed else self.path

    # ------------------------------------------------------------------------------------------- internals

    def _flush_loop(self) -> None:
        while not self._closed.wait(self.flush_seconds):
            self._flush(final=False)

    def _take(self, final: bool) -> bytes:
        """Both legs interleaved up to where both have audio (or the padded end); removes it from pending."""
        with self._lock:
            agent, customer = self._pending["agent"], self._pending["customer"]
            longer = max(len(agent), len(customer))
            for leg, buffer in self._pending.items():
                behind = longer - len(buffer)
                if behind and (final or behind > self.max_skew_bytes):
                    buffer += bytes(behind)
                    if not final:
                        self._skip[leg] += behind
            usable = min(len(agent), len(customer))
            usable -= usable % SAMPLE_WIDTH
            if not usable:
                return b""
            stereo = np.empty((usable // SAMPLE_WIDTH, 2), dtype="<i2")
            stereo[:, 0] = np.frombuffer(agent, dtype="<i2", count=usable // SAMPLE_WIDTH)
            stereo[:, 1] = np.frombuffer(customer, dtype="<i2", count=usable // SAMPLE_WIDTH)
            del agent[:usable], customer[:usable]
        return stereo.tobytes()

    def _flush(self, final: bool) -> None:
        data = self._take(final)
        if not data or self.failed:
            return
        with self._file_lock:
            try:
                self._wav.writeframes(data)  # also rewrites the header's sizes
                self._file.flush()
                self.seconds_written += len(data) / (2 * SAMPLE_WIDTH) / RATE
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if self.failed is None:
            self.failed = str(exc)
            log.error("recording %s stopped (%s); the call goes on without it", self.path, exc)
