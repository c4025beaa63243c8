"""The admin pages: the service-script rules in force (switch a rule off, change its severity, weight or
phrases, put it back as the file has it, and the history of changes), the plugins with their delivery
health, and the console's users.

Rule changes are kept in the database (``speech/rule_book.py``), so every desk follows them from its next call.
Plugins are installed with pip and enabled in settings.toml on each desk machine; the console shows what is
installed and enabled and what each plugin has failed to take, but does not load or run them.

No `from __future__ import annotations`: FastAPI reads the route signatures.
"""

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Body, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contactcenter.hooks.host import describe_plugins
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
from contactcenter.storage.access_log import access_entries
from contactcenter.storage.database import Database
from contactcenter.storage.models import OutboxMessage, UndeliveredEvent
from contactcenter.web.auth import Accounts, SignedIn
from contactcenter.web.exports import csv_response
from contactcenter.web.guards import MAX_TEXT, NO_NUL, TEMPLATES, Blank, Day, Guards, Text, explain
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

    def access_view(since: date | None, until: date | None, username: str, limit: int) -> list[dict[str, Any]]:
        start = datetime.combine(since, time(), zone) if since else None
        end = datetime.combine(until + timedelta(days=1), time(), zone) if until else None
        with database.session() as session:
            rows = access_entries(session, start, end, username or None, limit)
            return [
                {
                    "at": local_time(r.at, zone),
                    "username": r.username,
                    "role": r.role,
                    "address": r.address,
                    "action": r.action,
                    "target": r.target,
                }
                for r in rows
            ]

    @app.get("/api/admin/access-log", tags=["admin"])
    def api_access_log(
        user: Admin,
        since: Annotated[Blank[Day], Query()] = None,
        until: Annotated[Blank[Day], Query()] = None,
        username: Annotated[Text, Query()] = "",
        limit: Annotated[int, Query(ge=1, le=ACCESS_LOG_LIMIT)] = 500,
    ) -> dict[str, Any]:
        """Who read which call, recording, customer or export, newest first (local days ``since``..``until``).
        The log can be read and exported, never changed, from the console."""
        return {"entries": access_view(since, until, username, limit)}

    @app.get("/api/admin/access-log.csv", tags=["admin"])
    def export_access_log(
        user: Admin,
        since: Annotated[Blank[Day], Query()] = None,
        until: Annotated[Blank[Day], Query()] = None,
        username: Annotated[Text, Query()] = "",
    ) -> Response:
        """The access log as CSV (at most :data:`ACCESS_LOG_LIMIT` rows, newest first)."""
        rows = access_view(since, until, username, ACCESS_LOG_LIMIT)
        columns = ["at", "username", "role", "address", "action", "target"]
        return csv_response(f"access-log-{datetime.now(zone):%Y%m%d}.csv", (columns, rows))

    @app.get("/api/admin/users", tags=["admin"])
    def api_users(user: Admin) -> dict[str, Any]:
        """The console's users and their roles (managed with `contactcenter users`)."""
        return {
            "users": [
                {"username": u.username, "display_name": u.display_name, "role": u.role, "active": u.active}
                for u in accounts.users()
            ]
        }
