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
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from contactcenter.audio.voice_activity import FRAME_MS, VoiceActivity, VoiceActivitySettings
from contactcenter.records import Leg

FRAME_S = FRAME_MS / 1000
LEVEL_FLOOR_DB = -100.0  # digital silence, as a number correlations can use
ECHO_WINDOW = 50  # half-frames (10 ms each) compared for echo: 500 ms
ECHO_CONFIRMATIONS = 10  # windows that must agree on the echo's delay before it is used to predict
ECHO_BATCH = 256  # candidate frames measured together (a recording's whole leg would need gigabytes at once)
ECHO_LOOKAHEAD = 10  # frames past the one judged that the echo test looks at (200 ms: the timeline settles later)


@dataclass(frozen=True)
class Span:
    """A stretch of call time in seconds."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


class Timeline(Protocol):
    """Who talked when, as the conversation rules read it (:class:`TalkActivity`, or its stand-in for a
    listener in another process)."""

    legs: tuple[Leg, ...]

    @property
    def both_legs(self) -> bool: ...

    def spans(self, leg: Leg) -> list[Span]: ...


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


class _Levels:
    """A growing array of 10 ms levels (dB), appended in blocks and read as a numpy view without a copy (a
    Python list had to be converted for every frame the echo test looked at)."""

    def __init__(self) -> None:
        self._data = np.empty(4096, dtype=np.float64)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        needed = self.size + len(values)
        if needed > len(self._data):
            grown = np.empty(max(needed, 2 * len(self._data)), dtype=np.float64)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : needed] = values
        self.size = needed

    def view(self) -> np.ndarray:
        return self._data[: self.size]

    def __len__(self) -> int:
        return self.size


class _LegFrames:
    """One leg's judged frames: speech or not, and each 10 ms half's level (for the echo test)."""

    def __init__(self, rate: int, settings: VoiceActivitySettings) -> None:
        self.vad = VoiceActivity(rate, settings)
        self.frame_bytes = self.vad.frame_samples * 2
        self.remainder = b""
        self.speech = bytearray()
        self.levels = _Levels()  # two per frame


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
        count = usable // frames.frame_bytes
        if not count:
            return
        # every frame's levels at once (numpy per frame cost more than the rest of the listener together)
        size = frames.vad.frame_samples
        half = size // 2
        samples = np.frombuffer(data, dtype="<i2", count=count * size).reshape(count, size)
        power = np.square(samples, dtype=np.float64)
        halves = np.empty(2 * count, dtype=np.float64)
        halves[0::2] = _decibels(power[:, :half].mean(axis=1) if half else np.zeros(count), LEVEL_FLOOR_DB)
        halves[1::2] = _decibels(power[:, half:].mean(axis=1), LEVEL_FLOOR_DB)
        whole = _decibels(power.mean(axis=1), -np.inf)
        speech = bytearray(frames.vad.judge(samples[n], float(whole[n]))[0] for n in range(count))
        self._append(leg, speech, halves)

    def add_gap(self, leg: Leg, size: int) -> None:
        """Audio of ``leg`` that never reached this side (dropped under overload): kept as time, not speech."""
        frames = self._frames[leg]
        count = size // frames.frame_bytes
        if count:
            self._append(leg, bytearray(count), np.full(2 * count, LEVEL_FLOOR_DB))

    def finish_leg(self, leg: Leg) -> None:
        """No more audio on ``leg``: the other leg alone settles the rest of the timeline."""
        with self._lock:
            self._finished.add(leg)
            settled = self._settle()
        if self._on_settled is not None:
            self._on_settled(settled)

    def _append(self, leg: Leg, speech: bytearray, halves: np.ndarray) -> None:
        with self._lock:
            frames = self._frames[leg]
            frames.speech += speech
            frames.levels.extend(halves)
            settled = self._settle()
        if self._on_settled is not None:
            self._on_settled(settled)

    # --------------------------------------------------------------------------------------------- output

    @property
    def finished_all(self) -> bool:
        """Every leg has ended."""
        with self._lock:
            return len(self._finished) == len(self.legs)

    def settled_talk(self, leg: Leg, start: int) -> bytes:
        """The settled talk flags of ``leg`` (one byte per 20 ms frame, echo taken out) from frame ``start``."""
        with self._lock:
            return bytes(self._talk[leg][start:])

    @property
    def settled_s(self) -> float:
        with self._lock:
            return len(self._talk[self.legs[0]]) * FRAME_S

    def spans(self, leg: Leg) -> list[Span]:
        """When ``leg`` talked, as far as the timeline is settled (a stretch still going ends at its last
        speech frame so far)."""
        with self._lock:
            talk = bytes(self._talk[leg]) if leg in self._talk else b""
        return spans_of(talk, self.settings)

    # ------------------------------------------------------------------------------------------ internals

    def _settle(self) -> float:
        """Move the settled end forward as far as every leg still sending has been judged (lock held)."""
        done = len(self._talk[self.legs[0]])
        lengths = [len(self._frames[leg].speech) for leg in self.legs if leg not in self._finished]
        if lengths:
            target = min(lengths) - (ECHO_LOOKAHEAD if self.both_legs else 0)
        else:
            target = max(len(self._frames[leg].speech) for leg in self.legs)
        if target <= done:
            return target * FRAME_S
        echo = self._echo_among(done, target) if "customer" in self._frames and "agent" in self._frames else []
        for leg in self.legs:
            flags = self._frames[leg].speech[done:target]
            talk = self._talk[leg]
            start = len(talk)
            talk += flags + bytes(target - done - len(flags))  # a finished leg is silent past its end
            if leg == "customer":
                for index in echo:
                    talk[start + index - done] = 0
        self.echo_frames += len(echo)
        return target * FRAME_S

    def _echo_among(self, done: int, target: int) -> list[int]:
        """Which customer frames of ``done``..``target`` are the agent's voice coming back. For each frame
        that is speech while the agent spoke within ``echo_max_delay_ms``, the levels around it (up to
        ``ECHO_LOOKAHEAD`` frames past it, so the first syllable of an echo is judged with its onset in
        view) are correlated with the agent's at every delay; the frames are measured together, as one
        numpy computation, and then decided in order (what a frame teaches about the echo path is used by
        the frames after it)."""
        agent, customer = self._frames["agent"], self._frames["customer"]
        max_delay = self.settings.echo_max_delay_ms // FRAME_MS
        candidates = [
            index
            for index in range(done, min(target, len(customer.speech)))
            if customer.speech[index] and any(agent.speech[max(0, index - max_delay) : index + 1])
        ]
        if not candidates:
            return []
        echo: list[int] = []
        for start in range(0, len(candidates), ECHO_BATCH):
            echo += self._echo_decided(candidates[start : start + ECHO_BATCH], max_delay)
        return echo

    def _echo_decided(self, candidates: list[int], max_delay: int) -> list[int]:
        """:meth:`_echo_among` for a batch of candidate frames (in order)."""
        said_all = self._frames["agent"].levels.view()
        heard_all = self._frames["customer"].levels.view()
        ends = np.minimum(2 * (np.asarray(candidates) + 1 + ECHO_LOOKAHEAD), min(len(said_all), len(heard_all)))
        measured = ends >= ECHO_WINDOW
        if not measured.any():  # the call's first half second: no whole window yet
            return []
        correlation, delay, loss, heard, predicted = _echo_measures(said_all, heard_all, ends[measured], 2 * max_delay)
        flats = (heard.std(axis=1) < 1e-6).tolist()
        echo: list[int] = []
        row = 0
        for index, end, counted in zip(candidates, ends.tolist(), measured.tolist(), strict=True):
            if not counted:
                continue
            flat = flats[row]
            if not flat and correlation[row] >= self.settings.echo_correlation:
                if loss[row] >= self.settings.echo_margin_db:
                    self._learn_echo_path(int(delay[row]), float(loss[row]))
                    here = 2 * index - (end - ECHO_WINDOW)
                    if here >= 0:
                        window = slice(here, here + 2)
                        margin = self.settings.echo_margin_db
                        if np.all(heard[row][window] <= predicted[row][window] - loss[row] + margin):
                            echo.append(index)
                        row += 1
                        continue
            if not flat and self._fits_echo_path(index):
                echo.append(index)
            row += 1
        return echo

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
        agent, customer = self._frames["agent"].levels.view(), self._frames["customer"].levels.view()
        halves = [2 * index, 2 * index + 1]
        if halves[0] - delay < 0:
            return False
        return all(customer[h] <= agent[h - delay] - loss + self.settings.echo_margin_db for h in halves)


def _decibels(mean_square: np.ndarray, floor: float) -> np.ndarray:
    """Levels in dBFS of 16-bit audio from mean squares, at least ``floor`` (digital silence is ``floor``)."""
    with np.errstate(divide="ignore"):
        levels = 10.0 * np.log10(mean_square / (32768.0 * 32768.0))
    return np.maximum(levels, floor)


def _echo_measures(
    said_all: np.ndarray, heard_all: np.ndarray, ends: np.ndarray, delays: int
) -> tuple[np.ndarray, ...]:
    """For each window end (in 10 ms halves): the customer's ``ECHO_WINDOW`` levels before it, their best
    correlation with the agent's over the same window shifted back by 0..``delays`` halves, that shift, the
    median level drop (agent minus customer) at it, and the agent's levels at it (rows in ``ends`` order).
    Shifts that would start before the call are left out, as the window would not be whole."""
    windows_all = sliding_window_view(said_all, ECHO_WINDOW)  # row s: the agent's levels s..s+W
    heard = sliding_window_view(heard_all, ECHO_WINDOW)[ends - ECHO_WINDOW]  # (frames, W)
    shifts = np.arange(delays, -1, -1)  # columns: the oldest window first, as a delay of ``delays``
    starts = (ends - ECHO_WINDOW)[:, None] - shifts[None, :]
    valid = starts >= 0
    said = windows_all[np.maximum(starts, 0)]  # (frames, delays + 1, W)
    centred = said - said.mean(axis=2, keepdims=True)
    heard_centred = heard - heard.mean(axis=1, keepdims=True)
    spread = np.sqrt((centred**2).sum(axis=2) * (heard_centred**2).sum(axis=1)[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.where(valid & (spread > 1e-9), np.einsum("fdw,fw->fd", centred, heard_centred) / spread, 0.0)
    # the first best column among the valid ones: as before, the oldest window wins a tie
    correlation = np.where(valid, correlation, -np.inf)
    best = np.argmax(correlation, axis=1)
    rows = np.arange(len(ends))
    chosen = said[rows, best]
    loss = np.median(chosen - heard, axis=1)
    return correlation[rows, best], shifts[best], loss, heard, chosen


def spans_of(talk: bytes, settings: ActivitySettings) -> list[Span]:
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
