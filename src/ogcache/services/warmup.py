"""Warm-up: load critical data from the database into the cache before anyone asks for it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ogcache.errors import NotFoundError
from ogcache.services.analytics import AnalyticsService
from ogcache.services.conversations import ConversationService
from ogcache.services.menu import MenuService
from ogcache.services.profiles import ProfileService

__all__ = ["WarmupReport", "WarmupService"]


@dataclass(slots=True)
class WarmupReport:
    """The entries (``namespace:key``) that were loaded from the database and cached."""

    warmed: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.warmed)


class WarmupService:
    """Each method really loads from the database and stores into the cache."""

    def __init__(
        self,
        *,
        menu: MenuService,
        analytics: AnalyticsService,
        profiles: ProfileService,
        conversations: ConversationService,
    ) -> None:
        self._menu = menu
        self._analytics = analytics
        self._profiles = profiles
        self._conversations = conversations

    async def warm_menu(self) -> WarmupReport:
        return WarmupReport(await self._menu.refresh())

    async def warm_analytics(self) -> WarmupReport:
        return WarmupReport(await self._analytics.refresh())

    async def warm_critical(self) -> WarmupReport:
        """The menu (both variants and texts) and analytics: what every chat turn reads."""
        report = await self.warm_menu()
        report.warmed += (await self.warm_analytics()).warmed
        return report

    async def warm_user(self, user_id: str) -> WarmupReport:
        """One user's profile, recent-conversation list and those conversations."""
        profile = await self._profiles.refresh(user_id)
        if profile is None:
            raise NotFoundError(f"no user profile with user_id {user_id!r}")
        warmed = [f"user:profile:{user_id}"]
        if profile.telegram_user_id is not None:
            warmed.append(f"user:telegram:{profile.telegram_user_id}")
        summaries = await self._conversations.refresh_recent(user_id)
        warmed.append(f"conversation:recent:{user_id}")
        warmed += [f"conversation:{summary.id}" for summary in summaries]
        return WarmupReport(warmed)
