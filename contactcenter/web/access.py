"""Recording who read customers' data (PIPL): an ASGI middleware that notes every successful read of a call
(page or API), a recording, a customer record or search, and every export, with the signed-in user (which the
route's guard leaves in ``request.state.user``), the client address and the path with its query.

A failure to write the log is logged and does not refuse the read: the store being slow or down must not take
the console with it (the same rule as for calls).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contactcenter.storage.access_log import Access, note_access
from contactcenter.storage.database import Database

log = logging.getLogger(__name__)

#: What counts as reading personal data, by path: the action each is logged as.
ACCESSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/(api/)?calls/\d+$"), "call"),
    (re.compile(r"^/calls/\d+/recording$"), "recording"),
    (re.compile(r"^/(api/)?customers/\d+$"), "customer"),
    (re.compile(r"^/(api/)?customers$"), "customers"),
    (re.compile(r"^/api/export/"), "export"),
    (re.compile(r"^/api/admin/access-log\.csv$"), "export"),  # the log's own export reads who read what
)


def action_of(path: str) -> str | None:
    """The action a GET of ``path`` is logged as, or None if it reads no personal data."""
    return next((action for pattern, action in ACCESSES if pattern.match(path)), None)


class AccessLogger:
    """Notes each successful GET of :data:`ACCESSES` after its answer has started."""

    def __init__(self, app: ASGIApp, database: Database) -> None:
        self.app = app
        self.database = database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        action = action_of(scope.get("path", "")) if scope["type"] == "http" and scope.get("method") == "GET" else None
        if action is None:
            await self.app(scope, receive, send)
            return

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                user = scope.get("state", {}).get("user")
                if user is not None:
                    await anyio.to_thread.run_sync(self._note, scope, user.username, user.role, action)
            await send(message)

        await self.app(scope, receive, noting)

    def _note(self, scope: Scope, username: str, role: str, action: str) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope.get("path", "") + (f"?{query}" if query else "")
        client = scope.get("client")
        access = Access(username, role, client[0] if client else "", action, target)
        try:
            with self.database.session() as session:
                note_access(session, access, datetime.now(UTC))
        except Exception:
            log.exception("access by %r to %s could not be logged", username, target)
