"""The customer database (客户数据库) on SQLite and PostgreSQL: a customer found by any spelling of the number,
the history of every change, the screen pop the desk shows while a number rings, `contactcenter customers
import` (UTF-8 and GBK CSV, Excel; all or nothing; hostile cells), `customers show/history`, and the
reviewer console's customer pages with numbers masked by role."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import event, func, select

from contactcenter.cli import cli
from contactcenter.storage import Database
from contactcenter.storage.customers import (
    customer_history,
    find_customer,
    phone_spellings,
    search_customers,
    upsert_customer,
)
from contactcenter.storage.models import Agent, Call, Callback, Customer, CustomerChange, Ticket
from contactcenter.storage.screen_pop import screen_pop
from tests.helpers.web import client_as

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def customers(database: Database) -> list[Customer]:
    with database.session() as session:
        return list(session.scalars(select(Customer).order_by(Customer.id)))


# ------------------------------------------------------------------------------------- lookups and history


def test_a_customer_is_found_by_any_spelling_of_the_number(database: Database) -> None:
    with database.session() as session:
        mobile, _ = upsert_customer(session, phone="138-0013-8000", values={"name": "张三"}, changed_by="test")
        landline, _ = upsert_customer(session, phone="(010) 1234-5678", values={"name": "李四"}, changed_by="test")
    with database.session() as session:
        for spelling in ("13800138000", "+86 138 0013 8000", "+8613800138000", "008613800138000", "013800138000"):
            found = find_customer(session, spelling)
            assert found is not None and found.id == mobile.id, spelling
        for spelling in ("01012345678", "010-12345678", "010 1234 5678"):
            found = find_customer(session, spelling)
            assert found is not None and found.id == landline.id, spelling
        assert find_customer(session, "13800138001") is None
        assert find_customer(session, "无号码") is None
    assert set(phone_spellings("+86 138 0013 8000")) >= {
        "+86 138 0013 8000",
        "13800138000",
        "+8613800138000",
        "8613800138000",
        "008613800138000",
        "013800138000",
        "138-0013-8000",
        "138 0013 8000",
    }
    assert {"010-12345678", "+861012345678", "(010)12345678"} <= set(phone_spellings("01012345678"))
    assert "0755-88886666" in phone_spellings("075588886666")
    assert phone_spellings("") == () and phone_spellings("--") == ()


def test_every_change_is_kept_with_who_and_when(database: Database) -> None:
    with database.session() as session:
        customer, change = upsert_customer(
            session, phone="13800138000", values={"name": "张三", "salutation": "先生"}, changed_by="agent:1001"
        )
        assert change == {"phone": [None, "13800138000"], "name": [None, "张三"], "salutation": [None, "先生"]}
    with database.session() as session:
        _, change = upsert_customer(
            session, phone="+86 138 0013 8000", values={"vip": True, "name": "张三"}, changed_by="import:a.csv"
        )
        assert change == {"vip": [False, True]}  # the same number written another way is not a change
        _, unchanged = upsert_customer(session, phone="+86 138 0013 8000", values={"vip": True}, changed_by="x")
        assert unchanged == {}
    with database.session() as session:
        history = customer_history(session, customer.id)
        assert [(h.changed_by, sorted(h.change)) for h in history] == [
            ("import:a.csv", ["vip"]),
            ("agent:1001", ["name", "phone", "salutation"]),
        ]  # newest first; a change that changed nothing left no row
        assert session.scalar(select(func.count()).select_from(CustomerChange)) == 2
        stored = session.get(Customer, customer.id)
        assert stored is not None and stored.phone_key == "13800138000" and stored.updated_at is not None


def test_customer_search_by_name_company_or_the_start_of_a_number(database: Database) -> None:
    with database.session() as session:
        for n in range(12):
            upsert_customer(
                session,
                phone=f"1390000{n:04d}",
                values={"name": f"王{n}", "company": "某100%公司" if n == 3 else "示例科技"},
                changed_by="t",
            )
    with database.session() as session:
        assert [c.name for c in search_customers(session, "王1")] == ["王11", "王10", "王1"]
        assert [c.name for c in search_customers(session, "100%")] == ["王3"]  # % is a character, not a wildcard
        by_prefix = search_customers(session, "139 0000 000", limit=5)
        assert [c.name for c in by_prefix] == ["王9", "王8", "王7", "王6", "王5"]
        after = search_customers(session, "1390000000", limit=5, before_id=by_prefix[-1].id)
        assert [c.name for c in after] == ["王4", "王3", "王2", "王1", "王0"]
        assert search_customers(session, "1390000", whole_numbers=True) == []
        assert [c.name for c in search_customers(session, "139-0000-0003", whole_numbers=True)] == ["王3"]


# ------------------------------------------------------------------------------------------ screen pop


def seed_history(database: Database) -> int:
    """A customer (13800138000) with 7 calls in three spellings and one linked call from another line, a
    stranger's call, tickets and callbacks in every state. Returns the customer's id."""
    with database.session() as session:
        agent = Agent(extension="1001", name="李娜")
        session.add(agent)
        customer, _ = upsert_customer(
            session,
            phone="138 0013 8000",
            values={"name": "张三", "company": "某某公司", "salutation": "先生", "vip": True, "notes": "老客户"},
            changed_by="test",
        )
        spellings = ["13800138000", "+8613800138000", "013800138000"]
        for n in range(7):
            session.add(
                Call(
                    sip_call_id=f"pop-{n}",
                    direction="inbound" if n % 2 else "outbound",
                    remote_number=spellings[n % 3],
                    agent=agent,
                    invited_at=NOW - timedelta(days=10 - n),
                    disposition="completed",
                    category="报修",
                    compliance_score=90.0 + n,
                )
            )
        session.add(  # from the office line, linked to the customer at wrap-up
            Call(
                sip_call_id="pop-linked",
                direction="inbound",
                remote_number="02187654321",
                customer_id=customer.id,
                invited_at=NOW - timedelta(hours=1),
                disposition="completed",
                category="投诉",
            )
        )
        session.add(
            Call(
                sip_call_id="pop-stranger",
                direction="inbound",
                remote_number="13900139000",
                invited_at=NOW,
                disposition="completed",
            )
        )
        for status, phone in (
            ("open", "+8613800138000"),
            ("in_progress", "138-0013-8000"),
            ("closed", "13800138000"),
            ("open", "13900139000"),
        ):
            session.add(
                Ticket(
                    category="报修",
                    status=status,
                    caller_phone=phone,
                    purpose=f"空调不制冷 {status}",
                    due_at=NOW - timedelta(hours=2) if status == "open" else NOW + timedelta(days=1),
                    created_at=NOW - timedelta(days=1 if status == "open" else 2),
                )
            )
        for state, phone, due in (
            ("pending", "13800138000", NOW + timedelta(days=1)),
            ("due", "013800138000", NOW - timedelta(hours=1)),
            ("done", "13800138000", NOW - timedelta(days=3)),
            ("cancelled", "13800138000", NOW),
        ):
            session.add(Callback(phone=phone, reason=f"次日回访 {state}", kind="next_day", state=state, due_at=due))
        session.add(  # promised to the customer record, on another number
            Callback(
                customer_id=customer.id,
                phone="02187654321",
                reason="投诉回访",
                kind="complaint",
                due_at=NOW + timedelta(hours=3),
            )
        )
        session.flush()
        return customer.id


def test_the_screen_pop_shows_the_customer_their_last_calls_open_tickets_and_callbacks(database: Database) -> None:
    customer_id = seed_history(database)
    with database.session() as session:
        pop = screen_pop(session, "+86 138-0013-8000", now=NOW)
    assert pop.known and pop.key == "13800138000"
    assert pop.customer is not None
    assert (pop.customer.id, pop.customer.name, pop.customer.company, pop.customer.vip) == (
        customer_id,
        "张三",
        "某某公司",
        True,
    )
    assert pop.customer.addressed_as == "张先生" and pop.customer.notes == "老客户"
    assert [c.remote_number for c in pop.calls] == [
        "02187654321",  # linked by customer_id, newest
        "13800138000",
        "013800138000",
        "+8613800138000",
        "13800138000",
    ]
    assert [c.invited_at for c in pop.calls] == sorted((c.invited_at for c in pop.calls), reverse=True)
    newest_by_number = pop.calls[1]
    assert (newest_by_number.agent_extension, newest_by_number.agent_name) == ("1001", "李娜")
    assert (newest_by_number.category, newest_by_number.compliance_score) == ("报修", 96.0)
    assert newest_by_number.direction == "outbound" and newest_by_number.disposition == "completed"
    assert pop.calls[0].agent_extension is None  # no agent: still shown
    assert [(t.status, t.overdue) for t in pop.tickets] == [("open", True), ("in_progress", False)]
    assert [(c.state, c.kind, c.overdue) for c in pop.callbacks] == [
        ("due", "next_day", True),
        ("pending", "complaint", False),
        ("pending", "next_day", False),
    ]
    assert [c.reason for c in pop.callbacks] == ["次日回访 due", "投诉回访", "次日回访 pending"]
    data = pop.as_dict()
    assert data["customer"]["addressed_as"] == "张先生" and len(data["calls"]) == 5

    with database.session() as session:
        more = screen_pop(session, "13800138000", calls=20, now=NOW)
        none = screen_pop(session, "13800138000", calls=0, now=NOW)
    assert len(more.calls) == 8 and "13900139000" not in {c.remote_number for c in more.calls}
    assert none.calls == () and len(none.tickets) == 2


def test_an_unknown_number_still_shows_its_calls_and_tickets(database: Database) -> None:
    seed_history(database)
    with database.session() as session:
        stranger = screen_pop(session, "+86 139 0013 9000", now=NOW)
        nothing = screen_pop(session, "匿名", now=NOW)
        new = screen_pop(session, "17700177000", now=NOW)
    assert stranger.customer is None and not stranger.known
    assert [c.remote_number for c in stranger.calls] == ["13900139000"]
    assert [t.purpose for t in stranger.tickets] == ["空调不制冷 open"]
    assert (nothing.key, nothing.calls, nothing.tickets, nothing.callbacks) == ("", (), (), ())
    assert new.customer is None and new.calls == ()


def test_every_screen_pop_query_is_served_by_an_index(tmp_path: Path) -> None:
    """SQLite's plan for each statement the screen pop runs: no full scan of a big table (PostgreSQL's plans
    on a near-empty table would not say anything; bench/screen_pop_bench.py times both at full size)."""
    database = Database(f"sqlite:///{tmp_path / 'plan.db'}")
    database.upgrade()
    seed_history(database)
    statements: list[tuple[str, object]] = []

    def remember(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", remember)
    with database.session() as session:
        screen_pop(session, "13800138000", now=NOW)
    event.remove(database.engine, "before_cursor_execute", remember)
    assert len(statements) == 4  # the customer, the calls, the tickets, the callbacks
    with database.engine.connect() as connection:
        for statement, parameters in statements:
            plan = [row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            scans = [line for line in plan if re.match(r"SCAN (calls|tickets|callbacks|customers)\b", line)]
            assert scans == [], (statement, plan)
    database.dispose()


# ----------------------------------------------------------------------------------------------- import


def run(desk: Path, url: str, *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        list(args),
        env={"CONTACTCENTER_SETTINGS": str(desk), "CONTACTCENTER_DATABASE__URL": url, "COLUMNS": "200"},
    )


def no_traceback(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output


LIST_ZH = "姓名,公司,电话,称呼,VIP,备注\n张三,某某公司,138-0013-8000,先生,是,老客户\n李四,,+86 139 0013 9000,女士,否,\n"


def test_import_a_utf8_csv_with_bom(desk: Path, database: Database, tmp_path: Path) -> None:
    path = tmp_path / "客户.csv"
    path.write_bytes("\ufeff".encode() + LIST_ZH.encode("utf-8"))
    result = run(desk, database.url, "customers", "import", str(path))
    no_traceback(result)
    assert result.exit_code == 0, result.output
    assert "新建 2 位客户" in result.output
    stored = customers(database)
    assert [(c.name, c.company, c.phone, c.phone_key, c.salutation, c.vip, c.notes) for c in stored] == [
        ("张三", "某某公司", "138-0013-8000", "13800138000", "先生", True, "老客户"),
        ("李四", "", "+86 139 0013 9000", "13900139000", "女士", False, ""),
    ]
    with database.session() as session:
        assert {h.changed_by for h in session.scalars(select(CustomerChange))} == {"import:客户.csv"}


def test_import_a_gbk_csv_with_english_headers_and_update_only_what_changed(
    desk: Path, database: Database, tmp_path: Path
) -> None:
    first = tmp_path / "first.csv"
    first.write_bytes(LIST_ZH.encode("gbk"))
    assert run(desk, database.url, "customers", "import", str(first)).exit_code == 0
    second = tmp_path / "second.csv"
    second.write_bytes(
        "Name,Company,Phone,Salutation,vip,Notes,地址\n"
        "张三,新公司,138-0013-8000,,,,北京\n"  # empty cells change nothing
        "李四,,+86 139 0013 9000,女士,否,\n"  # nothing new
        "王五,,010-1234 5678,,Y,\n".encode("gb18030")
    )
    result = run(desk, database.url, "customers", "import", str(second), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["imported"] and report["errors"] == [] and report["ignored_columns"] == ["地址"]
    assert [u["change"] for u in report["updated"]] == [{"company": ["某某公司", "新公司"]}]
    assert [c["phone"] for c in report["created"]] == ["010-1234 5678"] and report["unchanged"] == 1
    zhang = next(c for c in customers(database) if c.name == "张三")
    assert (zhang.company, zhang.salutation, zhang.vip, zhang.notes) == ("新公司", "先生", True, "老客户")
    history = run(desk, database.url, "customers", "history", "13800138000", "--json")
    assert history.exit_code == 0, history.output
    changes = json.loads(history.stdout)["changes"]
    assert (changes[0]["changed_by"], changes[0]["change"]) == (
        "import:second.csv",
        {"company": ["某某公司", "新公司"]},
    )


def test_import_an_excel_workbook_with_a_title_row_numbers_and_formulas(
    desk: Path, database: Database, tmp_path: Path
) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["2026 年客户名单"])  # a title row above the header
    sheet.append(["姓名", "电话", "VIP", "备注", "公司"])
    sheet.append(['=HYPERLINK("http://evil.example","点我")', 13800138000, True, "+1 打折", "@SUM(A1)"])
    sheet.append(["赵六", "0755-8888 6666", None, "-2+3", "=1+1"])
    sheet.append([None, None, None, None, None])  # Excel's trailing blank rows
    path = tmp_path / "客户.xlsx"
    workbook.save(path)
    result = run(desk, database.url, "customers", "import", str(path))
    no_traceback(result)
    assert result.exit_code == 0, result.output
    stored = customers(database)
    assert [(c.name, c.phone, c.phone_key, c.vip, c.notes, c.company) for c in stored] == [
        ('=HYPERLINK("http://evil.example","点我")', "13800138000", "13800138000", True, "+1 打折", "@SUM(A1)"),
        ("赵六", "0755-8888 6666", "075588886666", False, "-2+3", "=1+1"),
    ]  # formulas kept as the text typed, never evaluated


def test_a_dry_run_reports_and_writes_nothing(desk: Path, database: Database, tmp_path: Path) -> None:
    with database.session() as session:
        upsert_customer(session, phone="13800138000", values={"name": "张三"}, changed_by="t")
    path = tmp_path / "list.csv"
    path.write_text(LIST_ZH, encoding="utf-8")
    result = run(desk, database.url, "customers", "import", str(path), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "试运行" in result.output and "将新建 1 位客户,更新 1 位" in result.output
    assert "某某公司" in result.output  # what would change is listed
    assert [(c.name, c.company) for c in customers(database)] == [("张三", "")]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(CustomerChange)) == 1


def test_a_file_with_a_bad_row_imports_nothing_and_names_every_bad_row(
    desk: Path, database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    rows = [
        "姓名,电话,VIP,称呼,备注",
        "好人,13800138000,是,先生,",  # row 2: fine
        "无电话,,否,,",  # 3
        "无数字,--,,,",  # 4
        f"太长,{'1' * 40},,,",  # 5
        "重复,+86 138 0013 8000,,,",  # 6: same number as row 2
        "坏VIP,13900139000,也许,,",  # 7
        "坏称呼,13700137000,,老板,",  # 8
        "公式,=1+13800138000,,,",  # 9
        "科学计数,1.38001E+10,,,",  # 10
        f"{'名' * 101},13600136000,,,",  # 11: name too long
        f"长备注,13500135000,,,{'注' * 10_000}",  # 12: a 10,000-character note is fine
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = run(desk, database.url, "customers", "import", str(path), "--json")
    no_traceback(result)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert not report["imported"]
    assert [(e["row"], e["column"]) for e in report["errors"]] == [
        (3, "电话"),
        (4, "电话"),
        (5, "电话"),
        (6, "电话"),
        (7, "VIP"),
        (8, "称呼"),
        (9, "电话"),
        (10, "电话"),
        (11, "姓名"),
    ]
    reasons = {e["row"]: e["reason"] for e in report["errors"]}
    assert reasons[3] == "电话为空" and reasons[4] == "电话里没有数字" and "过长" in reasons[5]
    assert reasons[6] == "与第 2 行的电话重复" and "是/否" in reasons[7] and "科学计数法" in reasons[10]
    assert "9 行有错误" in result.stderr and "没有导入任何客户" in result.stderr
    assert customers(database) == []

    table = run(desk, database.url, "customers", "import", str(path))
    assert table.exit_code == 1 and "电话为空" in table.stdout and "与第 2 行的电话重复" in table.stdout

    good = tmp_path / "good.csv"  # the same hostile-but-valid cells, on their own, go in intact
    good.write_text("\n".join([rows[0], rows[1], rows[11]]) + "\n", encoding="utf-8")
    assert run(desk, database.url, "customers", "import", str(good)).exit_code == 0
    assert [len(c.notes) for c in customers(database)] == [0, 10_000]


def test_files_that_cannot_be_imported_get_one_line_each(desk: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'unused.db'}"  # each is refused before the database is opened
    garbage = tmp_path / "broken.xlsx"
    garbage.write_bytes(b"PK\x03\x04 not really a workbook")
    no_phone = tmp_path / "no_phone.csv"
    no_phone.write_text("姓名,公司\n张三,某某公司\n", encoding="utf-8")
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0")
    text = tmp_path / "list.txt"
    text.write_text("电话\n13800138000\n", encoding="utf-8")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    cases = {
        str(tmp_path / "missing.csv"): "找不到文件",
        str(garbage): "无法读取工作簿",
        str(no_phone): "找不到电话列",
        str(old): "不支持旧的 .xls 格式",
        str(text): "只能导入 .csv 或 .xlsx 文件",
        str(empty): "文件里没有数据",
    }
    for path, message in cases.items():
        result = run(desk, url, "customers", "import", path)
        no_traceback(result)
        assert result.exit_code == 1, (path, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (path, result.stderr)


# ------------------------------------------------------------------------------------- show and history


def test_show_prints_the_screen_pop_and_history_the_changes(desk: Path, database: Database) -> None:
    seed_history(database)
    shown = run(desk, database.url, "customers", "show", "+86 138 0013 8000")
    assert shown.exit_code == 0, shown.output
    assert "张三" in shown.stdout and "张先生" in shown.stdout and "VIP" in shown.stdout
    assert "李娜" in shown.stdout and "空调不制冷 open" in shown.stdout and "次日回访 due" in shown.stdout
    as_json = json.loads(run(desk, database.url, "customers", "show", "13800138000", "--json").stdout)
    assert as_json["customer"]["name"] == "张三" and len(as_json["calls"]) == 5
    assert as_json["calls"][0]["invited_at"].endswith("+08:00")  # in the desk's zone
    unknown = run(desk, database.url, "customers", "show", "17700177000")
    assert unknown.exit_code == 0 and "未知号码" in unknown.stdout
    bad = run(desk, database.url, "customers", "show", "abc")
    assert bad.exit_code == 1 and "没有数字" in bad.stderr

    history = run(desk, database.url, "customers", "history", "13800138000")
    assert history.exit_code == 0 and "test" in history.stdout and "某某公司" in history.stdout
    missing = run(desk, database.url, "customers", "history", "17700177000")
    assert missing.exit_code == 1 and "客户库中没有号码" in missing.stderr


# ------------------------------------------------------------------------------------------- console


def test_phone_like_numbers_are_masked_in_free_text_however_grouped() -> None:
    from contactcenter.web.customers import mask_text

    assert mask_text("电话：+86 138 0013 8000。") == "电话：+** *** **** 8000。"
    assert mask_text("(010)1234-5678 或 0755-8888 6666") == "(***)****-5678 或 ****-**** 6666"
    assert mask_text("138.0013.8000/１３８００１３８０００") == "***.****.8000/*******８０００"
    assert mask_text("一三八零零一三八零零零") == "*******八零零零"  # spoken, as transcripts are masked
    kept = "2026-11-02 09:30 回电,2026/11/02,9:30到10:30,订单 12345,金额 300.50"
    assert mask_text(kept) == kept  # dates, times and short numbers are not phone numbers


NOTE = "备用 139-0013-9000,座机 (010) 8765 4321,+86 137 0013 7000;2026-11-02 09:30 回电,订单 12345"


def test_the_console_masks_customer_numbers_for_a_reviewer_but_not_for_an_admin(console: dict) -> None:
    database: Database = console["database"]
    with database.session() as session:  # the seeded call web-1 came from 13800130001
        customer, _ = upsert_customer(
            session, phone="13800130001", values={"name": "王五", "notes": "无"}, changed_by="agent:1001"
        )
        upsert_customer(
            session,
            phone="138-0013-0001",
            values={"notes": NOTE, "company": "电话 13800130001 公司"},
            changed_by="import:x.csv",
        )
        customer_id = customer.id

    reviewer, admin = client_as(console, "lin"), client_as(console, "zhao")
    masked = reviewer.get(f"/api/customers/{customer_id}").json()
    assert masked["customer"]["phone"] == "138****0001"  # 138-0013-0001 is the same number: the spelling stays
    assert masked["customer"]["notes"] == (
        "备用 ***-****-9000,座机 (***) **** 4321,+** *** **** 7000;2026-11-02 09:30 回电,订单 12345"
    )
    assert masked["history"][0]["change"]["company"] == ["", "电话 *******0001 公司"]
    assert masked["history"][0]["change"]["notes"][1] == masked["customer"]["notes"]
    assert [c["remote_number"] for c in masked["calls"]] == ["138****0001"]
    page = reviewer.get(f"/customers/{customer_id}")
    assert page.status_code == 200 and "王五" in page.text
    listing = reviewer.get("/customers").text + reviewer.get("/api/customers").text
    for shown in (page.text, listing, json.dumps(masked, ensure_ascii=False)):
        for secret in ("13800130001", "0013-0001", "139-0013-9000", "8765 4321", "137 0013 7000"):
            assert secret not in shown

    full = admin.get(f"/api/customers/{customer_id}").json()
    assert full["customer"]["phone"] == "13800130001" and full["customer"]["notes"] == NOTE
    assert [c["remote_number"] for c in full["calls"]] == ["13800130001"]
    assert "13800130001" in admin.get(f"/customers/{customer_id}").text

    # a masked role finds a customer by the whole number only: a prefix search would read it digit by digit
    assert reviewer.get("/api/customers", params={"q": "1380013"}).json()["customers"] == []
    assert [c["id"] for c in reviewer.get("/api/customers", params={"q": "138 0013 0001"}).json()["customers"]] == [
        customer_id
    ]
    assert [c["id"] for c in admin.get("/api/customers", params={"q": "1380013"}).json()["customers"]] == [customer_id]
    assert reviewer.get("/api/customers/999999").status_code == 404
    assert client_as(console, None).get("/api/customers").status_code == 401
    assert '<a href="/customers">客户</a>' in reviewer.get("/calls").text
