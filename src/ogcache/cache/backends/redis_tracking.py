"""Invalidations from Redis itself: server-assisted client-side caching in broadcast mode.

One dedicated connection per primary runs ``CLIENT TRACKING on REDIRECT <own id> BCAST
PREFIX <prefix>`` and subscribes to ``__redis__:invalidate``. From then on Redis pushes, on
that connection, the name of every key under the prefix that any client changes (written,
deleted, expired, evicted) and a null for a flush. Compared with a pub/sub channel of our own
(measured side by side in ``bench/invalidation.py``, see ``docs/local-cache.md``): writers pay
nothing extra, and changes that bypass ogcache (expiry, eviction, ``redis-cli DEL``, another
application) are reported too.

The feed is *live* only while every primary's connection is subscribed and has been heard
from within ``max_silence`` seconds: when idle it sends ``PING`` every ``heartbeat``
seconds, so a hung server (SIGSTOP, a partition: the socket stays open but nothing arrives)
is noticed within ``max_silence``. On any doubt — a connection error, silence, the set of
primaries or the primary's address changing — it reports ``None`` ("anything may have
changed"), reconnects, and reports ``None`` again once subscribed, so nothing read before the
gap survives it.

A *fence* (:meth:`RedisTrackingFeed.fence`) makes reads strict across processes: it returns
once every primary has answered a ``PING`` sent on the tracking connection after the call.
Redis answers in order on one connection, so by then every invalidation of a change applied
before the call has been processed here. Concurrent callers share one round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from ogcache.cache.invalidation import OnChange

__all__ = ["ConnectionFactory", "RedisTrackingFeed"]

logger = logging.getLogger("ogcache.cache")

ConnectionFactory = Callable[[], AbstractConnection]
"""Makes a new, unconnected RESP2 connection to one primary."""

_CHANNEL: Final = b"__redis__:invalidate"
_PONG: Final = [b"pong", b""]  # PING's answer on a subscribed RESP2 connection


class RedisTrackingFeed:
    """Broadcast key tracking on every primary ``nodes()`` names (address -> factory).

    ``nodes`` is called again every ``heartbeat`` seconds; a changed set of addresses means
    a failover or a resharding, and the feed starts over.
    """

    _channel: bytes = _CHANNEL

    def __init__(
        self,
        prefix: str,
        nodes: Callable[[], Mapping[str, ConnectionFactory]],
        *,
        heartbeat: float = 0.2,
        max_silence: float = 1.0,
        retry_max: float = 2.0,
    ) -> None:
        if not 0 < heartbeat < max_silence:
            raise ValueError("heartbeat must be > 0 and below max_silence")
        self._prefix = prefix
        self._nodes = nodes
        self._heartbeat = heartbeat
        self._max_silence = max_silence
        self._retry_max = retry_max
        self._on_change: OnChange | None = None
        self._task: asyncio.Task[None] | None = None
        # Live while now < _live_until (refreshed by every message of every connection).
        self._live_until = 0.0
        self._heard: dict[str, float] = {}
        self._pinged: dict[str, float] = {}  # when each connection was last sent a PING
        self._doubted: dict[str, float] = {}  # when its silence passed max_silence
        self.reconnects = 0
        self.messages = 0
        self._down = False
        self._rounds: _Rounds | None = None

    @property
    def live(self) -> bool:
        return time.monotonic() < self._live_until

    async def fence(self, patience: float | None = None) -> bool:
        """Wait until every change applied by Redis before this call has been reported here;
        ``False`` (at once, or when the connection is lost meanwhile, or past ``patience``
        seconds) if it cannot be."""
        rounds = self._rounds
        if rounds is None or not self.live:
            return False
        return await rounds.join(patience)

    def start(self, on_change: OnChange) -> None:
        if self._task is None:
            self._on_change = on_change
            self._task = asyncio.create_task(self._run(), name="ogcache-invalidation-feed")

    async def close(self) -> None:
        self._live_until = 0.0
        if self._task is not None:
            await _stop([self._task])
            self._task = None

    def _changed(self, keys: list[str] | None) -> None:
        assert self._on_change is not None
        self._on_change(keys)

    def _refresh_live(self) -> None:
        """Live until the least recently heard connection has been silent too long."""
        if self._heard:
            self._live_until = min(self._heard.values()) + self._max_silence

    async def _run(self) -> None:
        delay = 0.05
        while True:
            nodes = dict(self._nodes())
            try:
                if not nodes:
                    raise ConnectionError("no primary known yet")
                await self._listen(nodes)
                delay = 0.05
            except (RedisError, OSError, ConnectionError, TimeoutError) as exc:
                self.reconnects += 1
                if not self._down:  # once per outage, not once per attempt
                    self._down = True
                    logger.warning(
                        "cache invalidation feed interrupted (%s); the in-process tier is off "
                        "until it is back",
                        exc,
                        extra={"event": "cache.feed_interrupted"},
                    )
            finally:
                self._live_until = 0.0
                self._heard.clear()
                self._changed(None)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)

    async def _listen(self, nodes: dict[str, ConnectionFactory]) -> None:
        """Subscribe on every node, then relay messages until something goes wrong."""
        connections: dict[str, AbstractConnection] = {}
        try:
            for address, factory in nodes.items():
                connections[address] = await self._subscribe(factory)
            self._changed(None)  # whatever changed before we were listening
            if self._down:
                self._down = False
                logger.warning(
                    "cache invalidation feed back; the in-process tier serves again",
                    extra={"event": "cache.feed_restored"},
                )
            now = time.monotonic()
            self._heard = dict.fromkeys(connections, now)
            self._pinged, self._doubted = dict.fromkeys(connections, 0.0), {}
            self._refresh_live()
            self._rounds = rounds = _Rounds(connections)
            readers = {
                asyncio.create_task(self._relay(address, connection), name=f"feed {address}")
                for address, connection in connections.items()
            }
            readers.add(asyncio.create_task(rounds.run(), name="feed fences"))
            try:
                while True:
                    done, _ = await asyncio.wait(
                        readers, timeout=self._heartbeat, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done:
                        task.result()  # a reader only ends by raising
                    if set(self._nodes()) != set(connections):
                        raise ConnectionError("the primaries changed")
                    await self._keep_alive(connections)
            finally:
                self._rounds = None
                rounds.end()
                await _stop(readers)
        finally:
            for connection in connections.values():
                with contextlib.suppress(Exception):
                    await connection.disconnect()

    async def _subscribe(self, factory: ConnectionFactory) -> AbstractConnection:
        connection = factory()
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
            await self._track(connection)
            await _send(connection, "SUBSCRIBE", self._channel)
            reply = await connection.read_response()
            if not (isinstance(reply, list) and reply[:1] == [b"subscribe"]):
                raise ConnectionError(f"unexpected reply to SUBSCRIBE: {reply!r}")
            # From here every read passes its own timeout, and a PING is written at once:
            # with a socket timeout redis-py sends through asyncio.wait_for, a task per PING
            # (a quarter of a fenced request's time). A hung server is caught by the silence.
            connection.socket_timeout = None
        except BaseException:  # failed or cancelled (a cache closed while subscribing)
            with contextlib.suppress(Exception):
                await connection.disconnect()
            raise
        return connection

    async def _track(self, connection: AbstractConnection) -> None:
        """Have Redis send the names of changed keys under the prefix to this connection."""
        await _send(connection, "CLIENT", "ID")
        client_id = await connection.read_response()
        await _send(
            connection,
            "CLIENT", "TRACKING", "on", "REDIRECT", client_id, "BCAST", "PREFIX", self._prefix,
        )  # fmt: skip
        await _expect(connection, b"OK")

    async def _relay(self, address: str, connection: AbstractConnection) -> None:
        """Read and act on every message (no timeout per read: :meth:`_keep_alive` watches
        for silence, once a heartbeat, instead of a timer around each of many reads)."""
        while True:
            message: Any = await connection.read_response()
            self._heard[address] = time.monotonic()
            self._refresh_live()
            if isinstance(message, list) and message[:2] == [b"message", self._channel]:
                self.messages += 1
                self._changed(self._keys(message[2]))
            elif message == _PONG and self._rounds is not None:
                self._rounds.answered(address)

    async def _keep_alive(self, connections: dict[str, AbstractConnection]) -> None:
        """Once a heartbeat: PING a connection quiet for a heartbeat (once per quiet spell);
        one silent past ``max_silence`` gets one more heartbeat (this event loop may have been
        blocked, its answer unread), then the subscription starts over."""
        now = time.monotonic()
        for address, connection in connections.items():
            heard = self._heard[address]
            if now - heard < self._heartbeat:
                continue
            if self._pinged[address] < heard:
                self._pinged[address] = now
                await self._ping(address, connection)
            elif now - heard > self._max_silence:
                doubted = self._doubted.get(address)
                if doubted is None or doubted < heard:
                    self._doubted[address] = now
                elif now - doubted >= self._heartbeat:
                    raise TimeoutError(f"{address} silent for {self._max_silence} s")

    async def _ping(self, address: str, connection: AbstractConnection) -> None:
        if self._rounds is not None:
            self._rounds.sent[address] += 1  # counted first: answers come back in order
        await _send(connection, "PING")

    def _keys(self, payload: Any) -> list[str] | None:
        """The keys a message on the channel names; None: every key (a flush)."""
        return None if payload is None else [key.decode() for key in payload]


class _Rounds:
    """Fence rounds over one subscription's connections: a ``PING`` on each, sent after the
    round's callers asked, and their answers counted (heartbeat PINGs are counted too)."""

    def __init__(self, connections: dict[str, AbstractConnection]) -> None:
        self._connections = connections
        self.sent = dict.fromkeys(connections, 0)
        self._answers = dict.fromkeys(connections, 0)
        self._waiting: list[asyncio.Future[bool]] = []  # for the next round
        self._flight: list[asyncio.Future[bool]] = []  # for the round under way
        self._asked = asyncio.Event()
        self._done = asyncio.Event()
        self._targets: dict[str, int] = {}
        self._patience: float | None = None
        self._overdue = False
        self._loop = asyncio.get_running_loop()

    async def join(self, patience: float | None) -> bool:
        if self._overdue:  # the round under way is past its patience: none will come soon
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._patience = patience
        self._asked.set()
        return bool(await waiter)

    async def run(self) -> None:
        """Start a round whenever callers wait and none is under way; only ends by raising
        (a failed send), like the readers."""
        while True:
            await self._asked.wait()
            self._asked.clear()
            self._flight, self._waiting = self._waiting, []
            patience = self._patience
            timer = None if patience is None else self._loop.call_later(patience, self._overrun)
            try:
                fenced = await self._round()
            finally:
                if timer is not None:
                    timer.cancel()
            self._overdue = False
            _settle(self._flight, fenced)
            self._flight = []

    def _overrun(self) -> None:
        """The round is past its callers' patience: they, those waiting for the next round,
        and any caller until it ends get ``False`` (and read the store, which the breaker
        guards); the round goes on, its answers counted."""
        self._overdue = True
        _settle(self._flight + self._waiting, False)
        self._flight, self._waiting = [], []

    async def _round(self) -> bool:
        self._done.clear()
        targets = {}
        for address, connection in self._connections.items():
            self.sent[address] += 1
            targets[address] = self.sent[address]
            await _send(connection, "PING")
        self._targets = targets
        self._check()
        await self._done.wait()
        return True

    def answered(self, address: str) -> None:
        self._answers[address] += 1
        self._check()

    def _check(self) -> None:
        answers = self._answers
        if self._targets and all(answers[a] >= n for a, n in self._targets.items()):
            self._targets = {}
            _settle(self._flight, True)  # here, not a loop turn later in run()
            self._flight = []
            self._done.set()

    def end(self) -> None:
        """The subscription is gone: nobody waiting can be told all was processed."""
        _settle(self._flight + self._waiting, False)
        self._flight, self._waiting = [], []


def _settle(waiters: list[asyncio.Future[bool]], result: bool) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(result)


async def _send(connection: AbstractConnection, *command: Any) -> None:
    """``send_command``, without losing a cancellation: with a socket timeout redis-py sends
    through ``asyncio.wait_for``, which on Python 3.11 can swallow a cancellation that arrives
    as the send completes (CPython gh-86296); the task would then go on forever."""
    await connection.send_command(*command)
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _stop(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until they have ended, cancelling again any that survived a
    cancellation (see :func:`_send`)."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        # Long enough for a task's own teardown to finish before it is cancelled again.
        _, pending = await asyncio.wait(pending, timeout=1.0)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: the reason it ended was acted on, or no longer matters


async def _expect(connection: AbstractConnection, expected: bytes) -> None:
    reply = await connection.read_response()
    if reply != expected and reply != expected.decode():
        raise ConnectionError(f"unexpected reply {reply!r}")


def resp2(
    connection_class: type[AbstractConnection], kwargs: Mapping[str, Any]
) -> ConnectionFactory:
    """A factory of RESP2 connections like the pool's (the feed relies on RESP2 pub/sub)."""
    options = {**kwargs, "protocol": 2}
    options.pop("retry", None)
    return lambda: connection_class(**options)
