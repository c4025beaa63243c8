"""Masking numbers for roles that may not see them (issue 15): a table of the ways a number is written, and of
look-alikes that must stay readable; the ID check character; the console's free text, display names and
exports as a reviewer/supervisor and as an admin; and phone numbers checked on the ways a person types one."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from contactcenter.cli import cli
from contactcenter.hooks.api import PluginAPI
from contactcenter.hooks.host import PluginHost
from contactcenter.phones import mask_number, mask_numbers, phone_problem, resident_id_valid
from contactcenter.records import CallRecord
from contactcenter.storage import Database
from contactcenter.storage.models import Call, Callback, Customer, RuleHit, Ticket
from contactcenter.web import live_feed
from contactcenter.web.customers import mask_text
from contactcenter.web.queries import mask_phone
from tests.helpers.web import client_as

FREE_TEXT = [  # (as typed, as a masked role reads it)
    ("138-0013-8000", "***-****-8000"),
    ("138 0013 8000", "*** **** 8000"),
    ("13800138000", "*******8000"),
    ("我的电话是13800138000谢谢", "我的电话是*******8000谢谢"),
    ("电话:138.0013.8000。", "电话:***.****.8000。"),
    ("+86 138 0013 8000", "+** *** **** 8000"),
    ("+86-138-0013-8000", "+**-***-****-8000"),
    ("0086 13800138000", "**** *******8000"),
    ("013800138000", "********8000"),  # a trunk 0 before the mobile
    ("１３８００１３８０００", "*******８０００"),  # full-width digits
    ("手机１３８-００１３-８０００", "手机***-****-８０００"),
    ("010-12345678", "***-****5678"),
    ("(010) 1234 5678", "(***) **** 5678"),
    ("（010）12345678", "（***）****5678"),
    ("0755 8888 9999", "**** **** 9999"),
    ("+86-10-12345678", "+**-**-****5678"),
    ("400-800-8888", "***-***-8888"),
    ("tel13800138000", "tel*******8000"),  # glued to Latin letters: the matcher skips it, the mobile shape not
    ("19212345678", "*******5678"),
    ("回拨 13800138000、13900139000", "回拨 *******8000、*******9000"),
    ("身份证 11010519491231002X", "身份证 **************002X"),
    ("身份证 110105 19491231 002x", "身份证 ****** ******** 002x"),
    ("+1 650-253-0000", "+* ***-***-0000"),
    # look-alikes that are not phone or ID numbers stay as written
    ("2026-11-30", "2026-11-30"),
    ("2026/11/30 10:30", "2026/11/30 10:30"),
    ("10:30 到 11:45", "10:30 到 11:45"),
    ("金额 1380.00元", "金额 1380.00元"),
    ("订单 12345", "订单 12345"),
    ("订单号 SO-2026-1130-0001", "订单号 SO-2026-1130-0001"),
    ("快递单号 202611300001", "快递单号 202611300001"),
    ("分机 1001,服务号 95588", "分机 1001,服务号 95588"),
    ("身份证 110105194912310021", "身份证 110105194912310021"),  # wrong check character: not an ID number
    ("12345678901", "12345678901"),  # 11 digits no number plan has
    ("", ""),
]


@pytest.mark.parametrize(("typed", "masked"), FREE_TEXT)
def test_free_text_masks_every_way_a_number_is_written_and_nothing_else(typed: str, masked: str) -> None:
    assert mask_numbers(typed) == masked


def test_the_console_masks_free_text_with_the_same_function() -> None:
    """mask_text adds only the spoken numerals; every written form in the table comes out the same."""
    for typed, masked in FREE_TEXT:
        if not any(len(run) >= 7 for run in "".join(c if c.isdigit() else " " for c in masked).split()):
            assert mask_text(typed) == masked, typed  # the spoken-numeral pass would also hide 7+ bare digits
    assert mask_text("电话 一三八零零一三八零零零") == "电话 *******八零零零"


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("13800138000", "138****8000"),
        ("138-0013-8000", "138-****-8000"),
        ("+86 138 0013 8000", "+86 138 **** 8000"),
        ("008613800138000", "0086138****8000"),
        ("010-12345678", "010-****5678"),
        ("１３８００１３８０００", "１３８****８０００"),
        ("1001", "****"),  # an extension: short numbers are masked whole
        ("", ""),
    ],
)
def test_a_number_field_keeps_its_first_three_and_last_four_digits(number: str, masked: str) -> None:
    assert mask_number(number) == masked
    assert mask_phone(number) == masked  # the console's name for it delegates


def test_the_id_check_character_follows_gb_11643() -> None:
    assert resident_id_valid("11010519491231002X") and resident_id_valid("11010519491231002x")
    assert resident_id_valid("440524188001010014")
    assert not resident_id_valid("110105194912310021")  # the check character should be X
    assert not resident_id_valid("11010519491231002")  # 17 characters
    assert not resident_id_valid("1101051949123100XX")


# ------------------------------------------------------------------------------------------ the console

TYPED = "客户说打 138-0013-8000 找他"
MASKED = "客户说打 ***-****-8000 找他"


def _free_text_everywhere(console: dict) -> int:
    """A call whose purpose, ticket purpose, callback reason and a finding carry the number as typed."""
    call_id = console["ids"][1]
    with console["database"].session() as session:
        session.get(Call, call_id).purpose = "来电目的:" + TYPED
        session.add(Ticket(call_id=call_id, category="报修", source="tickets", purpose="工单:" + TYPED))
        session.add(
            Callback(
                phone="13800130001",
                reason="回访:" + TYPED,
                kind="manual",
                state="pending",
                due_at=datetime.now(UTC),
                call_id=call_id,
            )
        )
        session.add(RuleHit(call_id=call_id, rule_id="banned_phrases", kind="violation", matched_text=TYPED))
    return call_id


def test_free_text_is_masked_for_a_reviewer_in_pages_json_and_exports_and_whole_for_an_admin(console: dict) -> None:
    call_id = _free_text_everywhere(console)
    reviewer, admin = client_as(console, "lin"), client_as(console, "zhao")

    page = reviewer.get(f"/calls/{call_id}").text
    detail = reviewer.get(f"/api/calls/{call_id}").json()
    assert "138-0013-8000" not in page and "138-0013-8000" not in str(detail)
    for shown in ("来电目的:" + MASKED, "工单:" + MASKED, "回访:" + MASKED):
        assert shown in page
    assert detail["call"]["purpose"] == "来电目的:" + MASKED
    assert [t["purpose"] for t in detail["tickets"]] == ["工单:" + MASKED]
    assert [c["reason"] for c in detail["callbacks"]] == ["回访:" + MASKED]

    rows = list(csv.DictReader(io.StringIO(reviewer.get("/api/export/findings.csv").text.lstrip("\ufeff"))))
    assert MASKED in [r["命中内容"] for r in rows if r["通话编号"] == str(call_id)]

    whole = admin.get(f"/api/calls/{call_id}").json()
    assert whole["call"]["purpose"] == "来电目的:" + TYPED
    assert [c["reason"] for c in whole["callbacks"]] == ["回访:" + TYPED]
    assert "工单:" + TYPED in admin.get(f"/calls/{call_id}").text
    rows = list(csv.DictReader(io.StringIO(admin.get("/api/export/findings.csv").text.lstrip("\ufeff"))))
    assert TYPED in [r["命中内容"] for r in rows if r["通话编号"] == str(call_id)]


def test_a_display_name_carrying_the_number_is_masked_in_the_live_view(console: dict) -> None:
    """The SIP From display name is the caller's to set; phones often put the number there."""
    api = PluginAPI(live_feed.NAME, PluginHost(console["settings"], console["database"]))
    ringing = CallRecord(
        sip_call_id="shown-name",
        agent_extension="1001",
        remote_number="13800138000",
        caller_name="138-0013-8000",
        invited_at=datetime.now(UTC),
    )
    live_feed.call_ringing(call=ringing, api=api)

    supervisor = client_as(console, "wang").get("/api/live/calls").json()["events"]
    assert [(e["caller_name"], e["remote_number"]) for e in supervisor] == [("***-****-8000", "138****8000")]
    admin = client_as(console, "zhao").get("/api/live/calls").json()["events"]
    assert [(e["caller_name"], e["remote_number"]) for e in admin] == [("138-0013-8000", "13800138000")]


# ------------------------------------------------------------------------------------------ on the way in


@pytest.mark.parametrize("number", ["abc", "1" * 31, "=1+1", "12345678901", "+12", "138-0013-8000 转 1001", ""])
def test_what_is_not_a_phone_number_is_refused_with_one_line(number: str) -> None:
    problem = phone_problem(number)
    assert problem is not None and "\n" not in problem.zh + problem.en


@pytest.mark.parametrize(
    "number",
    [
        "13800138000",
        "138-0013-8000",
        "+86 138 0013 8000",
        "008613800138000",
        "010-12345678",
        "(0755) 8888 9999",
        "１３８００１３８０００",
        "400-800-8888",
        "800-820-8820",
        "1001",  # an extension
        "95588",  # a service number
        "110",
        "+1 650 253 0000",
    ],
)
def test_numbers_the_desk_uses_are_accepted(number: str) -> None:
    assert phone_problem(number) is None


def _cli(desk: Path, url: str, *args: str):
    env = {"CONTACTCENTER_SETTINGS": str(desk), "CONTACTCENTER_DATABASE__URL": url, "COLUMNS": "200"}
    return CliRunner().invoke(cli, list(args), env=env)


def test_callbacks_add_refuses_what_is_not_a_phone_number(desk: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    database = Database(url)
    database.upgrade()
    for bad in ("abc", "1" * 31, "=1+1"):
        refused = _cli(desk, url, "callbacks", "add", bad)
        assert refused.exit_code == 2 and "is not a phone number" in refused.output, refused.output
    added = _cli(desk, url, "callbacks", "add", "１３８-００１３-８０００")
    assert added.exit_code == 0, added.output
    extension = _cli(desk, url, "callbacks", "add", "1001")
    assert extension.exit_code == 0, extension.output
    with database.session() as session:
        assert list(session.scalars(select(Callback.phone).order_by(Callback.id))) == ["138-0013-8000", "1001"]
    database.dispose()


def test_a_customer_import_refuses_numbers_that_do_not_exist(desk: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    database = Database(url)
    database.upgrade()
    path = tmp_path / "list.csv"
    path.write_text("姓名,电话\n张三,138-0013-8000\n李四,12345678901\n王五,abc\n", encoding="utf-8")
    refused = _cli(desk, url, "customers", "import", str(path))
    assert refused.exit_code == 1 and "不是有效的电话号码" in refused.output and "不允许的字符“a”" in refused.output
    path.write_text("姓名,电话\n张三,138-0013-8000\n总机,0755 8888 9999\n", encoding="utf-8")
    assert _cli(desk, url, "customers", "import", str(path)).exit_code == 0
    with database.session() as session:
        assert [c.phone for c in session.scalars(select(Customer).order_by(Customer.id))] == [
            "138-0013-8000",
            "0755 8888 9999",
        ]
    database.dispose()


def test_a_long_note_of_times_and_amounts_stays_readable_around_the_number() -> None:
    """The look-alikes hold in bulk too, and the one number among them is still found."""
    day = ",".join(f"{h:02d}:{m:02d} 收款 {h * 100 + m}.00 元" for h in range(8, 18) for m in (0, 30))
    assert mask_numbers(day) == day and mask_numbers(day + " " + TYPED) == day + " " + MASKED
