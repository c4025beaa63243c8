"""The reviewer's day in the console: my queue, opening and reviewing a call with a reason, the next call,
disputes a team lead decides once, and calibration that moves with the reviews; over HTTP, and in headless
Chromium (click a finding and the recording plays from just before it; review by keyboard)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import soundfile
from sqlalchemy import select

from contactcenter.settings import ReviewSettings
from contactcenter.storage.models import Call, Review, ReviewTask, WebUser
from contactcenter.storage.review_queue import build_queue
from tests.helpers.web import client_as, serving

SEEDED_DAYS = [date(2026, 11, 2), date(2026, 11, 3)]


def queue_everything(console: dict) -> list[int]:
    """Queue every seeded call of the first two days for the one reviewer (lin), a quarter also for the
    supervisor (wang); the queued call ids, in queue order."""
    with console["database"].session() as session:
        for day in SEEDED_DAYS:
            build_queue(
                session,
                day,
                ZoneInfo(console["settings"].general.timezone),
                ReviewSettings(sample_percent=100, double_review_percent=25),
                ["投诉"],
            )
        lin = session.scalar(select(WebUser.id).where(WebUser.username == "lin"))
        return list(
            session.scalars(
                select(ReviewTask.call_id)
                .where(ReviewTask.reviewer_id == lin)
                .order_by(ReviewTask.day, ReviewTask.call_id)
            )
        )


def test_my_queue_opening_reviewing_and_the_next_call(console: dict) -> None:
    queued = queue_everything(console)
    assert queued
    lin = client_as(console, "lin")
    queue = lin.get("/api/queue").json()
    assert len(queue["pending"]) == len(queued) and queue["in_review"] == [] and queue["reviewed"] == []
    first = lin.get("/queue/next", follow_redirects=False)
    assert first.status_code == 303
    call_id = int(first.headers["location"].rsplit("/", 1)[1])
    page = lin.get(f"/calls/{call_id}").text
    assert 'id="submit-next"' in page  # in a queue: save and open the next call
    assert [t["call_id"] for t in lin.get("/api/queue").json()["in_review"]] == [call_id]
    rule = "banned_phrases"
    has_finding = f'data-rule="{rule}"' in page.split('id="findings"')[1]
    verdicts = {f"verdict_{rule}": "disagree", f"reason_{rule}": "客户在复述,不是坐席说的"} if has_finding else {}
    saved = lin.post(
        f"/calls/{call_id}/review",
        data={"csrf": lin.headers["X-CSRF-Token"], "comment": "已复核", "then": "next", **verdicts},
        follow_redirects=False,
    )
    assert saved.status_code == 303 and saved.headers["location"] == f"/queue/next?after={call_id}"
    following = lin.get(saved.headers["location"], follow_redirects=False).headers["location"]
    assert following != f"/calls/{call_id}"
    after = lin.get("/api/queue").json()
    assert [t["call_id"] for t in after["reviewed"]] == [call_id]
    if has_finding:
        review = lin.get(f"/api/calls/{call_id}").json()["reviews"][-1]
        assert review["reasons"] == {rule: "客户在复述,不是坐席说的"}
    stray = lin.post(f"/api/calls/{call_id}/reviews", json={"verdicts": {}, "reasons": {rule: "x"}, "comment": "c"})
    assert stray.status_code == 422  # a reason for a verdict nobody overrode


def test_a_dispute_is_decided_once_by_a_team_lead(console: dict) -> None:
    call_id = console["ids"][3]  # said 我不知道: a banned-phrase finding
    lin, wang = client_as(console, "lin"), client_as(console, "wang")
    raised = lin.post(
        f"/calls/{call_id}/disputes",
        data={"csrf": lin.headers["X-CSRF-Token"], "rule_id": "banned_phrases", "reason": "这是客户说的"},
        follow_redirects=False,
    )
    assert raised.status_code == 303
    empty = lin.post(
        f"/calls/{call_id}/disputes",
        data={"csrf": lin.headers["X-CSRF-Token"], "rule_id": "banned_phrases", "reason": ""},
    )
    assert empty.status_code == 422 and "申诉未提交:申诉理由不能为空" in empty.text
    again = lin.post(
        f"/calls/{call_id}/disputes",
        data={"csrf": lin.headers["X-CSRF-Token"], "rule_id": "banned_phrases", "reason": "再说一遍理由"},
    )
    assert again.status_code == 422 and "已有未处理的申诉" in again.text
    assert 'value="再说一遍理由"' in again.text  # shown again on the call page as typed: nothing lost
    assert lin.get("/disputes").status_code == 403  # a reviewer does not decide
    [dispute] = wang.get("/api/review/disputes", params={"state": "open"}).json()["disputes"]
    assert dispute["reason"] == "这是客户说的"
    zhao = client_as(console, "zhao")  # an admin sees numbers whole; a supervisor does not
    numbered = console["ids"][6]
    zhao.post(
        f"/calls/{numbered}/disputes",
        data={"csrf": zhao.headers["X-CSRF-Token"], "rule_id": "banned_phrases", "reason": "客户 13800138000 可作证"},
    )
    reasons = {d["call_id"]: d["reason"] for d in wang.get("/api/review/disputes").json()["disputes"]}
    assert "13800138000" not in reasons[numbered] and "8000" in reasons[numbered]
    decide = {"csrf": wang.headers["X-CSRF-Token"], "outcome": "upheld", "decision": "录音确认"}
    assert wang.post(f"/disputes/{dispute['id']}/decision", data=decide, follow_redirects=False).status_code == 303
    assert wang.post(f"/disputes/{dispute['id']}/decision", data={**decide, "outcome": "rejected"}).status_code == 422
    call = wang.get(f"/api/calls/{call_id}").json()["call"]
    assert (call["score"], call["reviewed_score"]) == (40.0, 100.0)  # upheld: the finding no longer counts
    page = wang.get(f"/calls/{call_id}").text
    assert "这是客户说的" in page and "已支持申诉" in page and "录音确认" in page


def test_calibration_moves_with_the_reviews_and_exports(console: dict) -> None:
    queue_everything(console)
    lin, wang = client_as(console, "lin"), client_as(console, "wang")
    with console["database"].session() as session:
        calibrated = session.scalars(select(ReviewTask.call_id).where(ReviewTask.reason == "calibration")).all()
        banned = [c for c in calibrated if session.scalar(select(Call.compliance_score).where(Call.id == c)) == 40.0]
    assert banned, "the seeded calibration share has a call with a banned-phrase finding"
    params = {"since": "2026-11-01", "until": "2026-11-30"}
    before = wang.get("/api/review/calibration", params=params).json()
    assert before["rules"] == [] and before["reviewers"] == []
    call_id = banned[0]
    assert lin.post(f"/api/calls/{call_id}/reviews", json={"verdicts": {"banned_phrases": "agree"}}).status_code == 201
    assert (
        wang.post(
            f"/api/calls/{call_id}/reviews",
            json={"verdicts": {"banned_phrases": "disagree"}, "reasons": {"banned_phrases": "复述"}},
        ).status_code
        == 201
    )
    after = wang.get("/api/review/calibration", params=params).json()
    assert after["rules"] == [{"rule_id": "banned_phrases", "verdicts": 2, "agreed": 1, "agreement": 50.0}]
    assert after["reviewers"] == [
        {"reviewer": "lin", "name": "Lin", "shared_verdicts": 1, "matched": 0, "agreement": 0.0}
    ]
    assert lin.get("/api/review/calibration", params=params).status_code == 403
    csv_text = lin.get("/api/export/calibration.csv", params={**params, "table": "reviewers"}).text
    assert "质检员" in csv_text and "Lin" in csv_text
    status = lin.get("/api/export/review-status.csv", params=params).text
    assert "待复核" in status and "已复核" in status


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_in_the_browser_a_reviewer_works_the_queue_by_keyboard(console: dict, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from contactcenter.storage.models import RuleHit
    from tests.helpers.browser import wait_for
    from tests.test_web_browser import click_and_wait, sign_in

    queued = queue_everything(console)
    data_dir = Path(console["settings"].general.data_dir)
    (data_dir / "recordings").mkdir(parents=True, exist_ok=True)
    with console["database"].session() as session:
        for call_id in queued:
            soundfile.write(data_dir / "recordings" / f"q-{call_id}.wav", [[0.0, 0.0]] * (8000 * 20), 8000)
            session.get(Call, call_id).recording_path = f"recordings/q-{call_id}.wav"
        banned = [c for c in queued if session.get(Call, c).compliance_score == 40.0]
        # a second finding on the first call: the closing line missed at 14 s
        session.add(RuleHit(call_id=banned[0], rule_id="closing", kind="missing", severity="major", at_s=14.0))
    wang = client_as(console, "wang")
    period = {"since": "2026-11-01", "until": "2026-11-30"}
    assert wang.get("/api/review/calibration", params=period).json()["rules"] == []
    with serving(console["app"]) as base:
        sign_in(browser, base, "/queue", "lin")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#pending tbody tr[data-call]")) == len(queued)
        click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, f'#pending tr[data-call="{banned[0]}"] a'))
        finding = browser.find_element(By.CSS_SELECTOR, 'tr.finding[data-rule="banned_phrases"]')
        at = float(finding.get_attribute("data-at"))
        finding.find_element(By.TAG_NAME, "td").click()
        wait_for(browser, lambda d: d.execute_script("return document.getElementById('player').readyState") >= 1)
        position = browser.execute_script("return document.getElementById('player').currentTime")
        assert abs(position - at) <= 1.0 + 1e-6, (position, at)  # from a second before the finding
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("d")  # disagree with the banned phrase; the reason box takes the typing
        browser.switch_to.active_element.send_keys("客户在复述")
        browser.execute_script("document.activeElement.blur()")
        body.send_keys("n")  # the next finding: the missed closing line, played from 13 s
        current = browser.find_element(By.CSS_SELECTOR, "tr.finding.current")
        assert current.get_attribute("data-rule") == "closing"
        assert abs(browser.execute_script("return document.getElementById('player').currentTime") - 13.0) <= 0.5
        body.send_keys("a")  # agree with it
        browser.execute_script("window.__ccOldPage = true;")
        body.send_keys(Keys.CONTROL, Keys.ENTER)  # save and open the next call in the queue
        wait_for(
            browser, lambda d: d.execute_script("return !window.__ccOldPage && document.readyState === 'complete';")
        )
        assert f"/calls/{banned[0]}" not in browser.current_url and "/calls/" in browser.current_url
        # the team lead's calibration page now shows the reviewer's word on both rules
        browser.delete_all_cookies()
        sign_in(browser, base, "/calibration?since=2026-11-01&until=2026-11-30", "wang")
        rows = {
            row.get_attribute("data-rule"): [cell.text for cell in row.find_elements(By.TAG_NAME, "td")][1:]
            for row in browser.find_elements(By.CSS_SELECTOR, "#rule-agreement tbody tr[data-rule]")
        }
        assert rows == {"banned_phrases": ["1", "0", "0.0%"], "closing": ["1", "1", "100.0%"]}
    with console["database"].session() as session:
        states = session.scalars(select(ReviewTask.state).where(ReviewTask.call_id == banned[0])).all()
        call = session.get(Call, banned[0])
        review = session.scalars(select(Review).where(Review.call_id == banned[0])).one()
    assert "reviewed" in states
    assert review.verdicts == {"banned_phrases": "disagree", "closing": "agree"}
    assert review.reasons == {"banned_phrases": "客户在复述"}
    assert call.reviewed_score is not None and call.reviewed_score > call.compliance_score


def test_the_timeline_marks_findings_and_the_hold_and_transfer_times(console: dict) -> None:
    from contactcenter.records import CallRecord, ComplianceReport, RuleHitRecord, RuleResult
    from contactcenter.storage.calls import save_call

    data_dir = Path(console["settings"].general.data_dir)
    (data_dir / "recordings").mkdir(parents=True, exist_ok=True)
    soundfile.write(data_dir / "recordings" / "held.wav", [[0.0, 0.0]] * 8000, 8000)
    report = ComplianceReport(
        score=50.0,
        results=(RuleResult(rule_id="hold_return", passed=False, severity="major"),),
        events={"hold_start": (12.5,), "hold_end": (40.0,), "transfer": (55.25,)},
    )
    invited = datetime(2026, 11, 5, 2, 0, tzinfo=UTC)
    call = CallRecord(
        sip_call_id="held",
        invited_at=invited,
        answered_at=invited,
        ended_at=invited,
        recording_path="recordings/held.wav",
    )
    hit = RuleHitRecord(rule_id="hold_return", kind="missing", severity="major", at_s=40.0)
    with console["database"].session() as session:
        call_id = save_call(session, call, [], [hit], report)
    page = client_as(console, "lin").get(f"/calls/{call_id}").text
    timeline = page.split('id="timeline"')[1].split("</div>")[0]
    assert 'data-at="12.5" title="12.5s 开始保持"' in timeline and 'title="55.2s 转接"' in timeline
    assert 'class="mark hit-missing" data-at="40.0"' in timeline
