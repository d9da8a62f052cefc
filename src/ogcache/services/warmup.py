"""Warm-up: load critical data from the database into the cache before anyone asks for it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ogcache.cache import MISSING, CacheLike
from ogcache.services.analytics import AnalyticsService
from ogcache.services.conversations import ConversationService
from ogcache.services.menu import MenuService
from ogcache.services.namespaces import CacheEntry
from ogcache.services.profiles import ProfileService

__all__ = ["WarmupReport", "WarmupService"]


@dataclass(slots=True)
class WarmupReport:
    """The entries (``namespace:key``) that were loaded from the database and are cached now."""

    warmed: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.warmed)


class WarmupService:
    """Each method loads from the database, stores into the cache (unless an invalidation
    overtakes it), and reports the entries that are in the cache afterwards."""

    def __init__(
        self,
        *,
        cache: CacheLike,
        menu: MenuService,
        analytics: AnalyticsService,
        profiles: ProfileService,
        conversations: ConversationService,
    ) -> None:
        self._cache = cache
        self._menu = menu
        self._analytics = analytics
        self._profiles = profiles
        self._conversations = conversations

    async def _report(self, entries: list[CacheEntry]) -> WarmupReport:
        # One round trip tells which refreshed entries really are cached (none, if the cache
        # is unreachable); uncounted: warming is not reading, so hitRate stays the readers'.
        present = await self._cache.peek(entries)
        return WarmupReport(
            [
                f"{namespace.name}:{key}"
                for (namespace, key), value in zip(entries, present, strict=True)
                if value is not MISSING
            ]
        )

    async def warm_menu(self) -> WarmupReport:
        return await self._report(await self._menu.refresh())

    async def warm_analytics(self) -> WarmupReport:
        return await self._report(await self._analytics.refresh())

    async def warm_critical(self) -> WarmupReport:
        """The menu (both variants and texts) and analytics: what every chat turn reads."""
        return await self._report([*await self._menu.refresh(), *await self._analytics.refresh()])

    async def warm_user(self, user_id: str) -> WarmupReport:
        """One user's profile, recent-conversation list and those conversations."""
        entries = await self._profiles.refresh(user_id)
        entries += await self._conversations.refresh_recent(user_id)
        return await self._report(entries)
