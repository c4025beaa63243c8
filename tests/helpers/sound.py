"""A real sound server for a machine with no sound card: PulseAudio with two null sinks.

``cc_ears`` is the agent's earpiece (the default sink): what the headset bridge plays lands there and the
test records it from ``cc_ears.monitor``. ``cc_mic`` is a sink the test plays into; its monitor is the
default source, so the bridge's microphone hears what the test played. PortAudio reaches it through ALSA's
pulse plugin, exactly as on an agent's desktop. Started by the test session in a private runtime folder,
stopped at the end; if it cannot start, the tests that need it fail with the reason.

An idle null sink sleeps in blocks of up to two seconds, and a new stream waits for the block to end (a
real sound card is driven by its interrupts and does not). A low-latency client playing silence into each
sink keeps them awake, as a desktop's always-running audio does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from tests.helpers.waiting import wait_until

EARS = "cc_ears"
MIC = "cc_mic"
RATE = 48000


class SoundServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="contactcenter-pulse-"))
        self.socket = self.root / "native"
        self.environ = {
            "PULSE_SERVER": f"unix:{self.socket}",
            "XDG_RUNTIME_DIR": str(self.root),
            "PULSE_RUNTIME_PATH": str(self.root),
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._keep_awake: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        binary = shutil.which("pulseaudio")
        if binary is None:
            raise RuntimeError("pulseaudio not found: run ./setup.sh (it installs Debian's pulseaudio)")
        command = [
            binary,
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--log-target=stderr",
            "--log-level=error",
            "-L",
            f"module-native-protocol-unix socket={self.socket} auth-anonymous=1",
            "-L",
            f"module-null-sink sink_name={EARS} rate={RATE} channels=2",
            "-L",
            f"module-null-sink sink_name={MIC} rate={RATE} channels=1",
        ]
        environ = {**os.environ, **self.environ, "HOME": str(self.root)}
        self._process = subprocess.Popen(
            command, env=environ, stdout=subprocess.DEVNULL, stderr=open(self.root / "pulse.log", "wb")
        )
        process = self._process
        wait_until(lambda: process.poll() is not None or self._pactl("info", check=False).returncode == 0, 15, 0.1)
        if process.poll() is not None or self._pactl("info", check=False).returncode != 0:
            raise RuntimeError("PulseAudio did not start: " + (self.root / "pulse.log").read_text()[-2000:])
        self.use_defaults(EARS, f"{MIC}.monitor")
        for sink in (EARS, MIC):
            self._keep_awake.append(
                subprocess.Popen(
                    [
                        "pacat",
                        "--playback",
                        f"--device={sink}",
                        "--format=s16le",
                        f"--rate={RATE}",
                        "--channels=1",
                        "--latency-msec=10",
                        "/dev/zero",
                    ],
                    env={**os.environ, **self.environ},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        if not wait_until(self._sinks_awake, 10, 0.05):
            raise RuntimeError("the null sinks did not wake up: " + self._pactl("list", "sinks", check=False).stdout)

    def _sinks_awake(self) -> bool:
        """Both sinks run in short steps: the keep-awake streams got a low latency ("configured") and the long
        sleep the sink was in has ended (a null sink's latency is what is left of its current sleep)."""
        listing = self._pactl("list", "sinks", check=False).stdout
        found = re.findall(r"\tLatency: (\d+) usec, configured (\d+) usec", listing)
        return len(found) == 2 and all(int(left) <= 20_000 and int(configured) <= 20_000 for left, configured in found)

    def stop(self) -> None:
        for process in self._keep_awake:
            process.kill()
            process.wait()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def _pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["pactl", *args],
            env={**os.environ, **self.environ, "LC_ALL": "C"},
            capture_output=True,
            text=True,
            check=check,
            timeout=10,
        )

    def use_defaults(self, sink: str, source: str) -> None:
        """What PortAudio's "default"/"pulse" devices open: the earpiece and the microphone."""
        self._pactl("set-default-sink", sink)
        self._pactl("set-default-source", source)

    def record(self, source: str, rate: int = RATE) -> Recorder:
        """Start recording ``source`` (16-bit mono); ``Recorder.finish`` stops it and returns the samples."""
        return Recorder(
            subprocess.Popen(
                [
                    "parec",
                    f"--device={source}",
                    "--format=s16le",
                    f"--rate={rate}",
                    "--channels=1",
                    "--latency-msec=20",
                ],
                env={**os.environ, **self.environ},
                stdout=subprocess.PIPE,
            )
        )

    @staticmethod
    def finish_recording(recorder: Recorder) -> np.ndarray:
        return recorder.finish()

    def play(self, sink: str, samples: np.ndarray, rate: int = RATE) -> subprocess.Popen[bytes]:
        """Play float samples (mono) into ``sink`` in real time, in the background."""
        process = subprocess.Popen(
            [
                "pacat",
                "--playback",
                f"--device={sink}",
                "--format=s16le",
                f"--rate={rate}",
                "--channels=1",
                "--latency-msec=20",
            ],
            env={**os.environ, **self.environ},
            stdin=subprocess.PIPE,
        )
        data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()

        def feed() -> None:  # pacat reads in real time: the pipe would block the test for the whole clip
            assert process.stdin is not None
            try:
                process.stdin.write(data)
                process.stdin.close()
            except (BrokenPipeError, ValueError):
                pass

        threading.Thread(target=feed, daemon=True).start()
        return process


class Recorder:
    """parec's output, drained as it comes (a full pipe would stall the recording)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read(4096):
            self._chunks.append(chunk)

    def finish(self) -> np.ndarray:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        data = b"".join(self._chunks)
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64) / 32768
