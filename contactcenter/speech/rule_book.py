"""The rules in force: the rules file, with the changes admins make in the console.

The rules file (``[scripts] rules``) is what a deployment ships with. An admin may switch a rule off, or
change its severity, weight or phrases, in the console. Those changes are kept in the database
(``rule_overrides``, their history in ``rule_changes``), not written into the file: every desk on every
machine reads the same database, so the whole floor follows a change from its next call, and the file stays
as the deployment wrote it (a change can always be undone back to it).

A desk reads the changes as each call rings (``RuleBook``) and checks the call with them from its answer.
If the database cannot be read, or is slow, the call goes on with the rules the desk had.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from contactcenter.records import Severity
from contactcenter.speech.rules import Rule, RuleSet, build_rule
from contactcenter.storage.database import Database
from contactcenter.storage.models import RuleChange, RuleOverride

log = logging.getLogger(__name__)
MAX_PHRASES = 500


class RuleError(ValueError):
    """A change that cannot be made: values the rule cannot run with."""


class RuleEdit(BaseModel):
    """An admin's change to one rule; a field left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    severity: Severity | None = None
    weight: float | None = Field(default=None, ge=0, le=100)
    phrases: list[str] | None = Field(default=None, max_length=MAX_PHRASES)

    @field_validator("phrases")
    @classmethod
    def _clean(cls, phrases: list[str] | None) -> list[str] | None:
        """Trimmed, without blanks or repeats (the form's text box has one phrase per line)."""
        if phrases is None:
            return None
        return list(dict.fromkeys(p.strip() for p in phrases if p.strip()))


@dataclass(frozen=True)
class Override:
    """What the database says of one rule; ``None`` means "as the file says"."""

    enabled: bool = True
    severity: str | None = None
    weight: float | None = None
    phrases: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RuleState:
    """One rule as the console shows it: the values in force, the file's values, and the last change."""

    id: str
    description: str
    kind: str  # "required", "banned" or the rule's own kind ("hangup_order")
    enabled: bool
    severity: str
    weight: float
    phrases: list[str]
    file: dict[str, Any]
    changed_by: str | None
    changed_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _override(row: RuleOverride) -> Override:
    return Override(row.enabled, row.severity, row.weight, tuple(row.phrases) if row.phrases is not None else None)


def load_overrides(session: Session) -> dict[str, Override]:
    return {row.rule_id: _override(row) for row in session.scalars(select(RuleOverride))}


def _values(rule: Rule, override: Override | None) -> dict[str, Any]:
    """A rule's four editable values in force."""
    override = override or Override()
    return {
        "enabled": override.enabled,
        "severity": override.severity or rule.spec.severity,
        "weight": override.weight if override.weight is not None else rule.spec.weight,
        "phrases": list(override.phrases if override.phrases is not None else rule.phrases),
    }


def _built(rule: Rule, values: Mapping[str, Any], company_names: Sequence[str], variants: dict[str, str]) -> Rule:
    spec = rule.spec.model_copy(update={"severity": values["severity"], "weight": values["weight"]})
    return build_rule(spec, values["phrases"], company_names, variants)


def in_force(base: RuleSet, overrides: Mapping[str, Override], company_names: Sequence[str]) -> RuleSet:
    """The file's rules with the admins' changes: switched-off rules left out, the others as changed.

    A stored change that no longer fits the file (its phrases cannot be matched since the file changed)
    is logged and the file's rule is used."""
    rules = []
    for rule in base.rules:
        override = overrides.get(rule.id)
        if override is None:
            rules.append(rule)
        elif override.enabled:
            try:
                rules.append(_built(rule, _values(rule, override), company_names, base.variants))
            except ValueError as exc:
                log.error("rules: the console's change to %r cannot be used (%s); using the file's rule", rule.id, exc)
                rules.append(rule)
    return RuleSet(tuple(rules), base.variants)


def rule_states(base: RuleSet, session: Session | None) -> list[RuleState]:
    """Every rule of the file as in force, for the admin page, the API and `rules list`; without a session,
    as the file has them."""
    rows = {row.rule_id: row for row in session.scalars(select(RuleOverride))} if session is not None else {}
    states = []
    for rule in base.rules:
        row = rows.get(rule.id)
        values = _values(rule, _override(row) if row else None)
        states.append(
            RuleState(
                id=rule.id,
                description=rule.spec.description,
                kind=rule.type,
                **values,
                file={"severity": rule.spec.severity, "weight": rule.spec.weight, "phrases": list(rule.phrases)},
                changed_by=row.changed_by if row else None,
                changed_at=row.changed_at if row else None,
            )
        )
    return states


def _rule(base: RuleSet, rule_id: str) -> Rule:
    for rule in base.rules:
        if rule.id == rule_id:
            return rule
    raise KeyError(rule_id)


def change_rule(
    session: Session, base: RuleSet, company_names: Sequence[str], rule_id: str, edit: RuleEdit, username: str
) -> dict[str, list[Any]]:
    """Apply an admin's change to a rule and record it; the fields that changed, as ``[before, after]``.

    Raises KeyError for a rule not in the file, and RuleError for values the rule cannot run with."""
    rule = _rule(base, rule_id)
    before = _values(rule, load_overrides(session).get(rule_id))
    wanted = {key: value for key, value in edit.model_dump().items() if value is not None}
    if "phrases" in wanted and rule.matcher is None:
        raise RuleError(f"rule {rule_id!r} is not a phrase rule: it has no phrases to change")
    after = {**before, **wanted}
    if rule.matcher is not None:
        if not after["phrases"]:
            raise RuleError(f"rule {rule_id!r} needs at least one phrase")
        try:
            _built(rule, after, company_names, base.variants)
        except ValueError as exc:
            raise RuleError(f"rule {rule_id!r}: {exc}") from None
    change = {key: [before[key], after[key]] for key in after if after[key] != before[key]}
    if change:
        _store(session, rule, after, username)
        session.add(RuleChange(rule_id=rule_id, changed_by=username, change=change))
    return change


def reset_rule(session: Session, base: RuleSet, rule_id: str, username: str) -> dict[str, list[Any]]:
    """Put a rule back as the file has it, and record that; the fields that changed."""
    rule = _rule(base, rule_id)
    before, after = _values(rule, load_overrides(session).get(rule_id)), _values(rule, None)
    change = {key: [before[key], after[key]] for key in after if after[key] != before[key]}
    session.execute(delete(RuleOverride).where(RuleOverride.rule_id == rule_id))
    if change:
        session.add(RuleChange(rule_id=rule_id, changed_by=username, change=change))
    return change


def _store(session: Session, rule: Rule, values: Mapping[str, Any], username: str) -> None:
    """Keep only what differs from the file, so a later change to the file still shows through."""
    file = _values(rule, None)
    differs = {key: values[key] if values[key] != file[key] else None for key in ("severity", "weight", "phrases")}
    session.execute(delete(RuleOverride).where(RuleOverride.rule_id == rule.id))
    if values["enabled"] and all(value is None for value in differs.values()):
        return  # back to the file's rule
    session.add(RuleOverride(rule_id=rule.id, enabled=values["enabled"], changed_by=username, **differs))


def rule_changes(session: Session, limit: int = 50) -> list[RuleChange]:
    """The latest rule changes, newest first."""
    return list(session.scalars(select(RuleChange).order_by(RuleChange.id.desc()).limit(limit)))


class RuleBook:
    """The rules a desk checks each call against: the file's, with the console's changes.

    A desk calls ``refresh_soon`` when a call starts ringing, which reads the changes (a handful of rows) in
    the background, and ``current`` when it answers, which waits for that read at most ``wait_s`` and never
    touches the database itself: a slow or absent database cannot hold up a call, which then goes on with
    the rules last in force. The rules are rebuilt only when the changes did."""

    def __init__(self, base: RuleSet, database: Database | None, company_names: Sequence[str]) -> None:
        self.base = base
        self.database = database
        self.company_names = tuple(company_names)
        self._overrides: dict[str, Override] = {}
        self._rules = base
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def refresh(self) -> RuleSet:
        """Read the console's changes now and return the rules in force (the rules last in force if the
        database cannot be read)."""
        if self.database is None:
            return self.base
        try:
            with self.database.session() as session:
                overrides = load_overrides(session)
        except SQLAlchemyError as exc:
            log.warning("rules: cannot read the console's rule changes (%s); going on with the rules in force", exc)
            return self._rules
        with self._lock:
            if overrides != self._overrides:
                self._rules = in_force(self.base, overrides, self.company_names)
                self._overrides = overrides
            return self._rules

    def refresh_soon(self) -> None:
        """Start a refresh in the background, unless one is under way."""
        with self._lock:
            if not self._idle.is_set():
                return
            self._idle.clear()
        threading.Thread(target=self._refresh_then_idle, name="rule-book", daemon=True).start()

    def _refresh_then_idle(self) -> None:
        try:
            self.refresh()
        finally:
            self._idle.set()

    def current(self, wait_s: float = 0.5) -> RuleSet:
        """The rules in force, after waiting at most ``wait_s`` for a refresh under way."""
        self._idle.wait(wait_s)
        return self._rules
