"""The plain data plugins receive: immutable, JSON-serialisable records of calls, speech and outcomes.

Plugins never see ORM objects or telephony objects, only these. Because every record round-trips through
JSON (``model_dump(mode="json")`` / ``model_validate``), a hook call a plugin failed to take can be stored
and replayed later exactly as it was first made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Leg = Literal["agent", "customer"]
Direction = Literal["inbound", "outbound"]
HitKind = Literal["violation", "satisfied", "missing"]
Severity = Literal["info", "minor", "major", "critical"]
CheckStatus = Literal["checked", "partly_checked", "not_checked"]

# Why a call has no verdict (``ComplianceReport.unchecked_reason``), and how a reviewer reads it.
NO_MODEL = "no_model"
NO_RULES = "no_rules"
NO_SPEECH = "no_speech"
NO_RULE_APPLIED = "no_rule_applied"
RECOGNITION_FAILED = "recognition_failed"
RECOGNITION_BEHIND = "recognition_behind"
NOT_ANSWERED = "not_answered"
UNCHECKED_REASONS = {
    NO_MODEL: "没有语音模型,未做语音质检",
    NO_RULES: "没有质检规则",
    NO_SPEECH: "未识别到任何语音",
    NO_RULE_APPLIED: "没有适用的规则",
    RECOGNITION_FAILED: "语音识别出错",
    RECOGNITION_BEHIND: "语音识别积压,通话结束后仍未完成",
    NOT_ANSWERED: "未接通",
}
CHECK_LABELS = {"checked": "已检查", "partly_checked": "部分检查", "not_checked": "未检查"}
#: What of a call was removed (Call.data_removed's keys) and why (its values), as pages say it.
REMOVED_PARTS = {"recording": "录音", "transcript": "通话文本", "personal": "客户信息"}
REMOVAL_LABELS = {"retention": "已超过保存期限,已删除", "erasure": "应客户要求已删除"}


def removal_notes(data_removed: dict[str, str] | None) -> dict[str, str]:
    """``Call.data_removed`` as a page says it: {"recording": "录音已超过保存期限,已删除", ...}."""
    return {
        part: REMOVED_PARTS.get(part, part) + REMOVAL_LABELS.get(reason, "已删除")
        for part, reason in (data_removed or {}).items()
    }


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CallRecord(Record):
    """A call as the desk saw it. ``id`` is the store's id; ``sip_call_id`` the SIP Call-ID."""

    id: int | None = None
    sip_call_id: str
    direction: Direction = "inbound"
    remote_number: str = ""
    caller_name: str = ""
    agent_extension: str = ""
    invited_at: datetime
    ringing_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    rings_before_answer: int | None = None
    hung_up_first: Literal["customer", "agent", "system"] | None = None
    disposition: str = "in_progress"
    purpose: str = ""
    category: str | None = None
    recording_path: str = ""  # the stereo WAV, relative to [general] data_dir ("" when not recorded)


class WordRecord(Record):
    """One recognised word with its time in seconds from the answer."""

    word: str
    start_s: float
    end_s: float
    confidence: float | None = None


class UtteranceRecord(Record):
    """One recognised segment: who spoke, when (seconds from answer), what, and how sure Vosk was."""

    leg: Leg
    start_s: float
    end_s: float
    text: str
    confidence: float | None = None
    words: tuple[WordRecord, ...] = ()

    def time_at(self, char_index: int) -> float:
        """When the character at ``char_index`` of ``text`` was said (from the words, else interpolated)."""
        if self.words:
            position = 0
            for word in self.words:
                found = self.text.find(word.word, position)
                if found < 0:
                    break
                if char_index < found + len(word.word):
                    return word.start_s
                position = found + len(word.word)
            return self.words[-1].start_s
        share = char_index / max(1, len(self.text))
        return self.start_s + share * (self.end_s - self.start_s)


class RuleHitRecord(Record):
    """A rule's finding: a banned phrase said, a required phrase said, or a required phrase missed."""

    rule_id: str
    kind: HitKind
    severity: Severity = "major"
    leg: Leg | None = None
    at_s: float | None = None
    matched_text: str = ""
    live: bool = False
    end_s: float | None = None  # where the finding is a stretch of the call (an overlap, a silence, a turn)


class ConversationMeasures(Record):
    """How the call was talked, from both legs' voice activity and the agent's word timings (seconds of
    call time). Reported whatever the rules say: the scorecards' talk time, overlap, dead air and speech rate.

    ``both_legs`` is False for a one-leg recording, whose overlap, silence and ratio are not known (None)."""

    both_legs: bool = True
    agent_talk_s: float = 0.0
    customer_talk_s: float | None = None
    overlap_s: float | None = None
    non_talk_s: float | None = None  # neither leg speaking, hold excluded
    hold_s: float = 0.0
    interruptions: int | None = None
    dead_air_s: float | None = None  # silences longer than the dead-air rule's limit, hold excluded
    agent_chars: int = 0
    agent_speaking_s: float = 0.0  # the agent's recognised utterances, first word to last
    speech_rate_cpm: float | None = None  # characters per minute of agent speaking time; None: not enough speech

    @property
    def talk_ratio(self) -> float | None:
        """The agent's share of the talk time (0..1); None when only one leg or nobody spoke."""
        if self.customer_talk_s is None or self.agent_talk_s + self.customer_talk_s <= 0:
            return None
        return self.agent_talk_s / (self.agent_talk_s + self.customer_talk_s)


class RuleResult(Record):
    """The verdict of one rule on one call, with the evidence it rests on."""

    rule_id: str
    passed: bool
    severity: Severity = "major"
    weight: float = 1.0
    description: str = ""
    evidence: tuple[RuleHitRecord, ...] = ()


class ComplianceReport(Record):
    """Every rule's verdict on a call and the score out of 100, or no score at all when nothing could be
    checked: a call nobody could check is *not checked*, never a call that passed. ``unchecked_reason`` says
    why (no speech model, no speech recognised, recognition failed); ``dropped_seconds`` is audio the
    recogniser never heard (overloaded), which makes the verdict only *partly checked*."""

    score: float | None = Field(default=None, ge=0, le=100)
    results: tuple[RuleResult, ...] = ()
    unchecked_reason: str = ""
    dropped_seconds: float = Field(default=0.0, ge=0)
    # what happened on the call that rules are timed from: hold_start, hold_end, transfer -> call times (s)
    events: dict[str, tuple[float, ...]] = Field(default_factory=dict)
    conversation: ConversationMeasures | None = None  # None: no audio was analysed (no speech model, not answered)

    @property
    def failed(self) -> tuple[RuleResult, ...]:
        return tuple(result for result in self.results if not result.passed)

    @property
    def check(self) -> CheckStatus:
        """``checked``, ``partly_checked`` or ``not_checked``."""
        return check_status(self.score, self.dropped_seconds)

    @classmethod
    def not_checked(cls, reason: str) -> ComplianceReport:
        return cls(score=None, unchecked_reason=reason)


def check_status(score: float | None, dropped_seconds: float) -> CheckStatus:
    """How far a call's verdict can be trusted, from what is stored with it."""
    if score is None:
        return "not_checked"
    return "partly_checked" if dropped_seconds > 0 else "checked"


@dataclass(frozen=True)
class CallSpeechOutcome:
    """What the speech side knows of a finished call: the transcript, the report and every finding."""

    transcript: list[UtteranceRecord]
    report: ComplianceReport
    hits: list[RuleHitRecord]

    @classmethod
    def not_checked(cls, reason: str) -> CallSpeechOutcome:
        """Nothing of the call could be checked (``reason``): no transcript, no findings, no score."""
        return cls([], ComplianceReport.not_checked(reason), [])


class TicketRecord(Record):
    """A ticket (工单) as stored."""

    id: int
    call_id: int | None = None
    source: str = "manual"
    caller_name: str = ""
    caller_phone: str = ""
    category: str
    purpose: str = ""
    summary: str = ""
    compliance_summary: str = ""
    status: str = "open"
    priority: str = "normal"
    due_at: datetime | None = None
    escalated: bool = False
    created_at: datetime


class CallbackRecord(Record):
    """A callback (次日回访, complaint follow-up, survey, by hand): what to call, why, by when, how it went."""

    id: int
    phone: str
    reason: str = ""
    kind: str = "manual"  # next_day | complaint | compliance | survey | manual
    state: str = "pending"  # pending | due | in_progress | done | failed | cancelled
    due_at: datetime
    deadline_at: datetime | None = None
    timezone: str = "Asia/Shanghai"
    owner_extension: str | None = None
    owner_only: bool = False
    attempts: int = 0
    max_attempts: int = 3
    last_outcome: str = ""
    note: str = ""
    call_id: int | None = None
    ticket_id: int | None = None


class SurveyRecord(Record):
    """A finished satisfaction survey: the answer (1-5) per question, None where none was given."""

    call_id: int | None = None
    agent_extension: str = ""
    answers: dict[str, int | None] = Field(default_factory=dict)
    completed: bool = True


class WrapUpRecord(Record):
    """The agent's wrap-up (话后处理) of one call, as saved: what the agent typed, the customer it was filed
    under, and what it did to the call's callbacks.

    ``callbacks`` are the callbacks the wrap-up promised (次日回访, complaint follow-up) as stored after the
    save: made by it, or the desk's automatic ones it took over and updated. ``cancelled_callback_ids`` are
    automatic ones it called off (the agent unticked 次日回访, or said it was no complaint).
    ``closed_callback_id`` is the callback this call was made for, closed ``done`` or counted ``missed``
    (then retried per the policy). ``corrected`` is true when the call had been wrapped up before and the
    agent saved it again: plugins update what they made the first time.
    """

    call_id: int
    sip_call_id: str
    agent_extension: str = ""  # whose call it was
    caller_name: str = ""
    company: str = ""
    phone: str = ""
    salutation: Literal["", "先生", "女士"] = ""
    customer_id: int | None = None
    category: str
    purpose: str = ""
    notes: str = ""
    resolution: str = ""
    complaint: bool = False
    callbacks: tuple[CallbackRecord, ...] = ()
    cancelled_callback_ids: tuple[int, ...] = ()
    closed_callback_id: int | None = None
    closed_callback_outcome: Literal["done", "missed"] | None = None
    wrapped_up_at: datetime
    wrapped_up_by: str  # who saved it (the agent's extension)
    corrected: bool = False
