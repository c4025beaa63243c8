"""Headset bridge benchmark: added latency each way and CPU per bridged call; prints figures, asserts nothing.

    .venv/bin/python bench/headset_bench.py               # a private PulseAudio with null sinks (no sound card)
    .venv/bin/python bench/headset_bench.py --seconds 60  # a longer run

Latency: the earpiece is looped back into the microphone (the null sink's monitor), a click train goes in
from the line clock and comes back to it; the delay is counted in samples. The bridge's own figure (its
buffers, the resampler and PortAudio's reported latency) is printed beside it for each direction.
CPU: process CPU seconds per second of call, with the line clock alone and with the bridge running.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import os

from contactcenter.audio.devices import rescan
from contactcenter.audio.headset import LINE_FRAME, Headset
from contactcenter.settings import HeadsetSettings
from tests.helpers.sound import EARS, MIC, SoundServer


def line_clock(frames: int, source: np.ndarray | None, bridge, sent: list[bytes]) -> None:
    started = time.monotonic()
    pcm = (source * 32767).astype("<i2").tobytes() if source is not None else b""
    for n in range(frames):
        if bridge is not None:
            chunk = pcm[n * LINE_FRAME * 2 : (n + 1) * LINE_FRAME * 2]
            if len(chunk) == LINE_FRAME * 2:
                bridge.from_line(chunk)
            sent.append(bridge.line_frame())
        delay = started + (n + 1) * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def cpu_per_second(seconds: float, headset: Headset | None) -> tuple[float, object]:
    bridge = headset.claim(threading.Event()) if headset is not None else None
    if bridge is not None:
        bridge.open()
    frames = int(seconds / 0.02)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(frames * LINE_FRAME) / 8000)).astype(np.float32)
    sent: list[bytes] = []
    cpu, wall = time.process_time(), time.monotonic()
    line_clock(frames, tone, bridge, sent)
    used = (time.process_time() - cpu) / (time.monotonic() - wall)
    if bridge is not None and headset is not None:
        headset.release(bridge)
    return used, bridge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    server = SoundServer()
    server.start()
    os.environ.update(server.environ)
    rescan()
    try:
        headset = Headset(HeadsetSettings())
        assert headset.check(), headset.off_reason
        idle, _ = cpu_per_second(args.seconds, None)
        busy, bridge = cpu_per_second(args.seconds, headset)
        print(
            f"CPU: line clock alone {idle * 100:.2f} % of a core; with the bridge {busy * 100:.2f} % "
            f"(the bridge: {(busy - idle) * 100:.2f} % of a core per call)"
        )
        print(
            f"  to the earpiece: {bridge.to_ears.stats}; to the line: {bridge.to_line.stats}; "
            f"PortAudio over/underflow flags: {bridge.callback_problems}"
        )

        server.use_defaults(EARS, f"{EARS}.monitor")  # the microphone hears the earpiece
        bridge = headset.claim(threading.Event())
        bridge.open()
        clicks = np.zeros(int(args.seconds * 8000), dtype=np.float32)
        clicks[4000::4000] = 0.9
        sent: list[bytes] = []
        line_clock(len(clicks) // LINE_FRAME, clicks, bridge, sent)
        estimate = bridge.latency()
        headset.release(bridge)
        back = np.frombuffer(b"".join(sent), dtype="<i2").astype(np.float64)
        delays = []
        for start in range(8000, len(back) - 8000, 4000):  # every click, once the stream has settled
            window = back[start : start + 4000]
            if np.abs(window).max() > 1000:
                delays.append((start + int(np.argmax(np.abs(window)))) % 4000)
        if delays:
            d = np.array(delays) / 8  # samples at 8 kHz to ms
            print(
                f"round trip line → earpiece → microphone → line: p50 {np.median(d):.0f} ms, "
                f"p95 {np.percentile(d, 95):.0f} ms, max {d.max():.0f} ms over {len(d)} clicks "
                f"(includes the sound server's own loop)"
            )
        print(
            f"bridge estimate now: to the earpiece {estimate.to_ears * 1000:.0f} ms, "
            f"to the line {estimate.to_line * 1000:.0f} ms"
        )
    finally:
        server.use_defaults(EARS, f"{MIC}.monitor")
        server.stop()


if __name__ == "__main__":
    main()
