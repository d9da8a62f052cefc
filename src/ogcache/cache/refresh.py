"""Early refresh (XFetch): an entry near its expiry is reloaded by one caller in the
background while every other caller keeps reading the cached value.

The chance of refreshing grows as expiry nears and with how long the value took to load
(``now - load_time * beta * ln(rand) >= expiry``), so slow loads start early and a hot key
never expires under load. One refresher per key in this process (a set) and across processes
(a marker key added atomically); the new value replaces only the entry it refreshes, so an
invalidation that came meanwhile wins.
"""

from __future__ import annotations

import math
from typing import Any

from ogcache.cache.envelope import Entry, new_token
from ogcache.cache.exceptions import BackendError
from ogcache.cache.failures import logger
from ogcache.cache.fill import Fill, Parts
from ogcache.cache.namespace import Namespace

__all__ = ["EarlyRefresh"]


class EarlyRefresh:
    """Decides when an entry is due and runs its refresh in the background."""

    __slots__ = ("_parts", "_prefix", "_refreshing")

    def __init__(self, parts: Parts, prefix: str) -> None:
        self._parts = parts
        self._prefix = prefix
        self._refreshing: set[str] = set()

    def due(self, namespace: Namespace[Any], entry: Entry) -> bool:
        """XFetch: refresh when ``now - delta * beta * ln(rand) >= expiry``."""
        beta = self._parts.policy.early_refresh_beta
        if not namespace.early_refresh or beta <= 0 or entry.load_time <= 0:
            return False
        stored = self._parts.stored
        gap = -entry.load_time * beta * math.log(1.0 - stored.random.random())
        return stored.now() + gap >= entry.expires_at

    def start(self, fill: Fill[Any], entry: Entry) -> None:
        if fill.full in self._refreshing:
            return
        self._refreshing.add(fill.full)  # marked before any await: one refresh per key here
        self._parts.background.run(self._refresh(fill, entry))

    async def _refresh(self, fill: Fill[Any], entry: Entry) -> None:
        # One refresher across processes: a marker key (outside every namespace, since
        # namespace names cannot start with '#') elects it and is removed when it ends.
        store = self._parts.store
        marker = f"{self._prefix}:#refresh:{fill.full[len(self._prefix) + 1 :]}"
        mark = new_token()
        try:
            if await store.add(marker, mark, self._parts.policy.lease_ttl) is not None:
                return
            try:
                _, stored = await fill.replace(entry)
                if stored:
                    fill.stats.early_refreshes += 1
            finally:
                await store.replace_if(marker, mark, 0, None, 1)
        except BackendError as exc:
            self._parts.failed(fill.stats, "early refresh", exc)
        except Exception as exc:
            logger.warning(
                "early refresh of %s failed: %s",
                fill.namespace.name,
                exc,
                extra={"event": "cache.refresh_error", "namespace": fill.namespace.name},
            )
        finally:
            self._refreshing.discard(fill.full)
