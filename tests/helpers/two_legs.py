"""Two-leg call audio with exact timing: real Mandarin clips from ../shared/speech placed on each leg at
chosen offsets, over seeded line noise, optionally with the agent's echo on the customer leg."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from contactcenter.speech.talk_activity import ActivitySettings, TalkActivity

SPEECH = Path(__file__).resolve().parents[2].parent / "shared" / "speech" / "real8k"
RATE = 8000
FRAME_BYTES = RATE // 50 * 2


EDGE_DBFS = -45.0  # the clip's own room noise before its first and after its last word is cut to silence


def _frame_levels(samples: np.ndarray) -> np.ndarray:
    frames = samples[: samples.size - samples.size % 160].astype(np.float64).reshape(-1, 160)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-9) / 32768)


def clip(name: str) -> np.ndarray:
    """A real 8 kHz clip (r01 ... r18) as int16 samples, silent before its first frame louder than
    ``EDGE_DBFS`` and after its last: the recording's room noise at the edges (about -50 dBFS, where any
    detector must guess) would otherwise make "when the speech starts" a matter of chance."""
    samples, rate = soundfile.read(str(SPEECH / f"{name}.wav"), dtype="int16")
    assert rate == RATE
    loud = np.flatnonzero(_frame_levels(samples) >= EDGE_DBFS)
    trimmed = np.zeros_like(samples)
    first, last = int(loud[0]) * 160, (int(loud[-1]) + 1) * 160
    trimmed[first:last] = samples[first:last]
    return trimmed


def speech_edges(name: str) -> tuple[float, float]:
    """Where the clip's speech starts and ends (seconds into the clip)."""
    loud = np.flatnonzero(_frame_levels(clip(name)) >= EDGE_DBFS)
    return int(loud[0]) * 0.02, (int(loud[-1]) + 1) * 0.02


@dataclass
class TwoLegs:
    """A call of ``seconds``: clips placed on each leg, line noise under both."""

    seconds: float
    seed: int = 7
    noise_dbfs: float = -60.0
    agent: np.ndarray = field(init=False)
    customer: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        size = int(self.seconds * RATE)
        rng = np.random.default_rng(self.seed)
        scale = 32768 * 10 ** (self.noise_dbfs / 20)
        self.agent = rng.normal(0, scale, size)
        self.customer = rng.normal(0, scale, size)

    def place(self, leg: str, name: str, at_s: float, gain_db: float = 0.0) -> TwoLegs:
        """Put clip ``name`` on ``leg`` starting at ``at_s`` seconds of the call."""
        samples = clip(name).astype(np.float64) * 10 ** (gain_db / 20)
        target = self.agent if leg == "agent" else self.customer
        start = int(at_s * RATE)
        target[start : start + samples.size] += samples[: target.size - start]
        return self

    def place_speech(self, leg: str, name: str, speech_at: float, gain_db: float = 0.0) -> TwoLegs:
        """Put clip ``name`` on ``leg`` so that its speech (see ``speech_edges``) starts at ``speech_at``."""
        return self.place(leg, name, speech_at - speech_edges(name)[0], gain_db)

    def with_echo(self, delay_ms: float = 150.0, attenuation_db: float = 15.0) -> TwoLegs:
        """Add the agent's voice to the customer leg, ``attenuation_db`` quieter and ``delay_ms`` late."""
        delay = int(delay_ms * RATE / 1000)
        echo = np.zeros_like(self.agent)
        echo[delay:] = self.agent[:-delay] * 10 ** (-attenuation_db / 20)
        self.customer = self.customer + echo
        return self

    def pcm(self, leg: str) -> bytes:
        samples = self.agent if leg == "agent" else self.customer
        return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()

    def frames(self) -> Iterable[tuple[str, bytes]]:
        """Both legs frame by frame, interleaved as a live call pushes them."""
        agent, customer = self.pcm("agent"), self.pcm("customer")
        for offset in range(0, len(agent), FRAME_BYTES):
            yield "agent", agent[offset : offset + FRAME_BYTES]
            yield "customer", customer[offset : offset + FRAME_BYTES]


def judged_live(call: TwoLegs, settings: ActivitySettings | None = None) -> TalkActivity:
    """The call's activity judged as a live call arrives: the legs interleaved frame by frame."""
    activity = TalkActivity(RATE, ("agent", "customer"), settings)
    for leg, frame in call.frames():
        activity.add_audio(leg, frame)  # type: ignore[arg-type]
    activity.finish_leg("agent")
    activity.finish_leg("customer")
    return activity


def judged_recording(call: TwoLegs, settings: ActivitySettings | None = None) -> TalkActivity:
    """The same call judged as an audit reads a recording: one whole leg, then the other."""
    activity = TalkActivity(RATE, ("agent", "customer"), settings)
    activity.add_audio("agent", call.pcm("agent"))
    activity.finish_leg("agent")
    activity.add_audio("customer", call.pcm("customer"))
    activity.finish_leg("customer")
    return activity
