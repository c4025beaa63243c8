"""The agent's page, served by `contactcenter run` itself on loopback: it holds the call, so it can control it.

Opening it needs the token `run` prints with the address (``/?token=…``): the page then keeps a session
cookie (HttpOnly, SameSite=Strict) and the address bar loses the token. Every change (a POST) also needs the
page's own CSRF value in ``X-Desk-Token``, which another site's form cannot send. The page gets a fresh
snapshot of the desk on every change as server-sent events (``/api/events``); the actions are small JSON
POSTs. Errors are one line of Chinese in ``{"detail": …}`` (with ``errors`` per form field), never a trace; a
page's error is that line on a small page, and an unhandled error says nothing of the exception.

Every answer (the page, the API, the event stream, every refusal and the 500) carries the console's security
headers (``contactcenter.web.app.security_headers``, one list for both): a Content-Security-Policy that runs
only the page's own script and style (by a per-response nonce), no framing, no MIME sniffing, no referrer,
and nothing cached: the page holds callers' numbers, names and what they said.

No `from __future__ import annotations`: FastAPI reads the route signatures.
"""

import asyncio
import hmac
import html
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contactcenter.desktop.service import AgentDesktop, DesktopError
from contactcenter.web.app import security_headers

log = logging.getLogger(__name__)
COOKIE = "cc_desk"
KEEPALIVE_SECONDS = 15.0
FAILED = "操作失败,请重试(详情见坐席端日志)"
CHINESE = re.compile(r"[\u4e00-\u9fff]")
# Starlette's own refusals (an unknown address, a wrong method) are English: the agent reads these instead.
REFUSALS = {404: "地址不存在", 405: "不支持该操作"}


def desk_headers(nonce: str) -> dict[str, str]:
    """The security headers of every desktop answer: the console's, with the policy of its pages (the desktop
    has no API browser, so no answer needs the console's looser policy for one)."""
    return security_headers("/", nonce)


class DeskSecurityHeaders:
    """Adds :func:`desk_headers` to every answer, with a fresh nonce per request in ``request.state.csp_nonce``
    (the page puts it on its own <script> and <style>). Nothing the desktop sends may be cached, so
    Cache-Control is always ``no-store``. A pure ASGI middleware, so the event stream passes through
    untouched.

    It also answers an unhandled error (:func:`server_error`), here rather than from Starlette's outermost
    layer: the 500 gets the same headers, the error is logged once, and the browser's connection stays open
    (uvicorn drops it after an error that reaches it). An error once the answer has begun (the event stream)
    can only end the connection, so it goes on to uvicorn."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        secure = desk_headers(nonce)
        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in secure.items():
                    headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except Exception:
            if started:
                raise
            log.exception("desktop request %s %s failed", scope.get("method"), scope.get("path"))
            await server_error(scope.get("path", ""))(scope, receive, with_headers)


def server_error(path: str) -> Response:
    """The answer to an unhandled error: one line of Chinese, as JSON for the API and as a page otherwise,
    with nothing of the exception in it (that is in the log)."""
    if path.startswith("/api/"):
        return JSONResponse({"detail": FAILED}, status_code=500)
    return error_page(FAILED, 500)


def _csp_nonce(request: Request) -> dict[str, Any]:
    return {"csp_nonce": getattr(request.state, "csp_nonce", "")}


TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"), context_processors=[_csp_nonce])


def error_page(message: str, status_code: int, headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """A refusal or failure as the browser shows it: the one line, on a page of its own (no script, no style)."""
    return HTMLResponse(
        '<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>坐席工作台</title>'
        f"<p>{html.escape(message)}</p></html>",
        status_code,
        headers=headers,
    )


class DeskTokens:
    """The sign-in token `run` prints, the session cookies it was exchanged for, and their CSRF values."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self._sessions: dict[str, str] = {}  # cookie -> csrf
        self._lock = threading.Lock()

    def exchange(self, token: str | None) -> str | None:
        """A new session cookie for the right token; None otherwise."""
        if not token or not hmac.compare_digest(token, self.token):
            return None
        cookie = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[cookie] = secrets.token_urlsafe(24)
            while len(self._sessions) > 32:  # a few browsers at most; the oldest goes
                self._sessions.pop(next(iter(self._sessions)))
        return cookie

    def csrf(self, cookie: str | None) -> str | None:
        with self._lock:
            return self._sessions.get(cookie or "")


def create_desktop_app(desktop: AgentDesktop, tokens: DeskTokens) -> FastAPI:
    """The agent's page and its JSON API for one desk."""
    settings = desktop.settings
    app = FastAPI(title="contactcenter agent desktop", openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(DeskSecurityHeaders)

    def session(request: Request) -> str:
        csrf = tokens.csrf(request.cookies.get(COOKIE))
        if csrf is None:
            raise HTTPException(401, "请用 contactcenter run 打印的链接打开坐席工作台")
        return csrf

    def change(request: Request, csrf: Annotated[str, Depends(session)]) -> None:
        sent = request.headers.get("x-desk-token", "")
        if not hmac.compare_digest(sent, csrf):
            raise HTTPException(403, "页面已过期,请刷新")

    Signed = Depends(session)
    Change = Depends(change)

    @app.exception_handler(DesktopError)
    async def desktop_error(_: Request, exc: DesktopError) -> Response:
        return JSONResponse({"detail": exc.message, "errors": exc.errors}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> Response:
        errors = {str(e["loc"][-1]): "内容无效" for e in exc.errors() if e.get("loc")}
        return JSONResponse({"detail": "请求内容无效", "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = str(exc.detail)
        if not CHINESE.search(detail):  # Starlette's own "Not Found", "Method Not Allowed"
            detail = REFUSALS.get(exc.status_code, "请求无法处理")
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)
        return error_page(detail, exc.status_code, exc.headers)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> Response:
        """Only for an error :class:`DeskSecurityHeaders` itself did not catch (Starlette answers it from
        outside every middleware): the same answer, with the headers set here."""
        log.error("desktop request %s %s failed", request.method, request.url.path, exc_info=exc)
        response = server_error(request.url.path)
        response.headers.update(desk_headers(getattr(request.state, "csp_nonce", "") or secrets.token_urlsafe(18)))
        return response

    # ------------------------------------------------------------------------------------------ the page

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, token: str | None = None) -> Response:
        if token is not None:
            cookie = tokens.exchange(token)
            if cookie is None:
                raise HTTPException(401, "链接无效:请用 contactcenter run 打印的链接打开坐席工作台")
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict")
            return response
        csrf = session(request)
        return TEMPLATES.TemplateResponse(
            request,
            "desk.html",
            {
                "csrf": csrf,
                "extension": settings.sip.user,
                "company": settings.company.name,
                "reasons": settings.agent.not_ready_reasons,
                "categories": settings.agent.categories,
                "required": settings.agent.required_fields,
                "script": desktop.hub.suggestions.lines,
                "script_panel": desktop.hub.suggestions.panel(),
                "apology_after_rings": settings.ring.apology_after_rings,
                "timezone": settings.general.timezone,
                "service_categories": settings.callbacks.service_categories,
                "complaint_categories": settings.callbacks.complaint_categories,
                "names": desktop.hub.page_names(),
            },
        )

    @app.get("/api/snapshot")
    def snapshot(_: Annotated[str, Signed]) -> dict[str, Any]:
        return desktop.hub.snapshot()

    @app.get("/api/events")
    async def events(request: Request, _: Annotated[str, Signed]) -> StreamingResponse:
        hub = desktop.hub
        queue = hub.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield f"data: {json.dumps(hub.snapshot(), ensure_ascii=False)}\n\n"
                while not await request.is_disconnected():
                    try:
                        snapshot = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_SECONDS)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"data: {json.dumps(snapshot, ensure_ascii=False)}\n\n"
            finally:
                hub.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    # -------------------------------------------------------------------------------------- the agent

    @app.post("/api/agent/ready", dependencies=[Change])
    def ready() -> dict[str, Any]:
        desktop.set_ready()
        return desktop.hub.snapshot()["agent"]

    @app.post("/api/agent/not-ready", dependencies=[Change])
    def not_ready(reason: Annotated[str, Body(embed=True, max_length=32)]) -> dict[str, Any]:
        desktop.set_not_ready(reason)
        return desktop.hub.snapshot()["agent"]

    # --------------------------------------------------------------------------------------- the call

    @app.post("/api/call/answer", dependencies=[Change])
    def answer(sip_call_id: Annotated[str | None, Body(embed=True, max_length=255)] = None) -> dict[str, bool]:
        desktop.answer(sip_call_id)
        return {"ok": True}

    @app.post("/api/call/mute", dependencies=[Change])
    def mute(on: Annotated[bool, Body(embed=True)]) -> dict[str, bool]:
        desktop.mute(on)
        return {"ok": True}

    @app.post("/api/call/hold", dependencies=[Change])
    def hold(on: Annotated[bool, Body(embed=True)]) -> dict[str, bool]:
        desktop.hold(on)
        return {"ok": True}

    @app.post("/api/call/hangup", dependencies=[Change])
    def hang_up() -> dict[str, bool]:
        desktop.hang_up()
        return {"ok": True}

    @app.post("/api/call/dtmf", dependencies=[Change])
    def dtmf(digits: Annotated[str, Body(embed=True, max_length=32)]) -> dict[str, bool]:
        desktop.send_dtmf(digits)
        return {"ok": True}

    @app.post("/api/call/transfer", dependencies=[Change])
    async def transfer(target: Annotated[str, Body(embed=True, max_length=64)]) -> dict[str, bool]:
        await run_in_threadpool(desktop.transfer, target)
        return {"ok": True}

    # ------------------------------------------------------------------------------------- wrap-up

    @app.get("/api/wrap-up/{sip_call_id}")
    def wrap_up_form(sip_call_id: str, _: Annotated[str, Signed]) -> dict[str, Any]:
        return desktop.wrap_up_form(sip_call_id)

    @app.post("/api/wrap-up/{sip_call_id}", dependencies=[Change])
    def save_wrap_up(sip_call_id: str, form: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        return desktop.save_wrap_up(sip_call_id, form)

    # ----------------------------------------------------------------------------------- callbacks

    @app.get("/api/callbacks")
    def callbacks(_: Annotated[str, Signed]) -> dict[str, Any]:
        return desktop.callbacks()

    @app.post("/api/callbacks/{callback_id}/dial", dependencies=[Change])
    def dial(callback_id: int) -> dict[str, bool]:
        if not 0 < callback_id < 2**31:
            raise DesktopError("没有这个回访", 404)
        desktop.dial_callback(callback_id)
        return {"ok": True}

    # ----------------------------------------------------------------------------------- customers

    @app.get("/api/customer")
    def customer(phone: str, _: Annotated[str, Signed]) -> dict[str, Any]:
        return desktop.customer(phone[:64])

    @app.put("/api/customer", dependencies=[Change])
    def save_customer(phone: Annotated[str, Body(max_length=64)], values: Annotated[dict[str, Any], Body()]) -> Any:
        return desktop.save_customer(phone, values)

    # ------------------------------------------------------------------------ my findings, disputes

    @app.get("/api/my-findings")
    def my_findings(_: Annotated[str, Signed]) -> dict[str, Any]:
        return desktop.my_findings()

    @app.post("/api/disputes", dependencies=[Change])
    def dispute(
        call_id: Annotated[int, Body(embed=True)],
        rule_id: Annotated[str, Body(embed=True, max_length=100)],
        reason: Annotated[str, Body(embed=True, max_length=20_000)],
    ) -> dict[str, Any]:
        if not 0 < call_id < 2**31:
            raise DesktopError("只能对自己接听的通话申诉", 403)
        return desktop.dispute(call_id, rule_id, reason)

    return app


class DesktopServer:
    """The page's web server on its own thread inside `run` (uvicorn)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        import uvicorn

        # an open page's event stream never ends by itself: on stop, give it a second, then close it
        self.config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="agent-desktop", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; OSError with the address when it cannot listen (the port is taken)."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the agent desktop could not listen on {self.config.host}:{self.config.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
