"""One scheduler per database: a lease row, held while renewed, taken over once it expires.

APScheduler 3 says job stores must never be shared between schedulers. A second ``contactcenter
scheduler`` (or a desk with ``scheduler_in_desk``) against the same database therefore waits on standby and
takes over only when the holder has stopped renewing (it died, or lost the database). Written as plain
conditional UPDATEs so it works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError, OperationalError

from contactcenter.storage.database import Database, rows_changed
from contactcenter.storage.models import SchedulerLease

LEASE_NAME = "callbacks"


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Lease:
    def __init__(self, database: Database, seconds: float, holder: str | None = None) -> None:
        self.database = database
        self.seconds = seconds
        self.holder = holder or holder_name()

    def acquire(self) -> bool:
        """Take or renew the lease; False while another live holder has it (or the database is down)."""
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.seconds)
        try:
            with self.database.session() as session:
                changed = rows_changed(
                    session,
                    update(SchedulerLease)
                    .where(
                        SchedulerLease.name == LEASE_NAME,
                        or_(SchedulerLease.holder == self.holder, SchedulerLease.expires_at < now),
                    )
                    .values(holder=self.holder, expires_at=expires),
                )
                if changed == 1:
                    return True
                if session.get(SchedulerLease, LEASE_NAME) is not None:
                    return False
                session.add(SchedulerLease(name=LEASE_NAME, holder=self.holder, expires_at=expires, acquired_at=now))
            return True
        except IntegrityError:
            return False  # another process inserted the row in the same instant
        except OperationalError:
            return False

    def current_holder(self) -> str | None:
        """Who holds the lease now (None: nobody, or it has expired)."""
        try:
            with self.database.session() as session:
                row = session.get(SchedulerLease, LEASE_NAME)
                return row.holder if row is not None and row.expires_at > datetime.now(UTC) else None
        except OperationalError:
            return "nobody known: the database cannot be reached"

    def release(self) -> None:
        """Let a standby take over at once (a clean stop)."""
        try:
            with self.database.session() as session:
                session.execute(
                    update(SchedulerLease)
                    .where(SchedulerLease.name == LEASE_NAME, SchedulerLease.holder == self.holder)
                    .values(expires_at=datetime(1970, 1, 1, tzinfo=UTC))
                )
        except OperationalError:
            pass
