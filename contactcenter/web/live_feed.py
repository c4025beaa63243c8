"""The live view's feed: what the desk hears on calls in progress, written to ``live_events`` as it happens,
and read back by the console for supervisors.

The writer is a built-in plugin (``live_view``), registered by every desk like the ``callbacks`` one: it gets
the plugin isolation (its own worker, a time limit), so a slow or absent database never holds up a call, and
every desk process, on any machine, writes to the one table every console process reads. Text is stored
as published, so with ``[speech] redact_numbers`` the numbers are already masked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from contactcenter import hookimpl
from contactcenter.api import PluginAPI
from contactcenter.records import CallRecord, ComplianceReport, RuleHitRecord, UtteranceRecord
from contactcenter.storage.models import LiveEvent

NAME = "live_view"
ALERT_KINDS = ("violation", "missing")


def _write(api: PluginAPI, call: CallRecord, kind: str, data: dict[str, Any], prune_hours: int = 0) -> None:
    """Add one event; with ``prune_hours``, also drop the events older than that, in the same transaction
    (the feed is for the floor now, not an archive: the store has the calls)."""
    now = datetime.now(timezone.utc)
    with api.session() as session:
        session.add(LiveEvent(sip_call_id=call.sip_call_id, kind=kind, agent_extension=call.agent_extension,
                              at=now, data=data))
        if prune_hours:
            session.execute(delete(LiveEvent).where(LiveEvent.at < now - timedelta(hours=prune_hours)))


@hookimpl
def call_ringing(call: CallRecord, api: PluginAPI) -> None:
    _write(api, call, "ringing", {"remote_number": call.remote_number, "caller_name": call.caller_name,
                                  "direction": call.direction, "invited_at": call.invited_at.isoformat()})


@hookimpl
def call_answered(call: CallRecord, api: PluginAPI) -> None:
    _write(api, call, "answered", {"rings": call.rings_before_answer,
                                   "answered_at": call.answered_at.isoformat() if call.answered_at else None})


@hookimpl
def utterance(call: CallRecord, utterance: UtteranceRecord, api: PluginAPI) -> None:
    _write(api, call, "utterance", {"leg": utterance.leg, "start_s": utterance.start_s, "end_s": utterance.end_s,
                                    "text": utterance.text})


@hookimpl
def rule_hit(call: CallRecord, hit: RuleHitRecord, api: PluginAPI) -> None:
    if hit.kind in ALERT_KINDS:
        _write(api, call, "alert", {"rule_id": hit.rule_id, "finding": hit.kind, "severity": hit.severity,
                                    "leg": hit.leg, "at_s": hit.at_s, "matched_text": hit.matched_text})


@hookimpl
def call_ended(call: CallRecord, transcript: list[UtteranceRecord], report: ComplianceReport,
               api: PluginAPI) -> None:
    _write(api, call, "ended", {"call_id": call.id, "disposition": call.disposition, "score": report.score,
                                "hung_up_first": call.hung_up_first,
                                "failed_rules": [r.rule_id for r in report.failed]},
           prune_hours=api.settings.web.live_keep_hours)


# ------------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class FeedEvent:
    id: int
    sip_call_id: str
    kind: str
    agent: str
    at: datetime
    data: dict[str, Any]


def _event(row: LiveEvent) -> FeedEvent:
    return FeedEvent(row.id, row.sip_call_id, row.kind, row.agent_extension, row.at, dict(row.data))


def events_after(session: Session, last_id: int, limit: int = 500) -> list[FeedEvent]:
    """Events newer than ``last_id``, oldest first (what a connected live view has not seen yet)."""
    rows = session.scalars(select(LiveEvent).where(LiveEvent.id > last_id).order_by(LiveEvent.id).limit(limit))
    return [_event(row) for row in rows]


def calls_in_progress(session: Session, within: timedelta) -> tuple[list[FeedEvent], int]:
    """Every event so far of the calls that started within ``within`` and have not ended, oldest first, and
    the newest event id (where a new live view starts following)."""
    since = datetime.now(timezone.utc) - within
    newest = session.scalar(select(LiveEvent.id).order_by(LiveEvent.id.desc()).limit(1)) or 0
    rows = [_event(row) for row in session.scalars(  # up to ``newest``: later ones come through the stream
        select(LiveEvent).where(LiveEvent.at >= since, LiveEvent.id <= newest).order_by(LiveEvent.id))]
    by_call: dict[str, list[FeedEvent]] = defaultdict(list)
    for event in rows:
        by_call[event.sip_call_id].append(event)
    open_calls = {call for call, events in by_call.items()
                  if events[0].kind == "ringing" and not any(e.kind == "ended" for e in events)}
    return [event for event in rows if event.sip_call_id in open_calls], newest
