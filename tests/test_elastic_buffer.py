"""The elastic buffer between the line clock and the sound card clock: resampling, jitter, drift.

Long runs are compressed in time: producer and consumer are stepped on simulated clocks, so a 30-minute
call with a sound card 0.3 % fast takes seconds and the result does not depend on the machine's load.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from contactcenter.audio.elastic import ElasticBuffer
from tests.helpers.signals import dominant_frequency, rms_dbfs, tone

TARGET = 0.03


def run_clocks(
    buffer: ElasticBuffer,
    *,
    seconds: float,
    push_block: int,
    pull_block: int,
    drift: float,
    jitter: float = 0.0,
    seed: int = 7,
) -> dict[str, np.ndarray]:
    """Push a 440 Hz tone at ``in_rate × (1 + drift)`` (the producer's crystal is off by ``drift``), pull at
    exactly ``out_rate``; ``jitter`` delays each push by up to that many seconds. Returns the fill level
    once per simulated second and everything pulled."""
    rng = np.random.default_rng(seed)
    push_period = push_block / (buffer.in_rate * (1 + drift))
    pull_period = pull_block / buffer.out_rate
    next_push = rng.uniform(0, jitter)
    pushed = pulls = 0
    fills, pulled = [], []
    per_second = round(1 / pull_period)
    while pulls * pull_period < seconds:
        if next_push <= pulls * pull_period:
            start = pushed * push_block
            buffer.push(
                0.5 * np.sin(2 * np.pi * 440 * (start + np.arange(push_block)) / buffer.in_rate).astype(np.float32)
            )
            pushed += 1
            next_push = pushed * push_period + rng.uniform(0, jitter)
        else:
            pulled.append(buffer.pull(pull_block))
            pulls += 1
            if pulls % per_second == 0:
                fills.append(buffer.fill_seconds())
    return {"fills": np.array(fills), "audio": np.concatenate(pulled)}


@pytest.mark.parametrize(
    ("in_rate", "out_rate", "push_block", "pull_block", "drift"),
    [
        (8000, 48000, 160, 480, +0.003),  # line to earpiece, the card 0.3 % slow against the line
        (8000, 48000, 160, 480, -0.003),
        (48000, 8000, 480, 160, +0.001),  # microphone to line, the card 0.1 % fast
        (44100, 8000, 441, 160, -0.0005),
    ],
)
def test_a_30_minute_call_with_clock_drift_keeps_its_delay_and_never_runs_dry(
    in_rate: int, out_rate: int, push_block: int, pull_block: int, drift: float
) -> None:
    buffer = ElasticBuffer(in_rate, out_rate, TARGET)
    result = run_clocks(buffer, seconds=1800, push_block=push_block, pull_block=pull_block, drift=drift)
    fills = result["fills"] + pull_block / out_rate / 2  # sampled just after a pull: add back half a pull
    # A plain FIFO would be 5.4 s (0.3 %) or 1.8 s (0.1 %) behind or dry by the end; this one holds its target.
    assert abs(fills[-300:].mean() - TARGET) < 0.01, fills[-300:].mean()
    assert fills[60:].max() < TARGET + 0.025 and fills[60:].min() > 0.0
    assert buffer.stats.underruns == 0 and buffer.stats.overruns == 0
    achieved = buffer.stats.pulled_samples / (buffer.stats.pushed_samples * out_rate / in_rate) - 1
    assert achieved == pytest.approx(-drift, abs=1e-4)  # the ratio was steered by exactly the drift
    last_second = result["audio"][-out_rate:]
    assert dominant_frequency(last_second, out_rate) == pytest.approx(440, abs=2)  # 0.3 % of pitch at most


def test_rtp_jitter_within_the_target_is_absorbed() -> None:
    buffer = ElasticBuffer(8000, 48000, TARGET)
    result = run_clocks(buffer, seconds=120, push_block=160, pull_block=480, drift=0.0, jitter=0.025)
    assert buffer.stats.underruns == 0
    audio = result["audio"][48000:]
    assert rms_dbfs(audio) == pytest.approx(rms_dbfs(tone(440, 1, 8000)), abs=0.2)  # no gaps in the tone


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 48000), (48000, 8000), (8000, 44100), (16000, 8000)])
def test_resampling_keeps_frequency_and_level_and_removes_what_the_line_cannot_carry(
    in_rate: int, out_rate: int
) -> None:
    buffer = ElasticBuffer(in_rate, out_rate, TARGET)
    block = in_rate // 50
    signal = tone(1000, 8, in_rate)
    alias = tone(6000, 8, in_rate, level=0.3) if in_rate > 12000 else np.zeros_like(signal)
    out = []
    for start in range(0, len(signal), block):
        buffer.push(signal[start : start + block] + alias[start : start + block])
        out.append(buffer.pull(out_rate // 50))
    audio = np.concatenate(out)[-3 * out_rate :]  # once the controller has settled from priming
    assert dominant_frequency(audio, out_rate) == pytest.approx(1000, abs=2)
    assert rms_dbfs(audio) == pytest.approx(rms_dbfs(signal), abs=0.3)
    if out_rate == 8000 and in_rate > 12000:  # 6 kHz cannot exist at 8 kHz: filtered, not folded to 2 kHz
        spectrum = np.abs(np.fft.rfft(audio))
        freqs = np.fft.rfftfreq(len(audio), 1 / out_rate)
        assert spectrum[np.abs(freqs - 2000) < 20].max() < spectrum.max() * 1e-3


def test_running_dry_pads_with_silence_and_waits_for_the_target_again() -> None:
    buffer = ElasticBuffer(8000, 8000, 0.04)  # 320 samples deep
    assert not buffer.pull(160).any()  # nothing yet: silence, priming is not an underrun
    assert buffer.stats.underruns == 0
    for _ in range(20):
        buffer.push(np.full(160, 0.25, dtype=np.float32))
    assert buffer.pull(160).any()
    while buffer.fill_seconds() >= 0.02:
        buffer.pull(160)
    short = buffer.pull(160)
    assert buffer.stats.underruns == 1 and not short[-10:].any()
    buffer.push(np.full(160, 0.25, dtype=np.float32))
    assert not buffer.pull(160).any()  # one packet is not enough: it waits to be 40 ms deep again


def test_a_producer_that_stalls_and_bursts_is_cut_back_instead_of_adding_delay() -> None:
    buffer = ElasticBuffer(8000, 8000, 0.03)
    for _ in range(100):  # two seconds arrive at once after a stall
        buffer.push(np.full(160, 0.25, dtype=np.float32))
    assert buffer.fill_seconds() <= 4 * 0.03
    assert buffer.stats.overruns >= 1


def test_a_consumer_that_pulls_late_is_measured_as_a_stall() -> None:
    """The stall measure that tells a busy machine's overrun from the buffer's own (on the real clock: the
    consumer pulls every 20 ms, then once 150 ms late)."""
    buffer = ElasticBuffer(8000, 8000, 0.03)
    for _ in range(10):
        buffer.push(np.full(160, 0.25, dtype=np.float32))
    buffer.pull(160)
    quick = buffer.stats.longest_stall_s
    deadline = time.monotonic() + 0.02 + 0.15
    while time.monotonic() < deadline:  # busy-wait: a sleep may overshoot by more than what is measured
        pass
    buffer.pull(160)
    assert quick == 0.0
    assert 0.14 <= buffer.stats.longest_stall_s < 5.0
