"""Scorecards: how an agent or a team did over a period, read from the stored calls, findings and surveys.

Everything is summed by the database (GROUP BY), so a month of a busy desk costs a few small queries, not
a pass over its rows in Python. Days follow the desk's time zone: each call is put in its local day by
comparing it with the days' boundaries (exact across daylight-saving changes, and the same SQL on SQLite
and PostgreSQL). The agents' state times (就绪, 小休, 通话, ...) are summed from the spans the desk records
(storage.agent_states) over the same days. The team line's service level (三声接听率, overflow, abandoned)
per day and per week is the exception: it is storage.team_calls.service_level for each day (a query on the
indexed arrival time, counted in Python, because a call's outcome depends on the time it is read at), and the
weeks are the sums of their days.

How the calls were talked (:class:`Talk`, from each call's stored ``ConversationMeasures``) is summed the same
way, per agent, team and for everyone: interruptions per call, the agent's speech rate (characters over
speaking time, so a long call weighs as much as it lasted), dead air per call and in all, and the agent's share
of the talk time. Each figure counts only the calls that have that measure (``n``): a call whose audio was
never analysed, or a one-leg recording without overlap or ratio, is left out rather than counted as 0, and a
group with no such call has no figure.

A rule's pass rate is taken over the calls the rule applied to, not over every call: a late-answer rule
applies only to the calls answered late, a hold rule only to calls with a hold. What "applied" means
depends on the rule (:func:`applies_everywhere`): a required phrase leaves a finding on every call it
applied to (satisfied or missing), so its calls are those with a finding; a banned phrase or a hang-up
order leaves none when passed, so its calls are the scored calls its ``when`` picks (with any call that has
a finding for it); a conversation rule (interruption, speech rate, listening, dead air) is judged only where
the call allows it (both legs, enough speech), so its calls are those with its stored verdict, and
``talk_ratio``, which only reports, applies to none. A rule that applied to no call has no pass rate (None),
not 100 %.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, case, distinct, exists, func, literal, or_, select
from sqlalchemy.orm import Session

from contactcenter.speech.rules import CONVERSATION_KINDS, Rule, RuleSet
from contactcenter.storage.agent_states import AgentTimes, state_durations
from contactcenter.storage.models import Agent, Call, RuleHit, RuleResultRow, SurveyResponse
from contactcenter.storage.team_calls import ServiceLevel, service_level

FAILED_KINDS = ("violation", "missing")
REQUIRED_KINDS = ("satisfied", "missing")  # what a required phrase leaves on every call it applied to
NO_TEAM = "未分组"
RING_BUCKETS = ("1", "2", "3", "4+", "未接")
GroupBy = Literal["agent", "team"]
UNSTATED_REASON = "未注明"  # a 小休 the desk recorded without a reason


@dataclass(frozen=True)
class Period:
    """Whole local days, both ends included."""

    since: date
    until: date

    @classmethod
    def last_days(cls, days: int, today: date) -> Period:
        return cls(today - timedelta(days=days - 1), today)

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        return (
            datetime.combine(self.since, time(), zone),
            datetime.combine(self.until + timedelta(days=1), time(), zone),
        )

    @property
    def days(self) -> list[date]:
        return [self.since + timedelta(days=n) for n in range((self.until - self.since).days + 1)]


@dataclass
class Tally:
    """The sums for one group (an agent, a team, a day or everyone), as the database returns them."""

    calls: int = 0
    answered: int = 0
    scored: int = 0
    score_sum: float = 0.0
    passed: int = 0
    within_three_rings: int = 0
    not_checked: int = 0  # answered calls with no score (no model, no speech heard, recognition failed)
    partly_checked: int = 0  # scored calls part of whose audio the recogniser never heard

    @staticmethod
    def columns(pass_score: float, basis: ScoreBasis = "machine") -> list[Any]:
        """The aggregate columns a Tally is made from, in its field order, on the chosen score."""
        answered = Call.answered_at.is_not(None)
        score = score_column(basis)
        return [
            func.count(),
            func.count(Call.answered_at),
            func.count(score),
            func.coalesce(func.sum(score), 0.0),
            func.sum(case((score >= pass_score, 1), else_=0)),
            func.sum(case((and_(answered, Call.rings_before_answer <= 3), 1), else_=0)),
            func.sum(case((and_(answered, score.is_(None)), 1), else_=0)),
            func.sum(case((and_(score.is_not(None), Call.dropped_seconds > 0), 1), else_=0)),
        ]

    @classmethod
    def of(cls, values: Any) -> Tally:
        calls, answered, scored, score_sum, passed, within, unchecked, partly = (v or 0 for v in values)  # SUM of
        # no rows is NULL
        return cls(
            int(calls),
            int(answered),
            int(scored),
            float(score_sum),
            int(passed),
            int(within),
            int(unchecked),
            int(partly),
        )

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))

    def summary(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "answered": self.answered,
            "average_score": round(self.score_sum / self.scored, 1) if self.scored else None,
            "pass_rate": _rate(self.passed, self.scored),
            "answered_within_3_rings": _rate(self.within_three_rings, self.answered),
            # averages and pass rates count only the calls that were checked; these say how many were not
            "not_checked": self.not_checked,
            "partly_checked": self.partly_checked,
        }


def _measure(key: str) -> Any:
    """One number of the call's stored measures (``Call.conversation``), NULL where it is not known."""
    return Call.conversation[key].as_float()


@dataclass
class Talk:
    """How one group's calls were talked: per measure the calls that have it and the sums over those calls."""

    interruption_calls: int = 0
    interruptions: float = 0.0
    dead_air_calls: int = 0
    dead_air_s: float = 0.0
    rate_calls: int = 0  # calls with a speech rate: their characters and speaking time
    agent_chars: float = 0.0
    agent_speaking_s: float = 0.0
    ratio_calls: int = 0  # calls with both legs' talk time (and some talk): their agent and whole talk time
    agent_talk_s: float = 0.0
    both_talk_s: float = 0.0

    @staticmethod
    def columns() -> list[Any]:
        """The aggregate columns a Talk is made from, in its field order."""
        interruptions, dead_air = _measure("interruptions"), _measure("dead_air_s")
        has_rate = _measure("speech_rate_cpm").is_not(None)
        agent, customer = _measure("agent_talk_s"), _measure("customer_talk_s")
        has_ratio = and_(agent.is_not(None), customer.is_not(None), agent + customer > 0)  # records.talk_ratio
        return [
            func.count(interruptions),
            func.sum(interruptions),
            func.count(dead_air),
            func.sum(dead_air),
            func.count(case((has_rate, 1))),
            func.sum(case((has_rate, _measure("agent_chars")))),
            func.sum(case((has_rate, _measure("agent_speaking_s")))),
            func.count(case((has_ratio, 1))),
            func.sum(case((has_ratio, agent))),
            func.sum(case((has_ratio, agent + customer))),
        ]

    @classmethod
    def of(cls, values: Any) -> Talk:
        n_int, ints, n_dead, dead, n_rate, chars, speaking, n_ratio, agent, both = (v or 0 for v in values)  # SUM
        # over no call is NULL
        return cls(
            int(n_int),
            float(ints),
            int(n_dead),
            float(dead),
            int(n_rate),
            float(chars),
            float(speaking),
            int(n_ratio),
            float(agent),
            float(both),
        )

    def __add__(self, other: Talk) -> Talk:
        return Talk(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def summary(self) -> dict[str, Any]:
        """The figures, each with its ``n``; None where no call had the measure."""
        rate = (
            60.0 * self.agent_chars / self.agent_speaking_s if self.rate_calls and self.agent_speaking_s > 0 else None
        )
        return {
            "interruptions": round(self.interruptions) if self.interruption_calls else None,
            "interruptions_per_call": _per(self.interruptions, self.interruption_calls, 2),
            "interruption_calls": self.interruption_calls,
            "speech_rate_cpm": round(rate, 1) if rate is not None else None,
            "speech_rate_calls": self.rate_calls,
            "dead_air_s": round(self.dead_air_s, 1) if self.dead_air_calls else None,
            "dead_air_s_per_call": _per(self.dead_air_s, self.dead_air_calls, 1),
            "dead_air_calls": self.dead_air_calls,
            "talk_ratio": _per(100.0 * self.agent_talk_s, self.both_talk_s, 1) if self.ratio_calls else None,
            "talk_ratio_calls": self.ratio_calls,
        }


def _per(total: float, count: float, digits: int) -> float | None:
    return round(total / count, digits) if count else None


#: The keys of :meth:`Talk.summary`: the figures (each None where no call had the measure) and their n.
TALK_FIGURES = ("interruptions_per_call", "speech_rate_cpm", "dead_air_s_per_call", "dead_air_s", "talk_ratio")


#: Which score figures are taken from: the machine's, or the reviewed one (the machine's where no review).
ScoreBasis = Literal["machine", "reviewed"]
BASIS_LABELS = {"machine": "机器评分", "reviewed": "复核后评分(未复核的通话用机器评分)"}


def score_column(basis: ScoreBasis) -> Any:
    """The score a figure is taken from. Reviewed: a reviewer's verdicts applied where a call was reviewed,
    the machine's score elsewhere, so a reviewed period and an unreviewed one stay comparable."""
    if basis == "reviewed":
        return func.coalesce(Call.reviewed_score, Call.compliance_score)
    return Call.compliance_score


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def applies_everywhere(rule: Rule | None, has_required_findings: bool) -> bool:
    """Whether a rule applies to every scored call its ``when`` picks (a banned phrase, a hang-up order: a
    pass leaves no finding) rather than to the calls with a satisfied or missing finding for it (a required
    phrase). A rule no longer in the rules is judged by its findings: required if it left any such."""
    if rule is None:
        return not has_required_findings
    return rule.type != "required"


def _applies_to(rule: Rule | None, apology_after_rings: int) -> ColumnElement[bool]:
    """The scored calls a rule that :func:`applies_everywhere` was checked on (compliance._verdict)."""
    conditions: list[ColumnElement[bool]] = [Call.compliance_score.is_not(None)]
    when = rule.spec.when if rule is not None else "always"
    if when in ("inbound", "outbound"):
        conditions.append(Call.direction == when)
    elif when == "late_answer":
        conditions.append(Call.rings_before_answer > apology_after_rings)
    if rule is not None and rule.spec.kind == "hangup_order":
        conditions.append(Call.hung_up_first.is_not(None))  # no verdict when nobody is known to have hung up
    if rule is not None and rule.spec.kind in CONVERSATION_KINDS:
        # judged only where it could be (both legs, enough speech; talk_ratio never, it only reports): the
        # calls with its stored verdict. These rules are newer than the stored verdicts, so none is missed
        judged = exists().where(RuleResultRow.call_id == Call.id, RuleResultRow.rule_id == rule.spec.id)
        conditions.append(judged)
    return and_(*conditions)


@dataclass(frozen=True)
class CardQuery:
    """What a scorecard is asked for: the days, by agent or team, one agent or team, and which score."""

    days: Period
    group_by: GroupBy = "agent"
    agent: str | None = None
    team: str | None = None
    basis: ScoreBasis = "machine"

    def as_query(self) -> dict[str, str]:
        """As URL parameters, for the page's links and its export links (defaults left out)."""
        return {
            "since": self.days.since.isoformat(),
            "until": self.days.until.isoformat(),
            "group_by": self.group_by,
            **({"agent": self.agent} if self.agent else {}),
            **({"team": self.team} if self.team else {}),
            **({"basis": self.basis} if self.basis != "machine" else {}),
        }


@dataclass
class Scorecard:
    period: Period
    group_by: GroupBy
    totals: dict[str, Any]
    groups: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    trend: list[dict[str, Any]] = field(default_factory=list)
    rings: list[dict[str, Any]] = field(default_factory=list)
    survey: list[dict[str, Any]] = field(default_factory=list)
    agent_states: list[dict[str, Any]] = field(default_factory=list)
    not_ready_reasons: list[str] = field(default_factory=list)  # the 小休 columns of agent_states, in order
    service_level_days: list[dict[str, Any]] = field(default_factory=list)  # the team line, per local day
    service_level_weeks: list[dict[str, Any]] = field(default_factory=list)  # and per week (Monday to Sunday)
    basis: str = "machine"  # which score the figures are taken from (ScoreBasis)


def hms(seconds: float) -> str:
    """A duration as h:mm:ss (hours past 24 stay hours: a month's ready time reads 186:00:00)."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def not_ready_column(reason: str) -> str:
    """The heading of one 小休 reason's column: 小休(休息); 小休(未注明) for a 小休 with no reason."""
    return f"小休({reason or UNSTATED_REASON})"


def agent_state_rows(
    session: Session,
    start: datetime,
    end: datetime,
    agent: str | None,
    team: str | None,
    not_ready_reasons: Sequence[str],
    now: datetime | None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per agent, whole seconds in each state over [start, end) and the occupancy in percent (None where the
    agent was never available: no figure rather than a fake 0 % or 100 %); and the 小休 reasons, one column
    each: the settings' reasons, then any other found in the spans (reasons since removed from the settings
    still show), a reason-less 小休 last."""
    times = state_durations(session, start=start, end=end, extensions=[agent] if agent else None, now=now)
    known = {
        extension: (name or "", team_name or "")
        for extension, name, team_name in session.execute(
            select(Agent.extension, Agent.name, Agent.team).where(Agent.extension.in_(list(times)))
        )
    }
    if team:
        wanted = "" if team == NO_TEAM else team
        times = {ext: found for ext, found in times.items() if known.get(ext, ("", ""))[1] == wanted}
    found_reasons = {reason for found in times.values() for reason in found.not_ready_s}
    reasons = list(dict.fromkeys(not_ready_reasons))
    reasons += sorted(found_reasons - set(reasons) - {""})
    if "" in found_reasons:
        reasons.append("")
    return [_state_row(found, *known.get(ext, ("", "")), reasons) for ext, found in sorted(times.items())], reasons


def _state_row(found: AgentTimes, name: str, team: str, reasons: list[str]) -> dict[str, Any]:
    parts = {
        "ready_s": round(found.ready_s),
        "ringing_s": round(found.ringing_s),
        "talk_s": round(found.talk_s),
        "wrap_up_s": round(found.wrap_up_s),
    }
    not_ready = {reason: round(found.not_ready_s.get(reason, 0.0)) for reason in reasons}
    occupancy = found.occupancy
    return {
        "agent": found.extension,
        "name": name,
        "team": team or NO_TEAM,
        **parts,
        "not_ready_s": not_ready,
        "logged_in_s": sum(parts.values()) + sum(not_ready.values()),  # the sum of the figures shown
        "occupancy": round(100.0 * occupancy, 1) if occupancy is not None else None,
    }


# The counts a ServiceLevel is made of (all its fields but the longest wait, which only the present has).
SERVICE_LEVEL_COUNTS = tuple(f.name for f in fields(ServiceLevel) if f.name != "longest_wait_s")


SERVICE_LEVEL_COLUMNS = (
    *("calls", "ended", "answered", "answered_in_time", "overflow", "overflow_callback", "overflow_no_callback"),
    *("abandoned", "unknown", "service_level", "overflow_rate", "abandoned_rate"),
)


def service_level_row(level: ServiceLevel) -> dict[str, Any]:
    """The team line's figures for one day or week: counts, and rates in percent of the calls that have
    ended (``ended``: every call but those still ringing), each None when none has ended."""
    figures = level.figures()
    return {name: figures[name] for name in SERVICE_LEVEL_COLUMNS}


def _added(levels: Sequence[ServiceLevel]) -> ServiceLevel:
    return ServiceLevel(
        **{name: sum(getattr(level, name) for level in levels) for name in SERVICE_LEVEL_COUNTS},
        longest_wait_s=None,
    )


def service_level_rows(
    session: Session, period: Period, zone: ZoneInfo, three_rings_s: float, now: datetime | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The team line's service level per local day of ``period`` and per week (Monday to Sunday, cut to the
    period: ``since`` and ``until`` say which days a week's row covers), for the team calls that arrived
    then; calls still ringing at ``now`` are counted as calls but in no rate."""
    per_day = []
    for day in period.days:
        start, end = Period(day, day).bounds(zone)
        per_day.append((day, service_level(session, start, end, three_rings_s, now)))
    days = [{"day": day.isoformat(), **service_level_row(level)} for day, level in per_day]
    weeks: dict[tuple[int, int], list[tuple[date, ServiceLevel]]] = defaultdict(list)
    for day, level in per_day:
        weeks[day.isocalendar()[:2]].append((day, level))
    week_rows = [
        {
            "week": f"{year}-W{week:02d}",
            "since": found[0][0].isoformat(),
            "until": found[-1][0].isoformat(),
            **service_level_row(_added([level for _, level in found])),
        }
        for (year, week), found in weeks.items()
    ]
    return days, week_rows


def scorecard(
    session: Session,
    period: Period,
    zone: ZoneInfo,
    group_by: GroupBy = "agent",
    agent: str | None = None,
    team: str | None = None,
    pass_score: float = 80.0,
    not_ready_reasons: Sequence[str] = (),
    now: datetime | None = None,
    rules: RuleSet | None = None,
    apology_after_rings: int = 3,
    three_rings_s: float = 15.0,
    basis: ScoreBasis = "machine",
) -> Scorecard:
    """Everything the scorecard page shows, for calls invited within ``period`` (local days), and the
    agents' state times over the same days (open spans counted up to ``now``, default the present).
    ``rules`` (the rules in force) and ``apology_after_rings`` tell which calls each rule applied to; without
    them a rule is judged by its findings (see :func:`applies_everywhere`). The team line's service level
    (``three_rings_s``: three ring periods) is the whole line's: the agent and team filters do not apply."""
    start, end = period.bounds(zone)
    where = [Call.invited_at >= start, Call.invited_at < end]
    if agent:
        where.append(Agent.extension == agent)
    if team:
        where.append(Agent.team == ("" if team == NO_TEAM else team))

    def calls(*columns: Any) -> Any:
        return select(*columns).select_from(Call).outerjoin(Agent, Agent.id == Call.agent_id).where(*where)

    tally, talk = Tally.columns(pass_score, basis), Talk.columns()
    keys = [Agent.team] if group_by == "team" else [Agent.extension, Agent.name, Agent.team]
    groups: dict[str, tuple[Tally, Talk, tuple[str, str]]] = {}
    for row in session.execute(calls(*keys, *tally, *talk).group_by(*keys)):
        if group_by == "team":
            key, name, team_name = row[0] or NO_TEAM, "", row[0] or NO_TEAM
        else:
            key, name, team_name = row[0] or "?", row[1] or "", row[2] or NO_TEAM
        found = Tally.of(row[len(keys) : len(keys) + len(tally)])
        talked = Talk.of(row[len(keys) + len(tally) :])
        if key in groups:
            found, talked = groups[key][0] + found, groups[key][1] + talked
        groups[key] = (found, talked, (name, team_name))
    totals = sum((t for t, _, _ in groups.values()), Tally())
    talk_totals = sum((t for _, t, _ in groups.values()), Talk())

    days = period.days
    boundaries = [datetime.combine(day + timedelta(days=1), time(), zone) for day in days[:-1]]
    day_of = (
        case(*[(Call.invited_at < boundary, n) for n, boundary in enumerate(boundaries)], else_=len(days) - 1)
        if boundaries
        else literal(0)
    )
    by_day = {int(row[0]): Tally.of(row[1:]) for row in session.execute(calls(day_of, *tally).group_by(day_of))}

    bucket = case(
        (Call.answered_at.is_(None), "未接"),
        (Call.rings_before_answer <= 1, "1"),
        (Call.rings_before_answer == 2, "2"),
        (Call.rings_before_answer == 3, "3"),
        else_="4+",
    )
    rings = {b: n for b, n in session.execute(calls(bucket, func.count()).group_by(bucket))}

    failed_kind = RuleHit.kind.in_(FAILED_KINDS)
    rule_rows = session.execute(
        calls(
            RuleHit.rule_id,
            func.min(case((failed_kind, RuleHit.severity))),
            func.count(distinct(case((failed_kind, RuleHit.call_id)))),
            func.count(distinct(case((RuleHit.kind.in_(REQUIRED_KINDS), RuleHit.call_id)))),
        )
        .join(RuleHit, RuleHit.call_id == Call.id)
        .group_by(RuleHit.rule_id)
    )
    by_id = {rule.id: rule for rule in rules.rules} if rules is not None else {}
    rules_found = []
    found_rows = {rule_id: (severity, failed, required) for rule_id, severity, failed, required in rule_rows}
    for rule_id in by_id:  # a rule in force that left no finding at all still has a row
        found_rows.setdefault(rule_id, (None, 0, 0))
    for rule_id, (severity, failed, required_calls) in found_rows.items():
        rule = by_id.get(rule_id)
        severity = severity or (rule.spec.severity if rule is not None else None)
        if applies_everywhere(rule, bool(required_calls)):
            has_finding = exists().where(RuleHit.call_id == Call.id, RuleHit.rule_id == rule_id)
            applied = int(
                session.scalar(calls(func.count()).where(or_(_applies_to(rule, apology_after_rings), has_finding))) or 0
            )
        else:
            applied = int(
                session.scalar(
                    calls(func.count(distinct(RuleHit.call_id)))
                    .join(RuleHit, RuleHit.call_id == Call.id)
                    .where(RuleHit.rule_id == rule_id)
                )
                or 0
            )  # every call with a finding for it: satisfied, missing (and any violation)
        rules_found.append(
            {
                "rule_id": rule_id,
                "severity": severity,
                "failed_calls": int(failed),
                "applied_calls": applied,
                "pass_rate": _rate(applied - int(failed), applied),
            }
        )
    # most failures first; a rule that never failed stays listed (it passed, or never applied: pass rate None)
    rules_found.sort(key=lambda r: (-r["failed_calls"], r["pass_rate"] is None, r["rule_id"]))

    answers: dict[str, Counter[int]] = defaultdict(Counter)
    asked: Counter[str] = Counter()
    for question, answer, count in session.execute(
        calls(SurveyResponse.question_key, SurveyResponse.answer, func.count())
        .join(SurveyResponse, SurveyResponse.call_id == Call.id)
        .group_by(SurveyResponse.question_key, SurveyResponse.answer)
    ):
        asked[question] += count
        if answer is not None:
            answers[question][answer] += count
    survey = []
    for question in sorted(asked):
        given = answers[question]
        answered = sum(given.values())
        survey.append(
            {
                "question": question,
                "asked": asked[question],
                "answered": answered,
                "average": round(sum(k * v for k, v in given.items()) / answered, 2) if answered else None,
                "distribution": {str(k): given.get(k, 0) for k in range(1, 6)},
            }
        )

    group_rows = []
    for key in sorted(groups, key=lambda k: (-groups[k][0].calls, k)):
        found, talked, (name, team_name) = groups[key]
        label = {"agent": key, "name": name, "team": team_name} if group_by == "agent" else {"team": key}
        group_rows.append({**label, **found.summary(), **talked.summary()})
    state_rows, reasons = agent_state_rows(session, start, end, agent, team, not_ready_reasons, now)
    level_days, level_weeks = service_level_rows(session, period, zone, three_rings_s, now)
    return Scorecard(
        period=period,
        group_by=group_by,
        totals={**totals.summary(), **talk_totals.summary()},
        groups=group_rows,
        rules=rules_found,
        trend=[{"day": day.isoformat(), **by_day.get(n, Tally()).summary()} for n, day in enumerate(days)],
        rings=[{"rings": b, "calls": rings.get(b, 0)} for b in RING_BUCKETS],
        survey=survey,
        basis=basis,
        agent_states=state_rows,
        not_ready_reasons=reasons,
        service_level_days=level_days,
        service_level_weeks=level_weeks,
    )
