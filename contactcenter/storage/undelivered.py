"""Undelivered hook calls: kept in the database, or in a spool file when the database is down.

Nothing a plugin failed to take is lost: if even the database cannot take the record, it is appended to
``<data_dir>/spool/undelivered.jsonl`` and moved into the database on the next replay.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from contactcenter.storage.database import Database
from contactcenter.storage.models import UndeliveredEvent, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingEvent:
    id: int
    plugin: str
    hook: str
    payload: dict[str, Any]
    attempts: int


class UndeliveredLog:
    """Where failed hook calls wait for replay."""

    def __init__(self, database: Database | None, spool_dir: Path) -> None:
        self.database = database
        self.spool_file = spool_dir / "undelivered.jsonl"
        self._spool_lock = threading.Lock()

    def record(self, plugin: str, hook: str, payload: dict[str, Any], error: str) -> int | None:
        """Keep one failed hook call; returns its row id, or None when it went to the spool file."""
        if self.database is not None:
            try:
                with self.database.session() as session:
                    row = UndeliveredEvent(plugin=plugin, hook=hook, payload=payload, error=error)
                    session.add(row)
                    session.flush()
                    return row.id
            except SQLAlchemyError as exc:
                log.error("database unavailable, spooling undelivered %s for plugin %s: %s", hook, plugin, exc)
        self._spool(
            {"plugin": plugin, "hook": hook, "payload": payload, "error": error, "created_at": utcnow().isoformat()}
        )
        return None

    def _spool(self, entry: dict[str, Any]) -> None:
        with self._spool_lock:
            self.spool_file.parent.mkdir(parents=True, exist_ok=True)
            with self.spool_file.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def import_spool(self) -> int:
        """Move spooled entries into the database; returns how many were moved."""
        if self.database is None or not self.spool_file.exists():
            return 0
        with self._spool_lock:
            lines = [line for line in self.spool_file.read_text(encoding="utf-8").splitlines() if line.strip()]
            entries = [json.loads(line) for line in lines]
            with self.database.session() as session:
                for entry in entries:
                    session.add(
                        UndeliveredEvent(
                            plugin=entry["plugin"],
                            hook=entry["hook"],
                            payload=entry["payload"],
                            error=entry["error"],
                            created_at=datetime.fromisoformat(entry["created_at"]),
                        )
                    )
            self.spool_file.unlink()
        return len(entries)

    def pending(self, plugin: str | None = None) -> list[PendingEvent]:
        """Undelivered hook calls, oldest first, for one plugin or all."""
        if self.database is None:
            return []
        query = select(UndeliveredEvent).where(UndeliveredEvent.delivered_at.is_(None))
        if plugin:
            query = query.where(UndeliveredEvent.plugin == plugin)
        with self.database.session() as session:
            rows = session.scalars(query.order_by(UndeliveredEvent.id)).all()
            return [PendingEvent(r.id, r.plugin, r.hook, r.payload, r.attempts) for r in rows]

    def _database(self) -> Database:
        """The database the events being marked came from (without one, pending() lists none)."""
        if self.database is None:
            raise RuntimeError("no database: undelivered hook calls are in the spool file, without ids to mark")
        return self.database

    def mark_delivered(self, event_id: int) -> None:
        with self._database().session() as session:
            row = session.get(UndeliveredEvent, event_id)
            if row is not None and row.delivered_at is None:
                row.delivered_at = utcnow()

    def mark_failed(self, event_id: int, error: str) -> None:
        with self._database().session() as session:
            row = session.get(UndeliveredEvent, event_id)
            if row is not None:
                row.attempts += 1
                row.error = error
                row.last_attempt_at = utcnow()
