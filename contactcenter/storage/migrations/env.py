"""Alembic environment: runs on the connection the Database hands over (or the configured URL)."""

from alembic import context
from sqlalchemy import create_engine

from contactcenter.storage.models import Base

config = context.config
target_metadata = Base.metadata


NOT_OURS = {"apscheduler_jobs"}  # APScheduler creates and owns its job table


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "table" and name in NOT_OURS)


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no connection handed over and no sqlalchemy.url configured")
    engine = create_engine(url)
    with engine.begin() as conn:
        run_migrations(conn)
