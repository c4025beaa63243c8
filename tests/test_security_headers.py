"""Security headers on every console response: a Content-Security-Policy that runs only the pages' own scripts
and styles (by a per-response nonce), no framing, no MIME sniffing, no referrer, and nothing cached that holds
customers' data (pages, API answers, downloads, recordings)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

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
    assert len(nonces) == 9


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
