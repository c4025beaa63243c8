"""Tables as downloads: CSV with a BOM (so Excel opens the Chinese text as UTF-8) and Excel workbooks.

An export is capped at ``EXPORT_LIMIT`` rows; when the cap cuts it short the response says so in the
``X-Export-Truncated`` header and the workbook's last row, rather than silently handing over part of it.
Every cell goes through ``spreadsheet_cell`` (CSV) or ``excel_cell`` (Excel): a caller's number or name that
begins like a formula (``=HYPERLINK(…)``, ``@SUM(…)``) opens as text, never as a formula: in CSV with a leading
quote, in a workbook as a string cell with Excel's quote prefix (no quote to see).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from fastapi.responses import Response

from contactcenter.output import excel_cell, spreadsheet_cell

EXPORT_LIMIT = 100_000
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TRUNCATED_NOTE = "…(已截断:超过 {limit} 行,请缩小筛选范围)"

Table = tuple[Sequence[str], Sequence[Mapping[str, Any]]]  # columns, rows


def _disposition(filename: str) -> dict[str, str]:
    return {
        "Content-Disposition": f'attachment; filename="{filename.encode("ascii", "replace").decode()}"; '
        f"filename*=UTF-8''{quote(filename)}"
    }


def _joined(value: Any) -> Any:
    """A list or dict as one text, so that the joined text is checked for a formula too."""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}:{v}" for k, v in value.items())
    return value


def _cell(value: Any) -> Any:
    """One CSV cell, formula-safe."""
    return spreadsheet_cell(_joined(value))


def csv_response(filename: str, table: Table, truncated: bool = False) -> Response:
    columns, rows = table
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([_cell(column) for column in columns])
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    headers = _disposition(filename)
    if truncated:
        headers["X-Export-Truncated"] = str(EXPORT_LIMIT)
    return Response("\ufeff" + buffer.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


def xlsx_response(filename: str, sheets: Mapping[str, Table], truncated: bool = False) -> Response:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for title, (columns, rows) in sheets.items():
        sheet = book.create_sheet(title)
        sheet.append([excel_cell(sheet, _joined(column)) for column in columns])
        for row in rows:
            sheet.append([excel_cell(sheet, _joined(row.get(column))) for column in columns])
        if truncated:
            sheet.append([excel_cell(sheet, TRUNCATED_NOTE.format(limit=EXPORT_LIMIT))])
    buffer = io.BytesIO()
    book.save(buffer)
    headers = _disposition(filename)
    if truncated:
        headers["X-Export-Truncated"] = str(EXPORT_LIMIT)
    return Response(buffer.getvalue(), media_type=XLSX, headers=headers)
