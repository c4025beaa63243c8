"""Scorecard pages and every download: calls, findings and scorecards, as CSV and Excel, and as JSON.

No `from __future__ import annotations`: FastAPI reads the route signatures.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from contactcenter.settings import Settings, SettingsError
from contactcenter.speech.rules import RuleSet, load_rules
from contactcenter.storage.database import Database
from contactcenter.vocabulary import Vocabulary
from contactcenter.web.auth import SignedIn
from contactcenter.web.charts import bar_chart, line_chart
from contactcenter.web.exports import (
    ListExport,
    Part,
    calls_export,
    findings_export,
    scorecard_csv,
    scorecard_workbook,
    scorecard_zip,
)
from contactcenter.web.exports import scorecard_table as scorecard_table  # one table as rows, for tests
from contactcenter.web.guards import TEMPLATES, Blank, Day, Guards, Text
from contactcenter.web.queries import CallFilter
from contactcenter.web.scorecards import (
    CardQuery,
    GroupBy,
    Period,
    ScoreBasis,
    Scorecard,
    hms,
    not_ready_column,
    scorecard,
)

DEFAULT_DAYS = 30
MAX_DAYS = 366


def period_dependency(zone: ZoneInfo) -> Callable[..., Period]:
    """The ``since``/``until`` query of every report page (scorecards, QA report, calibration): local days,
    the last 30 by default, at most a year, refused with a reason a page shows in Chinese."""

    def period(since: Blank[Day] = None, until: Blank[Day] = None) -> Period:
        until = until or datetime.now(zone).date()
        since = since or Period.last_days(DEFAULT_DAYS, until).since
        if since > until:
            raise HTTPException(status_code=422, detail="since is after until")
        if (until - since).days >= MAX_DAYS:
            raise HTTPException(status_code=422, detail=f"at most {MAX_DAYS} days at a time")
        return Period(since, until)

    return period


def add_report_routes(
    app: FastAPI, guards: Guards, settings: Settings, database: Database, call_filter: Callable[..., CallFilter]
) -> None:
    zone = ZoneInfo(settings.general.timezone)
    Reviewer = Annotated[SignedIn, Depends(guards.role("reviewer"))]
    Filter = Annotated[CallFilter, Depends(call_filter)]

    Days = Annotated[Period, Depends(period_dependency(zone))]

    def rules_in_file() -> RuleSet | None:
        """The rules file as it is now, to tell which calls each rule applied to (which calls a rule applies
        to is the file's: the console's changes do not touch it). None if it cannot be read: each rule is
        then judged by its findings."""
        try:
            return load_rules(settings.scripts.rules, settings.company.names_said)
        except SettingsError:
            return None

    def card_query(
        days: Days,
        group_by: GroupBy = "agent",
        agent: Text | None = None,
        team: Text | None = None,
        basis: ScoreBasis = "machine",
    ) -> CardQuery:
        return CardQuery(days, group_by, agent or None, team or None, basis)

    Card = Annotated[CardQuery, Depends(card_query)]

    def card(q: CardQuery) -> Scorecard:
        rules = rules_in_file()
        with database.session() as session:
            return scorecard(
                session,
                q.days,
                zone,
                q.group_by,
                q.agent,
                q.team,
                settings.web.pass_score,
                not_ready_reasons=settings.agent.not_ready_reasons,
                rules=rules,
                apology_after_rings=settings.ring.apology_after_rings,
                three_rings_s=3 * settings.ring.ring_period_seconds,
                basis=q.basis,
            )

    # -------------------------------------------------------------------------------------------- pages

    @app.get("/scorecards", response_class=HTMLResponse, include_in_schema=False)
    def scorecards_page(
        request: Request,
        user: Reviewer,
        q: Card,
    ) -> Response:
        found = card(q)
        query = q.as_query()
        pass_score = settings.web.pass_score
        charts = {
            "trend": line_chart(
                "每日平均质检得分",
                [t["day"] for t in found.trend],
                [t["average_score"] for t in found.trend],
                reference=(pass_score, f"合格线 {pass_score:g}"),
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
                "agent": q.agent or "",
                "team": q.team or "",
                "hms": hms,
                "not_ready_column": not_ready_column,
                "pass_score": f"{pass_score:g}",
            },
        )

    # ---------------------------------------------------------------------------------------------- API

    @app.get("/api/scorecards", tags=["scorecards"])
    def api_scorecards(
        user: Reviewer,
        q: Card,
    ) -> dict[str, Any]:
        """Per agent (or team) over local days: calls, average score, QA pass rate, answered within three
        rings; pass rate per rule over the calls it applied to (``applied_calls``; null when none); the daily
        trend; rings before answer; survey results; per agent the seconds in each state (``agent_states``: ready, ringing, talk, wrap-up, 小休 per reason in
        ``not_ready_reasons``, logged in) with the occupancy in percent, null when it does not exist; and the
        team line's service level per day and per week (``service_level_days``, ``service_level_weeks``:
        calls, answered by an agent within three rings, overflow, abandoned, in percent of the calls that
        have ended, null when none has; the whole line's, whatever the agent and team filters). The totals and
        each group also say how the calls were talked: ``interruptions_per_call`` (and ``interruptions``),
        ``speech_rate_cpm`` (the agent's characters per minute of speaking time), ``dead_air_s_per_call`` and
        ``dead_air_s`` (seconds), ``talk_ratio`` (the agent's share of the talk time, in percent), each over
        the calls that had the measure (``interruption_calls``, ``speech_rate_calls``, ``dead_air_calls``,
        ``talk_ratio_calls``) and null when none had it."""
        found = card(q)
        return {
            "since": q.days.since.isoformat(),
            "until": q.days.until.isoformat(),
            "group_by": q.group_by,
            "basis": q.basis,  # machine: the machine's scores; reviewed: reviewers' verdicts applied where reviewed
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
    # Chinese headings and names (the app's vocabulary), typed cells, dated file names: web/exports.py.

    def names(request: Request) -> Vocabulary:
        return getattr(request.app.state, "vocabulary", None) or Vocabulary()

    def listed(
        request: Request, user: SignedIn, where: CallFilter, fmt: Literal["csv", "xlsx"], export: ListExport
    ) -> Response:
        with database.session() as session:
            return export(session, where, zone, guards.unmasked(user), names(request), fmt)

    @app.get("/api/export/calls.csv", tags=["exports"])
    def export_calls_csv(request: Request, user: Reviewer, where: Filter) -> Response:
        """The filtered calls as CSV (UTF-8 with BOM, so Excel opens the Chinese text correctly): Chinese
        headings and names, the agent's name and extension, the latest review and the verdicts in force, a
        column per survey question. Named 质检通话_<first day>_<last day>.csv."""
        return listed(request, user, where, "csv", calls_export)

    @app.get("/api/export/calls.xlsx", tags=["exports"])
    def export_calls_xlsx(request: Request, user: Reviewer, where: Filter) -> Response:
        """The filtered calls as an Excel workbook (sheet 通话): the columns of the CSV, with real dates,
        numbers and durations, fitted widths, a frozen heading row and an autofilter."""
        return listed(request, user, where, "xlsx", calls_export)

    @app.get("/api/export/findings.csv", tags=["exports"])
    def export_findings_csv(request: Request, user: Reviewer, where: Filter) -> Response:
        """Every violation and missed required phrase of the filtered calls, one per row, with the latest
        reviewer's verdict on its rule (同意 / 不同意), who gave it and when."""
        return listed(request, user, where, "csv", findings_export)

    @app.get("/api/export/findings.xlsx", tags=["exports"])
    def export_findings_xlsx(request: Request, user: Reviewer, where: Filter) -> Response:
        """The findings of the filtered calls as an Excel workbook (sheet 违规)."""
        return listed(request, user, where, "xlsx", findings_export)

    @app.get("/api/export/scorecards.csv", tags=["exports"])
    def export_scorecards_csv(
        request: Request,
        user: Reviewer,
        q: Card,
        part: Part | None = None,
    ) -> Response:
        """The scorecard as CSV. Without ``part``, every table, as a ZIP of CSV files (as
        ``scorecards.zip``); with it, one table: the totals (``totals``), per agent/team (``groups``), the
        agents' state times (``agent_states``, durations as h:mm:ss), the daily ``trend``, the team line's
        service level per week or day (``service_level_weeks``, ``service_level_days``), ``rules``,
        ``rings``, ``survey``."""
        found = card(q)
        if part is None:
            return scorecard_zip(found, names(request))
        return scorecard_csv(found, part, names(request))

    @app.get("/api/export/scorecards.zip", tags=["exports"])
    def export_scorecards_zip(
        request: Request,
        user: Reviewer,
        q: Card,
    ) -> Response:
        """The whole scorecard as a ZIP of CSV files, one per table, numbered in the page's order (01_汇总.csv,
        02_坐席.csv, …), each UTF-8 with BOM. Named 绩效看板_<since>_<until>.zip."""
        return scorecard_zip(card(q), names(request))

    @app.get("/api/export/scorecards.xlsx", tags=["exports"])
    def export_scorecards_xlsx(
        request: Request,
        user: Reviewer,
        q: Card,
    ) -> Response:
        """The whole scorecard as one workbook, a sheet per table in the page's order (汇总, 坐席 or 班组,
        坐席状态, 趋势, 服务水平(周), 服务水平(日), 规则, 振铃, 满意度), with the page's charts beside their
        tables (the score trend, the daily service level, the rings). Named 绩效看板_<since>_<until>.xlsx."""
        return scorecard_workbook(card(q), names(request))
