"""The database handle: one engine and session factory per process, migrations through Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CursorResult, Engine, Update, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DatabaseUnavailable(Exception):
    """The database cannot be reached or used; the message says which URL and why."""


def rows_changed(session: Session, statement: Update) -> int:
    """How many rows an UPDATE changed. Session.execute is typed as returning a Result; for an UPDATE it is a
    CursorResult, which has rowcount (the cast is SQLAlchemy's documented way to say so)."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the web console) do not block the phone's writes
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Database:
    """A configured database: ``session()`` for work, ``upgrade()`` to bring the schema to the newest."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
        if parsed.get_backend_name() == "postgresql":
            options["connect_args"] = {"connect_timeout": 5}
        self.engine: Engine = create_engine(url, **options)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    def alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return config

    def upgrade(self, revision: str = "head") -> None:
        """Apply migrations up to ``revision``; raise DatabaseUnavailable with the reason if it cannot."""
        try:
            with self.engine.begin() as connection:
                config = self.alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        except OperationalError as exc:
            raise DatabaseUnavailable(f"cannot use database {self.safe_url}: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"cannot migrate database {self.safe_url}: {exc}") from exc

    def current_revision(self) -> str | None:
        try:
            with self.engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        except OperationalError as exc:
            raise DatabaseUnavailable(f"cannot use database {self.safe_url}: {exc.orig}") from exc

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    def require_current_schema(self) -> Database:
        """Self, if the schema is the newest; else DatabaseUnavailable telling the user what to run."""
        current, head = self.current_revision(), self.head_revision()
        if current != head:
            raise DatabaseUnavailable(
                f"database {self.safe_url} is at schema revision {current or 'none (empty)'}, this version "
                f"needs {head}: run `contactcenter db upgrade`"
            )
        return self

    def table_names(self) -> list[str]:
        return inspect(self.engine).get_table_names()

    def dispose(self) -> None:
        self.engine.dispose()
