"""The reviewer console: server-rendered pages in Chinese for people, the same data as JSON for programs.

Every route states the role it needs (``reviewer`` < ``supervisor`` < ``admin``); without a session the
API answers 401 and a page answers 401 with the sign-in form. Writes (sign-out, reviews) need the session's
CSRF token: a form field on pages, the ``X-CSRF-Token`` header on the API. The OpenAPI schema is at
``/api/openapi.json`` (and browsable at ``/api/docs``).
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures, and the role and filter
# dependencies are local names it could not resolve from strings.

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from contactcenter.settings import Settings
from contactcenter.storage.database import Database
from contactcenter.storage.models import Call, Review
from contactcenter.web.admin import add_admin_routes
from contactcenter.web.auth import Accounts, SignedIn
from contactcenter.web.customers import add_customer_routes
from contactcenter.web.guards import COOKIE, TEMPLATES, Blank, Guards, NotSignedIn
from contactcenter.web.live import add_live_routes
from contactcenter.web.queries import CallFilter, call_detail, list_calls
from contactcenter.web.reports import add_report_routes
from contactcenter.web.wallboard import add_wallboard_routes


class ReviewIn(BaseModel):
    verdicts: dict[str, Literal["agree", "disagree"]] = Field(default_factory=dict)
    comment: str = Field(default="", max_length=4000)


class SignInIn(BaseModel):
    username: str
    password: str


def create_app(settings: Settings, database: Database) -> FastAPI:
    web = settings.web
    zone = ZoneInfo(settings.general.timezone)
    accounts = Accounts(database, web.session_minutes)
    complaint_categories = tuple(settings.callbacks.complaint_categories)
    app = FastAPI(
        title="contactcenter reviewer console",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.accounts = accounts

    guards = Guards(accounts, web.unmasked_roles)
    Reviewer = Annotated[SignedIn, Depends(guards.role("reviewer"))]
    check_csrf, unmasked = guards.check_csrf, guards.unmasked

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "not signed in"}, status_code=401)
        return TEMPLATES.TemplateResponse(
            request, "login.html", {"next": request.url.path, "error": ""}, status_code=401
        )

    def start_session(response: Response, token: str) -> None:
        response.set_cookie(
            COOKIE, token, max_age=web.session_minutes * 60, httponly=True, samesite="lax", secure=web.secure_cookies
        )

    # --------------------------------------------------------------------------------------------- pages

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str = "/calls") -> Response:
        return TEMPLATES.TemplateResponse(request, "login.html", {"next": next, "error": ""})

    @app.post("/login", include_in_schema=False)
    def login_form(
        request: Request,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        next: Annotated[str, Form()] = "/calls",
    ) -> Response:
        token = accounts.sign_in(username, password)
        if token is None:
            return TEMPLATES.TemplateResponse(
                request, "login.html", {"next": next, "error": "用户名或密码错误"}, status_code=401
            )
        response = RedirectResponse(
            next if next.startswith("/") and not next.startswith("//") else "/calls", status_code=303
        )
        start_session(response, token)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout_form(request: Request, user: Reviewer, csrf: Annotated[str, Form()] = "") -> Response:
        check_csrf(user, csrf)
        accounts.sign_out(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("/calls", status_code=303)

    def call_filter(
        since: Blank[date] = None,
        until: Blank[date] = None,
        agent: str | None = None,
        score_min: Blank[float] = None,
        score_max: Blank[float] = None,
        rule_failed: str | None = None,
        category: str | None = None,
        complaint: Blank[bool] = None,
    ) -> CallFilter:
        return CallFilter(
            since=since,
            until=until,
            agent=agent or None,
            score_min=score_min,
            score_max=score_max,
            rule_failed=rule_failed or None,
            category=category or None,
            complaint=complaint,
            complaint_categories=complaint_categories,
        )

    Filter = Annotated[CallFilter, Depends(call_filter)]

    @app.get("/calls", response_class=HTMLResponse, include_in_schema=False)
    def calls_page(request: Request, user: Reviewer, where: Filter, cursor: str | None = None) -> Response:
        with database.session() as session:
            page = list_calls(session, where, zone, unmasked(user), web.page_size, cursor)
        query = where.as_query()
        next_link = f"/calls?{urlencode({**query, 'cursor': page.next_cursor})}" if page.next_cursor else ""
        return TEMPLATES.TemplateResponse(
            request,
            "calls.html",
            {"user": user, "rows": page.rows, "where": where, "next_link": next_link, "export_query": urlencode(query)},
        )

    @app.get("/calls/{call_id}", response_class=HTMLResponse, include_in_schema=False)
    def call_page(request: Request, call_id: int, user: Reviewer) -> Response:
        with database.session() as session:
            detail = call_detail(session, call_id, zone, unmasked(user))
        if detail is None:
            raise HTTPException(status_code=404, detail="no such call")
        return TEMPLATES.TemplateResponse(request, "call.html", {"user": user, "d": detail, "saved": False})

    @app.post("/calls/{call_id}/review", include_in_schema=False)
    async def review_form(request: Request, call_id: int, user: Reviewer) -> Response:
        form = await request.form()
        check_csrf(user, str(form.get("csrf", "")))
        verdicts: dict[str, Literal["agree", "disagree"]] = {
            key[len("verdict_") :]: "agree" if value == "agree" else "disagree"
            for key, value in form.items()
            if key.startswith("verdict_") and value in ("agree", "disagree")
        }
        save_review(call_id, user, ReviewIn(verdicts=verdicts, comment=str(form.get("comment", ""))))
        return RedirectResponse(f"/calls/{call_id}#reviews", status_code=303)

    @app.get("/calls/{call_id}/recording", include_in_schema=False)
    def recording(call_id: int, user: Reviewer) -> Response:
        with database.session() as session:
            call = session.get(Call, call_id)
            stored = call.recording_path if call is not None else ""
        if not stored:
            raise HTTPException(status_code=404, detail="no recording")
        root = Path(settings.general.data_dir).resolve()
        path = (root / stored).resolve()
        if root not in path.parents or not path.is_file():  # never serve outside the data folder
            raise HTTPException(status_code=404, detail="no recording")
        return FileResponse(path, media_type="audio/wav")

    # ----------------------------------------------------------------------------------------------- API

    @app.post("/api/login", tags=["session"])
    def api_login(body: SignInIn) -> Response:
        """Sign in; the session cookie is set and the CSRF token for writes is returned."""
        token = accounts.sign_in(body.username, body.password)
        if token is None:
            return JSONResponse({"detail": "wrong username or password"}, status_code=401)
        user = accounts.signed_in(token)
        if user is None:
            raise RuntimeError(f"the session just opened for {body.username!r} is not there")
        response = JSONResponse({"username": user.username, "role": user.role, "csrf_token": user.csrf_token})
        start_session(response, token)
        return response

    @app.post("/api/logout", tags=["session"])
    def api_logout(request: Request, user: Reviewer) -> Response:
        check_csrf(user, request.headers.get("X-CSRF-Token"))
        accounts.sign_out(request.cookies.get(COOKIE))
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(COOKIE)
        return response

    @app.get("/api/me", tags=["session"])
    def api_me(user: Reviewer) -> dict[str, Any]:
        """Who is signed in, with which role, and the CSRF token for writes."""
        return {
            "username": user.username,
            "display_name": user.display_name,
            "role": user.role,
            "csrf_token": user.csrf_token,
        }

    @app.get("/api/calls", tags=["calls"])
    def api_calls(
        user: Reviewer, where: Filter, cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> dict[str, Any]:
        """Calls, newest first, filtered; ``next_cursor`` fetches the next page."""
        with database.session() as session:
            page = list_calls(session, where, zone, unmasked(user), limit, cursor)
        return {"calls": page.rows, "next_cursor": page.next_cursor}

    @app.get("/api/calls/{call_id}", tags=["calls"])
    def api_call(call_id: int, user: Reviewer) -> dict[str, Any]:
        """One call: metadata, transcript by leg with highlighted findings, tickets, callbacks, reviews."""
        with database.session() as session:
            detail = call_detail(session, call_id, zone, unmasked(user))
        if detail is None:
            raise HTTPException(status_code=404, detail="no such call")
        utterances = [{k: v for k, v in u.items() if k != "segments"} for u in detail.utterances]
        return {
            "call": detail.call,
            "utterances": utterances,
            "findings": detail.findings,
            "tickets": detail.tickets,
            "callbacks": detail.callbacks,
            "reviews": detail.reviews,
            "has_recording": bool(detail.recording),
        }

    def save_review(call_id: int, user: SignedIn, review: ReviewIn) -> int:
        with database.session() as session:
            if session.get(Call, call_id) is None:
                raise HTTPException(status_code=404, detail="no such call")
            row = Review(call_id=call_id, reviewer_id=user.user_id, verdicts=review.verdicts, comment=review.comment)
            session.add(row)
            session.flush()
            return row.id

    @app.post("/api/calls/{call_id}/reviews", tags=["calls"], status_code=201)
    def api_review(request: Request, call_id: int, review: ReviewIn, user: Reviewer) -> dict[str, Any]:
        """Store the signed-in reviewer's verdict (agree/disagree per rule) and comment on a call."""
        check_csrf(user, request.headers.get("X-CSRF-Token"))
        return {"id": save_review(call_id, user, review)}

    add_report_routes(app, guards, settings, database, call_filter)
    add_live_routes(app, guards, settings, database)
    add_wallboard_routes(app, guards, settings, database)
    add_admin_routes(app, guards, settings, database, accounts)
    add_customer_routes(app, guards, settings, database)

    return app
