"""Property-based test of the whole console API from its own OpenAPI document (schemathesis): whatever a client
sends, valid or not, the answer is never a server error.

It runs signed in as an admin with the session's CSRF token, so the protected operations and the writes are
reached, on a SQLite store with seeded calls, tickets, a customer and reviews, so the ids it tries exist.
Left out: the two server-sent-event streams (/api/live/events, /api/live/wallboard/events), which answer for
as long as the client listens and so never finish as a single request. The number of examples is bounded so
the run takes well under two minutes on a CI machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from contactcenter.settings import load_settings
from contactcenter.storage import Database
from contactcenter.storage.models import Ticket
from contactcenter.web.app import create_app
from contactcenter.web.auth import Accounts
from contactcenter.web.guards import COOKIE
from tests.helpers.factories import seed_known_caller
from tests.helpers.paths import REPO
from tests.helpers.settings import desk_settings, make_desk
from tests.helpers.web import PASSWORD, client_as, seed_calls

STREAMS = r"/events$"  # server-sent events: they stream until the client hangs up
EXAMPLES = 10  # per operation in the fuzzing phase, on top of schemathesis's boundary-value (coverage) cases


def sign_in(app: Any) -> dict[str, str]:
    """Headers of a fresh admin session: the cookie and the CSRF token writes need."""
    answer = TestClient(app).post("/api/login", json={"username": "zhao", "password": PASSWORD})
    assert answer.status_code == 200, f"the admin cannot sign in: {answer.status_code} {answer.text}"
    return {"Cookie": f"{COOKIE}={answer.cookies[COOKIE]}", "X-CSRF-Token": answer.json()["csrf_token"]}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The console on SQLite: 30 seeded calls (ids from 1), tickets on some, a known customer, a review; an admin,
    a supervisor and a reviewer; and the admin's session headers."""
    folder: Path = tmp_path_factory.mktemp("fuzz")
    settings_ = desk_settings(make_desk(folder / "desk"), f"sqlite:///{folder / 'store.db'}")
    database = Database(settings_.database_url)
    database.upgrade()
    accounts = Accounts(database, settings_.web.session_minutes)
    for name, role in (("lin", "reviewer"), ("wang", "supervisor"), ("zhao", "admin")):
        accounts.add_user(name, PASSWORD, role)
    ids = seed_calls(database)
    seed_known_caller(database)
    with database.session() as session:
        for call_id in ids[:5]:
            session.add(Ticket(call_id=call_id, category="投诉", source="tickets", purpose="空调坏了"))
    app = create_app(settings_, database)
    state = {"app": app, "ids": ids, "headers": sign_in(app)}
    review = TestClient(app, headers=state["headers"]).post(
        f"/api/calls/{ids[0]}/reviews", json={"verdicts": {"banned_phrases": "agree"}, "comment": "已复核"}
    )
    assert review.status_code == 201, review.text
    yield state
    database.dispose()


def openapi_document() -> dict[str, Any]:
    """The console's OpenAPI document, from an app on the repo's settings and a store it never opens.

    The schema is needed when the tests are collected, before the seeded app exists (and
    ``schemathesis.pytest.from_fixture`` does not run under pytest 9); the document depends on the code only,
    and each case is sent to the seeded app (``case.call(app=...)``)."""
    settings_ = load_settings(REPO / "settings.toml", {"CONTACTCENTER_DATABASE__URL": "sqlite://"})
    return create_app(settings_, Database("sqlite://")).openapi()


schema = schemathesis.openapi.from_dict(openapi_document()).exclude(path_regex=STREAMS)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_no_request_gets_a_server_error(case: Any, fuzzed: dict[str, Any]) -> None:
    """Any request, however odd, is answered 2xx-4xx: a 5xx (or an exception out of the app) fails."""
    response = case.call(app=fuzzed["app"], headers=fuzzed["headers"])
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: {response.text[:300]}\n"
        f"{case.as_curl_command(headers=fuzzed['headers'])}"
    )
    if case.path == "/api/logout" and response.status_code == 200:  # it ended our session: open another
        fuzzed["headers"] = sign_in(fuzzed["app"])


def test_the_fuzzed_schema_covers_the_api_but_the_streams(fuzzed: dict[str, Any]) -> None:
    """The property test must reach the protected and writing operations; only the endless streams are out,
    and the document it is built from is the one the seeded app serves."""
    assert TestClient(fuzzed["app"]).get("/api/openapi.json").json() == openapi_document()
    operations = {f"{result.ok().method.upper()} {result.ok().path}" for result in schema.get_all_operations()}
    for expected in (
        "GET /api/calls",
        "GET /api/calls/{call_id}",
        "POST /api/calls/{call_id}/reviews",
        "PUT /api/admin/rules/{rule_id}",
        "GET /api/export/calls.csv",
        "GET /api/customers/{customer_id}",
        "GET /api/scorecards",
    ):
        assert expected in operations, expected
    assert not any(op.endswith("/events") for op in operations)
    assert len(operations) >= 20, sorted(operations)


# ------------------------------------------------------------------------- the inputs that used to be 500s


def test_dates_out_of_range_are_refused_with_the_reason(console: dict) -> None:
    """A year-9999 or year-1 date overflowed the time arithmetic (500); now 422 names the bound, and the
    bounds themselves still work."""
    client = client_as(console, "wang")
    for path in ("/api/calls", "/api/scorecards", "/api/export/calls.csv", "/api/export/findings.xlsx"):
        for name, day, bound in (("until", "9999-12-31", "2100-12-31"), ("since", "0001-01-01", "2000-01-01")):
            answer = client.get(path, params={name: day})
            assert answer.status_code == 422, (path, name, answer.text)
            assert answer.json()["detail"][0]["loc"] == ["query", name] and bound in answer.text
    assert client.get("/api/calls", params={"since": "2000-01-01", "until": "2100-12-31"}).json()["calls"]
    page = client.get("/calls", params={"until": "9999-12-31"})
    assert page.status_code == 422 and "结束日期不能大于 2100-12-31" in page.text  # a page, in Chinese


def test_ids_and_cursors_past_64_bits_are_refused(console: dict) -> None:
    """A 20-digit id overflowed SQLite's integers, one past 32 bits PostgreSQL's INTEGER ids (500s); now 422 for
    an id no row can have, 404 for a free one."""
    client = client_as(console, "lin")
    huge = "9" * 20
    for too_big in (huge, str(2**31)):
        for path in (f"/api/calls/{too_big}", f"/api/customers/{too_big}", f"/api/customers?before={too_big}"):
            assert client.get(path).status_code == 422, path
        assert client.post(f"/api/calls/{too_big}/reviews", json={}).status_code == 422
    assert client.get(f"/api/calls/{2**31 - 1}").status_code == 404  # the largest id: looked up, not there
    assert client.get(f"/api/customers/{2**31 - 1}").status_code == 404
    for cursor in (f"1.0_{huge}", f"1.0_{2**31}", f"{huge}_1", "999999999999_1", "nonsense"):
        answer = client.get("/api/calls", params={"cursor": cursor})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["query", "cursor"], cursor
    first = client.get("/api/calls", params={"limit": 5}).json()
    following = client.get("/api/calls", params={"limit": 5, "cursor": first["next_cursor"]})
    assert following.status_code == 200 and following.json()["calls"][0]["id"] < first["calls"][-1]["id"]
    page = client.get(f"/calls/{huge}")
    assert page.status_code == 422 and "通话编号不能大于" in page.text


def test_a_too_long_review_comment_is_shown_back_with_the_reason(console: dict) -> None:
    """A 4,001-character comment through the form was a 500; now the form comes back with the reason and
    everything typed, nothing is saved, and 4,000 characters are still taken."""
    client = client_as(console, "lin")
    call_id = console["ids"][3]
    typed = "语" * 4001
    form = {"csrf": client.headers["X-CSRF-Token"], "verdict_banned_phrases": "disagree", "comment": typed}
    answer = client.post(f"/calls/{call_id}/review", data=form, follow_redirects=False)
    assert answer.status_code == 422 and "复核意见最多 4000 个字" in answer.text
    assert f">{typed}</textarea>" in answer.text and 'value="disagree" checked' in answer.text
    assert client.get(f"/api/calls/{call_id}").json()["reviews"] == []
    api = client.post(f"/api/calls/{call_id}/reviews", json={"comment": typed})
    assert api.status_code == 422 and api.json()["detail"][0]["loc"] == ["body", "comment"]
    saved = client.post(f"/calls/{call_id}/review", data={**form, "comment": typed[:4000]}, follow_redirects=False)
    assert saved.status_code == 303
    assert client.get(f"/api/calls/{call_id}").json()["reviews"][0]["comment"] == typed[:4000]


def test_a_rule_weight_must_be_a_finite_number_in_range(console: dict) -> None:
    """NaN or 1e999 as a weight was a 500 (the API could not even write its 422); now a 422 with the reason on
    the form and in the API, and the rule keeps its weight."""
    admin = client_as(console, "zhao")
    before = admin.get("/api/admin/rules").json()["rules"]
    for weight in ("NaN", "1e999", "-inf"):
        form = {"csrf": admin.headers["X-CSRF-Token"], "enabled": "on", "severity": "major", "weight": weight}
        page = admin.post("/admin/rules/hangup_order", data=form)
        assert page.status_code == 422 and "权重必须是有限的数字" in page.text, weight
        api = admin.put(
            "/api/admin/rules/hangup_order",
            content=f'{{"weight": {weight.replace("1e999", "Infinity").replace("inf", "Infinity")}}}',
            headers={"Content-Type": "application/json"},
        )
        assert api.status_code == 422 and api.json()["detail"][0]["type"] == "finite_number", api.text
    assert admin.put("/api/admin/rules/hangup_order", json={"weight": 101}).status_code == 422
    assert admin.get("/api/admin/rules").json()["rules"] == before


def test_findings_of_the_calls_that_failed_a_rule_export(console: dict) -> None:
    """Found by the property test: the findings export filtered by a failed rule was a 500 (its subquery
    correlated away the table it read)."""
    client = client_as(console, "wang")
    answer = client.get("/api/export/findings.csv", params={"rule_failed": "banned_phrases", "complaint": "true"})
    assert answer.status_code == 200
    assert answer.text.count("banned_phrases") == 2  # the banned calls among the complaints: n = 0 and 15


def test_pages_get_chinese_error_pages_and_programs_json(console: dict) -> None:
    """A browser gets a page in Chinese for 403, 404 and 422; a program keeps the JSON it reads."""
    reviewer = client_as(console, "lin")
    html = {"Accept": "text/html,application/xhtml+xml"}
    missing = reviewer.get("/calls/999999", headers=html)
    assert missing.status_code == 404 and "没有这通电话" in missing.text and "<html" in missing.text
    assert reviewer.get("/api/calls/999999").json() == {"detail": "no such call"}
    forbidden = reviewer.get("/admin", headers=html)
    assert forbidden.status_code == 403 and "您的角色不能查看此页面:需要管理员或更高的角色" in forbidden.text
    assert reviewer.get("/api/admin/users").json() == {"detail": "needs the admin role"}
    export = reviewer.get("/api/export/calls.csv", params={"score_min": "nan"}, headers=html)
    assert export.status_code == 422 and "最低分必须是有限的数字" in export.text  # a link followed from a page
    assert reviewer.get("/api/export/calls.csv", params={"score_min": "nan"}).json()["detail"][0]["loc"] == [
        "query",
        "score_min",
    ]


def test_text_with_a_nul_character_is_refused(console: dict) -> None:
    """PostgreSQL stores no NUL character, so a filter, a search or a comment with one was a 500 there."""
    client = client_as(console, "lin")
    for path, params in (
        ("/api/calls", {"agent": "10\x0001"}),
        ("/api/export/findings.csv", {"rule_failed": "\x00"}),
        ("/api/customers", {"q": "张\x00"}),
        ("/api/scorecards", {"team": "\x00"}),
    ):
        answer = client.get(path, params=params)
        assert answer.status_code == 422 and answer.json()["detail"][0]["type"] == "string_pattern_mismatch", path
    review = client.post(f"/api/calls/{console['ids'][0]}/reviews", json={"comment": "好\x00"})
    assert review.status_code == 422
    assert client.get("/api/calls", params={"agent": "x" * 101}).status_code == 422
