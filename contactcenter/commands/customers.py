"""`contactcenter customers`: import the customer list (客户数据库) from Excel or CSV, and look a number up as
the agent's desktop shows it (the screen pop) with the record's history.

An import is all or nothing: every bad row is reported (row number as Excel shows it, column, reason) and a
file with any bad row imports nothing, because a half-imported list is harder to put right than a refused
one. Cells are read as text: a formula (``=…``) is stored as its text and never evaluated.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from contactcenter.app import App
from contactcenter.output import emit_rows
from contactcenter.phones import phone_key
from contactcenter.storage.customers import (
    LIMITS,
    SALUTATIONS,
    customer_history,
    find_customer,
    upsert_customer,
)
from contactcenter.storage.models import Customer
from contactcenter.storage.screen_pop import ScreenPop, screen_pop

#: Header spellings per field (compared after NFKC, without spaces, case-insensitively).
HEADERS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "客户姓名", "名字", "name"),
    "company": ("公司", "公司名称", "单位", "company"),
    "phone": ("电话", "电话号码", "手机", "手机号", "手机号码", "联系电话", "phone", "mobile", "tel"),
    "salutation": ("称呼", "salutation", "title"),
    "vip": ("vip", "是否vip"),
    "notes": ("备注", "notes", "note", "remarks"),
}
FIELD_NAMES = {"name": "姓名", "company": "公司", "phone": "电话", "salutation": "称呼", "vip": "VIP", "notes": "备注"}
VIP_YES = ("是", "y", "yes", "true", "1", "vip", "√", "✓")
VIP_NO = ("否", "n", "no", "false", "0")
MAX_DIGITS = 20  # E.164 allows 15; with 0086 and an extension typed in, 20 is already suspicious
MAX_BLANK_ROWS = 10_000  # a sheet's rows after this many empty ones in a row are not read
HEADER_SEARCH_ROWS = 10  # a title row or two above the header is common in Chinese spreadsheets
_PHONE_CHARACTERS = re.compile(r"[0-9+\-().\s]*")
_SCIENTIFIC = re.compile(r"\d+(?:\.\d+)?[eE][+-]?\d+")
DIRECTIONS = {"inbound": "呼入", "outbound": "呼出"}
DISPOSITIONS = {"completed": "已接通", "abandoned": "未接", "in_progress": "进行中", "recording": "录音质检"}
TICKET_STATES = {"open": "待处理", "in_progress": "处理中"}
CALLBACK_STATES = {"pending": "待回访", "due": "已到期", "in_progress": "回访中"}
CALLBACK_KINDS = {
    "next_day": "次日回访",
    "complaint": "投诉回访",
    "compliance": "质检跟进",
    "survey": "满意度",
    "manual": "手动",
}


@dataclass(frozen=True)
class Problem:
    row: int  # as the spreadsheet shows it (1 = the first line of the file)
    column: str  # the header as written in the file
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "reason": self.reason}


@dataclass
class ImportRow:
    row: int
    phone: str
    values: dict[str, Any]  # only the cells that were filled in: an empty cell changes nothing


@dataclass
class Checked:
    rows: list[ImportRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    data_rows: int = 0


# ------------------------------------------------------------------------------------------- reading


def _fail(path: Path, message: str) -> click.ClickException:
    return click.ClickException(f"{path.name}: {message}")


def decode_csv(data: bytes) -> str:
    """CSV bytes as text: UTF-8 with or without its BOM, UTF-16 with a BOM (Excel's "Unicode text"), else
    GB18030 (a superset of GBK, what Chinese Excel writes as "CSV"). ValueError if none fits."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise ValueError("不是 UTF-8 或 GBK/GB18030 编码") from None


def _read_csv(path: Path) -> list[list[Any]]:
    try:
        text = decode_csv(path.read_bytes())
    except ValueError as exc:
        raise _fail(path, f"无法识别文件编码({exc}),请另存为 UTF-8 或 GBK 编码的 CSV") from None
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    try:
        return [list(row) for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)]
    except csv.Error as exc:
        raise _fail(path, f"不是有效的 CSV 文件({exc})") from None


def _read_xlsx(path: Path) -> list[list[Any]]:
    from openpyxl import load_workbook

    try:
        # data_only=False: a formula cell gives its formula text, never a value computed by anyone
        workbook = load_workbook(path, read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises zipfile, KeyError, XML and its own errors for a bad file
        raise _fail(path, f"无法读取工作簿,文件可能已损坏或不是 .xlsx 格式({type(exc).__name__})") from None
    try:
        if not workbook.worksheets:
            raise _fail(path, "工作簿里没有工作表")
        rows: list[list[Any]] = []
        blank_run = 0
        for row in workbook.worksheets[0].iter_rows(values_only=True):
            blank_run = blank_run + 1 if all(cell is None for cell in row) else 0
            if blank_run > MAX_BLANK_ROWS:  # formatting carried down a whole column: no more data below
                break
            rows.append(list(row))
        return rows
    except click.ClickException:
        raise
    except Exception as exc:
        raise _fail(path, f"无法读取工作表({type(exc).__name__}: {exc})") from None
    finally:
        workbook.close()


def read_table(path: Path) -> list[list[Any]]:
    """The first sheet (or the CSV) as rows of cells. A one-line ClickException for anything unreadable."""
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise _fail(path, "不支持旧的 .xls 格式,请在 Excel 中另存为 .xlsx 或 CSV")
    if suffix not in (".csv", ".xlsx", ".xlsm"):
        raise _fail(path, f"只能导入 .csv 或 .xlsx 文件(这是 {suffix or '没有扩展名的文件'})")
    if not path.exists():
        raise click.ClickException(f"找不到文件 {path}")
    if not path.is_file():
        raise click.ClickException(f"{path} 不是文件")
    try:
        return _read_csv(path) if suffix == ".csv" else _read_xlsx(path)
    except OSError as exc:
        raise _fail(path, f"无法读取文件({exc.strerror or exc})") from None


def cell_text(value: Any) -> str:
    """A cell as the text a person sees: numbers without a trailing .0, dates as ISO, a formula as its text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "是" if value else "否"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, datetime | date | time):
        text = value.isoformat()
    elif isinstance(getattr(value, "text", None), str):  # openpyxl's ArrayFormula / DataTableFormula
        text = value.text
    else:
        text = str(value)
    return text.replace("\x00", "").strip()


def _header_key(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).lower()


_FIELD_OF_HEADER = {_header_key(h): name for name, headers in HEADERS.items() for h in headers}


def _find_header(path: Path, rows: Sequence[Sequence[Any]]) -> tuple[int, dict[str, tuple[int, str]], list[str]]:
    """The header row's index, each field's (column index, header as written), and the columns ignored."""
    for index, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
        columns: dict[str, tuple[int, str]] = {}
        ignored = []
        for position, cell in enumerate(row):
            header = cell_text(cell)
            name = _FIELD_OF_HEADER.get(_header_key(header))
            if name is None:
                if header:
                    ignored.append(header)
                continue
            if name in columns:
                raise _fail(path, f"表头有两个{FIELD_NAMES[name]}列(“{columns[name][1]}”和“{header}”)")
            columns[name] = (position, header)
        if "phone" in columns:
            return index, columns, ignored
    if not any(cell_text(cell) for row in rows for cell in row):
        raise _fail(path, "文件里没有数据")
    raise _fail(path, "找不到电话列:表头应有“电话”(或 phone、手机)这一列")


def _check_phone(raw: str) -> str | None:
    """Why ``raw`` is not a usable phone number, or None."""
    if not raw:
        return "电话为空"
    if _SCIENTIFIC.fullmatch(raw):
        return "电话被 Excel 写成了科学计数法(如 1.38E+10),请把电话列设为文本后重新导出"
    if not _PHONE_CHARACTERS.fullmatch(raw):
        bad = next(c for c in raw if not _PHONE_CHARACTERS.fullmatch(c))
        return f"电话含有不允许的字符“{bad}”(只能有数字、空格和 + - ( ) .)"
    digits = sum(c.isdigit() for c in raw)
    if digits == 0:
        return "电话里没有数字"
    if digits > MAX_DIGITS or len(raw) > LIMITS["phone"]:
        return f"电话过长({digits} 位数字;最多 {MAX_DIGITS} 位数字、{LIMITS['phone']} 个字符)"
    return None


def check_rows(path: Path, table: Sequence[Sequence[Any]]) -> Checked:
    """Every data row checked; the good ones as :class:`ImportRow`, every fault as a :class:`Problem`."""
    header_index, columns, ignored = _find_header(path, table)
    checked = Checked(ignored_columns=ignored)
    seen: dict[str, int] = {}  # phone key -> first row with it
    for index in range(header_index + 1, len(table)):
        cells = table[index]
        texts = {name: cell_text(cells[pos]) if pos < len(cells) else "" for name, (pos, _) in columns.items()}
        if not any(texts.values()) and not any(cell_text(c) for c in cells):
            continue  # a blank line (Excel often keeps a few after the data)
        checked.data_rows += 1
        row = index + 1
        problems: list[Problem] = []

        def problem(name: str, reason: str, row: int = row, problems: list[Problem] = problems) -> None:
            problems.append(Problem(row, columns[name][1], reason))

        phone = unicodedata.normalize("NFKC", texts["phone"]).strip()
        why = _check_phone(phone)
        if why is not None:
            problem("phone", why)
        else:
            key = phone_key(phone)
            if key in seen:
                problem("phone", f"与第 {seen[key]} 行的电话重复")
            else:
                seen[key] = row
        values: dict[str, Any] = {}
        for name in ("name", "company", "notes"):
            text = texts.get(name, "")
            if len(text) > LIMITS[name]:
                problem(name, f"{FIELD_NAMES[name]}过长({len(text)} 个字,最多 {LIMITS[name]} 个)")
            elif text:
                values[name] = text
        salutation = texts.get("salutation", "")
        if salutation and salutation not in SALUTATIONS:
            problem("salutation", f"称呼只能是“先生”或“女士”(不是“{salutation[:20]}”)")
        elif salutation:
            values["salutation"] = salutation
        vip = _header_key(texts.get("vip", ""))
        if vip in VIP_YES:
            values["vip"] = True
        elif vip in VIP_NO:
            values["vip"] = False
        elif vip:
            problem("vip", f"VIP 只能填 是/否(或 Y/N、1/0),不是“{texts['vip'][:20]}”")
        if problems:
            checked.problems += problems
        else:
            checked.rows.append(ImportRow(row, phone, values))
    return checked


# ------------------------------------------------------------------------------------------- planning


@dataclass
class Planned:
    row: ImportRow
    customer: Customer | None  # None: a new customer
    change: dict[str, list[Any]]  # field -> [before, after]; empty: unchanged

    @property
    def action(self) -> str:
        return "create" if self.customer is None else "update" if self.change else "unchanged"


def plan_import(session: Session, rows: Iterable[ImportRow]) -> list[Planned]:
    """What importing ``rows`` would do, read without writing (the customers looked up 500 keys at a time,
    the newest record per key, as :func:`find_customer` picks)."""
    rows = list(rows)
    keys = sorted({phone_key(r.phone) for r in rows})
    existing: dict[str, Customer] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for found in session.scalars(select(Customer).where(Customer.phone_key.in_(chunk)).order_by(Customer.id)):
            existing[found.phone_key] = found  # ascending ids: the newest ends up kept
    planned = []
    for row in rows:
        customer = existing.get(phone_key(row.phone))
        wanted = {"phone": row.phone, **row.values}
        if customer is None:
            change = {name: [None, value] for name, value in wanted.items()}
        else:
            change = {n: [getattr(customer, n), v] for n, v in wanted.items() if getattr(customer, n) != v}
        planned.append(Planned(row, customer, change))
    return planned


def apply_import(session: Session, planned: Iterable[Planned], changed_by: str) -> None:
    """Write the plan through :func:`upsert_customer` (history kept), in the caller's transaction."""
    for item in planned:
        if item.action == "unchanged":
            continue
        upsert_customer(
            session,
            phone=item.row.phone,
            values=item.row.values,
            changed_by=changed_by,
            customer_id=item.customer.id if item.customer is not None else None,
        )


# ------------------------------------------------------------------------------------------- commands


@click.group("customers")
def command() -> None:
    """The customer database (客户数据库): import, show a number's screen pop, history."""


def _short(value: Any, width: int = 30) -> str:
    text = "" if value is None else "是" if value is True else "否" if value is False else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


@command.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=True))
@click.option("--dry-run", is_flag=True, help="Check the file and show what would change; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on standard output.")
@click.pass_obj
def import_customers(app: App, file: Path, dry_run: bool, as_json: bool) -> None:
    """Import customers from FILE (.csv or .xlsx): columns 姓名/name, 公司/company, 电话/phone,
    称呼/salutation, VIP, 备注/notes, matched by phone. All or nothing: any bad row and nothing is imported."""
    checked = check_rows(file, read_table(file))
    with app.store.session() as session:
        planned = plan_import(session, checked.rows)
        imported = not checked.problems and not dry_run
        if imported:
            apply_import(session, planned, f"import:{file.name}"[:100])
        report = {
            "file": str(file),
            "dry_run": dry_run,
            "imported": imported,
            "rows": checked.data_rows,
            "errors": [p.as_dict() for p in checked.problems],
            "ignored_columns": checked.ignored_columns,
            "created": [
                {"row": p.row.row, "phone": p.row.phone, **p.row.values} for p in planned if p.action == "create"
            ],
            "updated": [
                {
                    "row": p.row.row,
                    "phone": p.row.phone,
                    "customer_id": p.customer.id if p.customer else None,
                    "change": p.change,
                }
                for p in planned
                if p.action == "update"
            ],
            "unchanged": sum(p.action == "unchanged" for p in planned),
        }
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    else:
        _print_import(report, checked, planned)
    if checked.problems:
        raise click.ClickException(
            f"{file.name}: {len({p.row for p in checked.problems})} 行有错误,"
            + ("这是试运行,没有写入任何数据" if dry_run else "没有导入任何客户,请改正后重新导入")
        )


def _print_import(report: dict[str, Any], checked: Checked, planned: list[Planned]) -> None:
    """Plain lines, one per bad row or change: a list of thousands stays greppable and never wraps mid-word."""
    click.echo(f"{Path(report['file']).name}: {report['rows']} 行数据")
    if checked.ignored_columns:
        click.echo(f"忽略的列: {', '.join(checked.ignored_columns)}")
    if checked.problems:
        click.echo(f"有错误的行({len(checked.problems)} 处):")
        for problem in checked.problems:
            click.echo(f"  第 {problem.row} 行 [{problem.column}] {problem.reason}")
    created, updated = len(report["created"]), len(report["updated"])
    if checked.problems and not report["dry_run"]:
        return  # the command's error line says nothing was imported
    if report["dry_run"]:
        listed = [p for p in planned if p.action != "unchanged"]
        if listed:
            click.echo("将要写入:")
        for item in listed:
            changes = item.change.items()
            if item.action == "create":
                what = "新建 " + ", ".join(f"{FIELD_NAMES[f]}={_short(after)}" for f, (_, after) in changes)
            else:
                what = f"更新 {item.row.phone} " + "; ".join(
                    f"{FIELD_NAMES[f]}: {_short(b)} → {_short(a)}" for f, (b, a) in changes
                )
            click.echo(f"  第 {item.row.row} 行 {what}")
        click.echo(f"试运行,没有写入: 将新建 {created} 位客户,更新 {updated} 位,{report['unchanged']} 位不变")
    else:
        click.echo(f"已导入: 新建 {created} 位客户,更新 {updated} 位,{report['unchanged']} 位不变")


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else ""


def pop_rows(pop: ScreenPop, zone: ZoneInfo) -> dict[str, list[dict[str, Any]]]:
    """The screen pop's lists as table rows with Chinese headings, times in the desk's zone."""
    return {
        "calls": [
            {
                "时间": _local(c.invited_at, zone),
                "方向": DIRECTIONS.get(c.direction, c.direction),
                "号码": c.remote_number,
                "类别": c.category or "",
                "质检分": "" if c.compliance_score is None else f"{c.compliance_score:.0f}",
                "坐席": " ".join(x for x in (c.agent_extension, c.agent_name) if x),
                "结果": DISPOSITIONS.get(c.disposition, c.disposition),
            }
            for c in pop.calls
        ],
        "tickets": [
            {
                "工单": t.id,
                "类别": t.category,
                "状态": TICKET_STATES.get(t.status, t.status),
                "内容": _short(t.purpose or t.summary, 40),
                "期限": _local(t.due_at, zone) + (" 已逾期" if t.overdue else ""),
                "创建": _local(t.created_at, zone),
            }
            for t in pop.tickets
        ],
        "callbacks": [
            {
                "回访": c.id,
                "类型": CALLBACK_KINDS.get(c.kind, c.kind),
                "状态": CALLBACK_STATES.get(c.state, c.state),
                "时间": _local(c.due_at, zone) + (" 已逾期" if c.overdue else ""),
                "原因": _short(c.reason, 40),
            }
            for c in pop.callbacks
        ],
    }


def _jsonable(value: Any, zone: ZoneInfo) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(zone).isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v, zone) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, zone) for v in value]
    return value


@command.command("show")
@click.argument("number")
@click.option("--calls", "calls", type=click.IntRange(0, 200), default=5, show_default=True, help="Last calls shown.")
@click.option("--json", "as_json", is_flag=True, help="JSON on standard output.")
@click.pass_obj
def show_customer(app: App, number: str, calls: int, as_json: bool) -> None:
    """The screen pop for NUMBER (any spelling): the customer, last calls, open tickets, callbacks owed."""
    if not phone_key(number):
        raise click.ClickException(f"“{number}”里没有数字")
    zone = ZoneInfo(app.settings.general.timezone)
    with app.store.session() as session:
        pop = screen_pop(session, number, calls=calls)
    if as_json:
        click.echo(json.dumps(_jsonable(pop.as_dict(), zone), ensure_ascii=False, indent=2))
        return
    customer = pop.customer
    if customer is None:
        click.echo(f"{number}: 未知号码(客户库中没有)")
    else:
        named = customer.name or "(未登记姓名)"
        if customer.addressed_as and customer.addressed_as != customer.name:
            named += f"(称呼:{customer.addressed_as})"
        parts = [named, "VIP" if customer.vip else "", customer.company, f"客户号 {customer.id}"]
        click.echo("客户  " + "  ".join(part for part in parts if part))
        click.echo(f"电话  {customer.phone}")
        if customer.notes:
            click.echo(f"备注  {customer.notes}")
    rows = pop_rows(pop, zone)
    sections = (("calls", "最近通话"), ("tickets", "未结工单"), ("callbacks", "待回访"))
    for name, title in sections:
        if rows[name]:
            emit_rows(rows[name], list(rows[name][0]), "table", title=f"{title}({len(rows[name])})")
        else:
            click.echo(f"{title}: 无")


@command.command("history")
@click.argument("number")
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON on standard output.")
@click.pass_obj
def history(app: App, number: str, limit: int, as_json: bool) -> None:
    """Who changed the record of NUMBER's customer, when, and each field's before and after (newest first)."""
    zone = ZoneInfo(app.settings.general.timezone)
    with app.store.session() as session:
        customer = find_customer(session, number)
        if customer is None:
            raise click.ClickException(f"客户库中没有号码 {number}")
        changes = customer_history(session, customer.id, limit)
        rows = [
            {
                "时间": _local(c.changed_at, zone),
                "修改人": c.changed_by,
                "字段": FIELD_NAMES.get(f, f),
                "原值": b,
                "新值": a,
            }
            for c in changes
            for f, (b, a) in c.change.items()
        ]
        data = [
            {"changed_at": c.changed_at.astimezone(zone).isoformat(), "changed_by": c.changed_by, "change": c.change}
            for c in changes
        ]
        title = f"客户 {customer.id} {customer.name} {customer.phone} 的修改记录"
    if as_json:
        click.echo(json.dumps({"customer_id": customer.id, "changes": data}, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo(f"{title}: 没有修改")
        return
    emit_rows(
        [{**r, "原值": _short(r["原值"], 40), "新值": _short(r["新值"], 40)} for r in rows],
        list(rows[0]),
        "table",
        title=title,
    )
