"""Rows to the terminal: a rich table for people, ``--json`` and ``--csv`` for scripts.

Caller data (a SIP From header's name and number, a ticket's purpose) is whatever the caller made it, so two
guards live here, at the lowest layer, for the commands and the web console alike:

* ``terminal_text`` strips what a terminal would obey rather than show: escape sequences, C0/C1 controls and
  the Unicode bidi overrides. Rich markup in it is printed literally, not interpreted.
* ``spreadsheet_cell`` makes a CSV cell that Excel, LibreOffice or WPS would run as a formula open as the text it
  is (OWASP's CSV-injection guidance); ``excel_cell`` does the same for a workbook, where a cell has a type and
  the apostrophe would show. Every CSV writer in the project goes through the first, every Excel writer through
  the second.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Sequence
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

Format = Literal["table", "json", "csv"]

# ------------------------------------------------------------------------------------------- the terminal

_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, clearing the screen
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window title, hyperlinks, the clipboard
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"  # any other escape, and a lone ESC
)
# C0 but tab and newline, DEL, C1, and the bidi marks, embeddings, overrides and isolates (Trojan Source)
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# what json.dumps(ensure_ascii=False) leaves raw but a terminal would obey: DEL, C1, the bidi controls
_JSON_RAW = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_text(value: Any, *, one_line: bool = False) -> str:
    """``value`` as text a terminal shows and does not obey: escape sequences, control characters and bidi
    overrides removed, a carriage return made a newline (it could overwrite what was printed), a tab a space.
    A table cell may keep its newlines (they stay inside the cell); ``one_line`` makes them spaces too, so a
    caller cannot forge a line of its own. ``None`` is the empty string."""
    if value is None:
        return ""
    text = _ESCAPE_SEQUENCE.sub("", str(value)).replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE.sub("", text).replace("\t", " ")
    return text.replace("\n", " ") if one_line else text


def _json_text(rows: Sequence[dict[str, Any]]) -> str:
    """JSON escapes C0 itself; the rest a terminal would obey is written as ``\\uXXXX``, which loses nothing."""
    text = json.dumps(list(rows), ensure_ascii=False, indent=2, default=str)
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# ----------------------------------------------------------------------------------------- spreadsheets

# OWASP's triggers (= + - @ tab CR), line feed, and the full-width forms a Chinese input method types
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# the C0 controls no worksheet can hold (openpyxl refuses them) and no CSV reader wants
_CELL_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _cell_text(value: str) -> tuple[str, bool]:
    """``value`` without escape sequences and control characters (no worksheet can hold them, and
    ``\\x1b[0m=1`` must not hide its ``=``), and whether a spreadsheet would read it as the start of a formula
    (its first non-blank character is a trigger; a lone ``-``, the usual "none", is not)."""
    text = _CELL_CONTROLS.sub("", _ESCAPE_SEQUENCE.sub("", value))
    return text, text != "-" and text.lstrip(" \u3000").startswith(FORMULA_TRIGGERS)


def spreadsheet_cell(value: Any) -> Any:
    """``value`` as a CSV cell that opens as what it is. Text whose first non-blank character would start a
    formula gets a leading single quote (``=HYPERLINK(…)`` → ``'=HYPERLINK(…)``, ``+8613800138000`` →
    ``'+8613800138000``), after escape sequences and control characters are dropped.
    Numbers, dates, durations and ``None`` are returned as they are: ``-3.5`` stays a number. A lone ``-``,
    the usual "none", is no formula and stays as it is."""
    if not isinstance(value, str):
        return value
    text, formula = _cell_text(value)
    return "'" + text if formula else text


def excel_cell(sheet: Any, value: Any) -> Any:
    """``value`` as a cell of a write-only openpyxl ``sheet`` that opens as what it is, without the CSV's quote.

    In a workbook the quote of :func:`spreadsheet_cell` would show in the cell. Here text is always a string
    cell (openpyxl would make ``=…`` a formula and ``#N/A`` an error), and text that starts like a formula
    also gets the style's quotePrefix, which is what Excel itself records for a typed ``'``: the cell shows
    ``=HYPERLINK(…)`` as typed, and editing it does not turn it into a formula. Escape sequences and control
    characters are dropped as for CSV. Numbers, dates, durations and ``None`` keep their type."""
    from openpyxl.cell import WriteOnlyCell

    if not isinstance(value, str):
        return WriteOnlyCell(sheet, value)
    text, formula = _cell_text(value)
    cell = WriteOnlyCell(sheet, text)
    cell.data_type = "s"  # after the value: binding "=…" made it "f"
    if formula:
        cell.quotePrefix = True
    return cell


# ------------------------------------------------------------------------------------------------- rows


def emit_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: Format, title: str = "") -> None:
    """Print ``rows`` (dicts with at least ``columns``) in the chosen format on standard output: the table
    and the CSV cleaned by ``terminal_text`` (the CSV made formula-safe too), the JSON with what a terminal
    would obey escaped."""
    if fmt == "json":
        sys.stdout.write(_json_text(rows) + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow([spreadsheet_cell(terminal_text(c, one_line=True)) for c in columns])
        for row in rows:
            writer.writerow([_csv_cell(row.get(c)) for c in columns])
        return
    table = Table(title=Text(terminal_text(title, one_line=True)) if title else None)
    for column in columns:
        table.add_column(Text(terminal_text(column, one_line=True)))
    for row in rows:
        table.add_row(*(Text(terminal_text(row.get(c))) for c in columns))  # Text: "[bold]" is printed as is
    Console().print(table)


def _csv_cell(value: Any) -> Any:
    """A CSV cell for standard output: text cleaned for the terminal (newlines kept: csv quotes them)."""
    if isinstance(value, str):
        return spreadsheet_cell(terminal_text(value))
    return value
