"""The cache as application code uses it: a Protocol, so services accept any implementation.

Services written against :class:`CacheLike` take a :class:`~ogcache.cache.Cache`, a test
double, or a pass-through cache for a benchmark's uncached baseline, with no cast.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar, overload

from ogcache.cache.missing import Missing
from ogcache.cache.namespace import Namespace

__all__ = ["CacheLike"]

T = TypeVar("T")


class CacheLike(Protocol):
    """The data-path calls of :class:`~ogcache.cache.Cache` (see its docstrings)."""

    async def get(self, namespace: Namespace[T], key: str) -> T | Missing | None: ...

    async def get_entries(self, entries: Sequence[tuple[Namespace[Any], str]]) -> list[Any]: ...

    async def peek(self, entries: Sequence[tuple[Namespace[Any], str]]) -> list[Any]: ...

    async def set(
        self, namespace: Namespace[T], key: str, value: T | None, ttl: float | None = None
    ) -> bool: ...

    async def delete(self, namespace: Namespace[Any], key: str) -> bool: ...

    async def invalidate(self, entries: Iterable[tuple[Namespace[Any], str]]) -> bool: ...

    async def update(
        self,
        namespace: Namespace[T],
        key: str,
        change: Callable[[T | None], T | None],
        ttl: float | None = None,
    ) -> T | None: ...

    @overload
    async def get_or_load(
        self,
        namespace: Namespace[T],
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
    ) -> T: ...

    @overload
    async def get_or_load(
        self,
        namespace: Namespace[T],
        key: str,
        loader: Callable[[], Awaitable[T | None]],
        *,
        ttl: float | None = None,
    ) -> T | None: ...

    async def get_or_load_encoded(
        self,
        namespace: Namespace[T],
        key: str,
        loader: Callable[[], Awaitable[T | None]],
        *,
        ttl: float | None = None,
    ) -> bytes | None: ...

    async def get_local(self, namespace: Namespace[T], key: str) -> T | Missing | None: ...

    async def get_local_encoded(
        self, namespace: Namespace[Any], key: str
    ) -> bytes | Missing | None: ...

    async def refresh(
        self,
        namespace: Namespace[T],
        key: str,
        loader: Callable[[], Awaitable[T | None]],
        *,
        ttl: float | None = None,
    ) -> T | None: ...
