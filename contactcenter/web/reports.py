"""Scorecard pages and every download: calls, findings and scorecards, as CSV and Excel, and as JSON.

No `from __future__ import annotations`: FastAPI reads the route signatures.
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from contactcenter.settings import Settings, SettingsError
from contactcenter.speech.rules import RuleSet, load_rules
from contactcenter.storage.database import Database
from contactcenter.web.auth import SignedIn
from contactcenter.web.charts import bar_chart, line_chart
from contactcenter.web.exports import EXPORT_LIMIT, Table, csv_response, xlsx_response
from contactcenter.web.guards import TEMPLATES, Blank, Day, Guards, Text
from contactcenter.web.queries import CallFilter, list_calls, list_findings
from contactcenter.web.scorecards import GroupBy, Period, Scorecard, hms, not_ready_column, scorecard

CALL_COLUMNS = [
    "id",
    "invited_at",
    "agent",
    "customer_phone",
    "disposition",
    "rings",
    "duration_s",
    "score",
    "check_label",  # 已检查 / 部分检查 / 未检查: an empty score is a call nobody could check, not a zero
    "check_note",
    "category",
    "hung_up_first",
    "failed_rules",
]
FINDING_COLUMNS = [
    "call_id",
    "invited_at",
    "agent",
    "rule_id",
    "kind",
    "severity",
    "leg",
    "at_s",
    "matched_text",
    "live",
]
SUMMARY_COLUMNS = [
    "calls",
    "answered",
    "average_score",
    "pass_rate",
    "not_checked",
    "partly_checked",
    "answered_within_3_rings",
]
SERVICE_LEVEL_COLUMNS = [
    "calls",
    "ended",
    "answered",
    "answered_in_time",
    "overflow",
    "overflow_callback",
    "overflow_no_callback",
    "abandoned",
    "unknown",
    "service_level",
    "overflow_rate",
    "abandoned_rate",
]
SERVICE_LEVEL_RATES = ("service_level", "overflow_rate", "abandoned_rate")
SCORECARD_PARTS: dict[str, tuple[str, list[str]]] = {  # part -> (sheet title, columns)
    "groups": ("坐席", ["agent", "name", "team", *SUMMARY_COLUMNS]),
    "teams": ("班组", ["team", *SUMMARY_COLUMNS]),
    "rules": ("规则", ["rule_id", "severity", "failed_calls", "applied_calls", "pass_rate"]),
    "trend": ("趋势", ["day", *SUMMARY_COLUMNS]),
    "rings": ("振铃", ["rings", "calls"]),
    "survey": ("满意度", ["question", "asked", "answered", "average", "distribution"]),
    "service_level_days": ("服务水平(日)", ["day", *SERVICE_LEVEL_COLUMNS]),
    "service_level_weeks": ("服务水平(周)", ["week", "since", "until", *SERVICE_LEVEL_COLUMNS]),
}
AGENT_STATES_SHEET = "坐席状态"
DEFAULT_DAYS = 30
MAX_DAYS = 366


def agent_state_table(card: Scorecard, *, excel: bool = False) -> Table:
    """The agents' state times with Chinese headings, a 小休 column per reason. Excel gets real durations
    (cells it can add up, shown as [h]:mm:ss); CSV the same figures as h:mm:ss text. An occupancy that does
    not exist (the agent was never available) is "—", not an empty cell that could be read as 0."""
    reasons = [(reason, not_ready_column(reason)) for reason in card.not_ready_reasons]
    columns = [
        "分机",
        "坐席",
        "班组",
        "就绪",
        "振铃",
        "通话",
        "话后处理",
        *(c for _, c in reasons),
        "在线时长",
        "占用率(%)",
    ]

    def duration(seconds: int) -> Any:
        return timedelta(seconds=seconds) if excel else hms(seconds)

    rows = [
        {
            "分机": row["agent"],
            "坐席": row["name"] or row["agent"],
            "班组": row["team"],
            "就绪": duration(row["ready_s"]),
            "振铃": duration(row["ringing_s"]),
            "通话": duration(row["talk_s"]),
            "话后处理": duration(row["wrap_up_s"]),
            **{column: duration(row["not_ready_s"][reason]) for reason, column in reasons},
            "在线时长": duration(row["logged_in_s"]),
            "占用率(%)": "—" if row["occupancy"] is None else row["occupancy"],
        }
        for row in card.agent_states
    ]
    return columns, rows


def scorecard_table(card: Scorecard, part: str) -> Table:
    """One part of a scorecard as columns and rows (the group table's columns follow ``group_by``)."""
    if part == "agent_states":
        return agent_state_table(card)
    if part in ("groups", "teams"):
        _, columns = SCORECARD_PARTS["groups" if card.group_by == "agent" else "teams"]
        return columns, card.groups
    if part == "rules":  # a rule that applied to no call has no pass rate: "—", not an empty cell read as 0
        _, columns = SCORECARD_PARTS[part]
        return columns, [
            {**row, "pass_rate": "—" if row["pass_rate"] is None else row["pass_rate"]} for row in card.rules
        ]
    if part in ("service_level_days", "service_level_weeks"):  # no ended call that day: "—", not 0
        _, columns = SCORECARD_PARTS[part]
        return columns, [
            {**row, **{rate: "—" for rate in SERVICE_LEVEL_RATES if row[rate] is None}} for row in getattr(card, part)
        ]
    _, columns = SCORECARD_PARTS[part]
    return columns, getattr(card, part)


def add_report_routes(
    app: FastAPI, guards: Guards, settings: Settings, database: Database, call_filter: Callable[..., CallFilter]
) -> None:
    zone = ZoneInfo(settings.general.timezone)
    Reviewer = Annotated[SignedIn, Depends(guards.role("reviewer"))]
    Filter = Annotated[CallFilter, Depends(call_filter)]

    def period(since: Blank[Day] = None, until: Blank[Day] = None) -> Period:
        """The scorecard's days: the last 30 by default; at most a year."""
        today = datetime.now(zone).date()
        until = until or today
        since = since or Period.last_days(DEFAULT_DAYS, until).since
        if since > until:
            raise HTTPException(status_code=422, detail="since is after until")
        if (until - since).days >= MAX_DAYS:
            raise HTTPException(status_code=422, detail=f"at most {MAX_DAYS} days at a time")
        return Period(since, until)

    Days = Annotated[Period, Depends(period)]

    def rules_in_file() -> RuleSet | None:
        """The rules file as it is now, to tell which calls each rule applied to (which calls a rule applies
        to is the file's: the console's changes do not touch it). None if it cannot be read: each rule is
        then judged by its findings."""
        try:
            return load_rules(settings.scripts.rules, settings.company.names_said)
        except SettingsError:
            return None

    def card(days: Period, group_by: GroupBy, agent: str | None, team: str | None) -> Scorecard:
        rules = rules_in_file()
        with database.session() as session:
            return scorecard(
                session,
                days,
                zone,
                group_by,
                agent or None,
                team or None,
                settings.web.pass_score,
                not_ready_reasons=settings.agent.not_ready_reasons,
                rules=rules,
                apology_after_rings=settings.ring.apology_after_rings,
                three_rings_s=3 * settings.ring.ring_period_seconds,
            )

    # -------------------------------------------------------------------------------------------- pages

    @app.get("/scorecards", response_class=HTMLResponse, include_in_schema=False)
    def scorecards_page(
        request: Request,
        user: Reviewer,
        days: Days,
        group_by: GroupBy = "agent",
        agent: Text | None = None,
        team: Text | None = None,
    ) -> Response:
        found = card(days, group_by, agent, team)
        query = {
            "since": days.since.isoformat(),
            "until": days.until.isoformat(),
            "group_by": group_by,
            **({"agent": agent} if agent else {}),
            **({"team": team} if team else {}),
        }
        charts = {
            "trend": line_chart(
                "每日平均质检得分", [t["day"] for t in found.trend], [t["average_score"] for t in found.trend]
            ),
            "rings": bar_chart("接听前振铃次数", [r["rings"] for r in found.rings], [r["calls"] for r in found.rings]),
            "service_level": line_chart(
                "团队热线每日三声内接听率",
                [d["day"] for d in found.service_level_days],
                [d["service_level"] for d in found.service_level_days],
            ),
        }
        return TEMPLATES.TemplateResponse(
            request,
            "scorecards.html",
            {
                "user": user,
                "card": found,
                "charts": charts,
                "query": query,
                "export_query": urlencode(query),
                "agent": agent or "",
                "team": team or "",
                "hms": hms,
                "not_ready_column": not_ready_column,
            },
        )

    # ---------------------------------------------------------------------------------------------- API

    @app.get("/api/scorecards", tags=["scorecards"])
    def api_scorecards(
        user: Reviewer, days: Days, group_by: GroupBy = "agent", agent: Text | None = None, team: Text | None = None
    ) -> dict[str, Any]:
        """Per agent (or team) over local days: calls, average score, QA pass rate, answered within three
        rings; pass rate per rule over the calls it applied to (``applied_calls``; null when none); the daily
        trend; rings before answer; survey results; per agent the seconds in each state (``agent_states``: ready, ringing, talk, wrap-up, 小休 per reason in
        ``not_ready_reasons``, logged in) with the occupancy in percent, null when it does not exist; and the
        team line's service level per day and per week (``service_level_days``, ``service_level_weeks``:
        calls, answered by an agent within three rings, overflow, abandoned, in percent of the calls that
        have ended, null when none has; the whole line's, whatever the agent and team filters)."""
        found = card(days, group_by, agent, team)
        return {
            "since": days.since.isoformat(),
            "until": days.until.isoformat(),
            "group_by": group_by,
            "totals": found.totals,
            "groups": found.groups,
            "rules": found.rules,
            "trend": found.trend,
            "rings": found.rings,
            "survey": found.survey,
            "not_ready_reasons": found.not_ready_reasons,
            "agent_states": found.agent_states,
            "service_level_days": found.service_level_days,
            "service_level_weeks": found.service_level_weeks,
        }

    # ------------------------------------------------------------------------------------------ exports

    def call_rows(user: SignedIn, where: CallFilter) -> tuple[list[dict[str, Any]], bool]:
        with database.session() as session:
            page = list_calls(session, where, zone, guards.unmasked(user), EXPORT_LIMIT)
        return page.rows, page.next_cursor is not None

    def finding_rows(user: SignedIn, where: CallFilter) -> tuple[list[dict[str, Any]], bool]:
        with database.session() as session:
            return list_findings(session, where, zone, guards.unmasked(user), EXPORT_LIMIT)

    @app.get("/api/export/calls.csv", tags=["exports"])
    def export_calls_csv(user: Reviewer, where: Filter) -> Response:
        """The filtered calls as CSV (UTF-8 with BOM, so Excel opens the Chinese text correctly)."""
        rows, truncated = call_rows(user, where)
        return csv_response("calls.csv", (CALL_COLUMNS, rows), truncated)

    @app.get("/api/export/calls.xlsx", tags=["exports"])
    def export_calls_xlsx(user: Reviewer, where: Filter) -> Response:
        """The filtered calls as an Excel workbook (sheet 通话)."""
        rows, truncated = call_rows(user, where)
        return xlsx_response("calls.xlsx", {"通话": (CALL_COLUMNS, rows)}, truncated)

    @app.get("/api/export/findings.csv", tags=["exports"])
    def export_findings_csv(user: Reviewer, where: Filter) -> Response:
        """Every violation and missed required phrase of the filtered calls, one per row."""
        rows, truncated = finding_rows(user, where)
        return csv_response("findings.csv", (FINDING_COLUMNS, rows), truncated)

    @app.get("/api/export/findings.xlsx", tags=["exports"])
    def export_findings_xlsx(user: Reviewer, where: Filter) -> Response:
        """The findings of the filtered calls as an Excel workbook (sheet 违规)."""
        rows, truncated = finding_rows(user, where)
        return xlsx_response("findings.xlsx", {"违规": (FINDING_COLUMNS, rows)}, truncated)

    @app.get("/api/export/scorecards.csv", tags=["exports"])
    def export_scorecards_csv(
        user: Reviewer,
        days: Days,
        group_by: GroupBy = "agent",
        agent: Text | None = None,
        team: Text | None = None,
        part: Literal[
            "groups",
            "rules",
            "trend",
            "rings",
            "survey",
            "agent_states",
            "service_level_days",
            "service_level_weeks",
        ] = "groups",
    ) -> Response:
        """One table of the scorecard as CSV: per agent/team (``groups``), ``rules``, ``trend``, ``rings``,
        ``survey``, the agents' state times (``agent_states``, Chinese headings, durations as h:mm:ss) or the
        team line's service level per day or week (``service_level_days``, ``service_level_weeks``)."""
        found = card(days, group_by, agent, team)
        return csv_response(f"scorecard-{part}-{days.since}-{days.until}.csv", scorecard_table(found, part))

    @app.get("/api/export/scorecards.xlsx", tags=["exports"])
    def export_scorecards_xlsx(
        user: Reviewer, days: Days, group_by: GroupBy = "agent", agent: Text | None = None, team: Text | None = None
    ) -> Response:
        """The whole scorecard as one workbook, a sheet per table (then the agents' state times, 坐席状态, and
        the team line's service level per day and per week)."""
        found = card(days, group_by, agent, team)
        groups_title = SCORECARD_PARTS["groups" if group_by == "agent" else "teams"][0]
        sheets = {groups_title: scorecard_table(found, "groups")}
        sheets.update(
            {SCORECARD_PARTS[part][0]: scorecard_table(found, part) for part in ("rules", "trend", "rings", "survey")}
        )
        sheets[AGENT_STATES_SHEET] = agent_state_table(found, excel=True)
        for part in ("service_level_days", "service_level_weeks"):
            sheets[SCORECARD_PARTS[part][0]] = scorecard_table(found, part)
        return xlsx_response(f"scorecard-{days.since}-{days.until}.xlsx", sheets)
