"""Checking one call against the rules, live as speech arrives and in full when it ends.

Live: a banned phrase is reported as soon as it is recognised (from a stable partial result, before the
utterance is even finished), a required phrase when it is said, and a required phrase still missing when
its window closes, at that moment. Time is the call's audio time (seconds from the answer), advanced by
the recogniser as it works through each leg, so live calls and recordings are judged the same way.

After the call: every rule's verdict with evidence and a score out of 100 (weights of the rules that
apply to the call, normalised). There is one list of findings per call (:attr:`CallCompliance.findings`):
the verdict reuses each finding already reported live (a banned phrase first seen in a partial result keeps
that one finding when the final result confirms it) and adds only what could not be known live, so the
report, the store and the live view speak of the same findings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from contactcenter.records import (
    NO_RULE_APPLIED,
    ComplianceReport,
    ConversationMeasures,
    Direction,
    HitKind,
    Leg,
    RuleHitRecord,
    RuleResult,
    UtteranceRecord,
)
from contactcenter.speech import conversation_rules as talk_rules
from contactcenter.speech.conversation_rules import Moment, Talk
from contactcenter.speech.rules import CONVERSATION_KINDS, Rule, RuleSet, RuleSpec, Window
from contactcenter.speech.talk_activity import Span, Timeline

#: Seconds of audio a leg must have been recognised past a window's end before "missing" is declared;
#: covers the recogniser's end-of-utterance delay, so a phrase said just before the end still counts.
DEFAULT_GRACE_S = 1.5
#: A banned phrase must be in the partial result this long (audio seconds) before it is reported early.
DEFAULT_PARTIAL_STABLE_S = 0.2
#: ... except for a critical rule: reported from the first partial result that shows it, accepting more false
#: alarms from hypotheses the recogniser revises (bench/speech_bench.py: p95 from the end of a word said
#: mid-utterance 1.0 s at the first sight against 1.4 s after 0.2 s of stability).
CRITICAL_PARTIAL_STABLE_S = 0.0
#: A finding reported live from a partial result is timed when the partial showed it, a little after the
#: word's start that the final result gives: within this many seconds they are the same finding.
SAME_FINDING_S = 3.0
#: The live conversation rules look again each time this much more of the timeline is settled.
LIVE_STEP_S = 0.2
_DEFAULTS = {kind: RuleSpec(id=f"default-{kind}", kind=kind) for kind in ("interruption", "dead_air")}


@dataclass(frozen=True)
class CallFacts:
    """What the phone knows about the call that some rules depend on."""

    rings_before_answer: int | None = None
    apology_after_rings: int = 3
    direction: Direction = "inbound"  # calls the desk places are checked only by rules that apply to them
    complaint: bool = False  # the call is known to be a complaint (the stricter interruption limit applies)

    @property
    def late_answer(self) -> bool:
        return self.rings_before_answer is not None and self.rings_before_answer > self.apology_after_rings


@dataclass(frozen=True)
class _Found:
    rule_id: str
    leg: Leg
    at_s: float
    matched_text: str


@dataclass
class _PartialWatch:
    first_seen: dict[tuple[str, str], float] = field(default_factory=dict)


class CallCompliance:
    """The rule state of one call. Thread-safe: both legs' recognisers report into it."""

    def __init__(
        self,
        rules: RuleSet,
        facts: CallFacts,
        on_hit: Callable[[RuleHitRecord], None] | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        partial_stable_s: float = DEFAULT_PARTIAL_STABLE_S,
    ) -> None:
        self.rules = rules
        self.facts = facts
        self._on_hit = on_hit
        self.grace_s = grace_s
        self.partial_stable_s = partial_stable_s
        self._lock = threading.Lock()
        self.utterances: list[UtteranceRecord] = []
        self._found: list[_Found] = []
        self.events: dict[str, list[float]] = {"answer": [0.0]}
        self._leg_time: dict[Leg, float] = {"agent": 0.0, "customer": 0.0}
        self._emitted: set[tuple[str, str, float | None, str]] = set()
        self.findings: list[RuleHitRecord] = []  # the call's one list: reported live, completed by report()
        self._reused: set[int] = set()  # findings already used as evidence by the report being made
        self._partials: dict[Leg, _PartialWatch] = {"agent": _PartialWatch(), "customer": _PartialWatch()}
        self._early: set[tuple[Leg, str, str]] = set()  # (leg, rule, phrase) already reported from a partial
        self.activity: Timeline | None = None  # who talked when; None: only the words are known
        self._live_checked_s = 0.0
        self._alerted: set[tuple[str, float]] = set()  # (rule, start) of conversation findings alerted live

    def watch_talk(self, activity: Timeline) -> None:
        """Judge the conversation rules on this timeline (live as it settles, and in the report)."""
        self.activity = activity

    # ------------------------------------------------------------------------------------------------ input

    def add_utterance(self, utterance: UtteranceRecord) -> None:
        """A final recognition result on one leg."""
        with self._lock:
            self.utterances.append(utterance)
            for rule in self._rules_for(utterance.leg):
                for match in rule.phrase_matcher.find(utterance.text):
                    found = _Found(rule.id, utterance.leg, round(utterance.time_at(match.start), 3), match.matched_text)
                    self._found.append(found)
                    early_key = (utterance.leg, rule.id, match.phrase)
                    if early_key in self._early:
                        self._early.discard(early_key)
                        continue  # already reported from the partial result
                    self._report_if_live(rule, found)
            self._partials[utterance.leg] = _PartialWatch()
            self._leg_time[utterance.leg] = max(self._leg_time[utterance.leg], utterance.end_s)
            self._close_windows()

    def add_partial(self, leg: Leg, text: str, at_s: float) -> None:
        """A partial result: reports banned phrases early once they have been stable for a moment."""
        with self._lock:
            watch = self._partials[leg]
            for rule in self._rules_for(leg):
                if not (rule.spec.negate and rule.spec.live):
                    continue
                for match in rule.phrase_matcher.find(text):
                    key = (rule.id, match.phrase)
                    first = watch.first_seen.setdefault(key, at_s)
                    early_key = (leg, rule.id, match.phrase)
                    stable_s = CRITICAL_PARTIAL_STABLE_S if rule.spec.severity == "critical" else self.partial_stable_s
                    if at_s - first >= stable_s and early_key not in self._early:
                        self._early.add(early_key)
                        found = _Found(rule.id, leg, round(first, 3), match.matched_text)
                        if self._in_window(rule, found.at_s):
                            self._emit(rule, "violation", found.leg, found.at_s, found.matched_text)

    def mark_event(self, name: str, at_s: float) -> None:
        """Something happened on the call (hold_start, hold_end, transfer) at ``at_s`` seconds."""
        with self._lock:
            self.events.setdefault(name, []).append(at_s)
            for rule in self.rules.phrase_rules():
                if rule.window.event == name and rule.spec.live:
                    for found in self._found_for(rule):
                        self._report_if_live(rule, found)
            self._close_windows()

    def talk_settled(self, settled_s: float) -> None:
        """More of the timeline is settled: interruptions and dead air are alerted as soon as they are."""
        if self.activity is None or settled_s - self._live_checked_s < LIVE_STEP_S:
            return
        with self._lock:
            self._live_checked_s = settled_s
            live = [
                rule
                for rule in self.rules.conversation_rules()
                if rule.spec.live and rule.spec.kind in ("interruption", "dead_air") and self._applies(rule)
            ]
            if not live:
                return
            talk = self._talk(settled_s)
            for rule in live:
                found = talk_rules.interruptions(talk, rule) if rule.spec.kind == "interruption" else []
                if rule.spec.kind == "dead_air":
                    found = talk_rules.dead_air(talk, rule)
                for moment in found:
                    key = (rule.id, moment.span.start)
                    if key not in self._alerted and self._in_window(rule, moment.span.start):
                        self._alerted.add(key)  # once, though the overlap or silence goes on growing
                        self._emit(rule, "violation", moment.leg, moment.span.start, moment.text)

    def advance(self, leg: Leg, at_s: float) -> None:
        """The recogniser has worked through ``leg`` up to ``at_s``: windows that ended before may close."""
        with self._lock:
            if at_s > self._leg_time[leg]:
                self._leg_time[leg] = at_s
                self._close_windows()

    # ----------------------------------------------------------------------------------------------- output

    def report(self, call_end_s: float, hung_up_first: str | None = None) -> ComplianceReport:
        """Every applicable rule's verdict with evidence, and the score out of 100 (none if no rule applied)."""
        with self._lock:
            self._reused = set()
            talk = self._talk(call_end_s) if self.activity is not None else None
            results = [r for rule in self.rules.rules if (r := self._verdict(rule, call_end_s, hung_up_first, talk))]
            events = {name: tuple(round(t, 3) for t in times) for name, times in self.events.items()}
            conversation = self._measures(talk)
        total = sum(r.weight for r in results)
        if total == 0:  # no rule applied: nothing was checked, which is not the same as a perfect call
            return ComplianceReport(
                score=None,
                results=tuple(results),
                unchecked_reason=NO_RULE_APPLIED,
                events=events,
                conversation=conversation,
            )
        score = 100.0 * sum(r.weight for r in results if r.passed) / total
        return ComplianceReport(score=round(score, 1), results=tuple(results), events=events, conversation=conversation)

    # ------------------------------------------------------------------------------------------- internals

    def _rules_for(self, leg: Leg) -> list[Rule]:
        return [rule for rule in self.rules.phrase_rules() if rule.spec.speaker in (leg, "any") and self._applies(rule)]

    def _applies(self, rule: Rule) -> bool:
        when = rule.spec.when
        return when == "always" or when == self.facts.direction or (when == "late_answer" and self.facts.late_answer)

    def _found_for(self, rule: Rule) -> list[_Found]:
        return [f for f in self._found if f.rule_id == rule.id]

    def _in_window(self, rule: Rule, at_s: float, call_end: float | None = None) -> bool:
        spans = rule.window.spans(self.events, call_end)
        return spans is not None and any(start <= at_s <= end for start, end in spans)

    def _report_if_live(self, rule: Rule, found: _Found) -> None:
        if rule.spec.live and self._in_window(rule, found.at_s):
            self._emit(
                rule, "violation" if rule.spec.negate else "satisfied", found.leg, found.at_s, found.matched_text
            )

    def _emit(self, rule: Rule, kind: HitKind, leg: Leg | None, at_s: float | None, text: str) -> None:
        key = (rule.id, kind, at_s, text)
        if key in self._emitted:
            return
        if kind == "satisfied" and any(k[0] == rule.id and k[1] == "satisfied" for k in self._emitted):
            return  # a requirement is reported satisfied once
        self._emitted.add(key)
        hit = RuleHitRecord(
            rule_id=rule.id, kind=kind, severity=rule.spec.severity, leg=leg, at_s=at_s, matched_text=text, live=True
        )
        self.findings.append(hit)
        if self._on_hit is not None:
            self._on_hit(hit)

    def _leg_progress(self, rule: Rule) -> float:
        if rule.spec.speaker == "any":
            return min(self._leg_time.values())
        return self._leg_time[rule.spec.speaker]

    def _close_windows(self) -> None:
        for rule in self.rules.phrase_rules():
            if rule.spec.negate or not rule.spec.live or not self._applies(rule):
                continue
            spans = rule.window.spans(self.events, None)
            if not spans:
                continue
            progress = self._leg_progress(rule)
            for start, end in spans:
                if end == float("inf") or progress < end + self.grace_s:
                    continue
                if not any(start <= f.at_s <= end for f in self._found_for(rule)):
                    self._emit(rule, "missing", None if rule.spec.speaker == "any" else rule.spec.speaker, end, "")

    def _talk(self, until_s: float) -> Talk:
        """The timeline up to ``until_s`` as the conversation rules read it (activity set; lock held)."""
        assert self.activity is not None
        return Talk(
            agent=self.activity.spans("agent") if "agent" in self.activity.legs else [],
            customer=self.activity.spans("customer") if self.activity.both_legs else None,
            until_s=until_s,
            holds=self._holds(until_s),
            utterances=list(self.utterances),
            complaint=self.facts.complaint,
        )

    def _holds(self, until_s: float) -> list[Span]:
        starts = sorted(self.events.get("hold_start", []))
        ends = sorted(self.events.get("hold_end", []))
        holds = []
        for start in starts:
            end = next((e for e in ends if e >= start), max(until_s, start))
            holds.append(Span(start, end))
        return holds

    def _measures(self, talk: Talk | None) -> ConversationMeasures | None:
        if talk is None:
            return None
        rules = {rule.spec.kind: rule for rule in self.rules.conversation_rules()}
        dead_air_rule = rules.get("dead_air")
        silence_s = dead_air_rule.spec.silence_s if dead_air_rule else _DEFAULTS["dead_air"].silence_s
        measured = talk_rules.measures(talk, silence_s)
        if not measured.both_legs:
            return measured
        interruption = rules.get("interruption") or Rule(_DEFAULTS["interruption"], Window("whole"), None)
        return measured.model_copy(update={"interruptions": len(talk_rules.interruptions(talk, interruption))})

    def _conversation_verdict(self, rule: Rule, talk: Talk | None, call_end: float) -> RuleResult | None:
        """A conversation rule's verdict; None where it cannot be judged (no timeline, one leg, too little
        speech) or only reports (talk_ratio)."""
        kind = rule.spec.kind
        if kind == "talk_ratio":
            return None
        if kind == "speech_rate":
            windows, moments = talk_rules.rate_outside(self.utterances, rule)
            if not windows:
                return None
        elif talk is None or talk.customer is None:
            return None
        elif kind == "interruption":
            moments = talk_rules.interruptions(talk, rule)
        elif kind == "dead_air":
            moments = talk_rules.dead_air(talk, rule)
        else:
            moments = talk_rules.long_turns_unanswered(talk, rule)
        spans = rule.window.spans(self.events, call_end) or []
        moments = [m for m in moments if any(s <= m.span.start <= e for s, e in spans)]
        evidence = tuple(self._span_finding(rule, moment) for moment in moments)
        if kind == "interruption":
            assert talk is not None
            passed = talk_rules.interruption_passed(talk, rule, moments)
        else:
            passed = not moments
        return _result(rule, passed, evidence)

    def _span_finding(self, rule: Rule, moment: Moment) -> RuleHitRecord:
        """The live finding for this stretch (completed with its end and measure), or a new one."""
        at_s, end_s = round(moment.span.start, 3), round(moment.span.end, 3)
        for index, hit in enumerate(self.findings):
            if index in self._reused or hit.rule_id != rule.id or hit.at_s is None:
                continue
            if abs(hit.at_s - at_s) < 0.05:
                done = hit.model_copy(update={"end_s": end_s, "matched_text": moment.text})
                self.findings[index] = done
                self._reused.add(index)
                return done
        hit = RuleHitRecord(
            rule_id=rule.id,
            kind="violation",
            severity=rule.spec.severity,
            leg=moment.leg,
            at_s=at_s,
            matched_text=moment.text,
            end_s=end_s,
        )
        self.findings.append(hit)
        self._reused.add(len(self.findings) - 1)
        return hit

    def _verdict(self, rule: Rule, call_end: float, hung_up_first: str | None, talk: Talk | None) -> RuleResult | None:
        spec = rule.spec
        if not self._applies(rule):
            return None
        if rule.spec.kind in CONVERSATION_KINDS:
            return self._conversation_verdict(rule, talk, call_end)
        if spec.kind == "hangup_order":
            if hung_up_first is None:
                return None
            passed = hung_up_first != "agent" if spec.expect_first == "customer" else hung_up_first != "customer"
            evidence: tuple[RuleHitRecord, ...] = (
                () if passed else (self._finding(rule, "violation", None, call_end, f"hung_up_first={hung_up_first}"),)
            )
            return _result(rule, passed, evidence)
        spans = rule.window.spans(self.events, call_end)
        if not spans:
            return None  # an event window whose event never happened
        in_window = [f for f in self._found_for(rule) if any(s <= f.at_s <= e for s, e in spans)]
        if spec.negate:
            evidence = tuple(self._finding(rule, "violation", f.leg, f.at_s, f.matched_text) for f in in_window)
            return _result(rule, not evidence, evidence)
        evidence_list = []
        for start, end in spans:
            inside = [f for f in in_window if start <= f.at_s <= end]
            evidence_list.append(
                self._finding(rule, "satisfied", inside[0].leg, inside[0].at_s, inside[0].matched_text)
                if inside
                else self._finding(rule, "missing", None if spec.speaker == "any" else spec.speaker, round(end, 3), "")
            )
        passed = all(hit.kind == "satisfied" for hit in evidence_list)
        return _result(rule, passed, tuple(evidence_list))

    def _finding(self, rule: Rule, kind: HitKind, leg: Leg | None, at_s: float | None, text: str) -> RuleHitRecord:
        """The finding reported live for this evidence, or a new one added to the call's list."""
        for index, hit in enumerate(self.findings):
            if index in self._reused or hit.rule_id != rule.id or hit.kind != kind or hit.leg != leg:
                continue
            same_time = hit.at_s == at_s or (
                hit.at_s is not None
                and at_s is not None
                and kind == "violation"
                and abs(hit.at_s - at_s) <= SAME_FINDING_S
            )
            if same_time:
                self._reused.add(index)
                return hit
        hit = RuleHitRecord(
            rule_id=rule.id, kind=kind, severity=rule.spec.severity, leg=leg, at_s=at_s, matched_text=text
        )
        self.findings.append(hit)
        self._reused.add(len(self.findings) - 1)
        return hit


def _result(rule: Rule, passed: bool, evidence: tuple[RuleHitRecord, ...]) -> RuleResult:
    spec = rule.spec
    return RuleResult(
        rule_id=rule.id,
        passed=passed,
        severity=spec.severity,
        weight=spec.weight,
        description=spec.description,
        evidence=evidence,
    )
