"""The live view's feed: what the desk hears on calls in progress, written to ``live_events`` as it happens,
and read back by the console for supervisors.

The writer is a built-in plugin (``live_view``, in ``hooks.host.BUILT_IN_PLUGINS``), registered by every desk
like the ``callbacks`` one: it gets the plugin isolation (its own worker, a time limit), so a slow or absent
database never holds up a call, and every desk process, on any machine, writes through the plugin API
(``api.add_live_event``) to the one table every console process reads with the functions below. Text is stored
as published, so with ``[speech] redact_numbers`` the numbers are already masked.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from contactcenter import hookimpl
from contactcenter.hooks.api import PluginAPI
from contactcenter.records import (
    CHECK_LABELS,
    CallRecord,
    ComplianceReport,
    RuleHitRecord,
    UtteranceRecord,
)
from contactcenter.storage.models import LiveEvent

NAME = "live_view"
ALERT_KINDS = ("violation", "missing")


def _write(api: PluginAPI, call: CallRecord, kind: str, data: dict[str, Any], prune_hours: int = 0) -> None:
    """Add one event; with ``prune_hours``, also drop the events older than that, in the same transaction
    (the feed is for the floor now, not an archive: the store has the calls)."""
    api.add_live_event(call, kind, data, keep_hours=prune_hours)


@hookimpl
def call_ringing(call: CallRecord, api: PluginAPI) -> None:
    _write(
        api,
        call,
        "ringing",
        {
            "remote_number": call.remote_number,
            "caller_name": call.caller_name,
            "direction": call.direction,
            "invited_at": call.invited_at.isoformat(),
        },
    )


@hookimpl
def call_answered(call: CallRecord, api: PluginAPI) -> None:
    _write(
        api,
        call,
        "answered",
        {"rings": call.rings_before_answer, "answered_at": call.answered_at.isoformat() if call.answered_at else None},
    )


@hookimpl
def utterance(call: CallRecord, utterance: UtteranceRecord, api: PluginAPI) -> None:
    _write(
        api,
        call,
        "utterance",
        {"leg": utterance.leg, "start_s": utterance.start_s, "end_s": utterance.end_s, "text": utterance.text},
    )


@hookimpl
def rule_hit(call: CallRecord, hit: RuleHitRecord, api: PluginAPI) -> None:
    if hit.kind in ALERT_KINDS:
        _write(
            api,
            call,
            "alert",
            {
                "rule_id": hit.rule_id,
                "finding": hit.kind,
                "severity": hit.severity,
                "leg": hit.leg,
                "at_s": hit.at_s,
                "matched_text": hit.matched_text,
            },
        )


@hookimpl
def call_ended(call: CallRecord, transcript: list[UtteranceRecord], report: ComplianceReport, api: PluginAPI) -> None:
    _write(
        api,
        call,
        "ended",
        {
            "call_id": call.id,
            "disposition": call.disposition,
            "score": report.score,
            "check": CHECK_LABELS[report.check],  # 未检查 / 部分检查: a call without a score was not checked
            "hung_up_first": call.hung_up_first,
            "failed_rules": [r.rule_id for r in report.failed],
        },
        prune_hours=api.settings.web.live_keep_hours,
    )


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


class FeedCursor:
    """Where one live view is in the feed: the newest id it has been sent, and the ids below that it has not
    seen yet because they were not committed when it read past them.

    Ids are handed out when a desk inserts an event, but become visible when it commits, and two desks on
    PostgreSQL can commit out of id order: id 11 can be read while id 10 is still in its transaction.
    Following ``id > last`` alone would skip 10 for good. The cursor keeps each skipped id and asks for it
    again on every read for ``gap_wait_s`` seconds; an id still missing then was rolled back (or its event
    was lost with its desk) and is forgotten.
    """

    MAX_GAPS = 1000  # far more than the events all desks can have in flight at once; bounds the query

    def __init__(self, last_id: int, gap_wait_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.last_id = last_id
        self.gap_wait_s = gap_wait_s
        self._clock = clock
        self._gaps: dict[int, float] = {}  # id → when it was first found missing

    @classmethod
    def following(cls, session: Session, newest: int, **options: Any) -> FeedCursor:
        """A cursor for a view that has had every event up to ``newest`` that was committed (a snapshot, or
        a stream it reconnects to): the ids up to it that are not in the table yet may still be in a desk's
        transaction, so they are waited for like any gap."""
        cursor = cls(newest, **options)
        present = set(
            session.scalars(select(LiveEvent.id).where(LiveEvent.id > newest - cls.MAX_GAPS, LiveEvent.id <= newest))
        )
        now = cursor._clock()
        cursor._gaps = {gap: now for gap in range(max(1, newest - cls.MAX_GAPS + 1), newest + 1) if gap not in present}
        return cursor

    @property
    def gaps(self) -> list[int]:
        return sorted(self._gaps)

    def read(self, session: Session, limit: int = 500) -> list[FeedEvent]:
        """The events this view has not been sent yet, oldest first: late commits below ``last_id``, then
        the new ones."""
        now = self._clock()
        self._gaps = {gap: since for gap, since in self._gaps.items() if now - since < self.gap_wait_s}
        wanted = LiveEvent.id > self.last_id
        if self._gaps:
            wanted = or_(wanted, LiveEvent.id.in_(self._gaps))
        events = [
            _event(row) for row in session.scalars(select(LiveEvent).where(wanted).order_by(LiveEvent.id).limit(limit))
        ]
        for event in events:
            if event.id in self._gaps:
                del self._gaps[event.id]
            elif event.id > self.last_id:
                first_gap = max(self.last_id + 1, event.id - self.MAX_GAPS)  # older ones are long gone
                self._gaps.update((gap, now) for gap in range(first_gap, event.id))
                self.last_id = event.id
        if len(self._gaps) > self.MAX_GAPS:
            self._gaps = dict(sorted(self._gaps.items())[-self.MAX_GAPS :])
        return events


def calls_in_progress(session: Session, within: timedelta, **cursor_options: Any) -> tuple[list[FeedEvent], FeedCursor]:
    """Every event so far of the calls that started within ``within`` and have not ended, oldest first, and
    the cursor a new live view follows the feed with from there.

    The cursor is made before the events are read, and the events it is still waiting for are left out
    of the snapshot: an event committed in between comes once, through the stream."""
    since = datetime.now(UTC) - within
    newest = session.scalar(select(LiveEvent.id).order_by(LiveEvent.id.desc()).limit(1)) or 0
    cursor = FeedCursor.following(session, newest, **cursor_options)
    wanted = [LiveEvent.at >= since, LiveEvent.id <= newest]  # later ones come through the stream
    if cursor.gaps:
        wanted.append(LiveEvent.id.not_in(cursor.gaps))
    rows = [_event(row) for row in session.scalars(select(LiveEvent).where(*wanted).order_by(LiveEvent.id))]
    by_call: dict[str, list[FeedEvent]] = defaultdict(list)
    for event in rows:
        by_call[event.sip_call_id].append(event)
    open_calls = {
        call
        for call, events in by_call.items()
        if events[0].kind == "ringing" and not any(e.kind == "ended" for e in events)
    }
    return [event for event in rows if event.sip_call_id in open_calls], cursor
