"""Exports a QA lead can hand on: the filtered calls, their findings and the whole scorecard, as Excel and CSV.

Every heading is Chinese and every stored code is shown by its Chinese name from the one vocabulary
(``request.app.state.vocabulary``: directions, dispositions, severities, findings, verdicts, rules by
description, survey questions). An agent is shown by name beside the extension (the agents table), a
reviewer by the person's display name. The calls and findings exports carry the reviewers' word: per
finding the latest verdict given on its rule (同意 / 不同意), by whom and when; per call the latest review and
the verdicts in force. A call's survey answers are one column per question. How a call was talked (its
stored measures) is in the calls export, and per agent, team and in all in the scorecard's, each figure
beside the calls it was taken over; a measure nobody took is "—", never an empty cell read as 0.

Workbooks and CSV are written by :mod:`contactcenter.web.workbook` (typed dates and numbers, widths, frozen
heading, autofilter, charts; formula-safe cells). The calls and findings are read from the store a chunk at
a time and streamed into the file, so an export of 100,000 calls is never held in memory whole.

An export is capped at ``EXPORT_LIMIT`` rows; when the cap cuts it short the response says so in the
``X-Export-Truncated`` header and the workbook's last row, rather than silently handing over part of it.
Customer numbers and numbers in free text are masked for roles that should not see them, as on the pages.
File names say what and which days: 质检通话_2026-11-01_2026-11-30.xlsx (calls_2026-11-01_2026-11-30.xlsx for
a client that cannot read the Chinese name).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo

from fastapi.responses import Response
from sqlalchemy import distinct, select
from sqlalchemy.orm import Session

from contactcenter.phones import mask_numbers
from contactcenter.records import check_status
from contactcenter.speech.redact import redact_numbers
from contactcenter.storage.calls import conversation_of
from contactcenter.storage.models import Agent, Call, Review, RuleHit, SurveyResponse, WebUser
from contactcenter.vocabulary import RULE, Vocabulary
from contactcenter.web.queries import FAILED_KINDS, CallFilter, conversation_figures, mask_phone, verdict_check
from contactcenter.web.queries import _conditions as call_conditions
from contactcenter.web.scorecards import BASIS_LABELS, NO_TEAM, TALK_FIGURES, Scorecard, not_ready_column
from contactcenter.web.workbook import (
    CSV,
    XLSX,
    ZIP,
    Chart,
    Column,
    Sheet,
    download,
    write_csv_bytes,
    write_xlsx,
    write_zip,
)

EXPORT_LIMIT = 100_000
CHUNK = 1000  # rows read from the store at a time
TRUNCATED_NOTE = "…(已截断:超过 {limit} 行,请缩小筛选范围)"
TRUNCATED_HEADER = "X-Export-Truncated"
MISSING = "—"  # a figure that does not exist (a rate over no calls): never an empty cell read as 0

Table = tuple[Sequence[str], Sequence[Mapping[str, Any]]]  # columns (also the headings), rows
Format = Literal["csv", "xlsx"]


# ---------------------------------------------------------------------------------------- plain tables


def csv_response(filename: str, table: Table, truncated: bool = False) -> Response:
    """A table whose column names are its headings as CSV (UTF-8 with BOM), named ``filename``."""
    columns, rows = table
    sheet = Sheet(filename, [Column(c, c) for c in columns], rows)
    return download(
        lambda out: write_csv_bytes(sheet, out),
        CSV,
        (filename, filename),
        lambda: {TRUNCATED_HEADER: str(EXPORT_LIMIT)} if truncated else {},
    )


# ------------------------------------------------------------------------------------------- names


@dataclass
class Span:
    """What an export read: whether the cap (``limit`` rows) cut it short, and the first local day of its
    calls (what its file name says when the filter has no start)."""

    limit: int = EXPORT_LIMIT
    truncated: bool = False
    first: date | None = None

    def saw(self, day: date) -> None:
        self.first = day if self.first is None or day < self.first else self.first

    def note(self) -> str:
        return TRUNCATED_NOTE.format(limit=self.limit) if self.truncated else ""

    def headers(self) -> dict[str, str]:
        return {TRUNCATED_HEADER: str(self.limit)} if self.truncated else {}


def dated(title: str, fallback: str, since: date, until: date, extension: str) -> tuple[str, str]:
    """A download's name and its ASCII fallback: 质检通话_2026-11-01_2026-11-30.xlsx, calls_2026-….xlsx."""
    days = f"{since.isoformat()}_{until.isoformat()}"
    return f"{title}_{days}.{extension}", f"{fallback}_{days}.{extension}"


def _days(where: CallFilter, span: Span, zone: ZoneInfo) -> tuple[date, date]:
    """The days an export of ``where`` covers: the filter's, or where it is open, the first call's day and
    today."""
    today = datetime.now(zone).date()
    until = where.until or today
    return where.since or span.first or until, until


def _local(moment: datetime | None, zone: ZoneInfo) -> datetime | None:
    """A stored (UTC) time as a workbook holds it: the desk's local time, without a zone, to the second."""
    return moment.astimezone(zone).replace(tzinfo=None, microsecond=0) if moment is not None else None


def _agent(extension: str | None, name: str | None, team: str | None) -> dict[str, str]:
    """An agent as a lead reads one: the name (the extension while it has none), the extension, the team
    (未分组 when none, as on the scorecard; nothing for a call no agent took)."""
    if extension is None:
        return {"agent": "", "extension": "", "team": ""}
    return {"agent": name or extension, "extension": extension, "team": team or NO_TEAM}


# ---------------------------------------------------------------------------------------------- reviews


@dataclass
class ReviewSeen:
    reviewer: str
    at: datetime
    comment: str
    verdicts: dict[str, str] = field(default_factory=dict)


@dataclass
class CallReviews:
    """A call's reviews: the latest one, and per rule the latest review that gave a verdict on it."""

    latest: ReviewSeen | None = None
    by_rule: dict[str, ReviewSeen] = field(default_factory=dict)


def _reviews(session: Session, call_ids: Sequence[int]) -> dict[int, CallReviews]:
    found: dict[int, CallReviews] = defaultdict(CallReviews)
    if not call_ids:
        return found
    for call_id, verdicts, comment, at, display, login in session.execute(
        select(
            Review.call_id, Review.verdicts, Review.comment, Review.created_at, WebUser.display_name, WebUser.username
        )
        .join(WebUser, WebUser.id == Review.reviewer_id)
        .where(Review.call_id.in_(call_ids))
        .order_by(Review.id)
    ):
        given = {rule: v for rule, v in (verdicts or {}).items() if v in ("agree", "disagree")}
        seen = ReviewSeen(display or login, at, comment or "", given)
        reviews = found[call_id]
        reviews.latest = seen
        reviews.by_rule.update(dict.fromkeys(given, seen))
    return found


# ------------------------------------------------------------------------------------------------ calls


def _survey_questions(session: Session, where: CallFilter, zone: ZoneInfo, names: Vocabulary) -> list[str]:
    """The survey questions asked on the filtered calls: the vocabulary's in its order, then any other."""
    asked = set(
        session.scalars(
            select(distinct(SurveyResponse.question_key))
            .join(Call, Call.id == SurveyResponse.call_id)
            .where(*call_conditions(where, zone))
        )
    )
    known = [key for key in names.names("survey_question") if key in asked]
    return known + sorted(asked - set(known))


def _survey_answers(session: Session, call_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per call, the answer to each question (the latest given, when a question was asked twice)."""
    answers: dict[int, dict[str, int]] = defaultdict(dict)
    for call_id, question, answer in session.execute(
        select(SurveyResponse.call_id, SurveyResponse.question_key, SurveyResponse.answer)
        .where(SurveyResponse.call_id.in_(call_ids), SurveyResponse.answer.is_not(None))
        .order_by(SurveyResponse.answered_at, SurveyResponse.id)
    ):
        answers[call_id][question] = answer
    return answers


def _failed_rules(session: Session, call_ids: Sequence[int]) -> dict[int, list[str]]:
    failed: dict[int, list[str]] = defaultdict(list)
    for call_id, rule_id in session.execute(
        select(RuleHit.call_id, RuleHit.rule_id)
        .where(RuleHit.call_id.in_(call_ids), RuleHit.kind.in_(FAILED_KINDS))
        .distinct()
        .order_by(RuleHit.call_id, RuleHit.rule_id)
    ):
        failed[call_id].append(rule_id)
    return failed


def survey_column(names: Vocabulary, question: str) -> str:
    return f"满意度({names.name('survey_question', question)})"


#: How the call was talked (its stored measures), "—" where not measured.
CALL_TALK_COLUMNS = [
    Column("interruptions", "打断次数", "int"),
    Column("speech_rate_cpm", "语速(字/分钟)", "number"),
    Column("dead_air_s", "冷场秒数", "number"),
    Column("talk_ratio", "坐席说话占比(%)", "number"),
]


def call_talk(stored: dict[str, Any] | None) -> dict[str, Any]:
    """A call's measures as its export row shows them: "—" for one not measured (a one-leg recording has no
    ratio; a call never analysed has none), never an empty cell that reads as 0."""
    figures = conversation_figures(conversation_of(stored)) or {}
    shown: dict[str, Any] = {}
    for column in CALL_TALK_COLUMNS:
        value = figures.get(column.key)
        shown[column.key] = MISSING if value is None else round(value, 1) if isinstance(value, float) else value
    return shown


def call_columns(names: Vocabulary, questions: Sequence[str]) -> list[Column]:
    return [
        Column("id", "通话编号", "int"),
        Column("invited_at", "开始时间", "datetime"),
        Column("direction", "方向"),
        Column("agent", "坐席"),
        Column("extension", "分机"),
        Column("team", "班组"),
        Column("customer_phone", "客户号码"),
        Column("disposition", "结果"),
        Column("rings", "振铃次数", "int"),
        Column("duration", "通话时长", "duration"),
        Column("score", "质检得分", "number"),
        Column("reviewed_score", "复核后得分", "number"),
        Column("check", "检查状态"),
        Column("check_note", "检查说明"),
        Column("category", "类别"),
        Column("hung_up_first", "先挂机"),
        *CALL_TALK_COLUMNS,
        Column("failed_rules", "未通过规则"),
        Column("review_state", "复核状态"),
        Column("verdicts", "复核结论"),
        Column("reviewer", "复核人"),
        Column("reviewed_at", "复核时间", "datetime"),
        Column("review_comment", "复核意见"),
        *(Column(f"survey:{q}", survey_column(names, q), "int") for q in questions),
    ]


def call_rows(
    session: Session,
    where: CallFilter,
    zone: ZoneInfo,
    unmasked: bool,
    names: Vocabulary,
    span: Span,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The filtered calls, newest first, as export rows, read ``CHUNK`` at a time; ``span`` learns whether
    ``limit`` (default ``EXPORT_LIMIT``) cut them short and which days they covered."""
    span.limit = limit = EXPORT_LIMIT if limit is None else limit

    def shown(text: str) -> str:
        return text if unmasked else redact_numbers(mask_numbers(text))

    query = (
        select(
            Call.id,
            Call.invited_at,
            Call.direction,
            Call.remote_number,
            Call.disposition,
            Call.rings_before_answer,
            Call.answered_at,
            Call.ended_at,
            Call.compliance_score,
            Call.reviewed_score,
            Call.dropped_seconds,
            Call.unchecked_reason,
            Call.category,
            Call.hung_up_first,
            Call.conversation,
            Agent.extension,
            Agent.name,
            Agent.team,
        )
        .outerjoin(Agent, Agent.id == Call.agent_id)
        .where(*call_conditions(where, zone))
        .order_by(Call.invited_at.desc(), Call.id.desc())
        .limit(limit + 1)
        .execution_options(yield_per=CHUNK)
    )
    count = 0
    for chunk in session.execute(query).partitions():
        if count + len(chunk) > limit:
            chunk, span.truncated = chunk[: limit - count], True
        count += len(chunk)
        ids = [r.id for r in chunk]
        failed, reviews, answers = _failed_rules(session, ids), _reviews(session, ids), _survey_answers(session, ids)
        for r in chunk:
            invited = _local(r.invited_at, zone)
            if invited is not None:
                span.saw(invited.date())
            duration = (r.ended_at - r.answered_at).total_seconds() if r.answered_at and r.ended_at else None
            checked = verdict_check(r.compliance_score, r.dropped_seconds, r.unchecked_reason)
            seen = reviews.get(r.id, CallReviews())
            latest = seen.latest
            yield {
                "id": r.id,
                "invited_at": invited,
                "direction": names.name("direction", r.direction),
                **_agent(r.extension, r.name, r.team),
                "customer_phone": r.remote_number if unmasked else mask_phone(r.remote_number),
                "disposition": names.name("disposition", r.disposition),
                "rings": r.rings_before_answer,
                "duration": timedelta(seconds=round(duration)) if duration is not None else None,
                "score": r.compliance_score,
                "reviewed_score": r.reviewed_score,
                "check": names.name("check", check_status(r.compliance_score, r.dropped_seconds)),
                "check_note": checked["check_note"],
                "category": r.category or "",
                "hung_up_first": names.name("hung_up_first", r.hung_up_first),
                **call_talk(r.conversation),
                "failed_rules": [names.name(RULE, rule) for rule in failed.get(r.id, [])],
                "review_state": names.name("review_state", "reviewed" if latest else "pending"),
                "verdicts": ";".join(
                    f"{names.name(RULE, rule)}:{names.name('review', review.verdicts[rule])}"
                    for rule, review in sorted(seen.by_rule.items())
                ),
                "reviewer": latest.reviewer if latest else "",
                "reviewed_at": _local(latest.at, zone) if latest else None,
                "review_comment": shown(latest.comment) if latest else "",
                **{f"survey:{q}": a for q, a in answers.get(r.id, {}).items()},
            }


# --------------------------------------------------------------------------------------------- findings


FINDING_COLUMNS = [
    Column("call_id", "通话编号", "int"),
    Column("invited_at", "开始时间", "datetime"),
    Column("agent", "坐席"),
    Column("extension", "分机"),
    Column("team", "班组"),
    Column("rule", "规则"),
    Column("rule_id", "规则编号"),  # the key of rules.toml and of the console's rule filter
    Column("kind", "类型"),
    Column("severity", "严重程度"),
    Column("leg", "说话方"),
    Column("at_s", "时间点(秒)", "number"),
    Column("end_s", "结束时间点(秒)", "number"),  # a finding that lasts (an overlap, a silence); empty for a moment
    Column("matched_text", "命中内容"),
    Column("live", "通话中发现"),
    Column("verdict", "复核结论"),
    Column("reviewer", "复核人"),
    Column("reviewed_at", "复核时间", "datetime"),
]


def finding_rows(
    session: Session,
    where: CallFilter,
    zone: ZoneInfo,
    unmasked: bool,
    names: Vocabulary,
    span: Span,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The violations and missed required phrases of the filtered calls, newest call first, each with the
    latest reviewer's verdict on its rule."""
    span.limit = limit = EXPORT_LIMIT if limit is None else limit
    query = (
        select(
            RuleHit.call_id,
            RuleHit.rule_id,
            RuleHit.kind,
            RuleHit.severity,
            RuleHit.leg,
            RuleHit.at_s,
            RuleHit.end_s,
            RuleHit.matched_text,
            RuleHit.live,
            Call.invited_at,
            Agent.extension,
            Agent.name,
            Agent.team,
        )
        .join(Call, Call.id == RuleHit.call_id)
        .outerjoin(Agent, Agent.id == Call.agent_id)
        .where(*call_conditions(where, zone), RuleHit.kind.in_(FAILED_KINDS))
        .order_by(Call.invited_at.desc(), Call.id.desc(), RuleHit.at_s, RuleHit.id)
        .limit(limit + 1)
        .execution_options(yield_per=CHUNK)
    )
    count = 0
    for chunk in session.execute(query).partitions():
        if count + len(chunk) > limit:
            chunk, span.truncated = chunk[: limit - count], True
        count += len(chunk)
        reviews = _reviews(session, sorted({r.call_id for r in chunk}))
        for r in chunk:
            invited = _local(r.invited_at, zone)
            if invited is not None:
                span.saw(invited.date())
            review = reviews[r.call_id].by_rule.get(r.rule_id) if r.call_id in reviews else None
            yield {
                "call_id": r.call_id,
                "invited_at": invited,
                **_agent(r.extension, r.name, r.team),
                "rule": names.name(RULE, r.rule_id),
                "rule_id": r.rule_id,
                "kind": names.name("finding", r.kind),
                "severity": names.name("severity", r.severity),
                "leg": names.name("leg", r.leg),
                "at_s": r.at_s,
                "end_s": r.end_s,
                "matched_text": r.matched_text if unmasked else redact_numbers(mask_numbers(r.matched_text)),
                "live": bool(r.live),
                "verdict": names.name("review", review.verdicts[r.rule_id]) if review else "",
                "reviewer": review.reviewer if review else "",
                "reviewed_at": _local(review.at, zone) if review else None,
            }


# ---------------------------------------------------------------------------------------- the downloads


Rows = Callable[[Session, CallFilter, ZoneInfo, bool, Vocabulary, Span], Iterator[dict[str, Any]]]
ListExport = Callable[[Session, CallFilter, ZoneInfo, bool, Vocabulary, Format], Response]


def _list_export(
    session: Session,
    where: CallFilter,
    zone: ZoneInfo,
    unmasked: bool,
    names: Vocabulary,
    fmt: Format,
    sheet: tuple[str, str, str],  # sheet title, file title, ASCII file title
    columns: Sequence[Column],
    rows: Rows,
) -> Response:
    span = Span()
    title, file_title, fallback = sheet
    table = Sheet(title, columns, rows(session, where, zone, unmasked, names, span), footer=span.note)

    def write(out: IO[bytes]) -> None:
        if fmt == "xlsx":
            write_xlsx([table], out)
        else:
            write_csv_bytes(table, out)

    def name() -> tuple[str, str]:  # after writing: the days the rows covered
        return dated(file_title, fallback, *_days(where, span, zone), fmt)

    return download(write, XLSX if fmt == "xlsx" else CSV, name, span.headers)


def calls_export(
    session: Session, where: CallFilter, zone: ZoneInfo, unmasked: bool, names: Vocabulary, fmt: Format
) -> Response:
    """The filtered calls as a workbook (sheet 通话) or CSV: 质检通话_<since>_<until>.xlsx."""
    columns = call_columns(names, _survey_questions(session, where, zone, names))
    return _list_export(session, where, zone, unmasked, names, fmt, ("通话", "质检通话", "calls"), columns, call_rows)


def findings_export(
    session: Session, where: CallFilter, zone: ZoneInfo, unmasked: bool, names: Vocabulary, fmt: Format
) -> Response:
    """The findings of the filtered calls as a workbook (sheet 违规) or CSV: 质检违规_<since>_<until>.xlsx."""
    return _list_export(
        session, where, zone, unmasked, names, fmt, ("违规", "质检违规", "findings"), FINDING_COLUMNS, finding_rows
    )


# -------------------------------------------------------------------------------------------- scorecard


SUMMARY_COLUMNS = [
    Column("calls", "通话数", "int"),
    Column("answered", "已接听", "int"),
    Column("average_score", "平均得分", "number"),
    Column("pass_rate", "质检合格率(%)", "number"),
    Column("not_checked", "未检查", "int"),
    Column("partly_checked", "部分检查", "int"),
    Column("answered_within_3_rings", "三声内接听率(%)", "number"),
]
SUMMARY_RATES = ("average_score", "pass_rate", "answered_within_3_rings")
#: How the calls were talked (scorecards.Talk), beside the totals and each agent's or team's row: each figure
#: with the calls it was taken over, "—" where none had the measure.
TALK_COLUMNS = [
    Column("interruptions_per_call", "打断次数/通", "number2"),
    Column("interruption_calls", "打断统计通话数", "int"),
    Column("speech_rate_cpm", "平均语速(字/分钟)", "number"),
    Column("speech_rate_calls", "语速统计通话数", "int"),
    Column("dead_air_s_per_call", "冷场秒数/通", "number"),
    Column("dead_air_s", "冷场总秒数", "number"),
    Column("dead_air_calls", "冷场统计通话数", "int"),
    Column("talk_ratio", "坐席说话占比(%)", "number"),
    Column("talk_ratio_calls", "说话占比统计通话数", "int"),
]
GROUP_COLUMNS = [*SUMMARY_COLUMNS, *TALK_COLUMNS]
GROUP_MISSING = (*SUMMARY_RATES, *TALK_FIGURES)
SERVICE_LEVEL_COLUMNS = [
    Column("calls", "来电", "int"),
    Column("ended", "已结束", "int"),
    Column("answered", "坐席接听", "int"),
    Column("answered_in_time", "三声内接听", "int"),
    Column("overflow", "溢出", "int"),
    Column("overflow_callback", "溢出(留回电)", "int"),
    Column("overflow_no_callback", "溢出(未留回电)", "int"),
    Column("abandoned", "放弃", "int"),
    Column("unknown", "未知", "int"),
    Column("service_level", "三声内接听率(%)", "number"),
    Column("overflow_rate", "溢出率(%)", "number"),
    Column("abandoned_rate", "放弃率(%)", "number"),
]
SERVICE_LEVEL_RATES = ("service_level", "overflow_rate", "abandoned_rate")
RING_LABELS = {"1": "1声", "2": "2声", "3": "3声", "4+": "4声及以上", "未接": "未接"}
SURVEY_SCORES = [str(k) for k in range(1, 6)]

Part = Literal[
    "totals",
    "groups",
    "agent_states",
    "trend",
    "service_level_weeks",
    "service_level_days",
    "rules",
    "rings",
    "survey",
]
#: The scorecard's tables in the order of its page, with their sheet titles (the groups' follows group_by).
PARTS: dict[str, str] = {
    "totals": "汇总",
    "groups": "坐席",
    "agent_states": "坐席状态",
    "trend": "趋势",
    "service_level_weeks": "服务水平(周)",
    "service_level_days": "服务水平(日)",
    "rules": "规则",
    "rings": "振铃",
    "survey": "满意度",
}
ASCII_PARTS = {"service_level_weeks": "service-weeks", "service_level_days": "service-days"}
#: The charts the page draws, on the sheets of their tables.
CHARTS: dict[str, Chart] = {
    "trend": Chart("line", "每日平均质检得分", "day", ("average_score",), "得分"),
    "service_level_days": Chart("line", "团队热线每日三声内接听率", "day", ("service_level",), "%"),
    "rings": Chart("bar", "接听前振铃次数", "rings", ("calls",), "通话数"),
}


def _missing(row: Mapping[str, Any], keys: Sequence[str], blank: bool) -> dict[str, Any]:
    """``row`` with each of ``keys`` that has no figure as "—"; or left empty where a chart draws it (a
    chart would draw the text as 0), ``blank``."""
    return {**row, **{key: MISSING for key in keys if row.get(key) is None and not blank}}


def _day(text: str) -> date:
    return date.fromisoformat(text)


def group_title(card: Scorecard) -> str:
    return "坐席" if card.group_by == "agent" else "班组"


def scorecard_table(
    card: Scorecard, part: str, names: Vocabulary | None = None, *, excel: bool = False
) -> tuple[list[Column], list[dict[str, Any]]]:
    """One table of the scorecard: its columns (Chinese headings) and rows (by column key), codes named by
    ``names``. A figure that does not exist is "—", except in a workbook's charted table, where it is an
    empty cell (the chart leaves a gap)."""
    names = names or Vocabulary()
    blank = excel and part in CHARTS
    if part == "totals":  # with the period and which score the figures are taken from
        basis = BASIS_LABELS.get(card.basis, card.basis)
        row = {"since": card.period.since, "until": card.period.until, "basis": basis, **card.totals}
        columns = [
            Column("since", "开始日期", "date"),
            Column("until", "结束日期", "date"),
            Column("basis", "评分口径"),
            *GROUP_COLUMNS,
        ]
        return columns, [_missing(row, GROUP_MISSING, blank)]
    if part == "groups":
        label = (
            [Column("extension", "分机"), Column("agent", "坐席"), Column("team", "班组")]
            if card.group_by == "agent"
            else [Column("team", "班组")]
        )
        rows = [
            _missing(
                {**g, "extension": g.get("agent", ""), "agent": g.get("name") or g.get("agent", "")},
                GROUP_MISSING,
                blank,
            )
            for g in card.groups
        ]
        return [*label, *GROUP_COLUMNS], rows
    if part == "agent_states":
        return agent_state_table(card)
    if part == "trend":
        columns = [Column("day", "日期", "date"), *SUMMARY_COLUMNS]
        return columns, [_missing({**t, "day": _day(t["day"])}, SUMMARY_RATES, blank) for t in card.trend]
    if part == "service_level_days":
        columns = [Column("day", "日期", "date"), *SERVICE_LEVEL_COLUMNS]
        rows = [_missing({**d, "day": _day(d["day"])}, SERVICE_LEVEL_RATES, blank) for d in card.service_level_days]
        return columns, rows
    if part == "service_level_weeks":
        columns = [
            Column("week", "周"),
            Column("since", "开始日期", "date"),
            Column("until", "结束日期", "date"),
            *SERVICE_LEVEL_COLUMNS,
        ]
        rows = []
        for w in card.service_level_weeks:
            year, _, week = w["week"].partition("-W")
            shown = {**w, "week": f"{year}年第{int(week)}周", "since": _day(w["since"]), "until": _day(w["until"])}
            rows.append(_missing(shown, SERVICE_LEVEL_RATES, blank))
        return columns, rows
    if part == "rules":
        columns = [
            Column("rule", "规则"),
            Column("rule_id", "规则编号"),
            Column("severity", "严重程度"),
            Column("failed_calls", "未通过通话数", "int"),
            Column("applied_calls", "适用通话数", "int"),
            Column("pass_rate", "通过率(%)", "number"),
        ]
        rows = [
            _missing(
                {**r, "rule": names.name(RULE, r["rule_id"]), "severity": names.name("severity", r["severity"])},
                ("pass_rate",),
                blank,
            )
            for r in card.rules
        ]
        return columns, rows
    if part == "rings":
        columns = [Column("rings", "振铃次数"), Column("calls", "通话数", "int")]
        return columns, [{"rings": RING_LABELS.get(r["rings"], r["rings"]), "calls": r["calls"]} for r in card.rings]
    if part == "survey":
        columns = [
            Column("question", "问题"),
            Column("asked", "调查数", "int"),
            Column("answered", "回答数", "int"),
            Column("average", "平均分", "number2"),
            *(Column(f"score:{k}", f"{k}分", "int") for k in SURVEY_SCORES),
        ]
        rows = [
            _missing(
                {
                    "question": names.name("survey_question", q["question"]),
                    "asked": q["asked"],
                    "answered": q["answered"],
                    "average": q["average"],
                    **{f"score:{k}": q["distribution"].get(k, 0) for k in SURVEY_SCORES},
                },
                ("average",),
                blank,
            )
            for q in card.survey
        ]
        return columns, rows
    raise ValueError(f"no such part of a scorecard: {part}")


def agent_state_table(card: Scorecard) -> tuple[list[Column], list[dict[str, Any]]]:
    """The agents' state times, a 小休 column per reason, as real durations (a workbook's cells add up and
    show as [hh]:mm:ss; CSV says h:mm:ss). An occupancy that does not exist (the agent was never available)
    is "—", not an empty cell that could be read as 0."""
    reasons = [(reason, not_ready_column(reason)) for reason in card.not_ready_reasons]
    durations = ["就绪", "振铃", "通话", "话后处理", *(c for _, c in reasons), "在线时长"]
    columns = [
        Column("分机", "分机"),
        Column("坐席", "坐席"),
        Column("班组", "班组"),
        *(Column(title, title, "duration") for title in durations),
        Column("占用率(%)", "占用率(%)", "number"),
    ]

    def duration(seconds: int) -> timedelta:
        return timedelta(seconds=seconds)

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
            "占用率(%)": MISSING if row["occupancy"] is None else row["occupancy"],
        }
        for row in card.agent_states
    ]
    return columns, rows


def scorecard_sheets(card: Scorecard, names: Vocabulary, *, excel: bool) -> list[Sheet]:
    """Every table of the scorecard, in the order of its page, each with the chart the page draws from it."""
    sheets = []
    for part, title in PARTS.items():
        columns, rows = scorecard_table(card, part, names, excel=excel)
        sheets.append(Sheet(group_title(card) if part == "groups" else title, columns, rows, CHARTS.get(part)))
    return sheets


def _scorecard_name(card: Scorecard, extension: str, part: str = "") -> tuple[str, str]:
    title = "绩效看板" + (f"_{dict(PARTS, groups=group_title(card))[part]}" if part else "")
    fallback = "scorecard" + (f"_{ASCII_PARTS.get(part, part.replace('_', '-'))}" if part else "")
    return dated(title, fallback, card.period.since, card.period.until, extension)


def scorecard_workbook(card: Scorecard, names: Vocabulary) -> Response:
    """The whole scorecard as one workbook: a sheet per table, charts where the page has them."""
    name, fallback = _scorecard_name(card, "xlsx")
    sheets = scorecard_sheets(card, names, excel=True)
    return download(lambda out: write_xlsx(sheets, out), XLSX, (name, fallback))


def scorecard_zip(card: Scorecard, names: Vocabulary) -> Response:
    """The whole scorecard as a ZIP of CSV files, one per table (01_汇总.csv, 02_坐席.csv, …)."""
    name, fallback = _scorecard_name(card, "zip")
    sheets = scorecard_sheets(card, names, excel=False)
    return download(lambda out: write_zip(sheets, out), ZIP, (name, fallback))


def scorecard_csv(card: Scorecard, part: str, names: Vocabulary) -> Response:
    """One table of the scorecard as CSV."""
    name, fallback = _scorecard_name(card, "csv", part)
    columns, rows = scorecard_table(card, part, names)
    sheet = Sheet(PARTS[part], columns, rows)
    return download(lambda out: write_csv_bytes(sheet, out), CSV, (name, fallback))
