"""A call the agent marks as a complaint is held to the interruption rules' stricter complaint limit.

The desk judges a call as it ends, before the wrap-up; by then it knows a complaint only from the customer's
own words (an interruption rule's ``complaint_phrases``). When the agent then marks the call as a complaint
(投诉 ticked, or a complaint category), the interruptions already found on it are counted again against
``complaint_max_count`` ("投诉时让客户充分表达,不打断"), and the call's verdict and score follow. A verdict is
only ever made stricter here: unticking 投诉 does not undo what the customer's words showed.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contactcenter.settings import Settings, SettingsError
from contactcenter.speech.rule_book import in_force, load_overrides
from contactcenter.speech.rules import RuleSet, load_rules
from contactcenter.storage.models import Call, RuleHit, RuleResultRow
from contactcenter.storage.reviews import rescore_after_reviews

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _file_rules(path: Path, modified: float, company_names: tuple[str, ...]) -> RuleSet:
    return load_rules(path, company_names)


def rules_in_force(session: Session, settings: Settings) -> RuleSet | None:
    """The rules file with the console's changes, as the desk judged the call; None if the file cannot be read
    (the wrap-up is saved all the same)."""
    path = Path(settings.scripts.rules)
    names = tuple(settings.company.names_said)
    try:
        base = _file_rules(path, path.stat().st_mtime, names)
    except (OSError, SettingsError) as exc:
        log.warning("complaint limits not applied at wrap-up: the rules cannot be read (%s)", exc)
        return None
    return in_force(base, load_overrides(session), names)


def hold_to_complaint_limit(session: Session, call: Call, rules: RuleSet) -> list[str]:
    """Fail the interruption rules whose complaint limit the call's stored interruptions exceed, and score the
    call again; the rules whose verdict changed."""
    if not call.complaint or call.compliance_score is None:
        return []
    changed = []
    for rule in rules.conversation_rules():
        spec = rule.spec
        if spec.kind != "interruption" or spec.complaint_max_count is None:
            continue
        verdict = session.scalar(
            select(RuleResultRow).where(RuleResultRow.call_id == call.id, RuleResultRow.rule_id == rule.id)
        )
        if verdict is None or not verdict.passed:
            continue  # not judged on this call (one leg, no timeline), or failed already
        found = session.scalar(
            select(func.count())
            .select_from(RuleHit)
            .where(RuleHit.call_id == call.id, RuleHit.rule_id == rule.id, RuleHit.kind == "violation")
        )
        if (found or 0) > min(spec.max_count, spec.complaint_max_count):
            verdict.passed = False
            changed.append(rule.id)
    if changed:
        results = list(session.scalars(select(RuleResultRow).where(RuleResultRow.call_id == call.id)))
        total = sum(r.weight for r in results)
        if total > 0:
            call.compliance_score = round(100.0 * sum(r.weight for r in results if r.passed) / total, 1)
        session.flush()
        rescore_after_reviews(session, call.id)
        log.info("call %s marked a complaint: %s now failed under the complaint limit", call.id, ", ".join(changed))
    return changed
