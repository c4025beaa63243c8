"""Auditing recorded calls with the same recogniser and rules as live calls.

A stereo recording carries one leg per channel (the agent on ``agent_channel``); a mono recording is one
leg (``mono_leg``), unless it is one of a pair of mono files, one per leg, as a PBX writes them (Asterisk's
MixMonitor with separate receive and transmit files): with ``leg_suffixes`` ("-out", "-in"), ``x-out.wav``
and ``x-in.wav`` are the agent and customer legs of one call, audited as a stereo recording would be. Any sample rate, PCM of any width, float, or G.711 µ-law / A-law WAV: whatever
libsndfile reads. A file that cannot be read, or holds no usable audio (under a second, or silence
throughout), is reported by name, skipped and not stored; the rest are audited.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import soundfile
from sqlalchemy import select

from contactcenter.records import CHECK_LABELS, UNCHECKED_REASONS, CallRecord, CallSpeechOutcome, Leg
from contactcenter.speech.compliance import CallFacts
from contactcenter.speech.live import CallSpeech
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rules import RuleSet
from contactcenter.storage.calls import save_call
from contactcenter.storage.database import Database
from contactcenter.storage.models import Call

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".au", ".aiff", ".aif"}
CHUNK_SECONDS = 0.5
#: Shorter than this there is no word to check: a truncated or empty file, not a call. Refused, not scored.
MIN_AUDIO_SECONDS = 1.0
#: A recording whose every leg stays below this peak (about -60 dBFS) is digital silence: nothing was said
#: that the rules could judge, so it is refused rather than scored as a call in which nobody broke a rule.
SILENCE_PEAK = 32


class RecordingError(Exception):
    """A recording that cannot be audited; the message names the file and why."""


@dataclass(frozen=True)
class Recording:
    path: Path
    rate: int
    legs: dict[Leg, np.ndarray]  # int16 samples per leg
    duration_s: float
    customer_path: Path | None = None  # the customer leg's own file, for a pair of mono files


#: A recording to audit: one file, or the agent's and the customer's mono files of one call.
Target = Path | tuple[Path, Path]


def pair_legs(paths: Sequence[Path], leg_suffixes: tuple[str, str] | None) -> list[Target]:
    """The files as calls: with ``leg_suffixes`` (agent, customer), ``NAME<agent>.ext`` and
    ``NAME<customer>.ext`` side by side are one call; a file without its other half is audited alone."""
    if leg_suffixes is None:
        return list(paths)
    agent_suffix, customer_suffix = leg_suffixes
    present = set(paths)
    paired: set[Path] = set()
    targets: list[Target] = []
    for path in paths:
        if path.stem.endswith(agent_suffix):
            other = path.with_name(path.stem.removesuffix(agent_suffix) + customer_suffix + path.suffix)
            if other in present:
                targets.append((path, other))
                paired.update((path, other))
    return [*targets, *(p for p in paths if p not in paired)]


def read_leg_pair(agent_path: Path, customer_path: Path) -> Recording:
    """One call from two mono files, the agent's and the customer's; the shorter is padded with silence."""
    agent = read_recording(agent_path, mono_leg="agent")
    customer = read_recording(customer_path, mono_leg="customer")
    if len(agent.legs) != 1 or len(customer.legs) != 1:
        raise RecordingError(f"{agent_path}, {customer_path}: a pair of legs must be two mono files")
    if agent.rate != customer.rate:
        raise RecordingError(
            f"{agent_path}, {customer_path}: the legs have different sample rates ({agent.rate}, {customer.rate} Hz)"
        )
    length = max(agent.legs["agent"].size, customer.legs["customer"].size)
    legs: dict[Leg, np.ndarray] = {
        "agent": np.pad(agent.legs["agent"], (0, length - agent.legs["agent"].size)),
        "customer": np.pad(customer.legs["customer"], (0, length - customer.legs["customer"].size)),
    }
    return Recording(agent_path, agent.rate, legs, length / agent.rate, customer_path)


@dataclass
class AuditResult:
    path: Path
    ok: bool
    error: str = ""
    duration_s: float = 0.0
    score: float | None = None  # None: not checked (``check`` says why)
    check: str = ""
    failed_rules: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    utterances: int = 0
    call_id: int | None = None
    outcome: CallSpeechOutcome | None = field(default=None, repr=False)  # the transcript, report and findings

    def row(self) -> dict[str, object]:
        return {
            "file": str(self.path),
            "ok": self.ok,
            "error": self.error,
            "duration_s": round(self.duration_s, 1),
            "score": self.score,
            "check": self.check,
            "failed_rules": ", ".join(self.failed_rules),
            "violations": " | ".join(self.violations),
            "utterances": self.utterances,
            "call_id": self.call_id,
        }


def find_recordings(targets: Sequence[Path]) -> list[Path]:
    """Files named, and audio files under folders named, in a stable order."""
    found: list[Path] = []
    for target in targets:
        if target.is_dir():
            found += sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        else:
            found.append(target)
    return found


def read_recording(path: Path, agent_channel: int = 0, mono_leg: Leg = "agent") -> Recording:
    if not path.is_file():
        raise RecordingError(f"{path}: no such file")
    try:
        samples, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise RecordingError(f"{path}: not a readable recording ({exc})") from None
    if samples.shape[0] == 0:
        raise RecordingError(f"{path}: the recording is empty")
    duration = samples.shape[0] / rate
    if duration < MIN_AUDIO_SECONDS:
        raise RecordingError(
            f"{path}: only {duration * 1000:.1f} ms of audio (truncated?); nothing to check, nothing stored"
        )
    if int(np.abs(samples.astype(np.int32)).max()) < SILENCE_PEAK:
        raise RecordingError(f"{path}: silence from start to end; nothing to check, nothing stored")
    channels = samples.shape[1]
    if channels == 1:
        legs: dict[Leg, np.ndarray] = {mono_leg: samples[:, 0].copy()}
    elif channels == 2:
        if agent_channel not in (0, 1):
            raise RecordingError(f"{path}: agent channel must be 0 (left) or 1 (right)")
        legs = {"agent": samples[:, agent_channel].copy(), "customer": samples[:, 1 - agent_channel].copy()}
    else:
        raise RecordingError(f"{path}: {channels} channels; expected mono or stereo (one leg per channel)")
    return Recording(path, int(rate), legs, samples.shape[0] / rate)


def _file_call_id(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return f"audit:{digest.hexdigest()[:32]}"


def audit_recording(
    recording: Recording,
    monitor: SpeechMonitor,
    rules: RuleSet,
    database: Database | None,
    agent_extension: str = "",
    redact: bool = True,
    partial_stable_s: float = 0.2,
) -> AuditResult:
    """Recognise and check one recording; store it like a live call (one row per file, replaced on re-audit)."""
    modified = datetime.fromtimestamp(recording.path.stat().st_mtime, tz=UTC)
    started = modified - timedelta(seconds=recording.duration_s)
    call = CallRecord(
        sip_call_id=_file_call_id(recording.path, *([recording.customer_path] if recording.customer_path else [])),
        direction="inbound",
        invited_at=started,
        answered_at=started,
        ended_at=modified,
        agent_extension=agent_extension,
        disposition="recording",
        purpose=recording.path.name,
    )
    speech = CallSpeech(
        monitor,
        rules,
        call,
        CallFacts(),
        rate=recording.rate,
        redact=redact,
        partial_stable_s=partial_stable_s,
        legs=tuple(recording.legs),
        live=False,
    )
    step = int(CHUNK_SECONDS * recording.rate)
    for leg, samples in recording.legs.items():
        for offset in range(0, len(samples), step):
            speech.push(leg, samples[offset : offset + step].astype("<i2").tobytes(), block=True)
    outcome = speech.finish(recording.duration_s, hung_up_first=None)
    result = AuditResult(
        recording.path,
        ok=True,
        duration_s=recording.duration_s,
        score=outcome.report.score,
        check=CHECK_LABELS[outcome.report.check]
        + (f":{UNCHECKED_REASONS.get(outcome.report.unchecked_reason, '')}" if outcome.report.score is None else ""),
        failed_rules=[r.rule_id for r in outcome.report.failed],
        violations=[f"{h.at_s:.1f}s {h.rule_id}: {h.matched_text}" for h in outcome.hits if h.kind == "violation"],
        utterances=len(outcome.transcript),
        outcome=outcome,
    )
    if database is not None:
        with database.session() as session:
            result.call_id = save_call(session, call, outcome.transcript, outcome.hits, outcome.report)
    return result


@dataclass(frozen=True)
class AuditOptions:
    """How a run's recordings are read and checked: the same for every file, in whichever process audits it."""

    agent_channel: int = 0
    mono_leg: Leg = "agent"
    agent_extension: str = ""
    redact: bool = True
    partial_stable_s: float = 0.2


def target_files(target: Target) -> tuple[Path, ...]:
    """The file(s) of one recording: one, or the agent's and the customer's leg files."""
    return target if isinstance(target, tuple) else (target,)


def read_target(target: Target, agent_channel: int = 0, mono_leg: Leg = "agent") -> Recording:
    """One recording to audit, from one file or a pair of leg files; RecordingError says why it cannot be."""
    if isinstance(target, tuple):
        return read_leg_pair(*target)
    return read_recording(target, agent_channel, mono_leg)


def recording_call_id(target: Target) -> str:
    """The key a recording is stored under (``calls.sip_call_id``): a hash of its content, so a copy or a
    re-audit of the same audio replaces the stored call instead of adding one."""
    return _file_call_id(*target_files(target))


def stored_call_id(database: Database, target: Target) -> int | None:
    """The stored call of this recording's content, if it has been audited (the id), else None."""
    key = recording_call_id(target)
    with database.session() as session:
        return session.scalar(select(Call.id).where(Call.sip_call_id == key))


def audit_target(
    target: Target, monitor: SpeechMonitor, rules: RuleSet, database: Database | None, options: AuditOptions
) -> AuditResult:
    """Audit one recording; never raises: a file that cannot be read, or an audit that fails (the database
    went away), comes back with ``ok=False`` and the reason, so one bad file never stops a run."""
    path = target_files(target)[0]
    try:
        recording = read_target(target, options.agent_channel, options.mono_leg)
        return audit_recording(
            recording, monitor, rules, database, options.agent_extension, options.redact, options.partial_stable_s
        )
    except RecordingError as exc:
        return AuditResult(path, ok=False, error=str(exc))
    except Exception as exc:  # e.g. the database went away: report this file, audit the rest
        log.exception("audit of %s failed", path)
        return AuditResult(path, ok=False, error=f"{path}: audit failed ({type(exc).__name__}: {exc})")


def audit_files(
    paths: Sequence[Path],
    monitor: SpeechMonitor,
    rules: RuleSet,
    database: Database | None,
    *,
    agent_channel: int = 0,
    mono_leg: Leg = "agent",
    agent_extension: str = "",
    redact: bool = True,
    partial_stable_s: float = 0.2,
    on_done: Callable[[AuditResult], None] | None = None,
    leg_suffixes: tuple[str, str] | None = None,
) -> list[AuditResult]:
    """Audit every file (or pair of leg files, see ``pair_legs``), a few at a time on threads of this
    process; unreadable files come back with ``ok=False`` and the reason. (``qa.audit_pool`` spreads the same
    work over processes.)"""
    options = AuditOptions(agent_channel, mono_leg, agent_extension, redact, partial_stable_s)

    def one(target: Target) -> AuditResult:
        result = audit_target(target, monitor, rules, database, options)
        if on_done is not None:
            on_done(result)
        return result

    targets = pair_legs(paths, leg_suffixes)
    with ThreadPoolExecutor(max(1, min(len(targets), monitor.workers, os.cpu_count() or 1))) as pool:
        return list(pool.map(one, targets))
