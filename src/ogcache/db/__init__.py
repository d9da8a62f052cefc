"""The database: URL handling, engine, tables, Alembic migrations and demo data."""

from ogcache.db.engine import create_engine, create_session_factory
from ogcache.db.migrate import upgrade
from ogcache.db.url import async_database_url

__all__ = ["async_database_url", "create_engine", "create_session_factory", "upgrade"]
