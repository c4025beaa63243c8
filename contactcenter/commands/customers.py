"""`contactcenter customers`: import the customer list (客户数据库) from Excel or CSV, and look a number up as
the agent's desktop shows it (the screen pop) with the record's history.

An import is all or nothing: every bad row is reported and a file with any bad row imports nothing, because a
half-imported list is harder to put right than a refused one. Reading, checking and writing the file is
:mod:`contactcenter.storage.customer_import`; this module is the commands and what they print.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from contactcenter.app import App
from contactcenter.commands.retention import print_tally
from contactcenter.output import emit_rows, terminal_text
from contactcenter.phones import phone_key
from contactcenter.storage.customer_import import (
    FIELD_NAMES,
    Checked,
    CustomerImportError,
    Planned,
    apply_import,
    check_rows,
    plan_import,
    read_table,
)
from contactcenter.storage.customers import customer_history, find_customer
from contactcenter.storage.erasure import ErasureRefused, forget_number
from contactcenter.storage.screen_pop import ScreenPop, screen_pop
from contactcenter.vocabulary import Vocabulary

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
    try:
        checked = check_rows(file, read_table(file))
    except CustomerImportError as exc:
        raise click.ClickException(str(exc)) from None
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


def pop_rows(pop: ScreenPop, zone: ZoneInfo, names: Vocabulary) -> dict[str, list[dict[str, Any]]]:
    """The screen pop's lists as table rows with Chinese headings and names, times in the desk's zone."""
    return {
        "calls": [
            {
                "时间": _local(c.invited_at, zone),
                "方向": names.name("direction", c.direction),
                "号码": c.remote_number,
                "类别": c.category or "",
                "质检分": "" if c.compliance_score is None else f"{c.compliance_score:.0f}",
                "坐席": " ".join(x for x in (c.agent_extension, c.agent_name) if x),
                "结果": names.name("disposition", c.disposition),
            }
            for c in pop.calls
        ],
        "tickets": [
            {
                "工单": t.id,
                "类别": t.category,
                "状态": names.name("ticket_status", t.status),
                "内容": _short(t.purpose or t.summary, 40),
                "期限": _local(t.due_at, zone) + (" 已逾期" if t.overdue else ""),
                "创建": _local(t.created_at, zone),
            }
            for t in pop.tickets
        ],
        "callbacks": [
            {
                "回访": c.id,
                "类型": names.name("callback_kind", c.kind),
                "状态": names.name("callback_state", c.state),
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
    names = app.vocabulary  # before anything is printed: a broken vocabulary file is one error, not half a table
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
    rows = pop_rows(pop, zone, names)
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


@command.command("forget")
@click.argument("number")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; change nothing.")
@click.option("--reference", default="", help="The request's own reference (a ticket number), kept in the record.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="The counts as JSON on standard output.")
@click.pass_obj
def forget(app: App, number: str, dry_run: bool, reference: str, yes: bool, as_json: bool) -> None:
    """Erase the customer with NUMBER (any spelling) everywhere: an erasure request (PIPL art. 47).

    The customer record is deleted; calls keep their score and findings but lose recording, transcript,
    number and notes; tickets and callbacks lose the caller's details (pending callbacks are cancelled);
    survey answers are unlinked; plugin messages about the customer are deleted; the number is cut out of
    any other text. Enabled plugins erase their own copies (hook ``forget_customer``). What changed is
    printed and recorded (without the number): ``contactcenter retention log``."""
    key = phone_key(number)
    if len(key) < 3:
        raise click.ClickException(
            f"{terminal_text(number[:40])!r} is not a phone number: it needs at least three digits"
        )
    if not (dry_run or yes):
        click.confirm(f"Erase every record of {number} (key {key})? This cannot be undone", abort=True, err=True)
    settings = app.settings
    now = datetime.now(UTC)
    done_by = f"{getpass.getuser()} (contactcenter customers forget)"
    try:
        with app.store.rehearsal() if dry_run else app.store.session() as session:
            tally = forget_number(
                session,
                number,
                Path(settings.general.data_dir),
                now,
                dry_run=dry_run,
                done_by=done_by,
                reference=reference.strip()[:200],
            )
    except ErasureRefused as exc:
        raise click.ClickException(str(exc)) from None
    plugins = [] if dry_run else app.plugins.forget_customer(number, key)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "dry_run": dry_run,
                    "counts": tally.as_dict(),
                    "plugins": [{"plugin": n, "did": did, "error": error} for n, did, error in plugins],
                },
                ensure_ascii=False,
            )
        )
    else:
        print_tally(tally, "would remove (dry run: nothing changed):" if dry_run else "removed:")
        for name, did, error in plugins:
            click.echo(f"plugin {name}: " + (f"FAILED: {error}" if error else did or "held nothing"))
    failed = [name for name, _, error in plugins if error]
    if failed:
        raise click.ClickException(
            f"plugin(s) {', '.join(failed)} failed: their copies may remain; fix and run the command again"
        )
