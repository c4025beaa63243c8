"""The supervisors' wallboard (实时看板): the agents by state, the team line's calls ringing now, today's
service level, today's average talk time and the callbacks due, kept up to date in the browser.

Several desk processes on different machines write the state spans, team calls, calls and callbacks to the
one database, and nothing in those tables announces a change (the live view's ``live_events`` carry calls,
not states), so the stream re-reads the summary every :data:`POLL_SECONDS` and sends it only when it has
changed. Re-reading also catches what changes with time alone: a call whose ringing stopped counts as
abandoned once the overflow grace has passed, and a new day starts a new service level.

What ticks by itself (time in state, how long a call has waited) is sent as the moment it started, with the
server's clock (``now``) so the browser can count on from there; those ticking figures are also given in
seconds for programs (``in_state_s``, ``wait_s``, ``longest_wait_s``) but do not count as a change.

No `from __future__ import annotations`: FastAPI reads the route signatures.
"""

import asyncio
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.orm import Session

from contactcenter.settings import Settings
from contactcenter.storage.database import Database
from contactcenter.storage.team_calls import ringing_now, service_level
from contactcenter.storage.wallboard import STATE_ORDER, agents_now, callbacks_due, handle_time
from contactcenter.vocabulary import Vocabulary
from contactcenter.web.auth import SignedIn
from contactcenter.web.guards import COOKIE, TEMPLATES, Guards
from contactcenter.web.queries import mask_phone

POLL_SECONDS = 2.0
SESSION_CHECK_POLLS = 15  # an expired or ended session stops the stream within half a minute
TICKING = ("in_state_s", "wait_s", "longest_wait_s", "now")  # figures that change with the clock alone


def _local(at: datetime | None, zone: ZoneInfo) -> str | None:
    return at.astimezone(zone).isoformat(timespec="milliseconds") if at is not None else None


def state_label(state: str, reason: str, names: Vocabulary) -> str:
    """小休(午餐) for a break with a reason; the state's name otherwise."""
    label = names.name("agent_state", state)
    return f"{label}({reason})" if state == "not_ready" and reason else label


def today_bounds(zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """Midnight to midnight of ``now``'s local day in ``zone``."""
    day = now.astimezone(zone).date()
    return datetime.combine(day, time(), zone), datetime.combine(day + timedelta(days=1), time(), zone)


def wallboard_summary(
    session: Session,
    zone: ZoneInfo,
    three_rings_s: float,
    unmasked: bool,
    now: datetime | None = None,
    not_agents: Collection[str] = (),
    *,
    names: Vocabulary,
) -> dict[str, Any]:
    """Everything the wallboard shows, as of ``now`` (default: the present). Rates are in percent of the
    team calls of today that have ended, ``None`` when none has: never a made-up 0 % or 100 %."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    start, end = today_bounds(zone, now)

    agents = []
    for agent in agents_now(session, not_agents):
        agents.append(
            {
                "extension": agent.extension,
                "name": agent.name or agent.extension,
                "team": agent.team,
                "state": agent.state,
                "reason": agent.reason,
                "label": state_label(agent.state, agent.reason, names),
                "since": _local(agent.since, zone),
                "in_state_s": round((now - agent.since).total_seconds(), 1) if agent.since is not None else None,
            }
        )
    states = [
        {"state": state, "label": names.name("agent_state", state), "agents": sum(a["state"] == state for a in agents)}
        for state in STATE_ORDER
    ]

    ringing = [
        {
            "remote_number": call.remote_number if unmasked else mask_phone(call.remote_number),
            "arrived_at": _local(call.arrived_at, zone),
            "wait_s": round((now - call.arrived_at).total_seconds(), 1),
        }
        for call in ringing_now(session, now)
    ]

    level = service_level(session, start, end, three_rings_s, now)
    talk = handle_time(session, start, end)
    average = talk.average_s
    return {
        "now": _local(now, zone),
        "day": start.date().isoformat(),
        "three_rings_s": three_rings_s,
        "agents": agents,
        "states": states,
        "ringing": ringing,
        "longest_waiting_since": ringing[0]["arrived_at"] if ringing else None,  # ringing_now is oldest first
        "longest_wait_s": ringing[0]["wait_s"] if ringing else None,
        "service_level": level.figures(),
        "handle_time": {
            "calls": talk.calls,
            "average_s": round(average, 1) if average is not None else None,
        },
        "callbacks_due": callbacks_due(session, now),
    }


def unchanging(summary: dict[str, Any]) -> Any:
    """The summary without the figures that tick with the clock: what tells whether it has changed."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items() if key not in TICKING}
        if isinstance(value, list):
            return [strip(item) for item in value]
        return value

    return strip(summary)


def add_wallboard_routes(app: FastAPI, guards: Guards, settings: Settings, database: Database) -> None:
    zone = ZoneInfo(settings.general.timezone)
    three_rings_s = 3 * settings.ring.ring_period_seconds
    # the overflow desk stores its calls under the overflow number: a machine, not an agent to show
    not_agents = {settings.team.overflow_number} if settings.team.enabled else set()
    Supervisor = Annotated[SignedIn, Depends(guards.role("supervisor"))]

    def summary(unmasked: bool) -> dict[str, Any]:
        with database.session() as session:
            return wallboard_summary(
                session, zone, three_rings_s, unmasked, not_agents=not_agents, names=app.state.vocabulary
            )

    @app.get("/wallboard", response_class=HTMLResponse, include_in_schema=False)
    def wallboard_page(request: Request, user: Supervisor) -> Response:
        return TEMPLATES.TemplateResponse(
            request, "wallboard.html", {"user": user, "board": summary(guards.unmasked(user))}
        )

    @app.get("/api/live/wallboard", tags=["live"])
    def api_wallboard(user: Supervisor) -> dict[str, Any]:
        """The wallboard now: every agent's state and time in it; the team calls ringing and the longest
        wait; today's team service level (answered by an agent within three rings, overflow with and without
        callback, abandoned, each as a count and in percent of today's ended team calls, null when none has
        ended); today's average talk time (answered → ended, wrap-up not included) and the callbacks due."""
        return summary(guards.unmasked(user))

    @app.get("/api/live/wallboard/events", tags=["live"], response_class=EventSourceResponse)
    async def api_wallboard_events(request: Request, user: Supervisor) -> AsyncIterator[ServerSentEvent]:
        """Server-sent events: a ``wallboard`` event with the summary at once, then again whenever it changes
        (the store is read every two seconds; a change of the ticking figures alone is not sent)."""
        unmasked = guards.unmasked(user)
        sent: Any = None
        polls = 0
        while not await request.is_disconnected():
            if (
                polls
                and polls % SESSION_CHECK_POLLS == 0
                and await run_in_threadpool(guards.accounts.signed_in, request.cookies.get(COOKIE)) is None
            ):
                yield ServerSentEvent(event="signed_out", data={})  # the session expired or was ended
                return
            polls += 1
            current = await run_in_threadpool(summary, unmasked)
            key = unchanging(current)
            if key != sent:
                sent = key
                yield ServerSentEvent(event="wallboard", data=current, retry=2000)
            await asyncio.sleep(POLL_SECONDS)
