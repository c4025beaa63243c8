"""Security headers on every console response: a Content-Security-Policy that runs only the pages' own scripts
and styles (by a per-response nonce), no framing, no MIME sniffing, no referrer, and nothing cached that holds
customers' data (pages, API answers, downloads, recordings)."""

from __future__ import annotations

import re

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.helpers.web import client_as

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # headers do not vary by store

ALWAYS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def policy(headers: dict[str, str] | object) -> dict[str, str]:
    """The Content-Security-Policy as directive -> sources."""
    text = headers["content-security-policy"]  # type: ignore[index]
    return {part.split()[0]: " ".join(part.split()[1:]) for part in text.split(";") if part.strip()}


def assert_secure(response: object, what: str) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    for name, value in ALWAYS.items():
        assert headers.get(name) == value, (what, name, headers.get(name))
    assert headers.get("cache-control") == "no-store", (what, headers.get("cache-control"))
    directives = policy(headers)
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'", what
    assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-inline'" not in directives["style-src"]


def test_a_page_an_api_answer_and_an_export_carry_the_headers(console: dict) -> None:
    """The three kinds of response that hold customers' data, and the refusals, are never cached or framed."""
    client = client_as(console, "wang")
    call_id = console["ids"][0]
    for path in ("/calls", f"/calls/{call_id}", "/api/calls", f"/api/calls/{call_id}", "/api/export/calls.csv"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert_secure(answer, path)
    xlsx = client.get("/api/export/calls.xlsx")
    assert xlsx.status_code == 200 and xlsx.content.startswith(b"PK")
    assert_secure(xlsx, "xlsx")
    for refused in (client.get("/api/calls/999999"), client.get("/calls", params={"until": "9999-12-31"})):
        assert refused.status_code in (404, 422)
        assert_secure(refused, str(refused.url))
    signed_out = TestClient(console["app"]).get("/calls")
    assert signed_out.status_code == 401 and 'name="password"' in signed_out.text
    assert_secure(signed_out, "sign-in form")


def test_every_inline_script_and_style_carries_this_responses_nonce(console: dict) -> None:
    """The policy runs inline code only with the response's nonce: every page's own <script> and <style> must
    carry it (else the page breaks in the browser), no page may use a style="" attribute, and the nonce
    changes with every response."""
    admin = client_as(console, "zhao")
    nonces = set()
    for path in (
        "/calls",
        f"/calls/{console['ids'][3]}",
        "/scorecards",
        "/customers",
        "/live",
        "/wallboard",
        "/admin",
        "/admin/access-log",
        "/login",
        "/calls?until=9999-12-31",  # the error page
    ):
        answer = admin.get(path)
        assert answer.status_code in (200, 422), path
        nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{20,})'", policy(answer.headers)["script-src"].split()[-1])
        assert nonce is not None, (path, answer.headers["content-security-policy"])
        assert f"'nonce-{nonce[1]}'" in policy(answer.headers)["style-src"]
        nonces.add(nonce[1])
        inline = re.findall(r"<(script|style)\b([^>]*)>", answer.text)
        assert inline, path  # base.html has its <style>
        for tag, attributes in inline:
            if tag == "script" and 'type="application/json"' in attributes:
                continue  # data, never run
            assert f'nonce="{nonce[1]}"' in attributes, (path, tag, attributes)
        assert not re.search(r"<[^>]+\sstyle=", answer.text), path
        assert not re.search(r"<[^>]+\son[a-z]+=", answer.text), path  # no inline event handlers either
    assert len(nonces) == 10


def test_the_api_browser_keeps_working_but_cannot_be_framed(console: dict) -> None:
    """/api/docs is FastAPI's Swagger UI (its script from jsDelivr, an inline start-up script): its own policy
    lets exactly that run; it is still never framed."""
    docs = TestClient(console["app"]).get("/api/docs")
    assert docs.status_code == 200 and "cdn.jsdelivr.net" in docs.text
    directives = policy(docs.headers)
    assert "https://cdn.jsdelivr.net" in directives["script-src"] and directives["frame-ancestors"] == "'none'"
    assert docs.headers["x-frame-options"] == "DENY"
    schema = TestClient(console["app"]).get("/api/openapi.json")
    assert schema.status_code == 200 and schema.headers["x-content-type-options"] == "nosniff"


def test_an_internal_error_is_a_chinese_page_or_json_with_the_headers_and_no_trace(console: dict) -> None:
    """An unhandled exception's 500 is sent by Starlette from outside every middleware: it must still carry the
    headers (an error page is a page like any other) and say nothing of the exception. Provoked for real: the
    calls table gone from the store, and a route whose dependency fails with a secret in its message."""
    secret = "$argon2id$v=19$m=65536$secret-in-the-exception"

    def failing() -> None:
        raise RuntimeError(secret)

    def endpoint() -> dict[str, str]:
        return {}

    app = console["app"]
    for path in ("/broken", "/api/broken"):
        app.add_api_route(path, endpoint, dependencies=[Depends(failing)], include_in_schema=False)
    client = client_as(console, "wang", raise_server_exceptions=False)
    with console["database"].engine.begin() as connection:
        connection.execute(text("ALTER TABLE calls RENAME TO calls_gone"))

    for path in ("/calls", "/broken"):
        page = client.get(path)
        assert page.status_code == 500, (path, page.text)
        assert_secure(page, path)
        assert page.headers["content-type"].startswith("text/html")
        assert "服务器出错" in page.text and "请稍后重试" in page.text, page.text
        nonce = policy(page.headers)["script-src"].split()[-1].removeprefix("'nonce-").removesuffix("'")
        assert f'<style nonce="{nonce}">' in page.text  # the page's own style runs under its policy
        for leak in ("Traceback", "RuntimeError", "argon2", "secret", "no such table", "sqlite", "SELECT", ".py"):
            assert leak.lower() not in page.text.lower(), (path, leak)

    for path in ("/api/calls", "/api/broken"):
        answer = client.get(path)
        assert answer.status_code == 500, (path, answer.text)
        assert_secure(answer, path)
        assert answer.json() == {"detail": "internal server error"}
