"""Calls to the team number, one row each however many desks they rang, and the service level they add up to.

Every desk a team call reaches writes to the same row (keyed by the caller's Call-ID, which Kamailio keeps on
every branch it forks):

- :func:`note_arrival` when the INVITE arrives (the first desk adds the row, the others find it);
- :func:`claim` when an agent's desk is about to answer: it takes the empty outcome in one UPDATE, so of two
  desks that answer in the same instant exactly one wins, on SQLite and PostgreSQL alike (the loser's UPDATE
  finds the outcome taken and changes nothing); :func:`release` gives it back if the answer then fails;
- :func:`step_aside` when the caller's phone ended the winner's answer within seconds: it may have been the
  extra of two answers that crossed, and the other desk's claim (:func:`claim`) can then take the call;
- :func:`overflow_took` when the overflow desk answers (the registrar has decided: no race to win);
- :func:`note_ring_ended` when an agent desk's ringing stops without an answer (the caller hung up, or the
  registrar moved the call on to the overflow desk);
- :func:`settle_overflow` when the overflow desk knows whether the caller asked for a callback.

Each team call ends in exactly one :data:`OUTCOMES` (see :func:`outcome_of`); calls still ringing are
``ringing``. A call nobody answered and no overflow desk took is *abandoned* once :data:`OVERFLOW_GRACE`
has passed since its ringing stopped: the overflow desk answers at once, so by then it would have claimed it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from contactcenter.storage.database import rows_changed
from contactcenter.storage.models import TeamCall

#: How every team call ends, in the order reports list them.
OUTCOMES = ("answered", "overflow_callback", "overflow_no_callback", "abandoned", "unknown")
#: After the agents' ringing stops, the overflow desk takes the call within a second; a call it has not
#: taken after this long was abandoned by the caller.
OVERFLOW_GRACE = timedelta(seconds=10)
#: A call that is neither answered nor ended this long after it arrived was lost track of (every desk it rang
#: died, or no overflow desk was registered): it is counted as ``unknown``, never as waiting for ever. The
#: registrar gives up on a team call well within this (agents' ring time plus 5 s for the overflow desk).
LOST_AFTER = timedelta(minutes=2)
MAX_CALL_ID = 255


def as_utc(at: datetime) -> datetime:
    """``at`` in UTC; ValueError for a time without its time zone (it could be any)."""
    if at.tzinfo is None:
        raise ValueError("times must carry their time zone")
    return at.astimezone(UTC)


@dataclass(frozen=True)
class TeamCallSeen:
    """A team call as a desk sees it arrive: the caller's Call-ID (the same at every desk), the team number,
    who calls, and since when they have been waiting."""

    sip_call_id: str
    team_number: str
    remote_number: str
    arrived_at: datetime


def note_arrival(session: Session, seen: TeamCallSeen) -> None:
    """A team call has reached a desk: add its row unless another desk already did (no error either way)."""
    values = dict(
        sip_call_id=seen.sip_call_id[:MAX_CALL_ID],
        team_number=seen.team_number[:16],
        remote_number=seen.remote_number[:64],
        arrived_at=as_utc(seen.arrived_at),
        answered_by="",
    )
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(TeamCall).values(**values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(TeamCall).values(**values).on_conflict_do_nothing())
    else:  # another database: best effort, the claim below still decides
        if session.scalar(select(TeamCall.id).where(TeamCall.sip_call_id == values["sip_call_id"])) is None:
            session.add(TeamCall(**values))
    session.flush()


def claim(session: Session, seen: TeamCallSeen, extension: str, at: datetime, *, answered: bool = False) -> bool:
    """An agent's desk answers the call: True if it won it, False if another desk already had. The row is
    added first if no desk has yet (its arrival may not be written), so a claim never fails for want of it.
    A desk that has already ``answered`` (its claim came late) can also take a call whose answerer stepped
    aside (:func:`step_aside`); a desk still about to answer cannot, since the caller already has an answer.
    The caller commits."""
    note_arrival(session, seen)
    stepped_aside = and_(TeamCall.outcome == "answered", TeamCall.answered_by == "")
    open_to_claim = or_(TeamCall.outcome.is_(None), stepped_aside) if answered else TeamCall.outcome.is_(None)
    changed = rows_changed(
        session,
        update(TeamCall)
        .where(TeamCall.sip_call_id == seen.sip_call_id[:MAX_CALL_ID], open_to_claim)
        .values(outcome="answered", answered_by=extension[:64], answered_at=as_utc(at)),
    )
    return changed == 1


def _answered_here(sip_call_id: str, extension: str) -> tuple[ColumnElement[bool], ...]:
    """The row of this call while the desk at ``extension`` has it answered."""
    return (
        TeamCall.sip_call_id == sip_call_id[:MAX_CALL_ID],
        TeamCall.outcome == "answered",
        TeamCall.answered_by == extension[:64],
    )


def step_aside(session: Session, sip_call_id: str, extension: str) -> None:
    """The caller's phone ended this desk's answer within seconds of it. When two desks' answers crossed
    (the store could not decide in time), RFC 3261 13.2.2.4 has the phone keep one and end the other, and it
    may keep the desk that lost the claim. The call stays answered (no caller is shown waiting), without an
    answerer, so that the other desk's :func:`claim` can take it; if none does, this desk claims it back."""
    session.execute(update(TeamCall).where(*_answered_here(sip_call_id, extension)).values(answered_by=""))


def answerer(session: Session, sip_call_id: str) -> str | None:
    """The extension that has the answered call, "" while its answerer has stepped aside, None if it is not
    answered (or unknown)."""
    return session.scalar(
        select(TeamCall.answered_by).where(
            TeamCall.sip_call_id == sip_call_id[:MAX_CALL_ID], TeamCall.outcome == "answered"
        )
    )


def release(session: Session, sip_call_id: str, extension: str) -> None:
    """The desk that claimed the call could not answer it after all (the caller hung up, or the registrar
    moved the call on in the same instant): the outcome is open again, unless something else took it since."""
    session.execute(
        update(TeamCall)
        .where(*_answered_here(sip_call_id, extension))
        .values(outcome=None, answered_by="", answered_at=None)
    )


def overflow_took(session: Session, seen: TeamCallSeen, extension: str, at: datetime) -> None:
    """The overflow desk answered the call. The registrar only sends it calls no agent took, so this is the
    call's outcome whatever an agent's desk claimed in the meantime and could not answer."""
    note_arrival(session, seen)
    session.execute(
        update(TeamCall)
        .where(TeamCall.sip_call_id == seen.sip_call_id[:MAX_CALL_ID])
        .values(outcome="overflow", answered_by=extension[:64], answered_at=as_utc(at))
    )


def note_ring_ended(session: Session, sip_call_id: str, at: datetime) -> None:
    """An agent desk stopped ringing without answering (the first such moment is kept, whatever happened to
    the call next: the overflow desk may have taken it already, on loopback within the same millisecond)."""
    session.execute(
        update(TeamCall)
        .where(TeamCall.sip_call_id == sip_call_id[:MAX_CALL_ID], TeamCall.ring_ended_at.is_(None))
        .values(ring_ended_at=as_utc(at))
    )


def settle_overflow(session: Session, sip_call_id: str, callback_id: int | None) -> None:
    """The overflow desk's call is over: with the callback the caller asked for, or without."""
    session.execute(
        update(TeamCall)
        .where(TeamCall.sip_call_id == sip_call_id[:MAX_CALL_ID], TeamCall.outcome == "overflow")
        .values(outcome="overflow_callback" if callback_id else "overflow_no_callback", callback_id=callback_id)
    )


def outcome_of(call: TeamCall, now: datetime) -> str:
    """How the call ended (one of :data:`OUTCOMES`), or ``ringing`` while that is not known yet. An overflow
    call still in progress counts as without callback until the caller presses a key."""
    if call.outcome == "answered":
        return "answered"
    if call.outcome in ("overflow", "overflow_no_callback"):
        return "overflow_no_callback"
    if call.outcome == "overflow_callback":
        return "overflow_callback"
    if call.ring_ended_at is not None:
        return "abandoned" if now - call.ring_ended_at >= OVERFLOW_GRACE else "ringing"
    return "unknown" if now - call.arrived_at >= LOST_AFTER else "ringing"


@dataclass(frozen=True)
class ServiceLevel:
    """The team's calls over a period. Rates are over the calls whose outcome is known (``ended``); each is
    ``None`` when there were none, never a made-up 0 % or 100 %."""

    calls: int
    ringing: int
    answered: int
    answered_in_time: int  # by an agent within three rings (三声接听)
    overflow_callback: int
    overflow_no_callback: int
    abandoned: int
    unknown: int
    longest_wait_s: float | None  # of the calls ringing now

    @property
    def ended(self) -> int:
        return self.calls - self.ringing

    def rate(self, count: int) -> float | None:
        return count / self.ended if self.ended else None

    @property
    def service_level(self) -> float | None:
        """Share of ended team calls answered by an agent within three rings."""
        return self.rate(self.answered_in_time)

    @property
    def overflow(self) -> int:
        return self.overflow_callback + self.overflow_no_callback

    def figures(self) -> dict[str, int | float | None]:
        """The counts, and each outcome's share of the ended calls in percent (None when none has ended), as
        the wallboard, the scorecards and their exports show them."""
        counts = {
            "calls": self.calls,
            "ended": self.ended,
            "ringing": self.ringing,
            "answered": self.answered,
            "answered_in_time": self.answered_in_time,
            "overflow": self.overflow,
            "overflow_callback": self.overflow_callback,
            "overflow_no_callback": self.overflow_no_callback,
            "abandoned": self.abandoned,
            "unknown": self.unknown,
        }

        def percent(count: int) -> float | None:
            return round(100.0 * count / self.ended, 1) if self.ended else None

        rates = {
            "service_level": percent(self.answered_in_time),
            **{
                f"{name}_rate": percent(counts[name])
                for name in (
                    "answered",
                    "overflow",
                    "overflow_callback",
                    "overflow_no_callback",
                    "abandoned",
                    "unknown",
                )
            },
        }
        return {**counts, **rates}


def service_level(
    session: Session, since: datetime, until: datetime, three_rings_s: float, now: datetime | None = None
) -> ServiceLevel:
    """The team's service level for calls that arrived in [since, until)."""
    now = as_utc(now or datetime.now(UTC))
    rows = session.scalars(
        select(TeamCall).where(TeamCall.arrived_at >= as_utc(since), TeamCall.arrived_at < as_utc(until))
    ).all()
    counts: Counter[str] = Counter()
    in_time = 0
    longest: float | None = None
    for row in rows:
        outcome = outcome_of(row, now)
        counts[outcome] += 1
        if outcome == "answered" and row.answered_at is not None:
            in_time += (row.answered_at - row.arrived_at).total_seconds() <= three_rings_s
        if outcome == "ringing":
            waited = (now - row.arrived_at).total_seconds()
            longest = waited if longest is None else max(longest, waited)
    return ServiceLevel(
        calls=len(rows),
        ringing=counts["ringing"],
        answered=counts["answered"],
        answered_in_time=in_time,
        overflow_callback=counts["overflow_callback"],
        overflow_no_callback=counts["overflow_no_callback"],
        abandoned=counts["abandoned"],
        unknown=counts["unknown"],
        longest_wait_s=longest,
    )


def ringing_now(session: Session, now: datetime | None = None) -> list[TeamCall]:
    """Team calls still ringing (no outcome yet), oldest first: for the wallboard."""
    now = as_utc(now or datetime.now(UTC))
    rows = session.scalars(
        select(TeamCall)
        .where(TeamCall.outcome.is_(None), TeamCall.arrived_at >= now - LOST_AFTER)
        .order_by(TeamCall.arrived_at)
    ).all()
    return [row for row in rows if outcome_of(row, now) == "ringing"]


def find(session: Session, sip_call_id: str) -> TeamCall | None:
    return session.scalar(select(TeamCall).where(TeamCall.sip_call_id == sip_call_id[:MAX_CALL_ID]))
