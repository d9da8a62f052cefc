"""The invalidation feed's own cancellation handling (the feed over real Redis is tested in
``tests/cache/test_local.py``).

On Python 3.11, redis-py's send (``asyncio.wait_for`` around the write, because the feed's
connections have a socket timeout) can swallow a cancellation that arrives as the write
completes (CPython gh-86296). A feed task that swallowed it would run forever and
``Cache.close()`` would wait for it forever: ``bench/invalidation.py`` hit that in about 1
run in 10. These tests stand a connection in for redis-py's that does exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from ogcache.cache.backends.redis_tracking import _send, _stop


class SwallowingConnection:
    """Its send completes even when cancelled, and returns normally: 3.11's ``wait_for``."""

    async def send_command(self, *command: Any) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)


async def test_a_cancellation_swallowed_by_the_send_is_raised_after_it() -> None:
    task = asyncio.create_task(_send(SwallowingConnection(), "PING"))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stop_cancels_again_a_task_that_survived_a_cancellation() -> None:
    cancellations = 0

    async def stubborn() -> None:
        nonlocal cancellations
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancellations += 1
                if cancellations == 2:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(_stop([task]), timeout=5)
    assert task.cancelled()
    assert cancellations == 2
