"""Recorded prompts for the line: any WAV (rate, width, channels) converted once to 16-bit 8 kHz mono.

Conversions are cached in memory by file and modification time, so a prompt re-recorded while the desk
runs is picked up on the next call.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import soundfile
import soxr

from contactcenter.audio.line import RATE as LINE_RATE

log = logging.getLogger(__name__)


class Prompts:
    """The prompts in one folder, by key (``greeting`` → ``greeting.wav``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[tuple[Path, float], bytes] = {}
        self._lock = threading.Lock()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.wav"

    def line_audio(self, key: str) -> bytes | None:
        """The prompt as 16-bit 8 kHz mono PCM, or None (logged) if there is none or it cannot be read."""
        path = self.path(key)
        try:
            stamp = path.stat().st_mtime
        except FileNotFoundError:
            log.warning("prompt %s missing: record it as %s (nothing is played)", key, path)
            return None
        with self._lock:
            if (path, stamp) not in self._cache:
                try:
                    self._cache[(path, stamp)] = to_line_audio(path)
                except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
                    log.error("prompt %s cannot be read (%s); nothing is played", path, exc)
                    return None
            return self._cache[(path, stamp)]


def to_line_audio(path: Path) -> bytes:
    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != LINE_RATE:
        mono = soxr.resample(mono, rate, LINE_RATE, quality="HQ")
    return (np.clip(mono, -1.0, 1.0) * 32767).astype("<i2").tobytes()
