"""The Chinese name of every code the desk stores: severities, dispositions, states, roles, survey questions,
rules. One table (``scripts_zh/vocabulary.toml``, ``[scripts] vocabulary``), so every page, the live view,
exports and the command line's tables say a thing the same way, and a company renames it in one place.

A code the table lacks is shown as it is stored rather than hidden: a new code should be noticed and named,
not silently blank. Rule names come from ``description`` in rules.toml (:meth:`Vocabulary.with_rules`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

#: The tables the file must have: each is a kind of code some page shows.
KINDS = (
    "severity",
    "finding",
    "verdict",
    "check",
    "review",
    "direction",
    "disposition",
    "hung_up_first",
    "leg",
    "ticket_status",
    "ticket_priority",
    "callback_state",
    "callback_kind",
    "callback_outcome",
    "role",
    "agent_state",
    "survey_question",
    "survey_outcome",
    "review_state",
    "call_event",
    "dispute_state",
)
RULE = "rule"  # the kind under which rules.toml's descriptions are looked up


class VocabularyError(Exception):
    """The vocabulary file cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Vocabulary:
    """Display names by kind and code; :meth:`name` is what pages and exports call."""

    tables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise VocabularyError(f"{path}: {exc}") from None
        missing = [kind for kind in KINDS if kind not in data]
        if missing:
            raise VocabularyError(f"{path}: no table for {', '.join(missing)}")
        tables: dict[str, Mapping[str, str]] = {}
        for kind, table in data.items():
            if not isinstance(table, dict) or not all(isinstance(v, str) and v for v in table.values()):
                raise VocabularyError(f"{path}: [{kind}] must map codes to non-empty names")
            tables[kind] = MappingProxyType(dict(table))
        return cls(MappingProxyType(tables))

    def with_rules(self, descriptions: Mapping[str, str]) -> Vocabulary:
        """This vocabulary plus the rules' names (rule id → description; an empty description keeps the id)."""
        rules = {rule_id: text for rule_id, text in descriptions.items() if text}
        return Vocabulary(MappingProxyType({**self.tables, RULE: MappingProxyType(rules)}))

    def name(self, kind: str, code: str | None) -> str:
        """The display name of ``code``; "" for no code, the code itself when the table lacks it."""
        if code is None or code == "":
            return ""
        return self.tables.get(kind, {}).get(str(code), str(code))

    def names(self, kind: str) -> dict[str, str]:
        """A whole table, code → name, for a drop-down or a script."""
        return dict(self.tables.get(kind, {}))
