"""Single-flight: concurrent callers asking for the same key share one call.

Within one process, the first caller for a key runs the work; callers arriving while it runs
await the same result (or exception). If the first caller is cancelled, a waiting caller runs
the work itself instead of failing with someone else's cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["SingleFlight"]

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Deduplicate concurrent ``run(key, work)`` calls per key."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[str, asyncio.Future[Any]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def in_flight(self, key: str) -> bool:
        return key in self._calls

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The result of ``work()``, shared; the flag is True when this caller joined a call
        already in flight (and so did not run ``work`` itself)."""
        while True:
            shared = self._calls.get(key)
            if shared is None:
                return await self._lead(key, work), False
            try:
                result: T = await asyncio.shield(shared)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if shared.cancelled() and (task is None or not task.cancelling()):
                    continue  # the leader was cancelled, not us: try again
                raise
            return result, True

    async def _lead(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls[key] = future
        try:
            result = await work()
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
            if self._calls.get(key) is future:
                del self._calls[key]
