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
        profile_codec: ModelCodec[UserProfilePublic] = ModelCodec(UserProfilePublic)
        return cls(
            profile=Namespace("user:profile", settings.ttl_profile, codec=profile_codec),
            profile_by_telegram=Namespace(
                "user:telegram", settings.ttl_profile, codec=profile_codec
            ),
            conversation=Namespace(
                "conversation", settings.ttl_conversation, codec=ModelCodec(ConversationPublic)
            ),
            recent_conversations=Namespace(
                "conversation:recent",
                settings.ttl_conversation,
                codec=ModelCodec(list[ConversationSummary]),
            ),
            auth_token=Namespace(
                "auth:token", settings.ttl_auth, codec=ModelCodec(AuthIdentity), log_keys=False
            ),
            auth_session=Namespace(
                "auth:session", settings.ttl_auth, codec=ModelCodec(SessionState)
            ),
            session=Namespace("session", settings.ttl_session, codec=ModelCodec(SessionRecord)),
            menu=Namespace("menu", settings.ttl_menu, codec=ModelCodec(MenuPublic)),
            menu_context=Namespace("menu:context", settings.ttl_menu, codec=ModelCodec(str)),
            analytics_today=Namespace(
                "analytics:today", settings.ttl_analytics, codec=ModelCodec(TodayMetrics)
            ),
            analytics_top=Namespace(
                "analytics:top", settings.ttl_analytics, codec=ModelCodec(list[TopProduct])
            ),
        )

    def all(self) -> list[Namespace[Any]]:
        return [getattr(self, name) for name in self.__dataclass_fields__]
