"""Agent states over time (就绪 / 小休 / 振铃 / 通话 / 话后处理 / 离线): the desk records every change as a span
in ``agent_states``, and the scorecards sum the spans into times per agent.

One open span per agent at most: recording a state closes the open one at the same instant, so the spans
of an agent tile its day with no gap and no overlap while its desk runs. A desk that dies (``kill -9``, a
power cut) leaves its last span open; the next desk closes it with :func:`close_open_spans` before it
records anything, at the last moment the store saw that desk working (see there), so a crash never turns
into hours of phantom ready time.

The sums are done by the database (GROUP BY), in seconds since 1970 computed by the database itself
(``julianday`` on SQLite, ``EXTRACT(EPOCH ...)`` on PostgreSQL), so a month of a busy desk is one small
query. SQLite keeps times to the millisecond in that computation; figures are rounded to the millisecond.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from types import MappingProxyType
from typing import Any, cast

from sqlalchemy import Float, String, and_, case, func, literal, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from contactcenter.storage.models import AGENT_STATES, Agent, AgentStateSpan, Call, LiveEvent

#: How the agent's page, the wallboard and the scorecards name each state.
AGENT_STATE_LABELS = {
    "ready": "就绪",
    "not_ready": "小休",
    "ringing": "振铃",
    "on_call": "通话中",
    "wrap_up": "话后处理",
    "offline": "离线",
}

#: States that count as working time, besides 小休 (``not_ready``), which is kept per reason. ``offline``
#: counts nowhere.
COUNTED_STATES = ("ready", "ringing", "on_call", "wrap_up")


def _column_length(name: str) -> int:
    """The length of one of ``agent_states``' text columns, read from the model so that the check here and
    the column cannot drift apart."""
    length = cast(String, AgentStateSpan.__table__.c[name].type).length
    assert length is not None
    return length


MAX_REASON = _column_length("reason")
MAX_EXTENSION = _column_length("agent_extension")


@dataclass(frozen=True)
class AgentTimes:
    """One agent's seconds in each state over a period. ``not_ready_s`` is per reason ("" when the desk gave
    none); ``offline`` is not counted anywhere.

    ``occupancy`` is the usual contact-centre figure, the share of the available time spent on customers:
    (talk + wrap-up) / (ready + ringing + talk + wrap-up), as a fraction from 0 to 1. It is ``None`` when the
    agent was never available in the period (the denominator is 0): a figure that does not exist is not
    shown as 0 % or 100 %. 小休 is outside it by definition, so it is not lowered by breaks.
    """

    extension: str
    ready_s: float = 0.0
    ringing_s: float = 0.0
    talk_s: float = 0.0
    wrap_up_s: float = 0.0
    not_ready_s: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def not_ready_total_s(self) -> float:
        return sum(self.not_ready_s.values())

    @property
    def available_s(self) -> float:
        """Ready, ringing, talking or wrapping up: the occupancy's denominator."""
        return self.ready_s + self.ringing_s + self.talk_s + self.wrap_up_s

    @property
    def logged_in_s(self) -> float:
        """Every state but offline (在线时长)."""
        return self.available_s + self.not_ready_total_s

    @property
    def occupancy(self) -> float | None:
        available = self.available_s
        return (self.talk_s + self.wrap_up_s) / available if available > 0 else None


# -------------------------------------------------------------------------------------------- recording


def _aware(at: datetime, name: str = "at") -> datetime:
    if not isinstance(at, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} is a naive datetime; pass an aware one (UTC or the desk's zone)")
    return at.astimezone(UTC)


def _checked_extension(extension: str) -> str:
    if not isinstance(extension, str) or not extension.strip():
        raise ValueError("an agent state needs the agent's extension")
    extension = extension.strip()
    if len(extension) > MAX_EXTENSION:
        raise ValueError(f"extension is {len(extension)} characters long; at most {MAX_EXTENSION}")
    return extension


def _checked(state: str, reason: str) -> str:
    """The reason as it will be stored; ValueError (not a database error at commit) for what cannot be."""
    if state not in AGENT_STATES:
        raise ValueError(f"unknown agent state {state!r}; one of {', '.join(AGENT_STATES)}")
    if not isinstance(reason, str):
        raise TypeError(f"reason must be text, not {type(reason).__name__}")
    reason = reason.strip()
    if reason and state != "not_ready":
        raise ValueError(f"only not_ready (小休) has a reason; {state} was given {reason[:40]!r}")
    if len(reason) > MAX_REASON:
        raise ValueError(f"not-ready reason is {len(reason)} characters long; at most {MAX_REASON}")
    if any(not character.isprintable() for character in reason):
        raise ValueError("not-ready reason contains control characters")
    return reason


def _open_spans(session: Session, extension: str) -> list[AgentStateSpan]:
    """The agent's open spans, oldest first (normally one; more only after two desks wrote for it). Locked
    on PostgreSQL, so two processes changing the same agent's state take turns."""
    return list(
        session.scalars(
            select(AgentStateSpan)
            .where(AgentStateSpan.agent_extension == extension, AgentStateSpan.ended_at.is_(None))
            .order_by(AgentStateSpan.started_at, AgentStateSpan.id)
            .with_for_update()
        )
    )


def _close_older(spans: list[AgentStateSpan]) -> None:
    """Close every open span but the newest where the next one starts: two open spans would overlap."""
    for older, newer in pairwise(spans):
        older.ended_at = max(older.started_at, newer.started_at)


def record_state(session: Session, extension: str, state: str, reason: str = "", *, at: datetime) -> AgentStateSpan:
    """The agent is in ``state`` (with ``reason`` for not_ready) from ``at``: close its open span at ``at``
    and open a new one, in the caller's session (the caller commits). The span in force is returned.
    A desk that starts calls :func:`close_open_spans` first: an open span found here is closed at ``at``.

    The same state and reason again is not a change: the open span is returned and nothing is written, so
    the desk may repeat itself (a re-sent event, a page reload) without splitting spans.

    ``at`` before the open span's start (the clock was stepped back) is taken as that start: the open span
    ends with no length rather than a negative one, and the spans still never overlap.

    Refused with ValueError before anything is written: a state not in AGENT_STATES, a reason on any state
    but not_ready, a reason longer than the column (32 characters) or with control characters, a blank or
    too long extension, a naive ``at``.
    """
    extension = _checked_extension(extension)
    reason = _checked(state, reason)
    at = _aware(at)
    spans = _open_spans(session, extension)
    _close_older(spans)
    current = spans[-1] if spans else None
    if current is not None:
        if current.state == state and current.reason == reason:
            return current
        at = max(at, current.started_at)
        current.ended_at = at
    span = AgentStateSpan(agent_extension=extension, state=state, reason=reason, started_at=at, ended_at=None)
    session.add(span)
    session.flush()
    return span


def last_seen(session: Session, extension: str, until: datetime) -> datetime | None:
    """The latest moment, not after ``until``, at which the store shows a desk working for this agent: an
    event of its live view (written as its calls go), the times of its stored calls, the end of a span."""
    until = _aware(until, "until")
    candidates = [
        session.scalar(
            select(func.max(LiveEvent.at)).where(LiveEvent.agent_extension == extension, LiveEvent.at <= until)
        ),
        session.scalar(
            select(func.max(AgentStateSpan.ended_at)).where(
                AgentStateSpan.agent_extension == extension, AgentStateSpan.ended_at <= until
            )
        ),
    ]
    for column in (Call.invited_at, Call.answered_at, Call.ended_at):
        candidates.append(
            session.scalar(
                select(func.max(column))
                .join(Agent, Agent.id == Call.agent_id)
                .where(Agent.extension == extension, column <= until)
            )
        )
    found = [moment for moment in candidates if moment is not None]
    return max(found) if found else None


def close_open_spans(
    session: Session, extension: str, at: datetime, *, clean_shutdown: bool = False
) -> list[AgentStateSpan]:
    """Close the agent's open spans (in the caller's session; the caller commits); the spans closed.

    By default this is the start-up rule (``at`` the start time): an open span found then was left by a
    desk that died without closing it (``kill -9``, a power cut), and nobody knows when the agent stopped.
    Closing it at the start time would count the whole outage (a night, a weekend) as ready or 小休. It is
    closed instead at the last moment the store saw a desk working for that agent (:func:`last_seen`: a
    live-view event, a stored call's times, a span's end), never later than ``at``, and at the span's own
    start when nothing later is known: the span then has no length, because nothing shows the agent was in
    it at all. The time from that moment to the new start counts nowhere (in no state, not as logged in),
    which is all that is known of it. This errs short, never long: a desk that died after a quiet hour of
    就绪 loses that hour rather than inventing a night.

    ``clean_shutdown=True``: the desk itself is stopping and knows the agent was there until ``at``, so the
    open span ends at ``at``. (Recording ``offline`` at shutdown does the same and also marks the gap.)
    """
    extension = _checked_extension(extension)
    at = _aware(at)
    spans = _open_spans(session, extension)
    if not spans:
        return []
    _close_older(spans)
    current = spans[-1]
    end = at
    if not clean_shutdown:
        seen = last_seen(session, extension, at)
        end = min(seen, at) if seen is not None else current.started_at
    current.ended_at = max(end, current.started_at)
    session.flush()
    return spans


# -------------------------------------------------------------------------------------------- summing


class _epoch(FunctionElement[float]):  # lower case, as SQLAlchemy names its SQL functions
    """Seconds since 1970 of a stored UTC time, computed by the database."""

    type = Float()
    name = "epoch"
    inherit_cache = True


@compiles(_epoch, "sqlite")
def _epoch_sqlite(element: _epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # Times are stored as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC; julianday counts days (to the millisecond).
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


@compiles(_epoch, "postgresql")
def _epoch_postgresql(element: _epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS DOUBLE PRECISION)"


def _smaller(a: ColumnElement[float], b: ColumnElement[float]) -> ColumnElement[float]:
    return case((a < b, a), else_=b)


def _larger(a: ColumnElement[float], b: ColumnElement[float]) -> ColumnElement[float]:
    return case((a > b, a), else_=b)


def state_durations(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    extensions: Sequence[str] | None = None,
    now: datetime | None = None,
) -> dict[str, AgentTimes]:
    """Each agent's times over [``start``, ``end``), by extension: every span clipped to the period, an open
    span counted up to ``now`` (default: the present). Agents with no counted time in the period are left
    out; ``extensions`` limits the agents (None: all, empty: none).

    An open span of a desk that died and has not been restarted still counts up to now: nothing in the
    store can tell it from an agent who is really still in that state until the next desk closes it.
    """
    start, end = _aware(start, "start"), _aware(end, "end")
    now = _aware(now, "now") if now is not None else datetime.now(UTC)
    if end < start:
        raise ValueError("end is before start")
    if extensions is not None and not extensions:
        return {}
    lo = literal(start.timestamp(), Float)
    hi = literal(end.timestamp(), Float)
    open_until = literal(min(now, end).timestamp(), Float)
    span = AgentStateSpan
    begins = _larger(_epoch(span.started_at), lo)
    ends = case((span.ended_at.is_(None), open_until), else_=_smaller(_epoch(span.ended_at), hi))
    length = ends - begins
    seconds = func.sum(case((length > 0, length), else_=0.0))
    where = [
        span.state.in_((*COUNTED_STATES, "not_ready")),
        span.started_at < end,
        or_(span.ended_at.is_(None), span.ended_at > start),
    ]
    if extensions is not None:
        where.append(span.agent_extension.in_(list(extensions)))
    query = (
        select(span.agent_extension, span.state, span.reason, seconds)
        .where(and_(*where))
        .group_by(span.agent_extension, span.state, span.reason)
    )
    found: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COUNTED_STATES, 0.0))
    not_ready: dict[str, dict[str, float]] = defaultdict(dict)
    for extension, state, reason, total in session.execute(query):
        total = round(float(total or 0.0), 3)
        if total <= 0:
            continue
        if state == "not_ready":
            not_ready[extension][reason] = not_ready[extension].get(reason, 0.0) + total
        else:
            found[extension][state] += total
    times = {}
    for extension in sorted(set(found) | set(not_ready)):
        states = found[extension]
        times[extension] = AgentTimes(
            extension=extension,
            ready_s=states["ready"],
            ringing_s=states["ringing"],
            talk_s=states["on_call"],
            wrap_up_s=states["wrap_up"],
            not_ready_s=MappingProxyType(dict(not_ready[extension])),
        )
    return times
