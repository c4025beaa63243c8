"""Test signals and their analysis: tones, the dominant frequency, the level, and where a reference sound
lies within received audio."""

from __future__ import annotations

import numpy as np


def tone(frequency: float, seconds: float, rate: int, level: float = 0.5) -> np.ndarray:
    return (level * np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def rms_dbfs(samples: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(samples))) + 1e-12))


def best_correlation(received: np.ndarray, reference: np.ndarray) -> float:
    """Peak normalised cross-correlation of the reference within the received audio."""
    r = received.astype(np.float64)
    ref = reference.astype(np.float64)
    best = 0.0
    for lag in range(0, max(1, len(r) - len(ref)), 20):
        window = r[lag : lag + len(ref)]
        if len(window) < len(ref):
            break
        denominator = np.linalg.norm(window) * np.linalg.norm(ref)
        if denominator:
            best = max(best, float(np.dot(window, ref) / denominator))
    return best
