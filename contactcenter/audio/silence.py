"""Silence detection by energy: quiet 20 ms frames need not reach the recogniser.

Speech is followed by a hangover (frames still treated as speech) so the recogniser hears enough trailing
silence to end the utterance; the hangover also bridges the short pauses inside a sentence.
"""

from __future__ import annotations

import numpy as np

FULL_SCALE = 32768.0


def frame_dbfs(frame: np.ndarray) -> float:
    """Level of 16-bit samples in dB relative to full scale (-inf for digital silence)."""
    if frame.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(frame.astype(np.float64)))))
    return 20.0 * np.log10(rms / FULL_SCALE) if rms > 0 else float("-inf")


class SilenceGate:
    """Says for each frame whether it should be fed to the recogniser."""

    def __init__(self, threshold_dbfs: float = -45.0, hangover_frames: int = 20) -> None:
        self.threshold_dbfs = threshold_dbfs
        self.hangover_frames = hangover_frames
        self._since_speech = hangover_frames + 1  # start closed: leading silence is skipped

    def admit(self, frame: np.ndarray) -> bool:
        if frame_dbfs(frame) >= self.threshold_dbfs:
            self._since_speech = 0
            return True
        self._since_speech += 1
        return self._since_speech <= self.hangover_frames
