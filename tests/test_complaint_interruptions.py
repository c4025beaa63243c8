"""A call the agent marks as a complaint at wrap-up is held to the interruption rule's complaint limit (the
shipped no_interrupting: 2 interruptions allowed, none on a complaint), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from contactcenter.app import App
from contactcenter.records import ComplianceReport, RuleHitRecord, RuleResult
from contactcenter.storage.calls import save_call
from contactcenter.storage.models import Call, RuleResultRow
from contactcenter.wrap_up import WrapUpForm, save_wrap_up
from tests.helpers.factories import a_call, open_app

INTERRUPTION = RuleHitRecord(
    rule_id="no_interrupting", kind="violation", severity="major", leg="agent", at_s=12.0, end_s=13.4, live=True
)


@pytest.fixture
def app(desk: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    app = open_app(desk, database_url, monkeypatch)
    yield app
    app.close()


def stored(app: App, sip_call_id: str, interruptions: int) -> int:
    """A call judged when it ended: greeting said (weight 2), interrupted ``interruptions`` times, which the
    normal limit of 2 lets pass (weight 2): score 100."""
    hits = [INTERRUPTION.model_copy(update={"at_s": 12.0 + 10 * n}) for n in range(interruptions)]
    report = ComplianceReport(
        score=100.0,
        results=(
            RuleResult(rule_id="greeting", passed=True, weight=2.0),
            RuleResult(rule_id="no_interrupting", passed=True, weight=2.0, evidence=tuple(hits)),
        ),
    )
    with app.database.session() as session:
        return save_call(session, a_call(sip_call_id=sip_call_id), [], hits, report)


def wrap(app: App, call_id: int, complaint: bool, category: str = "咨询") -> None:
    form = WrapUpForm(
        caller_name="张伟", phone="138-0013-8000", category=category, purpose="账单有误", complaint=complaint
    )
    save_wrap_up(app.database, app.settings, call_id=call_id, form=form, agent="1001", publish=lambda *a, **k: None)


def verdict(app: App, call_id: int) -> tuple[bool, float | None]:
    with app.database.session() as session:
        passed = session.scalar(
            select(RuleResultRow.passed).where(
                RuleResultRow.call_id == call_id, RuleResultRow.rule_id == "no_interrupting"
            )
        )
        score = session.scalar(select(Call.compliance_score).where(Call.id == call_id))
    assert passed is not None
    return passed, score


def test_an_interrupted_call_marked_a_complaint_fails_the_rule(app: App) -> None:
    ticked = stored(app, "ticked", interruptions=1)
    wrap(app, ticked, complaint=True)
    assert verdict(app, ticked) == (False, 50.0)
    by_category = stored(app, "category", interruptions=2)
    wrap(app, by_category, complaint=False, category="投诉")  # a complaint category is a complaint
    assert verdict(app, by_category) == (False, 50.0)


def test_no_complaint_or_no_interruption_keeps_the_verdict(app: App) -> None:
    plain = stored(app, "plain", interruptions=1)
    wrap(app, plain, complaint=False)
    assert verdict(app, plain) == (True, 100.0)
    polite = stored(app, "polite", interruptions=0)
    wrap(app, polite, complaint=True)
    assert verdict(app, polite) == (True, 100.0)


def test_unticking_the_complaint_does_not_loosen_the_verdict(app: App) -> None:
    call_id = stored(app, "corrected", interruptions=1)
    wrap(app, call_id, complaint=True)
    wrap(app, call_id, complaint=False)  # the agent corrects the wrap-up
    assert verdict(app, call_id) == (False, 50.0)
