"""Scorecards (per agent and team, per rule, trend, rings, survey), the findings and scorecard exports, the
agents command, and every API route's answer for every role, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from contactcenter.speech.rules import load_rules
from contactcenter.storage.customers import upsert_customer
from contactcenter.storage.models import Agent, SurveyResponse
from tests.helpers.paths import REPO
from tests.helpers.settings import desk_environment
from tests.helpers.web import client_as

PERIOD = {"since": "2026-11-02", "until": "2026-11-10"}


def add_teams_and_surveys(console: dict) -> None:
    """1001 is in 售后一组, 1002 in no team; calls 0 (1001) and 1 (1002) were surveyed."""
    ids = console["ids"]
    with console["database"].session() as session:
        for agent in session.query(Agent):
            agent.name, agent.team = {"1001": ("李娜", "售后一组"), "1002": ("王强", "")}[agent.extension]
        session.add_all(
            [
                SurveyResponse(call_id=ids[0], question_key="attitude", answer=5),
                SurveyResponse(call_id=ids[0], question_key="solved", answer=4),
                SurveyResponse(call_id=ids[0], question_key="speed", answer=None, outcome="timeout"),
                SurveyResponse(call_id=ids[1], question_key="attitude", answer=3),
            ]
        )


def test_the_scorecard_per_agent_rule_day_ring_and_survey(console: dict) -> None:
    add_teams_and_surveys(console)
    card = client_as(console, "lin").get("/api/scorecards", params=PERIOD).json()
    # each agent: 15 calls, 5 of them said 我不知道 (40 points), 10 did not (95): 76.7 on average, 10/15 pass
    assert card["totals"] == {
        "calls": 30,
        "answered": 30,
        "average_score": 76.7,
        "pass_rate": 66.7,
        "not_checked": 0,
        "partly_checked": 0,
        "answered_within_3_rings": 100.0,
        # how the calls were talked: the seeded calls were never analysed, so no figure, each over no call
        **dict.fromkeys(("interruptions", "interruptions_per_call", "speech_rate_cpm", "dead_air_s"), None),
        **dict.fromkeys(("dead_air_s_per_call", "talk_ratio"), None),
        **dict.fromkeys(("interruption_calls", "speech_rate_calls", "dead_air_calls", "talk_ratio_calls"), 0),
    }
    assert [
        (g["agent"], g["name"], g["team"], g["calls"], g["average_score"], g["pass_rate"]) for g in card["groups"]
    ] == [("1001", "李娜", "售后一组", 15, 76.7, 66.7), ("1002", "王强", "未分组", 15, 76.7, 66.7)]
    assert card["rules"][0] == {
        "rule_id": "banned_phrases",
        "severity": "critical",
        "failed_calls": 10,
        "applied_calls": 30,
        "pass_rate": 66.7,
    }
    # every rule in force has a row: one that never failed shows 0 failures, and no pass rate if it never applied
    listed = {r["rule_id"]: r for r in card["rules"]}
    assert set(listed) == {rule.id for rule in load_rules(REPO / "scripts_zh" / "rules.toml", ["示例科技"]).rules}
    assert all(r["failed_calls"] == 0 for r in card["rules"][1:])
    assert all((r["pass_rate"] is None) == (r["applied_calls"] == 0) for r in card["rules"])
    assert len(card["trend"]) == 9  # one row per local day, 2 to 10 November
    assert card["trend"][0] == {
        "day": "2026-11-02",
        "calls": 3,
        "answered": 3,
        "average_score": 76.7,
        "pass_rate": 66.7,
        "not_checked": 0,
        "partly_checked": 0,
        "answered_within_3_rings": 100.0,
    }  # 09:00, 16:00, 23:00
    assert card["rings"] == [
        {"rings": "1", "calls": 10},
        {"rings": "2", "calls": 10},
        {"rings": "3", "calls": 10},
        {"rings": "4+", "calls": 0},
        {"rings": "未接", "calls": 0},
    ]
    survey = {q["question"]: q for q in card["survey"]}
    assert survey["attitude"]["average"] == 4.0 and survey["attitude"]["distribution"]["3"] == 1
    assert survey["speed"] == {
        "question": "speed",
        "asked": 1,
        "answered": 0,
        "average": None,
        "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0},
    }

    one = client_as(console, "lin").get("/api/scorecards", params={**PERIOD, "agent": "1001"}).json()
    assert [g["agent"] for g in one["groups"]] == ["1001"] and one["rules"][0]["failed_calls"] == 5
    assert {q["question"]: q["average"] for q in one["survey"]}["attitude"] == 5.0  # only call 0 is 1001's

    teams = client_as(console, "lin").get("/api/scorecards", params={**PERIOD, "group_by": "team"}).json()
    assert [(g["team"], g["calls"]) for g in teams["groups"]] == [("售后一组", 15), ("未分组", 15)]
    no_team = client_as(console, "lin").get("/api/scorecards", params={**PERIOD, "team": "未分组"}).json()
    assert no_team["totals"]["calls"] == 15 and [g["agent"] for g in no_team["groups"]] == ["1002"]

    empty = client_as(console, "lin").get("/api/scorecards", params={"since": "2025-01-01", "until": "2025-01-03"})
    assert empty.json()["totals"]["average_score"] is None
    assert all((r["failed_calls"], r["applied_calls"], r["pass_rate"]) == (0, 0, None) for r in empty.json()["rules"])
    client = client_as(console, "lin")
    assert client.get("/api/scorecards", params={"since": "2026-11-10", "until": "2026-11-01"}).status_code == 422
    assert client.get("/api/scorecards", params={"since": "2024-01-01", "until": "2026-11-01"}).status_code == 422


def test_the_scorecard_page_draws_its_charts_on_the_server(console: dict) -> None:
    add_teams_and_surveys(console)
    page = client_as(console, "lin").get("/scorecards", params=PERIOD)
    assert page.status_code == 200 and "绩效看板" in page.text and "李娜" in page.text
    trend = re.search(r'<section id="trend">.*?</section>', page.text, re.S).group(0)
    assert trend.count("<circle") == 9 and 'class="series"' in trend  # a point per day with calls
    assert "2026-11-02: 76.7" in trend
    rings = re.search(r'<section id="rings">.*?</section>', page.text, re.S).group(0)
    assert rings.count('class="bar"') == 5 and "1: 10" in rings and "未接: 0" in rings
    assert "banned_phrases" in page.text and "66.7%" in page.text
    assert client_as(console, None).get("/scorecards").status_code == 401


def test_findings_and_scorecards_export_as_csv_and_excel(console: dict) -> None:
    """Chinese headings and names throughout (tests/test_exports.py checks the exports in full)."""
    add_teams_and_surveys(console)
    client = client_as(console, "lin")
    text = client.get("/api/export/findings.csv", params={"agent": "1002"}).text
    findings = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert len(findings) == 5 and {f["规则"] for f in findings} == {"服务禁语 (R4)"}
    assert {f["命中内容"] for f in findings} == {"我不知道"} and {f["分机"] for f in findings} == {"1002"}
    assert {f["坐席"] for f in findings} == {"王强"}
    book = load_workbook(io.BytesIO(client.get("/api/export/findings.xlsx").content))
    header, *rows = list(book["违规"].values)
    assert len(rows) == 10 and header[:4] == ("通话编号", "开始时间", "坐席", "分机")

    scorecard = load_workbook(io.BytesIO(client.get("/api/export/scorecards.xlsx", params=PERIOD).content))
    assert scorecard.sheetnames == [
        "汇总",
        "坐席",
        "坐席状态",
        "趋势",
        "服务水平(周)",
        "服务水平(日)",
        "规则",
        "振铃",
        "满意度",
    ]
    header, *agents = list(scorecard["坐席"].values)
    assert header[:3] == ("分机", "坐席", "班组")
    assert [row[:3] for row in agents] == [("1001", "李娜", "售后一组"), ("1002", "王强", "未分组")]
    assert len(list(scorecard["趋势"].values)) == 10  # header and nine days
    rules = client.get("/api/export/scorecards.csv", params={**PERIOD, "part": "rules"})
    assert "filename*=UTF-8" in rules.headers["content-disposition"]
    assert next(csv.DictReader(io.StringIO(rules.text.lstrip("\ufeff")))) == {
        "规则": "服务禁语 (R4)",
        "规则编号": "banned_phrases",
        "严重程度": "致命",
        "未通过通话数": "10",
        "适用通话数": "30",
        "通过率(%)": "66.7",
    }
    teams = client.get("/api/export/scorecards.csv", params={**PERIOD, "group_by": "team", "part": "groups"}).text
    assert teams.lstrip("\ufeff").splitlines()[0].startswith("班组,通话数")
    assert client.get("/api/export/scorecards.csv", params={"part": "nothing"}).status_code == 422


def test_every_api_route_answers_each_role_as_it_should(console: dict) -> None:
    """From the OpenAPI schema, so a new route cannot be forgotten: 401 without a session; reviewers reach
    everything but the live view and the admin routes; supervisors also the live view; admins everything."""
    schema = TestClient(console["app"]).get("/api/openapi.json").json()
    call_id = console["ids"][0]
    with console["database"].session() as session:
        customer_id = upsert_customer(session, phone="13800130001", values={}, changed_by="test")[0].id
        session.commit()
    gets = sorted(
        path.replace("{call_id}", str(call_id)).replace("{customer_id}", str(customer_id))
        for path, ops in schema["paths"].items()
        if "get" in ops
    )
    assert {
        "/api/scorecards",
        "/api/live/calls",
        "/api/live/events",
        "/api/live/wallboard",
        "/api/live/wallboard/events",
        "/api/export/findings.csv",
        "/api/export/scorecards.xlsx",
        "/api/admin/rules",
        "/api/admin/plugins",
    } <= set(gets)
    anonymous, reviewer, supervisor, admin = (client_as(console, n) for n in (None, "lin", "wang", "zhao"))

    def needs(path: str) -> str:
        return (
            "admin"
            if path.startswith("/api/admin/")
            else "supervisor"
            if path.startswith(("/api/live/", "/api/review/"))
            else "reviewer"
        )

    for path in gets:
        assert anonymous.get(path).status_code == 401, path
        assert reviewer.get(path).status_code == (200 if needs(path) == "reviewer" else 403), path
        if not path.endswith("/events"):  # streams that do not end: followed in test_web_live, test_wallboard
            assert supervisor.get(path).status_code == (403 if needs(path) == "admin" else 200), path
            assert admin.get(path).status_code == 200, path
    writes = [
        (method, path.replace("{call_id}", str(call_id)).replace("{rule_id}", "greeting"))
        for path, ops in schema["paths"].items()
        for method in ("post", "put", "delete")
        if method in ops and path != "/api/login"
    ]
    assert ("put", "/api/admin/rules/greeting") in writes
    for method, path in writes:
        assert anonymous.request(method, path, json={}).status_code == 401, path
        if needs(path) == "admin":
            assert supervisor.request(method, path, json={}).status_code == 403, path


def test_agents_are_named_and_put_in_teams_from_the_command_line(desk, database_url: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")},
        **desk_environment(database_url),
        "CONTACTCENTER_SETTINGS": str(desk),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "contactcenter", *args], capture_output=True, text=True, env=env, cwd=desk.parent
        )

    assert run("db", "upgrade").returncode == 0
    named = run("agents", "set", "1001", "--name", "李娜", "--team", "售后一组")
    assert named.returncode == 0 and "李娜, team 售后一组" in named.stdout
    assert run("agents", "set", "1001", "--inactive").returncode == 0
    listed = json.loads(run("agents", "list", "--json").stdout)
    assert listed == [{"extension": "1001", "name": "李娜", "team": "售后一组", "active": False}]
