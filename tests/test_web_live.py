"""The supervisors' live view, end to end across processes: `contactcenter run` answers a SIPp call through
its registrar while `contactcenter web` streams the call to a signed-in supervisor as server-sent events."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Connection, insert

from contactcenter.hooks.api import PluginAPI
from contactcenter.hooks.host import PluginHost
from contactcenter.records import CallRecord, ComplianceReport
from contactcenter.storage.models import LiveEvent
from contactcenter.web import live_feed
from tests.helpers.ports import accepts_connections, free_port
from tests.helpers.waiting import wait_until
from tests.helpers.web import PASSWORD, desk_for_processes, serving, sse_events, start_command, stop_command


def test_a_call_in_progress_is_streamed_to_the_supervisor(tmp_path: Path) -> None:
    web_port = free_port()
    _, database, env = desk_for_processes(
        tmp_path, {"wang": "supervisor", "zhao": "admin"}, ring__answer_after_rings="2", web__port=str(web_port)
    )
    database.dispose()
    desk = start_command(["run"], env, tmp_path, "ready")
    web = start_command(["web"], env, tmp_path, "reviewer console on")
    base = f"http://127.0.0.1:{web_port}"
    try:
        with httpx.Client(base_url=base, timeout=httpx.Timeout(10, read=40)) as client:
            # uvicorn prints its address a moment before it accepts
            assert wait_until(lambda: accepts_connections(web_port), 10, step=0.1)
            signed = client.post("/api/login", json={"username": "wang", "password": PASSWORD})
            assert signed.status_code == 200
            events = []
            with client.stream("GET", "/api/live/events") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                received = sse_events(stream.iter_lines())
                snapshot = next(received)
                assert snapshot["event"] == "snapshot" and snapshot["data"] == {"events": []}
                demo = subprocess.Popen(
                    [sys.executable, "-m", "contactcenter", "demo-call", "--talk", "3"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=env,
                    cwd=tmp_path,
                )
                for event in received:
                    events.append(event)
                    if event["event"] == "ended":
                        break
            demo_output, _ = demo.communicate(timeout=120)
            assert demo.returncode == 0, demo_output
            kinds = [e["event"] for e in events]
            assert kinds[0] == "ringing" and "answered" in kinds and kinds[-1] == "ended", kinds
            assert len({e["data"]["sip_call_id"] for e in events}) == 1  # all about the one call
            ringing, answered, ended = events[0]["data"], events[kinds.index("answered")]["data"], events[-1]["data"]
            assert ringing["remote_number"] == "138****8000"  # a supervisor sees it masked
            assert answered["rings"] == 2 and ended["disposition"] == "completed" and ended["call_id"] == 1
            ids = [int(e["id"]) for e in events]
            assert ids == sorted(ids)

            # a browser that lost the stream comes back with the last id it saw and gets the rest, no snapshot
            with client.stream("GET", "/api/live/events", headers={"Last-Event-ID": events[0]["id"]}) as stream:
                resumed = []
                for event in sse_events(stream.iter_lines()):
                    resumed.append(event)
                    if event["event"] == "ended":
                        break
            assert [e["event"] for e in resumed] == kinds[1:]
            assert client.get("/api/live/calls").json()["events"] == []  # nothing in progress any more

            client.cookies.clear()
            assert client.post("/api/login", json={"username": "zhao", "password": PASSWORD}).status_code == 200
            with client.stream("GET", "/api/live/events", params={"after": 0}) as stream:
                first = next(sse_events(stream.iter_lines()))
            assert first["event"] == "ringing" and first["data"]["remote_number"] == "13800138000"  # admins see it
    finally:
        desk_output = stop_command(desk)
        stop_command(web)
    assert "answered" in desk_output


def test_the_feed_keeps_calls_in_progress_and_forgets_old_events(console: dict) -> None:
    """A call that ended leaves the snapshot; an ended call prunes events older than live_keep_hours."""
    host = PluginHost(console["settings"], console["database"])
    api = PluginAPI(live_feed.NAME, host)
    now = datetime.now(UTC)
    with console["database"].session() as session:
        session.add(LiveEvent(sip_call_id="old", kind="ringing", at=now - timedelta(hours=25), data={}))
    talking, done = (CallRecord(sip_call_id=name, agent_extension="1001", invited_at=now) for name in ("a", "b"))
    live_feed.call_ringing(call=talking, api=api)
    live_feed.call_ringing(call=done, api=api)
    with console["database"].session() as session:
        events, cursor = live_feed.calls_in_progress(session, timedelta(hours=4))
    assert {e.sip_call_id for e in events} == {"a", "b"} and cursor.last_id == max(e.id for e in events)
    live_feed.call_ended(
        call=done.model_copy(update={"id": 7, "disposition": "completed"}),
        transcript=[],
        report=ComplianceReport(),
        api=api,
    )
    with console["database"].session() as session:
        events, _ = live_feed.calls_in_progress(session, timedelta(hours=4))
        kept = {row.sip_call_id for row in session.query(LiveEvent)}
    assert [e.sip_call_id for e in events] == ["a"]
    assert kept == {"a", "b"}  # "old" (25 h, past the default 24) was pruned when b ended
    host.close()


def add_event(connection: Connection, name: str, event_id: int | None = None) -> int:
    """Insert a live event in ``connection``'s transaction (committed when the caller says); its id."""
    values = {"sip_call_id": name, "kind": "ringing", "agent_extension": "1001", "at": datetime.now(UTC), "data": {}}
    if event_id is not None:
        values["id"] = event_id
    return connection.execute(insert(LiveEvent).values(**values).returning(LiveEvent.id)).scalar_one()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_live_view_gets_an_event_committed_after_a_later_one(console: dict) -> None:
    """Two desks on PostgreSQL: the one with the lower id commits last. The open stream still sends it,
    and keeps the browser's resume point at the higher id."""
    database = console["database"]
    with serving(console["app"]) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.post("/api/login", json={"username": "wang", "password": PASSWORD}).status_code == 200
        with database.engine.connect() as slow_desk:
            in_snapshot = add_event(slow_desk, "in-flight at the snapshot")  # not committed yet
            with client.stream("GET", "/api/live/events") as stream:
                received = sse_events(stream.iter_lines(), wait_s=10)
                snapshot = next(received)
                assert snapshot["event"] == "snapshot" and int(snapshot["id"]) < in_snapshot
                late = add_event(slow_desk, "late")
                with database.engine.begin() as quick_desk:
                    early = add_event(quick_desk, "early")
                assert in_snapshot < late < early
                first = next(received)
                assert (first["data"]["sip_call_id"], first["id"]) == ("early", str(early))
                slow_desk.commit()
                rest = [next(received), next(received)]
    assert [(e["data"]["sip_call_id"], e["id"]) for e in rest] == [
        ("in-flight at the snapshot", str(early)),
        ("late", str(early)),
    ]  # the resume point stays at the newest


def test_the_feed_cursor_waits_for_missing_ids_then_forgets_them(console: dict) -> None:
    """An id read past is asked for again until it arrives, or until ``gap_wait_s`` says it never will."""
    clock = [1000.0]
    cursor = live_feed.FeedCursor(0, gap_wait_s=30, clock=lambda: clock[0])
    with console["database"].engine.begin() as connection:
        for event_id in (1, 3, 6):
            add_event(connection, f"e{event_id}", event_id)
    with console["database"].session() as session:
        assert [e.id for e in cursor.read(session)] == [1, 3, 6] and cursor.gaps == [2, 4, 5]
    clock[0] += 20
    with console["database"].engine.begin() as connection:
        add_event(connection, "late", 4)
    with console["database"].session() as session:
        assert [e.id for e in cursor.read(session)] == [4] and cursor.gaps == [2, 5]
        assert cursor.read(session) == [] and cursor.last_id == 6
    clock[0] += 11  # 31 s after 2 and 5 went missing: rolled back, not late
    with console["database"].engine.begin() as connection:
        add_event(connection, "too late", 5)
    with console["database"].session() as session:
        assert cursor.read(session) == [] and cursor.gaps == []
