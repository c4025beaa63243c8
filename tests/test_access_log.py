"""The console's access log (PIPL): every read of a call, a recording, a customer or an export is recorded
with who, from where and when; admins read and export it, nobody can change it from the console."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from contactcenter.web.access import ACCESSES
from contactcenter.web.admin import ACCESS_ACTIONS
from contactcenter.web.app import create_app
from tests.helpers.web import client_as


def test_reads_of_personal_data_are_logged_and_only_admins_read_the_log(console: dict) -> None:
    call_id = console["ids"][0]
    reviewer = client_as(console, "lin")
    assert reviewer.get(f"/calls/{call_id}").status_code == 200
    assert reviewer.get(f"/api/calls/{call_id}").status_code == 200
    assert reviewer.get("/api/export/calls.csv", params={"agent": "1001"}).status_code == 200
    assert reviewer.get(f"/calls/{call_id}/recording").status_code == 404  # no recording: nothing was read
    assert reviewer.get("/api/calls").status_code == 200  # the list is not a read of one call's data
    assert reviewer.get("/api/admin/access-log").status_code == 403

    admin = client_as(console, "zhao")
    entries = admin.get("/api/admin/access-log").json()["entries"]
    mine = [(e["username"], e["role"], e["action"], e["target"]) for e in entries if e["username"] == "lin"]
    assert mine == [
        ("lin", "reviewer", "export", "/api/export/calls.csv?agent=1001"),
        ("lin", "reviewer", "call", f"/api/calls/{call_id}"),
        ("lin", "reviewer", "call", f"/calls/{call_id}"),
    ]  # newest first
    assert all(e["address"] == "testclient" and e["at"] for e in entries)
    only_lin = admin.get("/api/admin/access-log", params={"username": "lin", "limit": 1}).json()["entries"]
    assert [e["action"] for e in only_lin] == ["export"]

    exported = admin.get("/api/admin/access-log.csv")
    assert exported.status_code == 200 and "access-log-" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert {(r["username"], r["target"]) for r in rows} >= {("lin", f"/calls/{call_id}")}
    # the export of the log is itself a read of personal data
    last = admin.get("/api/admin/access-log", params={"username": "zhao"}).json()["entries"][0]
    assert (last["action"], last["target"]) == ("export", "/api/admin/access-log.csv")

    for method in ("put", "patch", "delete", "post"):  # nothing in the console changes the log
        assert getattr(admin, method)("/api/admin/access-log").status_code == 405


def test_a_hostile_path_or_name_is_stored_as_plain_text(console: dict) -> None:
    """The target is the path and query as sent: cut to its column and stripped of control characters, so
    a crafted query cannot forge a line in an export or overflow the column on PostgreSQL."""
    reviewer = client_as(console, "lin")
    hostile = '=HYPERLINK("http://evil")\x1b[2J' + "x" * 500
    assert reviewer.get("/api/export/calls.csv", params={"category": hostile[:100]}).status_code in (200, 422)
    reviewer.get("/api/export/findings.csv", params={"rule": "a\nb"})
    entries = client_as(console, "zhao").get("/api/admin/access-log", params={"username": "lin"}).json()["entries"]
    assert entries and all(len(e["target"]) <= 300 and "\x1b" not in e["target"] for e in entries)
    exported = client_as(console, "zhao").get("/api/admin/access-log.csv").text
    assert "\n=" not in exported and ",=" not in exported  # formula-safe like every export


# ------------------------------------------------------------------------------------------- the page


def table_rows(page: str) -> list[list[str]]:
    """The access log table's rows as cell texts."""
    body = re.search(r'<table id="access-log">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert body is not None, page
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body[1], re.S)
    ]


def link(page: str, element_id: str) -> str | None:
    found = re.search(rf'<a href="([^"]*)" id="{element_id}"', page)
    return html.unescape(found[1]) if found else None


def test_admins_read_the_log_on_a_page_newest_first_filtered_paged_and_exported(console: dict) -> None:
    """/admin/access-log: Chinese headings, newest first, a page at a time (page_size is 10 here) with no entry
    on two pages, filters by user, day, kind of read and what was read, and an export of what they select."""
    ids = console["ids"]
    reviewer, supervisor = client_as(console, "lin"), client_as(console, "wang")
    for call_id in ids[:12]:
        assert reviewer.get(f"/calls/{call_id}").status_code == 200
    assert supervisor.get(f"/calls/{ids[20]}").status_code == 200
    assert supervisor.get("/customers", params={"q": "张"}).status_code == 200
    assert set(ACCESS_ACTIONS) == {action for _, action in ACCESSES}  # every kind of read has its name

    admin = client_as(console, "zhao")
    assert link(admin.get("/admin").text, "access-log-link") == "/admin/access-log"
    first = admin.get("/admin/access-log")
    assert first.status_code == 200
    headings = re.findall(r"<th>(.*?)</th>", first.text.split('<table id="access-log">')[1].split("</thead>")[0])
    assert headings == ["时间", "用户", "角色", "地址", "操作", "访问内容"]
    rows = table_rows(first.text)
    assert len(rows) == 10
    assert rows[0][1:] == ["wang", "主管", "testclient", "查找客户", "/customers?q=张"]  # newest first, readable
    assert rows[1][1:] == ["wang", "主管", "testclient", "查看通话", f"/calls/{ids[20]}"]
    assert rows[2][1:] == ["lin", "质检员", "testclient", "查看通话", f"/calls/{ids[11]}"]
    assert link(first.text, "first-page") is None
    following = admin.get(link(first.text, "next-page"))
    assert following.status_code == 200
    rest = table_rows(following.text)
    assert [r[5] for r in rest] == [f"/calls/{call_id}" for call_id in reversed(ids[:4])]
    assert link(following.text, "next-page") is None and link(following.text, "first-page") == "/admin/access-log"
    assert [r[0] for r in rows + rest] == sorted((r[0] for r in rows + rest), reverse=True)

    def shown(**filters: str) -> list[list[str]]:
        page = admin.get("/admin/access-log", params=filters)
        assert page.status_code == 200, page.text
        return table_rows(page.text)

    assert [r[1] for r in shown(username="wang")] == ["wang", "wang"]
    assert [r[5] for r in shown(action="customers")] == ["/customers?q=张"]
    assert [r[5] for r in shown(target=f"/calls/{ids[3]}")] == [f"/calls/{ids[3]}"]
    nothing = [["没有符合条件的记录"]]
    assert shown(target="/calls/1_") == shown(target="/calls/%") == nothing  # looked for, not wildcards
    today = datetime.now(ZoneInfo(console["settings"].general.timezone)).date()
    assert len(shown(since=str(today), until=str(today), username="lin")) == 10
    assert shown(until=str(today - timedelta(days=1))) == nothing

    filtered = admin.get("/admin/access-log", params={"username": "wang", "action": "call"})
    assert '<option value="call" selected>查看通话</option>' in filtered.text  # the filters stay as chosen
    export = link(filtered.text, "access-export")
    assert export == "/api/admin/access-log.csv?username=wang&action=call"
    exported = admin.get(export)
    assert exported.status_code == 200 and "X-Export-Truncated" not in exported.headers
    rows_out = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert [(r["username"], r["action"], r["target"]) for r in rows_out] == [("wang", "call", f"/calls/{ids[20]}")]


def test_nothing_on_the_page_changes_the_log_and_only_admins_open_it(console: dict) -> None:
    """The page's only form is its GET filters (and the header's sign-out); every other method is refused.
    A reviewer or supervisor gets the Chinese 403 page, someone signed out the sign-in form."""
    client_as(console, "lin").get(f"/calls/{console['ids'][0]}")
    admin = client_as(console, "zhao")
    page = admin.get("/admin/access-log").text
    forms = re.findall(r"<form\b[^>]*>", page)
    assert [f for f in forms if 'method="post"' in f] == ['<form method="post" action="/logout">']
    assert any('method="get" action="/admin/access-log"' in f for f in forms)
    assert "<button" not in page.split('id="access-filters"')[1].split("</form>")[1]  # none below the filters
    for method in ("post", "put", "patch", "delete"):
        assert admin.request(method, "/admin/access-log").status_code == 405
    assert len(admin.get("/api/admin/access-log").json()["entries"]) == 1

    for username, role in (("lin", "质检员"), ("wang", "主管")):
        refused = client_as(console, username).get("/admin/access-log")
        assert refused.status_code == 403
        assert '<h1 id="error-title">没有权限</h1>' in refused.text and "需要管理员或更高的角色" in refused.text, role
        assert "access-log" not in client_as(console, username).get("/calls").text  # no link to it either
    signed_out = client_as(console, None).get("/admin/access-log")
    assert signed_out.status_code == 401 and 'name="password"' in signed_out.text


def test_a_refused_filter_or_page_is_a_chinese_message_not_a_500(console: dict) -> None:
    admin = client_as(console, "zhao")
    for params, says in (
        ({"since": "2026-11-03", "until": "2026-11-02"}, "开始日期晚于结束日期"),
        ({"until": "9999-12-31"}, "结束日期不能大于 2100-12-31"),
        ({"action": "delete"}, "操作取值无效"),
        ({"target": "x" * 101}, "访问内容最多 100 个字"),
        ({"before": "999999"}, "翻页位置已失效"),
        ({"before": "99999999999999999999"}, "翻页位置不能大于"),
    ):
        page = admin.get("/admin/access-log", params=params)
        assert page.status_code == 422 and says in page.text, (params, page.text)
        assert admin.get("/api/admin/access-log", params=params).status_code == 422
        if "before" not in params:  # the export has no pages
            assert admin.get("/api/admin/access-log.csv", params=params).status_code == 422


def test_numbers_in_the_log_are_masked_for_an_admin_whose_role_may_not_see_them(console: dict) -> None:
    """A customer search by phone puts the number in the log (the query). Admins see it in full by default
    (``[web] unmasked_roles = ["admin"]``); where the admin role is not among them, the page, the API and the
    export show it masked, however it was written in the query."""
    reviewer = client_as(console, "lin")
    assert reviewer.get("/customers", params={"q": "138 0013 8000"}).status_code == 200  # 138+0013+8000
    assert reviewer.get("/api/customers", params={"q": "13900139000"}).status_code == 200

    full = client_as(console, "zhao").get("/admin/access-log").text
    assert [r[5] for r in table_rows(full)] == ["/api/customers?q=13900139000", "/customers?q=138 0013 8000"]

    settings = console["settings"]
    masked_settings = settings.model_copy(
        update={"web": settings.web.model_copy(update={"unmasked_roles": ["supervisor"]})}
    )
    masked = {**console, "app": create_app(masked_settings, console["database"])}
    admin = client_as(masked, "zhao")
    page = admin.get("/admin/access-log").text
    assert [r[5] for r in table_rows(page)] == ["/api/customers?q=*******9000", "/customers?q=*** **** 8000"]
    entries = admin.get("/api/admin/access-log", params={"username": "lin"}).json()["entries"]
    exported = admin.get("/api/admin/access-log.csv", params={"username": "lin"}).text
    for text in (page, str(entries), exported):
        assert "13900139000" not in text and "0013" not in text and "138+0013" not in text
