"""Security headers on every answer of the agent's desktop, as on the console's: a Content-Security-Policy that
runs only the page's own script and style (by a per-response nonce), no framing, no MIME sniffing, no
referrer, nothing cached (the page holds callers' numbers, names and words). The 500 answer too, which says
nothing of the exception; and the page still works under its policy in Chromium.

The desktop is started as `contactcenter run` starts it (``desktop_runner.prepare`` / ``serve``, uvicorn on
loopback, signed in with the printed token) on a real store; only the desk under it is a stand-in with no
calls, since nothing here needs a telephone line (the browser test during a real call is
tests/test_desktop_browser.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends
from sqlalchemy import text

from contactcenter.callbacks.book import CallbackBook
from contactcenter.desktop import runner as desktop_runner
from contactcenter.desktop.server import COOKIE
from tests.helpers.browser import wait_for
from tests.helpers.factories import open_app
from tests.helpers.ports import free_tcp_port

ALWAYS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
SECRET = "$argon2id$v=19$m=65536$secret-in-the-exception"
LEAKS = ("Traceback", "RuntimeError", "argon2", "secret", "no such table", "sqlite", "SELECT", ".py")
# Records every policy violation from the first moment of every document (added through the DevTools
# protocol, so it runs whatever the page's policy says).
CSP_LISTENER = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "") + " " + (e.sample || ""));
});
"""


class NoCalls:
    """The desk under the desktop, with no call on it."""

    def active_calls(self) -> list[Any]:
        return []

    def headset_call(self) -> None:
        return None


def policy(headers: httpx.Headers) -> dict[str, str]:
    """The Content-Security-Policy as directive -> sources."""
    return {
        part.split()[0]: " ".join(part.split()[1:])
        for part in headers["content-security-policy"].split(";")
        if part.strip()
    }


def assert_secure(answer: httpx.Response, what: str) -> str:
    """The headers every desktop answer carries; the answer's nonce."""
    for name, value in ALWAYS.items():
        assert answer.headers.get(name) == value, (what, name, answer.headers.get(name))
    directives = policy(answer.headers)
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'", what
    assert directives["default-src"] == "'self'" and directives["connect-src"] == "'self'", what
    for kind in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in directives[kind] and "http" not in directives[kind], (what, directives[kind])
    nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{20,})'", directives["script-src"].split()[-1])
    assert nonce is not None, (what, directives["script-src"])
    assert f"'nonce-{nonce[1]}'" in directives["style-src"], what
    return nonce[1]


@pytest.fixture
def desktop(desk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The desktop of extension 1001 served on loopback; a client signed in with the token `run` prints."""
    app = open_app(desk, f"sqlite:///{tmp_path / 'store.db'}", monkeypatch, agent__port=str(free_tcp_port()))
    settings = app.settings
    running = desktop_runner.prepare(settings, app.rule_book.current, speech_on=False, speech_off_reason="测试")
    desktop_runner.serve(running, settings, app.database, NoCalls(), app.plugins.bus.publish)  # type: ignore[arg-type]
    base = running.url.split("/?")[0]
    client = httpx.Client(base_url=base, timeout=10)
    try:
        assert client.get(running.url.removeprefix(base)).status_code == 303
        assert running.tokens is not None
        csrf = running.tokens.csrf(client.cookies[COOKIE])
        assert running.server is not None
        yield {
            "app": app,
            "desktop": running,
            "fastapi": running.server.config.app,
            "base": base,
            "client": client,
            "csrf": csrf,
        }
    finally:
        client.close()
        running.stop()
        app.close()


def test_every_answer_carries_the_security_headers(desktop: dict[str, Any]) -> None:
    """The page, the API, the event stream, the sign-in and every refusal (401, 403, 404, 405, 422)."""
    base, client, csrf = desktop["base"], desktop["client"], desktop["csrf"]
    token = desktop["desktop"].tokens.token
    signed_out = httpx.Client(base_url=base, timeout=10)
    answers = {
        "page signed out": (signed_out.get("/"), 401),
        "wrong token": (signed_out.get("/?token=wrong"), 401),
        "api signed out": (signed_out.get("/api/snapshot"), 401),
        "sign-in": (signed_out.get(f"/?token={token}"), 303),
        "snapshot": (client.get("/api/snapshot"), 200),
        "callbacks": (client.get("/api/callbacks"), 200),
        "customer": (client.get("/api/customer", params={"phone": "13800138000"}), 200),
        "no csrf": (client.post("/api/agent/not-ready", json={"reason": "会议"}), 403),
        "bad reason": (
            client.post("/api/agent/not-ready", json={"reason": "打游戏"}, headers={"X-Desk-Token": csrf}),
            422,
        ),
        "bad json": (
            client.post(
                "/api/agent/not-ready",
                content="{not json",
                headers={"X-Desk-Token": csrf, "Content-Type": "application/json"},
            ),
            422,
        ),
        "no call": (client.post("/api/call/hangup", headers={"X-Desk-Token": csrf}), 404),
        "no wrap-up": (client.get("/api/wrap-up/no-such-call"), 404),
        "no such address": (client.get("/nowhere"), 404),
        "no such api": (client.get("/api/nowhere"), 404),
        "no api browser": (client.get("/api/docs"), 404),  # the console's looser policy for one is not the desk's
        "wrong method": (client.delete("/api/snapshot"), 405),
    }
    for what, (answer, status) in answers.items():
        assert answer.status_code == status, (what, answer.status_code, answer.text)
        assert_secure(answer, what)
        if status >= 400:  # refusals in Chinese, as a page for a page and as JSON for the API
            assert re.search(r"[\u4e00-\u9fff]", answer.text), (what, answer.text)
            if answer.request.url.path.startswith("/api/"):
                assert isinstance(answer.json()["detail"], str), what
            else:
                assert answer.headers["content-type"].startswith("text/html"), what
    assert answers["wrong method"][0].headers["allow"] == "GET"

    with client.stream("GET", "/api/events") as events:  # the live view: headers on the stream, which still flows
        assert events.status_code == 200 and events.headers["content-type"].startswith("text/event-stream")
        assert_secure(events, "event stream")
        first = next(events.iter_lines())
        assert first.startswith("data: ") and '"agent"' in first
    signed_out.close()


def test_the_page_runs_only_its_own_script_and_style_by_a_fresh_nonce(desktop: dict[str, Any]) -> None:
    nonces = set()
    for _ in range(3):
        page = desktop["client"].get("/")
        assert page.status_code == 200
        nonce = assert_secure(page, "page")
        nonces.add(nonce)
        inline = re.findall(r"<(script|style)\b([^>]*)>", page.text)
        assert sorted(tag for tag, _ in inline) == ["script", "style"], inline
        for tag, attributes in inline:
            assert attributes == f' nonce="{nonce}"', (tag, attributes)
        assert not re.search(r"<[^>]+\sstyle=", page.text)  # the policy would drop style="" attributes
        assert not re.search(r"<[^>]+\son[a-z]+=", page.text)  # and inline event handlers
    assert len(nonces) == 3


def test_an_internal_error_is_one_chinese_line_with_the_headers_and_nothing_of_the_exception(
    desktop: dict[str, Any],
) -> None:
    """Starlette sends the 500 from outside every middleware: the handler must set the headers itself. Provoked
    for real: the callbacks table gone from the store, and routes whose dependency fails with a secret."""

    def failing() -> None:
        raise RuntimeError(SECRET)

    def endpoint() -> dict[str, str]:
        return {}

    for path in ("/broken", "/api/broken"):
        desktop["fastapi"].add_api_route(path, endpoint, dependencies=[Depends(failing)])
    with desktop["app"].database.engine.begin() as connection:
        connection.execute(text("ALTER TABLE callbacks RENAME TO callbacks_gone"))
    client = desktop["client"]

    for path in ("/api/callbacks", "/api/broken"):
        answer = client.get(path)
        assert answer.status_code == 500, (path, answer.text)
        assert_secure(answer, path)
        assert answer.json() == {"detail": "操作失败,请重试(详情见坐席端日志)"}
    page = client.get("/broken")
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert_secure(page, "/broken")
    assert "操作失败,请重试" in page.text
    for answer in (page, client.get("/api/callbacks")):
        for leak in LEAKS:
            assert leak.lower() not in answer.text.lower(), (answer.request.url.path, leak)


def test_the_page_works_in_chromium_under_its_policy_and_names_codes_in_chinese(
    desktop: dict[str, Any], browser
) -> None:
    """No policy violation while the page connects, lists callbacks and looks a customer up; a style=""
    attribute or an inline script the page did not bring is refused (the listener sees both)."""
    from selenium.webdriver.common.by import By

    book = CallbackBook(desktop["app"].database, desktop["app"].settings)
    book.add(
        phone="13800138000",
        due_at=datetime.now(UTC) + timedelta(hours=2),
        reason="投诉跟进",
        kind="complaint",
        owner_extension="1001",
    )
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_LISTENER})
    browser.get(desktop["desktop"].url)
    wait_for(browser, lambda d: d.find_element(By.ID, "agent-state").text == "就绪")  # the script ran, the stream flows
    row = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#callbacks tr").text)
    assert "投诉回访" in row and "待回访" in row, row  # scripts_zh/vocabulary.toml's names, not complaint / pending
    browser.find_element(By.ID, "c-phone").send_keys("13800138000")
    browser.find_element(By.ID, "btn-find").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "customer-result").text.startswith("新客户"))
    assert browser.find_element(By.ID, "c-vip").size["width"] < 40  # the checkbox's style came through the nonce
    assert browser.execute_script("return window.__csp") == []

    browser.execute_script(
        "document.body.insertAdjacentHTML('beforeend', '<div style=\"color:red\">x</div>');"
        "const s = document.createElement('script'); s.textContent = 'window.__ran = 1'; document.body.append(s);"
    )
    refused = wait_for(browser, lambda d: d.execute_script("return window.__csp.length >= 2 && window.__csp"))
    assert any(v.startswith("style-src") for v in refused) and any(v.startswith("script-src") for v in refused)
    assert browser.execute_script("return window.__ran") is None
