"""One expensive result, reused for a while and computed by one caller at a time.

The cache's report counts keys with ``SCAN`` and reads ``INFO``: cheap once, a lever on Redis
when anyone may ask as often as they like. With a :class:`Memo`, callers that accept a result
up to ``max_age`` seconds old share one computation, so the backend pays for at most one per
``max_age`` however many ask, concurrently or not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Memo"]

T = TypeVar("T")


class Memo(Generic[T]):
    """The last result of ``compute`` and when it was taken (monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: tuple[T, float] | None = None
        self._running: asyncio.Future[tuple[T, float]] | None = None
        self._generation = 0

    async def get(self, compute: Callable[[], Awaitable[T]], max_age: float) -> tuple[T, float]:
        """A result at most ``max_age`` seconds old, and its age. ``max_age`` 0 computes anew
        for this caller alone (nothing started before the call is reused)."""
        if max_age <= 0:
            return (await self._compute(compute, self._generation))[0], 0.0
        last = self._last
        if last is not None and self._clock() - last[1] <= max_age:
            return last[0], self._clock() - last[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._compute(compute, self._generation))
            self._running.add_done_callback(self._finished)
        value, taken = await asyncio.shield(self._running)
        return value, max(0.0, self._clock() - taken)

    def forget(self) -> None:
        """Drop the result (what it measured changed); a computation under way is not kept."""
        self._last = None
        self._generation += 1

    async def _compute(
        self, compute: Callable[[], Awaitable[T]], generation: int
    ) -> tuple[T, float]:
        value = await compute()
        result = (value, self._clock())
        if generation == self._generation:
            self._last = result
        return result

    def _finished(self, future: asyncio.Future[tuple[T, float]]) -> None:
        if self._running is future:
            self._running = None
        if not future.cancelled():
            future.exception()  # retrieved, so an error is not reported as never retrieved
