"""Audio crossing from one clock to another: the line's 8 kHz RTP clock and the sound card's own crystal.

The two never agree exactly (a sound card is commonly 50-500 ppm off), so a plain FIFO between them either
grows without end (a delay that creeps up over a long call) or runs dry (an underrun click every few
seconds). :class:`ElasticBuffer` resamples what goes in with libsoxr's variable-rate mode and steers the
ratio with a PI controller on the buffer's fill level, the way PulseAudio's module-loopback and WebRTC's
audio device buffer do: the fill stays at its target, and the correction is a fraction of a percent of
pitch that nobody hears. It also serves as the jitter buffer: the target fill absorbs the producer's
timing variation (RTP packets, PortAudio callbacks).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import soxr

MAX_CORRECTION = 0.005  # at most 0.5 % faster or slower: beyond any real crystal, still inaudible (9 cents)
PROPORTIONAL_PER_S = 0.2  # ratio correction per second of fill error
INTEGRAL_PER_S2 = 0.02  # removes the steady error a constant drift would leave
FILL_SMOOTHING_S = 1.0  # time constant of the fill-level average the controller steers on
RATIO_UPDATE_MIN = 2e-6  # smaller changes are not worth a resampler update


@dataclass
class ElasticStats:
    """What happened at the buffer's seams, for the display and the benchmark."""

    pushed_samples: int = 0
    pulled_samples: int = 0
    underruns: int = 0  # pulls that found too little audio (the consumer heard silence)
    overruns: int = 0  # times the buffer was cut back after the producer stalled and then caught up
    resyncs: int = 0  # times the consumer started or fell far behind and the oldest audio was dropped
    correction: float = 0.0  # current ratio correction (0.001 = 0.1 % more output per input)
    longest_stall_s: float = 0.0  # the consumer's worst lateness: a pull this much later than its audio ran out


class ElasticBuffer:
    """Samples pushed at ``in_rate`` by one clock, pulled at ``out_rate`` by another, kept ``target`` deep.

    ``push`` and ``pull`` may run in different threads (a PortAudio callback and an RTP sender). ``pull``
    always returns exactly the samples asked for; when the buffer runs dry it pads with silence, counts an
    underrun and waits until it is ``target`` deep again before playing (so one late packet is one gap,
    not a stutter).
    """

    def __init__(self, in_rate: int, out_rate: int, target_seconds: float) -> None:
        if in_rate <= 0 or out_rate <= 0 or target_seconds <= 0:
            raise ValueError("rates and target must be positive")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.target = max(1, round(target_seconds * out_rate))
        self.limit = self.target * 4  # beyond this the buffer is cut back to its target
        self.stats = ElasticStats()
        self._lock = threading.Lock()
        self._resampler = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", vr=True)
        self._data = np.zeros(0, dtype=np.float32)
        self._priming = True
        self._average_fill: float | None = None
        self._integral = 0.0
        self._applied = 0.0
        self._last_pull: float | None = None  # when the consumer last pulled, and how much (its stall measure)
        self._last_pull_seconds = 0.0

    RESAMPLER_DELAY_SECONDS = 0.03  # libsoxr's variable-rate filter holds back about 30 ms, whatever the rates

    def fill_seconds(self) -> float:
        """Audio waiting to be pulled, in seconds."""
        with self._lock:
            return len(self._data) / self.out_rate

    def push(self, samples: np.ndarray) -> None:
        """Samples at ``in_rate`` (float32, -1..1, mono)."""
        if len(samples) == 0:
            return
        with self._lock:
            wanted = self.stats.correction
        if abs(wanted - self._applied) >= RATIO_UPDATE_MIN:  # the resampler is only touched by the producer
            self._resampler.set_io_ratio(self.in_rate, self.out_rate * (1 + wanted), len(samples))
            self._applied = wanted
        converted = self._resampler.resample_chunk(np.ascontiguousarray(samples, dtype=np.float32))
        with self._lock:
            self.stats.pushed_samples += len(samples)
            self._data = np.concatenate((self._data, converted)) if len(self._data) else converted
            if len(self._data) > self.limit:
                self._data = self._data[len(self._data) - self.target :]
                self.stats.overruns += 1

    def pull(self, count: int) -> np.ndarray:
        """Exactly ``count`` samples at ``out_rate``; silence where there is not enough."""
        now = time.monotonic()
        with self._lock:
            if self._last_pull is not None:  # an overrun with no stall on either side would be a defect
                stall = now - self._last_pull - self._last_pull_seconds
                self.stats.longest_stall_s = max(self.stats.longest_stall_s, stall)
            self._last_pull, self._last_pull_seconds = now, count / self.out_rate
            self.stats.pulled_samples += count
            if self._priming:
                if len(self._data) < self.target:
                    return np.zeros(count, dtype=np.float32)
                self._priming = False
                if len(self._data) > self.target + count:  # the consumer started late: play from the newest
                    self._resync()
            if len(self._data) >= count:
                out, self._data = self._data[:count], self._data[count:]
            else:
                out = np.zeros(count, dtype=np.float32)
                out[: len(self._data)] = self._data
                self._data = self._data[:0]
                self.stats.underruns += 1
                self._priming = True
            self._steer(count)
            if self._average_fill is not None and self._average_fill > 2 * self.target + count:
                self._resync()
            return out

    def _resync(self) -> None:
        """Far too much is waiting (the consumer started late, or stalled): steering it away at 0.5 % would
        take seconds of off-pitch audio, so drop the oldest down to the target and steer from there."""
        self._data = self._data[len(self._data) - self.target :]
        self._average_fill = None
        self._integral = 0.0
        self.stats.resyncs += 1

    def _steer(self, count: int) -> None:
        """PI control of the resampling ratio on the smoothed fill level, once per pull (consumer clock)."""
        dt = count / self.out_rate
        fill = len(self._data) + count / 2  # the level midway through this pull
        alpha = min(1.0, dt / FILL_SMOOTHING_S)
        self._average_fill = (
            fill if self._average_fill is None else (self._average_fill + alpha * (fill - self._average_fill))
        )
        error = (self._average_fill - self.target) / self.out_rate  # seconds too full (+) or too empty (-)
        self._integral = float(
            np.clip(self._integral + error * dt, -MAX_CORRECTION / INTEGRAL_PER_S2, MAX_CORRECTION / INTEGRAL_PER_S2)
        )
        correction = float(
            np.clip(-(PROPORTIONAL_PER_S * error + INTEGRAL_PER_S2 * self._integral), -MAX_CORRECTION, MAX_CORRECTION)
        )
        self.stats.correction = correction
