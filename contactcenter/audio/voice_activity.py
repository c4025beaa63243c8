"""Is someone speaking in this 20 ms? Voice activity on telephone audio, frame by frame.

The conversation rules (talk time, overlaps, interruptions, dead air) need to know when each leg speaks,
not only what the recogniser made of it. An energy threshold alone calls every loud noise speech and
misses quiet speakers; WebRTC's VAD (``webrtcvad-wheels``, a maintained build of Google's GMM detector)
looks at the spectrum, but on its own it calls low line hiss and comfort noise speech. The two together,
a frame is speech when WebRTC says so *and* it is above a low energy floor, did best on the bench
(``bench/vad_bench.py`` prints the measurement: real speech placed in line noise at known offsets).

WebRTC's VAD takes 8, 16, 32 or 48 kHz; other rates (a recording at 22.05 or 44.1 kHz) are resampled
for it with soxr, the resampler the project already uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import soxr
import webrtcvad

from contactcenter.audio.silence import frame_dbfs

FRAME_MS = 20
VAD_RATES = (8000, 16000, 32000, 48000)
Detector = Literal["webrtc", "energy"]


@dataclass(frozen=True)
class VoiceActivitySettings:
    """How frames are judged: ``detector`` "webrtc" (with the energy floor) or "energy" (the floor alone,
    at ``energy_threshold_dbfs``); ``aggressiveness`` is WebRTC's mode, 0 (keeps most) to 3 (strictest)."""

    detector: Detector = "webrtc"
    aggressiveness: int = 3
    floor_dbfs: float = -50.0
    energy_threshold_dbfs: float = -40.0


class VoiceActivity:
    """Judges one leg's 20 ms frames of 16-bit mono PCM, in order. Not thread-safe: one per leg."""

    def __init__(self, rate: int, settings: VoiceActivitySettings | None = None) -> None:
        self.settings = settings or VoiceActivitySettings()
        self.rate = rate
        self.frame_samples = rate * FRAME_MS // 1000
        self._vad_rate = rate if rate in VAD_RATES else (8000 if rate < 16000 else 16000)
        self._vad = webrtcvad.Vad(self.settings.aggressiveness) if self.settings.detector == "webrtc" else None
        self._resampler = (
            None if self._vad_rate == rate else soxr.ResampleStream(rate, self._vad_rate, 1, dtype="int16")
        )
        self._vad_samples = self._vad_rate * FRAME_MS // 1000
        self._pending = np.zeros(0, dtype=np.int16)

    def judge(self, frame: np.ndarray, level: float | None = None) -> tuple[bool, float]:
        """Whether this frame (``frame_samples`` int16 samples) is speech, and its level in dBFS (``level``:
        already measured, as when a caller measures many frames at once)."""
        if level is None:
            level = frame_dbfs(frame)
        if self._vad is None:
            return bool(level >= self.settings.energy_threshold_dbfs), level
        samples = frame if self._resampler is None else self._resample(frame)
        if level < self.settings.floor_dbfs or samples.size < self._vad_samples:
            return False, level
        return self._vad.is_speech(samples[: self._vad_samples].tobytes(), self._vad_rate), level

    def _resample(self, frame: np.ndarray) -> np.ndarray:
        """One frame's worth at the VAD's rate (the resampler's delay is carried over between frames)."""
        assert self._resampler is not None
        self._pending = np.concatenate([self._pending, self._resampler.resample_chunk(frame)])
        if self._pending.size < self._vad_samples:
            return self._pending
        out, self._pending = self._pending[: self._vad_samples], self._pending[self._vad_samples :]
        return out
