"""The database handle: one engine and session factory per process, migrations through Alembic."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CursorResult, Delete, Engine, Update, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DatabaseUnavailable(Exception):
    """The database cannot be reached or used; the message says which URL and why."""


def rows_changed(session: Session, statement: Update | Delete) -> int:
    """How many rows an UPDATE or DELETE changed. Session.execute is typed as returning a Result; for an UPDATE it is a
    CursorResult, which has rowcount (the cast is SQLAlchemy's documented way to say so)."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


#: How long a SQLite statement waits for another process's lock before "database is locked", unless the URL
#: says otherwise with pysqlite's own ``?timeout=<seconds>`` (e.g. ``sqlite:///desk.db?timeout=0.2``).
DEFAULT_BUSY_TIMEOUT_SECONDS = 5.0


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")  # first: the next pragma may meet a lock
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers (the web console) do not block the phone's writes
        cursor.close()

    return on_connect


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (``sqlite:///path`` or the URI form ``sqlite:///file:path?mode=ro&uri=true``);
    None for other databases and in-memory ones."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = parsed.database
    if parsed.query.get("uri") in ("true", "1") and database.startswith("file:"):
        database = database.removeprefix("file:")
    return Path(database)


def describe_error(exc: BaseException) -> str:
    """What went wrong, in one line, without the SQL statement or its parameters (which can hold a password
    hash or a customer's details): the driver's own message for a database error."""
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(reason).splitlines() if line.strip()]
    text = lines[0] if lines else type(reason).__name__
    return text.split(" [SQL: ")[0]


class Database:
    """A configured database: ``session()`` for work, ``upgrade()`` to bring the schema to the newest."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        file = sqlite_file(url)
        if file is not None and parsed.query.get("mode") != "ro":
            file.parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
        if parsed.get_backend_name() == "postgresql":
            options["connect_args"] = {"connect_timeout": 5}
        self.engine: Engine = create_engine(url, **options)
        if parsed.get_backend_name() == "sqlite":
            timeout = float(str(parsed.query.get("timeout", DEFAULT_BUSY_TIMEOUT_SECONDS)))
            event.listen(self.engine, "connect", _sqlite_pragmas(int(timeout * 1000)))
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

    @contextmanager
    def rehearsal(self) -> Iterator[Session]:
        """A session whose changes are always rolled back: a dry run counts what a change would do by doing
        it, so the count cannot drift from the change."""
        with self._sessions() as session:
            try:
                yield session
            finally:
                session.rollback()

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
            raise DatabaseUnavailable(f"cannot use database {self.safe_url}: {describe_error(exc)}") from exc
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"cannot migrate database {self.safe_url}: {describe_error(exc)}") from exc

    def current_revision(self) -> str | None:
        try:
            with self.engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        except OperationalError as exc:
            raise DatabaseUnavailable(f"cannot use database {self.safe_url}: {describe_error(exc)}") from exc

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
