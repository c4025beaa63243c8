"""The CRM webhook against a real HTTP server on loopback that fails, hangs and recovers, and across a
restart of the desk: every message arrives, signed, in the documented format; nothing is lost."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from contactcenter_crm_webhook import SCHEMA, SIGNATURE_HEADER

from contactcenter.app import App
from contactcenter.storage.calls import save_call
from contactcenter.storage.models import OutboxMessage
from contactcenter.wrap_up import WrapUpForm, save_wrap_up
from tests.helpers.factories import a_call, open_app
from tests.helpers.ports import free_port
from tests.helpers.waiting import wait_until

SECRET = "s3cr3t-for-tests"


class Crm:
    """A CRM endpoint whose behaviour the test switches: "ok", "fail" (HTTP 500) or "hang" (answers late)."""

    def __init__(self, port: int) -> None:
        self.mode = "ok"
        self.received: list[dict] = []  # every request that reached it, whatever it answered
        self.accepted: list[dict] = []  # the ones it answered 2xx
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = {"headers": dict(self.headers), "body": body}
                crm.received.append(request)
                if crm.mode == "hang":
                    time.sleep(2.0)
                if crm.mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"CRM database is down")
                    return
                crm.accepted.append(request)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crm() -> Iterator[Crm]:
    server = Crm(free_port(1))  # SOCK_STREAM
    yield server
    server.stop()


def start_app(desk: Path, database_url: str, port: int, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> App:
    monkeypatch.setenv("CONTACTCENTER_CRM_SECRET", SECRET)
    return open_app(
        desk,
        database_url,
        monkeypatch,
        plugins__enabled='["crm_webhook"]',
        plugins__crm_webhook__url=f"http://127.0.0.1:{port}/hooks",
        plugins__crm_webhook__timeout_seconds="0.5",
        plugins__crm_webhook__first_retry_seconds="0.2",
        plugins__crm_webhook__max_retry_seconds="0.5",
        **overrides,
    )


def verified(request: dict) -> dict:
    headers, body = request["headers"], request["body"]
    expected = (
        "sha256="
        + hmac.new(
            SECRET.encode(), headers["X-Contactcenter-Timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
    )
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    document = json.loads(body)
    assert document["schema"] == SCHEMA and document["event"] == headers["X-Contactcenter-Event"]
    assert str(document["delivery_id"]) == headers["X-Contactcenter-Delivery"]
    assert abs(int(headers["X-Contactcenter-Timestamp"]) - time.time()) < 60
    return document


def pending(app: App) -> int:
    with app.database.session() as session:
        return session.query(OutboxMessage).filter(OutboxMessage.delivered_at.is_(None)).count()


def test_a_failing_then_hanging_crm_gets_every_message_once_it_recovers(
    crm: Crm, desk: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = start_app(desk, database_url, crm.server.server_port, monkeypatch)
    try:
        api = app.plugins.api_for("tickets")
        crm.mode = "fail"
        tickets = [api.create_ticket(category="投诉", caller_phone=f"1380013800{i}", purpose="太慢") for i in range(3)]
        app.plugins.bus.drain()
        assert wait_until(lambda: len(crm.received) >= 6, 10)  # each tried at least twice
        with app.database.session() as session:
            messages = session.query(OutboxMessage).all()
            assert len(messages) == 3 and all(m.attempts >= 1 and "HTTP 500" in m.last_error for m in messages)
        crm.mode = "hang"
        before = len(crm.received)
        assert wait_until(lambda: len(crm.received) >= before + 3, 10)

        def timed_out() -> bool:
            with app.database.session() as session:
                return any(m.last_error == "timed out" for m in session.query(OutboxMessage))

        assert wait_until(timed_out, 10)
        assert pending(app) == 3
        crm.mode = "ok"
        assert wait_until(lambda: pending(app) == 0, 15)
    finally:
        app.close()
    documents = [verified(r) for r in crm.accepted]
    by_id = {d["delivery_id"]: d for d in documents}  # a hung request may have been accepted twice: same id
    assert len(by_id) == 3
    assert sorted(d["data"]["ticket"]["id"] for d in by_id.values()) == sorted(t.id for t in tickets)
    assert {d["event"] for d in documents} == {"ticket.created"}


def test_messages_waiting_when_the_desk_stops_are_delivered_after_a_restart(
    desk: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port(1)
    app = start_app(desk, database_url, port, monkeypatch)  # nothing listens on the port: refused
    try:
        api = app.plugins.api_for("tickets")
        ticket = api.create_ticket(category="报修", caller_phone="13800138000")
        api.close_callback(api.add_callback(phone="13800138000", due_at=ticket.created_at).id, "answered")
        app.plugins.bus.drain()
        assert wait_until(lambda: pending(app) == 2, 10)
        with app.database.session() as session:
            assert all("ConnectError" in m.last_error for m in session.query(OutboxMessage) if m.attempts)
    finally:
        app.close()
    server = Crm(port)
    try:
        restarted = start_app(desk, database_url, port, monkeypatch)
        try:
            restarted.plugins.bus.publish("desk_started", role="desk")
            assert wait_until(lambda: pending(restarted) == 0, 15)
        finally:
            restarted.close()
    finally:
        server.stop()
    events = sorted(verified(r)["event"] for r in server.accepted)
    assert events == ["callback.closed", "ticket.created"]
    closed = next(verified(r) for r in server.accepted if verified(r)["event"] == "callback.closed")
    assert closed["data"]["callback"]["state"] == "done"


def test_without_its_secret_nothing_is_sent_and_nothing_is_lost(
    crm: Crm, desk: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = start_app(desk, database_url, crm.server.server_port, monkeypatch)
    monkeypatch.delenv("CONTACTCENTER_CRM_SECRET")
    try:
        app.plugins.api_for("tickets").create_ticket(category="咨询", caller_phone="13800138000")
        app.plugins.bus.drain()
        assert wait_until(lambda: pending(app) == 1, 5)

        def refused() -> bool:
            with app.database.session() as session:
                return "CONTACTCENTER_CRM_SECRET" in session.query(OutboxMessage).one().last_error

        assert wait_until(refused, 5)
        time.sleep(0.5)  # a negative: half a second (several delivery rounds) in which nothing may be sent
        assert crm.received == [] and pending(app) == 1
    finally:
        app.close()


def wrapped_up_call(app: App):
    """A stored call the agent wraps up (a complaint: it promises a follow-up); the wrap-up record."""
    call = a_call()
    with app.database.session() as session:
        call_id = save_call(session, call)
    form = WrapUpForm(
        caller_name="张伟",
        company="示例客户有限公司",
        phone="13800138000",
        salutation="先生",
        category="投诉",
        purpose="安装师傅迟到两小时",
        notes="客户要求道歉并说明原因",
        resolution="已致歉，转售后主管",
    )
    assert call.ended_at is not None
    return save_wrap_up(
        app.database,
        app.settings,
        call_id=call_id,
        form=form,
        agent="1001",
        publish=app.plugins.publish,
        now=call.ended_at + timedelta(minutes=2),
    )


def test_the_crm_receives_the_agents_wrap_up(crm: Crm, desk: Path, database_url: str, monkeypatch) -> None:
    app = start_app(desk, database_url, crm.server.server_port, monkeypatch)
    try:
        record = wrapped_up_call(app)
        app.plugins.bus.drain()
        assert wait_until(lambda: pending(app) == 0 and crm.accepted, 10)
    finally:
        app.close()
    [document] = [verified(r) for r in crm.accepted]
    assert document["event"] == "call.wrapped_up"
    assert document["data"]["wrap_up"] == record.model_dump(mode="json")
    wrap_up = document["data"]["wrap_up"]
    assert (wrap_up["caller_name"], wrap_up["phone"], wrap_up["category"]) == ("张伟", "13800138000", "投诉")
    assert wrap_up["notes"] == "客户要求道歉并说明原因" and wrap_up["complaint"] is True
    assert [c["kind"] for c in wrap_up["callbacks"]] == ["complaint"] and wrap_up["wrapped_up_by"] == "1001"
    call = document["data"]["call"]
    assert call["id"] == record.call_id and call["purpose"] == "安装师傅迟到两小时" and call["category"] == "投诉"


def test_a_crm_that_did_not_ask_for_wrap_ups_gets_none(crm: Crm, desk: Path, database_url: str, monkeypatch) -> None:
    app = start_app(
        desk, database_url, crm.server.server_port, monkeypatch, plugins__crm_webhook__events='["call.ended"]'
    )
    try:
        wrapped_up_call(app)
        assert app.plugins.bus.drain(10)
        with app.database.session() as session:
            assert session.query(OutboxMessage).count() == 0
    finally:
        app.close()
    assert crm.received == []
