"""Turn the database URLs users have into the async-driver URLs SQLAlchemy needs.

Supabase hands out ``postgresql://user:pass@host:5432/postgres`` (sometimes ``postgres://``
and ``?sslmode=require``); a local file is ``sqlite:///path``. Both become async URLs
(``postgresql+asyncpg``, ``sqlite+aiosqlite``) with libpq-only options translated.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ogcache.errors import ConfigurationError

__all__ = ["async_database_url"]

# libpq's sslmode values mapped to what asyncpg's ``ssl`` argument accepts.
_SSLMODES = {
    "disable": "disable",
    "allow": "allow",
    "prefer": "prefer",
    "require": "require",
    "verify-ca": "verify-ca",
    "verify-full": "verify-full",
}


def async_database_url(url: str) -> URL:
    """The async SQLAlchemy URL for ``url``; raise ``ConfigurationError`` for anything else."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise ConfigurationError(f"OGCACHE_DATABASE_URL is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        query = dict(parsed.query)
        sslmode = query.pop("sslmode", None)
        if sslmode is not None:
            if sslmode not in _SSLMODES:
                raise ConfigurationError(
                    f"OGCACHE_DATABASE_URL: unknown sslmode {sslmode!r}; "
                    f"use one of {', '.join(_SSLMODES)}"
                )
            query["ssl"] = _SSLMODES[sslmode]
        return parsed.set(drivername="postgresql+asyncpg", query=query)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ConfigurationError(
        f"OGCACHE_DATABASE_URL: unsupported database {backend!r}; "
        "use postgresql://user:password@host:5432/db or sqlite:///path/to/file.db"
    )
