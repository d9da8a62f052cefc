"""Redis Cluster backend: redis-py's asyncio ``RedisCluster``, short timeouts, bounded pools.

URL form (one or more seed nodes; any reachable one is enough to discover the cluster, so
list several to survive one being down at start-up)::

    redis+cluster://[username:password@]host:port[,host:port...][/][?option=value...]
    rediss+cluster://...        the same over TLS

There is no database number (a cluster has only database 0: ``/`` or ``/0``). A missing port
means 6379. Query options are those of a ``redis://`` URL (``ssl_cert_reqs=none``, say), and
take precedence over :class:`~ogcache.cache.backends.BackendOptions`, as for ``redis://``.

How it differs from the single-node :class:`~ogcache.cache.backends.redis.RedisBackend`:

* Batches (``get_many``, ``set_many``, ``delete_many``) are split by hash slot (one ``MGET``
  or ``UNLINK`` per slot, one ``SET`` per key) and sent as one pipeline per primary, all
  primaries at once: a batch costs one round trip to each primary that owns one of its keys
  (a 100-key batch on three primaries: three round trips, in parallel). As on a single node
  (a pipeline without ``MULTI``), a batch is not atomic.
* ``delete_prefix`` scans and unlinks on every primary (in parallel); ``count_prefix`` scans
  every primary in turn, ``limit`` bounding the total; ``info`` adds up memory over the
  primaries; ``ping`` asks every primary.
* The lease and compare-and-set scripts each touch one key, so they run on the key's primary
  unchanged; a primary that does not know a script yet (``NOSCRIPT``) is sent it.
* redis-py's cluster pools raise as soon as a node's ``max_connections`` are busy. Here at most
  ``max_connections`` calls are in flight at once (each uses at most one connection per
  node); further callers wait up to ``pool_timeout``, as with the single-node blocking pool.
* The cluster layout is learnt before the first call is sent: redis-py sends keyed commands
  that arrive before it knows the layout to random nodes (most then bounce with ``MOVED``).
* A failed call is not retried: it marks the cluster layout for refresh, and the next call
  re-discovers it (from any seed or known node), so a restarted or failed-over primary costs
  the calls in flight to it one error each. Calls to the other primaries are unaffected: a
  stopped primary fails only the keys in its slots. (redis-py's own retry of a pipeline closes
  every connection to every node first, failing calls to healthy primaries; it is off.)
  ``MOVED`` (a slot migrated or failed over) is followed at once, updating that slot only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from ogcache.cache.backend import BackendInfo, BackendOptions, KeyCount
from ogcache.cache.backends.redis import _ADD, _REPLACE_IF, _milliseconds, _translated, escape_glob
from ogcache.cache.backends.redis_pool import LEAN_HANDSHAKE
from ogcache.cache.backends.redis_tracking import ConnectionFactory, RedisTrackingFeed, resp2
from ogcache.cache.exceptions import BackendBusyError, CacheConfigurationError

__all__ = ["RedisClusterBackend", "parse_cluster_url"]

_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

T = TypeVar("T")


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The seed nodes of a ``redis+cluster://`` URL, and its client options."""
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise CacheConfigurationError(
            f"redis-cluster backend: URL must start with redis+cluster:// or rediss+cluster:// "
            f"(got {parts.scheme or 'no scheme'}://)"
        )
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for node in hosts.split(","):
        try:
            where = urlsplit(f"//{node.strip()}")
            host, port = where.hostname, where.port or 6379
        except ValueError as exc:
            raise CacheConfigurationError(
                f"redis-cluster backend: invalid node {node!r}: {exc}"
            ) from exc
        if not host:
            raise CacheConfigurationError(f"redis-cluster backend: invalid node {node!r}")
        nodes.append((host, port))
    # The rest (credentials, database, query options) reads as a single-node URL would.
    single = f"{scheme}://{userinfo + '@' if userinfo else ''}{hosts.split(',')[0]}"
    single += parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        options: dict[str, Any] = dict(parse_url(single))
    except ValueError as exc:
        raise CacheConfigurationError(f"redis-cluster backend: invalid URL: {exc}") from exc
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("db", 0) != 0:
        raise CacheConfigurationError("redis-cluster backend: a cluster has only database 0")
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return nodes, options


class RedisClusterBackend:
    """A Redis Cluster (``redis+cluster://`` or ``rediss+cluster://`` URL)."""

    name = "redis-cluster"

    def __init__(self, url: str, options: BackendOptions | None = None) -> None:
        options = options or BackendOptions()
        nodes, url_options = parse_cluster_url(url)
        client_options: dict[str, Any] = {
            **LEAN_HANDSHAKE,
            "max_connections": options.max_connections,  # per node
            "socket_timeout": options.timeout,
            "socket_connect_timeout": options.connect_timeout,
            # No retries (redis-py's default: ten, with backoff). A failed call marks the layout
            # for refresh, so the next call finds a failed-over or restarted primary. A retried
            # pipeline would first close every connection to every node and sleep 0.25 s:
            # with one primary down, that failed nearly all calls to the healthy ones too.
            "retry": Retry(NoBackoff(), 0),
            # On MOVED, update that slot's owner only: redis-py's periodic full refresh on
            # MOVED closes every connection, failing the other calls in flight.
            "reinitialize_steps": 0,
            **url_options,
        }
        try:
            self._client = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in nodes], **client_options
            )
        except (TypeError, ValueError, RedisClusterException) as exc:
            raise CacheConfigurationError(f"redis-cluster backend: invalid URL: {exc}") from exc
        self._nodes = nodes
        self._slots = asyncio.Semaphore(options.max_connections)
        self._pool_timeout = options.pool_timeout
        self._scan_batch = options.scan_batch
        self._add = self._client.register_script(_ADD)
        self._replace_if = self._client.register_script(_REPLACE_IF)

    @property
    def client(self) -> RedisCluster:
        """The redis-py cluster client, for commands the backend does not wrap."""
        return self._client

    @asynccontextmanager
    async def call(self, operation: str) -> AsyncIterator[None]:
        """One call: wait (bounded) for a free connection slot; translate errors."""
        with _translated(operation):
            if self._slots.locked():
                try:
                    async with asyncio.timeout(self._pool_timeout):
                        await self._slots.acquire()
                except TimeoutError:
                    raise BackendBusyError(
                        f"redis cluster: no connection free within pool_timeout="
                        f"{self._pool_timeout} s: raise max_connections or pool_timeout"
                    ) from None
            else:
                await self._slots.acquire()  # free: returns at once
            try:
                # Learn the layout before the first command, not during it: redis-py routes
                # keyed commands that arrive before it knows the layout to a random node.
                await self._client.initialize()  # a no-op once the layout is known
                yield
            except AttributeError as exc:
                # On CLUSTERDOWN redis-py closes every connection, also those of calls in
                # flight, which then fail with AttributeError (the writer is gone).
                raise RedisConnectionError(f"connection closed during the call: {exc}") from exc
            finally:
                self._slots.release()

    async def get(self, key: str) -> bytes | None:
        async with self.call("GET"):
            return cast("bytes | None", await self._client.get(key))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        async with self.call("MGET (per slot, pipeline per node)"):
            return cast("list[bytes | None]", await self._client.mget_nonatomic(list(keys)))

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        async with self.call("SET"):
            await self._client.set(key, value, px=_milliseconds(ttl))

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        if not items:
            return
        async with self.call("SET (pipeline per node)"):
            pipe = self._client.pipeline()
            for key, value, ttl in items:
                pipe.set(key, value, px=_milliseconds(ttl))
            await pipe.execute()

    async def add(self, key: str, value: bytes, ttl: float) -> bytes | None:
        async with self.call("add (Lua)"):
            existing = await self._add(keys=[key], args=[value, _milliseconds(ttl)])
            return cast("bytes | None", existing)

    async def replace_if(
        self, key: str, expected: bytes, offset: int, value: bytes | None, ttl: float
    ) -> bool:
        if not expected:
            return False  # an empty comparison would match anything
        async with self.call("replace_if (Lua)"):
            replaced = await self._replace_if(
                keys=[key], args=[expected, offset, value or b"", _milliseconds(ttl)]
            )
            return bool(replaced)

    async def delete(self, key: str) -> bool:
        async with self.call("UNLINK"):
            return bool(await self._client.execute_command("UNLINK", key))

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        async with self.call("UNLINK (per slot, pipeline per node)"):
            return await self._client.unlink(*keys)

    async def delete_prefix(self, prefix: str) -> int:
        pattern = escape_glob(prefix) + "*"

        async def on(node: ClusterNode) -> int:
            deleted = 0
            cursor = 0
            while True:
                cursor, keys = await self._scan(node, cursor, pattern)
                if keys:
                    deleted += await self._client.unlink(*keys)
                if cursor == 0:
                    return deleted

        async with self.call("SCAN/UNLINK on every primary"):
            return sum(await self._on_every_primary(on))

    async def count_prefix(self, prefix: str, limit: int) -> KeyCount:
        pattern = escape_glob(prefix) + "*"
        count = 0
        examined = 0
        async with self.call("SCAN on every primary"):
            primaries = self._client.get_primaries()
            for index, node in enumerate(primaries):
                cursor = 0
                while True:
                    cursor, keys = await self._scan(node, cursor, pattern)
                    count += len(keys)
                    examined += self._scan_batch
                    if cursor == 0:
                        break
                    if examined >= limit:
                        return KeyCount(count, complete=False)
                if examined >= limit and index < len(primaries) - 1:
                    return KeyCount(count, complete=False)
        return KeyCount(count, complete=True)

    async def info(self) -> BackendInfo:
        async def on(node: ClusterNode) -> dict[str, Any]:
            return await self._client.info("memory", target_nodes=node)

        async with self.call("INFO memory on every primary"):
            memories = await self._on_every_primary(on)
        limits = [int(memory.get("maxmemory", 0)) for memory in memories]
        policies = {str(memory.get("maxmemory_policy", "")) for memory in memories}
        return BackendInfo(
            backend=self.name,
            memory_used_bytes=sum(int(memory["used_memory"]) for memory in memories),
            # One primary without a limit makes the cluster's total unlimited.
            memory_limit_bytes=sum(limits) if limits and all(limits) else None,
            eviction_policy=policies.pop() if len(policies) == 1 else None,
        )

    def invalidation_feed(self, prefix: str) -> RedisTrackingFeed:
        """Changes to keys under ``prefix``, pushed by every primary (each tracks its own
        slots); the feed starts over whenever the set of primaries changes."""
        return RedisTrackingFeed(prefix, self._tracking_nodes)

    def _tracking_nodes(self) -> dict[str, ConnectionFactory]:
        return {
            node.name: resp2(node.connection_class, node.connection_kwargs)
            for node in self._client.get_primaries()
        }

    async def ping(self) -> None:
        async def on(node: ClusterNode) -> None:
            await self._client.ping(target_nodes=node)

        async with self.call("PING every primary"):
            await self._on_every_primary(on)

    async def close(self) -> None:
        await self._client.aclose()
        # redis-py's aclose does nothing while a failed call has left the layout marked for
        # refresh, leaving connections open: close every node's connections here as well.
        await self._client.nodes_manager.aclose("nodes_cache")
        await self._client.nodes_manager.aclose("startup_nodes")

    async def _on_every_primary(self, call: Callable[[ClusterNode], Awaitable[T]]) -> list[T]:
        """``call`` on every primary at once; the first error raised once all have ended."""
        results = await asyncio.gather(
            *(call(node) for node in self._client.get_primaries()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return cast("list[T]", results)

    async def _scan(self, node: ClusterNode, cursor: int, pattern: str) -> tuple[int, list[bytes]]:
        # On a cluster client, SCAN answers ({node name: next cursor}, keys).
        cursors, keys = cast(
            "tuple[dict[str, int], list[bytes]]",
            await self._client.scan(
                cursor=cursor, match=pattern, count=self._scan_batch, target_nodes=node
            ),
        )
        return int(cursors[node.name]), keys

    def __repr__(self) -> str:
        return "RedisClusterBackend(" + ",".join(f"{h}:{p}" for h, p in self._nodes) + ")"
