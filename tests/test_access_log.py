"""The console's access log (PIPL): every read of a call, a recording, a customer or an export is recorded
with who, from where and when; admins read and export it, nobody can change it from the console."""

from __future__ import annotations

import csv
import io

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
