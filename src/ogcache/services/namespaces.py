"""Every cache namespace of the application, in one place: names, key layout, TTLs, types.

The README's key table lists them with their TTL settings; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ogcache.cache import ModelCodec, Namespace
from ogcache.config import Settings
from ogcache.schemas import (
    AuthIdentity,
    ConversationPublic,
    ConversationSummary,
    MenuPublic,
    SessionRecord,
    SessionState,
    TodayMetrics,
    TopProduct,
    UserProfilePublic,
)

__all__ = ["MENU_KEYS", "AppNamespaces", "CacheEntry"]

CacheEntry = tuple[Namespace[Any], str]
"""One cache entry: its namespace and key."""

MENU_KEYS = ("items", "items:concentrates")
MENU_CONTEXT_KEYS = ("text", "text:concentrates")


@dataclass(frozen=True, slots=True)
class AppNamespaces:
    profile: Namespace[UserProfilePublic]
    profile_by_telegram: Namespace[UserProfilePublic]
    conversation: Namespace[ConversationPublic]
    recent_conversations: Namespace[list[ConversationSummary]]
    auth_token: Namespace[AuthIdentity]
    auth_session: Namespace[SessionState]
    session: Namespace[SessionRecord]
    menu: Namespace[MenuPublic]
    menu_context: Namespace[str]
    analytics_today: Namespace[TodayMetrics]
    analytics_top: Namespace[list[TopProduct]]

    @classmethod
    def from_settings(cls, settings: Settings) -> AppNamespaces:
        """TTLs from the settings; "not found" cached for ``negative_ttl`` everywhere. The menu
        and analytics may be served up to ``stale_grace`` seconds past expiry when the
        database fails; nothing user-specific is, and never auth. The in-process tier is on
        for the menu by default, off for auth and profiles unless their setting enables it."""
        negative = settings.negative_ttl
        grace = settings.stale_grace

        def namespace(name: str, ttl: float, codec: Any, **options: Any) -> Namespace[Any]:
            return Namespace(name, ttl, codec=codec, negative_ttl=negative, **options)

        profile_codec: ModelCodec[UserProfilePublic] = ModelCodec(UserProfilePublic)
        return cls(
            profile=namespace(
                "user:profile",
                settings.ttl_profile,
                profile_codec,
                local_ttl=settings.local_ttl_profile,
            ),
            profile_by_telegram=namespace(
                "user:telegram",
                settings.ttl_profile,
                profile_codec,
                local_ttl=settings.local_ttl_profile,
            ),
            conversation=namespace(
                "conversation", settings.ttl_conversation, ModelCodec(ConversationPublic)
            ),
            recent_conversations=namespace(
                "conversation:recent",
                settings.ttl_conversation,
                ModelCodec(list[ConversationSummary]),
            ),
            auth_token=namespace(
                "auth:token",
                settings.ttl_auth,
                ModelCodec(AuthIdentity),
                log_keys=False,
                local_ttl=settings.local_ttl_auth,
            ),
            auth_session=namespace(
                "auth:session",
                settings.ttl_auth,
                ModelCodec(SessionState),
                local_ttl=settings.local_ttl_auth,
            ),
            session=namespace("session", settings.ttl_session, ModelCodec(SessionRecord)),
            menu=namespace(
                "menu",
                settings.ttl_menu,
                ModelCodec(MenuPublic),
                stale_ttl=grace,
                local_ttl=settings.local_ttl_menu,
            ),
            menu_context=namespace(
                "menu:context",
                settings.ttl_menu,
                ModelCodec(str),
                stale_ttl=grace,
                local_ttl=settings.local_ttl_menu,
            ),
            analytics_today=namespace(
                "analytics:today",
                settings.ttl_analytics,
                ModelCodec(TodayMetrics),
                stale_ttl=grace,
            ),
            analytics_top=namespace(
                "analytics:top",
                settings.ttl_analytics,
                ModelCodec(list[TopProduct]),
                stale_ttl=grace,
            ),
        )

    def all(self) -> list[Namespace[Any]]:
        return [getattr(self, name) for name in self.__dataclass_fields__]
