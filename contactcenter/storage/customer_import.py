"""Reading, checking and writing a customer import file (客户数据库导入): the first sheet of an .xlsx (via
openpyxl) or a CSV in UTF-8 / UTF-16 / GB18030, checked row by row, then planned against the customer table and
applied through :func:`~contactcenter.storage.customers.upsert_customer` so every change keeps its history.

It lives in storage, apart from the ``customers import`` command, so the same checks can serve any front end;
it knows nothing of the command line and raises :class:`CustomerImportError` with a one-line message for a file
it cannot read. Every bad row is reported (row number as Excel shows it, column, reason) rather than only the
first, so a caller can refuse the whole file. Cells are read as text: a formula (``=…``) is kept as its text and
never evaluated.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contactcenter.phones import phone_key, phone_problem
from contactcenter.storage.customers import LIMITS, SALUTATIONS, upsert_customer
from contactcenter.storage.models import Customer

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
MAX_BLANK_ROWS = 10_000  # a sheet's rows after this many empty ones in a row are not read
HEADER_SEARCH_ROWS = 10  # a title row or two above the header is common in Chinese spreadsheets
_SCIENTIFIC = re.compile(r"\d+(?:\.\d+)?[eE][+-]?\d+")


class CustomerImportError(Exception):
    """A file that cannot be imported at all, as one line for the person who chose it."""


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


def _fail(path: Path, message: str) -> CustomerImportError:
    return CustomerImportError(f"{path.name}: {message}")


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
    except CustomerImportError:
        raise
    except Exception as exc:
        raise _fail(path, f"无法读取工作表({type(exc).__name__}: {exc})") from None
    finally:
        workbook.close()


def read_table(path: Path) -> list[list[Any]]:
    """The first sheet (or the CSV) as rows of cells. A one-line :class:`CustomerImportError` for anything
    unreadable."""
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise _fail(path, "不支持旧的 .xls 格式,请在 Excel 中另存为 .xlsx 或 CSV")
    if suffix not in (".csv", ".xlsx", ".xlsm"):
        raise _fail(path, f"只能导入 .csv 或 .xlsx 文件(这是 {suffix or '没有扩展名的文件'})")
    if not path.exists():
        raise CustomerImportError(f"找不到文件 {path}")
    if not path.is_file():
        raise CustomerImportError(f"{path} 不是文件")
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
    problem = phone_problem(raw)  # characters, length, then libphonenumber's numbering plan
    return problem.zh if problem is not None else None


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
