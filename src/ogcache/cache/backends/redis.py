"""Redis backend: redis-py asyncio with hiredis, one bounded pool, short timeouts.

redis-py's defaults suit a database client, not a cache: its pool raises
``MaxConnectionsError`` as soon as every connection is busy, and its default retry policy
spends seconds per call on a dead server. Here the pool makes callers wait (bounded by
``pool_timeout``) for a free connection, every read is bounded by ``timeout``, and a failed
connection is retried once, immediately, so a restarted Redis costs one error, not many.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from ogcache.cache.backend import BackendInfo, BackendOptions, KeyCount
from ogcache.cache.backends.redis_pool import LEAN_HANDSHAKE, BoundedConnectionPool
from ogcache.cache.backends.redis_tracking import ConnectionFactory, RedisTrackingFeed, resp2
from ogcache.cache.exceptions import BackendError, CacheConfigurationError

__all__ = ["RedisBackend", "escape_glob"]

_GLOB_SPECIALS = re.compile(r"([\\*?\[\]])")

# SET only if absent, else return what is there: one atomic step (SET NX GET needs Redis 7).
_ADD = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

# Compare a slice of the stored value, then replace or delete it: one atomic step.
_REPLACE_IF = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local offset = tonumber(ARGV[2])
if string.sub(current, offset + 1, offset + #ARGV[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
"""


def escape_glob(literal: str) -> str:
    """Escape Redis glob characters so ``literal`` matches only itself in ``SCAN MATCH``."""
    return _GLOB_SPECIALS.sub(r"\\\1", literal)


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """The one place where driver errors become :class:`BackendError`.

    ``RedisClusterException`` (redis-py's cluster client: no reachable node, slots not
    covered) is not a ``RedisError``, hence its own entry."""
    try:
        yield
    except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
        raise BackendError(f"redis {operation} failed: {type(exc).__name__}: {exc}") from exc


class RedisBackend:
    """A Redis server (``redis://``, ``rediss://`` or ``unix://`` URL)."""

    name = "redis"

    def __init__(
        self,
        url: str,
        options: BackendOptions | None = None,
        *,
        connection_class: type[AbstractConnection] | None = None,
    ) -> None:
        options = options or BackendOptions()
        extra: dict[str, Any] = {}
        if connection_class is not None:
            extra["connection_class"] = connection_class
        try:
            pool = self._connection_pool(
                url,
                **LEAN_HANDSHAKE,
                max_connections=options.max_connections,
                timeout=options.pool_timeout,
                socket_timeout=options.timeout,
                socket_connect_timeout=options.connect_timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                **extra,
            )
        except ValueError as exc:
            raise CacheConfigurationError(f"{self.name} backend: invalid URL: {exc}") from exc
        self._pool = pool
        self._client: Redis = Redis(connection_pool=pool)
        self._scan_batch = options.scan_batch
        self._add = self._client.register_script(_ADD)
        self._replace_if = self._client.register_script(_REPLACE_IF)

    @property
    def client(self) -> Redis:
        """The redis-py client, for commands the backend does not wrap (it shares the pool)."""
        return self._client

    @property
    def pool(self) -> BoundedConnectionPool:
        """The bounded connection pool every call takes a connection from."""
        return self._pool

    def _connection_pool(self, url: str, **options: Any) -> BoundedConnectionPool:
        """The pool for ``url``; ``options`` set its bounds, timeouts and retry policy.

        A backend for another URL form (``redis+sentinel://``) overrides this."""
        return BoundedConnectionPool.from_url(url, **options)

    async def get(self, key: str) -> bytes | None:
        with _translated("GET"):
            return cast("bytes | None", await self._client.get(key))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        with _translated("MGET"):
            return cast("list[bytes | None]", await self._client.mget(keys))

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        with _translated("SET"):
            await self._client.set(key, value, px=_milliseconds(ttl))

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        if not items:
            return
        with _translated("SET (pipeline)"):
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value, ttl in items:
                    pipe.set(key, value, px=_milliseconds(ttl))
                await pipe.execute()

    async def add(self, key: str, value: bytes, ttl: float) -> bytes | None:
        with _translated("add (Lua)"):
            existing = await self._add(keys=[key], args=[value, _milliseconds(ttl)])
            return cast("bytes | None", existing)

    async def replace_if(
        self, key: str, expected: bytes, offset: int, value: bytes | None, ttl: float
    ) -> bool:
        if not expected:
            return False  # an empty comparison would match anything
        with _translated("replace_if (Lua)"):
            replaced = await self._replace_if(
                keys=[key], args=[expected, offset, value or b"", _milliseconds(ttl)]
            )
            return bool(replaced)

    async def delete(self, key: str) -> bool:
        with _translated("UNLINK"):
            return bool(await self._client.unlink(key))

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        with _translated("UNLINK"):
            deleted: int = await self._client.unlink(*keys)
            return deleted

    async def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        batch: list[bytes] = []
        with _translated("SCAN/UNLINK"):
            async for key in self._client.scan_iter(
                match=escape_glob(prefix) + "*", count=self._scan_batch
            ):
                batch.append(key)
                if len(batch) >= self._scan_batch:
                    deleted += await self._client.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await self._client.unlink(*batch)
        return deleted

    async def count_prefix(self, prefix: str, limit: int) -> KeyCount:
        pattern = escape_glob(prefix) + "*"
        cursor: int = 0
        count = 0
        examined = 0
        with _translated("SCAN"):
            while True:
                cursor, keys = await self._client.scan(
                    cursor=cursor, match=pattern, count=self._scan_batch
                )
                count += len(keys)
                examined += self._scan_batch
                if cursor == 0:
                    return KeyCount(count, complete=True)
                if examined >= limit:
                    return KeyCount(count, complete=False)

    async def info(self) -> BackendInfo:
        with _translated("INFO memory"):
            memory = await self._client.info("memory")
        limit = int(memory.get("maxmemory", 0))
        return BackendInfo(
            backend=self.name,
            memory_used_bytes=int(memory["used_memory"]),
            memory_limit_bytes=limit or None,
            eviction_policy=str(memory.get("maxmemory_policy", "")) or None,
        )

    async def ping(self) -> None:
        with _translated("PING"):
            await self._client.ping()

    def invalidation_feed(self, prefix: str) -> RedisTrackingFeed:
        """Changes to keys under ``prefix``, pushed by this server (see ``redis_tracking``)."""
        return RedisTrackingFeed(prefix, self._tracking_nodes)

    def _tracking_nodes(self) -> dict[str, ConnectionFactory]:
        kwargs = self._pool.connection_kwargs
        where = str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")
        return {where: resp2(self._pool.connection_class, kwargs)}

    async def close(self) -> None:
        await self._client.aclose()
        await self._pool.disconnect()

    def __repr__(self) -> str:
        kwargs = self._pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return f"RedisBackend({where}, db={kwargs.get('db', 0)})"


def _milliseconds(ttl: float) -> int:
    return max(1, int(ttl * 1000))
