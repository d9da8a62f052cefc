"""Read coalescing: concurrent reads of one key in this process share one round trip.

A thousand callers asking for the same cold key at once would otherwise send a thousand
GETs before the first one learns it is a miss. Sharing a GET with a caller is correct only if
that GET was sent *after* the caller started: an invalidation that returned before the caller
started could otherwise have been overtaken by it (``docs/consistency.md``, guarantee 1). So a
caller that finds a read of its key in flight waits for it to end and then shares the *next*
read, which the first of the waiters sends for all of them. Uncontended reads pay a dictionary
insertion and removal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["ReadCoalescer"]

T = TypeVar("T")


class _Read:
    __slots__ = ("done", "sent_at")

    def __init__(self) -> None:
        self.sent_at = time.monotonic()
        self.done: asyncio.Future[object] | None = None  # made by the first waiter


class ReadCoalescer(Generic[T]):
    """``await read(key, fetch)``: ``fetch(key)``, shared with concurrent callers of ``key``
    whenever the shared call was sent after they started."""

    __slots__ = ("_reads", "shared")

    def __init__(self) -> None:
        self._reads: dict[str, _Read] = {}
        self.shared = 0  # reads answered by another caller's round trip

    async def read(
        self,
        key: str,
        fetch: Callable[[str], Awaitable[T]],
        *,
        unless: Callable[[], bool] | None = None,
    ) -> T | None:
        """``fetch(key)``'s result, or ``None`` without reading when, after waiting for another
        caller's read, ``unless()`` holds (the caller has a better source by then: a load of
        the key in flight that it can join)."""
        read = self._reads.get(key)
        if read is not None:
            arrived = time.monotonic()
            while read is not None:
                if read.done is None:
                    read.done = asyncio.get_running_loop().create_future()
                try:
                    result = await asyncio.shield(read.done)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if not read.done.cancelled() or (task is not None and task.cancelling()):
                        raise  # we were cancelled; else the reader was: read again
                    result = None
                except Exception:
                    if read.sent_at >= arrived:
                        raise  # the read we would have made failed
                else:
                    if read.sent_at >= arrived:
                        self.shared += 1
                        return result  # type: ignore[return-value]
                if unless is not None and unless():
                    return None
                read = self._reads.get(key)  # the next read, if a waiter sent it already
        read = self._reads[key] = _Read()
        try:
            result = await fetch(key)
        except BaseException as exc:
            if read.done is not None:
                if isinstance(exc, Exception):
                    read.done.set_exception(exc)
                    read.done.exception()  # retrieved: each waiter handles it
                else:
                    read.done.cancel()
            raise
        else:
            if read.done is not None:
                read.done.set_result(result)
            return result
        finally:
            if self._reads.get(key) is read:
                del self._reads[key]
