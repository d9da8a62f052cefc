"""What every cached service holds: the database session factory, the cache, the namespaces."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ogcache.cache import Cache
from ogcache.services.namespaces import AppNamespaces

__all__ = ["ServiceContext"]


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """Shared by all services. Writes commit first and invalidate after the commit, so a
    reader can never re-cache the old row from a transaction that has not committed yet."""

    db: async_sessionmaker[AsyncSession]
    cache: Cache
    namespaces: AppNamespaces
