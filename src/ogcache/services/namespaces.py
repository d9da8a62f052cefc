"""Every cache namespace of the application, in one place: names, key layout, TTLs, types.

The README's key table lists them with their TTL settings; keep the two in step.

For the consistency verifier (docs/consistency.md): the menu is compared without its
``loaded_at`` (a new time on every load); the menu text (its loader reads the menu through
the cache) and the analytics (not invalidated on write by design, and their loaders read a
window that moves with the clock) are not verified. Auth and session entries are not read
with ``get_or_load``, so never sampled. Profiles and conversations have no field that changes
without a write that invalidates them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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


def _without_load_time(menu: MenuPublic) -> object:
    """What the verifier compares of a menu: all but ``loaded_at``."""
    return (menu.include_concentrates, menu.items)


@dataclass(frozen=True, slots=True)
class _Lifetime:
    """How long a family of entries lives: ``ttl`` in the cache, ``local`` in this process's
    memory (0: not kept there), and whether it may be served ``stale`` (past expiry, for the
    ``stale_grace`` setting) when the database fails. Shared by the namespaces of one area."""

    ttl: float
    local: float = 0.0
    stale: bool = False


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

        def namespace(
            name: str,
            codec: Any,
            lifetime: _Lifetime,
            *,
            secret_keys: bool = False,
            version: int = 1,
        ) -> Namespace[Any]:
            return Namespace(
                name,
                lifetime.ttl,
                version=version,
                codec=codec,
                negative_ttl=settings.negative_ttl,
                stale_ttl=settings.stale_grace if lifetime.stale else 0.0,
                local_ttl=lifetime.local,
                log_keys=not secret_keys,
            )

        profile = _Lifetime(settings.ttl_profile, local=settings.local_ttl_profile)
        conversation = _Lifetime(settings.ttl_conversation)
        auth = _Lifetime(settings.ttl_auth, local=settings.local_ttl_auth)
        session = _Lifetime(settings.ttl_session)
        menu = _Lifetime(settings.ttl_menu, local=settings.local_ttl_menu, stale=True)
        analytics = _Lifetime(settings.ttl_analytics, stale=True)
        profile_codec: ModelCodec[UserProfilePublic] = ModelCodec(UserProfilePublic)
        return cls(
            profile=namespace("user:profile", profile_codec, profile),
            profile_by_telegram=namespace("user:telegram", profile_codec, profile),
            # v2: the newest messages only, each with its seq (v1 held the whole list).
            conversation=namespace(
                "conversation", ModelCodec(ConversationPublic), conversation, version=2
            ),
            recent_conversations=namespace(
                "conversation:recent", ModelCodec(list[ConversationSummary]), conversation
            ),
            auth_token=namespace("auth:token", ModelCodec(AuthIdentity), auth, secret_keys=True),
            auth_session=namespace("auth:session", ModelCodec(SessionState), auth),
            session=namespace("session", ModelCodec(SessionRecord), session),
            # Per owner: session id -> {"bytes", "expires_at"}, for the per-user limits.
            session_index=namespace("session:index", JsonCodec(), session),
            menu=replace(
                namespace("menu", ModelCodec(MenuPublic), menu), compare_key=_without_load_time
            ),
            menu_context=replace(namespace("menu:context", ModelCodec(str), menu), verify=False),
            analytics_today=replace(
                namespace("analytics:today", ModelCodec(TodayMetrics), analytics), verify=False
            ),
            # v2: one entry per window ("7"), the longest list (v1: one per window and limit).
            analytics_top=replace(
                namespace("analytics:top", ModelCodec(list[TopProduct]), analytics, version=2),
                verify=False,
            ),
        )

    def all(self) -> list[Namespace[Any]]:
        return [getattr(self, name) for name in self.__dataclass_fields__]
