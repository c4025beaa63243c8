"""Agent states (就绪 / 小休 / 振铃 / 通话 / 话后处理) on SQLite and PostgreSQL: recording spans, closing the
span a killed desk left open, the times per agent and the occupancy, and the scorecard's 坐席状态时长 table
on the page, in the API and in the exports.

Every expected figure is worked out by hand in the test from the timestamps it records."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from contactcenter.records import CallRecord
from contactcenter.storage import Database
from contactcenter.storage.agent_states import (
    MAX_REASON,
    AgentTimes,
    close_open_spans,
    record_state,
    state_durations,
)
from contactcenter.storage.calls import save_call
from contactcenter.storage.models import Agent, AgentStateSpan, LiveEvent
from tests.helpers.paths import REPO
from tests.helpers.web import client_as

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(clock: str, day: int = 2) -> datetime:
    """A local (Shanghai) time on a day of November 2026: at("09:10:20")."""
    hours, minutes, *seconds = (int(part) for part in clock.split(":"))
    return datetime(2026, 11, day, hours, minutes, seconds[0] if seconds else 0, tzinfo=SHANGHAI)


def seconds(hours: int = 0, minutes: int = 0, secs: int = 0) -> float:
    return float(hours * 3600 + minutes * 60 + secs)


def record(database: Database, extension: str, *changes: tuple[str, str] | tuple[str, str, str]) -> None:
    """Each change (clock, state[, reason]) in its own transaction, as the desk records them."""
    for clock, state, *reason in changes:
        with database.session() as session:
            record_state(session, extension, state, reason[0] if reason else "", at=at(clock))


def spans(database: Database, extension: str) -> list[tuple[str, str, datetime, datetime | None]]:
    with database.session() as session:
        return [
            (s.state, s.reason, s.started_at, s.ended_at)
            for s in session.scalars(
                select(AgentStateSpan)
                .where(AgentStateSpan.agent_extension == extension)
                .order_by(AgentStateSpan.started_at, AgentStateSpan.id)
            )
        ]


# ------------------------------------------------------------------------------------------ recording


def test_a_state_change_closes_the_open_span_and_a_repeat_writes_nothing(database: Database) -> None:
    record(database, "1001", ("09:00", "ready"), ("09:10", "ringing"))
    with database.session() as session:
        first = record_state(session, "1001", "on_call", at=at("09:10:20"))
        again = record_state(session, "1001", "on_call", at=at("09:11"))  # the desk said it twice
        assert again is first
    record(database, "1001", ("09:12", "on_call"), ("09:15", "not_ready", "休息"), ("09:16", "not_ready", "休息"))
    record(database, "1001", ("09:20", "not_ready", "培训"))  # another reason is another span
    assert spans(database, "1001") == [
        ("ready", "", at("09:00"), at("09:10")),
        ("ringing", "", at("09:10"), at("09:10:20")),
        ("on_call", "", at("09:10:20"), at("09:15")),
        ("not_ready", "休息", at("09:15"), at("09:20")),
        ("not_ready", "培训", at("09:20"), None),
    ]
    assert spans(database, "1002") == []


def test_a_clock_stepped_back_never_makes_a_negative_or_overlapping_span(database: Database) -> None:
    record(database, "1001", ("09:00:10", "ready"), ("09:00:05", "ringing"))
    assert spans(database, "1001") == [
        ("ready", "", at("09:00:10"), at("09:00:10")),
        ("ringing", "", at("09:00:10"), None),
    ]


def test_hostile_input_is_refused_before_it_reaches_the_database(database: Database) -> None:
    assert MAX_REASON == 32 == AgentStateSpan.__table__.c.reason.type.length
    with database.session() as session:
        with pytest.raises(ValueError, match="unknown agent state 'lunch'"):
            record_state(session, "1001", "lunch", at=at("09:00"))
        with pytest.raises(ValueError, match="unknown agent state"):
            record_state(session, "1001", "READY", at=at("09:00"))
        with pytest.raises(ValueError, match="10000 characters long; at most 32"):
            record_state(session, "1001", "not_ready", "休" * 10_000, at=at("09:00"))
        with pytest.raises(ValueError, match="only not_ready"):
            record_state(session, "1001", "ready", "休息", at=at("09:00"))
        with pytest.raises(ValueError, match="control characters"):
            record_state(session, "1001", "not_ready", "休息\x00", at=at("09:00"))
        with pytest.raises(ValueError, match="naive"):
            record_state(session, "1001", "ready", at=datetime(2026, 11, 2, 9, 0))
        with pytest.raises(ValueError, match="extension"):
            record_state(session, "  ", "ready", at=at("09:00"))
        with pytest.raises(ValueError, match="at most 64"):
            record_state(session, "1" * 65, "ready", at=at("09:00"))
        with pytest.raises(ValueError, match="unknown agent state"):
            record_state(session, "1001", "ready'; DROP TABLE agent_states; --", at=at("09:00"))
        # the session is still usable, and a reason of exactly 32 characters fits the column on both databases
        record_state(session, "1001", "not_ready", "会" * 32, at=at("09:00"))
    assert spans(database, "1001") == [("not_ready", "会" * 32, at("09:00"), None)]


# ------------------------------------------------------------------------------------------ durations


def test_times_per_state_and_reason_clipped_to_the_period_with_the_open_span_up_to_now(database: Database) -> None:
    record(
        database,
        "1001",
        ("08:30", "ready"),  # before the period: counted from 09:00
        ("09:10", "ringing"),
        ("09:10:20", "on_call"),
        ("09:15:20", "wrap_up"),
        ("09:16:20", "ready"),
        ("09:16:20", "ready"),  # repeated: no new span
        ("09:30", "not_ready", "休息"),
        ("09:45", "not_ready", "培训"),
        ("10:15", "ready"),
        ("10:40", "offline"),  # counted nowhere
        ("11:00", "ready"),  # still open
    )
    assert len(spans(database, "1001")) == 10
    with database.session() as session:
        times = state_durations(session, start=at("09:00"), end=at("11:30"), now=at("11:20"))
    # ready 09:00-09:10, 09:16:20-09:30, 10:15-10:40 and the open 11:00-now(11:20)
    ready = seconds(minutes=10) + seconds(minutes=13, secs=40) + seconds(minutes=25) + seconds(minutes=20)
    assert times["1001"] == AgentTimes(
        extension="1001",
        ready_s=ready,
        ringing_s=20.0,
        talk_s=seconds(minutes=5),
        wrap_up_s=seconds(minutes=1),
        not_ready_s={"休息": seconds(minutes=15), "培训": seconds(minutes=30)},
    )
    found = times["1001"]
    assert ready == 4120.0 and found.not_ready_total_s == 2700.0
    assert found.logged_in_s == 4120 + 20 + 300 + 60 + 2700 == 7200.0  # two hours: 09:00-10:40 and 11:00-11:20
    assert found.occupancy == pytest.approx((300 + 60) / (4120 + 20 + 300 + 60))  # 8 %

    with database.session() as session:
        # the period ends at 09:12: the call is cut at its end
        early = state_durations(session, start=at("09:00"), end=at("09:12"), now=at("11:20"))["1001"]
        # "now" after the period: the open span counts up to the period's end
        late = state_durations(session, start=at("09:00"), end=at("11:30"), now=at("12:00"))["1001"]
        # a period that starts inside the open span: only its part after the start
        tail = state_durations(session, start=at("11:10"), end=at("12:00"), now=at("11:20"))["1001"]
        # a period in which the agent was offline only
        off = state_durations(session, start=at("10:45"), end=at("10:55"), now=at("11:20"))
    assert (early.ready_s, early.ringing_s, early.talk_s, early.wrap_up_s) == (600.0, 20.0, 100.0, 0.0)
    assert early.not_ready_s == {}
    assert late.ready_s == ready - 1200 + 1800
    assert tail == AgentTimes(extension="1001", ready_s=600.0)
    assert off == {}


def test_occupancy_is_none_rather_than_a_fake_figure_when_the_agent_was_never_available(database: Database) -> None:
    record(database, "1002", ("09:00", "not_ready", "会议"), ("09:30", "not_ready"), ("09:40", "offline"))
    record(database, "1003", ("09:00", "ready"), ("10:00", "offline"))
    with database.session() as session:
        times = state_durations(session, start=at("00:00"), end=at("00:00", day=3), now=at("12:00"))
        only = state_durations(session, start=at("00:00"), end=at("00:00", day=3), extensions=["1003"])
        nobody = state_durations(session, start=at("00:00"), end=at("00:00", day=3), extensions=[])
    assert times["1002"].not_ready_s == {"会议": 1800.0, "": 600.0}  # a 小休 without a reason is kept apart
    assert times["1002"].logged_in_s == 2400.0 and times["1002"].available_s == 0
    assert times["1002"].occupancy is None
    assert times["1003"].occupancy == 0.0  # an hour ready and no call: a real 0 %
    assert list(only) == ["1003"] and nobody == {}
    assert AgentTimes(extension="x").occupancy is None


def test_the_period_must_be_aware_and_in_order(database: Database) -> None:
    with database.session() as session:
        with pytest.raises(ValueError, match="naive"):
            state_durations(session, start=datetime(2026, 11, 2), end=at("10:00"))
        with pytest.raises(ValueError, match="end is before start"):
            state_durations(session, start=at("10:00"), end=at("09:00"))


# ------------------------------------------------------------------------------- a desk killed with -9

KILLED_DESK = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import datetime
    from contactcenter.storage import Database
    from contactcenter.storage.agent_states import record_state
    from contactcenter.storage.models import LiveEvent

    database = Database(sys.argv[1])
    for clock, state in (("09:00", "ready"), ("09:10", "ringing"), ("09:10:20", "on_call")):
        with database.session() as session:
            record_state(session, "1001", state, at=datetime.fromisoformat(f"2026-11-02T{clock}+08:00"))
    with database.session() as session:  # the live view's events while the call goes on
        for clock, kind in (("09:10:20", "answered"), ("09:12:05", "utterance")):
            when = datetime.fromisoformat(f"2026-11-02T{clock}+08:00")
            session.add(LiveEvent(sip_call_id="c1", kind=kind, agent_extension="1001", at=when, data={}))
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_span_left_open_by_a_killed_desk_is_closed_at_the_last_moment_it_was_seen(
    database: Database, database_url: str
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_DESK, database_url], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert killed.returncode == -9, killed.stderr
    assert spans(database, "1001")[-1] == ("on_call", "", at("09:10:20"), None)

    # left open, it would count as talk until whoever looks: the phantom the start-up rule prevents
    with database.session() as session:
        phantom = state_durations(session, start=at("00:00"), end=at("00:00", day=3), now=at("23:00"))
    assert phantom["1001"].talk_s == seconds(hours=13, minutes=49, secs=40)

    with database.session() as session:  # the next desk starts at 23:00
        closed = close_open_spans(session, "1001", at("23:00"))
        assert [(s.state, s.ended_at) for s in closed] == [("on_call", at("09:12:05"))]  # the last live event
        record_state(session, "1001", "ready", at=at("23:00"))
    with database.session() as session:
        times = state_durations(session, start=at("00:00"), end=at("00:00", day=3), now=at("23:30"))
    assert times["1001"] == AgentTimes(
        extension="1001", ready_s=seconds(minutes=10 + 30), ringing_s=20.0, talk_s=seconds(minutes=1, secs=45)
    )
    with database.session() as session:  # nothing open any more: a second close changes nothing
        assert close_open_spans(session, "1002", at("23:40")) == []


def test_after_a_crash_with_nothing_later_known_the_span_gets_no_length(database: Database) -> None:
    record(database, "1002", ("09:00", "ready"))
    record(database, "1003", ("09:00", "ready"))
    with database.session() as session:  # 1003 took a call the desk stored (its end is the evidence)
        save_call(
            session,
            CallRecord(
                sip_call_id="evidence",
                remote_number="13800138000",
                agent_extension="1003",
                invited_at=at("10:00"),
                answered_at=at("10:00:05"),
                ended_at=at("10:03"),
            ),
        )
        session.add(  # another agent's event is no evidence for these two
            LiveEvent(sip_call_id="other", kind="ringing", agent_extension="1009", at=at("12:00"), data={})
        )
    with database.session() as session:
        close_open_spans(session, "1002", at("08:00", day=3))
        close_open_spans(session, "1003", at("08:00", day=3))
    assert spans(database, "1002") == [("ready", "", at("09:00"), at("09:00"))]
    assert spans(database, "1003") == [("ready", "", at("09:00"), at("10:03"))]
    with database.session() as session:
        times = state_durations(session, start=at("00:00"), end=at("00:00", day=4), now=at("09:00", day=3))
    assert "1002" not in times and times["1003"].ready_s == seconds(hours=1, minutes=3)


def test_a_clean_shutdown_closes_the_open_span_at_its_moment(database: Database) -> None:
    record(database, "1001", ("09:00", "ready"), ("09:30", "not_ready", "用餐"))
    with database.session() as session:
        closed = close_open_spans(session, "1001", at("17:00"), clean_shutdown=True)
    assert [(s.state, s.reason, s.ended_at) for s in closed] == [("not_ready", "用餐", at("17:00"))]
    with database.session() as session:
        count = session.scalar(
            select(func.count()).select_from(AgentStateSpan).where(AgentStateSpan.ended_at.is_(None))
        )
    assert count == 0


# ------------------------------------------------------------------------------------------ the console

PERIOD = {"since": "2026-11-02", "until": "2026-11-10"}


def seed_states(console: dict) -> None:
    """On 3 November: 1001 (李娜, 售后一组) takes a call and has two 小休s, one for a reason no longer in the
    settings; 1002 (no name, no team) is in a meeting all hour; 1009 is not in the agents table."""
    database = console["database"]
    with database.session() as session:
        for agent in session.scalars(select(Agent)):
            agent.name, agent.team = {"1001": ("李娜", "售后一组"), "1002": ("", "")}[agent.extension]
    day = 3
    for extension, changes in {
        "1001": [
            ("09:00", "ready"),
            ("09:20", "ringing"),
            ("09:20:15", "on_call"),
            ("09:25:15", "wrap_up"),
            ("09:26:15", "not_ready", "休息"),
            ("09:41:15", "not_ready", "私事"),
            ("09:51:15", "ready"),
            ("10:00", "offline"),
        ],
        "1002": [("09:00", "not_ready", "会议"), ("10:00", "offline")],
        "1009": [("09:00", "ready"), ("09:30", "offline")],
    }.items():
        for clock, state, *reason in changes:
            with database.session() as session:
                record_state(session, extension, state, reason[0] if reason else "", at=at(clock, day))


# 1001 by hand: ready 09:00-09:20 and 09:51:15-10:00 = 1200 + 525; ringing 15; talk 300; wrap-up 60;
# 休息 900; 私事 600; logged in 3600; occupancy 360 / 2100 = 17.1 %
LI_NA = {
    "agent": "1001",
    "name": "李娜",
    "team": "售后一组",
    "ready_s": 1725,
    "ringing_s": 15,
    "talk_s": 300,
    "wrap_up_s": 60,
    "not_ready_s": {"休息": 900, "培训": 0, "会议": 0, "用餐": 0, "私事": 600},
    "logged_in_s": 3600,
    "occupancy": 17.1,
}


def test_the_scorecard_api_has_each_agents_state_times(console: dict) -> None:
    seed_states(console)
    client = client_as(console, "lin")
    card = client.get("/api/scorecards", params=PERIOD).json()
    assert card["not_ready_reasons"] == ["休息", "培训", "会议", "用餐", "私事"]  # the settings', then others
    rows = {row["agent"]: row for row in card["agent_states"]}
    assert rows["1001"] == LI_NA
    assert rows["1002"]["occupancy"] is None and rows["1002"]["logged_in_s"] == 3600
    assert rows["1002"]["name"] == "" and rows["1002"]["team"] == "未分组"
    assert rows["1002"]["not_ready_s"]["会议"] == 3600
    assert rows["1009"]["ready_s"] == 1800 and rows["1009"]["occupancy"] == 0.0
    assert card["totals"]["calls"] == 30  # the other tables are as before

    one = client.get("/api/scorecards", params={**PERIOD, "agent": "1002"}).json()
    assert [row["agent"] for row in one["agent_states"]] == ["1002"]
    team = client.get("/api/scorecards", params={**PERIOD, "team": "售后一组"}).json()
    assert [row["agent"] for row in team["agent_states"]] == ["1001"]
    no_team = client.get("/api/scorecards", params={**PERIOD, "team": "未分组"}).json()
    assert [row["agent"] for row in no_team["agent_states"]] == ["1002", "1009"]
    by_team = client.get("/api/scorecards", params={**PERIOD, "group_by": "team"}).json()
    assert len(by_team["agent_states"]) == 3  # the state table stays per agent
    before = client.get("/api/scorecards", params={"since": "2026-11-04", "until": "2026-11-10"}).json()
    assert before["agent_states"] == [] and before["not_ready_reasons"] == ["休息", "培训", "会议", "用餐"]


def test_the_scorecard_page_shows_the_state_times_by_name(console: dict) -> None:
    seed_states(console)
    page = client_as(console, "lin").get("/scorecards", params=PERIOD)
    assert page.status_code == 200
    table = re.search(r'<section id="agent-states">.*?</section>', page.text, re.S).group(0)
    assert "坐席状态时长" in table
    headings = re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", table)
    assert headings == [
        "坐席",
        "班组",
        "就绪",
        "振铃",
        "通话",
        "话后处理",
        "小休(休息)",
        "小休(培训)",
        "小休(会议)",
        "小休(用餐)",
        "小休(私事)",
        "在线时长",
        "占用率",
    ]
    rows = {
        re.sub(r"<[^>]+>", "", cells[0]): cells[1:]
        for cells in (
            re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
        )
        if cells
    }
    assert rows["李娜"] == [
        "售后一组",
        "0:28:45",
        "0:00:15",
        "0:05:00",
        "0:01:00",
        "0:15:00",
        "0:00:00",
        "0:00:00",
        "0:00:00",
        "0:10:00",
        "1:00:00",
        "17.1%",
    ]
    assert rows["1002"][-2:] == ["1:00:00", "—"]  # no name: the extension; never available: no occupancy
    assert rows["1002"][7] == "1:00:00"  # 会议
    assert rows["1009"][-1] == "0.0%"

    empty = client_as(console, "lin").get("/scorecards", params={"since": "2026-11-04", "until": "2026-11-10"})
    assert "这段时间没有坐席状态记录" in empty.text


def test_the_scorecard_exports_have_the_state_times_with_chinese_headings(console: dict) -> None:
    seed_states(console)
    client = client_as(console, "lin")
    answer = client.get("/api/export/scorecards.csv", params={**PERIOD, "part": "agent_states"})
    assert answer.status_code == 200 and answer.text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(answer.text.lstrip("\ufeff"))))
    assert list(rows[0]) == [
        "分机",
        "坐席",
        "班组",
        "就绪",
        "振铃",
        "通话",
        "话后处理",
        "小休(休息)",
        "小休(培训)",
        "小休(会议)",
        "小休(用餐)",
        "小休(私事)",
        "在线时长",
        "占用率(%)",
    ]
    assert rows[0] == {
        "分机": "1001",
        "坐席": "李娜",
        "班组": "售后一组",
        "就绪": "0:28:45",
        "振铃": "0:00:15",
        "通话": "0:05:00",
        "话后处理": "0:01:00",
        "小休(休息)": "0:15:00",
        "小休(培训)": "0:00:00",
        "小休(会议)": "0:00:00",
        "小休(用餐)": "0:00:00",
        "小休(私事)": "0:10:00",
        "在线时长": "1:00:00",
        "占用率(%)": "17.1",
    }
    assert (rows[1]["坐席"], rows[1]["占用率(%)"]) == ("1002", "—")

    book = load_workbook(io.BytesIO(client.get("/api/export/scorecards.xlsx", params=PERIOD).content))
    assert "坐席状态" in book.sheetnames
    header, *agents = list(book["坐席状态"].values)
    assert header[:7] == ("分机", "坐席", "班组", "就绪", "振铃", "通话", "话后处理")
    li_na = dict(zip(header, agents[0], strict=True))
    assert li_na["就绪"] == timedelta(seconds=1725) and li_na["在线时长"] == timedelta(hours=1)  # real durations
    assert li_na["小休(私事)"] == timedelta(minutes=10) and li_na["占用率(%)"] == 17.1
    assert book["坐席状态"]["D2"].number_format == "[hh]:mm:ss"
    assert dict(zip(header, agents[1], strict=True))["占用率(%)"] == "—"


def test_the_epoch_arithmetic_keeps_microsecond_spans_honest(database: Database) -> None:
    """Sub-second spans are summed to the millisecond on both databases, never negative."""
    base = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    with database.session() as session:
        record_state(session, "1001", "ready", at=base)
        record_state(session, "1001", "ringing", at=base + timedelta(seconds=1, microseconds=500_000))
        record_state(session, "1001", "offline", at=base + timedelta(seconds=2, microseconds=250_000))
    with database.session() as session:
        found = state_durations(session, start=base, end=base + timedelta(hours=1))["1001"]
    assert found.ready_s == pytest.approx(1.5, abs=0.002) and found.ringing_s == pytest.approx(0.75, abs=0.002)
