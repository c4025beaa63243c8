"""The reviewers' daily queue (质检任务): a reproducible sample, critical failures and complaints always in
it, dealt in turn or by team, a supervisor's calibration share, task states, disputes decided once, and the
calibration figures, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from contactcenter.records import CallRecord, ComplianceReport, RuleHitRecord, RuleResult
from contactcenter.settings import ReviewSettings
from contactcenter.storage import Database
from contactcenter.storage.calls import save_call
from contactcenter.storage.models import Agent, Call, Review, ReviewTask, WebUser
from contactcenter.storage.review_queue import (
    QueueError,
    build_queue,
    choose_calls,
    decide_dispute,
    my_queue,
    next_in_queue,
    open_task,
    queue_status,
    raise_dispute,
    reviewer_agreement,
    rule_agreement,
)
from contactcenter.storage.reviews import save_review

ZONE = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 2)
CALLS = 200
AGENTS = {"1001": "一组", "1002": "一组", "1003": "二组", "1004": "二组"}


def seed_day(database: Database) -> dict[str, set[int]]:
    """200 checked calls on DAY by four agents: every 17th failed a critical rule, every 23rd is a
    complaint; 5 unchecked calls (never queued) and a call of the next day."""
    kinds: dict[str, set[int]] = {"critical": set(), "complaint": set(), "unchecked": set()}
    start = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    with database.session() as session:
        for name in ("lin", "zhou", "wu"):
            session.add(WebUser(username=name, display_name=name.title(), role="reviewer", password_hash="x"))
        session.add(WebUser(username="boss", display_name="Boss", role="supervisor", password_hash="x"))
        for n in range(CALLS + 6):
            extension = list(AGENTS)[n % 4]
            critical, complaint, unchecked = n % 17 == 0, n % 23 == 0, n >= CALLS
            invited = start + timedelta(minutes=3 * n) + (timedelta(days=1) if n == CALLS + 5 else timedelta())
            call = CallRecord(
                sip_call_id=f"q-{n}",
                remote_number=f"1380013{n:04d}",
                agent_extension=extension,
                invited_at=invited,
                answered_at=invited + timedelta(seconds=4),
                ended_at=invited + timedelta(minutes=2),
                disposition="completed",
                category="投诉" if complaint else "咨询",
            )
            results = (
                RuleResult(rule_id="banned_phrases", passed=not critical, severity="critical", weight=3),
                RuleResult(rule_id="greeting", passed=n % 5 != 0, severity="major", weight=1),
            )
            hits = (
                [RuleHitRecord(rule_id="banned_phrases", kind="violation", severity="critical", at_s=5.0)]
                if critical
                else []
            )
            report = ComplianceReport(score=None if unchecked else 50.0, results=() if unchecked else results)
            call_id = save_call(session, call, [], hits, report)
            if n == CALLS + 5:
                continue
            if unchecked:
                kinds["unchecked"].add(call_id)
            elif critical:
                kinds["critical"].add(call_id)
            elif complaint:
                kinds["complaint"].add(call_id)
        for extension, team in AGENTS.items():
            session.execute(update(Agent).where(Agent.extension == extension).values(team=team))
    return kinds


def build(database: Database, policy: ReviewSettings, day: date = DAY):
    with database.session() as session:
        return build_queue(session, day, ZONE, policy, ["投诉"])


def tasks(database: Database) -> list[tuple[int, str, str]]:
    with database.session() as session:
        rows = session.execute(
            select(ReviewTask.call_id, WebUser.username, ReviewTask.reason)
            .join(WebUser, WebUser.id == ReviewTask.reviewer_id)
            .order_by(ReviewTask.call_id, WebUser.username)
        )
        return [tuple(row) for row in rows]


def test_the_same_day_and_seed_give_the_same_sample_and_critical_failures_are_always_in_it(database: Database) -> None:
    kinds = seed_day(database)
    policy = ReviewSettings(sample_percent=10, double_review_percent=0)
    built = build(database, policy)
    queued = {call_id: reason for call_id, _, reason in tasks(database)}
    assert kinds["critical"] <= set(queued) and kinds["complaint"] <= set(queued)
    assert not kinds["unchecked"] & set(queued)  # a call nobody could check has nothing to review
    rest = CALLS - len(kinds["critical"]) - len(kinds["complaint"])
    assert built.added == {
        "critical": len(kinds["critical"]),
        "complaint": len(kinds["complaint"]),
        "sample": math.ceil(rest * 0.1),
    }
    with database.session() as session:
        rows = list(session.execute(select(Call.id).order_by(Call.id)))
    # drawn again from the same rows, the day and seed give the same calls; another seed other calls
    again = build(database, policy)
    assert sum(again.added.values()) == 0 and again.already_queued == len(queued)  # a rerun adds nothing
    assert len(tasks(database)) == len(queued)
    with database.session() as session:
        from contactcenter.storage.review_queue import _calls_of_the_day

        day_rows = _calls_of_the_day(session, DAY, ZONE, ["投诉"])
    assert choose_calls(day_rows, policy, DAY) == queued
    other = choose_calls(day_rows, ReviewSettings(sample_percent=10, seed="another"), DAY)
    assert {c for c, r in other.items() if r != "sample"} == {c for c, r in queued.items() if r != "sample"}
    assert {c for c, r in other.items() if r == "sample"} != {c for c, r in queued.items() if r == "sample"}
    assert rows  # the seeded store is not empty


def test_calls_are_dealt_in_turn_or_by_team_and_a_share_goes_to_the_team_lead(database: Database) -> None:
    seed_day(database)
    build(database, ReviewSettings(sample_percent=10, double_review_percent=20))
    dealt = tasks(database)
    per_reviewer = {
        name: sum(1 for _, who, reason in dealt if who == name and reason != "calibration")
        for name in ("lin", "wu", "zhou")
    }
    assert max(per_reviewer.values()) - min(per_reviewer.values()) <= 1  # round robin: even shares
    queued = {c for c, _, reason in dealt if reason != "calibration"}
    calibration = [c for c, who, reason in dealt if reason == "calibration"]
    assert {who for _, who, reason in dealt if reason == "calibration"} == {"boss"}
    assert len(calibration) == math.ceil(len(queued) * 0.2) and set(calibration) <= queued


def test_by_team_each_team_s_calls_go_to_its_reviewers(database: Database) -> None:
    seed_day(database)
    build(
        database,
        ReviewSettings(assign="by_team", teams={"一组": ["lin"], "二组": ["zhou", "wu"]}, double_review_percent=0),
    )
    with database.session() as session:
        rows = session.execute(
            select(WebUser.username, Agent.team)
            .select_from(ReviewTask)
            .join(WebUser, WebUser.id == ReviewTask.reviewer_id)
            .join(Call, Call.id == ReviewTask.call_id)
            .join(Agent, Agent.id == Call.agent_id)
        ).all()
    assert {who for who, team in rows if team == "一组"} == {"lin"}
    assert {who for who, team in rows if team == "二组"} == {"zhou", "wu"}


def test_per_agent_per_day_samples_that_many_of_each_agent(database: Database) -> None:
    seed_day(database)
    built = build(
        database,
        ReviewSettings(critical_failures=False, complaints=False, per_agent_per_day=3, double_review_percent=0),
    )
    assert built.added == {"sample": 12}
    with database.session() as session:
        per_agent = session.execute(
            select(Agent.extension, func.count())
            .select_from(ReviewTask)
            .join(Call, Call.id == ReviewTask.call_id)
            .join(Agent, Agent.id == Call.agent_id)
            .group_by(Agent.extension)
        ).all()
    assert sorted(n for _, n in per_agent) == [3, 3, 3, 3]


def test_no_reviewer_means_no_tasks_and_says_so(database: Database) -> None:
    seed_day(database)
    with database.session() as session:
        session.execute(update(WebUser).where(WebUser.role == "reviewer").values(active=False))
    built = build(database, ReviewSettings())
    assert built.problem and sum(built.added.values()) == 0 and tasks(database) == []


def test_a_task_is_opened_reviewed_disputed_and_decided_once(database: Database) -> None:
    kinds = seed_day(database)
    build(database, ReviewSettings(sample_percent=0, complaints=False, double_review_percent=0))
    call_id = min(kinds["critical"])
    with database.session() as session:
        task = session.scalars(select(ReviewTask).where(ReviewTask.call_id == call_id)).one()
        reviewer = task.reviewer_id
        assert next_in_queue(session, reviewer) == call_id  # critical failures first, oldest first
        open_task(session, call_id, reviewer)
    with database.session() as session:
        assert session.get(ReviewTask, task.id).state == "in_review"
        save_review(session, call_id, reviewer, {"banned_phrases": "agree"}, "确认违规")
    with database.session() as session:
        assert session.get(ReviewTask, task.id).state == "reviewed"
        queue = my_queue(session, reviewer, datetime.now(UTC).astimezone(ZONE).date(), ZONE)
        assert [item.call_id for item in queue["reviewed"]] == [call_id]
        assert next_in_queue(session, reviewer) != call_id
        score_before = session.get(Call, call_id).reviewed_score
        with pytest.raises(QueueError, match="理由"):
            raise_dispute(session, call_id, "banned_phrases", "1001", "  ")
        dispute_id = raise_dispute(session, call_id, "banned_phrases", "1001", "客户先说的这句话,我是在复述")
    with database.session() as session:
        assert session.get(ReviewTask, task.id).state == "disputed"
        with pytest.raises(QueueError, match="已有未处理"):
            raise_dispute(session, call_id, "banned_phrases", "1001", "再次申诉")
        decided = decide_dispute(session, dispute_id, upheld=True, decided_by="boss", decision="录音确认是复述客户原话")
        assert decided.state == "upheld"
    with database.session() as session:
        assert session.get(ReviewTask, task.id).state == "reviewed"
        call = session.get(Call, call_id)
        # call 0 failed both rules (weights 3 and 1); upheld, the critical finding no longer counts: 3 of 4
        assert score_before == 0.0 and call.reviewed_score == 75.0
        with pytest.raises(QueueError, match="不能更改"):
            decide_dispute(session, dispute_id, upheld=False, decided_by="boss", decision="改主意")


def test_calibration_agreement_per_rule_and_per_reviewer(database: Database) -> None:
    kinds = seed_day(database)
    build(database, ReviewSettings(sample_percent=0, complaints=False, double_review_percent=100))
    with database.session() as session:
        users = dict(session.execute(select(WebUser.username, WebUser.id)).tuples().all())
        queued = session.execute(select(ReviewTask.call_id, ReviewTask.reviewer_id, ReviewTask.reason)).all()
        expected_rule = {"banned_phrases": [0, 0], "greeting": [0, 0]}
        expected_reviewer: dict[str, list[int]] = {}
        for n, (call_id, reviewer_id, reason) in enumerate(sorted(queued)):
            if reason == "calibration":
                lead = {"banned_phrases": "agree", "greeting": "agree"}
                save_review(session, call_id, reviewer_id, lead, "")
                continue
            mine = {"banned_phrases": "agree" if n % 3 else "disagree", "greeting": "agree"}
            save_review(
                session, call_id, reviewer_id, mine, "", reasons={"banned_phrases": "语境不同"} if n % 3 == 0 else None
            )
            name = next(k for k, v in users.items() if v == reviewer_id)
            shared = expected_reviewer.setdefault(name, [0, 0])
            shared[0] += 2
            shared[1] += 1 + (mine["banned_phrases"] == "agree")
        for verdicts in _verdicts(session).values():
            for rule, verdict in verdicts.items():
                expected_rule[rule][0] += 1
                expected_rule[rule][1] += verdict == "agree"
        start = datetime(2026, 11, 1, tzinfo=ZONE)
        end = datetime(2026, 11, 4, tzinfo=ZONE)
        by_rule = {r["rule_id"]: (r["verdicts"], r["agreed"]) for r in rule_agreement(session, start, end)}
        by_reviewer = {
            r["reviewer"]: (r["shared_verdicts"], r["matched"]) for r in reviewer_agreement(session, start, end)
        }
    assert by_rule == {rule: tuple(v) for rule, v in expected_rule.items()}
    assert by_reviewer == {name: tuple(v) for name, v in expected_reviewer.items()}
    assert len(kinds["critical"]) == sum(1 for _, _, reason in queued if reason == "critical")


def _verdicts(session) -> dict[tuple[int, int], dict[str, str]]:
    found: dict[tuple[int, int], dict[str, str]] = {}
    for review in session.scalars(select(Review).order_by(Review.id)):
        found.setdefault((review.call_id, review.reviewer_id), {}).update(review.verdicts)
    return found


def test_queue_status_per_reviewer(database: Database) -> None:
    seed_day(database)
    build(database, ReviewSettings(double_review_percent=0))
    with database.session() as session:
        rows = queue_status(session, DAY, DAY)
    assert [r["reviewer"] for r in rows] == ["lin", "wu", "zhou"]
    assert sum(r["pending"] for r in rows) == sum(r["total"] for r in rows) == len(tasks(database))


def test_the_scheduler_builds_the_queue_nightly(database: Database, desk) -> None:
    from contactcenter.scheduling.scheduler import REVIEW_QUEUE_JOB, CallbackScheduler
    from contactcenter.settings import load_settings

    seed_day(database)
    settings = load_settings(desk, {"CONTACTCENTER_DATABASE__URL": database.url})
    scheduler = CallbackScheduler(database, settings, publish=None)
    scheduler.start()
    try:
        job = scheduler._scheduler.get_job(REVIEW_QUEUE_JOB)  # type: ignore[union-attr]
        assert job is not None
        built = scheduler.build_review_queue(DAY)
    finally:
        scheduler.shutdown()
    assert built is not None and built.added["critical"] == 12
    assert len({call_id for call_id, _, reason in tasks(database) if reason != "calibration"}) == sum(
        n for reason, n in built.added.items() if reason != "calibration"
    )
