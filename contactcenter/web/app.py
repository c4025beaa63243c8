"""The reviewer console: server-rendered pages in Chinese for people, the same data as JSON for programs.

Every route states the role it needs (``reviewer`` < ``supervisor`` < ``admin``); without a session the
API answers 401 and a page answers 401 with the sign-in form. Writes (sign-out, reviews) need the session's
CSRF token: a form field on pages, the ``X-CSRF-Token`` header on the API. The OpenAPI schema is at
``/api/openapi.json`` (and browsable at ``/api/docs``).

Every value from outside is bounded before it reaches the store (``guards.py``): a refused one is a 422 with
the reason, as JSON for programs and as a Chinese page for a browser, like 403 and 404; an unhandled error is
a 500 the same way, with nothing of the exception in it (``server_error``). Every response carries the security
headers (``SecurityHeaders``, and ``server_error`` for the 500): a Content-Security-Policy that runs only the
pages' own scripts and styles (by a per-response nonce), no framing, no MIME sniffing, no referrer, and no
caching of what holds customers' data.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures, and the role and filter
# dependencies are local names it could not resolve from strings.

import logging
import math
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contactcenter.settings import Settings
from contactcenter.speech.rules import load_rules
from contactcenter.storage.database import Database
from contactcenter.storage.models import Agent, Call
from contactcenter.storage.review_queue import QueueError, next_in_queue, open_task, raise_dispute
from contactcenter.storage.reviews import ReviewRefused
from contactcenter.storage.reviews import save_review as store_review
from contactcenter.vocabulary import Vocabulary
from contactcenter.web.access import AccessLogger
from contactcenter.web.admin import add_admin_routes
from contactcenter.web.auth import Accounts, SignedIn
from contactcenter.web.customers import add_customer_routes
from contactcenter.web.guards import (
    COOKIE,
    MAX_TEXT,
    NO_NUL,
    TEMPLATES,
    Blank,
    Day,
    Guards,
    NotSignedIn,
    PathId,
    Score,
    Text,
    explain,
)
from contactcenter.web.live import add_live_routes
from contactcenter.web.qa_report import add_qa_report_routes
from contactcenter.web.queries import SORTS, CallFilter, agent_label, call_detail, decode_cursor, list_calls
from contactcenter.web.reports import add_report_routes
from contactcenter.web.review_pages import add_review_routes
from contactcenter.web.wallboard import add_wallboard_routes

log = logging.getLogger(__name__)
MAX_COMMENT = 4000
MAX_PAGES = 100_000  # a page number past this is no page of any list
MAX_VERDICTS = 200
CURSOR = r"^\d{1,12}(\.\d{1,6})?_\d{1,19}$"  # what encode_cursor writes: seconds_id


class ReviewIn(BaseModel):
    verdicts: dict[Annotated[str, Field(max_length=MAX_TEXT, pattern=NO_NUL)], Literal["agree", "disagree"]] = Field(
        default_factory=dict, max_length=MAX_VERDICTS
    )
    # why, for each rule the reviewer disagreed with (the verdict they override)
    reasons: dict[
        Annotated[str, Field(max_length=MAX_TEXT, pattern=NO_NUL)],
        Annotated[str, Field(max_length=500, pattern=NO_NUL)],
    ] = Field(default_factory=dict, max_length=MAX_VERDICTS)
    comment: str = Field(default="", max_length=MAX_COMMENT, pattern=NO_NUL)


class SignInIn(BaseModel):
    username: str = Field(max_length=256)
    password: str = Field(max_length=1024)  # a megabyte "password" is not hashed


# --------------------------------------------------------------------------------------- security headers

PAGE_POLICY = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
    "img-src 'self' data:; media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# The OpenAPI browser (/api/docs) is FastAPI's Swagger UI page: its script and styles come from jsDelivr and
# it starts with an inline script. It shows no one's data; the policy still keeps it out of frames.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' https://cdn.jsdelivr.net 'unsafe-inline'; "
    "style-src 'self' https://cdn.jsdelivr.net 'unsafe-inline'; img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATH = "/api/docs"


def security_headers(path: str, nonce: str) -> dict[str, str]:
    """The headers every console response carries (``SecurityHeaders``, and the 500 answer, which Starlette
    sends from outside every middleware): one list, so the two cannot drift apart. Cache-Control is the
    default a response that sets its own keeps."""
    return {
        "Content-Security-Policy": DOCS_POLICY if path == DOCS_PATH else PAGE_POLICY.format(nonce=nonce),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


class SecurityHeaders:
    """Adds the security headers to every response (pages, API answers, downloads, event streams).

    Each response gets a fresh nonce in ``request.state.csp_nonce``; the templates put it on their own
    ``<script>`` and ``<style>`` elements, so only those run. Nothing the console sends may be cached: every
    page and most answers carry customers' numbers, transcripts or recordings (a response that sets its own
    Cache-Control keeps it). A pure ASGI middleware, so the event streams pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        secure = security_headers(scope.get("path", ""), nonce)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in secure.items():
                    if name != "Cache-Control" or "cache-control" not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


# ------------------------------------------------------------------------------------------ error pages

ERROR_TITLES = {
    400: "请求有误",
    403: "没有权限",
    404: "找不到该页面或记录",
    405: "不支持该操作",
    409: "操作冲突",
    413: "内容过大",
    422: "输入有误",
    500: "服务器出错",
}
SERVER_ERROR = "服务器内部出错,这次操作没有完成。请稍后重试;如果一再出现,请联系管理员(详情已记入服务器日志)。"
# The API's English reasons as a person reads them on a page.
ERROR_DETAILS = {
    "no such call": "没有这通电话",
    "no such customer": "没有这位客户",
    "no recording": "这通电话没有录音",
    "missing or wrong CSRF token": "页面已过期,请刷新后重试",
    "since is after until": "开始日期晚于结束日期",
    "at most 366 days at a time": "一次最多查询 366 天",
    "no such page of the access log": "翻页位置已失效,请从第一页开始",
    "Not Found": "地址不存在",
    "Method Not Allowed": "不支持该操作",
}


def wants_page(request: Request) -> bool:
    """A person's browser (a page, or a download link followed from one) rather than a program: pages are
    answered with pages, and under /api/ so is a request that asks for HTML."""
    return not request.url.path.startswith("/api/") or "text/html" in request.headers.get("accept", "")


def error_page(request: Request, status_code: int, message: str) -> Response:
    back = request.url.path if request.method == "GET" and status_code == 422 else "/calls"
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {"status": status_code, "title": ERROR_TITLES.get(status_code, "出错了"), "message": message, "back": back},
        status_code=status_code,
    )


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity written as text: JSON has no such numbers, and echoing a refused
    NaN back in the 422 must not fail."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def server_error(request: Request) -> Response:
    """The answer to an unhandled exception: the Chinese error page (JSON for a program) with nothing of the
    exception in it, and the security headers set here.

    Starlette sends this answer from its outermost layer (``ServerErrorMiddleware``), outside every middleware
    the app adds, so ``SecurityHeaders`` never sees it; the page uses the nonce that middleware already put
    in the request's state. The exception itself goes on to the server's log (Starlette raises it again)."""
    nonce = getattr(request.state, "csp_nonce", "") or secrets.token_urlsafe(18)
    request.state.csp_nonce = nonce
    response: Response
    try:
        if wants_page(request):
            response = error_page(request, 500, SERVER_ERROR)
        else:
            response = JSONResponse({"detail": "internal server error"}, status_code=500)
    except Exception:  # the page itself failed: still no trace, still the headers
        log.exception("the error page for %s could not be rendered", request.url.path)
        response = PlainTextResponse(SERVER_ERROR, status_code=500)
    response.headers.update(security_headers(request.url.path, nonce))
    return response


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> Response:
        return server_error(request)

    @app.exception_handler(RequestValidationError)
    async def refused_input(request: Request, exc: RequestValidationError) -> Response:
        if wants_page(request):
            return error_page(request, 422, explain(exc.errors()))
        return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_page(request) and exc.status_code in ERROR_TITLES:
            detail = str(exc.detail)
            needed = re.fullmatch(r"needs the (\w+) role", detail)
            if exc.status_code == 403 and needed:
                role = request.app.state.vocabulary.name("role", needed[1])
                detail = f"您的角色不能查看此页面:需要{role}或更高的角色"
            return error_page(request, exc.status_code, ERROR_DETAILS.get(detail, detail))
        return await http_exception_handler(request, exc)


def console_vocabulary(settings: Settings) -> Vocabulary:
    """The vocabulary with the rules' descriptions as their names. A rules file that cannot be read leaves
    the rules named by id (the admin page says what is wrong with it); the console still opens."""
    names = Vocabulary.load(settings.scripts.vocabulary)
    try:
        rules = load_rules(settings.scripts.rules, settings.company.names_said)
    except Exception as exc:  # any fault of the file: the pages must still open
        log.warning("rules file unusable, rules are shown by id: %s", exc)
        return names
    return names.with_rules({rule.id: rule.spec.description for rule in rules.rules})


def create_app(settings: Settings, database: Database) -> FastAPI:
    web = settings.web
    zone = ZoneInfo(settings.general.timezone)
    accounts = Accounts.for_console(database, web)  # with [web]'s sign-in throttle
    complaint_categories = tuple(settings.callbacks.complaint_categories)
    app = FastAPI(
        title="contactcenter reviewer console",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.accounts = accounts
    app.state.vocabulary = console_vocabulary(settings)
    app.add_middleware(AccessLogger, database=database)
    app.add_middleware(SecurityHeaders)
    add_error_handlers(app)

    guards = Guards(accounts, web.unmasked_roles)
    Reviewer = Annotated[SignedIn, Depends(guards.role("reviewer"))]
    check_csrf, unmasked = guards.check_csrf, guards.unmasked

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "not signed in"}, status_code=401)
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")  # back to the same view
        return TEMPLATES.TemplateResponse(request, "login.html", {"next": wanted, "error": ""}, status_code=401)

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
        """Sign in from the form: a wrong password is 401, a locked name or address or a full server 429, with
        the reason in Chinese on the form (the same for a user name that does not exist)."""
        result = accounts.attempt(username, password, request.client.host if request.client else "")
        token = result.token
        if token is None:
            refused = TEMPLATES.TemplateResponse(
                request,
                "login.html",
                {"next": next, "error": result.message},
                status_code=result.status_code,
            )
            if result.retry_after_s:
                refused.headers["Retry-After"] = str(result.retry_after_s)
            return refused
        response = RedirectResponse(
            next if next.startswith("/") and not next.startswith(("//", "/\\")) else "/calls", status_code=303
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
        since: Blank[Day] = None,
        until: Blank[Day] = None,
        agent: Text | None = None,
        score_min: Blank[Score] = None,
        score_max: Blank[Score] = None,
        rule_failed: Text | None = None,
        category: Text | None = None,
        complaint: Blank[bool] = None,
        reviewed: Blank[bool] = None,
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
            reviewed=reviewed,
            complaint_categories=complaint_categories,
        )

    Filter = Annotated[CallFilter, Depends(call_filter)]
    Sort = Annotated[Literal[SORTS], Query(description="time, score or duration; _asc for lowest first")]  # type: ignore[valid-type]
    PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGES)]

    def page_cursor(cursor: Annotated[str | None, Query(max_length=40, pattern=CURSOR)] = None) -> str | None:
        """The next-page cursor as ``next_cursor`` gave it; 422 for one that points nowhere."""
        if cursor and decode_cursor(cursor) is None:
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("query", "cursor"), "msg": "Value error, not a page of this list"}]
            )
        return cursor or None

    Cursor = Annotated[str | None, Depends(page_cursor)]

    @app.get("/calls", response_class=HTMLResponse, include_in_schema=False)
    def calls_page(
        request: Request, user: Reviewer, where: Filter, sort: Sort = "time", page: PageNumber = 1
    ) -> Response:
        """The calls list: numbered pages (so a reviewer can go back), the total, any order."""
        size = web.page_size
        with database.session() as session:
            found = list_calls(
                session, where, zone, unmasked(user), size, sort=sort, offset=(page - 1) * size, count=True
            )
            agents = session.execute(select(Agent.extension, Agent.name).order_by(Agent.extension)).all()
        total = found.total or 0
        pages = max(1, math.ceil(total / size))
        query = where.as_query()

        def link(to_page: int, to_sort: str = sort) -> str:
            return "/calls?" + urlencode({**query, "sort": to_sort, "page": to_page})

        return TEMPLATES.TemplateResponse(
            request,
            "calls.html",
            {
                "user": user,
                "rows": found.rows,
                "where": where,
                "sort": sort,
                "page": page,
                "pages": pages,
                "total": total,
                "first_row": (page - 1) * size + 1 if found.rows else 0,
                "previous_link": link(page - 1) if page > 1 else "",
                "next_link": link(page + 1) if page < pages else "",
                "sort_link": lambda to_sort: link(1, to_sort),
                "agents": [{"extension": ext, "label": agent_label(name, ext)} for ext, name in agents],
                "export_query": urlencode(query),
            },
        )

    def call_view(
        request: Request,
        call_id: int,
        user: SignedIn,
        error: str = "",
        typed: dict[str, Any] | None = None,
        status_code: int = 200,
    ) -> Response:
        """The call's page; after a refused review, with the reason and the comment and verdicts as typed.
        Opening a call in one's queue puts its task in review."""
        with database.session() as session:
            detail = call_detail(session, call_id, zone, unmasked(user))
            if detail is not None:
                open_task(session, call_id, user.user_id)
            queue_next = next_in_queue(session, user.user_id, call_id)
        if detail is None:
            raise HTTPException(status_code=404, detail="no such call")
        return TEMPLATES.TemplateResponse(
            request,
            "call.html",
            {
                "user": user,
                "d": detail,
                "saved": False,
                "error": error,
                "typed": typed or {},
                "queue_next": queue_next,
            },
            status_code=status_code,
        )

    @app.get("/calls/{call_id}", response_class=HTMLResponse, include_in_schema=False)
    def call_page(request: Request, call_id: PathId, user: Reviewer) -> Response:
        return call_view(request, call_id, user)

    @app.post("/calls/{call_id}/review", include_in_schema=False)
    async def review_form(request: Request, call_id: PathId, user: Reviewer) -> Response:
        form = await request.form()
        check_csrf(user, str(form.get("csrf", "")))
        verdicts: dict[str, Literal["agree", "disagree"]] = {
            key[len("verdict_") :]: "agree" if value == "agree" else "disagree"
            for key, value in form.items()
            if key.startswith("verdict_") and value in ("agree", "disagree")
        }
        comment = str(form.get("comment", ""))
        reasons = {
            key[len("reason_") :]: str(value)
            for key, value in form.items()
            if key.startswith("reason_") and str(value).strip() and verdicts.get(key[len("reason_") :]) == "disagree"
        }
        typed = {"comment": comment, "verdicts": verdicts, "reasons": reasons}
        try:
            review = ReviewIn(verdicts=verdicts, reasons=reasons, comment=comment)
        except ValidationError as exc:  # shown on the form with what was typed: nothing is lost
            return call_view(request, call_id, user, f"未保存:{explain(exc.errors())}", typed, 422)
        try:
            save_review(call_id, user, review)
        except ReviewRefused as refused:  # an empty review, a rule the call has no finding for
            return call_view(request, call_id, user, f"未保存:{refused}", typed, 422)
        if form.get("then") == "next":
            return RedirectResponse(f"/queue/next?after={call_id}", status_code=303)
        return RedirectResponse(f"/calls/{call_id}#reviews", status_code=303)

    @app.post("/calls/{call_id}/disputes", include_in_schema=False)
    async def dispute_form(request: Request, call_id: PathId, user: Reviewer) -> Response:
        """A dispute raised in the console on an agent's behalf (the agent's desktop raises its own); a
        refusal is shown on the call's page with the reason as typed, so nothing is lost."""
        form = await request.form()
        check_csrf(user, str(form.get("csrf", "")))
        rule_id, reason = str(form.get("rule_id", ""))[:100], str(form.get("reason", ""))[:4000]
        try:
            with database.session() as session:
                if session.get(Call, call_id) is None:
                    raise HTTPException(status_code=404, detail="no such call")
                raise_dispute(session, call_id, rule_id, user.display_name or user.username, reason)
        except QueueError as refused:
            typed = {"dispute_rule": rule_id, "dispute_reason": reason}
            return call_view(request, call_id, user, f"申诉未提交:{refused}", typed, 422)
        return RedirectResponse(f"/calls/{call_id}#disputes", status_code=303)

    @app.get("/calls/{call_id}/recording", include_in_schema=False)
    def recording(call_id: PathId, user: Reviewer) -> Response:
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
    def api_login(request: Request, body: SignInIn) -> Response:
        """Sign in; the session cookie is set and the CSRF token for writes is returned. Too many failures for
        the user name or the address answer 429 with Retry-After (so does a burst that finds no free slot)."""
        result = accounts.attempt(body.username, body.password, request.client.host if request.client else "")
        token = result.token
        if token is None:
            if result.status_code == 429:
                return JSONResponse(
                    {"detail": result.message}, status_code=429, headers={"Retry-After": str(result.retry_after_s)}
                )
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
        user: Reviewer,
        where: Filter,
        cursor: Cursor,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        sort: Sort = "time",
        page: PageNumber = 1,
    ) -> dict[str, Any]:
        """Calls, filtered, with the total the filter matches. Newest first by default, where
        ``next_cursor`` fetches the next page (stable while calls are added); any other ``sort`` is paged by
        ``page`` (1, 2, …) of ``limit`` calls."""
        offset = 0 if cursor else (page - 1) * limit
        with database.session() as session:
            found = list_calls(
                session, where, zone, unmasked(user), limit, cursor, sort=sort, offset=offset, count=True
            )
        return {"calls": found.rows, "next_cursor": found.next_cursor, "total": found.total}

    @app.get("/api/calls/{call_id}", tags=["calls"])
    def api_call(call_id: PathId, user: Reviewer) -> dict[str, Any]:
        """One call: metadata, transcript by leg with highlighted findings (``end_s``: where a finding that is a
        stretch of the call ends, null for a moment), tickets, callbacks, reviews, and ``conversation``: how the
        call was talked (seconds of talk per leg, overlap, non-talk, hold, dead air; interruptions; the agent's
        characters per minute; ``talk_ratio``, the agent's share of the talk time in percent), each null when
        not known, or null altogether when the call's audio was never analysed."""
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
            "conversation": detail.conversation,
            "has_recording": bool(detail.recording),
        }

    def save_review(call_id: int, user: SignedIn, review: ReviewIn) -> int:
        """Store the review and the call's reviewed score (storage/reviews.py); ReviewRefused says why not."""
        with database.session() as session:
            if session.get(Call, call_id) is None:
                raise HTTPException(status_code=404, detail="no such call")
            return store_review(
                session, call_id, user.user_id, dict(review.verdicts), review.comment, dict(review.reasons)
            )

    @app.post("/api/calls/{call_id}/reviews", tags=["calls"], status_code=201)
    def api_review(request: Request, call_id: PathId, review: ReviewIn, user: Reviewer) -> dict[str, Any]:
        """Store the signed-in reviewer's verdict (agree/disagree per rule) and comment on a call."""
        check_csrf(user, request.headers.get("X-CSRF-Token"))
        try:
            return {"id": save_review(call_id, user, review)}
        except ReviewRefused as refused:
            raise HTTPException(status_code=422, detail=str(refused)) from None

    add_report_routes(app, guards, settings, database, call_filter)
    add_live_routes(app, guards, settings, database)
    add_wallboard_routes(app, guards, settings, database)
    add_admin_routes(app, guards, settings, database, accounts)
    add_customer_routes(app, guards, settings, database)
    add_review_routes(app, guards, settings, database)
    add_qa_report_routes(app, guards, settings, database)

    return app
