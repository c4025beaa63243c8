"""The supervisors' wallboard (实时看板) and the team line's daily and weekly service level in the scorecards.

Team calls and agent states are written through the storage functions the desks use (note_arrival, claim,
note_ring_ended, settle_overflow, record_state), on SQLite and PostgreSQL; every figure is checked against a
count made here from the scenarios themselves. The page is followed in headless Chromium while the test
writes to the store as another desk would.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from openpyxl import load_workbook

from contactcenter.records import CallRecord
from contactcenter.storage.agent_states import close_open_spans, record_state
from contactcenter.storage.calls import save_call
from contactcenter.storage.models import Agent, Callback
from contactcenter.storage.team_calls import (
    OVERFLOW_GRACE,
    TeamCallSeen,
    claim,
    note_arrival,
    note_ring_ended,
    overflow_took,
    settle_overflow,
)
from contactcenter.vocabulary import Vocabulary
from contactcenter.web.wallboard import unchanging, wallboard_summary
from tests.helpers.browser import wait_for
from tests.helpers.paths import REPO
from tests.helpers.web import PASSWORD, client_as, serving, sse_events

ZONE = ZoneInfo("Asia/Shanghai")  # the repo's settings.toml
NAMES = Vocabulary.load(REPO / "scripts_zh" / "vocabulary.toml")
THREE_RINGS = 15.0  # three of the settings' 5 s rings
NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai
STATE_ORDER = ["ready", "not_ready", "ringing", "on_call", "wrap_up", "offline"]
LABELS = {"ready": "就绪", "not_ready": "小休", "ringing": "振铃", "on_call": "通话中", "wrap_up": "话后处理"}
LABELS["offline"] = "离线"


def masked(number: str) -> str:
    """An 11-digit mobile number as roles that may not see it get it: 139****0001."""
    assert len(number) == 11
    return number[:3] + "****" + number[-4:]


def percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def local_iso(at: datetime) -> str:
    return at.astimezone(ZONE).isoformat(timespec="milliseconds")


@dataclass
class Scenario:
    """One team call as the desks write it, with how it must be counted (``expected``: an outcome, ``ringing``,
    or ``elsewhere`` for a call outside the period)."""

    name: str
    arrived: datetime
    expected: str
    answer: float | None = None  # an agent answered this many seconds after it arrived
    ring_ended: float | None = None  # the agents' ringing stopped this many seconds after it arrived
    overflow: float | None = None  # the overflow desk took it this many seconds after it arrived
    settled: bool = False  # the overflow desk's call is over
    callback: bool = False  # ... and the caller asked for a callback
    number: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, database, callback_id: int | None = None) -> None:
        """As the desks would: each step in its own transaction."""
        later = lambda seconds: self.arrived + timedelta(seconds=seconds)  # noqa: E731
        with database.session() as session:
            note_arrival(session, TeamCallSeen(self.name, "8000", self.number, self.arrived))
        if self.ring_ended is not None:
            with database.session() as session:
                note_ring_ended(session, self.name, later(self.ring_ended))
        if self.answer is not None:
            with database.session() as session:
                assert claim(
                    session, TeamCallSeen(self.name, "8000", self.number, self.arrived), "1001", later(self.answer)
                )
        if self.overflow is not None:
            with database.session() as session:
                overflow_took(
                    session, TeamCallSeen(self.name, "8000", self.number, self.arrived), "1999", later(self.overflow)
                )
            if self.settled:
                with database.session() as session:
                    settle_overflow(session, self.name, callback_id if self.callback else None)


def seed(database, scenarios: list[Scenario], callback_id: int | None = None) -> None:
    for n, scenario in enumerate(scenarios):
        scenario.number = scenario.number or f"1391234{n:04d}"
        scenario.write(database, callback_id)


def expected_level(scenarios: list[Scenario]) -> dict[str, Any]:
    """The service level counted from the scenarios: rates over the calls that have ended."""
    counted = [s for s in scenarios if s.expected != "elsewhere"]
    outcomes = Counter(s.expected for s in counted)
    ended = len(counted) - outcomes["ringing"]
    in_time = sum(1 for s in counted if s.expected == "answered" and s.answer is not None and s.answer <= THREE_RINGS)
    overflow = outcomes["overflow_callback"] + outcomes["overflow_no_callback"]
    return {
        "calls": len(counted),
        "ended": ended,
        "answered": outcomes["answered"],
        "answered_in_time": in_time,
        "overflow": overflow,
        "overflow_callback": outcomes["overflow_callback"],
        "overflow_no_callback": outcomes["overflow_no_callback"],
        "abandoned": outcomes["abandoned"],
        "unknown": outcomes["unknown"],
        "service_level": percent(in_time, ended),
        "overflow_rate": percent(overflow, ended),
        "abandoned_rate": percent(outcomes["abandoned"], ended),
    }


# --------------------------------------------------------------------------------------------- the summary


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


MIDNIGHT = datetime(2026, 12, 1, tzinfo=ZONE)  # today began at 16:00 UTC yesterday


def today_scenarios() -> list[Scenario]:
    return [
        Scenario("in-time", ago(600), "answered", answer=4.0),
        Scenario("late", ago(500), "answered", answer=16.0),
        Scenario("on-the-third-ring", ago(480), "answered", answer=15.0),  # 15 s is still within three rings
        Scenario("midnight", MIDNIGHT, "answered", answer=2.0),  # the first moment of today
        Scenario("overflow-callback", ago(400), "overflow_callback", ring_ended=12.5, overflow=12.6, settled=True),
        Scenario("overflow-none", ago(300), "overflow_no_callback", ring_ended=12.5, overflow=12.6, settled=True),
        Scenario("overflow-talking", ago(30), "overflow_no_callback", ring_ended=12.5, overflow=12.6),
        Scenario("abandoned", ago(200), "abandoned", ring_ended=12.5),
        Scenario("in-grace", ago(14), "ringing", ring_ended=9.0),  # stopped 5 s ago: the overflow desk may take it
        Scenario("ringing", ago(7), "ringing"),
        Scenario("lost", ago(3600), "unknown"),  # an hour with no news: every desk it rang died
        Scenario("yesterday", MIDNIGHT - timedelta(seconds=1), "elsewhere", answer=2.0),
    ]


def seed_floor(database) -> dict[str, Any]:
    """Agents in every state, team calls of every outcome, today's calls and callbacks, all as of NOW."""
    scenarios = today_scenarios()
    scenarios[4].callback = True
    with database.session() as session:
        session.add_all(
            [
                Agent(extension="1001", name="李娜", team="售后一组"),
                Agent(extension="1002", name="王强"),
                Agent(extension="1003", name="张伟"),  # never signed in
                Agent(extension="1004", name="赵六", active=False),  # left: not on the board
                Agent(extension="1008", name="孙七"),
                Agent(extension="1009", name="周八"),
            ]
        )
        callbacks = [
            Callback(phone="13900000001", due_at=ago(60)),  # due
            Callback(phone="13900000002", due_at=NOW + timedelta(minutes=10)),  # later
            Callback(phone="13900000003", due_at=ago(1000), state="due"),  # fired, not dialled yet
            Callback(phone="13900000004", due_at=ago(100), state="in_progress"),  # being dialled
            Callback(phone="13900000005", due_at=ago(100), state="done"),
            Callback(phone="13900000006", due_at=NOW),  # due this instant
        ]
        session.add_all(callbacks)
        session.flush()
        asked_for = callbacks[1].id
    seed(database, scenarios, asked_for)
    for _ in range(2):  # the call rings two desks: each notes it, one row
        with database.session() as session:
            note_arrival(session, TeamCallSeen("race", "8000", "13912349999", ago(100)))
    with database.session() as session:  # both answer; the first UPDATE takes it
        assert claim(session, TeamCallSeen("race", "8000", "13912349999", ago(100)), "1001", ago(97))
    with database.session() as session:  # the other's finds it taken and changes nothing
        assert not claim(session, TeamCallSeen("race", "8000", "13912349999", ago(100)), "1002", ago(98))
    scenarios.append(Scenario("race", ago(100), "answered", answer=3.0))

    spans = [  # extension, state, reason, seconds ago
        ("1001", "ready", "", 3600),
        ("1001", "on_call", "", 120),
        ("1002", "ready", "", 1000),
        ("1002", "not_ready", "用餐", 300),
        ("1005", "ready", "", 50),  # no row in agents: shown by its extension
        ("1006", "wrap_up", "", 20),
        ("1007", "ringing", "", 5),
        ("1008", "ready", "", 7200),
        ("1008", "offline", "", 3000),
        ("1009", "ready", "", 5000),
        ("1010", "not_ready", "", 400),
        ("1011", "ready", "", 900),
    ]
    for extension, state, reason, seconds in spans:
        with database.session() as session:
            record_state(session, extension, state, reason, at=ago(seconds))
    with database.session() as session:  # 1009's desk stopped cleanly: no open span
        close_open_spans(session, "1009", ago(4000), clean_shutdown=True)

    calls = [  # name, invited seconds ago, answered after, talk seconds (None: not ended), direction or overflow
        ("h1", 3000, 5.0, 185.5, "inbound"),
        ("h2", 2000, 10.0, 62.3, "outbound"),
        ("h3", 1500, None, None, "inbound"),  # never answered
        ("h4", 100, 4.0, None, "inbound"),  # still talking
        ("h5", (NOW - MIDNIGHT).total_seconds() + 60, 3.0, 30.0, "inbound"),  # yesterday
        ("h6", 900, 0.2, 25.0, "overflow"),  # the overflow desk's script: no agent's handling
    ]
    with database.session() as session:
        for name, seconds, answer, talk, direction in calls:
            invited = ago(seconds)
            answered = invited + timedelta(seconds=answer) if answer is not None else None
            ended = (
                answered + timedelta(seconds=talk)
                if answered is not None and talk is not None
                else (invited + timedelta(seconds=30) if answered is None else None)
            )
            disposition = "abandoned" if answered is None else ("in_progress" if ended is None else "completed")
            record = CallRecord(
                sip_call_id=name,
                direction="inbound" if direction == "overflow" else direction,
                remote_number="13800000000",
                agent_extension="1999" if direction == "overflow" else "1001",
                invited_at=invited,
                answered_at=answered,
                ended_at=ended,
                disposition="overflow" if direction == "overflow" else disposition,
            )
            save_call(session, record)
    return {
        "scenarios": scenarios,
        "agents": [  # extension, name, team, state, reason, since
            ("1011", "1011", "", "ready", "", ago(900)),
            ("1005", "1005", "", "ready", "", ago(50)),
            ("1010", "1010", "", "not_ready", "", ago(400)),
            ("1002", "王强", "", "not_ready", "用餐", ago(300)),
            ("1007", "1007", "", "ringing", "", ago(5)),
            ("1001", "李娜", "售后一组", "on_call", "", ago(120)),
            ("1006", "1006", "", "wrap_up", "", ago(20)),
            ("1009", "周八", "", "offline", "", ago(4000)),
            ("1008", "孙七", "", "offline", "", ago(3000)),
            ("1003", "张伟", "", "offline", "", None),
        ],
        "talk": [185.5, 62.3],
        "callbacks_due": 3,
    }


def test_the_wallboard_counts_every_figure(database) -> None:
    floor = seed_floor(database)
    scenarios: list[Scenario] = floor["scenarios"]
    with database.session() as session:
        board = wallboard_summary(session, ZONE, THREE_RINGS, unmasked=False, now=NOW, not_agents={"1999"}, names=NAMES)
        unmasked = wallboard_summary(
            session, ZONE, THREE_RINGS, unmasked=True, now=NOW, not_agents={"1999"}, names=NAMES
        )

    assert board["now"] == "2026-12-01T14:00:00.000+08:00" and board["day"] == "2026-12-01"

    # the agents: by state in the board's order, the longest in a state first, never-seen agents last
    agents = floor["agents"]
    assert [a[0] for a in agents] == [
        a[0] for a in sorted(agents, key=lambda a: (STATE_ORDER.index(a[3]), a[5] is None, a[5] or NOW))
    ]
    assert board["agents"] == [
        {
            "extension": extension,
            "name": name,
            "team": team,
            "state": state,
            "reason": reason,
            "label": f"小休({reason})" if reason else LABELS[state],
            "since": local_iso(since) if since else None,
            "in_state_s": (NOW - since).total_seconds() if since else None,
        }
        for extension, name, team, state, reason, since in agents
    ]
    per_state = Counter(a[3] for a in agents)
    assert board["states"] == [{"state": s, "label": LABELS[s], "agents": per_state[s]} for s in STATE_ORDER]

    # the calls ringing now, oldest first, numbers masked for a supervisor, in full for an admin
    ringing = sorted((s for s in scenarios if s.expected == "ringing"), key=lambda s: s.arrived)
    assert board["ringing"] == [
        {
            "remote_number": masked(s.number),
            "arrived_at": local_iso(s.arrived),
            "wait_s": (NOW - s.arrived).total_seconds(),
        }
        for s in ringing
    ]
    assert [c["remote_number"] for c in unmasked["ringing"]] == [s.number for s in ringing]
    assert board["longest_wait_s"] == 14.0 and board["longest_waiting_since"] == local_iso(ago(14))

    # today's service level, over the calls that have ended
    expected = expected_level(scenarios)
    assert (expected["calls"], expected["ended"], expected["answered_in_time"]) == (12, 10, 4)
    level = board["service_level"]
    assert level == {
        **expected,
        "ringing": len(ringing),
        "answered_rate": percent(expected["answered"], expected["ended"]),
        "overflow_callback_rate": percent(expected["overflow_callback"], expected["ended"]),
        "overflow_no_callback_rate": percent(expected["overflow_no_callback"], expected["ended"]),
        "unknown_rate": percent(expected["unknown"], expected["ended"]),
    }
    assert level["service_level"] == 40.0 and level["abandoned_rate"] == 10.0

    # talk time of today's answered, ended calls; the callbacks due now
    talk = floor["talk"]
    assert board["handle_time"] == {"calls": len(talk), "average_s": round(sum(talk) / len(talk), 1)}
    assert board["callbacks_due"] == floor["callbacks_due"]

    # what ticks by itself is no change; a call leaving its grace (abandoned now) is one
    with database.session() as session:
        second_later = wallboard_summary(
            session, ZONE, THREE_RINGS, unmasked=False, now=NOW + timedelta(seconds=1), not_agents={"1999"}, names=NAMES
        )
        after_grace = wallboard_summary(
            session, ZONE, THREE_RINGS, unmasked=False, now=NOW + timedelta(seconds=6), not_agents={"1999"}, names=NAMES
        )
    assert second_later != board and unchanging(second_later) == unchanging(board)
    assert unchanging(after_grace) != unchanging(board)
    assert after_grace["service_level"]["abandoned"] == expected["abandoned"] + 1
    assert [c["arrived_at"] for c in after_grace["ringing"]] == [local_iso(ago(7))]


def test_an_empty_day_has_no_rates(database) -> None:
    """No ended team call: every rate is None (shown as —), not 0 % or 100 %; nobody ringing."""
    with database.session() as session:
        note_arrival(session, TeamCallSeen("only", "8000", "13912340000", ago(3)))
        board = wallboard_summary(session, ZONE, THREE_RINGS, unmasked=False, now=NOW, not_agents={"1999"}, names=NAMES)
    level = board["service_level"]
    assert (level["calls"], level["ended"], level["ringing"]) == (1, 0, 1)
    assert all(value is None for key, value in level.items() if key.endswith("rate") or key == "service_level")
    assert board["handle_time"] == {"calls": 0, "average_s": None} and board["agents"] == []
    assert board["callbacks_due"] == 0 and board["longest_wait_s"] == 3.0


# ------------------------------------------------------------------------------------------ the API, live


def test_the_wallboard_api_and_page_by_role(console: dict) -> None:
    database = console["database"]
    now = datetime.now(UTC)
    with database.session() as session:
        note_arrival(session, TeamCallSeen("api-1", "8000", "13912345678", now - timedelta(seconds=2)))
    admin, supervisor, reviewer, anonymous = (client_as(console, n) for n in ("zhao", "wang", "lin", None))
    board = supervisor.get("/api/live/wallboard").json()
    assert [c["remote_number"] for c in board["ringing"]] == ["139****5678"]
    assert [c["remote_number"] for c in admin.get("/api/live/wallboard").json()["ringing"]] == ["13912345678"]
    assert reviewer.get("/api/live/wallboard").status_code == 403
    assert anonymous.get("/api/live/wallboard").status_code == 401
    # the seeded agents have calls but no state: offline, with no time in state
    assert [(a["extension"], a["state"], a["since"]) for a in board["agents"]] == [
        ("1001", "offline", None),
        ("1002", "offline", None),
    ]

    page = supervisor.get("/wallboard")
    assert page.status_code == 200 and "实时看板" in page.text and "13912345678" not in page.text
    initial = re.search(r'<script id="wallboard-initial" type="application/json">(.*?)</script>', page.text, re.S)
    assert json.loads(initial.group(1))["ringing"][0]["remote_number"] == "139****5678"
    assert "13912345678" in admin.get("/wallboard").text
    assert reviewer.get("/wallboard").status_code == 403
    assert anonymous.get("/wallboard").status_code == 401
    assert (
        'href="/wallboard"' in supervisor.get("/calls").text and 'href="/wallboard"' not in reviewer.get("/calls").text
    )


def test_the_stream_sends_the_board_only_when_it_changes(console: dict) -> None:
    """The first event at once; none while only the clock moves; one when a call's grace runs out (a change
    no desk writes), and one when another desk records a state."""
    database = console["database"]
    ring_ended = datetime.now(UTC)
    with database.session() as session:
        note_arrival(session, TeamCallSeen("sse-1", "8000", "13912345678", ring_ended - timedelta(seconds=8)))
        note_ring_ended(session, "sse-1", ring_ended)
    with serving(console["app"]) as base, httpx.Client(base_url=base, timeout=httpx.Timeout(10, read=40)) as client:
        assert client.post("/api/login", json={"username": "wang", "password": PASSWORD}).status_code == 200
        with client.stream("GET", "/api/live/wallboard/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            received = sse_events(stream.iter_lines(), wait_s=30)
            first = next(received)
            assert first["event"] == "wallboard"
            assert [c["remote_number"] for c in first["data"]["ringing"]] == ["139****5678"]

            second = next(received)  # polled every 2 s meanwhile: nothing sent until the grace ran out
            assert datetime.fromisoformat(second["data"]["now"]) >= ring_ended + OVERFLOW_GRACE
            assert second["data"]["ringing"] == [] and second["data"]["longest_wait_s"] is None
            today = today_start(datetime.now(UTC))
            if ring_ended >= today:  # (not when the test straddles midnight)
                assert second["data"]["service_level"]["abandoned"] == 1

            with database.session() as session:  # another desk: agent 1001 signs in
                record_state(session, "1001", "ready", at=datetime.now(UTC))
            third = next(received)
            assert [(a["extension"], a["state"]) for a in third["data"]["agents"]] == [
                ("1001", "ready"),
                ("1002", "offline"),
            ]


def today_start(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(ZONE).date(), time(), ZONE)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_supervisor_watches_the_wallboard_update(console: dict, browser) -> None:
    """The page follows the store: a state another desk records and a team call arriving, then answered,
    show up without a reload; the time in state counts on by itself."""
    from selenium.webdriver.common.by import By

    from tests.test_web_browser import sign_in

    database = console["database"]
    with database.session() as session:
        record_state(session, "1002", "not_ready", "培训", at=datetime.now(UTC) - timedelta(minutes=3))
    with serving(console["app"]) as base:
        sign_in(browser, base, "/wallboard", "wang")
        wait_for(browser, lambda d: "已连接" in d.find_element(By.ID, "wallboard-status").text)
        assert browser.find_element(By.ID, "sl-rate").text == "—"  # no team call yet: no made-up figure
        lane = browser.find_element(By.CSS_SELECTOR, ".lane.not_ready .agent[data-extension='1002']")
        assert "王强" not in lane.text and "1002" in lane.text and "(培训)" in lane.text  # no name: the extension
        assert re.fullmatch(r"3:0\d", lane.find_element(By.CLASS_NAME, "in-state").text)
        assert browser.find_element(By.CSS_SELECTOR, ".lane.offline h3").text == "离线 1"

        with database.session() as session:  # another desk: 1001 becomes ready
            record_state(session, "1001", "ready", at=datetime.now(UTC))
        ready = wait_for(
            browser, lambda d: d.find_element(By.CSS_SELECTOR, ".lane.ready .agent[data-extension='1001']")
        )
        first = ready.find_element(By.CLASS_NAME, "in-state").text
        wait_for(
            browser,
            lambda d: (
                d.find_element(By.CSS_SELECTOR, ".lane.ready .agent[data-extension='1001'] .in-state").text != first
            ),
        )  # counts on with no event from the server
        assert browser.find_element(By.CSS_SELECTOR, ".lane.offline h3").text == "离线 0"

        arrived = datetime.now(UTC)
        with database.session() as session:  # a caller rings the team number
            note_arrival(session, TeamCallSeen("browser-1", "8000", "13912345678", arrived))
        row = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#ringing-calls tr.ringing-call"))
        assert row.find_element(By.CLASS_NAME, "phone").text == "139****5678"
        assert browser.find_element(By.ID, "ringing-count").text == "1"
        assert "最长等待" in browser.find_element(By.ID, "longest-wait").text

        with database.session() as session:
            assert claim(
                session,
                TeamCallSeen("browser-1", "8000", "13912345678", arrived),
                "1001",
                arrived + timedelta(seconds=3),
            )
        wait_for(browser, lambda d: d.find_element(By.ID, "sl-rate").text != "—")
        if arrived >= today_start(datetime.now(UTC)):
            assert browser.find_element(By.ID, "sl-rate").text == "100.0%"
            assert browser.find_element(By.ID, "sl-of").text.startswith("1 / 1")
            assert browser.find_element(By.ID, "abandoned-rate").text == "0.0%"
        assert browser.find_element(By.ID, "ringing-count").text == "0"
        assert not browser.find_elements(By.CSS_SELECTOR, "#ringing-calls tr.ringing-call")


# ------------------------------------------------------------------------------------------ the scorecards


PERIOD = {"since": "2026-11-02", "until": "2026-11-10"}  # Monday 2 to Tuesday 10 November


def on(day: str, clock: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time.fromisoformat(clock), ZONE)


def period_scenarios() -> list[Scenario]:
    return [
        Scenario("before", on("2026-11-01", "23:59:59"), "elsewhere", answer=2.0),
        Scenario("d2-a", on("2026-11-02", "09:00"), "answered", answer=3.0),
        Scenario("d2-b", on("2026-11-02", "09:10"), "answered", answer=20.0),
        Scenario("d2-c", on("2026-11-02", "10:00"), "overflow_callback", ring_ended=12.5, overflow=12.6, settled=True),
        Scenario("d2-d", on("2026-11-02", "23:59:59"), "abandoned", ring_ended=12.5),
        Scenario("d3-a", on("2026-11-03", "00:00"), "answered", answer=5.0),
        Scenario(
            "d3-b", on("2026-11-03", "11:00"), "overflow_no_callback", ring_ended=12.5, overflow=12.6, settled=True
        ),
        Scenario("d3-c", on("2026-11-03", "12:00"), "overflow_no_callback", ring_ended=12.5, overflow=12.6),
        Scenario("d9-a", on("2026-11-09", "12:00"), "answered", answer=2.0),
        Scenario("d9-b", on("2026-11-09", "12:30"), "answered", answer=15.5),
        Scenario("after", on("2026-11-11", "00:00"), "elsewhere", answer=2.0),
    ]


def test_the_scorecards_report_the_service_level_per_day_and_week(console: dict) -> None:
    scenarios = period_scenarios()
    scenarios[3].callback = True
    with console["database"].session() as session:  # the callback the overflow caller asked for
        asked_for = Callback(phone="13912340003", due_at=datetime.now(UTC))
        session.add(asked_for)
        session.flush()
        callback_id = asked_for.id
    seed(console["database"], scenarios, callback_id=callback_id)
    since, until = (date.fromisoformat(PERIOD[k]) for k in ("since", "until"))
    in_period = [s for s in scenarios if s.expected != "elsewhere"]
    by_day: dict[date, list[Scenario]] = defaultdict(list)
    for s in in_period:
        by_day[s.arrived.astimezone(ZONE).date()].append(s)
    days = [since + timedelta(days=n) for n in range((until - since).days + 1)]
    expected_days = [{"day": day.isoformat(), **expected_level(by_day[day])} for day in days]
    weeks: dict[tuple[int, int], list[date]] = defaultdict(list)
    for day in days:
        weeks[day.isocalendar()[:2]].append(day)
    expected_weeks = [
        {
            "week": f"{year}-W{week:02d}",
            "since": found[0].isoformat(),
            "until": found[-1].isoformat(),
            **expected_level([s for day in found for s in by_day[day]]),
        }
        for (year, week), found in weeks.items()
    ]
    assert [(w["week"], w["since"], w["until"]) for w in expected_weeks] == [
        ("2026-W45", "2026-11-02", "2026-11-08"),
        ("2026-W46", "2026-11-09", "2026-11-10"),
    ]

    client = client_as(console, "lin")  # a reviewer sees the scorecards
    card = client.get("/api/scorecards", params=PERIOD).json()
    assert card["service_level_days"] == expected_days
    assert card["service_level_weeks"] == expected_weeks
    assert expected_days[0]["service_level"] == 25.0 and expected_days[-1]["service_level"] is None
    filtered = client.get("/api/scorecards", params={**PERIOD, "agent": "1002"}).json()
    assert filtered["service_level_days"] == expected_days  # the whole line's, whatever the filter

    page = client.get("/scorecards", params=PERIOD).text
    section = re.search(r'<section id="service-levels">.*?</section>', page, re.S).group(0)
    assert "团队热线服务水平" in section and "2026-W45" in section and "2026-11-02 至 2026-11-08" in section
    assert "25.0% <small>(1/4)</small>" in section  # 2 November: one of four ended calls within three rings
    day_10 = re.search(r"<tr><td>2026-11-10</td>.*?</tr>", section, re.S).group(0)
    assert day_10.count("—") == 3  # nothing ended that day: no rate

    from contactcenter.web.exports import SERVICE_LEVEL_COLUMNS

    heading = {"day": "日期", **{column.key: column.title for column in SERVICE_LEVEL_COLUMNS}}
    daily = client.get("/api/export/scorecards.csv", params={**PERIOD, "part": "service_level_days"})
    rows = list(csv.DictReader(io.StringIO(daily.text.lstrip("\ufeff"))))
    assert [row["日期"] for row in rows] == [d["day"] for d in expected_days]
    for row, want in zip(rows, expected_days, strict=True):
        assert row == {heading[key]: "—" if value is None else str(value) for key, value in want.items()}
    weekly = client.get("/api/export/scorecards.csv", params={**PERIOD, "part": "service_level_weeks"})
    weeks_read = list(csv.DictReader(io.StringIO(weekly.text.lstrip("\ufeff"))))
    assert [r["周"] for r in weeks_read] == ["2026年第45周", "2026年第46周"]

    book = load_workbook(io.BytesIO(client.get("/api/export/scorecards.xlsx", params=PERIOD).content))
    header, *sheet_days = list(book["服务水平(日)"].values)
    assert list(header) == [heading[key] for key in expected_days[0]]
    # real dates; a rate with no figure is an empty cell here, so that the sheet's chart leaves a gap
    assert [list(r) for r in sheet_days] == [
        [datetime.fromisoformat(value) if key == "day" else value for key, value in want.items()]
        for want in expected_days
    ]
    header, *sheet_weeks = list(book["服务水平(周)"].values)
    assert list(header) == ["周", "开始日期", "结束日期", *(heading[key] for key in expected_days[0] if key != "day")]
    assert len(sheet_weeks) == 2
