"""The agent's own findings on the desktop (我的质检) and their disputes (申诉), issue 16.

The desktop is started as `contactcenter run` starts it (``desktop_runner.prepare`` / ``serve`` on loopback,
signed in with the printed token) on a real store, over a stand-in desk with no calls, as in
tests/test_desktop_security.py. The store holds calls of this desk's agent (1001) and of another (1002):
the panel lists only 1001's answered calls of the last week that failed a rule, each finding by its rule's
Chinese description; a dispute is stored as 1001's and waits for the team lead, who decides it in the
console (here :func:`decide_dispute` directly); every refusal is one line of Chinese and stores nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from contactcenter.desktop import runner as desktop_runner
from contactcenter.desktop.server import COOKIE
from contactcenter.records import CallRecord, ComplianceReport, RuleHitRecord, RuleResult
from contactcenter.storage.calls import save_call
from contactcenter.storage.models import Agent, Dispute, ReviewTask, WebUser
from contactcenter.storage.review_queue import decide_dispute
from contactcenter.storage.reviews import save_review
from tests.helpers.browser import wait_for
from tests.helpers.factories import open_app
from tests.helpers.ports import free_tcp_port
from tests.test_desktop_security import CSP_LISTENER, NoCalls, assert_secure

CHINESE = re.compile(r"[\u4e00-\u9fff]")
BANNED, CLOSING, HOLD_RETURN, GREETING = "banned_phrases", "closing", "hold_return", "greeting"
# scripts_zh/rules.toml's descriptions and scripts_zh/vocabulary.toml's names
NAMES = {BANNED: "服务禁语 (R4)", CLOSING: "结束语: 感谢您的来电 (R7)", HOLD_RETURN: "等待后致歉: 让您久等了 (R6)"}


def store_call(
    database: Any,
    key: str,
    extension: str,
    ago: timedelta,
    hits: list[RuleHitRecord],
    *,
    answered: bool = True,
    number: str = "13800138000",
) -> int:
    invited = datetime.now(UTC) - ago
    call = CallRecord(
        sip_call_id=f"{key}@desk",
        remote_number=number,
        agent_extension=extension,
        invited_at=invited,
        answered_at=invited + timedelta(seconds=5) if answered else None,
        ended_at=invited + timedelta(minutes=3),
        disposition="completed" if answered else "abandoned",
    )
    failed = {h.rule_id: h.severity for h in hits if h.kind != "satisfied"}
    results = [RuleResult(rule_id=GREETING, passed=True, weight=1)]
    results += [
        RuleResult(rule_id=rule, passed=False, severity=severity, weight=1) for rule, severity in failed.items()
    ]
    report = ComplianceReport(score=round(100 / len(results), 2), results=tuple(results))
    with database.session() as session:
        return save_call(session, call, [], hits, report)


def hit(rule: str, kind: str, severity: str, at_s: float | None, text: str = "") -> RuleHitRecord:
    return RuleHitRecord(rule_id=rule, kind=kind, severity=severity, leg="agent", at_s=at_s, matched_text=text)


def seed(database: Any) -> dict[str, int]:
    """Calls of 1001 (王芳) and 1002, with findings and without."""
    calls = {
        # 1001's, listed: a banned phrase twice and the closing missing, an hour ago
        "mine": store_call(
            database,
            "mine",
            "1001",
            timedelta(hours=1),
            [
                hit(GREETING, "satisfied", "major", 0.8, "您好"),
                hit(BANNED, "violation", "critical", 12.5, "我不知道,你打13800138000问"),
                hit(BANNED, "violation", "critical", 75.0, "不归我管"),
                hit(CLOSING, "missing", "major", None),
            ],
        ),
        # 1001's, listed: the apology after hold missing, two days ago; a reviewer disagreed (reviewed score)
        "reviewed": store_call(
            database, "reviewed", "1001", timedelta(days=2), [hit(HOLD_RETURN, "missing", "minor", 30.0)]
        ),
        # 1001's, not listed: nothing failed; too old; never answered
        "clean": store_call(database, "clean", "1001", timedelta(hours=3), [hit(GREETING, "satisfied", "major", 1.0)]),
        "old": store_call(database, "old", "1001", timedelta(days=9), [hit(BANNED, "violation", "critical", 5.0)]),
        "unanswered": store_call(
            database, "unanswered", "1001", timedelta(hours=2), [hit(CLOSING, "missing", "major", None)], answered=False
        ),
        # another agent's: never listed, never disputable from this desk
        "theirs": store_call(
            database, "theirs", "1002", timedelta(hours=1), [hit(BANNED, "violation", "critical", 8.0, "烦死了")]
        ),
    }
    with database.session() as session:
        session.execute(update(Agent).where(Agent.extension == "1001").values(name="王芳"))
        session.add(WebUser(username="lin", display_name="林质检", role="reviewer", password_hash="x"))
        session.flush()
        reviewer = session.scalar(select(WebUser.id).where(WebUser.username == "lin"))
        assert reviewer is not None
        save_review(session, calls["reviewed"], reviewer, {HOLD_RETURN: "disagree"}, "", {HOLD_RETURN: "客户未被保持"})
        session.add(ReviewTask(call_id=calls["mine"], day="2026-01-01", reviewer_id=reviewer, reason="critical"))
    return calls


def disputes(database: Any) -> list[Dispute]:
    with database.session() as session:
        rows = list(session.scalars(select(Dispute).order_by(Dispute.id)))
        session.expunge_all()
        return rows


@pytest.fixture
def desktop(desk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The desktop of extension 1001 served on loopback, a client signed in with the token `run` prints, and
    the seeded calls."""
    app = open_app(desk, f"sqlite:///{tmp_path / 'store.db'}", monkeypatch, agent__port=str(free_tcp_port()))
    settings = app.settings
    assert settings.sip.user == "1001"
    calls = seed(app.database)
    running = desktop_runner.prepare(settings, app.rule_book.current, speech_on=False, speech_off_reason="测试")
    desktop_runner.serve(running, settings, app.database, NoCalls(), app.plugins.bus.publish)  # type: ignore[arg-type]
    base = running.url.split("/?")[0]
    client = httpx.Client(base_url=base, timeout=10)
    try:
        assert client.get(running.url.removeprefix(base)).status_code == 303
        assert running.tokens is not None
        yield {
            "app": app,
            "database": app.database,
            "desktop": running,
            "client": client,
            "csrf": running.tokens.csrf(client.cookies[COOKIE]),
            "calls": calls,
        }
    finally:
        client.close()
        running.stop()
        app.close()


def panel(desktop: dict[str, Any]) -> dict[int, dict[str, Any]]:
    answer = desktop["client"].get("/api/my-findings")
    assert answer.status_code == 200, answer.text
    assert_secure(answer, "my findings")
    return {c["call_id"]: c for c in answer.json()["calls"]}


def finding(shown: dict[int, dict[str, Any]], call_id: int, rule_id: str) -> dict[str, Any]:
    return next(f for f in shown[call_id]["findings"] if f["rule_id"] == rule_id)


def dispute(desktop: dict[str, Any], call_id: int, rule_id: str, reason: str, csrf: bool = True) -> httpx.Response:
    headers = {"X-Desk-Token": desktop["csrf"]} if csrf else {}
    body = {"call_id": call_id, "rule_id": rule_id, "reason": reason}
    answer = desktop["client"].post("/api/disputes", json=body, headers=headers)
    assert_secure(answer, "dispute")
    return answer


def refused(answer: httpx.Response, status: int, says: str) -> None:
    assert answer.status_code == status, (answer.status_code, answer.text)
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and CHINESE.search(detail), detail
    assert says in detail, detail


def test_the_panel_lists_only_this_agent_s_answered_recent_calls_with_findings_by_their_chinese_names(
    desktop: dict[str, Any],
) -> None:
    calls = desktop["calls"]
    shown = panel(desktop)
    assert list(shown) == [calls["mine"], calls["reviewed"]]  # newest first; not clean, old, unanswered, theirs

    mine = shown[calls["mine"]]
    assert [f["rule_id"] for f in mine["findings"]] == [BANNED, CLOSING]  # the passed greeting is no finding
    banned, closing = mine["findings"]
    assert banned["name"] == NAMES[BANNED] and closing["name"] == NAMES[CLOSING]
    assert (banned["kind_name"], banned["severity_name"]) == ("违规", "致命")
    assert (closing["kind_name"], closing["severity_name"]) == ("缺失", "严重")
    assert banned["at_s"] == [12.5, 75.0] and closing["at_s"] == []
    # numbers, typed or spoken, masked as the console masks them for every role but an admin's
    assert banned["quotes"] == ["我不知道,你打*******8000问", "不归我管"]
    assert mine["number"] == "138****8000" and mine["direction_name"] == "呼入"
    assert mine["score"] == pytest.approx(33.33) and mine["reviewed_score"] is None
    assert banned["disputes"] == [] and banned["can_dispute"] is True

    reviewed = shown[calls["reviewed"]]
    assert reviewed["findings"][0]["name"] == NAMES[HOLD_RETURN]
    assert reviewed["findings"][0]["severity_name"] == "轻微" and reviewed["findings"][0]["at_s"] == [30.0]
    assert reviewed["score"] == pytest.approx(50.0) and reviewed["reviewed_score"] == pytest.approx(100.0)


def test_a_dispute_is_stored_as_the_agent_s_and_waits_for_the_team_lead_who_decides_it(
    desktop: dict[str, Any],
) -> None:
    calls, database = desktop["calls"], desktop["database"]
    answer = dispute(desktop, calls["mine"], BANNED, "  客户先骂人,我只是解释不归我部门处理  ")
    assert answer.status_code == 200, answer.text
    assert answer.json()["state_name"] == "待组长裁定"
    (stored,) = disputes(database)
    assert (stored.call_id, stored.rule_id, stored.state) == (calls["mine"], BANNED, "open")
    assert stored.raised_by == "王芳(1001)" and stored.reason == "客户先骂人,我只是解释不归我部门处理"
    with database.session() as session:  # the call's queued review waits for the decision
        assert session.scalar(select(ReviewTask.state).where(ReviewTask.call_id == calls["mine"])) == "disputed"

    shown = finding(panel(desktop), calls["mine"], BANNED)
    assert [(d["state"], d["state_name"]) for d in shown["disputes"]] == [("open", "待组长裁定")]
    assert shown["can_dispute"] is False
    assert finding(panel(desktop), calls["mine"], CLOSING)["can_dispute"] is True  # the other finding still can

    with database.session() as session:
        decide_dispute(session, stored.id, True, "张组长", "录音核实,客户先辱骂,不计违规")
    after = panel(desktop)[calls["mine"]]
    (decided,) = finding({calls["mine"]: after}, calls["mine"], BANNED)["disputes"]
    assert (decided["state_name"], decided["decided_by"], decided["decision"]) == (
        "已支持申诉",
        "张组长",
        "录音核实,客户先辱骂,不计违规",
    )
    assert after["reviewed_score"] == pytest.approx(66.67)  # the upheld finding no longer counts against the call

    # rejected on another finding: shown as such; a decided finding cannot be disputed again (final)
    assert dispute(desktop, calls["mine"], CLOSING, "我说了结束语,录音里有").status_code == 200
    closing_id = disputes(database)[-1].id
    with database.session() as session:
        decide_dispute(session, closing_id, False, "张组长", "录音中没有结束语")
    closing = finding(panel(desktop), calls["mine"], CLOSING)
    assert [(d["state_name"], d["decision"]) for d in closing["disputes"]] == [("已驳回", "录音中没有结束语")]
    refused(dispute(desktop, calls["mine"], CLOSING, "再申诉一次"), 409, "最终")
    assert len(disputes(database)) == 2


def test_refusals_are_one_chinese_line_and_store_nothing(desktop: dict[str, Any]) -> None:
    calls, database = desktop["calls"], desktop["database"]
    refused(dispute(desktop, calls["mine"], BANNED, "   "), 422, "申诉理由不能为空")
    refused(dispute(desktop, calls["mine"], HOLD_RETURN, "这通没有保持"), 422, "没有这条质检结果")
    refused(dispute(desktop, calls["mine"], GREETING, "问候是通过的"), 422, "没有这条质检结果")  # passed: no finding
    refused(dispute(desktop, calls["theirs"], BANNED, "替同事申诉"), 403, "只能对自己接听的通话申诉")
    refused(dispute(desktop, calls["unanswered"], CLOSING, "没接通"), 403, "只能对自己接听的通话申诉")
    refused(dispute(desktop, 999_999, BANNED, "不存在的通话"), 403, "只能对自己接听的通话申诉")
    refused(dispute(desktop, calls["mine"], BANNED, "理由" * 1001), 422, "不能超过 2000 字")
    refused(dispute(desktop, calls["mine"], BANNED, "没有页面的令牌", csrf=False), 403, "页面已过期")
    assert disputes(database) == []

    assert dispute(desktop, calls["mine"], BANNED, "第一次申诉").status_code == 200
    refused(dispute(desktop, calls["mine"], BANNED, "又点了一次"), 422, "已有未处理的申诉")
    assert [d.reason for d in disputes(database)] == ["第一次申诉"]

    signed_out = httpx.Client(base_url=str(desktop["client"].base_url), timeout=10)
    try:
        refused(signed_out.get("/api/my-findings"), 401, "contactcenter run")
        answer = signed_out.post(
            "/api/disputes",
            json={"call_id": calls["mine"], "rule_id": CLOSING, "reason": "未登录"},
            headers={"X-Desk-Token": desktop["csrf"]},
        )
        refused(answer, 401, "contactcenter run")
    finally:
        signed_out.close()
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Dispute)) == 1


def test_the_agent_disputes_a_finding_in_chromium_and_sees_it_wait_for_the_team_lead(
    desktop: dict[str, Any], browser
) -> None:
    """Opens the panel and sees the findings by name; is refused with an empty reason (under the box); types a
    reason that a refresh keeps; is refused on a finding disputed meanwhile, keeping what was typed there;
    sends the reason and sees 待组长裁定. No policy violation throughout."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of

    calls, database = desktop["calls"], desktop["database"]
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_LISTENER})
    browser.get(desktop["desktop"].url)
    wait_for(browser, lambda d: d.find_element(By.ID, "agent-state").text == "就绪")
    assert not browser.find_element(By.ID, "qa").is_displayed()  # read only when the agent opens it
    browser.find_element(By.ID, "btn-qa").click()
    row_css = f'tr.qa-finding[data-call="{calls["mine"]}"][data-rule="{BANNED}"]'
    row = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, row_css))
    assert NAMES[BANNED] in row.text and "致命" in row.text and "00:12.5" in row.text
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#qa .qa-name")]
    assert names == [NAMES[BANNED], NAMES[CLOSING], NAMES[HOLD_RETURN]]
    assert "复核后评分 100" in browser.find_element(By.ID, "qa").text

    row.find_element(By.CSS_SELECTOR, "button.qa-open").click()
    row.find_element(By.CSS_SELECTOR, "button.qa-send").click()  # nothing typed
    error = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"{row_css} .qa-err").text)
    assert error == "申诉理由不能为空"

    reason = "客户先辱骂,我解释该业务不归本部门处理"
    box = browser.find_element(By.CSS_SELECTOR, f"{row_css} textarea.qa-reason")
    box.send_keys(reason)
    browser.find_element(By.ID, "btn-qa").click()  # a refresh keeps what was typed, the box open
    wait_for(browser, staleness_of(box))  # the panel was drawn again
    box = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"{row_css} textarea.qa-reason"))
    assert box.get_attribute("value") == reason and box.is_displayed()

    # a refusal from the store keeps what was typed: the closing finding disputed meanwhile (as the console
    # may, on the agent's behalf) before this box is sent
    closing_css = f'tr.qa-finding[data-call="{calls["mine"]}"][data-rule="{CLOSING}"]'
    browser.find_element(By.CSS_SELECTOR, f"{closing_css} button.qa-open").click()
    browser.find_element(By.CSS_SELECTOR, f"{closing_css} textarea.qa-reason").send_keys("我说了结束语")
    assert dispute(desktop, calls["mine"], CLOSING, "组长代为登记").status_code == 200
    browser.find_element(By.CSS_SELECTOR, f"{closing_css} button.qa-send").click()
    error = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"{closing_css} .qa-err").text)
    assert error == "这条质检结果已有未处理的申诉"
    kept = browser.find_element(By.CSS_SELECTOR, f"{closing_css} textarea.qa-reason").get_attribute("value")
    assert kept == "我说了结束语"

    browser.find_element(By.CSS_SELECTOR, f"{row_css} button.qa-send").click()
    state = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"{row_css} .qa-dispute").text)
    assert state == "待组长裁定"
    wait_for(browser, lambda d: d.find_element(By.ID, "qa-result").text == "已提交申诉,待组长裁定")
    assert not browser.find_elements(By.CSS_SELECTOR, f"{row_css} button.qa-open")  # disputed: no second one
    stored = disputes(database)[-1]
    assert (stored.call_id, stored.rule_id, stored.reason, stored.raised_by) == (
        calls["mine"],
        BANNED,
        reason,
        "王芳(1001)",
    )
    assert browser.execute_script("return window.__csp") == []
