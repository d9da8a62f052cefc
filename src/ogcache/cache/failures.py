"""How the cache reports what it could not do while it keeps serving: counted, logged sparingly.

A store that fails or times out is counted in the namespace's statistics and logged at most
once per interval (with how many similar errors were not logged), so a Redis outage under load
is a few log lines, not one per request. Calls the breaker refused are only counted: the
breaker logs its own transitions.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ogcache.cache.breaker import CircuitOpenError
from ogcache.cache.namespace import Namespace
from ogcache.cache.stats import NamespaceStats

__all__ = ["Failures", "TooLargeError", "log_key", "logger"]

logger = logging.getLogger("ogcache.cache")


class TooLargeError(Exception):
    """An encoded value above ``Policy.max_value_bytes``: not cached."""

    def __init__(self, namespace: Namespace[Any], size: int) -> None:
        super().__init__(f"{size}-byte value of {namespace.name} is too large to cache")
        self.size = size


class Failures:
    """Counts and logs the cache's degraded calls for one cache."""

    __slots__ = ("_interval", "_last_log", "_max_value_bytes", "_oversized_logged", "_suppressed")

    def __init__(self, *, interval: float, max_value_bytes: int) -> None:
        self._interval = interval
        self._max_value_bytes = max_value_bytes
        self._last_log = -float("inf")
        self._suppressed = 0
        self._oversized_logged: set[str] = set()

    def backend(
        self, stats: NamespaceStats | None, operation: str, exc: Exception, store: str
    ) -> None:
        """The store failed ``operation``: the call goes on without the cache."""
        if isinstance(exc, CircuitOpenError):
            if stats is not None:
                stats.short_circuited += 1
            return
        if stats is not None:
            stats.errors += 1
        now = time.monotonic()
        if now - self._last_log < self._interval:
            self._suppressed += 1
            return
        suppressed, self._suppressed = self._suppressed, 0
        self._last_log = now
        logger.warning(
            "cache %s failed, serving without the cache: %s%s",
            operation,
            exc,
            f" ({suppressed} similar errors not logged)" if suppressed else "",
            extra={"event": "cache.error", "operation": operation, "backend": store},
        )

    def not_encoded(self, namespace: Namespace[Any], stats: NamespaceStats, exc: Exception) -> None:
        """A value that is not cached: too large (counted, logged once per namespace), or not
        encodable (a bug in the caller: counted and logged as an error)."""
        if isinstance(exc, TooLargeError):
            stats.oversized += 1
            if namespace.name not in self._oversized_logged:
                self._oversized_logged.add(namespace.name)
                logger.warning(
                    "not caching a %d-byte value of %s: larger than max_value_bytes (%d); "
                    "further ones are counted, not logged",
                    exc.size,
                    namespace.name,
                    self._max_value_bytes,
                    extra={"event": "cache.oversized", "namespace": namespace.name},
                )
            return
        stats.errors += 1
        logger.error(
            "cannot encode a value for %s, not caching it: %s",
            namespace.name,
            exc,
            extra={"event": "cache.encode_error", "namespace": namespace.name},
        )


def log_key(event: str, namespace: Namespace[Any], key: str | None, **fields: Any) -> None:
    """A DEBUG line for one key; the key itself only where the namespace allows it."""
    shown = key if namespace.log_keys else "<redacted>"
    logger.debug(
        "%s %s %s",
        event,
        namespace.name,
        shown,
        extra={"event": event, "namespace": namespace.name, "key": shown, **fields},
    )
