"""Writing a call and what speech analysis found in it: one transaction, idempotent per SIP Call-ID."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from contactcenter.records import CallRecord, ComplianceReport, ConversationMeasures, RuleHitRecord, UtteranceRecord
from contactcenter.storage.models import Agent, Call, RuleHit, RuleResultRow, Utterance, utcnow
from contactcenter.storage.reviews import rescore_after_reviews

log = logging.getLogger(__name__)

CALL_FIELDS = (
    "direction",
    "remote_number",
    "invited_at",
    "ringing_at",
    "answered_at",
    "ended_at",
    "rings_before_answer",
    "hung_up_first",
    "disposition",
    "purpose",
    "category",
    "recording_path",
)


def agent_for(session: Session, extension: str) -> Agent | None:
    """The agent with this extension, created on first sight. Two stores at once (audit workers, desks
    sharing PostgreSQL) may both see it first: the insert does nothing if the other one already added it,
    instead of failing the call's store on the unique extension."""
    if not extension:
        return None
    found = select(Agent).where(Agent.extension == extension)
    agent = session.scalar(found)
    if agent is not None:
        return agent
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):  # another database: the plain way
        agent = Agent(extension=extension)
        session.add(agent)
        return agent
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = {"extension": extension, "name": "", "team": "", "active": True, "created_at": utcnow()}
    session.execute(insert(Agent).values(**values).on_conflict_do_nothing(index_elements=["extension"]))
    return session.scalar(found)


def save_call(
    session: Session,
    call: CallRecord,
    transcript: Sequence[UtteranceRecord] = (),
    hits: Sequence[RuleHitRecord] = (),
    report: ComplianceReport | None = None,
) -> int:
    """Store (or replace) the call with this SIP Call-ID with its transcript and findings; its id."""
    row = session.scalar(select(Call).where(Call.sip_call_id == call.sip_call_id))
    if row is None:
        row = Call(sip_call_id=call.sip_call_id)
        session.add(row)
    for name in CALL_FIELDS:
        setattr(row, name, getattr(call, name))
    row.agent = agent_for(session, call.agent_extension)
    if report is not None:
        row.compliance_score = report.score
        row.unchecked_reason = report.unchecked_reason[:32]
        row.dropped_seconds = report.dropped_seconds
        row.events = {name: list(times) for name, times in report.events.items()}
        # a re-check replaces the measures too: None (no audio analysed this time) is stored as SQL NULL
        row.conversation = None if report.conversation is None else report.conversation.model_dump(mode="json")
    session.flush()
    if report is not None:  # a re-check replaces the verdicts, and any reviewed score made from the old ones
        session.execute(delete(RuleResultRow).where(RuleResultRow.call_id == row.id))
        session.add_all(
            RuleResultRow(call_id=row.id, rule_id=r.rule_id, passed=r.passed, severity=r.severity, weight=r.weight)
            for r in {r.rule_id: r for r in report.results}.values()
        )
        session.flush()
        rescore_after_reviews(session, row.id)
    if transcript or hits:
        session.execute(delete(Utterance).where(Utterance.call_id == row.id))
        session.execute(delete(RuleHit).where(RuleHit.call_id == row.id))
        session.expire(row, ["utterances", "rule_hits"])
    session.add_all(
        Utterance(call_id=row.id, leg=u.leg, start_s=u.start_s, end_s=u.end_s, text=u.text, confidence=u.confidence)
        for u in transcript
    )
    session.add_all(
        RuleHit(
            call_id=row.id,
            rule_id=h.rule_id,
            kind=h.kind,
            severity=h.severity,
            leg=h.leg,
            at_s=h.at_s,
            end_s=h.end_s,
            matched_text=h.matched_text,
            live=h.live,
        )
        for h in hits
    )
    session.flush()
    return row.id


def conversation_of(stored: Mapping[str, Any] | None) -> ConversationMeasures | None:
    """A call's stored measures (``Call.conversation``) as the record they were saved from; None when the call
    has none. Keys a later version no longer knows are dropped; a row that still cannot be read counts as not
    measured (and is logged), so one odd row never takes a call's page down or puts a made-up 0 on a card."""
    if stored is None:
        return None
    known = {key: value for key, value in stored.items() if key in ConversationMeasures.model_fields}
    try:
        return ConversationMeasures.model_validate(known)
    except ValidationError as exc:
        log.warning("stored conversation measures cannot be read (%s): shown as not measured", exc)
        return None
