"""The OG Lab agent's cached services: every read through the cache, every write invalidating."""

from ogcache.services.analytics import AnalyticsService
from ogcache.services.auth import AuthService, token_digest
from ogcache.services.base import ServiceContext, StorageLimits
from ogcache.services.conversations import ConversationService
from ogcache.services.menu import MenuService
from ogcache.services.namespaces import AppNamespaces
from ogcache.services.profiles import ProfileService
from ogcache.services.sessions import SessionService
from ogcache.services.warmup import WarmupReport, WarmupService

__all__ = [
    "AnalyticsService",
    "AppNamespaces",
    "AuthService",
    "ConversationService",
    "MenuService",
    "ProfileService",
    "ServiceContext",
    "SessionService",
    "StorageLimits",
    "WarmupReport",
    "WarmupService",
    "token_digest",
]
