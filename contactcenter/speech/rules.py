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
    kind: Literal["phrase", "hangup_order"] = "phrase"
    phrases: list[str] = Field(default_factory=list)
    phrases_file: str | None = None
    negate: bool = False
    match: MatchMode = "pinyin"
    strictness: Strictness = "normal"
    speaker: Speaker = "agent"
    window: str = "whole"
    when: Literal["always", "late_answer", "inbound", "outbound"] = "always"  # which calls the rule applies to
    live: bool = True
    severity: Severity = "major"
    weight: float = Field(default=1.0, ge=0)
    expect_first: Literal["customer", "agent"] = "customer"

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        Window.parse(value)
        return value

    @model_validator(mode="after")
    def _needs_phrases(self) -> RuleSpec:
        if self.kind == "phrase" and not self.phrases and not self.phrases_file:
            raise ValueError("a phrase rule needs phrases or phrases_file")
        return self


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
    matcher = None
    if spec.kind == "phrase":
        if not phrases:
            raise ValueError("a phrase rule needs at least one phrase")
        matcher = PhraseMatcher(_expand(phrases, company_names), spec.match, spec.strictness, variants)
    return Rule(spec, Window.parse(spec.window), matcher, tuple(phrases) if spec.kind == "phrase" else ())
