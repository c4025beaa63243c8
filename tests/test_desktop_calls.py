"""The agent desktop's call paths, driven through the page's own HTTP API against real peers on loopback.

The desk is built in-process exactly as `contactcenter run` builds it (``desktop_runner.prepare``, a
:class:`Desk` with the agent and a :class:`Headset` on the PulseAudio null sink, the softphone registered,
``desktop_runner.serve``), because `run` cannot be told to route 9xxx numbers anywhere: its own Kamailio takes
only ``listen_ip``, ``port`` and ``kamailio`` from settings, while these tests need the ``outside`` fixture's
registrar (9xxx → a SIPp callee) and need to reach inside (``dial_for_agent``, the headset, the SIP trace).
Every agent action goes through the page's API with its session cookie and CSRF value.

Covered: click-to-dial a callback through to the wrap-up that closes it; a busy callee (the callback goes
back for later, the agent is told why); a second dial while one rings or is on the headset (refused, the
callback untouched); the scheduler's auto-dial to a ready agent only; a blind transfer to baresip's
colleague (and one to a missing extension, which leaves the call up); digits the agent keys reaching the
far end.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from contactcenter.app import App
from contactcenter.audio.headset import Headset
from contactcenter.callbacks.book import CallbackBook
from contactcenter.desktop import runner as desktop_runner
from contactcenter.desktop.server import COOKIE
from contactcenter.desktop.service import AgentDesktop
from contactcenter.records import CallbackRecord
from contactcenter.storage.models import Call
from contactcenter.telephony.desk import Desk, DeskCall
from contactcenter.telephony.softphone import Softphone
from tests.helpers.factories import open_app
from tests.helpers.ports import free_tcp_port
from tests.helpers.sip import Answerer, Baresip, SipTrace, extension_phone, sipp_scenario, start_sipp
from tests.helpers.sound import EARS, MIC, SoundServer
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.sip
CHINESE = re.compile(r"[\u4e00-\u9fff]")
CUSTOMER = "9001"  # the outside fixture's Kamailio sends 9xxx numbers to the SIPp callee
DESK_RTP = (33000, 33099)
COLLEAGUE_RTP = (33100, 33199)
BARESIP_RTP = "33400-33499"
DIALLING = "正在拨号,请等接通或结束后再拨"


@dataclass
class AgentDesk:
    """One agent's desk as `run` wires it, and the page's API signed in."""

    app: App
    desk: Desk
    desktop: desktop_runner.Desktop
    headset: Headset
    phone: Softphone
    trace: SipTrace  # everything the desk's softphone sends and receives
    client: httpx.Client
    csrf: str
    outside: dict[str, Any]
    peers: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def service(self) -> AgentDesktop:
        assert self.desktop.service is not None
        return self.desktop.service

    @property
    def book(self) -> CallbackBook:
        return CallbackBook(self.app.database, self.app.settings)

    @property
    def registrar_port(self) -> int:
        return int(self.outside["registrar"].port)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        """A change, as the page sends it (its CSRF value in ``X-Desk-Token``)."""
        return self.client.post(path, json=body, headers={"X-Desk-Token": self.csrf})

    def snapshot(self) -> dict[str, Any]:
        answer = self.client.get("/api/snapshot")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def add_callback(self, phone: str = CUSTOMER, kind: str = "next_day") -> CallbackRecord:
        """The agent's own callback, due five minutes ago (overdue)."""
        due = datetime.now(UTC) - timedelta(minutes=5)
        return self.book.add(phone=phone, due_at=due, reason="次日回访", kind=kind, owner_extension="1001")

    def callee(self, scenario: str, ring_ms: int | None = None) -> subprocess.Popen[str]:
        """A SIPp callee behind the outside line (one at a time: they share its port), once it listens;
        ``ring_ms`` for a scenario that rings that long before it answers."""
        folder = self.outside["tmp"]
        path = sipp_scenario(scenario, folder) if ring_ms is None else sipp_scenario(scenario, folder, RING_MS=ring_ms)
        peer = start_sipp(path, self.outside["callee_port"], timeout=40)
        self.peers.append(peer)
        return peer

    def on_headset(self) -> DeskCall:
        """The call on the agent's headset, once it is there and answered."""
        assert wait_until(lambda: (c := self.desk.headset_call()) is not None and c.call.answered, 15, step=0.01), (
            self.snapshot()
        )
        found = self.desk.headset_call()
        assert found is not None
        return found

    def wrap_up_ready(self) -> dict[str, Any]:
        """The snapshot's wrap-up, once the call is stored (the page can prefill and save it)."""
        assert wait_until(lambda: (w := self.snapshot()["wrap_up"]) is not None and w["call_id"] is not None, 20)
        return dict(self.snapshot()["wrap_up"])

    def save_wrap_up(self, sip_call_id: str, outcome: str = "done") -> dict[str, Any]:
        """The prefilled form with what the agent types, saved; the saved record."""
        form = self.client.get(f"/api/wrap-up/{sip_call_id}").json()
        form.update(caller_name="张三", purpose="回访空调维修情况", category="咨询", callback_outcome=outcome)
        saved = self.post(f"/api/wrap-up/{sip_call_id}", form)
        assert saved.status_code == 200, saved.text
        return dict(saved.json())


def finished(peer: subprocess.Popen[str]) -> None:
    """SIPp ran its scenario to the end."""
    output, _ = peer.communicate(timeout=20)
    assert peer.returncode == 0, output[-2000:]


@pytest.fixture
def agent_desk(
    desk: Path,
    outside: dict[str, Any],
    sound_server: SoundServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[AgentDesk]:
    """The desk of extension 1001 with its agent desktop, registered at the outside fixture's Kamailio
    (settings as ``section__key`` overrides through indirect parametrisation, if any)."""
    sound_server.use_defaults(EARS, f"{MIC}.monitor")
    extra: dict[str, str] = getattr(request, "param", {})
    app = open_app(
        desk,
        f"sqlite:///{tmp_path / 'store.db'}",
        monkeypatch,
        agent__port=str(free_tcp_port()),
        agent__wrap_up_seconds="600",  # wrap-up lasts until the test saves it
        ring__ring_period_seconds="1.0",
        ring__answer_after_rings="3",  # an incoming call is answered by the agent's click, well before this
        **extra,
    )
    settings = app.settings
    app.rule_book.refresh()
    headset = Headset(settings.headset)
    assert headset.check(), headset.off_reason
    # as `run` wires it (commands/run.py): the desktop first, the desk reporting to it, then the page served
    desktop = desktop_runner.prepare(settings, app.rule_book.current, speech_on=False, speech_off_reason="测试不识别")
    publish = desktop.publish_through(app.plugins.bus.publish)
    the_desk = Desk(
        settings,
        app.database,
        publish,
        None,
        app.rule_book,
        on_change=desktop.hub.desk_changed,
        headset=headset,
        agent=desktop.agent,
    )
    phone = extension_phone(
        outside["registrar"].port, the_desk.handle, user=settings.sip.user, rtp_low=DESK_RTP[0], rtp_high=DESK_RTP[1]
    )
    trace = SipTrace(phone)
    the_desk.phone = phone
    app.plugins.attach_phone(the_desk)
    client: httpx.Client | None = None
    agent_desk: AgentDesk | None = None
    try:
        desktop_runner.serve(desktop, settings, app.database, the_desk, app.plugins.bus.publish)
        assert desktop.tokens is not None
        base = desktop.url.split("/?")[0]
        client = httpx.Client(base_url=base, timeout=30)
        signed = client.get(desktop.url.removeprefix(base))
        assert signed.status_code == 303, signed.text
        csrf = desktop.tokens.csrf(client.cookies[COOKIE])
        assert csrf is not None
        agent_desk = AgentDesk(app, the_desk, desktop, headset, phone, trace, client, csrf, outside)
        yield agent_desk
    finally:
        if client is not None:
            client.close()
        desktop.stop()
        phone.stop()
        the_desk.wait_until_idle(15)
        for peer in agent_desk.peers if agent_desk is not None else []:
            if peer.poll() is None:
                peer.kill()
                peer.communicate()
        app.close()


# ------------------------------------------------------------------------------------------ click-to-dial


def test_click_to_dial_a_callback_puts_it_on_the_headset_and_the_wrap_up_closes_it(agent_desk: AgentDesk) -> None:
    d = agent_desk
    callback = d.add_callback()
    peer = d.callee("uas_callee.xml")  # rings 1 s, answers, plays the caller's audio, waits for our BYE

    listed = d.client.get("/api/callbacks").json()
    assert [c["id"] for c in listed["overdue"]] == [callback.id] and listed["overdue"][0]["phone"] == CUSTOMER

    clicked = time.monotonic()
    answer = d.post(f"/api/callbacks/{callback.id}/dial")
    returned = time.monotonic()
    assert answer.status_code == 200 and answer.json() == {"ok": True}, answer.text
    assert returned - clicked < 1.0  # the page is not held while it rings
    # ringing: the page says whom the agent is calling, and the agent is 振铃 (no inbound call rings them now)
    assert wait_until(lambda: d.trace.responses_received(180, "INVITE"), 10, step=0.005)
    ringing = d.snapshot()
    assert ringing["dialling"] == CUSTOMER and ringing["agent"]["state"] == "ringing", ringing
    assert d.book.get(callback.id).state == "in_progress"

    desk_call = d.on_headset()
    on_headset = time.monotonic()
    assert desk_call.attended and desk_call.callback_id == callback.id and desk_call.call.direction == "outbound"
    sip_call_id = desk_call.call.sip_call_id
    snapshot = d.snapshot()
    current = snapshot["current"]
    assert (current["direction"], current["attended"], current["callback_id"], current["state"]) == (
        "outbound",
        True,
        callback.id,
        "answered",
    ), current
    assert snapshot["agent"]["state"] == "on_call" and snapshot["dialling"] is None
    assert wait_until(lambda: desk_call.control.media is not None and desk_call.control.media.customer_frames >= 25, 5)

    assert d.post("/api/call/hangup").json() == {"ok": True}
    finished(peer)  # our BYE ended the callee's dialog
    wrap_up = d.wrap_up_ready()
    assert wrap_up["sip_call_id"] == sip_call_id and wrap_up["callback_id"] == callback.id
    assert d.snapshot()["agent"]["state"] == "wrap_up" and d.headset.bridge is None
    form = d.client.get(f"/api/wrap-up/{sip_call_id}").json()
    assert form["closes_callback_id"] == callback.id and form["callback_outcome"] == "done"

    saved = d.save_wrap_up(sip_call_id, "done")

    assert saved["closed_callback_id"] == callback.id and saved["closed_callback_outcome"] == "done"
    record = d.book.get(callback.id)
    assert (record.state, record.attempts, record.last_outcome) == ("done", 1, "answered")
    assert d.snapshot()["agent"]["state"] == "ready"
    assert d.client.get("/api/callbacks").json() == {"overdue": [], "mine": [], "anyone": []}
    closed = d.post(f"/api/callbacks/{callback.id}/dial")  # a page left open on the old list
    assert closed.status_code == 409 and closed.json()["detail"] == "该回访已在处理或已关闭"
    with d.app.database.session() as session:
        call = session.scalars(select(Call).where(Call.sip_call_id == sip_call_id)).one()
        assert (call.direction, call.remote_number, call.hung_up_first, call.wrapped_up_by) == (
            "outbound",
            CUSTOMER,
            "agent",
            "1001",
        )
    [(invite_at, _)] = d.trace.requests_sent("INVITE")
    ringing_at = d.trace.responses_received(180, "INVITE")[0][0]
    print(
        f"\nclick → desk's INVITE {1000 * (invite_at - clicked):.1f} ms, → callee's 180 "
        f"{1000 * (ringing_at - clicked):.1f} ms, → on the headset {1000 * (on_headset - clicked):.0f} ms "
        "(the callee answers 1 s after its 180); the POST returned in "
        f"{1000 * (returned - clicked):.1f} ms"
    )


def test_a_busy_customer_puts_the_callback_back_for_later_and_the_page_says_why(agent_desk: AgentDesk) -> None:
    d = agent_desk
    callback = d.add_callback()
    spacing = timedelta(minutes=d.app.settings.callbacks.retry_spacing_minutes)
    peer = d.callee("uas_busy.xml")  # 180, then 486 Busy Here
    clicked = datetime.now(UTC)

    assert d.post(f"/api/callbacks/{callback.id}/dial").status_code == 200

    assert wait_until(lambda: d.book.get(callback.id).state != "in_progress", 15)
    record = d.book.get(callback.id)
    assert (record.state, record.attempts, record.last_outcome) == ("pending", 1, "busy")
    assert record.due_at >= clicked + spacing  # tried again after the spacing, not at once
    assert wait_until(lambda: "未接通" in d.snapshot()["notice"], 5)
    snapshot = d.snapshot()
    assert "486" in snapshot["notice"] and "稍后重试" in snapshot["notice"], snapshot["notice"]
    assert snapshot["agent"]["state"] == "ready" and snapshot["dialling"] is None
    assert snapshot["current"] is None and snapshot["wrap_up"] is None  # nothing to wrap up: nobody was reached
    assert d.desk.headset_call() is None and d.headset.bridge is None and not d.desk.active_calls()
    finished(peer)
    listed = d.client.get("/api/callbacks").json()
    assert listed["overdue"] == [] and [c["id"] for c in listed["mine"]] == [callback.id]  # later today
    with d.app.database.session() as session:
        assert session.scalars(select(Call)).all() == []  # nothing was said: nothing stored


def test_a_second_dial_while_one_rings_or_talks_is_refused_and_changes_nothing(agent_desk: AgentDesk) -> None:
    d = agent_desk
    callbacks = [d.add_callback(), d.add_callback(phone="9002")]
    before = {c.id: d.book.get(c.id) for c in callbacks}
    peer = d.callee("uas_callee_slow.xml", ring_ms=3000)  # it rings 3 s: time to click again meanwhile

    # two clicks in the same instant (two tabs, a double click): one is dialled, the other refused
    barrier = threading.Barrier(len(callbacks))
    answers: dict[int, httpx.Response] = {}

    def click(callback_id: int) -> None:
        barrier.wait()
        answers[callback_id] = d.post(f"/api/callbacks/{callback_id}/dial")

    clicks = [threading.Thread(target=click, args=(c.id,)) for c in callbacks]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join(timeout=10)
    assert sorted(a.status_code for a in answers.values()) == [200, 409], {k: a.text for k, a in answers.items()}
    dialled = next(i for i, a in answers.items() if a.status_code == 200)
    other = next(i for i, a in answers.items() if a.status_code == 409)
    assert answers[other].json()["detail"] == DIALLING, answers[other].text

    # while it rings: the other one again, and the same one again
    assert wait_until(lambda: d.trace.responses_received(180, "INVITE"), 10, step=0.005)
    for callback_id in (other, dialled):
        again = d.post(f"/api/callbacks/{callback_id}/dial")
        assert again.status_code == 409 and again.json()["detail"] == DIALLING, again.text
    assert d.desk.headset_call() is None  # still ringing: the checks above ran before the answer

    # on the headset
    d.on_headset()
    on_call = d.post(f"/api/callbacks/{other}/dial")
    assert on_call.status_code == 409 and on_call.json()["detail"] == "您正在通话中"

    assert len(d.trace.requests_sent("INVITE")) == 1  # one customer called, once
    assert d.book.get(other) == before[other]  # not taken, no attempt counted, not moved
    assert d.book.get(dialled).state == "in_progress"
    assert d.post("/api/call/hangup").json() == {"ok": True}
    finished(peer)


def test_a_callback_that_connected_is_closed_as_reached_when_its_wrap_up_is_never_saved(
    agent_desk: AgentDesk,
) -> None:
    """Otherwise the scheduler reopens an in-progress callback after a while and calls the customer again."""
    d = agent_desk
    callback = d.add_callback()
    peer = d.callee("uas_callee.xml")
    assert d.post(f"/api/callbacks/{callback.id}/dial").status_code == 200
    desk_call = d.on_headset()
    assert d.post("/api/call/hangup").json() == {"ok": True}
    finished(peer)
    wrap_up = d.wrap_up_ready()
    assert d.book.get(callback.id).state == "in_progress"  # wrap-up open: the agent may still say "missed"
    assert d.post("/api/agent/ready").status_code == 200  # leaves wrap-up without saving it
    assert wait_until(lambda: d.book.get(callback.id).state == "done", 10)
    closed = d.book.get(callback.id)
    assert closed.attempts == 1 and "坐席未做话后处理" in closed.note
    # saving the wrap-up afterwards is still accepted, and counts nothing twice
    d.save_wrap_up(desk_call.call.sip_call_id)
    assert d.book.get(callback.id) == closed
    assert wrap_up["call_id"] is not None


def test_hanging_up_while_it_rings_cancels_the_dial_and_counts_no_attempt(agent_desk: AgentDesk) -> None:
    d = agent_desk
    callback = d.add_callback()
    peer = d.callee("uas_noanswer.xml")  # rings until CANCEL, then 487
    assert d.post(f"/api/callbacks/{callback.id}/dial").status_code == 200
    assert wait_until(lambda: d.trace.responses_received(180, "INVITE"), 10, step=0.005)
    assert d.snapshot()["dialling"] == callback.phone
    assert d.post("/api/call/hangup").json() == {"ok": True}  # the page's 取消拨号 (and the X key)
    finished(peer)  # the customer's phone saw CANCEL and stopped ringing
    assert wait_until(lambda: d.snapshot()["dialling"] is None, 10)
    snapshot = d.snapshot()
    assert snapshot["notice"] == "已取消拨号,回访仍在待办" and snapshot["agent"]["state"] == "ready"
    after = d.book.get(callback.id)
    assert (after.state, after.attempts, after.due_at) == ("pending", 0, callback.due_at)  # nobody was called
    assert d.desk.headset_call() is None and d.desk.services.headset.bridge is None
    assert d.post(f"/api/callbacks/{callback.id}/dial").status_code == 200  # and it can be dialled again
    d.service.hang_up()
    assert wait_until(lambda: d.snapshot()["dialling"] is None, 10)


# ---------------------------------------------------------------------------------- the scheduler's auto-dial


def test_auto_dial_goes_to_the_headset_of_a_ready_agent_only(agent_desk: AgentDesk) -> None:
    d = agent_desk
    peer = d.callee("uas_callee.xml")
    callback = d.add_callback()
    due = d.book.fire(callback.id)  # as the scheduler does before it hands the callback to run's on_due
    assert due is not None and due.state == "due"

    assert d.service.dial_for_agent(due) is True

    desk_call = d.on_headset()
    assert desk_call.attended and desk_call.callback_id == callback.id
    assert d.snapshot()["agent"]["state"] == "on_call"
    # taken while it is dialled: another agent's click (or another desk's dialer) finds it busy
    assert d.book.get(callback.id).state == "in_progress"
    assert d.book.start_by_agent(callback.id) is None

    nxt = d.book.fire(d.add_callback(phone="9002").id)
    assert nxt is not None
    assert d.service.dial_for_agent(nxt) is False  # on a call: run's own dialer takes it
    assert d.post("/api/call/hangup").json() == {"ok": True}
    finished(peer)
    wrap_up = d.wrap_up_ready()
    assert d.service.dial_for_agent(nxt) is False  # in wrap-up
    d.save_wrap_up(wrap_up["sip_call_id"], "done")
    assert d.book.get(callback.id).state == "done"
    assert d.post("/api/agent/not-ready", {"reason": "会议"}).status_code == 200
    assert d.service.dial_for_agent(nxt) is False  # on a break
    assert d.post("/api/agent/ready").status_code == 200
    survey = d.book.fire(d.add_callback(phone="9003", kind="survey").id)
    assert survey is not None
    assert d.service.dial_for_agent(survey) is False  # a survey is the survey plugin's call, never the agent's

    assert len(d.trace.requests_sent("INVITE")) == 1
    assert (d.book.get(nxt.id).state, d.book.get(nxt.id).attempts) == ("due", 0)
    assert d.desk.headset_call() is None and d.snapshot()["agent"]["state"] == "ready"


@pytest.mark.parametrize("agent_desk", [{"callbacks__auto_dial": "true"}], indirect=True)
def test_an_agent_who_becomes_ready_is_dialled_to_the_oldest_callback_left_with_the_overflow_desk(
    agent_desk: AgentDesk,
) -> None:
    """A caller no agent could take asked the overflow desk for a callback (anyone's, kind overflow). With
    auto_dial, the next agent to become ready is put through to the oldest one on their headset; a newer one
    waits, and becoming ready again after a missed ring offers nothing new."""
    d = agent_desk
    assert d.post("/api/agent/not-ready", {"reason": "会议"}).status_code == 200
    now = datetime.now(UTC)
    older = d.book.add(phone=CUSTOMER, due_at=now - timedelta(minutes=3), reason="溢出回电", kind="overflow")
    newer = d.book.add(phone="9002", due_at=now - timedelta(minutes=1), reason="溢出回电", kind="overflow")
    peer = d.callee("uas_callee.xml")
    assert d.post("/api/agent/ready").status_code == 200

    desk_call = d.on_headset()
    assert desk_call.attended and desk_call.callback_id == older.id
    assert d.book.get(older.id).state == "in_progress" and d.book.get(newer.id).state == "pending"
    assert d.post("/api/call/hangup").json() == {"ok": True}
    finished(peer)
    assert len(d.trace.requests_sent("INVITE")) == 1


# ------------------------------------------------------------------------------------------ transfer, DTMF


def test_a_blind_transfer_from_the_page_reaches_the_colleague(agent_desk: AgentDesk, tmp_path: Path) -> None:
    d = agent_desk
    colleague = Answerer()
    target = extension_phone(
        d.registrar_port, colleague, user="1002", rtp_low=COLLEAGUE_RTP[0], rtp_high=COLLEAGUE_RTP[1]
    )
    baresip = Baresip(tmp_path / "baresip", d.registrar_port, rtp_ports=BARESIP_RTP)
    waiting = d.add_callback()
    try:
        baresip.command("dial", f"sip:1001@127.0.0.1:{d.registrar_port}")  # the customer (2000) calls the agent
        assert wait_until(lambda: (c := d.snapshot()["current"]) is not None and c["state"] == "ringing", 10)
        # a click-to-dial now would leave the customer ringing until the callback's call is over
        busy = d.post(f"/api/callbacks/{waiting.id}/dial")
        assert busy.status_code == 409 and busy.json()["detail"] == "有来电正在振铃,请先接听", busy.text
        assert d.post("/api/call/answer").json() == {"ok": True}
        desk_call = d.on_headset()
        assert desk_call.rings == 1 and desk_call.call.remote_number == "2000"
        assert d.snapshot()["agent"]["state"] == "on_call"

        missing = d.post("/api/call/transfer", {"target": "1009"})  # nobody registered 1009: Kamailio says 404

        assert missing.status_code == 502, missing.text
        detail = missing.json()["detail"]
        assert detail.startswith("转接失败") and "404" in detail, detail
        assert desk_call.call.answered and not desk_call.call.ended.is_set() and d.desk.headset_call() is desk_call
        notice = d.snapshot()["notice"]
        assert notice.startswith("转接到 1009 失败") and notice.endswith("通话仍在继续"), notice
        assert not colleague.calls

        started = time.monotonic()
        done = d.post("/api/call/transfer", {"target": "1002"})
        took = time.monotonic() - started

        assert done.status_code == 200 and done.json() == {"ok": True}, done.text
        assert d.snapshot()["notice"] == "已转接到 1002"
        assert wait_until(lambda: colleague.calls, 5)
        [(colleague_call, colleague_media)] = colleague.calls
        assert colleague_call.remote_number == "2000" and colleague_call.answered
        assert wait_until(lambda: colleague_media.customer_frames >= 25, 5)  # the colleague hears the customer
        assert d.desk.wait_until_idle(20)
        sip_call_id = desk_call.call.sip_call_id
        with d.app.database.session() as session:
            call = session.scalars(select(Call).where(Call.sip_call_id == sip_call_id)).one()
            assert (call.direction, call.hung_up_first) == ("inbound", "agent")
        snapshot = d.snapshot()
        assert snapshot["agent"]["state"] == "wrap_up" and snapshot["wrap_up"]["sip_call_id"] == sip_call_id
        assert d.headset.bridge is None
        assert d.book.get(waiting.id) == waiting  # the refused click changed nothing
        print(f"\ntransfer from the page: POST → 200 in {1000 * took:.0f} ms (REFER, target answered, our BYE)")
    finally:
        baresip.stop()
        target.stop()


def test_digits_keyed_on_the_page_reach_the_far_end(agent_desk: AgentDesk) -> None:
    d = agent_desk
    far_end = Answerer()  # an extension behind the PBX that reads the digits (RFC 4733 events) it is sent
    phone = extension_phone(d.registrar_port, far_end, user="1002", rtp_low=COLLEAGUE_RTP[0], rtp_high=COLLEAGUE_RTP[1])
    try:
        callback = d.add_callback(phone="1002")
        assert d.post(f"/api/callbacks/{callback.id}/dial").status_code == 200
        d.on_headset()
        [(far, far_media)] = far_end.calls

        bad = d.post("/api/call/dtmf", {"digits": "12x"})
        assert bad.status_code == 422 and bad.json()["detail"] == "按键只能是 0-9、*、#"
        started = time.monotonic()
        sent = d.post("/api/call/dtmf", {"digits": "12#"})
        assert sent.status_code == 200, sent.text
        heard: list[str] = []

        def all_heard() -> bool:
            heard.append(far.read_dtmf())
            return "".join(heard) == "12#"

        assert wait_until(all_heard, 5), heard
        took = time.monotonic() - started

        assert far_media.dtmf == ["1", "2", "#"]
        assert d.post("/api/call/hangup").json() == {"ok": True}
        assert far.ended.wait(5)
        print(f"\n'12#' keyed on the page and detected at the far end in {1000 * took:.0f} ms")
    finally:
        phone.stop()
