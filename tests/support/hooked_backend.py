"""A backend wrapper that runs a hook before chosen commands.

It stands for another process's command landing in the middle of ours (between our read and
our compare-and-set, say), to force an interleaving in a test.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from ogcache.cache import CacheBackend

Hook = Callable[..., Awaitable[None]]


class HookedBackend:
    def __init__(self, inner: CacheBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.hooks: dict[str, Hook] = {}

    def __getattr__(self, name: str) -> Any:
        command = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(command):
            return command  # attributes and plain methods (invalidation_feed) pass through

        async def hooked(*args: Any, **kwargs: Any) -> Any:
            hook = self.hooks.get(name)
            if hook is not None:
                await hook(*args, **kwargs)
            return await command(*args, **kwargs)

        return hooked
