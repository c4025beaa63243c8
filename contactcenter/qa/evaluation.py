"""How well the rules catch what reviewers hear: per-rule recall, precision and F1 against a reviewer's labels.

The calls come as recordings or as transcripts. Recordings are recognised by the audit's own code
(:func:`~contactcenter.qa.audit.audit_recording`, nothing stored), and what the recogniser heard, its final
results, is judged like a transcript. Transcripts need no speech model: the rules run on their text, so phrases
can be tuned anywhere, and the gap between the two on the same calls is what recognition costs. Both are judged
by one function, :func:`judge`, with :class:`~contactcenter.speech.compliance.CallCompliance` as a call is; a
rule that needs more than the words and their times gives no verdict here.

A label says of one call and one rule that the rule was broken (``violation``) or kept (``satisfied``),
optionally when (seconds from the start of the call). A violation is what an alert is about, so it is the
positive class:

* true positive: a labelled violation the machine found too. A banned phrase labelled with a time must be
  found within the tolerance of it; without a time, any finding of that rule on the call will do.
* miss: a labelled violation the machine did not find, or on which it gave no verdict (the rule did not
  apply, or no speech was recognised): the violation went unflagged either way.
* false alarm: the machine's violation where the label says there was none. A banned phrase counts each
  finding the labels do not account for (each is an alert); a required phrase has one verdict per call.
* A rule with no labels, or with no labelled violation, has no recall; with nothing flagged, no precision.
  It is shown without figures, never as 100 %.

Calls without labels, and rules a call has no label for, are not counted: the machine's findings there are
neither right nor wrong as far as anyone has said.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import re
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from contactcenter.qa.audit import (
    AUDIO_SUFFIXES,
    RecordingError,
    audit_recording,
    find_recordings,
    read_recording,
)
from contactcenter.records import NO_SPEECH, ComplianceReport, Leg, RuleHitRecord, RuleResult, UtteranceRecord
from contactcenter.speech.compliance import CallCompliance, CallFacts
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.redact import redact_numbers
from contactcenter.speech.rules import Rule, RuleSet
from contactcenter.storage.customer_import import decode_csv

Expected = Literal["violation", "satisfied"]
ProblemKind = Literal["miss", "false alarm"]
TRANSCRIPT_SUFFIXES = (".jsonl", ".tsv")
#: Events a transcript may mark (``leg`` = ``event``); ``end`` is the end of the call, when silence follows
#: the last words (a ``last:N`` window counts back from it).
TRANSCRIPT_EVENTS = ("hold_start", "hold_end", "transfer", "end")
#: How far (seconds) a finding may be from a labelled time and still be that violation: a reviewer notes the
#: moment from a player, the recogniser times the word's start.
DEFAULT_TOLERANCE_S = 3.0
_TIME = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")
_LABEL_COLUMNS = ("call", "rule", "expected", "time")
COUNTS = (
    "expected_violations",
    "expected_satisfied",
    "true_positives",
    "false_alarms",
    "misses",
    "true_negatives",
    "no_verdict",
)


class EvaluationError(Exception):
    """Input that cannot be evaluated; the message names the file (and line) and says why, on one line."""


@dataclass(frozen=True)
class Label:
    """A reviewer's verdict on one rule in one call; ``where`` is its file and line."""

    call: str
    rule_id: str
    expected: Expected
    at_s: float | None
    where: str


@dataclass
class CallTranscript:
    """One call's words and events, from a transcript file or as the recogniser heard a recording."""

    call: str
    source: str
    utterances: list[UtteranceRecord] = field(default_factory=list)
    events: list[tuple[str, float]] = field(default_factory=list)
    end_s: float = 0.0
    redact: bool = False  # show its text with numbers masked (recognised audio, like a stored transcript)

    def shown(self, text: str) -> str:
        return redact_numbers(text) if self.redact else text


@dataclass(frozen=True)
class JudgedCall:
    transcript: CallTranscript
    report: ComplianceReport

    def result(self, rule_id: str) -> RuleResult | None:
        """The rule's verdict on this call; None when it gave none (did not apply, or nothing was heard)."""
        return next((r for r in self.report.results if r.rule_id == rule_id), None)

    def no_verdict(self) -> str:
        reason = self.report.unchecked_reason if self.report.score is None else ""
        return f"no verdict ({reason or 'rule did not apply'})"


@dataclass(frozen=True)
class Problem:
    """A miss or a false alarm, with what was heard there, so a reviewer can tell the rule from recognition."""

    rule_id: str
    kind: ProblemKind
    call: str
    at_s: float | None
    leg: str
    heard: str
    matched: str
    machine: str  # what the machine said: violation, satisfied, or no verdict (why)
    label: str  # the label's file and line

    def row(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "kind": self.kind,
            "call": self.call,
            "at_s": None if self.at_s is None else round(self.at_s, 1),
            "leg": self.leg,
            "heard": self.heard,
            "matched": self.matched,
            "machine": self.machine,
            "label": self.label,
        }


@dataclass
class RuleFigures:
    """One rule's counts over the labelled calls, and the figures they allow (None where they allow none)."""

    rule_id: str
    type: str
    expected_violations: int = 0
    expected_satisfied: int = 0
    true_positives: int = 0
    false_alarms: int = 0
    misses: int = 0
    true_negatives: int = 0
    no_verdict: int = 0

    @property
    def labels(self) -> int:
        return self.expected_violations + self.expected_satisfied

    @property
    def recall(self) -> float | None:
        found = self.true_positives + self.misses
        return self.true_positives / found if found else None

    @property
    def precision(self) -> float | None:
        flagged = self.true_positives + self.false_alarms
        return self.true_positives / flagged if flagged else None

    @property
    def f1(self) -> float | None:
        recall, precision = self.recall, self.precision
        if recall is None or precision is None:
            return None
        return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)

    def add(self, other: RuleFigures) -> None:
        for count in COUNTS:
            setattr(self, count, getattr(self, count) + getattr(other, count))

    def row(self) -> dict[str, Any]:
        def ratio(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "rule": self.rule_id,
            "type": self.type,
            "labels": self.labels,
            "expected_violations": self.expected_violations,
            "expected_satisfied": self.expected_satisfied,
            "true_positives": self.true_positives,
            "false_alarms": self.false_alarms,
            "misses": self.misses,
            "true_negatives": self.true_negatives,
            "no_verdict": self.no_verdict,
            "recall": ratio(self.recall),
            "precision": ratio(self.precision),
            "f1": ratio(self.f1),
        }


@dataclass
class Evaluation:
    """Every rule's figures (in the rules' order, labelled or not), their sum, and the misses and false alarms."""

    rules: list[RuleFigures]
    total: RuleFigures
    problems: list[Problem]
    calls: int  # calls judged
    labelled_calls: int
    unevaluated_labels: int = 0  # labels of recordings that could not be read


# --------------------------------------------------------------------------------------------- reading input


def _where(path: Path, line: int | None = None) -> str:
    return f"{path}:{line}" if line is not None else str(path)


def parse_time(text: str) -> float:
    """Seconds from ``12.5``, ``1:05`` or ``1:02:05.5``: a reviewer reads the time off a player."""
    text = text.strip()
    match = _TIME.match(text)
    if match:
        hours, minutes, seconds = match.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    value = float(text)  # ValueError for the caller to name the line
    if not value >= 0 or value == float("inf"):  # also refuses nan
        raise ValueError(text)
    return value


def _read_text(path: Path) -> str:
    """The file as text: UTF-8 (with or without BOM), UTF-16 with a BOM, or GB18030 as Chinese Excel saves it."""
    if not path.is_file():
        raise EvaluationError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        return decode_csv(path.read_bytes())
    except ValueError:
        raise EvaluationError(f"{path}: not UTF-8, UTF-16 or GB18030 text") from None


def read_labels(
    path: Path,
    rules: RuleSet,
    switched_off: Collection[str] = (),
) -> list[Label]:
    """The labels in a CSV or TSV file (comma or tab, by its first line): ``call, rule, expected[, time]``, with
    or without that header (with it, other columns are ignored). A bad row is an error naming its line."""
    text = _read_text(path)
    first = next((line for line in text.splitlines() if line.strip()), "")
    reader = csv.reader(io.StringIO(text), delimiter="\t" if "\t" in first else ",")
    by_id = {rule.id: rule for rule in rules.rules}
    columns: dict[str, int] | None = None
    labels: list[Label] = []
    seen: dict[tuple[str, str], list[Label]] = {}
    for line, cells in _csv_rows(path, reader):
        if not any(cells) or cells[0].startswith("#"):
            continue
        if columns is None and not labels and cells[0].lower() == "call":
            names = [cell.lower() for cell in cells]
            columns = {name: names.index(name) for name in _LABEL_COLUMNS if name in names}
            missing = [name for name in _LABEL_COLUMNS[:3] if name not in columns]
            if missing:
                raise EvaluationError(f"{_where(path, line)}: the header has no {', '.join(missing)} column")
            continue
        if columns is None:
            if len(cells) > len(_LABEL_COLUMNS):
                raise EvaluationError(
                    f"{_where(path, line)}: {len(cells)} columns; expected call, rule, expected and an optional time"
                )
            row = dict(zip(_LABEL_COLUMNS, cells, strict=False))
        else:
            row = {name: cells[index] if index < len(cells) else "" for name, index in columns.items()}
        label = _label(row, _where(path, line), by_id, switched_off)
        _check_repeats(label, seen.setdefault((label.call, label.rule_id), []), by_id[label.rule_id])
        labels.append(label)
    if not labels:
        raise EvaluationError(f"{path}: no labels")
    return labels


def _csv_rows(path: Path, reader: Any) -> Iterable[tuple[int, list[str]]]:
    """(line, stripped cells) of each row; a row csv cannot read (a stray quote, a NUL) names its line."""
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise EvaluationError(f"{_where(path, reader.line_num)}: not CSV ({exc})") from None
        yield reader.line_num, [cell.strip() for cell in cells]


def _label(row: Mapping[str, str], where: str, by_id: Mapping[str, Rule], switched_off: Collection[str]) -> Label:
    call, rule_id, expected = row.get("call", ""), row.get("rule", ""), row.get("expected", "").lower()
    if not call:
        raise EvaluationError(f"{where}: no call")
    if not rule_id:
        raise EvaluationError(f"{where}: no rule")
    if rule_id not in by_id:
        if rule_id in switched_off:
            raise EvaluationError(f"{where}: rule {rule_id!r} is switched off in the console, so nothing checks it")
        close = difflib.get_close_matches(rule_id, list(by_id), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"the rules are {', '.join(by_id)}"
        raise EvaluationError(f"{where}: unknown rule {rule_id!r} ({hint})")
    if by_id[rule_id].spec.kind == "hangup_order":
        raise EvaluationError(
            f"{where}: rule {rule_id!r}: recordings and transcripts do not say who hung up first, so it "
            "cannot be evaluated"
        )
    if expected not in get_args(Expected):
        raise EvaluationError(f"{where}: expected must be violation or satisfied, not {row.get('expected', '')!r}")
    at_s = None
    if row.get("time"):
        try:
            at_s = parse_time(row["time"])
        except ValueError:
            raise EvaluationError(
                f"{where}: time {row['time']!r} is not seconds from the start of the call (12.5, 1:05 or 1:02:05)"
            ) from None
    return Label(call, rule_id, cast(Expected, expected), at_s, where)


def _check_repeats(label: Label, earlier: list[Label], rule: Rule) -> None:
    """One verdict per call and rule, except several violations of a banned phrase, told apart by time."""
    for other in earlier:
        line = other.where.rsplit(":", 1)[-1]
        if other.expected != label.expected:
            raise EvaluationError(
                f"{label.where}: call {label.call!r} rule {label.rule_id!r} is labelled {other.expected} on line "
                f"{line} and {label.expected} here"
            )
        if not rule.spec.negate or label.expected == "satisfied":
            raise EvaluationError(
                f"{label.where}: call {label.call!r} rule {label.rule_id!r} is labelled already (line {line}): "
                + ("it has one verdict per call" if not rule.spec.negate else "once satisfied is enough")
            )
        if other.at_s == label.at_s:
            raise EvaluationError(f"{label.where}: repeats line {line}")
    earlier.append(label)


def find_inputs(targets: Sequence[Path], exclude: Collection[Path] = ()) -> tuple[list[Path], list[Path]]:
    """(recordings, transcript files) named, and under the folders named; ``exclude`` (the labels file) left out."""
    skip = {p.resolve() for p in exclude}
    recordings: list[Path] = []
    transcripts: list[Path] = []
    for target in targets:
        if target.is_dir():
            recordings += find_recordings([target])
            transcripts += sorted(
                p
                for p in target.rglob("*")
                if p.is_file() and p.suffix.lower() in TRANSCRIPT_SUFFIXES and p.resolve() not in skip
            )
        elif not target.exists():
            raise EvaluationError(f"{target}: no such file or folder")
        elif target.suffix.lower() in TRANSCRIPT_SUFFIXES:
            transcripts.append(target)
        elif target.suffix.lower() in AUDIO_SUFFIXES:
            recordings.append(target)
        else:
            raise EvaluationError(
                f"{target}: neither a recording ({', '.join(sorted(AUDIO_SUFFIXES))}) nor a transcript "
                f"({', '.join(TRANSCRIPT_SUFFIXES)})"
            )
    return recordings, transcripts


def read_transcripts(paths: Iterable[Path]) -> dict[str, CallTranscript]:
    """Calls from transcript files, by call. A row is one utterance (``call``, ``leg``, ``start``, ``end``,
    ``text``) or, with ``leg`` = ``event``, an event named by ``text`` at ``start``. Without a ``call`` the
    file's name (without suffix) is the call; a call's rows may be spread over several files.

    JSON lines (``.jsonl``): one object a line. TSV (``.tsv``): a header line naming the columns, then one
    row a line, tab-separated, no quoting."""
    calls: dict[str, CallTranscript] = {}
    for path in paths:
        text = _read_text(path)
        rows = _jsonl_rows(path, text) if path.suffix.lower() == ".jsonl" else _tsv_rows(path, text)
        for line, row in rows:
            _add_row(calls, path, line, row)
    return calls


def _jsonl_rows(path: Path, text: str) -> Iterable[tuple[int, Mapping[str, Any]]]:
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            row = json.loads(content)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{_where(path, line)}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise EvaluationError(f"{_where(path, line)}: not a JSON object")
        yield line, row


def _tsv_rows(path: Path, text: str) -> Iterable[tuple[int, Mapping[str, Any]]]:
    header: list[str] | None = None
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip() or content.startswith("#"):
            continue
        cells = [cell.strip() for cell in content.split("\t")]
        if header is None:
            header = [cell.lower() for cell in cells]
            missing = [name for name in ("leg", "start", "end", "text") if name not in header]
            if missing:
                raise EvaluationError(
                    f"{_where(path, line)}: the header (first line) has no {', '.join(missing)} column; "
                    "expected call, leg, start, end, text separated by tabs"
                )
            continue
        if len(cells) > len(header):
            raise EvaluationError(f"{_where(path, line)}: {len(cells)} cells, the header has {len(header)}")
        yield line, dict(zip(header, cells, strict=False))


def _seconds(row: Mapping[str, Any], name: str, where: str) -> float:
    value = row.get(name)
    if isinstance(value, bool) or value is None or value == "":
        raise EvaluationError(f"{where}: no {name}")
    try:
        seconds = float(value) if isinstance(value, int | float) else parse_time(str(value))
    except ValueError:
        raise EvaluationError(f"{where}: {name} {value!r} is not a time in seconds") from None
    if not 0 <= seconds < float("inf"):
        raise EvaluationError(f"{where}: {name} {value!r} is not a time in seconds")
    return seconds


def _add_row(calls: dict[str, CallTranscript], path: Path, line: int, row: Mapping[str, Any]) -> None:
    where = _where(path, line)
    call = str(row.get("call") or path.stem).strip()
    leg, text = str(row.get("leg") or "").strip(), str(row.get("text") or "").strip()
    transcript = calls.setdefault(call, CallTranscript(call, str(path)))
    start = _seconds(row, "start", where)
    if leg == "event":
        if text not in TRANSCRIPT_EVENTS:
            raise EvaluationError(f"{where}: event {text!r}; expected one of {', '.join(TRANSCRIPT_EVENTS)}")
        transcript.events.append((text, start))
        transcript.end_s = max(transcript.end_s, start)
        return
    if leg not in get_args(Leg):
        raise EvaluationError(f"{where}: leg {leg!r}; expected agent, customer or event")
    end = _seconds(row, "end", where)
    if end < start:
        raise EvaluationError(f"{where}: end {end:g} is before start {start:g}")
    transcript.end_s = max(transcript.end_s, end)
    if text:  # a segment in which nothing was said holds nothing to check
        transcript.utterances.append(UtteranceRecord(leg=cast(Leg, leg), start_s=start, end_s=end, text=text))


# ------------------------------------------------------------------------------------------------- judging


def judge(transcript: CallTranscript, rules: RuleSet, facts: CallFacts | None = None) -> JudgedCall:
    """Every rule's verdict on the call as the desk reaches it: the same checker, fed the final results and
    the events, then the report at the call's end. No words at all is *not checked*, as for a live call."""
    compliance = CallCompliance(rules, facts or CallFacts())
    for name, at_s in sorted(transcript.events, key=lambda event: event[1]):
        if name != "end":
            compliance.mark_event(name, at_s)
    for utterance in sorted(transcript.utterances, key=lambda u: (u.start_s, u.leg)):
        compliance.add_utterance(utterance)
    report = compliance.report(transcript.end_s) if transcript.utterances else ComplianceReport.not_checked(NO_SPEECH)
    return JudgedCall(transcript, report)


def hear_recordings(
    paths: Sequence[Path],
    monitor: SpeechMonitor,
    rules: RuleSet,
    *,
    agent_channel: int = 0,
    mono_leg: Leg = "agent",
    redact: bool = True,
    partial_stable_s: float = 0.2,
    on_done: Callable[[Path, str], None] | None = None,
) -> tuple[dict[str, JudgedCall], dict[str, str]]:
    """Each recording audited as ``contactcenter audit`` does (nothing stored): what the recogniser heard and
    the audit's own verdicts, the conversation rules' included, by call (the file's name without suffix);
    and the recordings that could not be read, by call, with why. ``on_done(path, error)`` after each file
    ("" when it was heard)."""
    heard: dict[str, JudgedCall] = {}
    failed: dict[str, str] = {}
    lock = threading.Lock()

    def one(path: Path) -> None:
        try:
            recording = read_recording(path, agent_channel, mono_leg)
            result = audit_recording(recording, monitor, rules, None, redact=redact, partial_stable_s=partial_stable_s)
        except RecordingError as exc:
            with lock:
                failed[path.stem] = str(exc)
        else:
            assert result.outcome is not None  # an audit that ran has its outcome
            transcript = CallTranscript(path.stem, str(path), list(result.outcome.transcript), [], recording.duration_s)
            with lock:
                heard[path.stem] = JudgedCall(transcript, result.outcome.report)
        if on_done is not None:
            on_done(path, failed.get(path.stem, ""))

    with ThreadPoolExecutor(max(1, min(len(paths), monitor.workers, os.cpu_count() or 1))) as pool:
        list(pool.map(one, paths))
    return heard, failed


def check_call_names(recordings: Sequence[Path], transcripts: Mapping[str, CallTranscript]) -> None:
    """Refuse two inputs that would be the same call: labels could not tell them apart."""
    by_name: dict[str, Path] = {}
    for path in recordings:
        if path.stem in by_name:
            raise EvaluationError(f"{by_name[path.stem]} and {path} are both call {path.stem!r}; rename one")
        by_name[path.stem] = path
        if path.stem in transcripts:
            raise EvaluationError(f"{path} and {transcripts[path.stem].source} are both call {path.stem!r}")


# ------------------------------------------------------------------------------------------------ comparing


def evaluate(
    labels: Sequence[Label],
    judged: Mapping[str, JudgedCall],
    rules: RuleSet,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    unavailable: Collection[str] = (),
) -> Evaluation:
    """The labels against the machine's verdicts. A label of a call in ``unavailable`` (a recording that could
    not be read) is left out and counted; a label of a call found nowhere is an error naming its line."""
    figures = {rule.id: RuleFigures(rule.id, rule.type) for rule in rules.rules}
    problems: list[Problem] = []
    groups: dict[tuple[str, str], list[Label]] = {}
    unevaluated = 0
    for label in labels:
        if label.call in unavailable:
            unevaluated += 1
        elif label.call not in judged:
            raise EvaluationError(f"{label.where}: call {label.call!r} is in none of the recordings or transcripts")
        else:
            groups.setdefault((label.call, label.rule_id), []).append(label)
    by_id = {rule.id: rule for rule in rules.rules}
    for (call, rule_id), group in groups.items():
        rule, figure = by_id[rule_id], figures[rule_id]
        if rule.spec.negate:
            problems += _banned(rule, figure, group, judged[call], tolerance_s)
        else:
            problems += _per_call(rule, figure, group[0], judged[call])
    total = RuleFigures("(all rules)", "")
    for figure in figures.values():
        total.add(figure)
    problems.sort(key=lambda p: (list(by_id).index(p.rule_id), p.kind, p.call, p.at_s or 0.0))
    return Evaluation(
        list(figures.values()), total, problems, len(judged), len({call for call, _ in groups}), unevaluated
    )


def _banned(rule: Rule, figure: RuleFigures, group: list[Label], call: JudgedCall, tolerance_s: float) -> list[Problem]:
    """A banned phrase: each labelled violation found or missed; each finding no label accounts for, a false alarm."""
    result = call.result(rule.id)
    findings = [hit for hit in result.evidence if hit.kind == "violation"] if result is not None else []
    machine = "satisfied" if result is not None else call.no_verdict()  # what a miss is told
    problems: list[Problem] = []
    if group[0].expected == "satisfied":
        figure.expected_satisfied += 1
        if result is None:
            figure.no_verdict += 1
        elif not findings:
            figure.true_negatives += 1
        for hit in findings:
            figure.false_alarms += 1
            problems.append(_finding_problem(rule, "false alarm", call, hit, group[0].where))
        return problems
    unused = list(findings)
    timed = sorted((label for label in group if label.at_s is not None), key=lambda label: label.at_s or 0.0)
    for label in [*timed, *(label for label in group if label.at_s is None)]:
        figure.expected_violations += 1
        if label.at_s is not None:
            at = label.at_s
            match = min(unused, key=lambda hit: abs((hit.at_s or 0.0) - at), default=None)
            taken = [match] if match is not None and abs((match.at_s or 0.0) - at) <= tolerance_s else []
        else:
            taken = list(unused)  # "this call broke the rule": any finding of it says so
        if taken:
            figure.true_positives += 1
            unused = [hit for hit in unused if hit not in taken]
            continue
        figure.misses += 1
        if result is None:
            figure.no_verdict += 1
        elif findings:
            machine = "violation at " + ", ".join(f"{hit.at_s or 0.0:.1f}s" for hit in findings)
        around = [(label.at_s - tolerance_s, label.at_s + tolerance_s)] if label.at_s is not None else None
        problems.append(
            Problem(
                rule.id,
                "miss",
                call.transcript.call,
                label.at_s,
                _legs_text(rule),
                _heard(call, rule, around),
                "",
                machine,
                label.where,
            )
        )
    for hit in unused:  # findings the timed labels do not account for
        figure.false_alarms += 1
        problems.append(_finding_problem(rule, "false alarm", call, hit, group[0].where))
    return problems


def _per_call(rule: Rule, figure: RuleFigures, label: Label, call: JudgedCall) -> list[Problem]:
    """Any rule but a banned phrase: one verdict per call (a missing phrase has no moment to label)."""
    result = call.result(rule.id)
    if label.expected == "violation":
        figure.expected_violations += 1
        if result is not None and not result.passed:
            figure.true_positives += 1
            return []
        figure.misses += 1
        said = next((hit for hit in result.evidence if hit.kind == "satisfied"), None) if result else None
        if said is not None:  # the machine heard the phrase: what it took for it
            return [_finding_problem(rule, "miss", call, said, label.where)]
        if result is None:
            figure.no_verdict += 1
        machine = "satisfied" if result is not None else call.no_verdict()
        heard = _heard(call, rule, None)
        return [Problem(rule.id, "miss", call.transcript.call, None, _legs_text(rule), heard, "", machine, label.where)]
    figure.expected_satisfied += 1
    if result is None:
        figure.no_verdict += 1
        return []
    if result.passed:
        figure.true_negatives += 1
        return []
    figure.false_alarms += 1
    missing = [hit for hit in result.evidence if hit.kind == "missing"]
    if not missing and result.evidence:  # found something said (or done) where the label says all was well
        return [_finding_problem(rule, "false alarm", call, result.evidence[0], label.where)]
    spans = rule.window.spans({k: list(v) for k, v in call.report.events.items()}, call.transcript.end_s) or []
    where_missing = [s for s in spans if any(hit.at_s == round(s[1], 3) for hit in missing)] or spans
    return [
        Problem(
            rule.id,
            "false alarm",
            call.transcript.call,
            missing[0].at_s if missing else None,
            _legs_text(rule),
            _heard(call, rule, where_missing),
            "",
            "violation (missing)",
            label.where,
        )
    ]


def _finding_problem(rule: Rule, kind: ProblemKind, call: JudgedCall, hit: RuleHitRecord, where: str) -> Problem:
    """A problem at a finding: the utterance in which the rule matched, and what it matched."""
    at = hit.at_s or 0.0
    legs = [hit.leg] if hit.leg else _legs(rule)
    inside = [u for u in call.transcript.utterances if u.leg in legs and u.start_s - 0.01 <= at <= u.end_s + 0.01]
    return Problem(
        rule.id,
        kind,
        call.transcript.call,
        hit.at_s,
        hit.leg or _legs_text(rule),
        call.transcript.shown(" ".join(u.text for u in inside)),
        call.transcript.shown(hit.matched_text),
        "satisfied" if hit.kind == "satisfied" else "violation",
        where,
    )


def _legs(rule: Rule) -> list[str]:
    return list(get_args(Leg)) if rule.spec.speaker == "any" else [rule.spec.speaker]


def _legs_text(rule: Rule) -> str:
    return "" if rule.spec.speaker == "any" else rule.spec.speaker


def _heard(call: JudgedCall, rule: Rule, spans: Sequence[tuple[float, float]] | None) -> str:
    """What the rule's speaker said in ``spans`` (all the call when None), as shown."""
    legs = _legs(rule)
    said = [
        u.text
        for u in sorted(call.transcript.utterances, key=lambda u: u.start_s)
        if u.leg in legs and (spans is None or any(u.start_s <= end and u.end_s >= start for start, end in spans))
    ]
    return call.transcript.shown(" ".join(said))
