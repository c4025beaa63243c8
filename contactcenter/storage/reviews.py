"""Reviews (复核): a reviewer's verdict on a call's findings, and the score once those verdicts count.

A reviewer agrees or disagrees with the finding of each rule. Disagreeing turns that rule's verdict round:
a violation or missing phrase the reviewer rejects counts as passed, a "satisfied" the reviewer rejects
counts as failed. The reviewed score is the machine's formula (weights of the rules that applied,
normalised) over the verdicts after that, from the latest review of the call, rule by rule (a later
review that says nothing about a rule leaves an earlier one's word on it standing). The machine's score is
kept beside it: reports say which they show.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from contactcenter.storage.models import Call, Dispute, Review, ReviewTask, RuleResultRow, utcnow

VERDICTS = ("agree", "disagree")


class ReviewRefused(Exception):
    """A review that cannot be stored as it is; the message says why, in Chinese, for the reviewer."""


def verdicts_in_force(session: Session, call_id: int) -> dict[str, str]:
    """Rule id → the latest verdict any review of the call gave on it; a dispute a team lead upheld is a
    final "disagree" on its rule (and a rejected one leaves the reviews' word)."""
    verdicts: dict[str, str] = {}
    for given in session.scalars(select(Review.verdicts).where(Review.call_id == call_id).order_by(Review.id)):
        verdicts.update({rule: verdict for rule, verdict in (given or {}).items() if verdict in VERDICTS})
    upheld = select(Dispute.rule_id).where(Dispute.call_id == call_id, Dispute.state == "upheld")
    verdicts.update({rule: "disagree" for rule in session.scalars(upheld)})
    return verdicts


def reviewed_score(results: list[tuple[str, bool, float]], verdicts: Mapping[str, str]) -> float | None:
    """The score of ``results`` (rule, passed, weight) with every rule a reviewer disagreed with turned
    round; None when no rule applied (nothing to score)."""
    total = sum(weight for _, _, weight in results)
    if total <= 0:
        return None
    passed = sum(weight for rule, ok, weight in results if ok != (verdicts.get(rule) == "disagree"))
    return round(100.0 * passed / total, 2)


def rescore_after_reviews(session: Session, call_id: int) -> float | None:
    """Set the call's reviewed score from its rule results and reviews (None without a review, or without
    stored rule results, or when the call was not checked)."""
    call = session.get(Call, call_id)
    if call is None:
        return None
    verdicts = verdicts_in_force(session, call_id)
    results = [
        (r.rule_id, r.passed, r.weight)
        for r in session.scalars(select(RuleResultRow).where(RuleResultRow.call_id == call_id))
    ]
    score = reviewed_score(results, verdicts) if verdicts and results and call.compliance_score is not None else None
    session.execute(update(Call).where(Call.id == call_id).values(reviewed_score=score))
    return score


def save_review(
    session: Session,
    call_id: int,
    reviewer_id: int,
    verdicts: dict[str, Any],
    comment: str,
    reasons: Mapping[str, str] | None = None,
) -> int:
    """Store a review, update the call's reviewed score and mark the reviewer's queued task for the call
    done; refused when it says nothing at all (no verdict and no comment), or judges a rule the call has no
    finding or verdict for. ``reasons`` says why, per rule the reviewer disagreed with."""
    comment = comment.strip()
    reasons = {rule: text.strip()[:500] for rule, text in (reasons or {}).items() if text and text.strip()}
    if not verdicts and not comment:
        raise ReviewRefused("复核内容为空:请至少对一条质检结果选择同意或不同意,或填写复核意见")
    known = set(session.scalars(select(RuleResultRow.rule_id).where(RuleResultRow.call_id == call_id)))
    call = session.get(Call, call_id)
    if call is None:
        raise LookupError(call_id)
    known |= {hit.rule_id for hit in call.rule_hits}
    unknown = sorted(set(verdicts) - known)
    if unknown:
        raise ReviewRefused(f"这通电话没有规则“{unknown[0][:40]}”的质检结果,无法复核")
    stray = sorted(set(reasons) - {rule for rule, verdict in verdicts.items() if verdict == "disagree"})
    if stray:
        raise ReviewRefused(f"只有“不同意”的规则需要填写理由(“{stray[0][:40]}”没有选择不同意)")
    row = Review(call_id=call_id, reviewer_id=reviewer_id, verdicts=dict(verdicts), reasons=reasons, comment=comment)
    session.add(row)
    session.flush()
    rescore_after_reviews(session, call_id)
    session.execute(
        update(ReviewTask)
        .where(
            ReviewTask.call_id == call_id,
            ReviewTask.reviewer_id == reviewer_id,
            ReviewTask.state.in_(("pending", "in_review")),
        )
        .values(state="reviewed", done_at=utcnow())
    )
    return int(row.id)
