"""The reviewer console in a real browser: Debian's headless Chromium driven by Selenium through Debian's
chromedriver, against the console served by uvicorn. A reviewer signs in, filters the calls, opens one,
sees the violation highlighted, reviews it and downloads the export; a supervisor watches a call live.

The call page's screenshot is written to ``tests/artefacts/call_page.png`` (kept in the repository, so a
change to the page shows up in review).
"""

from __future__ import annotations

import csv
import io
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
import soundfile

from contactcenter.hooks.api import PluginAPI
from contactcenter.hooks.host import PluginHost
from contactcenter.records import CallRecord, ComplianceReport, RuleHitRecord, UtteranceRecord
from contactcenter.speech.rule_book import RuleBook
from contactcenter.speech.rules import load_rules
from contactcenter.storage.models import Call
from contactcenter.web import live_feed
from tests.helpers.browser import wait_for
from tests.helpers.web import PASSWORD, client_as, serving

ARTEFACTS = Path(__file__).parent / "artefacts"
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def sign_in(driver, base: str, path: str, username: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + path)
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    click_and_wait(driver, driver.find_element(By.ID, "sign-in"))
    assert driver.current_url == base + path and not driver.find_elements(By.ID, "password")


def click_and_wait(driver, element, timeout: float = 15) -> None:
    """Click something that loads a new page, and wait until the new page has loaded.

    The old page is marked with a script variable, and the wait is for a complete document without it.
    Selenium's ``staleness_of`` asks about an element of the old page, which chromedriver can answer with
    "unhandled inspector error" while the page is being replaced; any driver error met while the new page
    loads only means "not yet".
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("window.__ccOldPage = true;")
    element.click()
    WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.__ccOldPage && document.readyState === 'complete';")
    )


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_a_reviewer_filters_opens_reviews_and_exports(console: dict, browser) -> None:
    from selenium.webdriver.common.by import By

    settings = console["settings"]
    data_dir = Path(settings.general.data_dir)
    (data_dir / "recordings").mkdir(parents=True, exist_ok=True)
    soundfile.write(data_dir / "recordings" / "web-3.wav", [[0.0, 0.0]] * 8000, 8000)
    with console["database"].session() as session:
        session.get(Call, console["ids"][3]).recording_path = "recordings/web-3.wav"

    with serving(console["app"]) as base:
        sign_in(browser, base, "/calls", "lin")  # the list asks for a sign-in, then comes back
        assert len(browser.find_elements(By.CSS_SELECTOR, "#calls tbody tr")) == 10  # a page of 30

        browser.find_element(By.NAME, "agent").send_keys("1002")
        from selenium.webdriver.support.ui import Select

        Select(browser.find_element(By.NAME, "rule_failed")).select_by_visible_text("服务禁语 (R4)")  # by name
        click_and_wait(browser, browser.find_element(By.ID, "apply-filters"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#calls tbody tr")
        assert len(rows) == 5 and all("服务禁语" in row.text and "1002" in row.text for row in rows)
        assert all("****" in row.find_elements(By.TAG_NAME, "td")[3].text for row in rows)  # masked

        click_and_wait(browser, browser.find_element(By.LINK_TEXT, str(console["ids"][3])))
        mark = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#transcript mark[data-rule]"))
        assert mark.text == "我不知道" and mark.get_attribute("title") == "服务禁语 (R4) · 违规 · 致命"
        assert mark.value_of_css_property("background-color") == "rgba(255, 179, 179, 1)"  # shown in red
        assert (
            browser.find_element(By.TAG_NAME, "audio")
            .get_attribute("src")
            .endswith(f"/calls/{console['ids'][3]}/recording")
        )
        ARTEFACTS.mkdir(exist_ok=True)
        screenshot = ARTEFACTS / "call_page.png"
        assert browser.save_screenshot(str(screenshot))
        width, height = png_size(screenshot)
        assert width >= 1000 and height >= 600

        browser.find_element(By.CSS_SELECTOR, "input[name=verdict_banned_phrases][value=agree]").click()
        browser.find_element(By.ID, "comment").send_keys("坐席说了“我不知道”,确认违规")
        click_and_wait(browser, browser.find_element(By.ID, "submit-review"))
        review = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "li.review"))
        assert "Lin" in review.text and "服务禁语 (R4) 同意" in review.text and "确认违规" in review.text

        browser.get(base + "/calls?agent=1002&rule_failed=banned_phrases")
        browser.find_element(By.ID, "export-csv").click()
        wait_for(browser, lambda d: any(f.stat().st_size > 0 for f in browser.downloads.glob("质检通话_*.csv")))
        [exported] = browser.downloads.glob("质检通话_*.csv")  # named in Chinese, with its days
        rows = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8-sig"))))
        assert len(rows) == 5 and {r["分机"] for r in rows} == {"1002"}
        assert all("****" in r["客户号码"] for r in rows)

        browser.get(base + "/scorecards?since=2026-11-02&until=2026-11-10")
        assert browser.find_element(By.CSS_SELECTOR, "#trend svg polyline.series")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#rings svg rect.bar")) == 5
        assert not browser.find_elements(By.LINK_TEXT, "实时监控")  # reviewers have no live view
        browser.get(base + "/live")
        assert "主管" in browser.page_source and "needs the supervisor role" not in browser.page_source  # in Chinese


def test_a_supervisor_watches_a_call_live(console: dict, browser) -> None:
    """Events go through the built-in ``live_view`` plugin into the store, as the desk sends them; the page
    shows them as they arrive, without a reload."""
    from selenium.webdriver.common.by import By

    host = PluginHost(console["settings"], console["database"])
    api = PluginAPI(live_feed.NAME, host)
    now = datetime.now(UTC)
    call = CallRecord(sip_call_id="live-1", remote_number="13912345678", agent_extension="1001", invited_at=now)
    with serving(console["app"]) as base:
        sign_in(browser, base, "/live", "wang")
        wait_for(browser, lambda d: "已连接" in d.find_element(By.ID, "live-status").text)
        live_feed.call_ringing(call=call, api=api)
        card = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".live-call[data-call='live-1']"))
        assert "1001" in card.text and "139****5678" in card.text and "振铃中" in card.text
        answered = call.model_copy(update={"answered_at": now, "rings_before_answer": 2})
        live_feed.call_answered(call=answered, api=api)
        live_feed.utterance(
            call=answered, utterance=UtteranceRecord(leg="agent", start_s=1.0, end_s=2.5, text="喂 你好"), api=api
        )
        live_feed.rule_hit(
            call=answered,
            hit=RuleHitRecord(
                rule_id="no_wei",
                kind="violation",
                severity="major",
                leg="agent",
                at_s=1.0,
                matched_text="喂",
                live=True,
            ),
            api=api,
        )
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#alerts li"))
        assert "no_wei" in browser.find_element(By.ID, "alerts").text
        assert "喂 你好" in card.text and "通话中(响铃 2 声)" in card.text
        ended = answered.model_copy(update={"id": console["ids"][0], "ended_at": now, "disposition": "completed"})
        live_feed.call_ended(call=ended, transcript=[], report=ComplianceReport(score=60.0), api=api)
        wait_for(browser, lambda d: "已结束" in card.text)
        assert "得分 60" in card.text
        assert card.find_element(By.LINK_TEXT, "查看通话").get_attribute("href").endswith(f"/calls/{console['ids'][0]}")
    host.close()


def test_an_admin_switches_a_rule_off_and_puts_it_back(console: dict, browser) -> None:
    """The admin page's rule form in the browser: the change is in force (what a desk reads at its next
    call), listed with who made it, and undone with one button."""
    from selenium.webdriver.common.by import By

    settings = console["settings"]
    book = RuleBook(
        load_rules(settings.scripts.rules, settings.company.names_said),
        console["database"],
        settings.company.names_said,
    )
    with serving(console["app"]) as base:
        sign_in(browser, base, "/admin", "zhao")
        row = browser.find_element(By.ID, "rule-banned_phrases")
        assert "不归我管" in row.find_element(By.NAME, "phrases").get_attribute("value")
        row.find_element(By.NAME, "enabled").click()  # untick
        click_and_wait(browser, row.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        assert "banned_phrases" not in {rule.id for rule in book.refresh().rules}
        row = browser.find_element(By.ID, "rule-banned_phrases")
        assert "rule-off" in row.get_attribute("class") and "zhao 于" in row.text
        assert "启用: 是 → 否" in browser.find_element(By.ID, "rule-changes").text
        assert "tickets" in browser.find_element(By.ID, "plugins").text
        click_and_wait(browser, row.find_element(By.CSS_SELECTOR, ".rule-reset button"))
        assert "banned_phrases" in {rule.id for rule in book.refresh().rules}
        row = browser.find_element(By.ID, "rule-banned_phrases")
        assert row.find_element(By.NAME, "enabled").is_selected() and not row.find_elements(
            By.CSS_SELECTOR, ".rule-reset"
        )


def test_an_admin_reads_filters_and_exports_the_access_log(console: dict, browser) -> None:
    """From the admin page to the access log in the browser: Chinese headings, newest first a page at a time,
    the filter form (a choice and a text box), and the CSV of what the filters select, by its link."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    reviewer = client_as(console, "lin")
    for call_id in console["ids"][:12]:
        assert reviewer.get(f"/calls/{call_id}").status_code == 200
    assert client_as(console, "wang").get("/customers", params={"q": "张"}).status_code == 200

    def rows() -> list[list[str]]:
        return [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#access-log tbody tr")
        ]

    with serving(console["app"]) as base:
        sign_in(browser, base, "/admin", "zhao")
        click_and_wait(browser, browser.find_element(By.ID, "access-log-link"))
        headings = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#access-log thead th")]
        assert headings == ["时间", "用户", "角色", "地址", "操作", "访问内容"]
        first = rows()
        assert len(first) == 10 and first[0][1:] == ["wang", "主管", "testclient", "查找客户", "/customers?q=张"]
        click_and_wait(browser, browser.find_element(By.ID, "next-page"))
        assert [r[5] for r in rows()] == [f"/calls/{call_id}" for call_id in reversed(console["ids"][:3])]

        Select(browser.find_element(By.NAME, "action")).select_by_visible_text("查看通话")
        browser.find_element(By.NAME, "username").send_keys("lin")
        click_and_wait(browser, browser.find_element(By.ID, "apply-access-filters"))
        shown = rows()
        assert len(shown) == 10 and {(r[1], r[4]) for r in shown} == {("lin", "查看通话")}

        browser.find_element(By.ID, "access-export").click()
        wait_for(browser, lambda d: [p for p in browser.downloads.glob("access-log-*.csv") if p.stat().st_size > 0])
        [exported] = browser.downloads.glob("access-log-*.csv")
        entries = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8-sig"))))
        assert len(entries) == 12 and {(e["username"], e["action"]) for e in entries} == {("lin", "call")}
