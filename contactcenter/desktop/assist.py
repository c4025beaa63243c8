"""Live assist for the agent: the checklist of the lines this call requires, and what to say instead of a
banned phrase.

The checklist is the rules in force that require a phrase of the agent on *this* call (the greeting on calls
taken, the late apology only when answered late, the hold lines once a hold happens, the closing), each ticked
by the recogniser's live finding. Without a speech model nothing is checked and every line says so: a clean
checklist would claim the agent said lines nobody heard.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from contactcenter.settings import Settings
from contactcenter.speech.phrases import PhraseSetting
from contactcenter.speech.rules import Rule, RuleSet

#: Checklist states, as the page shows them.
PENDING, SAID, MISSED, NOT_CHECKED = "待说", "已说", "未说", "未检查"
HOLD_EVENTS = ("hold_start", "hold_end")


@dataclass
class CheckItem:
    rule_id: str
    description: str
    example: str  # the first phrase, to remind the agent
    status: str
    around_hold: bool  # listed from the first hold on


def checklist(rules: RuleSet | None, *, direction: str, late: bool, speech_on: bool) -> list[CheckItem]:
    """The required lines of a call that has just been answered."""
    if rules is None:
        return []
    items = []
    for rule in rules.rules:
        spec = rule.spec
        if spec.kind != "phrase" or spec.negate or spec.speaker == "customer" or not _applies(rule, direction, late):
            continue
        items.append(
            CheckItem(
                rule_id=spec.id,
                description=spec.description or spec.id,
                example=PhraseSetting.parse(spec.phrases[0]).text if spec.phrases else "",  # without "[strict]"
                status=PENDING if speech_on else NOT_CHECKED,
                around_hold=rule.window.event in HOLD_EVENTS,
            )
        )
    return items


def _applies(rule: Rule, direction: str, late: bool) -> bool:
    when = rule.spec.when
    return when == "always" or when == direction or (when == "late_answer" and late)


class Suggestions:
    """The service script's ``[instead]`` table: banned phrase (or rule id) → the wording to use."""

    def __init__(self, settings: Settings) -> None:
        data = tomllib.loads(settings.scripts.service_script.read_text(encoding="utf-8"))
        company = settings.company
        self.instead = {
            key: str(text).format(company=company.name, department=company.department)
            for key, text in data.get("instead", {}).items()
        }
        self.lines = {
            key: str(text).format(company=company.name, department=company.department)
            for key, text in data.get("lines", {}).items()
        }
        self.labels: dict[str, str] = {key: str(label) for key, label in data.get("labels", {}).items()}

    def panel(self) -> list[tuple[str, str, str]]:
        """The script panel's lines, (key, label, text), in the script's order; the survey's recorded prompts
        are the machine's, not the agent's, and lines without a label are shown under their key."""
        return [(key, self.labels.get(key, key), text) for key, text in self.lines.items() if key in self.labels]

    def for_hit(self, rule_id: str, matched_text: str) -> str:
        """The wording for a banned phrase heard: the phrase's own, else the rule's, else ""."""
        for phrase, text in sorted(self.instead.items(), key=lambda item: -len(item[0])):  # the longest first
            if phrase and phrase in matched_text:
                return text
        return self.instead.get(rule_id, "")
