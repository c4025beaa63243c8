"""The supervisors' live view: calls in progress with their transcript and alerts, pushed to the browser
as server-sent events while they happen.

The stream starts with a ``snapshot`` of every call in progress, then sends each new event (``ringing``,
``answered``, ``utterance``, ``alert``, ``ended``) with its id; a browser that reconnects sends the last id
back (``Last-Event-ID``) and misses nothing. Events come from the ``live_events`` table, which every desk
process writes, so one console follows the whole floor; an event a desk commits after a later one has been
sent is still sent (``FeedCursor``).

No `from __future__ import annotations`: FastAPI reads the route signatures.
"""

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from contactcenter.settings import Settings
from contactcenter.storage.database import Database
from contactcenter.web.auth import SignedIn
from contactcenter.web.customers import mask_text
from contactcenter.web.guards import COOKIE, MAX_ID, TEMPLATES, Guards
from contactcenter.web.live_feed import FeedCursor, FeedEvent, calls_in_progress
from contactcenter.web.queries import mask_phone

POLL_SECONDS = 0.5
SESSION_CHECK_POLLS = 60  # an expired or ended session stops the stream within half a minute
IN_PROGRESS_WITHIN = timedelta(hours=4)  # a call still "in progress" after this is a desk that died mid-call


def add_live_routes(app: FastAPI, guards: Guards, settings: Settings, database: Database) -> None:
    zone = ZoneInfo(settings.general.timezone)
    Supervisor = Annotated[SignedIn, Depends(guards.role("supervisor"))]

    def shown(event: FeedEvent, unmasked: bool) -> dict[str, Any]:
        """The event as a browser gets it: local time, and numbers masked for roles that may not see them."""
        data = dict(event.data)
        if not unmasked:
            if "remote_number" in data:
                data["remote_number"] = mask_phone(data["remote_number"])
            # caller_name: the SIP From display name, which the caller's phone sets (often the number itself)
            for key in ("text", "matched_text", "caller_name"):
                if isinstance(data.get(key), str):
                    data[key] = mask_text(data[key])
        return {
            **data,
            "id": event.id,
            "sip_call_id": event.sip_call_id,
            "kind": event.kind,
            "agent": event.agent,
            "at": event.at.astimezone(zone).strftime("%H:%M:%S"),
        }

    def snapshot(unmasked: bool) -> tuple[list[dict[str, Any]], FeedCursor]:
        with database.session() as session:
            events, cursor = calls_in_progress(session, IN_PROGRESS_WITHIN)
        return [shown(event, unmasked) for event in events], cursor

    def resumed(last_id: int) -> FeedCursor:
        with database.session() as session:
            return FeedCursor.following(session, last_id)

    def newer(cursor: FeedCursor) -> list[FeedEvent]:
        with database.session() as session:
            return cursor.read(session)

    @app.get("/live", response_class=HTMLResponse, include_in_schema=False)
    def live_page(request: Request, user: Supervisor) -> Response:
        return TEMPLATES.TemplateResponse(request, "live.html", {"user": user})

    @app.get("/api/live/calls", tags=["live"])
    def api_live_calls(user: Supervisor) -> dict[str, Any]:
        """Every call in progress, with its events so far, and the id to follow the stream from."""
        events, cursor = snapshot(guards.unmasked(user))
        return {"events": events, "last_event_id": cursor.last_id}

    @app.get("/api/live/events", tags=["live"], response_class=EventSourceResponse)
    async def api_live_events(
        request: Request,
        user: Supervisor,
        last_event_id: Annotated[str | None, Header()] = None,
        after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    ) -> AsyncIterator[ServerSentEvent]:
        """Server-sent events: a ``snapshot`` of the calls in progress, then every new event as it happens.
        Resumes after ``Last-Event-ID`` (or ``after``) without a snapshot."""
        unmasked = guards.unmasked(user)
        # a Last-Event-ID that is not an id the feed could have sent means "from a snapshot", as none does
        sent_id = int(last_event_id) if last_event_id and re.fullmatch(r"[0-9]{1,19}", last_event_id) else None
        resume = after if after is not None else (sent_id if sent_id is not None and sent_id <= MAX_ID else None)
        if resume is None:
            events, cursor = await run_in_threadpool(snapshot, unmasked)
            yield ServerSentEvent(event="snapshot", id=str(cursor.last_id), data={"events": events}, retry=2000)
        else:
            cursor = await run_in_threadpool(resumed, resume)
        polls = 0
        while not await request.is_disconnected():
            polls += 1
            if (
                polls % SESSION_CHECK_POLLS == 0
                and await run_in_threadpool(guards.accounts.signed_in, request.cookies.get(COOKIE)) is None
            ):
                yield ServerSentEvent(event="signed_out", data={})  # the session expired or was ended
                return
            resume_from = cursor.last_id
            for event in await run_in_threadpool(newer, cursor):
                # The browser resumes from the id it got last: a late event below it must not move it back.
                resume_from = max(resume_from, event.id)
                yield ServerSentEvent(event=event.kind, id=str(resume_from), data=shown(event, unmasked))
            await asyncio.sleep(POLL_SECONDS)
