"""Tables as files a QA lead can hand on: Excel workbooks, CSV files and ZIPs of CSV files.

A table is a :class:`Sheet`: its Chinese headings and the kind of each column (:class:`Column`), its rows, and
the chart the console's page draws from it, if any. Written to a workbook it gets

* typed cells: dates and times as Excel dates (timezone-naive, in the desk's time zone, shown as
  ``yyyy-mm-dd hh:mm:ss``), numbers as numbers, durations as durations (``[hh]:mm:ss``);
* columns as wide as their content (a Chinese character counts as two), a frozen heading row and an
  autofilter over the table;
* the chart (openpyxl.chart) beside the table; a chart draws no point for a missing value.

The workbook is write-only (openpyxl streams its rows to a temporary file): the widths are measured on the
heading and the first :data:`WIDTH_SAMPLE` rows, so a list of 100,000 calls is never held whole.

CSV is UTF-8 with a BOM (Excel then reads the Chinese as UTF-8), dates as ``2026-11-02 09:00:00``, durations
as ``h:mm:ss``. Every cell goes through :func:`~contactcenter.output.spreadsheet_cell` (CSV) or
:func:`~contactcenter.output.excel_cell` (Excel), headings included: text that starts like a formula opens as
the text it is.

The file is answered as a download named by RFC 6266/5987 (:func:`content_disposition`): the Chinese name
in ``filename*`` and an ASCII name for clients that cannot read it.
"""

from __future__ import annotations

import csv
import io
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import chain, islice
from tempfile import SpooledTemporaryFile
from typing import IO, Any, Literal
from urllib.parse import quote

from fastapi.responses import Response, StreamingResponse

from contactcenter.output import excel_cell, spreadsheet_cell
from contactcenter.web.scorecards import hms

Kind = Literal["text", "int", "number", "number2", "date", "datetime", "duration"]
#: How Excel shows each kind of cell; text is shown as it is.
NUMBER_FORMATS: dict[str, str] = {
    "int": "0",
    "number": "0.0",
    "number2": "0.00",
    "date": "yyyy-mm-dd",
    "datetime": "yyyy-mm-dd hh:mm:ss",
    "duration": "[hh]:mm:ss",
}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv; charset=utf-8"
ZIP = "application/zip"
BOM = "\ufeff"
WIDTH_SAMPLE = 1000  # rows measured for the column widths
MIN_WIDTH, MAX_WIDTH = 6, 60  # in Excel's character widths
FILTER_BUTTON = 3  # the autofilter's drop-down button covers the end of the heading
SPOOL_BYTES = 8 * 1024 * 1024  # a file larger than this is spooled to disk before it is sent
YES, NO = "是", "否"
LIST_SEPARATOR = "、"


@dataclass(frozen=True)
class Column:
    """One column: the row key it shows, its Chinese heading, and the kind of its values."""

    key: str
    title: str
    kind: Kind = "text"


@dataclass(frozen=True)
class Chart:
    """The chart a page draws from a table: ``series`` (row keys) against ``category`` (a row key)."""

    kind: Literal["line", "bar"]
    title: str
    category: str
    series: tuple[str, ...]
    y_title: str = ""


@dataclass
class Sheet:
    """A table: its sheet title (the CSV's name in a ZIP), columns and rows (any iterable: it is read once),
    the chart beside it, and ``footer``, read after the rows, for a last line (the truncation note)."""

    title: str
    columns: Sequence[Column]
    rows: Iterable[Mapping[str, Any]]
    chart: Chart | None = None
    footer: Callable[[], str] | None = None


# ------------------------------------------------------------------------------------------------ cells


def _plain(value: Any) -> Any:
    """What every writer does first: yes/no in Chinese (a spreadsheet would say TRUE/FALSE), a list as one
    text (so that the joined text is checked for a formula too)."""
    if isinstance(value, bool):
        return YES if value else NO
    if isinstance(value, (list, tuple)):
        return LIST_SEPARATOR.join(str(v) for v in value)
    return value


def csv_value(value: Any) -> Any:
    """One CSV cell: a date or time as Excel and people read it, a duration as h:mm:ss, formula-safe text."""
    value = _plain(value)
    if isinstance(value, datetime):
        value = value.strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, date):
        value = value.isoformat()
    elif isinstance(value, timedelta):
        value = hms(value.total_seconds())
    return spreadsheet_cell(value)


def _excel_value(sheet: Any, value: Any, column: Column) -> Any:
    """One workbook cell, typed and shown by its column's kind, formula-safe."""
    value = _plain(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        raise ValueError(f"{column.title}: Excel has no time zones; give the desk's local time")
    cell = excel_cell(sheet, value)
    if value is not None and not isinstance(value, str) and column.kind in NUMBER_FORMATS:
        cell.number_format = NUMBER_FORMATS[column.kind]
    return cell


def text_width(text: str) -> int:
    """How many character widths ``text`` takes in a cell: a Chinese (wide or full-width) character two."""
    return max(
        (sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in line) for line in text.splitlines()),
        default=0,
    )


def _shown_width(value: Any, column: Column) -> int:
    value = _plain(value)
    if value is None:
        return 0
    if isinstance(value, datetime):
        return 19
    if isinstance(value, date):
        return 10
    if isinstance(value, timedelta):
        return len(hms(value.total_seconds())) + 1
    if isinstance(value, float):
        return len(f"{value:.2f}" if column.kind == "number2" else f"{value:.1f}")
    return text_width(str(value))


def column_width(column: Column, rows: Sequence[Mapping[str, Any]]) -> float:
    """The width that shows the heading (with its filter button) and the widest of ``rows``, within bounds."""
    widest = max([text_width(column.title) + FILTER_BUTTON, *(_shown_width(r.get(column.key), column) for r in rows)])
    return float(min(MAX_WIDTH, max(MIN_WIDTH, widest + 2)))


# ------------------------------------------------------------------------------------------------ Excel


def _heading(sheet: Any, title: str) -> Any:
    from openpyxl.styles import Alignment, Font, PatternFill

    cell = excel_cell(sheet, title)
    cell.font = Font(bold=True)
    cell.fill = PatternFill("solid", fgColor="DDEBF7")
    cell.alignment = Alignment(vertical="center")
    return cell


def _chart(sheet: Any, spec: Sheet, chart: Chart, rows: int) -> Any:
    from openpyxl.chart import BarChart, LineChart, Reference

    keys = [c.key for c in spec.columns]
    drawn: Any = LineChart() if chart.kind == "line" else BarChart()
    drawn.title = chart.title
    drawn.y_axis.title = chart.y_title
    drawn.x_axis.title = next(c.title for c in spec.columns if c.key == chart.category)
    drawn.display_blanks = "gap"  # a day without a figure is no point, not a fall to zero
    drawn.legend = None if len(chart.series) == 1 else drawn.legend
    for key in chart.series:
        column = keys.index(key) + 1
        drawn.add_data(Reference(sheet, min_col=column, min_row=1, max_row=rows + 1), titles_from_data=True)
    category = keys.index(chart.category) + 1
    drawn.set_categories(Reference(sheet, min_col=category, min_row=2, max_row=rows + 1))
    if chart.kind == "line":
        drawn.x_axis.number_format = "mm-dd"
    drawn.x_axis.delete = False  # openpyxl 3.1 hides the axes unless told not to
    drawn.y_axis.delete = False
    drawn.width, drawn.height = 24, 10  # centimetres
    return drawn


def _write_sheet(book: Any, spec: Sheet) -> None:
    from openpyxl.utils import get_column_letter

    sheet = book.create_sheet(spec.title)
    rows: Iterator[Mapping[str, Any]] = iter(spec.rows)
    sample = list(islice(rows, WIDTH_SAMPLE))
    for n, column in enumerate(spec.columns, 1):  # a write-only sheet takes widths before its first row
        sheet.column_dimensions[get_column_letter(n)].width = column_width(column, sample)
    sheet.freeze_panes = "A2"
    sheet.append([_heading(sheet, column.title) for column in spec.columns])
    count = 0
    for row in chain(sample, rows):
        sheet.append([_excel_value(sheet, row.get(column.key), column) for column in spec.columns])
        count += 1
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(spec.columns))}{count + 1}"
    note = spec.footer() if spec.footer is not None else ""
    if note:
        sheet.append([excel_cell(sheet, note)])
    if spec.chart is not None and count:
        sheet.add_chart(_chart(sheet, spec, spec.chart, count), f"{get_column_letter(len(spec.columns) + 2)}2")


def write_xlsx(sheets: Iterable[Sheet], out: IO[bytes]) -> None:
    """The tables as one workbook, a sheet each, in order."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for spec in sheets:
        _write_sheet(book, spec)
    book.save(out)


# -------------------------------------------------------------------------------------------------- CSV


def write_csv(spec: Sheet, out: IO[str]) -> None:
    """One table as CSV with the BOM (the footer is for workbooks: a CSV says it in a response header)."""
    out.write(BOM)
    writer = csv.writer(out)
    writer.writerow([spreadsheet_cell(column.title) for column in spec.columns])
    for row in spec.rows:
        writer.writerow([csv_value(row.get(column.key)) for column in spec.columns])


def csv_name(n: int, title: str) -> str:
    """A table's file name in the ZIP, numbered in the order of the page: 01_汇总.csv."""
    return f"{n:02d}_{title}.csv"


def write_zip(sheets: Iterable[Sheet], out: IO[bytes]) -> None:
    """The tables as a ZIP of CSV files, one per table (names in UTF-8, as the ZIP format marks them)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for n, spec in enumerate(sheets, 1):
            text = io.StringIO(newline="")
            write_csv(spec, text)
            archive.writestr(csv_name(n, spec.title), text.getvalue().encode("utf-8"))


def write_csv_bytes(spec: Sheet, out: IO[bytes]) -> None:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    write_csv(spec, text)
    text.flush()
    text.detach()  # leave ``out`` open


# --------------------------------------------------------------------------------------------- download


def content_disposition(filename: str, fallback: str) -> str:
    """An attachment named ``filename`` (RFC 5987 ``filename*``, for the Chinese), and ``fallback`` (ASCII)
    for a client that reads only ``filename``."""
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in fallback)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _chunks(body: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := body.read(64 * 1024):
            yield chunk
    finally:
        body.close()


Name = tuple[str, str]  # a download's file name, and its ASCII fallback


def download(
    write: Callable[[IO[bytes]], None],
    media_type: str,
    name: Name | Callable[[], Name],
    headers: Callable[[], Mapping[str, str]] | None = None,
) -> Response:
    """The file ``write`` makes, answered as a download named ``name``. It is written in full first (to
    memory, or to disk past :data:`SPOOL_BYTES`), so that a failure is an error answer rather than half a
    file, and so that ``name`` and ``headers``, when they are functions, can say what writing found (the days
    the rows covered, a truncation)."""
    body: Any = SpooledTemporaryFile(max_size=SPOOL_BYTES)
    try:
        write(body)
        size = body.tell()
        body.seek(0)
    except BaseException:
        body.close()
        raise
    filename, fallback = name() if callable(name) else name
    sent = {
        "Content-Disposition": content_disposition(filename, fallback),
        "Content-Length": str(size),
        **(headers() if headers is not None else {}),
    }
    return StreamingResponse(_chunks(body), media_type=media_type, headers=sent)
