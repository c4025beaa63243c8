"""The agent's headset on a call: the caller in the agent's ears, the agent's microphone on the line.

Two PortAudio streams per call, one per direction: the microphone and the earpiece may be different
devices (a USB headset's microphone, the desk's speakers), and ALSA's pulse plugin stalls full-duplex
streams. Each direction crosses between its device's clock and the line's 8 kHz RTP clock through an
:class:`~contactcenter.audio.elastic.ElasticBuffer` (resampling, jitter buffer, drift compensation). The
PortAudio callbacks do nothing but move samples: no locks held for long, no allocation beyond a block.

:class:`Headset` is the agent's one headset: it opens a :class:`HeadsetBridge` for one call at a time.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contactcenter.audio.devices import Device, HeadsetError, NoAudio, choose, list_devices, sounddevice
from contactcenter.audio.elastic import ElasticBuffer
from contactcenter.audio.line import FRAME_SAMPLES as LINE_FRAME
from contactcenter.audio.line import RATE as LINE_RATE
from contactcenter.audio.prompts import to_line_audio
from contactcenter.settings import HeadsetSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BridgeLatency:
    """Audio added by the bridge in each direction, in seconds: buffered + resampler + sound card."""

    to_ears: float
    to_line: float


def pcm16_to_float(frame: bytes) -> np.ndarray:
    return np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes()


class HoldMusic:
    """A WAV looped to the caller on hold (silence when none is configured)."""

    def __init__(self, path: Path | None) -> None:
        self._pcm = pcm16_to_float(to_line_audio(path)) if path is not None else np.zeros(0, dtype=np.float32)
        self._position = 0

    def next_frame(self) -> np.ndarray:
        if len(self._pcm) < LINE_FRAME:
            return np.zeros(LINE_FRAME, dtype=np.float32)
        indices = (self._position + np.arange(LINE_FRAME)) % len(self._pcm)
        self._position = (self._position + LINE_FRAME) % len(self._pcm)
        return self._pcm[indices]


class HeadsetBridge:
    """Full duplex between one call and the headset; :meth:`close` when the call ends."""

    def __init__(
        self, settings: HeadsetSettings, input_device: Device, output_device: Device, hold_music: HoldMusic
    ) -> None:
        self.input_device = input_device
        self.output_device = output_device
        self.rate = settings.sample_rate or int(output_device.default_rate)
        self.block = max(1, round(self.rate * settings.block_ms / 1000))
        target = settings.buffer_ms / 1000
        self.to_ears = ElasticBuffer(LINE_RATE, self.rate, target)  # line clock in, card clock out
        self.to_line = ElasticBuffer(self.rate, LINE_RATE, target)  # card clock in, line clock out
        self.muted = False
        self.held = False
        self.callback_problems = 0  # PortAudio's over/underflow flags seen
        self._hold_music = hold_music
        self._out_channels = min(2, output_device.outputs)
        self._streams: list[Any] = []

    def open(self) -> None:
        sd = sounddevice()
        try:
            common = dict(samplerate=self.rate, blocksize=self.block, dtype="float32", latency="low")
            self._streams = [
                sd.OutputStream(
                    device=self.output_device.index, channels=self._out_channels, callback=self._to_earpiece, **common
                ),
                sd.InputStream(device=self.input_device.index, channels=1, callback=self._from_microphone, **common),
            ]
            for stream in self._streams:
                stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            self.close()
            raise HeadsetError(
                f"headset streams on {self.input_device.describe()} / "
                f"{self.output_device.describe()} at {self.rate} Hz will not open: {exc}"
            ) from None

    def close(self) -> None:
        streams, self._streams = self._streams, []
        for stream in streams:
            try:
                stream.stop()
                stream.close()
            except Exception as exc:  # a device unplugged mid-call must not stop the call from ending
                log.warning("headset stream did not close cleanly: %s", exc)

    # ---------------------------------------------------------------------------------- the sound card side

    def _to_earpiece(self, outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status:
            self.callback_problems += 1
        ears = self.to_ears.pull(frames)
        if self.held:
            ears[:] = 0.0  # on hold the agent does not hear the caller
        outdata[:] = ears[:, None]

    def _from_microphone(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status:
            self.callback_problems += 1
        self.to_line.push(np.zeros(frames, dtype=np.float32) if self.muted or self.held else indata[:, 0])

    # ------------------------------------------------------------------------------------------ the line side

    def from_line(self, frame: bytes) -> None:
        """The caller's next 20 ms (16-bit, 8 kHz), to the agent's ears."""
        self.to_ears.push(pcm16_to_float(frame))

    def line_frame(self) -> bytes:
        """The next 20 ms for the caller (16-bit, 8 kHz): the microphone, silence when muted, hold music
        when held. Called by the RTP sender, whose clock paces it."""
        microphone = self.to_line.pull(LINE_FRAME)
        if self.held:
            return float_to_pcm16(self._hold_music.next_frame())
        return float_to_pcm16(microphone)

    def latency(self) -> BridgeLatency:
        """The delay the bridge adds each way now (buffers + resampler + PortAudio's reported latency)."""
        stream_out, stream_in = (
            (float(self._streams[0].latency), float(self._streams[1].latency)) if self._streams else (0.0, 0.0)
        )
        resampler = ElasticBuffer.RESAMPLER_DELAY_SECONDS
        return BridgeLatency(
            to_ears=self.to_ears.fill_seconds() + resampler + stream_out,
            to_line=self.to_line.fill_seconds() + resampler + stream_in,
        )


class Headset:
    """The agent's headset, shared by the desk's calls one at a time.

    :meth:`check` resolves the configured devices at start-up, so a misspelt device name stops ``run`` with
    the list of what exists; a machine with no sound system gets ``available == False`` and a log line.
    """

    def __init__(self, settings: HeadsetSettings) -> None:
        self.settings = settings
        self.input_device: Device | None = None
        self.output_device: Device | None = None
        self.off_reason = "not checked yet"
        self.bridge: HeadsetBridge | None = None  # the call on the headset now
        self._free = threading.Condition()
        self._hold_music = HoldMusic(settings.hold_music)

    @property
    def available(self) -> bool:
        return self.input_device is not None and self.output_device is not None

    def check(self) -> bool:
        """Find the configured devices. False (logged) when the machine has no sound; HeadsetError when the
        settings name a device that is not there."""
        if not self.settings.enabled:
            self.off_reason = "[headset] enabled = false: calls are answered unattended"
            return False
        try:
            devices = list_devices()
            self.input_device = choose(self.settings.input_device, "input", devices)
            self.output_device = choose(self.settings.output_device, "output", devices)
        except NoAudio as exc:
            self.off_reason = f"{exc}; calls are answered unattended"
            log.warning("headset bridge off: %s", self.off_reason)
            return False
        self.off_reason = ""
        log.info("headset: microphone %s, earpiece %s", self.input_device.describe(), self.output_device.describe())
        return True

    def claim(self, give_up: threading.Event) -> HeadsetBridge | None:
        """Wait for the headset to be free (the agent finishing another call) and take it; None if
        ``give_up`` is set first (the caller hung up while waiting)."""
        with self._free:
            while self.bridge is not None and not give_up.is_set():
                self._free.wait(timeout=0.05)
            if give_up.is_set():
                return None
            assert self.input_device is not None and self.output_device is not None, "check() first"
            self.bridge = HeadsetBridge(self.settings, self.input_device, self.output_device, self._hold_music)
            return self.bridge

    def try_claim(self) -> HeadsetBridge | None:
        """Take the headset if it is free now (a call the agent places); None if a call has it."""
        with self._free:
            if self.bridge is not None:
                return None
            assert self.input_device is not None and self.output_device is not None, "check() first"
            self.bridge = HeadsetBridge(self.settings, self.input_device, self.output_device, self._hold_music)
            return self.bridge

    def release(self, bridge: HeadsetBridge) -> None:
        """Close ``bridge`` and free the headset for the next call (again is harmless)."""
        bridge.close()
        with self._free:
            if self.bridge is bridge:
                self.bridge = None
                self._free.notify_all()
