"""What every cached service holds: the database session factory, the cache, the namespaces,
and the limits on what one user may store."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ogcache.cache import CacheLike
from ogcache.services.namespaces import AppNamespaces

if TYPE_CHECKING:
    from ogcache.config import Settings

__all__ = ["ServiceContext", "StorageLimits"]


@dataclass(frozen=True, slots=True)
class StorageLimits:
    """What one user may store; each field is the ``OGCACHE_`` setting of the same name.

    A write past a limit raises :class:`~ogcache.errors.LimitExceededError` and stores nothing.
    """

    max_sessions_per_user: int
    max_session_bytes_per_user: int
    max_conversations_per_user: int
    max_messages_per_conversation: int
    # Across all the user's conversations: with 16,000-character messages, this bounds what
    # one user stores (5,000 x 16,000 = 80 M characters by default).
    max_messages_per_user: int
    max_preferences_keys: int
    max_preferences_bytes: int
    # Messages of a conversation kept in its cache entry and answered with it (the newest).
    conversation_window: int

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageLimits:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})

    @classmethod
    def defaults(cls, **overrides: int) -> StorageLimits:
        """The settings' defaults (stated in one place, :class:`~ogcache.config.Settings`),
        with ``overrides``."""
        from ogcache.config import Settings

        values = {f.name: Settings.model_fields[f.name].default for f in fields(cls)}
        return cls(**{**values, **overrides})


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """Shared by all services. Writes commit first and invalidate after the commit, so a
    reader can never re-cache the old row from a transaction that has not committed yet."""

    db: async_sessionmaker[AsyncSession]
    cache: CacheLike
    namespaces: AppNamespaces
    limits: StorageLimits = field(default_factory=StorageLimits.defaults)
