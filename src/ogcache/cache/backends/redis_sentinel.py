"""Redis behind Sentinel: the single-node backend, finding its primary through the sentinels.

URL form (the hosts are sentinels, not Redis servers; any one that answers is enough, so
list several to survive one being down)::

    redis+sentinel://[username:password@]host[:port][,host[:port]...]/service_name[/db][?option=value...]
    rediss+sentinel://...        the same, with TLS to the Redis servers

``service_name`` is the name the sentinels monitor (``sentinel monitor <name> ...``); ``db``
defaults to 0; a missing port means 26379. Credentials and query options are those of a
``redis://`` URL and apply to the Redis servers (taking precedence over
:class:`~ogcache.cache.backends.BackendOptions`, as for ``redis://``); sentinels that require
a password take the query options ``sentinel_username`` and ``sentinel_password``.

Every command is :class:`~ogcache.cache.backends.redis.RedisBackend`'s; only the pool
differs: redis-py's ``SentinelConnectionPool``, made blocking and bounded like the single-node
pool (same timeouts, same single immediate retry on a connection error). A new connection asks
the sentinels where the primary is. Across a failover:

* Each backend follows the primary: a background task listens for a sentinel's
  ``+switch-master`` announcements (and asks again every second, in case it missed one or its
  sentinel is gone). Once the primary has moved, a connection to the old one is closed when
  it is next taken from the pool or returned to it: calls in flight finish where they are,
  the next ones go to the new primary. Without this, pooled connections would keep writing
  to the old primary until Sentinel demotes it, about ten seconds later, and every one of
  those writes (invalidations too) would be lost when it re-syncs from the new primary.
* A call whose connection fails anyway (a killed primary; a demoted one, which Sentinel
  disconnects and which refuses writes with ``READONLY``, a connection error to redis-py) is
  retried once, at once: the retry reconnects, asking the sentinels again. While there is no
  primary at all (a crash, until the promotion) calls fail fast and the circuit breaker opens.
* Writes the old primary accepts between the replica's promotion and the sentinel's
  announcement (up to a second or so) are lost, as with any Sentinel client: replication is
  asynchronous. A lost invalidation leaves its entry stale until the entry's TTL ends.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ogcache.cache.backends.redis import RedisBackend
from ogcache.cache.backends.redis_pool import BoundedConnectionPool
from ogcache.cache.backends.redis_tracking import ConnectionFactory, resp2

__all__ = ["RedisSentinelBackend", "parse_sentinel_url"]

_SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}
DEFAULT_SENTINEL_PORT = 26379

logger = logging.getLogger("ogcache.cache")


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """The sentinels, the service name and the Redis connection options of a URL.

    Raises ``ValueError`` for a URL that is not a valid ``redis+sentinel://`` one.
    """
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError("the URL must start with redis+sentinel:// or rediss+sentinel://")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels: list[tuple[str, int]] = []
    for node in hosts.split(","):
        where = urlsplit(f"//{node.strip()}")
        if not where.hostname:
            raise ValueError(f"invalid sentinel address {node!r}")
        sentinels.append((where.hostname, where.port or DEFAULT_SENTINEL_PORT))
    service, _, db = unquote(parts.path).strip("/").partition("/")
    if not service:
        raise ValueError("the URL must name the monitored service: .../service_name[/db]")
    if db and not db.isdigit():
        raise ValueError(f"invalid database number {db!r}")
    # The rest (credentials, database, query options) reads as a single-node URL would.
    single = f"{scheme}://{userinfo + '@' if userinfo else ''}localhost/{db or 0}"
    options: dict[str, Any] = dict(parse_url(single + (f"?{parts.query}" if parts.query else "")))
    options.pop("host", None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True  # SentinelConnectionPool then picks its TLS connection class
    return sentinels, service, options


class _BlockingSentinelPool(SentinelConnectionPool, BoundedConnectionPool):
    """redis-py's Sentinel pool, blocking and bounded, that follows the primary.

    Callers wait (up to the pool's ``timeout``) when every connection is busy. A connection
    to a server that is no longer the primary is closed when it is taken from the pool or
    returned to it (never while another task may hold it), and reconnects to the primary.
    """

    follow_interval = 1.0
    _follower: asyncio.Task[None] | None = None

    async def get_master_address(self) -> tuple[str, int]:
        if self._follower is None:
            self._follower = asyncio.create_task(self._follow())
        address: tuple[str, int] = await self.sentinel_manager.discover_master(self.service_name)
        if address != self.master_address:
            if self.master_address is not None:
                logger.warning(
                    "cache primary %r moved to %s:%s (Sentinel failover)",
                    self.service_name,
                    *address,
                    extra={"event": "cache.primary_moved"},
                )
            self.master_address = address
        return address

    def _stale(self, connection: AbstractConnection) -> bool:
        where = (getattr(connection, "host", None), getattr(connection, "port", None))
        return self.master_address not in (None, where) and connection.is_connected

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        if self._stale(connection):
            await connection.disconnect()
        await super().ensure_connection(connection)

    async def release(self, connection: AbstractConnection) -> None:
        if self._stale(connection):
            connection.mark_for_reconnect()  # type: ignore[no-untyped-call]  # the pool closes it
        await super().release(connection)

    async def _follow(self) -> None:
        """Re-read the primary's address on each ``+switch-master`` a sentinel announces and
        at least every ``follow_interval`` seconds, not only when a connection opens: Sentinel
        demotes the old primary seconds after the switch, and until then pooled connections
        to it would still succeed, with every write they make lost (invalidations too)."""
        pubsub: PubSub | None = None
        try:
            while True:
                try:
                    if pubsub is None:
                        pubsub = self.sentinel_manager.sentinels[0].pubsub()
                        await pubsub.subscribe("+switch-master")
                    await pubsub.get_message(timeout=self.follow_interval)
                except (RedisError, OSError):  # that sentinel is gone: another one, later
                    await _close(pubsub)
                    pubsub = None
                    await asyncio.sleep(self.follow_interval)
                with suppress(RedisError, OSError):
                    await self.get_master_address()
        finally:
            await _close(pubsub)

    async def stop_following(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None


async def _close(pubsub: PubSub | None) -> None:
    if pubsub is not None:
        with suppress(RedisError, OSError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]


class RedisSentinelBackend(RedisBackend):
    """The primary of a Sentinel-monitored Redis (``redis+sentinel://`` URL)."""

    name = "redis-sentinel"

    def _connection_pool(self, url: str, **options: Any) -> BoundedConnectionPool:
        sentinels, service, url_options = parse_sentinel_url(url)
        if "connection_class" in options:
            raise ValueError("a custom connection_class cannot find the primary via Sentinel")
        sentinel_options: dict[str, Any] = {
            "socket_timeout": options["socket_timeout"],
            "socket_connect_timeout": options["socket_connect_timeout"],
            "retry": Retry(NoBackoff(), 1),
        }
        for option in ("username", "password"):
            value = url_options.pop(f"sentinel_{option}", None)
            if value is not None:
                sentinel_options[option] = value
        self._service = service
        self._sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
        self._sentinel_pool = _BlockingSentinelPool(  # type: ignore[no-untyped-call]
            service, self._sentinel, **{**options, **url_options}
        )
        return self._sentinel_pool

    def _tracking_nodes(self) -> dict[str, ConnectionFactory]:
        """The primary as last discovered (none before the first call): the feed starts
        over whenever it moves."""
        address = self._sentinel_pool.master_address
        if address is None:
            return {}
        kwargs = dict(self._sentinel_pool.connection_kwargs)
        kwargs.pop("connection_pool", None)
        kwargs.update(host=address[0], port=address[1])
        ssl = kwargs.pop("ssl", False) or issubclass(
            self._sentinel_pool.connection_class, SSLConnection
        )
        return {f"{address[0]}:{address[1]}": resp2(SSLConnection if ssl else Connection, kwargs)}

    async def close(self) -> None:
        await self._sentinel_pool.stop_following()
        await super().close()
        await self._sentinel.aclose()

    def __repr__(self) -> str:
        where = ",".join(
            f"{s.connection_pool.connection_kwargs['host']}:"
            f"{s.connection_pool.connection_kwargs['port']}"
            for s in self._sentinel.sentinels
        )
        return (
            f"RedisSentinelBackend({self._service} via {where}, "
            f"db={self._pool.connection_kwargs.get('db', 0)})"
        )
