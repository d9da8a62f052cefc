"""``cached_many``: cache a function of many ids, one entry per id, one call for the misses.

For ``async def load_users(ids: list[int]) -> Mapping[int, User]``: a call reads every id's
entry in one round trip and calls the function once with the ids that missed. Each missed id
still goes through :meth:`Cache.get_or_load <ogcache.cache.Cache.get_or_load>` (a lease per
key, stored by compare-and-set), so single-flight, stale-set protection and degradation hold
per id as for :func:`~ogcache.cache.decorator.cached`; a small collector turns the loaders of
those ids into one call of the function.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any, Final, Generic, TypeVar

from ogcache.cache.decorator import _name, _parse, _unsafe
from ogcache.cache.exceptions import CacheConfigurationError, InvalidKeyError
from ogcache.cache.missing import MISSING
from ogcache.cache.namespace import MAX_KEY_LENGTH, Namespace
from ogcache.cache.protocol import CacheLike

__all__ = ["CacheManyDecorator", "CachedManyFunction", "cached_many"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# How long the loaders that arrived wait, with no other missed id of their call arriving or
# finishing meanwhile, before the function is called without the rest (those form a later
# call). Reached when some ids wait on loads elsewhere (another call's flight, another
# process's lease), or when the store is so slow that their reads take longer.
_IDLE_WINDOW: Final = 0.02


def cached_many(
    cache: CacheLike, namespace: Namespace[Any], *, key: str, ttl: float | None = None
) -> CacheManyDecorator:
    """Cache a function of many ids in ``namespace``, one entry per id.

    The function takes one argument, a list of ids, and returns a mapping of the ids it found
    to their values; an id it leaves out is cached as "not found" (``negative_ttl``) and left
    out of the result. ``key`` has exactly one field, standing for each id:
    ``key="user:{id}"``.
    """
    return CacheManyDecorator(cache, namespace, key, ttl)


class CacheManyDecorator:
    """What :func:`cached_many` returns: apply it to an ``async def f(ids) -> Mapping``."""

    __slots__ = ("_cache", "_literals", "_namespace", "_template", "_ttl")

    def __init__(
        self, cache: CacheLike, namespace: Namespace[Any], key: str, ttl: float | None
    ) -> None:
        literals, fields = _parse(namespace, key)
        if len(fields) != 1 or "." in fields[0]:
            raise CacheConfigurationError(
                f"cached_many(namespace {namespace.name!r}, key={key!r}): the template needs "
                "exactly one plain field, standing for each id: key='user:{id}'"
            )
        self._cache = cache
        self._namespace = namespace
        self._template = key
        self._literals = (literals[0], literals[1])
        self._ttl = ttl

    def __call__(
        self, function: Callable[[list[K]], Awaitable[Mapping[K, V]]]
    ) -> CachedManyFunction[K, V]:
        if not inspect.iscoroutinefunction(function):
            raise CacheConfigurationError(
                f"cached_many: {_name(function)} is not an async function; declare it with "
                "'async def f(ids: list[...]) -> Mapping[...]'"
            )
        required = [
            p
            for p in inspect.signature(function).parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        if len(required) != 1 or required[0].kind is inspect.Parameter.KEYWORD_ONLY:
            raise CacheConfigurationError(
                f"cached_many({_name(function)}, key={self._template!r}): the function must "
                "take exactly one required positional argument, the list of ids"
            )
        return CachedManyFunction(self._cache, self._namespace, function, self._literals, self._ttl)


class CachedManyFunction(Generic[K, V]):
    """A function of many ids whose results are cached per id; call it with the ids."""

    def __init__(
        self,
        cache: CacheLike,
        namespace: Namespace[Any],
        function: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        literals: tuple[str, str],
        ttl: float | None,
    ) -> None:
        self._cache = cache
        self._namespace = namespace
        self._function = function
        self._prefix, self._suffix = literals
        self._room = MAX_KEY_LENGTH - len(self._prefix) - len(self._suffix)
        self._ttl = ttl
        self._loads: set[asyncio.Task[None]] = set()
        self.__wrapped__ = function
        self.__name__ = getattr(function, "__name__", "cached_many")
        self.__doc__ = function.__doc__

    @property
    def function(self) -> Callable[[list[K]], Awaitable[Mapping[K, V]]]:
        """The undecorated function."""
        return self._function

    async def __call__(self, ids: Iterable[K]) -> dict[K, V]:
        """The values of the ids found (cached or loaded), in the order of ``ids``."""
        unique = list(dict.fromkeys(ids))
        keys = {id_: self.key(id_) for id_ in unique}
        namespace = self._namespace
        values = await self._cache.get_entries([(namespace, keys[id_]) for id_ in unique])
        found: dict[K, V | None] = {
            id_: value for id_, value in zip(unique, values, strict=True) if value is not MISSING
        }
        missed = [id_ for id_ in unique if id_ not in found]
        if missed:
            batch = _Batch(self._function, missed, self._loads)
            loaded = await asyncio.gather(
                *(self._load_one(batch, id_, keys[id_]) for id_ in missed)
            )
            found.update(zip(missed, loaded, strict=True))
        return {id_: value for id_ in unique if (value := found[id_]) is not None}

    async def _load_one(self, batch: _Batch[K, V], id_: K, key: str) -> V | None:
        try:
            value: V | None = await self._cache.get_or_load(
                self._namespace, key, lambda: batch.load(id_), ttl=self._ttl
            )
            return value
        finally:
            batch.finished(id_)

    def key(self, id_: K) -> str:
        """The key (within the namespace) of one id's entry."""
        text = str(id_)
        if not text or _unsafe(text) or len(text) > self._room:
            raise InvalidKeyError(
                f"{_name(self._function)}: id {text[:40]!r} cannot be a key: ids must be "
                f"non-empty, without whitespace or control characters, at most {self._room} "
                "characters"
            )
        return self._prefix + text + self._suffix

    async def invalidate(self, *ids: K) -> bool:
        """Drop the entries of these ids in one round trip (after the write commits); False if
        the store could not be reached."""
        return await self._cache.invalidate([(self._namespace, self.key(id_)) for id_ in ids])

    def __repr__(self) -> str:
        return f"<cached_many {_name(self._function)} in namespace {self._namespace.name!r}>"


class _Batch(Generic[K, V]):
    """Collects the loaders ``get_or_load`` calls for one call's missed ids into calls of the
    function: one call once every id still pending is waiting here, or once none has arrived
    or finished for a short window (the rest then form a later call). Loaders arriving after
    the call returned (a background early refresh) get a call of their own."""

    def __init__(
        self,
        function: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        ids: list[K],
        tasks: set[asyncio.Task[None]],
    ) -> None:
        self._function = function
        self._pending = set(ids)  # neither finished nor waiting here
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks = tasks

    async def load(self, id_: K) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(id_, []).append(future)
        self._pending.discard(id_)
        self._maybe_flush()
        return await future

    def finished(self, id_: K) -> None:
        self._pending.discard(id_)
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if not self._waiting:
            return
        if not self._pending:
            self._flush()
            return
        if self._timer is not None:  # progress: wait a full window again
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(_IDLE_WINDOW, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, {}
        if waiting:
            task = asyncio.get_running_loop().create_task(self._call(waiting))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, waiting: dict[K, list[asyncio.Future[V | None]]]) -> None:
        futures = [(id_, future) for id_, some in waiting.items() for future in some]
        try:
            found = await self._function(list(waiting))
        except asyncio.CancelledError:
            for _, future in futures:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for id_, future in futures:
            if not future.done():
                future.set_result(found.get(id_))
