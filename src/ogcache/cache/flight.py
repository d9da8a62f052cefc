"""Shared flights: concurrent callers asking for one key share one call, never an older one.

The cache uses it twice: for reads (a thousand callers of one cold key send one GET, not a
thousand) and for fills (one load per key in this process). Sharing a result with a caller is
correct only if the result was *decided* after that caller started: an invalidation that
returned before the caller started could otherwise have been overtaken
(``docs/consistency.md``, guarantee 1). So the work calls ``decide()`` just before each
operation its result may come from (a read, a compare-and-set, a database load); a caller that
joined after the last such moment does not take the result but waits for the call to end and
then shares the *next* call, which the first such waiter starts for all of them. An error is
shared with every waiter, whenever it came. If the caller
running the work is cancelled, a waiter runs it instead of failing with another's cancellation.

Uncontended callers pay a dictionary insertion and removal; the future is made by the first
caller that waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from ogcache.cache.missing import MISSING, Missing

__all__ = ["Decide", "Flights"]

T = TypeVar("T")

Decide = Callable[..., None]
"""``decide()`` marks now; ``decide(at)`` marks an earlier ``time.monotonic()`` reading."""


class _Call:
    __slots__ = ("decided_at", "done")

    def __init__(self) -> None:
        self.decided_at = time.monotonic()
        self.done: asyncio.Future[Any] | None = None  # made by the first waiter

    def decide(self, at: float | None = None) -> None:
        self.decided_at = time.monotonic() if at is None else at

    def future(self) -> asyncio.Future[Any]:
        if self.done is None:
            self.done = asyncio.get_running_loop().create_future()
        return self.done


class Flights(Generic[T]):
    """``await run(key, work)``: ``work(decide)``'s result, shared per key as described above."""

    __slots__ = ("_calls", "shared")

    def __init__(self) -> None:
        self._calls: dict[str, _Call] = {}
        self.shared = 0  # callers answered by another caller's call

    def __len__(self) -> int:
        return len(self._calls)

    def in_flight(self, key: str) -> bool:
        return key in self._calls

    async def run(
        self,
        key: str,
        work: Callable[[Decide], Awaitable[T]],
        *,
        defer_to: Flights[Any] | None = None,
    ) -> tuple[T | Missing, bool]:
        """The result of ``work(decide)``, and whether it was another caller's.

        With ``defer_to``: a caller that had to wait, and then finds a call of ``key`` in
        flight there, returns :data:`MISSING` instead of starting one here (reads defer to
        fills: a caller whose read found nothing joins the load instead of reading again).
        """
        call = self._calls.get(key)
        if call is None:
            return await self._lead(key, work), False
        arrived = time.monotonic()
        while call is not None:
            done, result = await self._wait(call, arrived)
            if done:
                self.shared += 1
                return result, True
            if defer_to is not None and defer_to.in_flight(key):
                return MISSING, False
            call = self._calls.get(key)  # the next call, if another waiter started it
        return await self._lead(key, work), False

    @staticmethod
    async def _wait(call: _Call, arrived: float) -> tuple[bool, Any]:
        """Wait for ``call``; ``(True, result)`` if its result may be shared with a caller
        that arrived at ``arrived``, else ``(False, None)``."""
        future = call.future()
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not future.cancelled() or (task is not None and task.cancelling()):
                raise  # we were cancelled; else the caller running it was: run again
            return False, None
        # An error is shared whenever it came: it is no stale value, and the caller's own
        # call would most likely fail the same way (the database or the store is down).
        return call.decided_at >= arrived, result

    async def _lead(self, key: str, work: Callable[[Decide], Awaitable[T]]) -> T:
        call = self._calls[key] = _Call()
        try:
            result = await work(call.decide)
        except asyncio.CancelledError:
            if call.done is not None:
                call.done.cancel()
            raise
        except BaseException as exc:
            if call.done is not None:
                call.done.set_exception(exc)
                call.done.exception()  # retrieved here: each waiter handles it
            raise
        else:
            if call.done is not None:
                call.done.set_result(result)
            return result
        finally:
            if self._calls.get(key) is call:
                del self._calls[key]
