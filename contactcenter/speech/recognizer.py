"""Recognition of one call leg: 16-bit PCM in, partial results and timed utterances out.

Silence is skipped before the recogniser to save CPU; because Vosk times words by the samples it was
fed, the leg keeps a map from recogniser time back to call time. When speech is followed by more silence
than the hangover, the utterance is finished at once (``FinalResult``) rather than waiting for Vosk's
endpointer, which bounds the delay from the end of a phrase to its final result.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from contactcenter.audio.line import FRAME_SECONDS
from contactcenter.audio.silence import SilenceGate
from contactcenter.records import Leg, UtteranceRecord, WordRecord
from contactcenter.speech.vosk_model import SpeechModel

FRAMES_PER_UNIT = 5  # Vosk is fed 100 ms at a time: cheap per call, and at most 100 ms of added delay

PartialHandler = Callable[[Leg, str, float], None]
FinalHandler = Callable[[UtteranceRecord], None]


class LegRecognizer:
    """Streams one leg through a (pooled, warm) Vosk recogniser. Not thread-safe: one feeder at a time."""

    def __init__(
        self,
        model: SpeechModel,
        leg: Leg,
        rate: int,
        on_final: FinalHandler,
        on_partial: PartialHandler | None = None,
        gate: SilenceGate | None = None,
    ) -> None:
        self.model = model
        self.leg = leg
        self.rate = rate
        self.on_final = on_final
        self.on_partial = on_partial
        self.gate = gate
        self.frame_bytes = int(rate * FRAME_SECONDS) * 2
        self.unit_bytes = self.frame_bytes * FRAMES_PER_UNIT
        self._buffer: list[memoryview] = []  # admitted frames not yet given to Vosk
        self._buffered = 0
        self._recognizer, self._origin = model.acquire(rate)
        self._fed = 0  # samples admitted for the recogniser by this leg (buffered or fed)
        self._seen = 0  # samples of the leg so far, skipped ones included
        self._remainder = b""
        self._map_rec: list[int] = []  # recogniser sample where each fed stretch starts ...
        self._map_call: list[int] = []  # ... and the call sample it corresponds to
        self._feeding = False
        self.skipped_samples = 0
        self.closed = False

    @property
    def audio_seconds(self) -> float:
        """How much of the leg has been worked through (call time)."""
        return self._seen / self.rate

    def feed(self, pcm: bytes) -> None:
        """Take the next stretch of the leg (16-bit little-endian mono PCM, any length).

        Vosk gets the admitted audio in fixed units whatever the stretches pushed, so the same audio gives
        the same result live and from a recording. Frames are looked at in place; the one copy is the join
        of a unit's admitted frames for Vosk."""
        data = memoryview(self._remainder + pcm if self._remainder else pcm)
        usable = len(data) - len(data) % self.frame_bytes
        self._remainder = bytes(data[usable:])
        for offset in range(0, usable, self.frame_bytes):
            frame = data[offset : offset + self.frame_bytes]
            if self.gate is None or self.gate.admit(np.frombuffer(frame, dtype="<i2")):
                if not self._feeding:
                    self._map_rec.append(self._fed)
                    self._map_call.append(self._seen)
                    self._feeding = True
                self._buffer.append(frame)
                self._buffered += len(frame)
                self._fed += len(frame) // 2
                if self._buffered >= self.unit_bytes:
                    self._accept_buffer()
            elif self._feeding:
                self._end_of_speech()
            else:
                self.skipped_samples += len(frame) // 2
            self._seen += len(frame) // 2

    def _accept_buffer(self) -> None:
        if self._buffer:
            chunk = b"".join(self._buffer)
            self._buffer, self._buffered = [], 0
            self._accept(chunk)

    def _end_of_speech(self) -> None:
        """Silence after speech: hand Vosk what is buffered and finish the utterance now."""
        self._accept_buffer()
        # always: even after an endpoint Vosk may hold audio of a new utterance, which must not run on
        # into speech after the gap (its words would straddle the skipped silence)
        self._final(self._recognizer.FinalResult())
        self._feeding = False
        self.skipped_samples += self.frame_bytes // 2

    def _accept(self, chunk: bytes) -> None:
        if self._recognizer.AcceptWaveform(chunk):
            self._final(self._recognizer.Result())
            return
        if self.on_partial is None:
            return
        text = json.loads(self._recognizer.PartialResult()).get("partial", "")
        if text:
            self.on_partial(self.leg, text, (self._seen + self.frame_bytes // 2) / self.rate)

    def _call_time(self, recognizer_seconds: float) -> float:
        """Recogniser time (Vosk's word times) → seconds of the call."""
        sample = round(recognizer_seconds * self.rate) - self._origin  # Vosk times are floats: 31039.99 is 31040
        index = max(0, bisect.bisect_right(self._map_rec, sample) - 1)
        if not self._map_rec:
            return sample / self.rate
        return round((self._map_call[index] + sample - self._map_rec[index]) / self.rate, 3)

    def _final(self, result_json: str) -> None:
        result: dict[str, Any] = json.loads(result_json)
        words = result.get("result") or []
        text = result.get("text", "").strip()
        if not text or not words:
            return
        records = tuple(
            WordRecord(
                word=w["word"],
                start_s=self._call_time(w["start"]),
                end_s=self._call_time(w["end"]),
                confidence=w.get("conf"),
            )
            for w in words
        )
        confidence = round(sum(w.confidence or 0 for w in records) / len(records), 3)
        self.on_final(
            UtteranceRecord(
                leg=self.leg,
                start_s=records[0].start_s,
                end_s=records[-1].end_s,
                text=text,
                confidence=confidence,
                words=records,
            )
        )

    def finish(self) -> None:
        """End of the leg: flush the last utterance and give the recogniser back to the pool."""
        if self.closed:
            return
        self.closed = True
        if self._remainder:
            self.feed(b"\x00" * (self.frame_bytes - len(self._remainder)))
        self._accept_buffer()
        self._final(self._recognizer.FinalResult())
        self.model.release(self.rate, self._recognizer, self._origin + self._fed)
