"""The console's access log: who read which call, recording, customer or export, from where and when.

Rows are only ever added (:func:`note_access`) and read (:func:`access_entries`); nothing in the console edits
or deletes one. Fields are cut to their column widths and stripped of control characters, since the path
and the user name come from outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from contactcenter.storage.models import AccessLog


@dataclass(frozen=True)
class Access:
    """One read of personal data, as the console saw it."""

    username: str
    role: str
    address: str
    action: str
    target: str


def _printable(text: str, width: int) -> str:
    return "".join(c if c.isprintable() else "\ufffd" for c in text[:width])


def note_access(session: Session, access: Access, at: datetime) -> None:
    session.add(
        AccessLog(
            at=at,
            username=_printable(access.username, 64),
            role=_printable(access.role, 16),
            address=_printable(access.address, 64),
            action=_printable(access.action, 32),
            target=_printable(access.target, 300),
        )
    )


def access_entries(
    session: Session,
    since: datetime | None = None,
    until: datetime | None = None,
    username: str | None = None,
    limit: int = 500,
) -> list[AccessLog]:
    """The log, newest first, within ``[since, until)`` and of one user if given."""
    query = select(AccessLog).order_by(AccessLog.at.desc(), AccessLog.id.desc()).limit(limit)
    if since is not None:
        query = query.where(AccessLog.at >= since)
    if until is not None:
        query = query.where(AccessLog.at < until)
    if username:
        query = query.where(AccessLog.username == username)
    return list(session.scalars(query))
