"""Single-flight: concurrent callers asking for the same key share one call.

Within one process, the first caller for a key runs the work; callers arriving while it runs
await the same result (or exception). If the first caller is cancelled, a waiting caller runs
the work itself instead of failing with someone else's cancellation.

Sharing must not hand a caller a value older than its own start. The work therefore calls
``decide()`` just before each operation its result may come from (a read, a compare-and-set,
a database load); a caller that joined *after* the last such moment does not take the shared
result but runs again, because an invalidation may have happened between that moment and its
own start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["Decide", "SingleFlight"]

T = TypeVar("T")

Decide = Callable[..., None]
"""``decide()`` marks now; ``decide(at)`` marks an earlier ``time.monotonic()`` reading."""


class _Call:
    __slots__ = ("decided_at", "future")

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future
        self.decided_at = time.monotonic()

    def decide(self, at: float | None = None) -> None:
        self.decided_at = time.monotonic() if at is None else at


class SingleFlight(Generic[T]):
    """Deduplicate concurrent ``run(key, work)`` calls per key."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[str, _Call] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def in_flight(self, key: str) -> bool:
        return key in self._calls

    async def run(self, key: str, work: Callable[[Decide], Awaitable[T]]) -> tuple[T, bool]:
        """The result of ``work(decide)``, shared; the flag is True when this caller took the
        result of a call another caller ran."""
        while True:
            call = self._calls.get(key)
            if call is None:
                return await self._lead(key, work), False
            joined_at = time.monotonic()
            try:
                result: T = await asyncio.shield(call.future)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if call.future.cancelled() and (task is None or not task.cancelling()):
                    continue  # the leader was cancelled, not us: try again
                raise
            if joined_at < call.decided_at:
                return result, True
            # The result was decided before we arrived: it may predate our start. Run again.

    async def _lead(self, key: str, work: Callable[[Decide], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        call = _Call(future)
        self._calls[key] = call
        try:
            result = await work(call.decide)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unwatched failure is not logged twice
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if self._calls.get(key) is call:
                del self._calls[key]
