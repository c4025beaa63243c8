"""The service-script rule language: rules.toml → validated rules with their phrase matchers.

Modelled on Contact Lens and CCAI phrase matchers (../shared/reference/ANCHORS.md §1.1): phrases, exact or
fuzzy match, negate, speaker, time window, live or post-call, severity and weight.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contactcenter.records import Severity
from contactcenter.settings import SettingsError
from contactcenter.speech.phrases import MatchMode, PhraseMatcher, Strictness, split_phrase_list

Speaker = Literal["agent", "customer", "any"]
RuleKind = Literal["phrase", "hangup_order", "interruption", "speech_rate", "listening", "dead_air", "talk_ratio"]
#: The rule kinds judged from how the call was talked (voice activity and word timings), not from phrases.
CONVERSATION_KINDS = ("interruption", "speech_rate", "listening", "dead_air", "talk_ratio")
#: The keys each conversation kind takes (with their defaults in RuleSpec); others are refused for it.
CONVERSATION_KEYS: dict[str, tuple[str, ...]] = {
    "interruption": (
        "min_customer_ms",
        "min_overlap_ms",
        "max_count",
        "max_per_minute",
        "complaint_max_count",
        "complaint_phrases",
    ),
    "speech_rate": ("min_cpm", "max_cpm", "rate_window_s"),
    "listening": ("phrases", "phrases_file", "turn_s", "turn_gap_ms", "backchannel_max_ms", "match", "strictness"),
    "dead_air": ("phrases", "phrases_file", "silence_s", "excuse_s", "match", "strictness"),
    "talk_ratio": (),
}
EVENTS = ("answer", "hold_start", "hold_end", "transfer")
_WINDOW = re.compile(r"^(whole|first:(\d+(\.\d+)?)|last:(\d+(\.\d+)?)|(after|before):(\w+):(\d+(\.\d+)?))$")


@dataclass(frozen=True)
class Window:
    """When a rule looks: the whole call, the first/last N seconds, or N seconds after/before an event."""

    kind: Literal["whole", "first", "last", "after", "before"]
    seconds: float = 0.0
    event: str | None = None

    @classmethod
    def parse(cls, text: str) -> Window:
        match = _WINDOW.match(text.strip())
        if match is None:
            raise ValueError(f"window {text!r}: expected whole, first:N, last:N, after:EVENT:N or before:EVENT:N")
        if match.group(1) == "whole":
            return cls("whole")
        if match.group(2):
            return cls("first", float(match.group(2)))
        if match.group(4):
            return cls("last", float(match.group(4)))
        event = match.group(7)
        if event not in EVENTS:
            raise ValueError(f"window {text!r}: unknown event {event!r} (expected one of {', '.join(EVENTS)})")
        kind: Literal["after", "before"] = "after" if match.group(6) == "after" else "before"  # what _WINDOW allows
        return cls(kind, float(match.group(8)), event)

    def spans(self, events: dict[str, list[float]], call_end: float | None) -> list[tuple[float, float]] | None:
        """The time spans this window covers, given the events so far; None if it depends on an unknown
        end (``last`` before the call ended). An event window with no event yet has no spans."""
        if self.kind == "whole":
            return [(0.0, call_end if call_end is not None else float("inf"))]
        if self.kind == "first":
            return [(0.0, self.seconds)]
        if self.kind == "last":
            return None if call_end is None else [(max(0.0, call_end - self.seconds), call_end)]
        times = events.get(self.event or "", [])
        if self.kind == "after":
            return [(t, t + self.seconds) for t in times]
        return [(max(0.0, t - self.seconds), t) for t in times]


class RuleSpec(BaseModel):
    """One rule as written in rules.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    kind: RuleKind = "phrase"
    phrases: list[str] = Field(default_factory=list)
    phrases_file: str | None = None
    negate: bool = False
    match: MatchMode = "pinyin"
    strictness: Strictness = "normal"
    min_edit_length: int = Field(default=3, ge=1)  # phrases shorter (in syllables) match by sound, no edits
    speaker: Speaker = "agent"
    window: str = "whole"
    when: Literal["always", "late_answer", "inbound", "outbound"] = "always"  # which calls the rule applies to
    live: bool = True
    severity: Severity = "major"
    weight: float = Field(default=1.0, ge=0)
    expect_first: Literal["customer", "agent"] = "customer"
    # interruption: the agent starts while the customer has spoken min_customer_ms, and both go on for
    # min_overlap_ms; more than max_count (or max_per_minute) fails the call, complaint_max_count on complaints
    min_customer_ms: int = Field(default=1000, ge=0)
    min_overlap_ms: int = Field(default=1000, ge=100)
    max_count: int = Field(default=0, ge=0)
    max_per_minute: float | None = Field(default=None, ge=0)
    complaint_max_count: int | None = Field(default=None, ge=0)
    complaint_phrases: list[str] = Field(default_factory=list)
    # speech_rate: characters per minute of agent speaking time, judged over windows of rate_window_s
    min_cpm: float = Field(default=180.0, ge=0)
    max_cpm: float = Field(default=300.0, gt=0)
    rate_window_s: float = Field(default=20.0, gt=0)
    # listening: a customer turn of turn_s or more needs a listening response (a phrase, or a short agent
    # sound of at most backchannel_max_ms that does not take the turn); pauses up to turn_gap_ms keep a turn
    turn_s: float = Field(default=15.0, gt=0)
    turn_gap_ms: int = Field(default=1500, ge=0)
    backchannel_max_ms: int = Field(default=1200, ge=100)
    # dead_air: both legs silent for silence_s outside a hold, unless a hold line (phrases) was said within
    # excuse_s before the silence began
    silence_s: float = Field(default=10.0, gt=0)
    excuse_s: float = Field(default=5.0, ge=0)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        Window.parse(value)
        return value

    @model_validator(mode="after")
    def _needs_phrases(self) -> RuleSpec:
        if self.kind == "phrase" and not self.phrases and not self.phrases_file:
            raise ValueError("a phrase rule needs phrases or phrases_file")
        if self.kind in CONVERSATION_KINDS:
            allowed = set(CONVERSATION_KEYS[self.kind])
            foreign = sorted(
                key
                for key in self.model_fields_set
                if key in _KIND_KEYS and key not in allowed and key not in _COMMON_KEYS
            )
            if foreign:
                raise ValueError(f"{', '.join(foreign)}: not a setting of {self.kind} rules")
        else:
            stray = sorted(key for key in self.model_fields_set if key in _CONVERSATION_ONLY)
            if stray:
                raise ValueError(f"{', '.join(stray)}: only for conversation rules ({', '.join(CONVERSATION_KINDS)})")
        if self.kind == "speech_rate" and self.min_cpm >= self.max_cpm:
            raise ValueError("min_cpm must be below max_cpm")
        return self


_COMMON_KEYS = {"id", "description", "kind", "window", "when", "live", "severity", "weight"}
_CONVERSATION_ONLY = {key for keys in CONVERSATION_KEYS.values() for key in keys} - {
    "phrases",
    "phrases_file",
    "match",
    "strictness",
}
_KIND_KEYS = set(RuleSpec.model_fields) - _COMMON_KEYS


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    variants: dict[str, str] = Field(default_factory=dict)
    rules: list[RuleSpec]

    @model_validator(mode="after")
    def _unique_ids(self) -> RulesFile:
        ids = [rule.id for rule in self.rules]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(duplicates)}")
        return self


@dataclass(frozen=True)
class Rule:
    """A rule ready to run: its spec, parsed window and phrase matcher (None for non-phrase rules), and its
    phrases as written (``phrases`` and ``phrases_file`` together, before ``{company}`` is filled in)."""

    spec: RuleSpec
    window: Window
    matcher: PhraseMatcher | None
    phrases: tuple[str, ...] = ()
    #: a conversation rule's phrases: listening responses, hold lines, or a complaint's words
    cues: PhraseMatcher | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def phrase_matcher(self) -> PhraseMatcher:
        """The matcher of a phrase rule (what RuleSet.phrase_rules returns); an error for other kinds."""
        if self.matcher is None:
            raise ValueError(f"rule {self.id!r} is a {self.spec.kind} rule: it has no phrases to match")
        return self.matcher

    @property
    def type(self) -> str:
        """ "required" or "banned" for a phrase rule, else the rule's kind ("hangup_order")."""
        if self.matcher is None:
            return self.spec.kind
        return "banned" if self.spec.negate else "required"


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    variants: dict[str, str]

    def phrase_rules(self) -> list[Rule]:
        return [rule for rule in self.rules if rule.matcher is not None]

    def conversation_rules(self) -> list[Rule]:
        return [rule for rule in self.rules if rule.spec.kind in CONVERSATION_KINDS]


def _expand(phrases: Sequence[str], company_names: Sequence[str]) -> list[str]:
    expanded = []
    for phrase in phrases:
        if "{company}" in phrase:
            expanded += [phrase.replace("{company}", name) for name in company_names]
        else:
            expanded.append(phrase)
    return expanded


def load_rules(path: Path, company_names: Sequence[str]) -> RuleSet:
    """Read and validate a rules file; problems raise SettingsError naming the file, rule and key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        spec = RulesFile.model_validate(data)
    except FileNotFoundError:
        raise SettingsError([f"{path}: rules file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([f"{path}: not valid TOML: {exc}"]) from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = list(error["loc"])
            where = ".".join(str(p) for p in loc)
            if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
                rule = data.get("rules", [{}])[loc[1]]
                where = f"rule {rule.get('id', loc[1])!r}" + (f" {'.'.join(map(str, loc[2:]))}" if loc[2:] else "")
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"{path}: {where}: {str(message).removeprefix('Value error, ')}")
        raise SettingsError(problems) from None
    rules = []
    for rule_spec in spec.rules:
        phrases = list(rule_spec.phrases)
        if rule_spec.phrases_file:
            phrase_file = path.parent / rule_spec.phrases_file
            try:
                phrases += split_phrase_list(phrase_file.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise SettingsError([f"{path}: rule {rule_spec.id!r} phrases_file: {phrase_file} not found"]) from None
        try:
            rules.append(build_rule(rule_spec, phrases, company_names, spec.variants))
        except ValueError as exc:
            raise SettingsError([f"{path}: rule {rule_spec.id!r}: {exc}"]) from None
    return RuleSet(tuple(rules), dict(spec.variants))


def build_rule(spec: RuleSpec, phrases: Sequence[str], company_names: Sequence[str], variants: dict[str, str]) -> Rule:
    """A rule ready to run from its spec and its phrases; ValueError if the phrases cannot be matched."""
    matcher = cues = None
    if spec.kind == "phrase":
        if not phrases:
            raise ValueError("a phrase rule needs at least one phrase")
        matcher = PhraseMatcher(
            _expand(phrases, company_names), spec.match, spec.strictness, variants, min_edit_length=spec.min_edit_length
        )
    elif spec.kind == "listening" and not phrases:
        raise ValueError("a listening rule needs its listening responses as phrases (嗯, 是的, ...)")
    cue_phrases = list(spec.complaint_phrases) if spec.kind == "interruption" else list(phrases)
    if spec.kind in CONVERSATION_KINDS and cue_phrases:
        cues = PhraseMatcher(_expand(cue_phrases, company_names), spec.match, spec.strictness, variants)
    return Rule(spec, Window.parse(spec.window), matcher, tuple(phrases) if spec.kind == "phrase" else (), cues)
