"""The reviewers' daily queue (质检任务), disputes (申诉) and calibration figures.

Each night the queue of the day before is built (:func:`build_queue`): every checked call that failed a
critical rule, every complaint, and a sample of the rest (抽检), a share of the calls or so many per agent,
drawn with a generator seeded by ``[review] seed`` and the day, so the same day always gives the same sample
(an auditor can redraw it). The calls are dealt to the reviewers in turn (round robin, or among the
reviewers of the agent's team), and a share of them also to a supervisor for calibration. Building a day
again adds only what is missing, so a rerun after a crash or a late call never deals a call twice.

A task moves pending → in_review (opened) → reviewed (a review saved); a dispute an agent raises puts the
call's tasks in "disputed" until a team lead decides it, which is final and recorded.

Calibration: per rule, how often reviewers agreed with the machine (the production measure of a rule's
precision); per reviewer, how often they agreed with the team lead on the calls both reviewed.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contactcenter.settings import ReviewSettings
from contactcenter.storage.models import (
    Agent,
    Call,
    Dispute,
    Review,
    ReviewTask,
    RuleHit,
    RuleResultRow,
    Ticket,
    WebUser,
    utcnow,
)
from contactcenter.storage.reviews import rescore_after_reviews

FAILED_KINDS = ("violation", "missing")
REASON_ORDER = ("critical", "complaint", "sample")  # a call in two of them is queued for the first
DISPUTE_STATES = ("open", "upheld", "rejected")


class QueueError(Exception):
    """A queue operation that cannot be done as asked; the message says why, in Chinese."""


@dataclass
class BuiltQueue:
    """What one build did: calls considered, tasks added by reason and by reviewer, and why none were."""

    day: date
    calls: int = 0
    added: Counter[str] = field(default_factory=Counter)  # reason -> tasks
    per_reviewer: Counter[str] = field(default_factory=Counter)  # user name -> tasks
    already_queued: int = 0
    problem: str = ""  # e.g. no reviewer to deal calls to


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    return datetime.combine(day, time(), zone), datetime.combine(day + timedelta(days=1), time(), zone)


def _calls_of_the_day(session: Session, day: date, zone: ZoneInfo, complaint_categories: Sequence[str]) -> list[Any]:
    start, end = day_bounds(day, zone)
    critical = or_(
        exists().where(RuleHit.call_id == Call.id, RuleHit.kind.in_(FAILED_KINDS), RuleHit.severity == "critical"),
        exists().where(
            RuleResultRow.call_id == Call.id, RuleResultRow.passed.is_(False), RuleResultRow.severity == "critical"
        ),
    )
    complaint = or_(
        Call.complaint.is_(True),
        Call.category.in_(complaint_categories),
        exists().where(Ticket.call_id == Call.id, Ticket.category.in_(complaint_categories)),
    )
    query = (
        select(Call.id, Agent.extension, Agent.team, critical.label("critical"), complaint.label("complaint"))
        .outerjoin(Agent, Agent.id == Call.agent_id)
        .where(Call.invited_at >= start, Call.invited_at < end, Call.compliance_score.is_not(None))
        .order_by(Call.id)
    )
    return list(session.execute(query))


def choose_calls(rows: Sequence[Any], policy: ReviewSettings, day: date) -> dict[int, str]:
    """Call id → why it is queued: the mandatory ones, then the seeded sample of the rest."""
    chosen: dict[int, str] = {}
    for row in rows:
        if policy.critical_failures and row.critical:
            chosen[row.id] = "critical"
        elif policy.complaints and row.complaint:
            chosen[row.id] = "complaint"
    rest = [row for row in rows if row.id not in chosen]
    draw = random.Random(f"{policy.seed}:{day.isoformat()}")
    if policy.per_agent_per_day:
        by_agent: dict[str, list[int]] = defaultdict(list)
        for row in rest:
            by_agent[row.extension or ""].append(row.id)
        for agent in sorted(by_agent):
            ids = by_agent[agent]
            chosen.update((call_id, "sample") for call_id in draw.sample(ids, min(policy.per_agent_per_day, len(ids))))
    elif policy.sample_percent and rest:
        size = math.ceil(len(rest) * policy.sample_percent / 100)
        chosen.update((call_id, "sample") for call_id in draw.sample([row.id for row in rest], size))
    return chosen


def _users(session: Session, role: str) -> list[tuple[int, str]]:
    return list(
        session.execute(
            select(WebUser.id, WebUser.username)
            .where(WebUser.role == role, WebUser.active.is_(True))
            .order_by(WebUser.username)
        ).tuples()
    )


def build_queue(
    session: Session,
    day: date,
    zone: ZoneInfo,
    policy: ReviewSettings,
    complaint_categories: Sequence[str],
) -> BuiltQueue:
    """Queue ``day``'s calls for the reviewers (see the module's docstring); calls already queued stay as
    they are. The caller commits."""
    built = BuiltQueue(day)
    rows = _calls_of_the_day(session, day, zone, complaint_categories)
    built.calls = len(rows)
    reviewers = _users(session, "reviewer")
    if not reviewers:
        built.problem = "没有启用的质检员账号,未分配任务"
        return built
    chosen = choose_calls(rows, policy, day)
    queued = (
        set(
            session.scalars(
                select(ReviewTask.call_id).where(ReviewTask.call_id.in_(chosen), ReviewTask.reason != "calibration")
            )
        )
        if chosen
        else set()
    )
    built.already_queued = len(queued)
    team_of = {row.id: row.team or "" for row in rows}
    by_name = {name: user_id for user_id, name in reviewers}
    teams = {
        team: [(by_name[name], name) for name in sorted(names) if name in by_name]
        for team, names in policy.teams.items()
    }
    turn: Counter[str] = Counter()
    order = sorted(chosen, key=lambda call_id: (REASON_ORDER.index(chosen[call_id]), call_id))
    for call_id in order:
        pool = reviewers
        key = ""
        if policy.assign == "by_team" and teams.get(team_of[call_id]):
            key = team_of[call_id]
            pool = teams[key]
        user_id, name = pool[turn[key] % len(pool)]
        turn[key] += 1
        if call_id in queued:
            continue
        session.add(ReviewTask(call_id=call_id, day=day.isoformat(), reviewer_id=user_id, reason=chosen[call_id]))
        built.added[chosen[call_id]] += 1
        built.per_reviewer[name] += 1
    leads = _users(session, "supervisor")
    if leads and policy.double_review_percent and order:
        draw = random.Random(f"{policy.seed}:{day.isoformat()}:calibration")
        size = math.ceil(len(order) * policy.double_review_percent / 100)
        doubled = sorted(draw.sample(order, min(size, len(order))))
        have = set(
            session.scalars(
                select(ReviewTask.call_id).where(ReviewTask.call_id.in_(doubled), ReviewTask.reason == "calibration")
            )
        )
        for n, call_id in enumerate(doubled):
            if call_id in have:
                continue
            user_id, name = leads[n % len(leads)]
            session.add(ReviewTask(call_id=call_id, day=day.isoformat(), reviewer_id=user_id, reason="calibration"))
            built.added["calibration"] += 1
            built.per_reviewer[name] += 1
    session.flush()
    return built


# ------------------------------------------------------------------------------------------- the states


def open_task(session: Session, call_id: int, reviewer_id: int) -> None:
    """The reviewer opened the call: their pending task for it is now in review."""
    session.execute(
        update(ReviewTask)
        .where(ReviewTask.call_id == call_id, ReviewTask.reviewer_id == reviewer_id, ReviewTask.state == "pending")
        .values(state="in_review", started_at=utcnow())
    )


@dataclass(frozen=True)
class QueueItem:
    task_id: int
    call_id: int
    day: str
    reason: str
    state: str
    invited_at: datetime
    agent: str
    score: float | None
    done_at: datetime | None


def my_queue(session: Session, reviewer_id: int, today: date, zone: ZoneInfo) -> dict[str, list[QueueItem]]:
    """A reviewer's page: to do (pending, oldest day first), in review, in dispute, and done today."""
    start, end = day_bounds(today, zone)
    rows = session.execute(
        select(ReviewTask, Call.invited_at, Call.compliance_score, Agent.extension, Agent.name)
        .join(Call, Call.id == ReviewTask.call_id)
        .outerjoin(Agent, Agent.id == Call.agent_id)
        .where(
            ReviewTask.reviewer_id == reviewer_id,
            or_(
                ReviewTask.state.in_(("pending", "in_review", "disputed")),
                and_(ReviewTask.done_at >= start, ReviewTask.done_at < end),
            ),
        )
        .order_by(ReviewTask.day, _reason_order(), ReviewTask.call_id)
    )
    found: dict[str, list[QueueItem]] = {"pending": [], "in_review": [], "disputed": [], "reviewed": []}
    for task, invited_at, score, extension, name in rows:
        agent = f"{name}({extension})" if name and extension else (name or extension or "")
        found[task.state].append(
            QueueItem(task.id, task.call_id, task.day, task.reason, task.state, invited_at, agent, score, task.done_at)
        )
    return found


def _reason_order() -> Any:
    """Critical failures first, then complaints, samples and calibration (the queue's working order)."""
    return case({"critical": 0, "complaint": 1, "sample": 2}, value=ReviewTask.reason, else_=3)


def next_in_queue(session: Session, reviewer_id: int, after_call_id: int | None = None) -> int | None:
    """The call the reviewer should open next: their first open task other than ``after_call_id``."""
    query = (
        select(ReviewTask.call_id)
        .where(ReviewTask.reviewer_id == reviewer_id, ReviewTask.state.in_(("pending", "in_review")))
        .order_by(ReviewTask.day, _reason_order(), ReviewTask.call_id)
    )
    if after_call_id is not None:
        query = query.where(ReviewTask.call_id != after_call_id)
    return session.scalars(query.limit(1)).first()


def queue_status(session: Session, since: date, until: date) -> list[dict[str, Any]]:
    """Per reviewer over the days: tasks in each state, for the team lead and the export."""
    rows = session.execute(
        select(WebUser.username, WebUser.display_name, ReviewTask.state, func.count())
        .join(WebUser, WebUser.id == ReviewTask.reviewer_id)
        .where(ReviewTask.day >= since.isoformat(), ReviewTask.day <= until.isoformat())
        .group_by(WebUser.username, WebUser.display_name, ReviewTask.state)
    )
    table: dict[str, dict[str, Any]] = {}
    for username, display, state, count in rows:
        entry = table.setdefault(
            username,
            {
                "reviewer": username,
                "name": display or username,
                **{s: 0 for s in ("pending", "in_review", "reviewed", "disputed")},
            },
        )
        entry[state] = int(count)
    for entry in table.values():
        entry["total"] = sum(entry[s] for s in ("pending", "in_review", "reviewed", "disputed"))
    return sorted(table.values(), key=lambda e: e["reviewer"])


# ------------------------------------------------------------------------------------------- disputes


def raise_dispute(session: Session, call_id: int, rule_id: str, raised_by: str, reason: str) -> int:
    """An agent's appeal against a rule's finding on their call; the call's tasks go to "disputed". One
    dispute per finding: once a team lead has decided, the decision is final."""
    reason = reason.strip()
    if not reason:
        raise QueueError("申诉理由不能为空")
    failed = session.scalar(
        select(func.count())
        .select_from(RuleHit)
        .where(RuleHit.call_id == call_id, RuleHit.rule_id == rule_id, RuleHit.kind.in_(FAILED_KINDS))
    ) or session.scalar(
        select(func.count())
        .select_from(RuleResultRow)
        .where(RuleResultRow.call_id == call_id, RuleResultRow.rule_id == rule_id, RuleResultRow.passed.is_(False))
    )
    if not failed:
        raise QueueError("这通电话没有这条规则的违规或缺失结果,无法申诉")
    earlier = session.scalar(select(Dispute.state).where(Dispute.call_id == call_id, Dispute.rule_id == rule_id))
    if earlier == "open":
        raise QueueError("这条质检结果已有未处理的申诉")
    if earlier is not None:
        raise QueueError("这条质检结果的申诉已由组长裁定,裁定为最终结果")
    dispute = Dispute(call_id=call_id, rule_id=rule_id, raised_by=raised_by[:100], reason=reason[:4000])
    try:
        with session.begin_nested():  # two desks at once: the unique (call, rule) lets one through
            session.add(dispute)
            session.flush()
    except IntegrityError:
        raise QueueError("这条质检结果已有未处理的申诉") from None
    session.execute(update(ReviewTask).where(ReviewTask.call_id == call_id).values(state="disputed"))
    session.flush()
    return int(dispute.id)


def decide_dispute(session: Session, dispute_id: int, upheld: bool, decided_by: str, decision: str) -> Dispute:
    """The team lead's final word: upheld (the finding is wrong) or rejected; recorded with who and why.
    An upheld dispute counts as a "disagree" on that rule for the reviewed score."""
    dispute = session.get(Dispute, dispute_id)
    if dispute is None:
        raise QueueError("没有这条申诉")
    if dispute.state != "open":
        raise QueueError("这条申诉已经处理,处理结果不能更改")
    if not decision.strip():
        raise QueueError("请填写处理意见")
    dispute.state = "upheld" if upheld else "rejected"
    dispute.decided_by = decided_by[:100]
    dispute.decided_at = utcnow()
    dispute.decision = decision.strip()[:4000]
    still_open = session.scalar(
        select(func.count()).select_from(Dispute).where(Dispute.call_id == dispute.call_id, Dispute.state == "open")
    )
    if not still_open:
        session.execute(
            update(ReviewTask)
            .where(ReviewTask.call_id == dispute.call_id, ReviewTask.state == "disputed")
            .values(state=_state_after_dispute())
        )
    session.flush()
    rescore_after_reviews(session, dispute.call_id)
    return dispute


def _state_after_dispute() -> Any:
    """A disputed task goes back to reviewed if its reviewer had finished it, else to pending."""
    return case((ReviewTask.done_at.is_not(None), "reviewed"), else_="pending")


# ---------------------------------------------------------------------------------------- calibration


def _latest_reviews(
    session: Session, call_ids: Iterable[int] | None, start: datetime, end: datetime
) -> dict[tuple[int, int], dict[str, str]]:
    """(call, reviewer) → that reviewer's verdicts in force on the call (later reviews override earlier)."""
    query = (
        select(Review.call_id, Review.reviewer_id, Review.verdicts)
        .join(Call, Call.id == Review.call_id)
        .where(Call.invited_at >= start, Call.invited_at < end)
        .order_by(Review.id)
    )
    if call_ids is not None:
        query = query.where(Review.call_id.in_(list(call_ids)))
    found: dict[tuple[int, int], dict[str, str]] = defaultdict(dict)
    for call_id, reviewer_id, verdicts in session.execute(query):
        found[(call_id, reviewer_id)].update({r: v for r, v in (verdicts or {}).items() if v in ("agree", "disagree")})
    return found


def rule_agreement(session: Session, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Per rule: verdicts given on its findings, how many agreed with the machine, and the share."""
    agree: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for verdicts in _latest_reviews(session, None, start, end).values():
        for rule, verdict in verdicts.items():
            total[rule] += 1
            agree[rule] += verdict == "agree"
    return [
        {
            "rule_id": rule,
            "verdicts": total[rule],
            "agreed": agree[rule],
            "agreement": round(100.0 * agree[rule] / total[rule], 1),
        }
        for rule in sorted(total, key=lambda r: (agree[r] / total[r], r))
    ]


def reviewer_agreement(session: Session, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Per reviewer: on calls a supervisor also reviewed (calibration), how many rule verdicts they shared
    with the supervisor and how many of those matched."""
    leads = {user_id for user_id, _ in _users(session, "supervisor")} | {
        user_id for user_id, _ in _users(session, "admin")
    }
    calibrated = set(session.scalars(select(ReviewTask.call_id).where(ReviewTask.reason == "calibration")))
    reviews = _latest_reviews(session, calibrated, start, end)
    by_call: dict[int, dict[int, dict[str, str]]] = defaultdict(dict)
    for (call_id, reviewer_id), verdicts in reviews.items():
        by_call[call_id][reviewer_id] = verdicts
    shared: Counter[int] = Counter()
    matched: Counter[int] = Counter()
    for per_reviewer in by_call.values():
        lead_verdicts = [v for r, v in per_reviewer.items() if r in leads]
        if not lead_verdicts:
            continue
        lead = lead_verdicts[0]
        for reviewer_id, verdicts in per_reviewer.items():
            if reviewer_id in leads:
                continue
            for rule, verdict in verdicts.items():
                if rule in lead:
                    shared[reviewer_id] += 1
                    matched[reviewer_id] += verdict == lead[rule]
    names = dict(session.execute(select(WebUser.id, WebUser.display_name)).tuples().all())
    logins = dict(session.execute(select(WebUser.id, WebUser.username)).tuples().all())
    return [
        {
            "reviewer": logins.get(r, str(r)),
            "name": names.get(r) or logins.get(r, str(r)),
            "shared_verdicts": shared[r],
            "matched": matched[r],
            "agreement": round(100.0 * matched[r] / shared[r], 1),
        }
        for r in sorted(shared, key=lambda r: logins.get(r, ""))
    ]
