"""What the reviewer console shows, read from the store: the filtered calls list and one call in full.

The list pages by keyset (``invited_at, id`` below the last row seen), not by OFFSET, so the hundredth page
of 100,000 calls costs what the first does; filters are plain indexed WHERE clauses. Customer numbers are
masked here, before anything reaches a page, an API answer or an export, for roles that should not see them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from contactcenter.phones import mask_number, mask_numbers
from contactcenter.records import CHECK_LABELS, UNCHECKED_REASONS, ConversationMeasures, check_status, removal_notes
from contactcenter.speech.redact import redact_numbers
from contactcenter.storage.calls import conversation_of
from contactcenter.storage.models import Agent, Call, Callback, Dispute, Review, RuleHit, Ticket, WebUser

FAILED_KINDS = ("violation", "missing")


def local_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """A stored (UTC) time as the desk's people read it: 2026-11-02 09:00:00 in the desk's zone."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def mask_phone(number: str) -> str:
    """138****8000: enough to tell two customers apart, not enough to call them."""
    return mask_number(number)


@dataclass(frozen=True)
class CallFilter:
    since: date | None = None
    until: date | None = None
    agent: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    rule_failed: str | None = None
    category: str | None = None
    complaint: bool | None = None
    reviewed: bool | None = None  # True: calls with a review; False: calls nobody reviewed yet
    complaint_categories: tuple[str, ...] = ("投诉",)

    def as_query(self) -> dict[str, str]:
        """The filter as URL parameters (for the next-page link and the export link)."""
        values = {
            "since": self.since,
            "until": self.until,
            "agent": self.agent,
            "score_min": self.score_min,
            "score_max": self.score_max,
            "rule_failed": self.rule_failed,
            "category": self.category,
            "complaint": None if self.complaint is None else ("1" if self.complaint else "0"),
            "reviewed": None if self.reviewed is None else ("1" if self.reviewed else "0"),
        }
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


@dataclass
class CallPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None
    total: int | None = None  # every call the filter matches (None: not counted)


#: How the calls list can be ordered: name -> (what to order by, newest/highest first?). Ties by id.
SORTS = ("time", "time_asc", "score", "score_asc", "duration", "duration_asc")


def _duration(session: Session) -> Any:
    """The talk time in seconds as this database computes it (SQLite has no interval arithmetic)."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(Call.ended_at) - func.julianday(Call.answered_at)) * 86400.0
    return func.extract("epoch", Call.ended_at - Call.answered_at)


def _order(session: Session, sort: str) -> list[Any]:
    column = {"time": Call.invited_at, "score": Call.compliance_score, "duration": _duration(session)}[
        sort.removesuffix("_asc")
    ]
    if sort.endswith("_asc"):
        return [column.is_(None), column.asc(), Call.id.asc()]  # calls with no score or duration last either way
    return [column.is_(None), column.desc(), Call.id.desc()]


def _conditions(where: CallFilter, zone: ZoneInfo) -> list[Any]:
    conditions: list[Any] = []
    if where.since is not None:
        conditions.append(Call.invited_at >= datetime.combine(where.since, time(), zone))
    if where.until is not None:
        conditions.append(Call.invited_at < datetime.combine(where.until + timedelta(days=1), time(), zone))
    if where.agent:  # the extension, or any part of the agent's name (李娜, 李)
        named = or_(Agent.extension == where.agent, Agent.name.contains(where.agent, autoescape=True))
        conditions.append(Call.agent_id.in_(select(Agent.id).where(named)))
    if where.score_min is not None:
        conditions.append(Call.compliance_score >= where.score_min)
    if where.score_max is not None:
        conditions.append(Call.compliance_score <= where.score_max)
    if where.rule_failed:
        # an alias: the findings list selects from rule_hits itself, and the subquery must not correlate to it
        failed = aliased(RuleHit)
        conditions.append(
            exists().where(
                failed.call_id == Call.id, failed.rule_id == where.rule_failed, failed.kind.in_(FAILED_KINDS)
            )
        )
    if where.category:  # the call's own, or its ticket's (a ticket made after the call carries it)
        conditions.append(
            or_(
                Call.category == where.category,
                exists().where(Ticket.call_id == Call.id, Ticket.category == where.category),
            )
        )
    if where.reviewed is not None:
        reviewed = exists().where(Review.call_id == Call.id)
        conditions.append(reviewed if where.reviewed else ~reviewed)
    if where.complaint is not None:
        is_complaint = or_(
            Call.category.in_(where.complaint_categories),
            exists().where(Ticket.call_id == Call.id, Ticket.category.in_(where.complaint_categories)),
        )
        conditions.append(is_complaint if where.complaint else ~is_complaint)
    return conditions


def encode_cursor(invited_at: datetime, call_id: int) -> str:
    return f"{invited_at.timestamp():.6f}_{call_id}"


MAX_CALL_ID = 2**31 - 1  # calls.id is INTEGER: a larger id overflows PostgreSQL's query


def decode_cursor(cursor: str) -> tuple[datetime, int] | None:
    """The position ``encode_cursor`` wrote; None for text that is not one, or one no call can have (a time
    past the year 9999, an id past 32 bits)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)_([0-9]+)", cursor or "")
    if match is None:
        return None
    call_id = int(match.group(2))
    try:
        at = datetime.fromtimestamp(float(match.group(1)), UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return (at, call_id) if call_id <= MAX_CALL_ID else None


def verdict_check(score: float | None, dropped_seconds: float, unchecked_reason: str) -> dict[str, Any]:
    """How far the call's score can be trusted, as pages, the API and exports show it: ``check`` (已检查 /
    部分检查 / 未检查), and why a call has no score or how much audio the recogniser missed."""
    check = check_status(score, dropped_seconds)
    return {
        "check": check,
        "check_label": CHECK_LABELS[check],
        "check_note": (
            UNCHECKED_REASONS.get(unchecked_reason, unchecked_reason or "未知原因")
            if check == "not_checked"
            else f"{dropped_seconds:.0f} 秒音频未识别"
            if check == "partly_checked"
            else ""
        ),
    }


def list_calls(
    session: Session,
    where: CallFilter,
    zone: ZoneInfo,
    unmasked: bool,
    limit: int,
    cursor: str | None = None,
    *,
    sort: str = "time",
    offset: int = 0,
    count: bool = False,
) -> CallPage:
    """A page of the filtered calls: after ``cursor`` (newest first only) or from ``offset`` in ``sort``
    order; with the total the filter matches when ``count``."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}")
    query = (
        select(
            Call.id,
            Call.invited_at,
            Call.remote_number,
            Call.disposition,
            Call.rings_before_answer,
            Call.compliance_score,
            Call.category,
            Call.hung_up_first,
            Call.answered_at,
            Call.ended_at,
            Call.unchecked_reason,
            Call.dropped_seconds,
            Agent.extension,
            Agent.name,
        )
        .outerjoin(Agent, Agent.id == Call.agent_id)
        .where(*_conditions(where, zone))
        .order_by(*_order(session, sort))
        .limit(limit + 1)
    )
    position = decode_cursor(cursor) if cursor and sort == "time" else None
    if position is not None:
        at, call_id = position
        query = query.where(or_(Call.invited_at < at, and_(Call.invited_at == at, Call.id < call_id)))
    elif offset:
        query = query.offset(offset)
    found = session.execute(query).all()
    total = session.scalar(select(func.count()).select_from(Call).where(*_conditions(where, zone))) if count else None
    page, more = found[:limit], len(found) > limit
    failed: dict[int, list[str]] = defaultdict(list)
    if page:
        for call_id, rule_id in session.execute(
            select(RuleHit.call_id, RuleHit.rule_id)
            .where(RuleHit.call_id.in_([r.id for r in page]), RuleHit.kind.in_(FAILED_KINDS))
            .distinct()
        ):
            failed[call_id].append(rule_id)
    ids = [r.id for r in page]
    reviewed = set(session.scalars(select(Review.call_id).where(Review.call_id.in_(ids)).distinct())) if ids else set()
    ticket_category: dict[int, str] = {}
    if ids:
        for call_id, category in session.execute(
            select(Ticket.call_id, Ticket.category).where(Ticket.call_id.in_(ids)).order_by(Ticket.id)
        ):
            ticket_category.setdefault(call_id, category)
    rows = []
    for r in page:
        duration = (r.ended_at - r.answered_at).total_seconds() if r.answered_at and r.ended_at else None
        rows.append(
            {
                "id": r.id,
                "invited_at": local_time(r.invited_at, zone),
                "agent": r.extension or "",
                "agent_name": r.name or "",
                "customer_phone": r.remote_number if unmasked else mask_phone(r.remote_number),
                "disposition": r.disposition,
                "rings": r.rings_before_answer,
                "score": r.compliance_score,
                **verdict_check(r.compliance_score, r.dropped_seconds, r.unchecked_reason),
                "category": r.category or ticket_category.get(r.id, ""),
                "review_state": "reviewed" if r.id in reviewed else "pending",
                "hung_up_first": r.hung_up_first or "",
                "duration_s": round(duration) if duration else None,
                "failed_rules": sorted(failed.get(r.id, [])),
            }
        )
    next_cursor = encode_cursor(page[-1].invited_at, page[-1].id) if more and sort == "time" else None
    return CallPage(rows, next_cursor, total)


# ----------------------------------------------------------------------------------------------- one call


@dataclass
class Segment:
    text: str
    hit: dict[str, Any] | None = None


@dataclass
class CallDetail:
    call: dict[str, Any]
    utterances: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    tickets: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    recording: str = ""
    rule_results: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule id -> the machine's verdict
    disputes: list[dict[str, Any]] = field(default_factory=list)  # agents' appeals (申诉) and their decisions
    conversation: dict[str, Any] | None = None  # how the call was talked (conversation_figures); None: not analysed


def conversation_figures(measures: ConversationMeasures | None) -> dict[str, Any] | None:
    """A call's measures as its page and the API show them: the stored figures, and the agent's share of the
    talk time in percent (``talk_ratio``, as the scorecards give it). A measure that is not known stays None
    (the page says "—"); None for a call whose audio was never analysed."""
    if measures is None:
        return None
    ratio = measures.talk_ratio
    return {**measures.model_dump(mode="json"), "talk_ratio": round(100.0 * ratio, 1) if ratio is not None else None}


def agent_label(name: str, extension: str) -> str:
    """How a person is shown: 李娜(1001); the extension alone when the agent has no name yet."""
    return f"{name}({extension})" if name and extension else name or extension


def highlight(text: str, hits: list[dict[str, Any]]) -> list[Segment]:
    """``text`` cut into plain and highlighted segments, one highlight per hit whose words it contains."""
    segments = [Segment(text)]
    for hit in hits:
        words = hit["matched_text"].replace(" ", "")
        if not words:
            continue
        cut: list[Segment] = []
        for segment in segments:
            plain = segment.text.replace(" ", "") if segment.hit is None else ""
            index = plain.find(words) if plain else -1
            if index < 0:
                cut.append(segment)
                continue
            # map the index in the space-free text back to the segment's own characters
            positions = [i for i, c in enumerate(segment.text) if c != " "]
            start, end = positions[index], positions[index + len(words) - 1] + 1
            cut += [Segment(segment.text[:start]), Segment(segment.text[start:end], hit), Segment(segment.text[end:])]
        segments = [s for s in cut if s.text]
    return segments


def call_detail(session: Session, call_id: int, zone: ZoneInfo, unmasked: bool) -> CallDetail | None:
    call = session.get(Call, call_id)
    if call is None:
        return None

    def local(moment: datetime | None) -> str:
        return local_time(moment, zone)

    def shown(text: str) -> str:
        """Free text as a masked role reads it: typed numbers (138-0013-8000) and spoken ones hidden."""
        return text if unmasked else redact_numbers(mask_numbers(text))

    phone = call.remote_number if unmasked else mask_phone(call.remote_number)
    detail = CallDetail(
        call={
            "id": call.id,
            "sip_call_id": call.sip_call_id,
            "direction": call.direction,
            "customer_phone": phone,
            "agent": agent_label(call.agent.name, call.agent.extension) if call.agent else "",
            "reviewed_score": call.reviewed_score,
            "complaint": call.complaint,
            "invited_at": local(call.invited_at),
            "answered_at": local(call.answered_at),
            "ended_at": local(call.ended_at),
            "rings": call.rings_before_answer,
            "disposition": call.disposition,
            "hung_up_first": call.hung_up_first,
            "category": call.category or "",
            "purpose": shown(call.purpose),
            "score": call.compliance_score,
            **verdict_check(call.compliance_score, call.dropped_seconds, call.unchecked_reason),
            "removed": removal_notes(call.data_removed),  # deleted by retention or erasure, not missing
            "events": sorted((at, name) for name, times in (call.events or {}).items() for at in times),
        },
        recording=call.recording_path,
    )
    hits: list[dict[str, Any]] = [
        {
            "id": h.id,
            "rule_id": h.rule_id,
            "kind": h.kind,
            "severity": h.severity,
            "leg": h.leg,
            "at_s": h.at_s,
            "end_s": h.end_s,  # a finding that is a stretch of the call (an overlap, a silence): where it ends
            "matched_text": shown(h.matched_text),
            "live": h.live,
        }
        for h in sorted(call.rule_hits, key=lambda h: (h.at_s is None, h.at_s or 0))
    ]
    detail.findings = hits
    detail.conversation = conversation_figures(conversation_of(call.conversation))
    detail.rule_results = {
        r.rule_id: {"passed": r.passed, "severity": r.severity, "weight": r.weight} for r in call.rule_results
    }
    for u in call.utterances:
        own = [
            h
            for h in hits
            if h["leg"] == u.leg
            and h["at_s"] is not None
            and u.start_s - 0.5 <= h["at_s"] <= u.end_s + 0.5
            and h["kind"] != "missing"
        ]
        text = shown(u.text)
        detail.utterances.append(
            {"leg": u.leg, "start_s": u.start_s, "end_s": u.end_s, "text": text, "segments": highlight(text, own)}
        )
    detail.tickets = [
        {
            "id": t.id,
            "category": t.category,
            "priority": t.priority,
            "status": t.status,
            "purpose": shown(t.purpose),
            "due_at": local(t.due_at),
            "caller_phone": t.caller_phone if unmasked else mask_phone(t.caller_phone),
        }
        for t in session.scalars(select(Ticket).where(Ticket.call_id == call_id))
    ]
    detail.callbacks = [
        {
            "id": c.id,
            "kind": c.kind,
            "state": c.state,
            "due_at": local(c.due_at),
            "attempts": c.attempts,
            "reason": shown(c.reason),
        }
        for c in session.scalars(select(Callback).where(Callback.call_id == call_id))
    ]
    detail.reviews = [
        {
            "id": r.id,
            "reviewer": display or login,
            "verdicts": r.verdicts,
            "reasons": {rule: shown(text) for rule, text in (r.reasons or {}).items()},
            "comment": shown(r.comment),
            "created_at": local(r.created_at),
        }
        for r, login, display in session.execute(
            select(Review, WebUser.username, WebUser.display_name)
            .join(WebUser, WebUser.id == Review.reviewer_id)
            .where(Review.call_id == call_id)
            .order_by(Review.id)
        )
    ]
    detail.disputes = [
        {
            "id": d.id,
            "rule_id": d.rule_id,
            "raised_by": d.raised_by,
            "reason": shown(d.reason),
            "raised_at": local(d.raised_at),
            "state": d.state,
            "decided_by": d.decided_by,
            "decision": shown(d.decision),
        }
        for d in session.scalars(select(Dispute).where(Dispute.call_id == call_id).order_by(Dispute.id))
    ]
    return detail
