"""The headset bridge on real PortAudio: a PulseAudio server with null sinks stands in for the sound card
(tests/helpers/sound.py). Known signals go in one side and are measured on the other: frequency, level, silence
when muted, hold music when held, a round trip through the sound server, drift against a skewed line
clock. Device choice is tested on PortAudio's real device list and on lists of the same shape."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from contactcenter.audio.devices import Device, HeadsetError, NoAudio, choose, list_devices
from contactcenter.audio.elastic import MAX_CORRECTION, ElasticBuffer
from contactcenter.audio.headset import LINE_FRAME, Headset, HeadsetBridge
from contactcenter.settings import HeadsetSettings
from tests.helpers.signals import dominant_frequency, rms_dbfs, tone
from tests.helpers.sound import EARS, MIC, RATE, SoundServer

LINE_RATE = 8000


def steered(frequency: float) -> object:
    """The frequency, give or take what the elastic buffer may steer the pitch by (``MAX_CORRECTION``, which
    it uses when a busy machine delays a clock) and the 1 Hz resolution of a one-second spectrum."""
    return pytest.approx(frequency, abs=frequency * MAX_CORRECTION + 1)


def line_frames(samples: np.ndarray) -> list[bytes]:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    return [pcm[i : i + LINE_FRAME * 2] for i in range(0, len(pcm) - LINE_FRAME * 2 + 1, LINE_FRAME * 2)]


def as_float(frames: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float64) / 32768


class LineClock:
    """Stands for the RTP side of a call: every 20 ms (× ``speed``) one frame from the caller goes in and one
    frame for the caller comes out, on the machine's monotonic clock like the real RTP sender."""

    def __init__(self, bridge: HeadsetBridge, caller: list[bytes], speed: float = 1.0) -> None:
        self.bridge, self.caller, self.speed = bridge, caller, speed
        self.sent: list[bytes] = []
        self.worst_lateness = 0.0  # seconds behind its schedule at worst (a busy machine's stall)

    def run(self, frames: int, on_frame=None) -> None:
        started = time.monotonic()
        for n in range(frames):
            if n < len(self.caller):
                self.bridge.from_line(self.caller[n])
            self.sent.append(self.bridge.line_frame())
            if on_frame is not None:
                on_frame(n)
            delay = started + (n + 1) * 0.02 / self.speed - time.monotonic()
            if delay > 0:  # must be real time: the bridge is measured against the sound card's own clock
                time.sleep(delay)
            else:
                self.worst_lateness = max(self.worst_lateness, -delay)


def assert_no_overrun_without_a_stall(bridge: HeadsetBridge, buffer: ElasticBuffer, clock: LineClock) -> None:
    """An overrun is the buffer cutting back audio it cannot hold: it must not happen unless one side stalled
    for most of the buffer's headroom (a shared machine can stall a thread that long; that is not the bridge's
    fault, and the stats say which side it was). What a stall has to fill is the headroom less what the buffer
    holds in its normal swing: one sound-card block, one line frame, and 10 ms of the controller's error."""
    headroom = (buffer.limit - buffer.target) / buffer.out_rate
    swing = bridge.block / bridge.rate + LINE_FRAME / LINE_RATE + 0.01
    stalled = max(clock.worst_lateness, buffer.stats.longest_stall_s)
    assert buffer.stats.overruns == 0 or stalled > headroom - swing, (buffer.stats, clock.worst_lateness, headroom)


@pytest.fixture
def headset(sound_server: SoundServer) -> Headset:
    sound_server.use_defaults(EARS, f"{MIC}.monitor")
    found = Headset(HeadsetSettings())
    assert found.check(), found.off_reason
    return found


def open_bridge(headset: Headset) -> HeadsetBridge:
    bridge = headset.claim(threading.Event())
    assert bridge is not None
    bridge.open()
    return bridge


def steady_level(samples: np.ndarray, rate: int, seconds: float = 1.5) -> float:
    """The level (dBFS) of the signal where it is present: the median of 100 ms windows above -40 dBFS, of
    which there must be ``seconds`` worth. A scheduling hiccup on a busy machine costs a window, not the
    measurement; a missing or wrong-level signal still fails."""
    windows = [rms_dbfs(samples[i : i + rate // 10]) for i in range(0, len(samples) - rate // 10, rate // 10)]
    present = [level for level in windows if level > -40]
    assert len(present) >= seconds * 10, f"signal present in only {len(present)} windows of 100 ms"
    return float(np.median(present))


def loudest_second(samples: np.ndarray, rate: int) -> np.ndarray:
    starts = range(0, max(1, len(samples) - rate), rate // 4)
    best = max(starts, key=lambda i: float(np.abs(samples[i : i + rate]).mean()))
    return samples[best : best + rate]


def test_portaudio_lists_the_sound_servers_devices(sound_server: SoundServer) -> None:
    devices = list_devices()
    default_in = choose("default", "input", devices)
    default_out = choose("default", "output", devices)
    assert default_in.inputs >= 1 and default_out.outputs >= 1
    assert any(d.name == "pulse" for d in devices)
    assert choose("pulse", "output", devices).name == "pulse"


def test_the_caller_is_heard_in_the_earpiece(headset: Headset, sound_server: SoundServer) -> None:
    recorder = sound_server.record(f"{EARS}.monitor")
    bridge = open_bridge(headset)
    try:
        clock = LineClock(bridge, line_frames(tone(440, 3, LINE_RATE, level=0.5)))
        clock.run(150 + 10)
    finally:
        headset.release(bridge)
        heard = sound_server.finish_recording(recorder)
    second = loudest_second(heard, RATE)
    assert dominant_frequency(second, RATE) == steered(440)
    assert steady_level(heard, RATE) == pytest.approx(rms_dbfs(tone(440, 1, RATE, level=0.5)), abs=1.0)
    assert_no_overrun_without_a_stall(bridge, bridge.to_ears, clock)


def test_the_agents_microphone_reaches_the_line(headset: Headset, sound_server: SoundServer) -> None:
    bridge = open_bridge(headset)
    player = sound_server.play(MIC, tone(1000, 4, RATE, level=0.3))
    try:
        clock = LineClock(bridge, [])
        clock.run(175)
    finally:
        player.wait(timeout=10)
        headset.release(bridge)
    sent = as_float(clock.sent)
    assert dominant_frequency(loudest_second(sent, LINE_RATE), LINE_RATE) == steered(1000)
    assert steady_level(sent, LINE_RATE) == pytest.approx(rms_dbfs(tone(1000, 1, LINE_RATE, level=0.3)), abs=1.0)


def test_mute_sends_silence_and_hold_sends_music_and_cuts_the_earpiece(
    headset: Headset, sound_server: SoundServer, tmp_path: Path
) -> None:
    music = tmp_path / "hold.wav"
    soundfile.write(music, tone(600, 2, 16000, level=0.25), 16000)
    held_headset = Headset(HeadsetSettings(hold_music=music))
    assert held_headset.check()
    bridge = open_bridge(held_headset)
    player = sound_server.play(MIC, tone(1000, 7, RATE, level=0.3))
    recorder = sound_server.record(f"{EARS}.monitor")
    phases = {50: ("muted", True), 150: ("muted", False), 200: ("held", True), 300: ("held", False)}
    try:
        clock = LineClock(bridge, line_frames(tone(440, 7, LINE_RATE, level=0.5)))
        clock.run(325, on_frame=lambda n: setattr(bridge, *phases[n]) if n in phases else None)
    finally:
        player.terminate()
        headset_heard = sound_server.finish_recording(recorder)
        held_headset.release(bridge)
    sent = as_float(clock.sent)
    frame = LINE_FRAME

    def span(first: int, last: int) -> np.ndarray:  # frames, trimmed for the buffers' delay
        return sent[(first + 8) * frame : last * frame]

    assert dominant_frequency(span(20, 50), LINE_RATE) == steered(1000)  # the microphone
    assert rms_dbfs(span(50, 150)) < -80  # muted: nothing of the microphone reaches the caller
    assert dominant_frequency(span(150, 200), LINE_RATE) == steered(1000)
    held = sent[200 * frame : 300 * frame]
    assert dominant_frequency(held, LINE_RATE) == steered(600)  # the hold music, not the microphone
    assert rms_dbfs(held) == pytest.approx(rms_dbfs(tone(600, 1, LINE_RATE, level=0.25)), abs=1.0)
    # The earpiece had the caller's 440 Hz before the hold, and falls silent during it.
    assert dominant_frequency(loudest_second(headset_heard, RATE), RATE) == steered(440)
    quiet = [rms_dbfs(headset_heard[i : i + RATE // 2]) for i in range(0, len(headset_heard) - RATE // 2, RATE // 10)]
    assert min(quiet) < -80


def test_a_round_trip_through_the_sound_server_comes_back_whole(headset: Headset, sound_server: SoundServer) -> None:
    """The microphone listens to the earpiece: a click train from the line goes out to the sound server
    and back to the line. The delay (counted in samples, not wall-clock) is what the benchmark reports."""
    sound_server.use_defaults(EARS, f"{EARS}.monitor")
    try:
        bridge = open_bridge(headset)
        clicks = np.zeros(LINE_RATE * 4, dtype=np.float32)
        clicks[LINE_RATE // 2 :: LINE_RATE // 2] = 0.9
        clock = LineClock(bridge, line_frames(clicks))
        try:
            clock.run(250)
        finally:
            headset.release(bridge)
    finally:
        sound_server.use_defaults(EARS, f"{MIC}.monitor")
    back = as_float(clock.sent)
    correlation = np.correlate(back, clicks[: len(back)], mode="full")[len(back) - 1 :]
    delay = int(np.argmax(correlation[:LINE_RATE]))
    assert correlation[delay] > 0.25 * float(np.dot(clicks, clicks)) / 8  # the clicks came back
    estimate = bridge.latency()
    print(
        f"round trip {delay / LINE_RATE * 1000:.0f} ms; bridge estimate to ears "
        f"{estimate.to_ears * 1000:.0f} ms, to line {estimate.to_line * 1000:.0f} ms"
    )


def test_a_line_clock_running_fast_does_not_build_up_delay_in_the_earpiece(
    headset: Headset, sound_server: SoundServer
) -> None:
    """The line delivers 0.5 % faster than the sound card plays (a 10-second run of what a long call does
    slowly): without drift compensation the earpiece would fall 50 ms further behind; with it the
    buffer stays near its target and the ratio is steered against the skew."""
    bridge = open_bridge(headset)
    try:
        clock = LineClock(bridge, line_frames(tone(440, 11, LINE_RATE, level=0.3)), speed=1.005)
        fills = []
        clock.run(500, on_frame=lambda n: fills.append(bridge.to_ears.fill_seconds()) if n % 25 == 0 else None)
    finally:
        headset.release(bridge)
    target = bridge.to_ears.target / bridge.rate
    late = np.array(fills[-8:])
    assert late.mean() < target + 0.03, (late, target)
    assert_no_overrun_without_a_stall(bridge, bridge.to_ears, clock)
    assert bridge.to_ears.stats.correction < 0


def test_the_headset_serves_one_call_at_a_time(headset: Headset) -> None:
    first = headset.claim(threading.Event())
    assert first is not None
    waiting: list[HeadsetBridge | None] = []
    waiter = threading.Thread(target=lambda: waiting.append(headset.claim(threading.Event())))
    waiter.start()
    waiter.join(timeout=0.3)
    assert waiter.is_alive() and not waiting  # the second call keeps ringing
    headset.release(first)
    waiter.join(timeout=5)
    assert waiting and waiting[0] is not None and waiting[0] is not first
    headset.release(waiting[0])
    hung_up = threading.Event()
    hung_up.set()
    blocker = headset.claim(threading.Event())
    assert headset.claim(hung_up) is None  # a caller who hung up while waiting gets nothing
    headset.release(blocker)


DEVICES = [
    Device(0, "HDA Intel PCH: ALC3246 Analog (hw:0,0)", "ALSA", 2, 2, 44100.0),
    Device(1, "Jabra EVOLVE 20 MS: USB Audio (hw:1,0)", "ALSA", 1, 2, 48000.0),
    Device(2, "pulse", "ALSA", 32, 32, 44100.0),
    Device(3, "default", "ALSA", 32, 32, 44100.0, default_input=True, default_output=True),
    Device(4, "HDMI 0 (hw:0,3)", "ALSA", 0, 8, 44100.0),
]


@pytest.mark.parametrize(
    ("choice", "kind", "index"),
    [
        (1, "input", 1),
        ("default", "output", 3),
        ("jabra", "input", 1),
        ("Jabra EVOLVE 20 MS: USB Audio (hw:1,0)", "output", 1),
        ("HDMI", "output", 4),
    ],
)
def test_a_device_is_chosen_by_index_name_or_part_of_its_name(choice, kind, index: int) -> None:
    assert choose(choice, kind, DEVICES).index == index


def test_a_missing_or_ambiguous_device_names_what_is_available() -> None:
    with pytest.raises(HeadsetError, match=r"no such input device.*1 'Jabra EVOLVE.*3 'default'") as missing:
        choose("Plantronics", "input", DEVICES)
    assert "HDMI" not in str(missing.value)  # not an input
    with pytest.raises(HeadsetError, match="matches several output devices"):
        choose("hw:0", "output", DEVICES)
    with pytest.raises(HeadsetError, match="no such input device"):
        choose(4, "input", DEVICES)
    with pytest.raises(NoAudio, match="no sound card"):
        choose("default", "output", [])


def test_a_machine_with_no_sound_runs_unattended_and_says_why(tmp_path: Path) -> None:
    """A real PortAudio that finds no device at all: no sound card, and no sound server where it should be."""
    environ = {**os.environ, "PULSE_SERVER": f"unix:{tmp_path / 'no-server'}"}
    script = (
        "from contactcenter.audio.headset import Headset; from contactcenter.settings import HeadsetSettings;"
        "h = Headset(HeadsetSettings()); print(h.check(), '|', h.off_reason)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environ, timeout=60)
    assert result.returncode == 0, result.stderr
    available, reason = result.stdout.strip().split(" | ", 1)
    assert available == "False" and "unattended" in reason
    disabled = Headset(HeadsetSettings(enabled=False))
    assert not disabled.check() and "enabled = false" in disabled.off_reason
