"""Who is talking when: both legs' voice activity on one timeline, with the agent's echo taken out.

Each leg's audio is judged frame by frame (20 ms, :mod:`contactcenter.audio.voice_activity`) on the
thread that recognises that leg, so the media path does no more work than before. The two legs are
worked through at different speeds, so the timeline is *settled* only as far as both legs have been
judged; the conversation rules look at the settled part, live and at the end, and so judge a live call
and its recording alike.

Echo: a phone (or a hybrid on the line) sends part of what the agent says back on the customer leg,
attenuated and a little late. Counted as the customer speaking it would make every agent sentence an
overlap. A customer frame is taken for echo when the agent spoke within ``echo_max_delay_ms`` before it,
the customer leg's level over the last ``ECHO_WINDOW`` follows the agent's at some delay (correlation of
the 10 ms log levels at least ``echo_correlation``) and is at least ``echo_margin_db`` quieter. A customer
really talking over the agent breaks the correlation, or is not that much quieter, and stays speech.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from contactcenter.audio.voice_activity import FRAME_MS, VoiceActivity, VoiceActivitySettings
from contactcenter.records import Leg

FRAME_S = FRAME_MS / 1000
LEVEL_FLOOR_DB = -100.0  # digital silence, as a number correlations can use
ECHO_WINDOW = 50  # half-frames (10 ms each) compared for echo: 500 ms
ECHO_CONFIRMATIONS = 10  # windows that must agree on the echo's delay before it is used to predict
ECHO_LOOKAHEAD = 10  # frames past the one judged that the echo test looks at (200 ms: the timeline settles later)


@dataclass(frozen=True)
class Span:
    """A stretch of call time in seconds."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class ActivitySettings:
    """How frames become talk: the detector, how short a pause still joins two stretches, how short a
    stretch is a click not speech, and the echo test's limits."""

    voice: VoiceActivitySettings = field(default_factory=VoiceActivitySettings)
    join_gap_ms: int = 300
    min_speech_ms: int = 60
    echo_max_delay_ms: int = 300
    echo_correlation: float = 0.8
    echo_margin_db: float = 6.0


class _LegFrames:
    """One leg's judged frames: speech or not, and each 10 ms half's level (for the echo test)."""

    def __init__(self, rate: int, settings: VoiceActivitySettings) -> None:
        self.vad = VoiceActivity(rate, settings)
        self.frame_bytes = self.vad.frame_samples * 2
        self.remainder = b""
        self.speech = bytearray()
        self.levels: list[float] = []  # two per frame


class TalkActivity:
    """Both legs of one call; ``add_audio`` from each leg's recognition thread, in order."""

    def __init__(
        self,
        rate: int,
        legs: tuple[Leg, ...] = ("agent", "customer"),
        settings: ActivitySettings | None = None,
        on_settled: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings or ActivitySettings()
        self.legs = legs
        self._frames = {leg: _LegFrames(rate, self.settings.voice) for leg in legs}
        self._lock = threading.Lock()
        self._talk: dict[Leg, bytearray] = {leg: bytearray() for leg in legs}  # after echo removal
        self.echo_frames = 0
        self._echo_path: tuple[int, float] | None = None  # (delay in 10 ms halves, loss in dB), once learnt
        self._echo_seen = 0
        self._on_settled = on_settled
        self._finished: set[Leg] = set()

    @property
    def both_legs(self) -> bool:
        return len(self.legs) == 2

    # --------------------------------------------------------------------------------------------- input

    def add_audio(self, leg: Leg, pcm: bytes) -> None:
        """The next stretch of one leg (16-bit mono PCM, any length)."""
        frames = self._frames[leg]
        data = frames.remainder + pcm if frames.remainder else pcm
        usable = len(data) - len(data) % frames.frame_bytes
        frames.remainder = data[usable:]
        judged: list[tuple[bool, float, float]] = []
        half = frames.vad.frame_samples // 2
        for offset in range(0, usable, frames.frame_bytes):
            samples = np.frombuffer(data, dtype="<i2", count=frames.vad.frame_samples, offset=offset)
            speech, _ = frames.vad.judge(samples)
            judged.append((speech, _level(samples[:half]), _level(samples[half:])))
        if judged:
            self._append(leg, judged)

    def add_gap(self, leg: Leg, size: int) -> None:
        """Audio of ``leg`` that never reached this side (dropped under overload): kept as time, not speech."""
        frames = self._frames[leg]
        count = size // frames.frame_bytes
        if count:
            self._append(leg, [(False, LEVEL_FLOOR_DB, LEVEL_FLOOR_DB)] * count)

    def finish_leg(self, leg: Leg) -> None:
        """No more audio on ``leg``: the other leg alone settles the rest of the timeline."""
        with self._lock:
            self._finished.add(leg)
            settled = self._settle()
        if self._on_settled is not None:
            self._on_settled(settled)

    def _append(self, leg: Leg, judged: list[tuple[bool, float, float]]) -> None:
        with self._lock:
            frames = self._frames[leg]
            for speech, first, second in judged:
                frames.speech.append(speech)
                frames.levels += (first, second)
            settled = self._settle()
        if self._on_settled is not None:
            self._on_settled(settled)

    # --------------------------------------------------------------------------------------------- output

    @property
    def settled_s(self) -> float:
        with self._lock:
            return len(self._talk[self.legs[0]]) * FRAME_S

    def spans(self, leg: Leg) -> list[Span]:
        """When ``leg`` talked, as far as the timeline is settled (a stretch still going ends at its last
        speech frame so far)."""
        with self._lock:
            talk = bytes(self._talk[leg]) if leg in self._talk else b""
        return _spans(talk, self.settings)

    # ------------------------------------------------------------------------------------------ internals

    def _settle(self) -> float:
        """Move the settled end forward as far as every leg still sending has been judged (lock held)."""
        done = len(self._talk[self.legs[0]])
        lengths = [len(self._frames[leg].speech) for leg in self.legs if leg not in self._finished]
        if lengths:
            target = min(lengths) - (ECHO_LOOKAHEAD if self.both_legs else 0)
        else:
            target = max(len(self._frames[leg].speech) for leg in self.legs)
        for index in range(done, target):
            for leg in self.legs:
                frames = self._frames[leg].speech
                speech = index < len(frames) and bool(frames[index])
                if speech and leg == "customer" and "agent" in self._frames and self._is_echo(index):
                    self.echo_frames += 1
                    speech = False
                self._talk[leg].append(speech)
        return target * FRAME_S

    def _is_echo(self, index: int) -> bool:
        """Is customer frame ``index`` the agent's voice coming back? The levels around it are compared,
        up to ``ECHO_LOOKAHEAD`` frames past it, so the first syllable of an echo is judged with its onset
        in view."""
        agent = self._frames["agent"]
        customer = self._frames["customer"]
        max_delay = self.settings.echo_max_delay_ms // FRAME_MS
        recent = agent.speech[max(0, index - max_delay) : index + 1]
        if not any(recent):
            return False
        end = min(2 * (index + 1 + ECHO_LOOKAHEAD), len(customer.levels), len(agent.levels))
        if end < ECHO_WINDOW:
            return False
        heard = np.asarray(customer.levels[end - ECHO_WINDOW : end])
        if heard.std() < 1e-6:
            return False
        said = np.asarray(agent.levels[max(0, end - 2 * max_delay - ECHO_WINDOW) : end])
        windows = sliding_window_view(said, ECHO_WINDOW)  # one row per delay (the last row: no delay)
        centred = windows - windows.mean(axis=1, keepdims=True)
        heard_centred = heard - heard.mean()
        spread = np.sqrt((centred**2).sum(axis=1) * (heard_centred**2).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            correlation = np.where(spread > 1e-9, centred @ heard_centred / spread, 0.0)
        best = int(np.argmax(correlation))
        delay = windows.shape[0] - 1 - best  # in half-frames
        here = 2 * index - (end - ECHO_WINDOW)
        if correlation[best] >= self.settings.echo_correlation:
            loss = float(np.median(windows[best] - heard))
            if loss >= self.settings.echo_margin_db:
                self._learn_echo_path(delay, loss)
                if here >= 0:
                    predicted = windows[best][here : here + 2] - loss
                    return bool(np.all(heard[here : here + 2] <= predicted + self.settings.echo_margin_db))
        return self._fits_echo_path(index)

    def _learn_echo_path(self, delay: int, loss: float) -> None:
        """Keep the echo's delay and loss once several windows agree (they change little during a call)."""
        known = self._echo_path
        if known is not None and abs(known[0] - delay) <= 2:
            self._echo_path = (delay, 0.9 * known[1] + 0.1 * loss)
            self._echo_seen += 1
        else:
            self._echo_path = (delay, loss)
            self._echo_seen = 1

    def _fits_echo_path(self, index: int) -> bool:
        """Where the window cannot tell (the customer's own voice is in it too), the learnt echo path
        predicts how loud the echo is: a frame no louder than that (plus the margin) is echo."""
        if self._echo_path is None or self._echo_seen < ECHO_CONFIRMATIONS:
            return False
        delay, loss = self._echo_path
        agent, customer = self._frames["agent"].levels, self._frames["customer"].levels
        halves = [2 * index, 2 * index + 1]
        if halves[0] - delay < 0:
            return False
        return all(customer[h] <= agent[h - delay] - loss + self.settings.echo_margin_db for h in halves)


def _level(samples: np.ndarray) -> float:
    if samples.size == 0:
        return LEVEL_FLOOR_DB
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))
    return max(LEVEL_FLOOR_DB, 20.0 * np.log10(rms / 32768.0)) if rms > 0 else LEVEL_FLOOR_DB


def _spans(talk: bytes, settings: ActivitySettings) -> list[Span]:
    """Runs of speech frames, joined across pauses up to ``join_gap_ms``, clicks (under ``min_speech_ms``)
    left out."""
    flags = np.frombuffer(talk, dtype=np.uint8)
    if not flags.any():
        return []
    edges = np.diff(np.concatenate(([0], flags, [0])).astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    join = settings.join_gap_ms // FRAME_MS
    least = max(1, settings.min_speech_ms // FRAME_MS)
    merged: list[list[int]] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        if merged and start - merged[-1][1] <= join:
            merged[-1][1] = end
            merged[-1][2] += end - start
        else:
            merged.append([start, end, end - start])
    return [Span(round(s * FRAME_S, 3), round(e * FRAME_S, 3)) for s, e, speech in merged if speech >= least]
