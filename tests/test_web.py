"""The reviewer console's API and pages for every role, on SQLite and PostgreSQL: sign-in, 401/403, masking,
filters and keyset paging, the call page with highlighted findings, reviews with CSRF, exports, OpenAPI."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import soundfile
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from contactcenter.storage.models import Ticket, WebSession
from tests.helpers.web import PASSWORD, client_as


def test_without_a_session_everything_is_401(console: dict) -> None:
    client = client_as(console, None)
    for path in ("/api/calls", f"/api/calls/{console['ids'][0]}", "/api/me", "/api/export/calls.csv"):
        assert client.get(path).status_code == 401, path
    page = client.get("/calls")
    assert page.status_code == 401 and 'name="password"' in page.text  # the sign-in form
    assert client.get("/admin").status_code == 401
    assert client.post(f"/api/calls/{console['ids'][0]}/reviews", json={}).status_code == 401


def test_wrong_passwords_disabled_users_and_expired_sessions_are_refused(console: dict) -> None:
    client = TestClient(console["app"])
    assert client.post("/api/login", json={"username": "lin", "password": "wrong password!"}).status_code == 401
    assert client.post("/api/login", json={"username": "nobody", "password": PASSWORD}).status_code == 401
    signed = client_as(console, "lin")
    assert signed.get("/api/me").json()["role"] == "reviewer"
    with console["database"].session() as session:  # the session runs out
        for row in session.query(WebSession):
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert signed.get("/api/me").status_code == 401
    console["accounts"].set_active("wang", False)
    assert client.post("/api/login", json={"username": "wang", "password": PASSWORD}).status_code == 401


def test_roles_reach_only_their_pages(console: dict) -> None:
    assert client_as(console, "lin").get("/admin").status_code == 403
    assert client_as(console, "wang").get("/admin").status_code == 403
    admin = client_as(console, "zhao").get("/admin")
    assert admin.status_code == 200 and "banned_phrases" in admin.text and "lin" in admin.text


def test_numbers_are_masked_for_reviewers_and_shown_to_admins(console: dict) -> None:
    call_id = console["ids"][4]
    reviewer = client_as(console, "lin")
    listed = reviewer.get("/api/calls").json()["calls"]
    assert all("****" in row["customer_phone"] for row in listed)
    detail = reviewer.get(f"/api/calls/{call_id}").json()
    assert detail["call"]["customer_phone"] == "138****0004"
    assert "13800130004" not in str(detail) and "*******0004" in detail["utterances"][1]["text"]
    exported = reviewer.get("/api/export/calls.csv").text
    assert "13800130004" not in exported and "138****0004" in exported
    admin = client_as(console, "zhao").get(f"/api/calls/{call_id}").json()
    assert admin["call"]["customer_phone"] == "13800130004"


def test_filters_and_keyset_paging(console: dict) -> None:
    client = client_as(console, "wang")

    def calls(**params) -> list[dict]:
        found, cursor = [], None
        while True:
            page = client.get("/api/calls", params={**params, "limit": 7, **({"cursor": cursor} if cursor else {})})
            assert page.status_code == 200, page.text
            found += page.json()["calls"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return found

    everything = calls()
    assert len(everything) == 30 and len({c["id"] for c in everything}) == 30  # no row twice, none missed
    assert [c["invited_at"] for c in everything] == sorted((c["invited_at"] for c in everything), reverse=True)
    assert {c["agent"] for c in calls(agent="1002")} == {"1002"} and len(calls(agent="1002")) == 15
    banned = calls(rule_failed="banned_phrases")
    assert len(banned) == 10 and all(c["failed_rules"] == ["banned_phrases"] for c in banned)
    assert {c["id"] for c in calls(score_max=50)} == {c["id"] for c in banned}
    assert len(calls(score_min=90, score_max=100)) == 20
    assert len(calls(category="投诉")) == 6 and len(calls(complaint=True)) == 6 and len(calls(complaint=False)) == 24
    first_day = calls(since="2026-11-02", until="2026-11-02")  # Shanghai days: 09:00 and 16:00, then 23:00
    assert len(first_day) == 3
    with console["database"].session() as session:  # a complaint ticket makes a 咨询 call a complaint
        session.add(Ticket(call_id=everything[0]["id"], category="投诉", source="tickets"))
    assert len(calls(complaint=True)) == 7
    assert client.get("/api/calls", params={"score_min": "high"}).status_code == 422
    blank = {"since": "", "until": "", "score_min": "", "score_max": "", "complaint": "", "agent": "1002"}
    assert len(client.get("/api/calls", params=blank).json()["calls"]) == 15  # an unfilled form box is no filter


def test_the_call_page_highlights_the_violation_and_takes_a_review(console: dict) -> None:
    call_id = console["ids"][3]
    client = client_as(console, "lin")
    page = client.get(f"/calls/{call_id}")
    assert page.status_code == 200
    assert (
        '<mark class="hit-violation" title="服务禁语 (R4) · 违规 · 致命" data-rule="banned_phrases">我不知道</mark>'
        in page.text
    )
    assert "通话记录" in page.text and "138****0003" in page.text
    without_token = TestClient(console["app"], cookies=client.cookies)
    assert without_token.post(f"/api/calls/{call_id}/reviews", json={"comment": "x"}).status_code == 403
    saved = client.post(
        f"/api/calls/{call_id}/reviews", json={"verdicts": {"banned_phrases": "agree"}, "comment": "确实违规"}
    )
    assert saved.status_code == 201
    detail = client.get(f"/api/calls/{call_id}").json()["call"]
    assert (detail["score"], detail["reviewed_score"]) == (40.0, 0.0)  # agreed: the one rule that applied failed
    form = client.post(
        f"/calls/{call_id}/review",
        data={"csrf": client.headers["X-CSRF-Token"], "verdict_banned_phrases": "disagree", "comment": "语境不同"},
        follow_redirects=False,
    )
    assert form.status_code == 303
    reviews = client.get(f"/api/calls/{call_id}").json()["reviews"]
    assert [(r["reviewer"], r["verdicts"], r["comment"]) for r in reviews] == [
        ("Lin", {"banned_phrases": "agree"}, "确实违规"),  # the person's name, not the login
        ("Lin", {"banned_phrases": "disagree"}, "语境不同"),
    ]
    detail = client.get(f"/api/calls/{call_id}").json()["call"]
    assert (detail["score"], detail["reviewed_score"]) == (40.0, 100.0)  # the machine's score is kept beside it
    assert client.post("/api/calls/999999/reviews", json={}).status_code == 404


def test_a_review_that_says_nothing_or_judges_another_rule_is_refused(console: dict) -> None:
    call_id = console["ids"][3]
    client = client_as(console, "lin")
    empty = client.post(f"/api/calls/{call_id}/reviews", json={"verdicts": {}, "comment": "  "})
    assert empty.status_code == 422 and "复核内容为空" in empty.json()["detail"]
    stranger = client.post(f"/api/calls/{call_id}/reviews", json={"verdicts": {"greeting": "disagree"}})
    assert stranger.status_code == 422 and "greeting" in stranger.json()["detail"]
    form = client.post(f"/calls/{call_id}/review", data={"csrf": client.headers["X-CSRF-Token"], "comment": ""})
    assert form.status_code == 422 and "复核内容为空" in form.text
    assert client.get(f"/api/calls/{call_id}").json()["reviews"] == []
    assert client.get(f"/api/calls/{call_id}").json()["call"]["reviewed_score"] is None


def test_exports_follow_the_filters(console: dict) -> None:
    client = client_as(console, "wang")
    text = client.get("/api/export/calls.csv", params={"rule_failed": "banned_phrases"}).text
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert len(rows) == 10 and {r["未通过规则"] for r in rows} == {"服务禁语 (R4)"}  # rules by description
    workbook = load_workbook(io.BytesIO(client.get("/api/export/calls.xlsx", params={"agent": "1001"}).content))
    sheet = workbook["通话"]
    header, *data = list(sheet.values)
    assert header[0] == "通话编号" and len(data) == 15 and {row[header.index("分机")] for row in data} == {"1001"}


def test_recordings_are_served_only_from_the_data_folder(console: dict) -> None:
    settings = console["settings"]
    data_dir = Path(settings.general.data_dir)
    (data_dir / "recordings").mkdir(parents=True, exist_ok=True)
    soundfile.write(data_dir / "recordings" / "a.wav", [[0.0, 0.0]] * 800, 8000)
    (data_dir.parent / "secret.wav").write_bytes(b"RIFF")
    from contactcenter.storage.models import Call

    with console["database"].session() as session:
        session.get(Call, console["ids"][0]).recording_path = "recordings/a.wav"
        session.get(Call, console["ids"][1]).recording_path = "../secret.wav"
    client = client_as(console, "lin")
    audio = client.get(f"/calls/{console['ids'][0]}/recording")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert client.get(f"/calls/{console['ids'][1]}/recording").status_code == 404


def test_the_api_is_described_by_its_openapi_schema(console: dict) -> None:
    schema = TestClient(console["app"]).get("/api/openapi.json").json()
    assert {
        "/api/calls",
        "/api/calls/{call_id}",
        "/api/calls/{call_id}/reviews",
        "/api/me",
        "/api/login",
        "/api/export/calls.csv",
        "/api/export/calls.xlsx",
    } <= set(schema["paths"])
    assert not any(path in schema["paths"] for path in ("/calls", "/login", "/admin"))  # pages are not the API


def test_users_from_the_command_line(desk: Path, database_url: str) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
    env.update({"CONTACTCENTER_SETTINGS": str(desk), "CONTACTCENTER_DATABASE__URL": database_url})

    def cc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "contactcenter", *args], env=env, capture_output=True, text=True, timeout=60
        )

    assert cc("db", "upgrade").returncode == 0
    added = cc("users", "add", "chen", "--role", "supervisor", "--password", PASSWORD)
    assert added.returncode == 0, added.stderr
    short = cc("users", "add", "he", "--role", "reviewer", "--password", "short")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    assert cc("users", "add", "chen", "--role", "admin", "--password", PASSWORD).returncode == 1
    assert "chen\tsupervisor\tactive" in cc("users", "list").stdout
    assert cc("users", "disable", "chen").returncode == 0
    assert "chen\tsupervisor\tdisabled" in cc("users", "list").stdout
