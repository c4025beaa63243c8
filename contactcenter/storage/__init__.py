"""Storage: the SQLAlchemy models, the database handle and its Alembic migrations."""

from contactcenter.storage.database import Database, DatabaseUnavailable

__all__ = ["Database", "DatabaseUnavailable"]
