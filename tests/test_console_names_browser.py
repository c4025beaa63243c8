"""Chinese throughout: the call page, the calls list and the scorecard, as a reviewer reads them in headless
Chromium, show no stored code (severity, disposition, direction, state, role, rule id …) among their labels."""

from __future__ import annotations

import re
import tomllib

import pytest

from contactcenter.speech.rules import load_rules
from tests.helpers.paths import REPO
from tests.helpers.web import client_as, serving

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def stored_codes() -> set[str]:
    tables = tomllib.loads((REPO / "scripts_zh" / "vocabulary.toml").read_text(encoding="utf-8"))
    codes = {code for table in tables.values() for code in table}
    return codes | {rule.id for rule in load_rules(REPO / "scripts_zh" / "rules.toml", ["示例科技"]).rules}


def shown_codes(text: str, codes: set[str]) -> list[str]:
    return sorted(code for code in codes if re.search(rf"(?<![A-Za-z_]){re.escape(code)}(?![A-Za-z_])", text))


def test_the_call_page_the_list_and_the_scorecard_show_no_code(console: dict, browser) -> None:
    from selenium.webdriver.common.by import By

    from tests.test_web_browser import sign_in

    call_id = console["ids"][3]  # said 我不知道: a highlighted violation
    lin = client_as(console, "lin")
    assert lin.post(f"/api/calls/{call_id}/reviews", json={"verdicts": {"banned_phrases": "agree"}}).status_code == 201
    codes = stored_codes()
    with serving(console["app"]) as base:
        sign_in(browser, base, f"/calls/{call_id}", "lin")
        for path in (f"/calls/{call_id}", "/calls", "/scorecards?since=2026-11-02&until=2026-11-10", "/queue"):
            browser.get(base + path)
            text = browser.find_element(By.TAG_NAME, "body").text
            titles = " ".join(e.get_attribute("title") or "" for e in browser.find_elements(By.CSS_SELECTOR, "[title]"))
            options = " ".join(e.text for e in browser.find_elements(By.TAG_NAME, "option"))
            assert shown_codes(f"{text} {titles} {options}", codes) == [], path
            assert "服务禁语" in text or path == "/queue"
