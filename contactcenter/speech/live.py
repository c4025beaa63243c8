"""One call's speech, end to end: both legs recognised, checked against the rules, published and kept.

The phone (or the audit of a recording) pushes each leg's audio; this object turns recognised speech into
``utterance`` and ``rule_hit`` hook calls as they happen and, when the call ends, into the transcript and
compliance report for ``call_ended`` and the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from contactcenter.audio.line import RATE
from contactcenter.records import (
    NO_SPEECH,
    CallRecord,
    CallSpeechOutcome,
    ComplianceReport,
    Leg,
    RuleHitRecord,
    UtteranceRecord,
)
from contactcenter.speech.compliance import CallCompliance, CallFacts
from contactcenter.speech.monitor import LegStream, SpeechMonitor
from contactcenter.speech.redact import redact_numbers, redact_word
from contactcenter.speech.rules import RuleSet

Publish = Callable[..., None]  # (hook name, **arguments), e.g. PluginHost.bus.publish


class CallSpeech:
    """Recognition and compliance for one call; ``push(leg, pcm)`` from the audio path, ``finish`` at the end."""

    def __init__(
        self,
        monitor: SpeechMonitor,
        rules: RuleSet,
        call: CallRecord,
        facts: CallFacts,
        rate: int = RATE,
        publish: Publish | None = None,
        redact: bool = True,
        partial_stable_s: float = 0.2,
        legs: tuple[Leg, ...] = ("agent", "customer"),
        live: bool = True,
    ) -> None:
        self.call = call
        self.publish = publish
        self.redact = redact
        self._lock = threading.Lock()
        self._transcript: list[UtteranceRecord] = []
        self.compliance = CallCompliance(rules, facts, on_hit=self._on_hit, partial_stable_s=partial_stable_s)
        self.activity = monitor.talk_activity(rate, legs, on_settled=self.compliance.talk_settled)
        self.compliance.watch_talk(self.activity)
        self.legs: dict[Leg, LegStream] = {
            leg: monitor.open_leg(
                leg,
                rate,
                self._on_final,
                self.compliance.add_partial,
                self.compliance.advance,
                live=live,
                listener=self.activity,
            )
            for leg in legs
        }

    def push(self, leg: Leg, pcm: bytes, block: bool = False) -> bool:
        """Audio of one leg, in order; never blocks unless ``block`` (recordings)."""
        return self.legs[leg].push(pcm, block=block)

    def mark_event(self, name: str, at_s: float) -> None:
        self.compliance.mark_event(name, at_s)

    def _emit(self, hook: str, **arguments: Any) -> None:
        if self.publish is not None:
            self.publish(hook, call=self.call, **arguments)

    def _on_final(self, utterance: UtteranceRecord) -> None:
        self.compliance.add_utterance(utterance)  # rules see the words as said
        shown = self._shown(utterance)
        with self._lock:
            self._transcript.append(shown)
        self._emit("utterance", utterance=shown)

    def _on_hit(self, hit: RuleHitRecord) -> None:
        self._emit("rule_hit", hit=hit)

    def _shown(self, utterance: UtteranceRecord) -> UtteranceRecord:
        """The utterance as stored and published: numbers masked when redaction is on."""
        if not self.redact:
            return utterance
        words = tuple(w.model_copy(update={"word": redact_word(w.word)}) for w in utterance.words)
        return utterance.model_copy(update={"text": redact_numbers(utterance.text), "words": words})

    def finish(self, call_end_s: float, hung_up_first: str | None, timeout: float | None = None) -> CallSpeechOutcome:
        """Wait for both legs to be recognised to the end; the transcript, the report and every hit."""
        for stream in self.legs.values():
            stream.finish().result(timeout=timeout)
        report = self.compliance.report(call_end_s, hung_up_first)
        with self._lock:
            transcript = sorted(self._transcript, key=lambda u: (u.start_s, u.leg))
        hits = sorted(self.compliance.findings, key=lambda h: (h.at_s or 0.0, h.rule_id))
        if not transcript:  # the recogniser heard no word on either leg: what the agent said is unknown
            return CallSpeechOutcome([], ComplianceReport.not_checked(NO_SPEECH), [])
        dropped = round(sum(stream.dropped_seconds for stream in self.legs.values()), 1)
        if dropped > 0 and report.score is not None:  # part of the call was never heard: only partly checked
            report = report.model_copy(update={"dropped_seconds": dropped})
        return CallSpeechOutcome(transcript, report, hits)
