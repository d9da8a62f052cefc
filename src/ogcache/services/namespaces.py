"""Every cache namespace of the application, in one place: names, key layout, TTLs, types.

The README's key table lists them with their TTL settings; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ogcache.cache import JsonCodec, ModelCodec, Namespace
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
    session_index: Namespace[dict[str, dict[str, float]]]
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

        def namespace(
            name: str, ttl: float, codec: Any, *, local: float = 0.0, stale: bool = False,
            secret_keys: bool = False, version: int = 1,
        ) -> Namespace[Any]:  # fmt: skip
            return Namespace(
                name,
                ttl,
                version=version,
                codec=codec,
                negative_ttl=negative,
                stale_ttl=settings.stale_grace if stale else 0.0,
                local_ttl=local,
                log_keys=not secret_keys,
            )

        profile_codec: ModelCodec[UserProfilePublic] = ModelCodec(UserProfilePublic)
        config = settings
        return cls(
            profile=namespace(
                "user:profile", config.ttl_profile, profile_codec, local=config.local_ttl_profile
            ),
            profile_by_telegram=namespace(
                "user:telegram", config.ttl_profile, profile_codec, local=config.local_ttl_profile
            ),
            # v2: the newest messages only, each with its seq (v1 held the whole list).
            conversation=namespace(
                "conversation", config.ttl_conversation, ModelCodec(ConversationPublic), version=2
            ),
            recent_conversations=namespace(
                "conversation:recent",
                config.ttl_conversation,
                ModelCodec(list[ConversationSummary]),
            ),
            auth_token=namespace(
                "auth:token",
                config.ttl_auth,
                ModelCodec(AuthIdentity),
                local=config.local_ttl_auth,
                secret_keys=True,
            ),
            auth_session=namespace(
                "auth:session",
                config.ttl_auth,
                ModelCodec(SessionState),
                local=config.local_ttl_auth,
            ),
            session=namespace("session", config.ttl_session, ModelCodec(SessionRecord)),
            # Per owner: session id -> {"bytes", "expires_at"}, for the per-user limits.
            session_index=namespace("session:index", config.ttl_session, JsonCodec()),
            menu=namespace(
                "menu",
                config.ttl_menu,
                ModelCodec(MenuPublic),
                local=config.local_ttl_menu,
                stale=True,
            ),
            menu_context=namespace(
                "menu:context",
                config.ttl_menu,
                ModelCodec(str),
                local=config.local_ttl_menu,
                stale=True,
            ),
            analytics_today=namespace(
                "analytics:today", config.ttl_analytics, ModelCodec(TodayMetrics), stale=True
            ),
            analytics_top=namespace(
                "analytics:top", config.ttl_analytics, ModelCodec(list[TopProduct]), stale=True
            ),
        )

    def all(self) -> list[Namespace[Any]]:
        return [getattr(self, name) for name in self.__dataclass_fields__]
