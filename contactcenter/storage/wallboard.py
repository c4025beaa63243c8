"""What the supervisors' wallboard (实时看板) reads besides the team line's service level: each agent's current
state, today's talk times and the callbacks due now.

Every desk process, on whatever machine, writes the same tables (``agent_states``, ``calls``, ``callbacks``,
``team_calls``), so one read of them here is the whole floor as it stands. These are read-only queries; the
service level itself is :func:`contactcenter.storage.team_calls.service_level`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contactcenter.storage.models import Agent, AgentStateSpan, Call, Callback
from contactcenter.storage.team_calls import as_utc

#: The order the wallboard lists the states in.
STATE_ORDER = ("ready", "not_ready", "ringing", "on_call", "wrap_up", "offline")


@dataclass(frozen=True)
class AgentNow:
    """One agent as the wallboard shows it. ``since`` is when the current state began: for an agent with no
    open span (offline, its desk stopped) the end of its last span, ``None`` if it never had one."""

    extension: str
    name: str
    team: str
    state: str
    reason: str
    since: datetime | None


def agents_now(session: Session, not_agents: Collection[str] = ()) -> list[AgentNow]:
    """Every agent with an open state span (its current state), and every active agent of the ``agents``
    table without one as ``offline``; by state (:data:`STATE_ORDER`), then longest in that state first.
    ``not_agents``: extensions that store calls but are no person (the team line's overflow desk).

    An agent with two open spans (two desks wrote for it) is in the newer one's state, as
    :func:`contactcenter.storage.agent_states.record_state` would leave it."""
    current: dict[str, AgentStateSpan] = {}
    for span in session.scalars(
        select(AgentStateSpan)
        .where(AgentStateSpan.ended_at.is_(None))
        .order_by(AgentStateSpan.started_at, AgentStateSpan.id)
    ):
        current[span.agent_extension] = span  # the newest open span wins
    known = {
        extension: (name or "", team or "", bool(active))
        for extension, name, team, active in session.execute(
            select(Agent.extension, Agent.name, Agent.team, Agent.active)
        )
    }
    idle = sorted(
        ext for ext, (_, _, active) in known.items() if active and ext not in current and ext not in not_agents
    )
    last_end: dict[str, datetime] = {}
    if idle:
        last_end = {
            extension: ended
            for extension, ended in session.execute(
                select(AgentStateSpan.agent_extension, func.max(AgentStateSpan.ended_at))
                .where(AgentStateSpan.agent_extension.in_(idle))
                .group_by(AgentStateSpan.agent_extension)
            )
            if ended is not None
        }
    agents = []
    for extension, span in current.items():
        name, team, _ = known.get(extension, ("", "", True))
        agents.append(AgentNow(extension, name, team, span.state, span.reason, span.started_at))
    for extension in idle:
        name, team, _ = known[extension]
        agents.append(AgentNow(extension, name, team, "offline", "", last_end.get(extension)))

    def order(agent: AgentNow) -> tuple[int, bool, datetime, str]:
        rank = STATE_ORDER.index(agent.state) if agent.state in STATE_ORDER else len(STATE_ORDER)
        return rank, agent.since is None, agent.since or datetime.min.replace(tzinfo=UTC), agent.extension

    return sorted(agents, key=order)


@dataclass(frozen=True)
class HandleTime:
    """Talk time of the answered calls (answered → ended) that were invited in a period and have ended:
    ``calls`` of them, ``average_s`` seconds on average (``None`` when there were none). Wrap-up (话后处理)
    is not in it."""

    calls: int
    total_s: float

    @property
    def average_s(self) -> float | None:
        return self.total_s / self.calls if self.calls else None


def handle_time(session: Session, since: datetime, until: datetime) -> HandleTime:
    """Talk time of the calls agents handled that were invited in [since, until), inbound and outbound,
    answered and ended: not the overflow desk's (a recorded script, not an agent) nor recordings audited."""
    rows = session.execute(
        select(Call.answered_at, Call.ended_at).where(
            Call.invited_at >= as_utc(since),
            Call.invited_at < as_utc(until),
            Call.answered_at.is_not(None),
            Call.ended_at.is_not(None),
            Call.disposition == "completed",
        )
    ).all()
    lengths = [max(0.0, (ended - answered).total_seconds()) for answered, ended in rows]
    return HandleTime(calls=len(lengths), total_s=sum(lengths))


def callbacks_due(session: Session, now: datetime) -> int:
    """Callbacks due now and not being dialled: pending or due, with ``due_at`` not after ``now`` (what
    ``CallbackBook.counts`` calls overdue)."""
    return int(
        session.scalar(
            select(func.count(Callback.id)).where(
                Callback.state.in_(("pending", "due")), Callback.due_at <= as_utc(now)
            )
        )
        or 0
    )
