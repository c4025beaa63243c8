"""The admin pages: the service-script rules in force (switch a rule off, change its severity, weight or
phrases, put it back as the file has it, and the history of changes), the plugins with their delivery
health, the console's users, and the access log (who read which customer's data; read and exported, never
changed, from the console).

Rule changes are kept in the database (``speech/rule_book.py``), so every desk follows them from its next call.
Plugins are installed with pip and enabled in settings.toml on each desk machine; the console shows what is
installed and enabled and what each plugin has failed to take, but does not load or run them.

No `from __future__ import annotations`: FastAPI reads the route signatures.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import unquote_plus, urlencode
from zoneinfo import ZoneInfo

from fastapi import Body, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import Field, ValidationError
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contactcenter.hooks.host import describe_plugins
from contactcenter.phones import mask_numbers
from contactcenter.settings import Settings, SettingsError
from contactcenter.speech.rule_book import (
    MAX_PHRASES,
    RuleEdit,
    RuleError,
    change_rule,
    reset_rule,
    rule_changes,
    rule_states,
)
from contactcenter.speech.rules import RuleSet, load_rules
from contactcenter.storage.database import Database
from contactcenter.storage.models import AccessLog, OutboxMessage, UndeliveredEvent
from contactcenter.web.auth import Accounts, SignedIn
from contactcenter.web.exports import csv_response
from contactcenter.web.guards import MAX_TEXT, NO_NUL, TEMPLATES, Blank, Day, Guards, RowId, Text, explain
from contactcenter.web.queries import local_time

MAX_PHRASE = 200  # one phrase an agent says (or must not say)


class RuleEditIn(RuleEdit):
    """A rule change as the console takes it: a finite weight from 0 to 100, and phrases of at most
    ``MAX_PHRASE`` characters with no NUL (PostgreSQL stores none)."""

    weight: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    phrases: list[Annotated[str, Field(max_length=MAX_PHRASE, pattern=NO_NUL)]] | None = Field(
        default=None, max_length=MAX_PHRASES
    )


RuleId = Annotated[str, Path(max_length=MAX_TEXT, pattern=NO_NUL, examples=["banned_phrases"])]


def plugin_health(session: Session) -> dict[str, dict[str, Any]]:
    """Per plugin: hook calls it failed to take (waiting for `contactcenter plugins replay`) and messages
    to outside systems not delivered yet, with the last error of each."""
    health: dict[str, dict[str, Any]] = {}

    def entry(plugin: str) -> dict[str, Any]:
        return health.setdefault(
            plugin, {"undelivered": 0, "undelivered_error": "", "outbox_pending": 0, "outbox_error": ""}
        )

    for plugin, count in session.execute(
        select(UndeliveredEvent.plugin, func.count())
        .where(UndeliveredEvent.delivered_at.is_(None))
        .group_by(UndeliveredEvent.plugin)
    ):
        entry(plugin)["undelivered"] = count
    for plugin, count in session.execute(
        select(OutboxMessage.plugin, func.count())
        .where(OutboxMessage.delivered_at.is_(None))
        .group_by(OutboxMessage.plugin)
    ):
        entry(plugin)["outbox_pending"] = count
    for plugin in list(health):
        health[plugin]["undelivered_error"] = (
            session.scalar(
                select(UndeliveredEvent.error)
                .where(UndeliveredEvent.plugin == plugin, UndeliveredEvent.delivered_at.is_(None))
                .order_by(UndeliveredEvent.id.desc())
                .limit(1)
            )
            or ""
        )
        health[plugin]["outbox_error"] = (
            session.scalar(
                select(OutboxMessage.last_error)
                .where(
                    OutboxMessage.plugin == plugin, OutboxMessage.delivered_at.is_(None), OutboxMessage.last_error != ""
                )
                .order_by(OutboxMessage.id.desc())
                .limit(1)
            )
            or ""
        )
    return health


ACCESS_LOG_LIMIT = 10_000  # rows at a time, on the page's API and in one export

# What the access log records (web/access.py's ACCESSES), as the page names it.
AccessAction = Literal["call", "recording", "customer", "customers", "export"]
ACCESS_ACTIONS: dict[str, str] = {
    "call": "查看通话",
    "recording": "收听录音",
    "customer": "查看客户",
    "customers": "查找客户",
    "export": "导出",
}
ACCESS_COLUMNS = ["at", "username", "role", "address", "action", "target"]


@dataclass(frozen=True)
class AccessFilter:
    """Which entries of the access log: local days ``since``..``until``, one user, one kind of read, and a
    part of what was read (a path such as ``/calls/12``, or a search)."""

    since: date | None = None
    until: date | None = None
    username: str = ""
    action: str = ""
    target: str = ""

    def as_query(self) -> dict[str, str]:
        """The filters given, as the page's links carry them (the next page, the export)."""
        given = {
            "since": self.since,
            "until": self.until,
            "username": self.username,
            "action": self.action,
            "target": self.target,
        }
        return {name: str(value) for name, value in given.items() if value}


def access_rows(
    session: Session, where: AccessFilter, zone: ZoneInfo, limit: int, before: int | None = None
) -> tuple[list[AccessLog], bool]:
    """Up to ``limit`` entries, newest first, after the entry ``before`` (the last of the previous page), and
    whether there are more. Pages go by position in the log rather than by number, so entries written while
    an admin reads do not shift a row onto two pages. 422 when ``before`` is no entry."""
    query = select(AccessLog).order_by(AccessLog.at.desc(), AccessLog.id.desc())
    if where.since is not None:
        query = query.where(AccessLog.at >= datetime.combine(where.since, time(), zone))
    if where.until is not None:
        query = query.where(AccessLog.at < datetime.combine(where.until + timedelta(days=1), time(), zone))
    if where.username:
        query = query.where(AccessLog.username == where.username)
    if where.action:
        query = query.where(AccessLog.action == where.action)
    if where.target:
        query = query.where(AccessLog.target.contains(where.target, autoescape=True))
    if before is not None:
        at = session.scalar(select(AccessLog.at).where(AccessLog.id == before))
        if at is None:
            raise HTTPException(status_code=422, detail="no such page of the access log")
        query = query.where(or_(AccessLog.at < at, and_(AccessLog.at == at, AccessLog.id < before)))
    found = list(session.scalars(query.limit(limit + 1)))
    return found[:limit], len(found) > limit


def readable_target(target: str) -> str:
    """What was read as a person reads it: the query's %-escapes and + decoded (``q=张三``, ``q=138 0013 8000``),
    anything that does not print shown as �. A number can only be found (and masked) in this form."""
    path, mark, query = target.partition("?")
    text = path + mark + unquote_plus(query)
    return "".join(char if char.isprintable() else "\ufffd" for char in text)


def access_entry(row: AccessLog, zone: ZoneInfo, unmasked: bool) -> dict[str, Any]:
    """One entry for the API and the export: the target as recorded, or for a role that may not see customers'
    numbers, readable with every number in it masked (a customer search by phone is in its query)."""
    return {
        "at": local_time(row.at, zone),
        "username": row.username,
        "role": row.role,
        "address": row.address,
        "action": row.action,
        "target": row.target if unmasked else mask_numbers(readable_target(row.target)),
    }


def add_admin_routes(app: FastAPI, guards: Guards, settings: Settings, database: Database, accounts: Accounts) -> None:
    zone = ZoneInfo(settings.general.timezone)
    Admin = Annotated[SignedIn, Depends(guards.role("admin"))]
    company_names = settings.company.names_said

    def file_rules() -> RuleSet:
        """The rules file as it is now (read per request: a deployment may edit it while the console runs)."""
        try:
            return load_rules(settings.scripts.rules, company_names)
        except SettingsError as exc:
            raise HTTPException(status_code=500, detail=f"the rules file cannot be used: {exc}") from None

    def rules_view() -> list[dict[str, Any]]:
        with database.session() as session:
            states = rule_states(file_rules(), session)
        return [{**state.as_dict(), "changed_at": local_time(state.changed_at, zone)} for state in states]

    def changes_view(limit: int = 50) -> list[dict[str, Any]]:
        with database.session() as session:
            return [
                {
                    "id": row.id,
                    "rule_id": row.rule_id,
                    "changed_by": row.changed_by,
                    "changed_at": local_time(row.changed_at, zone),
                    "change": row.change,
                }
                for row in rule_changes(session, limit)
            ]

    def plugins_view() -> list[dict[str, Any]]:
        with database.session() as session:
            health = plugin_health(session)
        empty = {"undelivered": 0, "undelivered_error": "", "outbox_pending": 0, "outbox_error": ""}
        return [{**info.__dict__, **health.get(info.name, empty)} for info in describe_plugins(settings)]

    def apply(rule_id: str, edit: RuleEdit | None, user: SignedIn) -> dict[str, list[Any]]:
        """Change (or with no edit, reset) a rule; 404 for a rule not in the file, 422 for values it cannot
        run with, 409 when another admin's change to it commits first."""
        try:
            with database.session() as session:
                if edit is None:
                    return reset_rule(session, file_rules(), rule_id, user.username)
                return change_rule(session, file_rules(), company_names, rule_id, edit, user.username)
        except KeyError:
            raise HTTPException(
                status_code=404, detail=f"no rule {rule_id!r} in {settings.scripts.rules.name}"
            ) from None
        except RuleError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        except IntegrityError:  # another admin changed the same rule at the same moment
            raise HTTPException(status_code=409, detail=f"rule {rule_id!r} was changed meanwhile; try again") from None

    def page(request: Request, user: SignedIn, error: str = "", status_code: int = 200) -> Response:
        return TEMPLATES.TemplateResponse(
            request,
            "admin.html",
            {
                "user": user,
                "rules": rules_view(),
                "changes": changes_view(),
                "plugins": plugins_view(),
                "users": accounts.users(),
                "error": error,
                "enabled_in": settings.source,
            },
            status_code=status_code,
        )

    @app.get("/admin", response_class=HTMLResponse, include_in_schema=False)
    def admin_page(request: Request, user: Admin) -> Response:
        return page(request, user)

    @app.post("/admin/rules/{rule_id}", include_in_schema=False)
    async def rule_form(request: Request, rule_id: RuleId, user: Admin) -> Response:
        form = await request.form()
        guards.check_csrf(user, str(form.get("csrf", "")))
        try:
            edit = RuleEditIn.model_validate(
                {  # form fields are text: pydantic checks and converts them
                    "enabled": form.get("enabled") == "on",
                    "severity": form.get("severity") or None,
                    "weight": form.get("weight") or None,
                    "phrases": str(form["phrases"]).splitlines() if "phrases" in form else None,
                }
            )
            apply(rule_id, edit, user)
        except ValidationError as exc:
            return page(request, user, f"{rule_id}:{explain(exc.errors())}", 422)
        except HTTPException as exc:
            return page(request, user, str(exc.detail), exc.status_code)
        return RedirectResponse(f"/admin#rule-{rule_id}", status_code=303)

    @app.post("/admin/rules/{rule_id}/reset", include_in_schema=False)
    async def rule_reset_form(request: Request, rule_id: RuleId, user: Admin) -> Response:
        form = await request.form()
        guards.check_csrf(user, str(form.get("csrf", "")))
        apply(rule_id, None, user)
        return RedirectResponse(f"/admin#rule-{rule_id}", status_code=303)

    @app.get("/api/admin/rules", tags=["admin"])
    def api_rules(user: Admin) -> dict[str, Any]:
        """Every rule of the rules file as in force: enabled, severity, weight, phrases; the file's own values;
        who changed it last and when."""
        return {"rules": rules_view(), "rules_file": str(settings.scripts.rules)}

    @app.put("/api/admin/rules/{rule_id}", tags=["admin"])
    def api_change_rule(
        request: Request, rule_id: RuleId, edit: Annotated[RuleEditIn, Body()], user: Admin
    ) -> dict[str, Any]:
        """Change a rule for every desk from its next call: any of ``enabled``, ``severity``, ``weight`` and
        ``phrases`` (the whole list). Answers the fields that changed as ``[before, after]``."""
        guards.check_csrf(user, request.headers.get("X-CSRF-Token"))
        change = apply(rule_id, edit, user)
        return {"changed": change, "rule": next(r for r in rules_view() if r["id"] == rule_id)}

    @app.post("/api/admin/rules/{rule_id}/reset", tags=["admin"])
    def api_reset_rule(request: Request, rule_id: RuleId, user: Admin) -> dict[str, Any]:
        """Put a rule back as the rules file has it."""
        guards.check_csrf(user, request.headers.get("X-CSRF-Token"))
        change = apply(rule_id, None, user)
        return {"changed": change, "rule": next(r for r in rules_view() if r["id"] == rule_id)}

    @app.get("/api/admin/rule-changes", tags=["admin"])
    def api_rule_changes(user: Admin) -> dict[str, Any]:
        """The latest 50 rule changes, newest first: who, when, and each field's ``[before, after]``."""
        return {"changes": changes_view()}

    @app.get("/api/admin/plugins", tags=["admin"])
    def api_plugins(user: Admin) -> dict[str, Any]:
        """Installed and enabled plugins with version, hooks and status, and per plugin the hook calls it
        failed to take and the outside messages not delivered yet."""
        return {"plugins": plugins_view()}

    def access_filter(
        since: Annotated[Blank[Day], Query()] = None,
        until: Annotated[Blank[Day], Query()] = None,
        username: Annotated[Text, Query()] = "",
        action: Annotated[Blank[AccessAction], Query()] = None,
        target: Annotated[Text, Query()] = "",
    ) -> AccessFilter:
        if since is not None and until is not None and since > until:
            raise HTTPException(status_code=422, detail="since is after until")
        return AccessFilter(since, until, username, action or "", target)

    AccessWhere = Annotated[AccessFilter, Depends(access_filter)]

    def access_view(
        where: AccessFilter, limit: int, unmasked: bool, before: int | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """The entries as the API and the export give them, and the id to pass as ``before`` for the next
        page (None on the last)."""
        with database.session() as session:
            rows, more = access_rows(session, where, zone, limit, before)
            return [access_entry(r, zone, unmasked) for r in rows], (rows[-1].id if more and rows else None)

    @app.get("/admin/access-log", response_class=HTMLResponse, include_in_schema=False)
    def access_log_page(
        request: Request,
        user: Admin,
        where: AccessWhere,
        before: Annotated[Blank[RowId], Query()] = None,
    ) -> Response:
        """The access log, newest first, a page at a time, with its filters and the CSV of what they select.
        Nothing on it changes the log: its only form is the filters' GET."""
        unmasked = guards.unmasked(user)
        entries, next_before = access_view(where, settings.web.page_size, unmasked, before)
        for entry in entries:  # the page shows the query decoded; masked, it is decoded already
            entry["shown"] = readable_target(entry["target"]) if unmasked else entry["target"]
        query = where.as_query()
        return TEMPLATES.TemplateResponse(
            request,
            "access_log.html",
            {
                "user": user,
                "where": where,
                "entries": entries,
                "actions": ACCESS_ACTIONS,
                "later_page": before is not None,
                "first_link": f"/admin/access-log?{urlencode(query)}" if query else "/admin/access-log",
                "next_link": f"/admin/access-log?{urlencode({**query, 'before': next_before})}" if next_before else "",
                "export_query": urlencode(query),
                "limit": ACCESS_LOG_LIMIT,
            },
        )

    @app.get("/api/admin/access-log", tags=["admin"])
    def api_access_log(
        user: Admin,
        where: AccessWhere,
        limit: Annotated[int, Query(ge=1, le=ACCESS_LOG_LIMIT)] = 500,
        before: Annotated[Blank[RowId], Query()] = None,
    ) -> dict[str, Any]:
        """Who read which call, recording, customer or export, newest first (local days ``since``..``until``,
        one ``username``, one ``action``, ``target`` containing a text); ``next_before`` fetches the next page.
        The log can be read and exported, never changed, from the console."""
        entries, next_before = access_view(where, limit, guards.unmasked(user), before)
        return {"entries": entries, "next_before": next_before}

    @app.get("/api/admin/access-log.csv", tags=["admin"])
    def export_access_log(user: Admin, where: AccessWhere) -> Response:
        """The access log as CSV, with the same filters (at most :data:`ACCESS_LOG_LIMIT` rows, newest
        first; ``X-Export-Truncated`` when there are more)."""
        rows, more = access_view(where, ACCESS_LOG_LIMIT, guards.unmasked(user))
        response = csv_response(f"access-log-{datetime.now(zone):%Y%m%d}.csv", (ACCESS_COLUMNS, rows))
        if more is not None:
            response.headers["X-Export-Truncated"] = str(ACCESS_LOG_LIMIT)
        return response

    @app.get("/api/admin/users", tags=["admin"])
    def api_users(user: Admin) -> dict[str, Any]:
        """The console's users and their roles (managed with `contactcenter users`)."""
        return {
            "users": [
                {"username": u.username, "display_name": u.display_name, "role": u.role, "active": u.active}
                for u in accounts.users()
            ]
        }
