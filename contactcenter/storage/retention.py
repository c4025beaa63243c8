"""The retention purge: personal data older than ``[retention]`` allows is removed, every day.

Three periods, each counted back from now (0 keeps that data for ever):

- ``recordings_days``: the call's WAV file (and recording files no call refers to, by their file time);
- ``transcripts_days``: the recognised lines, and the words a finding quoted;
- ``personal_days``: everything else that names the caller: the call's number, purpose, notes, resolution
  and customer link (and its recording and transcript if still there); team-line numbers; closed tickets'
  caller details; finished callbacks' numbers and reasons; customers with no call, ticket or callback left
  that is newer or still open; the customers' change history; plugin outbox messages and undelivered events.

Scores, verdicts, findings (without their quoted words), survey scores and every count stay. The work is
done in batches of :data:`BATCH` calls, each its own short transaction, so a desk storing a call is never
kept waiting long (SQLite has one writer). A dry run does the same work in transactions that are rolled back
and deletes no file, so its figures are the purge's own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from contactcenter.settings import RetentionSettings
from contactcenter.storage.database import Database, rows_changed
from contactcenter.storage.models import (
    Call,
    Callback,
    Customer,
    CustomerChange,
    DataRemoval,
    OutboxMessage,
    RuleHit,
    TeamCall,
    Ticket,
    UndeliveredEvent,
    Utterance,
)
from contactcenter.storage.personal_data import (
    CALLBACK_PERSONAL,
    TICKET_PERSONAL,
    Tally,
    delete_file,
    remove_call_data,
)

BATCH = 200
CLOSED_TICKETS = ("resolved", "closed")
FINISHED_CALLBACKS = ("done", "failed", "cancelled")
RECORDINGS_FOLDER = "recordings"


@dataclass(frozen=True)
class Cutoffs:
    """The moment before which each kind of data goes (None: kept for ever). Personal data includes the
    recording and the transcript, so theirs is never later than its."""

    recordings: datetime | None
    transcripts: datetime | None
    personal: datetime | None

    @classmethod
    def at(cls, now: datetime, policy: RetentionSettings) -> Cutoffs:
        def before(*days: int) -> datetime | None:
            kept = [d for d in days if d > 0]
            return now - timedelta(days=min(kept)) if kept else None

        return cls(
            recordings=before(policy.recordings_days, policy.personal_days),
            transcripts=before(policy.transcripts_days, policy.personal_days),
            personal=before(policy.personal_days),
        )


def _call_batches(
    database: Database, condition: ColumnElement[bool], dry_run: bool, work: Callable[[Session, list[int]], None]
) -> None:
    """Run ``work`` on the ids of the calls that meet ``condition``, :data:`BATCH` at a time in id order,
    each batch in its own transaction (rolled back in a dry run)."""
    last_id = 0
    while True:
        with database.rehearsal() if dry_run else database.session() as session:
            ids = list(
                session.scalars(
                    select(Call.id).where(condition, Call.id > last_id).order_by(Call.id).limit(BATCH)
                ).all()
            )
            if not ids:
                return
            work(session, ids)
            last_id = ids[-1]


def purge(
    database: Database,
    policy: RetentionSettings,
    data_dir: Path,
    now: datetime,
    *,
    dry_run: bool = False,
    done_by: str = "",
) -> Tally:
    """Remove what is older than ``policy`` allows at ``now``; with ``dry_run``, only count it. A real purge
    is recorded in ``data_removals`` (even when it found nothing: "the purge ran" is worth knowing)."""
    cut = Cutoffs.at(now, policy)
    tally = Tally()
    due: list[ColumnElement[bool]] = []
    if cut.recordings is not None:
        due.append(and_(Call.invited_at < cut.recordings, Call.recording_path != ""))
    if cut.transcripts is not None:
        said = exists().where(Utterance.call_id == Call.id)
        quoted = exists().where(RuleHit.call_id == Call.id, RuleHit.matched_text != "")
        due.append(and_(Call.invited_at < cut.transcripts, or_(said, quoted)))
    if cut.personal is not None:
        named = or_(
            Call.remote_number != "",
            Call.purpose != "",
            Call.notes != "",
            Call.resolution != "",
            Call.customer_id.is_not(None),
        )
        due.append(and_(Call.invited_at < cut.personal, named))

    def work(session: Session, ids: list[int]) -> None:
        by_parts: dict[tuple[str, ...], list[int]] = {}
        for call_id, invited_at in session.execute(select(Call.id, Call.invited_at).where(Call.id.in_(ids))):
            parts = tuple(
                part
                for part, cutoff in (
                    ("recording", cut.recordings),
                    ("transcript", cut.transcripts),
                    ("personal", cut.personal),
                )
                if cutoff is not None and invited_at < cutoff
            )
            by_parts.setdefault(parts, []).append(call_id)
        for parts, call_ids in by_parts.items():
            remove_call_data(session, call_ids, parts, "retention", data_dir, tally, dry_run=dry_run)

    if due:
        _call_batches(database, or_(*due), dry_run, work)  # one pass: a call is counted once, dry run or not
    if cut.recordings is not None:
        _orphan_recordings(database, Path(data_dir), cut.recordings, tally, dry_run)
    if cut.personal is not None:
        with database.rehearsal() if dry_run else database.session() as session:
            _purge_other_personal(session, cut.personal, tally)
    if not dry_run:
        with database.session() as session:
            session.add(DataRemoval(at=now, reason="retention", done_by=done_by, counts=tally.as_dict()))
    return tally


def _purge_other_personal(session: Session, cutoff: datetime, tally: Tally) -> None:
    tally.add(
        "team_calls",
        rows_changed(
            session,
            update(TeamCall).where(TeamCall.arrived_at < cutoff, TeamCall.remote_number != "").values(remote_number=""),
        ),
    )
    tally.add(
        "tickets",
        rows_changed(
            session,
            update(Ticket)
            .where(
                Ticket.created_at < cutoff,
                Ticket.status.in_(CLOSED_TICKETS),
                or_(
                    Ticket.caller_name != "",
                    Ticket.caller_phone != "",
                    Ticket.purpose != "",
                    Ticket.summary != "",
                    Ticket.resolution != "",
                    Ticket.escalation_note != "",
                    Ticket.customer_id.is_not(None),
                ),
            )
            .values(TICKET_PERSONAL)
            .execution_options(synchronize_session=False),
        ),
    )
    tally.add(
        "callbacks",
        rows_changed(
            session,
            update(Callback)
            .where(
                Callback.created_at < cutoff,
                Callback.state.in_(FINISHED_CALLBACKS),
                or_(
                    Callback.phone != "", Callback.reason != "", Callback.note != "", Callback.customer_id.is_not(None)
                ),
            )
            .values(CALLBACK_PERSONAL)
            .execution_options(synchronize_session=False),
        ),
    )
    tally.add(
        "customer_changes", rows_changed(session, delete(CustomerChange).where(CustomerChange.changed_at < cutoff))
    )
    # in touch: a call since the cutoff, a ticket or callback that is newer or still open (judged by the rows'
    # own age and state, not by their link, which a dry run has not cleared)
    still_in_touch = or_(
        exists().where(Call.customer_id == Customer.id, Call.invited_at >= cutoff),
        exists().where(
            Ticket.customer_id == Customer.id, or_(Ticket.created_at >= cutoff, Ticket.status.not_in(CLOSED_TICKETS))
        ),
        exists().where(
            Callback.customer_id == Customer.id,
            or_(Callback.created_at >= cutoff, Callback.state.not_in(FINISHED_CALLBACKS)),
        ),
    )
    idle = session.scalars(
        select(Customer.id).where(func.coalesce(Customer.updated_at, Customer.created_at) < cutoff, ~still_in_touch)
    ).all()
    if idle:
        session.execute(update(Call).where(Call.customer_id.in_(idle)).values(customer_id=None))
        session.execute(delete(CustomerChange).where(CustomerChange.customer_id.in_(idle)))
        tally.add("customers", rows_changed(session, delete(Customer).where(Customer.id.in_(idle))))
    tally.add("outbox_messages", rows_changed(session, delete(OutboxMessage).where(OutboxMessage.created_at < cutoff)))
    tally.add(
        "undelivered_events",
        rows_changed(session, delete(UndeliveredEvent).where(UndeliveredEvent.created_at < cutoff)),
    )


def _orphan_recordings(database: Database, data_dir: Path, cutoff: datetime, tally: Tally, dry_run: bool) -> None:
    """Recording files older than the cutoff that no call names (a desk that crashed before storing the
    call, a row deleted by hand): personal data with nothing left to purge them by."""
    folder = data_dir / RECORDINGS_FOLDER
    if not folder.is_dir():
        return
    with database.session() as session:
        named = {Path(p).name for p in session.scalars(select(Call.recording_path).where(Call.recording_path != ""))}
    limit = cutoff.timestamp()
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                old = entry.is_file() and entry.stat().st_mtime < limit
            except OSError:
                continue
            if old and entry.name not in named:
                delete_file(Path(entry.path), tally, dry_run, what="orphan_recordings")


def last_purge(session: Session) -> datetime | None:
    """When the last retention purge ran (None: never)."""
    return session.scalar(select(func.max(DataRemoval.at)).where(DataRemoval.reason == "retention"))


def removals(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    """The latest purges and erasures, newest first, as rows for a table."""
    rows = session.scalars(select(DataRemoval).order_by(DataRemoval.at.desc(), DataRemoval.id.desc()).limit(limit))
    return [
        {"at": r.at, "reason": r.reason, "done_by": r.done_by, "reference": r.reference, **(r.counts or {})}
        for r in rows
    ]
