"""The agent's own quality findings (我的质检) and their disputes (申诉), as the desktop shows them.

The panel lists the agent's recent answered calls that failed a rule (a violation, or a required phrase
missing): each finding named by its rule's description, its severity, when in the call, the machine's score
and the reviewed one, and every dispute already raised on it with the team lead's decision. Read on demand
(the agent opens or refreshes the panel, on the page's request thread), never on a telephony or media
thread, and bounded: the last :data:`DAYS` days, at most :data:`CALLS` calls, a few quotes per finding.

The agent may dispute a finding of a call they answered (the desk's ``[sip] user`` is the call's agent),
once: a dispute the lead has not decided yet is open, and a decision is final (the dispute goes nowhere
else), so a decided finding cannot be disputed again from here. Customers' numbers, typed or spoken, are
masked as the console masks them for every role but an admin's: the panel is about what the agent said.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from contactcenter.phones import mask_number, mask_numbers
from contactcenter.speech.redact import redact_numbers
from contactcenter.storage.models import Agent, Call, Dispute, RuleHit
from contactcenter.storage.review_queue import FAILED_KINDS
from contactcenter.vocabulary import RULE, Vocabulary

DAYS = 7  # calls of the last week
CALLS = 50  # at most, newest first
QUOTES = 5  # matched words shown per finding (a rule broken twenty times needs no twenty lines)
REASON_MAX = 2000  # characters of a dispute's reason


def dispute_state_names(vocabulary: Vocabulary) -> dict[str, str]:
    """A dispute's states as the agent reads them: the vocabulary's ``dispute_state`` table."""
    return vocabulary.names("dispute_state")


def raised_by(session: Session, extension: str) -> str:
    """Who a dispute from this desk is recorded as: the agent's name with the extension, 张三(1001), or the
    extension alone when the agent has no name."""
    name = session.scalar(select(Agent.name).where(Agent.extension == extension))
    return f"{name}({extension})" if name else extension


def _masked(text: str) -> str:
    return redact_numbers(mask_numbers(text or ""))


def _dispute(d: Dispute, states: dict[str, str]) -> dict[str, Any]:
    return {
        "id": d.id,
        "state": d.state,
        "state_name": states.get(d.state, d.state),
        "reason": d.reason,
        "raised_by": d.raised_by,
        "raised_at": d.raised_at.isoformat() if d.raised_at else None,
        "decided_by": d.decided_by,
        "decided_at": d.decided_at.isoformat() if d.decided_at else None,
        "decision": d.decision,
    }


def my_findings(session: Session, extension: str, now: datetime, names: Vocabulary) -> list[dict[str, Any]]:
    """The agent's calls of the last :data:`DAYS` days with findings, newest first (see the module's
    docstring); ``names`` is the vocabulary with the rules in force."""
    failed = exists().where(RuleHit.call_id == Call.id, RuleHit.kind.in_(FAILED_KINDS))
    calls = list(
        session.execute(
            select(
                Call.id,
                Call.invited_at,
                Call.direction,
                Call.remote_number,
                Call.compliance_score,
                Call.reviewed_score,
            )
            .join(Agent, Agent.id == Call.agent_id)
            .where(
                Agent.extension == extension,
                Call.answered_at.is_not(None),
                Call.invited_at >= now - timedelta(days=DAYS),
                failed,
            )
            .order_by(Call.invited_at.desc(), Call.id.desc())
            .limit(CALLS)
        )
    )
    if not calls:
        return []
    ids = [c.id for c in calls]
    hits = session.scalars(
        select(RuleHit)
        .where(RuleHit.call_id.in_(ids), RuleHit.kind.in_(FAILED_KINDS))
        .order_by(RuleHit.call_id, RuleHit.at_s.is_(None), RuleHit.at_s, RuleHit.id)
    )
    states = dispute_state_names(names)
    disputes: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for d in session.scalars(select(Dispute).where(Dispute.call_id.in_(ids)).order_by(Dispute.id.desc())):
        disputes[(d.call_id, d.rule_id)].append(_dispute(d, states))
    findings: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)  # call → rule → finding, first hit first
    for hit in hits:
        finding = findings[hit.call_id].get(hit.rule_id)
        if finding is None:
            raised = disputes.get((hit.call_id, hit.rule_id), [])
            finding = findings[hit.call_id][hit.rule_id] = {
                "rule_id": hit.rule_id,
                "name": names.name(RULE, hit.rule_id),
                "kind": hit.kind,
                "kind_name": names.name("finding", hit.kind),
                "severity": hit.severity,
                "severity_name": names.name("severity", hit.severity),
                "at_s": [],
                "quotes": [],
                "disputes": raised,
                "can_dispute": not raised,  # one dispute a finding: open until decided, and the decision is final
            }
        if hit.at_s is not None and len(finding["at_s"]) < QUOTES:
            finding["at_s"].append(round(hit.at_s, 1))
        quote = _masked(hit.matched_text)
        if quote and quote not in finding["quotes"] and len(finding["quotes"]) < QUOTES:
            finding["quotes"].append(quote)
    return [
        {
            "call_id": c.id,
            "invited_at": c.invited_at.isoformat(),
            "direction": c.direction,
            "direction_name": names.name("direction", c.direction),
            "number": mask_number(c.remote_number),
            "score": c.compliance_score,
            "reviewed_score": c.reviewed_score,
            "findings": list(findings[c.id].values()),
        }
        for c in calls
    ]


def is_my_call(session: Session, extension: str, call_id: int) -> bool:
    """The call is this agent's and was answered (a call nobody answered has nothing of theirs to judge)."""
    return bool(
        session.scalar(
            select(Call.id)
            .join(Agent, Agent.id == Call.agent_id)
            .where(Call.id == call_id, Agent.extension == extension, Call.answered_at.is_not(None))
        )
    )


def has_finding(session: Session, call_id: int, rule_id: str) -> bool:
    """The rule found a violation or a missing phrase on the call (what the panel offers to dispute)."""
    return bool(
        session.scalar(
            select(RuleHit.id)
            .where(RuleHit.call_id == call_id, RuleHit.rule_id == rule_id, RuleHit.kind.in_(FAILED_KINDS))
            .limit(1)
        )
    )


def decided(session: Session, call_id: int, rule_id: str) -> bool:
    """A team lead has already decided a dispute on this finding (final)."""
    return bool(
        session.scalar(
            select(Dispute.id)
            .where(Dispute.call_id == call_id, Dispute.rule_id == rule_id, Dispute.state != "open")
            .limit(1)
        )
    )
