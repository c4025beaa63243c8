"""How a call was talked (issue 20, item 5), kept with the call and shown per agent and team, on SQLite and
PostgreSQL: a call's measures and the span of a finding that lasts are stored and read back (also through the
spool kept while the database is down); the scorecard's interruptions per call, speech rate, dead air and talk
ratio are each taken over the calls that have that measure, worked out here by hand from the seeded calls
(calls never analysed and one-leg recordings are left out of n, and a group with none shows no figure); the
page, the API, the CSV and Excel exports carry them; the call's page shows its 通话特征 with "—" for what was
not measured, and a finding that lasts as a span."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from contactcenter.records import (
    CallRecord,
    CallSpeechOutcome,
    ComplianceReport,
    ConversationMeasures,
    RuleHitRecord,
    RuleResult,
    UtteranceRecord,
)
from contactcenter.storage.call_end import end_call, import_spooled_calls
from contactcenter.storage.calls import conversation_of, save_call
from contactcenter.storage.models import Agent, Call, RuleHit
from tests.helpers.web import client_as

PERIOD = {"since": "2026-11-02", "until": "2026-11-10"}
IN_PERIOD = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, among the 30 seeded calls
OUTSIDE = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def both_legs(
    agent: float, customer: float, interruptions: int, dead_air: float, chars: int, speaking: float, rate: bool = True
) -> ConversationMeasures:
    return ConversationMeasures(
        agent_talk_s=agent,
        customer_talk_s=customer,
        overlap_s=1.5,
        non_talk_s=20.0,
        hold_s=0.0,
        interruptions=interruptions,
        dead_air_s=dead_air,
        agent_chars=chars,
        agent_speaking_s=speaking,
        speech_rate_cpm=60.0 * chars / speaking if rate else None,
    )


ONE_LEG = ConversationMeasures(
    both_legs=False, agent_talk_s=50.0, hold_s=4.0, agent_chars=200, agent_speaking_s=45.0, speech_rate_cpm=266.7
)
#: (name, agent, measures, invited): beside the 30 seeded calls, which have no measures at all.
MEASURED: list[tuple[str, str, ConversationMeasures | None, datetime]] = [
    ("a", "1001", both_legs(60.0, 40.0, 2, 6.5, 250, 55.0), IN_PERIOD),
    ("b", "1001", both_legs(30.0, 90.0, 0, 0.0, 100, 25.0), IN_PERIOD + timedelta(minutes=10)),
    ("c", "1001", ONE_LEG, IN_PERIOD + timedelta(minutes=20)),  # a speech rate, nothing else
    ("d", "1001", both_legs(2.0, 80.0, 1, 12.0, 3, 1.5, rate=False), IN_PERIOD + timedelta(minutes=30)),
    ("e", "1002", both_legs(45.0, 45.0, 3, 0.0, 180, 40.0), IN_PERIOD + timedelta(minutes=40)),
    ("f", "1002", both_legs(0.0, 0.0, 0, 30.0, 0, 0.0, rate=False), IN_PERIOD + timedelta(minutes=50)),  # no talk
    ("g", "1003", None, IN_PERIOD + timedelta(minutes=60)),  # audio never analysed
    ("outside", "1001", both_legs(100.0, 1.0, 9, 99.0, 999, 10.0), OUTSIDE),
]
OVERLAP = RuleHitRecord(rule_id="no_interrupting", kind="violation", leg="agent", at_s=12.3, end_s=15.8)
SILENCE = RuleHitRecord(rule_id="no_dead_air", kind="violation", severity="minor", at_s=40.0, end_s=52.0)
BANNED = RuleHitRecord(rule_id="banned_phrases", kind="violation", severity="critical", leg="agent", at_s=8.5)

# Worked out by hand from MEASURED (the seeded calls and g have no measures; "outside" is not in the period):
# 1001: interruptions a, b, d: (2 + 0 + 1) / 3; rate a, b, c: (250 + 100 + 200) / (55 + 25 + 45) * 60 = 264;
#       dead air a, b, d: 6.5 + 0 + 12 = 18.5 over 3; ratio a, b, d: (60 + 30 + 2) / (100 + 120 + 82) = 92 / 302
# 1002: interruptions e, f: 3 / 2; rate e: 180 / 40 * 60; dead air e, f: 30 over 2; ratio e only (f: no talk)
# 1003: nothing measured
# everyone: interruptions 6 / 5; rate 730 / 165 * 60; dead air 48.5 over 5; ratio 137 / 392
EXPECTED: dict[str, dict[str, Any]] = {
    "1001": {
        "interruptions": 3,
        "interruptions_per_call": 1.0,
        "interruption_calls": 3,
        "speech_rate_cpm": 264.0,
        "speech_rate_calls": 3,
        "dead_air_s": 18.5,
        "dead_air_s_per_call": 6.2,
        "dead_air_calls": 3,
        "talk_ratio": 30.5,
        "talk_ratio_calls": 3,
    },
    "1002": {
        "interruptions": 3,
        "interruptions_per_call": 1.5,
        "interruption_calls": 2,
        "speech_rate_cpm": 270.0,
        "speech_rate_calls": 1,
        "dead_air_s": 30.0,
        "dead_air_s_per_call": 15.0,
        "dead_air_calls": 2,
        "talk_ratio": 50.0,
        "talk_ratio_calls": 1,
    },
    "1003": {
        "interruptions": None,
        "interruptions_per_call": None,
        "interruption_calls": 0,
        "speech_rate_cpm": None,
        "speech_rate_calls": 0,
        "dead_air_s": None,
        "dead_air_s_per_call": None,
        "dead_air_calls": 0,
        "talk_ratio": None,
        "talk_ratio_calls": 0,
    },
    "all": {
        "interruptions": 6,
        "interruptions_per_call": 1.2,
        "interruption_calls": 5,
        "speech_rate_cpm": 265.5,
        "speech_rate_calls": 4,
        "dead_air_s": 48.5,
        "dead_air_s_per_call": 9.7,
        "dead_air_calls": 5,
        "talk_ratio": 34.9,
        "talk_ratio_calls": 4,
    },
}
TEAMS = {"1001": "售后一组", "1002": "", "1003": "售后二组"}


def call(name: str, agent: str, invited: datetime, recording: str = "") -> CallRecord:
    return CallRecord(
        sip_call_id=f"talk-{name}",
        agent_extension=agent,
        remote_number="13900139000",
        invited_at=invited,
        answered_at=invited + timedelta(seconds=5),
        ended_at=invited + timedelta(minutes=3),
        rings_before_answer=1,
        disposition="completed",
        hung_up_first="customer",
        recording_path=recording,
    )


def report(measures: ConversationMeasures | None, interrupted: bool = False) -> ComplianceReport:
    """A scored call; the interruption rule judged only where both legs were measured, as the desk does."""
    judged = measures is not None and measures.both_legs
    results = (RuleResult(rule_id="no_interrupting", passed=not interrupted),) if judged else ()
    return ComplianceReport(score=80.0, results=results, conversation=measures)


def seed_measured(database: Any) -> dict[str, int]:
    """The MEASURED calls, a and e with the overlap and the silence as findings; the agents' names and teams
    (1002 in no team). The stored ids by name."""
    ids = {}
    with database.session() as session:
        for name, agent, measures, invited in MEASURED:
            interrupted = name in ("a", "e")
            hits = [OVERLAP, SILENCE, BANNED] if interrupted else [BANNED] if name == "c" else []
            recording = "recordings/a.wav" if name == "a" else ""
            stored = call(name, agent, invited, recording)
            ids[name] = save_call(session, stored, [], hits, report(measures, interrupted))
        for row in session.scalars(select(Agent)):
            row.team = TEAMS[row.extension]
            row.name = {"1001": "李娜", "1002": "王强", "1003": "赵敏"}[row.extension]
    return ids


def talk_of(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in EXPECTED["all"]}


# ------------------------------------------------------------------------------------------------ storage


def test_a_calls_measures_and_the_span_of_its_findings_are_stored_and_read_back(database: Any, tmp_path: Path) -> None:
    measures = MEASURED[0][2]
    assert measures is not None
    transcript = [UtteranceRecord(leg="agent", start_s=1.0, end_s=3.0, text="您好")]
    with database.session() as session:
        whole = save_call(session, call("whole", "1001", IN_PERIOD), transcript, [OVERLAP, BANNED], report(measures))
        one_leg = save_call(session, call("one-leg", "1001", IN_PERIOD), [], [SILENCE], report(ONE_LEG))
        unanalysed = save_call(session, call("unanalysed", "1001", IN_PERIOD), [], [], report(None))
        bare = save_call(session, call("bare", "1001", IN_PERIOD))  # no report at all
    with database.session() as session:
        stored = session.get(Call, whole)
        assert stored.conversation == measures.model_dump(mode="json")
        assert conversation_of(stored.conversation) == measures
        assert conversation_of(session.get(Call, one_leg).conversation) == ONE_LEG  # the unknowns stay None
        assert ONE_LEG.talk_ratio is None and ONE_LEG.interruptions is None
        spans = {(h.rule_id, h.at_s, h.end_s) for h in stored.rule_hits}
        assert spans == {("no_interrupting", 12.3, 15.8), ("banned_phrases", 8.5, None)}
        # not analysed and never reported are SQL NULL, not JSON null: no sum can take them for a measured call
        empty = set(session.scalars(select(Call.id).where(Call.conversation.is_(None))))
        assert empty == {unanalysed, bare}
    with database.session() as session:  # a re-check without audio takes the old measures away; no report keeps them
        save_call(session, call("whole", "1001", IN_PERIOD), transcript, [BANNED], report(None))
        save_call(session, call("one-leg", "1001", IN_PERIOD))
    with database.session() as session:
        assert session.get(Call, whole).conversation is None
        assert [h.end_s for h in session.get(Call, whole).rule_hits] == [None]
        assert conversation_of(session.get(Call, one_leg).conversation) == ONE_LEG
        assert conversation_of({**ONE_LEG.model_dump(mode="json"), "retired_measure": 1}) == ONE_LEG
        assert conversation_of({"agent_talk_s": "a lot"}) is None  # unreadable: not measured, not a page error

    # kept in the spool while the database is down, then stored as it was
    spooled = call("spooled", "1002", IN_PERIOD)
    outcome = CallSpeechOutcome(transcript, report(measures), [OVERLAP])
    end_call(spooled, outcome, None, tmp_path / "spool", None)
    assert import_spooled_calls(database, tmp_path / "spool") == 1
    with database.session() as session:
        row = session.scalar(select(Call).where(Call.sip_call_id == "talk-spooled"))
        assert conversation_of(row.conversation) == measures
        assert [(h.at_s, h.end_s) for h in session.scalars(select(RuleHit).where(RuleHit.call_id == row.id))] == [
            (12.3, 15.8)
        ]


# ---------------------------------------------------------------------------------------------- scorecard


def test_the_scorecard_takes_each_measure_over_the_calls_that_have_it(console: dict) -> None:
    seed_measured(console["database"])
    client = client_as(console, "lin")
    card = client.get("/api/scorecards", params=PERIOD).json()
    assert talk_of(card["totals"]) == EXPECTED["all"]
    assert card["totals"]["calls"] == 30 + 7  # the 30 seeded calls count as calls, not in any measure's n
    assert {g["agent"]: talk_of(g) for g in card["groups"]} == {
        agent: EXPECTED[agent] for agent in ("1001", "1002", "1003")
    }
    teams = client.get("/api/scorecards", params={**PERIOD, "group_by": "team"}).json()
    assert {g["team"]: talk_of(g) for g in teams["groups"]} == {
        "售后一组": EXPECTED["1001"],
        "未分组": EXPECTED["1002"],
        "售后二组": EXPECTED["1003"],
    }
    one = client.get("/api/scorecards", params={**PERIOD, "agent": "1002"}).json()
    assert talk_of(one["totals"]) == EXPECTED["1002"]
    assert (
        talk_of(client.get("/api/scorecards", params={**PERIOD, "team": "售后二组"}).json()["totals"])
        == (EXPECTED["1003"])
    )
    # the interruption rule applied where it was judged (both legs: a, b, d, e, f), not to every scored call;
    # talk_ratio only reports: it applied to none
    rules = {r["rule_id"]: r for r in card["rules"]}
    interrupting = rules["no_interrupting"]
    assert (interrupting["applied_calls"], interrupting["failed_calls"], interrupting["pass_rate"]) == (5, 2, 60.0)
    assert (rules["talk_ratio"]["applied_calls"], rules["talk_ratio"]["pass_rate"]) == (0, None)


def test_the_scorecard_page_shows_the_measures_with_their_n_and_a_dash_where_none(console: dict) -> None:
    seed_measured(console["database"])
    page = client_as(console, "lin").get("/scorecards", params=PERIOD).text
    header = re.search(r'<table id="groups">.*?</thead>', page, re.S).group(0)
    for title in ("打断次数/通", "平均语速(字/分钟)", "冷场秒数/通", "冷场总秒数", "坐席说话占比"):
        assert title in header
    rows = {
        re.search(r"agent=(\d+)", row).group(1): row
        for row in re.findall(r"<tr><td><a href=\"/scorecards\?[^\"]*agent=\d+\">.*?</tr>", page, re.S)
    }
    cells = {agent: re.findall(r'<td class="talk">(.*?)</td>', row, re.S) for agent, row in rows.items()}
    assert cells["1001"] == [
        "1.00 <small>(n = 3)</small>",
        "264 <small>(n = 3)</small>",
        "6.2 <small>(n = 3)</small>",
        "18.5",
        "30.5% <small>(n = 3)</small>",
    ]
    assert cells["1002"][1] == "270 <small>(n = 1)</small>" and cells["1002"][4] == "50.0% <small>(n = 1)</small>"
    assert cells["1003"] == ["—"] * 5  # nothing measured: no figure, never 0
    totals = re.search(r'<div class="cards" id="talk-totals".*?</div>\s*</div>', page, re.S).group(0)
    assert "1.20 <small>(n = 5)</small>" in totals and "266 <small>(n = 4)</small>" in totals
    assert (
        "9.7 <small>(n = 5)</small>" in totals and "共 48.5 秒" in totals and "34.9% <small>(n = 4)</small>" in totals
    )

    nothing = client_as(console, "lin").get("/scorecards", params={**PERIOD, "agent": "1003"}).text
    totals = re.search(r'<div class="cards" id="talk-totals".*?</div>\s*</div>', nothing, re.S).group(0)
    assert "(n =" not in totals and totals.count("<b>—</b>") == 4


TALK_HEADINGS = {
    "interruptions_per_call": "打断次数/通",
    "interruption_calls": "打断统计通话数",
    "speech_rate_cpm": "平均语速(字/分钟)",
    "speech_rate_calls": "语速统计通话数",
    "dead_air_s_per_call": "冷场秒数/通",
    "dead_air_s": "冷场总秒数",
    "dead_air_calls": "冷场统计通话数",
    "talk_ratio": "坐席说话占比(%)",
    "talk_ratio_calls": "说话占比统计通话数",
}


def exported(expected: dict[str, Any], as_text: bool) -> dict[str, Any]:
    """The figures as an export shows them, by heading: "—" for a figure nobody measured."""
    shown = {}
    for key, heading in TALK_HEADINGS.items():
        value = expected[key]
        shown[heading] = "—" if value is None else (str(value) if as_text else value)
    return shown


@pytest.mark.parametrize("group_by", ["agent", "team"])
def test_the_scorecard_exports_carry_the_measures_per_agent_and_team(console: dict, group_by: str) -> None:
    seed_measured(console["database"])
    client = client_as(console, "lin")
    params = {**PERIOD, "group_by": group_by}
    key, title = ("分机", "坐席") if group_by == "agent" else ("班组", "班组")
    labels = {"1001": "1001", "1002": "1002", "1003": "1003"}
    if group_by == "team":
        labels = {"1001": "售后一组", "1002": "未分组", "1003": "售后二组"}

    book = load_workbook(io.BytesIO(client.get("/api/export/scorecards.xlsx", params=params).content))
    header, *rows = list(book[title].values)
    assert list(header[-len(TALK_HEADINGS) :]) == list(TALK_HEADINGS.values())
    by_label = {row[header.index(key)]: dict(zip(header, row, strict=True)) for row in rows}
    for agent, label in labels.items():
        assert {h: by_label[label][h] for h in TALK_HEADINGS.values()} == exported(EXPECTED[agent], False), label
    header, total = list(book["汇总"].values)
    assert {h: dict(zip(header, total, strict=True))[h] for h in TALK_HEADINGS.values()} == exported(
        EXPECTED["all"], False
    )
    number_formats = {
        cell.value: book[title].cell(row=2, column=n).number_format for n, cell in enumerate(book[title][1], 1)
    }
    assert number_formats["打断次数/通"] == "0.00" and number_formats["打断统计通话数"] == "0"

    answer = client.get("/api/export/scorecards.csv", params={**params, "part": "groups"})
    text = answer.content.decode("utf-8").lstrip("\ufeff")
    found = {row[key]: row for row in csv.DictReader(io.StringIO(text))}
    for agent, label in labels.items():
        assert {h: found[label][h] for h in TALK_HEADINGS.values()} == exported(EXPECTED[agent], True), label


def test_the_calls_and_findings_exports_carry_each_calls_measures_and_a_findings_end(console: dict) -> None:
    ids = seed_measured(console["database"])
    client = client_as(console, "lin")
    text = client.get("/api/export/calls.csv", params=PERIOD).content.decode("utf-8").lstrip("\ufeff")
    rows = {int(row["通话编号"]): row for row in csv.DictReader(io.StringIO(text))}

    def shown(call_id: int) -> tuple[str, ...]:
        row = rows[call_id]
        return row["打断次数"], row["语速(字/分钟)"], row["冷场秒数"], row["坐席说话占比(%)"]

    assert shown(ids["a"]) == ("2", "272.7", "6.5", "60.0")  # 250 characters in 55 s; 60 of 100 s of talk
    assert shown(ids["c"]) == ("—", "266.7", "—", "—")  # one leg: a speech rate, nothing else
    assert shown(ids["d"]) == ("1", "—", "12.0", "2.4")  # too little speech for a rate
    assert shown(ids["f"]) == ("0", "—", "30.0", "—")  # nobody spoke: no ratio
    assert shown(ids["g"]) == ("—",) * 4 and shown(console["ids"][0]) == ("—",) * 4  # never analysed

    book = load_workbook(io.BytesIO(client.get("/api/export/findings.xlsx", params=PERIOD).content))
    header, *found = list(book["违规"].values)
    spans = {
        (row[header.index("规则编号")], row[header.index("时间点(秒)")], row[header.index("结束时间点(秒)")])
        for row in found
        if row[header.index("通话编号")] == ids["a"]
    }
    assert spans == {("no_interrupting", 12.3, 15.8), ("no_dead_air", 40.0, 52.0), ("banned_phrases", 8.5, None)}


# ----------------------------------------------------------------------------------------------- call page


def test_the_call_page_shows_how_the_call_was_talked_and_findings_that_last_as_spans(console: dict) -> None:
    ids = seed_measured(console["database"])
    client = client_as(console, "lin")
    page = client.get(f"/calls/{ids['a']}").text
    block = re.search(r'<table id="conversation".*?</table>', page, re.S).group(0)
    figures = dict(re.findall(r'<td id="m-([a-z-]+)">(.*?)</td>', block, re.S))
    assert figures == {
        "agent-talk": "60.0 秒",
        "customer-talk": "40.0 秒",
        "talk-ratio": "60.0%",
        "overlap": "1.5 秒",
        "non-talk": "20.0 秒",
        "hold": "0.0 秒",
        "interruptions": "2",
        "dead-air": "6.5 秒",
        "speech-rate": '273 字/分钟 <small class="muted">(250 字 / 55.0 秒)</small>',
    }
    assert "通话特征" in page and 'id="one-leg"' not in page
    timeline = re.search(r'<div id="timeline".*?</div>', page, re.S).group(0)
    assert 'data-at="12.3" data-end="15.8"' in timeline and 'class="mark hit-violation span"' in timeline
    assert 'data-at="8.5" title=' in timeline  # a moment stays a mark
    times = re.findall(r'<td class="at">(.*?)</td>', page)
    assert times == ["8.5s", "12.3–15.8s", "40.0–52.0s"]

    one_leg = client.get(f"/calls/{ids['c']}").text
    figures = dict(re.findall(r'<td id="m-([a-z-]+)">(.*?)</td>', one_leg, re.S))
    assert [
        figures[k] for k in ("customer-talk", "talk-ratio", "overlap", "non-talk", "interruptions", "dead-air")
    ] == ["—"] * 6
    assert figures["agent-talk"] == "50.0 秒" and figures["hold"] == "4.0 秒" and 'id="one-leg"' in one_leg
    assert 'id="timeline"' not in one_leg and re.findall(r'<td class="at">(.*?)</td>', one_leg) == ["8.5s"]
    spans = re.findall(r'<td class="at">(.*?)</td>', client.get(f"/calls/{ids['e']}").text)
    assert spans == ["8.5s", "12.3–15.8s", "40.0–52.0s"]  # no recording, no timeline: the list gives the span
    no_rate = dict(re.findall(r'<td id="m-([a-z-]+)">(.*?)</td>', client.get(f"/calls/{ids['d']}").text, re.S))
    assert no_rate["speech-rate"] == "—" and no_rate["interruptions"] == "1"
    for never in (ids["g"], console["ids"][0]):
        unanalysed = client.get(f"/calls/{never}").text
        assert 'id="conversation-missing"' in unanalysed and 'id="conversation"' not in unanalysed

    detail = client.get(f"/api/calls/{ids['a']}").json()
    assert detail["conversation"]["talk_ratio"] == 60.0 and detail["conversation"]["interruptions"] == 2
    assert {(f["rule_id"], f["end_s"]) for f in detail["findings"]} == {
        ("no_interrupting", 15.8),
        ("no_dead_air", 52.0),
        ("banned_phrases", None),
    }
    one = client.get(f"/api/calls/{ids['c']}").json()["conversation"]
    assert one["both_legs"] is False and one["talk_ratio"] is None and one["interruptions"] is None
    assert client.get(f"/api/calls/{ids['g']}").json()["conversation"] is None
