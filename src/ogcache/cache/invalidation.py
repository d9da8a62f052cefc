"""How a process learns that keys changed elsewhere: the contract behind the L1 tier.

A store that can notify every process of every change to the application's keys implements
:class:`InvalidationSource`; the cache front end then keeps an in-process tier
(:mod:`ogcache.cache.local`) for the namespaces that ask for one. A store that cannot (the
in-process memory store, Upstash's REST API) simply does not implement it, and those
namespaces are served from the store alone.

The feed's promise is one-sided and conservative: while :attr:`InvalidationFeed.live` is
true, every change to a key under the prefix made before the last notification the feed
processed has been reported; whenever it cannot keep that promise (connection lost, server
silent, topology changed) it reports "everything changed" (``None``) and stops being live
until it is subscribed again. Its :meth:`~InvalidationFeed.fence` closes the remaining gap,
the delivery delay, for reads that must see every change made before they began.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

__all__ = ["InvalidationFeed", "InvalidationSource", "OnChange"]

OnChange = Callable[[Sequence[str] | None], None]
"""Called with the keys that changed, or ``None`` for "anything may have changed"."""


class InvalidationFeed(Protocol):
    """A running subscription to changes of the keys under one prefix."""

    @property
    def live(self) -> bool:
        """Subscribed, and heard from the store recently enough to trust the silence."""
        ...

    def start(self, on_change: OnChange) -> None:
        """Begin listening (from a running event loop); idempotent."""
        ...

    async def fence(self, patience: float | None = None) -> bool:
        """Return once every change the store applied before this call has been reported;
        ``False`` if that cannot be known (not live, the connection lost meanwhile, or no
        answer within ``patience`` seconds). Concurrent callers share one round trip."""
        ...

    async def close(self) -> None:
        """Stop listening and release the connection(s)."""
        ...


@runtime_checkable
class InvalidationSource(Protocol):
    """A store that can feed invalidations of the keys under a prefix to this process."""

    def invalidation_feed(self, prefix: str) -> InvalidationFeed: ...
