"""Recognition of one call leg: 16-bit PCM in, partial results and timed utterances out.

Silence is skipped before the recogniser to save CPU: judged here by the ``gate``, or by the monitor, which
then says how much silence passed (``silence``). When speech is followed by more silence than the
hangover, the utterance is finished at once (``FinalResult``) rather than waiting for Vosk's endpointer,
which bounds the delay from the end of a phrase to its final result.

A Vosk recogniser is borrowed from the model's pool for one utterance only: from its first admitted frame
to that ``FinalResult``. After it Vosk starts afresh (new features, new decoder), so which recogniser decodes
the next utterance, this leg's or another's, changes only speed (Vosk's output varies a little with the
process's history in any case: the same clips twice in one process share about 0.88 of their characters),
and a leg that is listening holds none: the recognisers a process needs follow the legs *speaking*, not the legs open (see vosk_model.py for
why that matters to memory). An utterance is fed without gaps, so its words are timed from where it began
in the call. Audio the monitor had to drop (``skip``) ends the utterance in progress and moves the call
clock on, so words after it keep their true call time.

Latency, what was tried and measured (the 18 real clips, every word of 2+ syllables banned, time from the
word's end to its alert in audio time, i.e. with no processing delay; bench/speech_bench.py measures wall
time). Partial results are read after every unit of ``FRAMES_PER_UNIT`` frames fed to Vosk:

* partial results without word times (vosk_model.py): with them Vosk takes partials from the incrementally
  determinised lattice, about a second behind; a word mid-utterance was reported p50 1.6 s after it ended,
  0.55 s without;
* 60 ms units instead of 100 ms: p95 1.47 s instead of 1.71 s for words mid-utterance (alerted at first
  sight), the same CPU within the noise (0.24-0.25 CPU-s per audio second either way); 40 ms gained nothing
  more (1.48 s): Vosk's decoder itself advances in chunks of about 200 ms;
* those chunks are ``--frames-per-chunk`` in the model's conf/model.conf (about 20 frames by default): 12 gave
  p95 1.09 s for 8 % more CPU, 9 gave 0.97 s for 25 % more. It is ``[speech] decoder_frames_per_chunk``
  (vosk_model.py loads the model through a scratch copy of its conf). Measured again on bench/speech_bench.py
  (wall time, critical rule, word mid-utterance, p95): the model's own 1.31-1.58 s, 9 frames 0.81-1.01 s, 6 frames
  0.91 s (at the end of an utterance 0.77 s); real-time factor with silence skipped 0.079 / 0.096 / 0.119
  CPU-s per audio second. The default is 6, the only one that met the 1 s alert target; it costs half again
  the recognition CPU, and it changes the words a little (the online i-vector is updated per chunk; on six
  clips 0.73-0.79 of the characters in common with the model's own, against 0.89 for that run twice). Whether
  that costs accuracy can only be told on the Mandarin model, with ``contactcenter evaluate`` on one's own
  calls; 0 goes back to the model's own step;
* endpointing: the utterance ends ``silence_hangover_ms`` (300) after the last loud frame (then
  ``FinalResult``), not when Vosk's own endpointer decides (0.5-2 s of trailing silence in the model's conf);
  a word ending an utterance was alerted p50 0.36-0.49 s after it ended;
* stability: a banned phrase seen in a partial result is alerted once it has been there 0.2 s, or at first
  sight for a critical rule (compliance.py): p95 mid-utterance 1.47 s at first sight against 1.72 s, at the
  price of more alerts on words the recogniser then revises (of 68 words that only ever appeared in partial
  results, 68 were alerted at first sight, 48 after 0.2 s, 25 after 0.3 s).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from contactcenter.audio.line import FRAME_SECONDS
from contactcenter.audio.silence import SilenceGate
from contactcenter.records import Leg, UtteranceRecord, WordRecord
from contactcenter.speech.vosk_model import Recognizer, SpeechModel

FRAMES_PER_UNIT = 3  # Vosk is fed 60 ms at a time: partial results every 60 ms, little cost per call

PartialHandler = Callable[[Leg, str, float], None]
FinalHandler = Callable[[UtteranceRecord], None]


class LegRecognizer:
    """Streams one leg through pooled, warm Vosk recognisers. Not thread-safe: one feeder at a time."""

    def __init__(
        self,
        model: SpeechModel,
        leg: Leg,
        rate: int,
        on_final: FinalHandler,
        on_partial: PartialHandler | None = None,
        gate: SilenceGate | None = None,
        start_sample: int = 0,
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
        self._recognizer: Recognizer | None = None  # lent for the utterance in progress
        self._origin = 0  # samples the lent recogniser had been fed before this utterance
        self._fed = 0  # samples of this utterance admitted (buffered or fed)
        self._utterance_start = 0  # call sample where the utterance in progress began
        self._seen = start_sample  # samples of the leg so far, skipped ones included
        self._remainder = b""
        self.skipped_samples = 0  # silence not decoded
        self.utterances = 0  # recognisers borrowed: utterances started
        self.closed = False

    @property
    def audio_seconds(self) -> float:
        """How much of the leg has been worked through (call time)."""
        return self._seen / self.rate

    @property
    def committed_seconds(self) -> float:
        """Call time up to which every result has been given: where the utterance in progress began, or
        :attr:`audio_seconds` between utterances (what a lost recogniser would take with it)."""
        return (self._utterance_start if self._recognizer is not None else self._seen) / self.rate

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
                if self._recognizer is None:
                    self._begin()
                self._buffer.append(frame)
                self._buffered += len(frame)
                self._fed += len(frame) // 2
                if self._buffered >= self.unit_bytes:
                    self._accept_buffer()
            elif self._recognizer is not None:
                self._end_utterance()
                self.skipped_samples += len(frame) // 2
            else:
                self.skipped_samples += len(frame) // 2
            self._seen += len(frame) // 2

    def silence(self, samples: int) -> None:
        """``samples`` of the leg found silent before they came here (the monitor judges silence itself): the
        utterance in progress ends, and the call clock moves on."""
        self.skip(samples)
        self.skipped_samples += samples

    def skip(self, samples: int) -> None:
        """``samples`` of the leg that will never come (dropped under overload): the utterance in progress
        ends where the audio stopped, and the call clock moves on."""
        if self._remainder:
            samples += len(self._remainder) // 2
            self._remainder = b""
        if self._recognizer is not None:
            self._end_utterance()
        self._seen += samples

    def _begin(self) -> None:
        self._recognizer, self._origin = self.model.acquire(self.rate)
        self._fed = 0
        self._utterance_start = self._seen
        self.utterances += 1

    def _accept_buffer(self) -> None:
        if self._buffer:
            chunk = b"".join(self._buffer)
            self._buffer, self._buffered = [], 0
            self._accept(chunk)

    def _end_utterance(self) -> None:
        """Silence after speech (or the end of the leg): hand Vosk what is buffered, finish the utterance
        now and give the recogniser back."""
        recognizer = self._recognizer
        assert recognizer is not None
        self._accept_buffer()
        try:
            self._final(recognizer.FinalResult())
        finally:
            self._recognizer = None
            self.model.release(self.rate, recognizer, self._origin + self._fed)

    def _accept(self, chunk: bytes) -> None:
        recognizer = self._recognizer
        assert recognizer is not None
        if recognizer.AcceptWaveform(chunk):
            self._final(recognizer.Result())
            return
        if self.on_partial is None:
            return
        text = json.loads(recognizer.PartialResult()).get("partial", "")
        if text:
            self.on_partial(self.leg, text, (self._seen + self.frame_bytes // 2) / self.rate)

    def _call_time(self, recognizer_seconds: float) -> float:
        """Recogniser time (Vosk's word times, counted from the recogniser's creation) → seconds of the call."""
        sample = round(recognizer_seconds * self.rate) - self._origin  # Vosk times are floats: 31039.99 is 31040
        return round((self._utterance_start + max(0, sample)) / self.rate, 3)

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
        """End of the leg: flush the last utterance and give its recogniser back to the pool."""
        if self.closed:
            return
        self.closed = True
        if self._remainder:
            self.feed(b"\x00" * (self.frame_bytes - len(self._remainder)))
        if self._recognizer is not None:
            self._end_utterance()
