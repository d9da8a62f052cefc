"""The Upstash backend against the REST gateway of ``tests.support.upstash_gateway`` (a real
Redis behind it): round trips, encoding, scripts, authentication and failures.

The shared suite (``tests/cache``) runs over this backend too; this file covers what is
particular to Upstash's REST protocol.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from ogcache.cache import (
    BackendError,
    BackendOptions,
    Cache,
    CacheConfigurationError,
    Namespace,
    Policy,
)
from ogcache.cache.backends import create_upstash_backend
from ogcache.cache.backends.upstash import UpstashBackend
from tests.conftest import unique_prefix
from tests.support.servers import free_port, start_redis
from tests.support.upstash_gateway import UpstashGateway

ITEMS = Namespace("item", ttl=60)
WRONG_TOKEN = "wrong-token-0123456789abcdef"


@pytest.fixture
def gateway(upstash: UpstashGateway) -> Iterator[UpstashGateway]:
    upstash.reset()
    yield upstash
    upstash.reset()


@pytest.fixture
async def backend(gateway: UpstashGateway) -> AsyncIterator[UpstashBackend]:
    store = UpstashBackend(gateway.url, gateway.token)
    yield store
    await store.close()


@pytest.fixture
async def cache(backend: UpstashBackend, gateway: UpstashGateway) -> AsyncIterator[Cache]:
    instance = Cache(backend, prefix=unique_prefix())
    await instance.ping()
    gateway.reset()
    yield instance
    await instance.clear()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """The Redis behind the gateway, to look at the bytes actually stored."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _load() -> str:
    return "from the database"


# --- one HTTP request per batch -----------------------------------------------------------


async def test_get_many_is_one_request(cache: Cache, gateway: UpstashGateway) -> None:
    await cache.get_many(ITEMS, [str(i) for i in range(100)])
    assert gateway.requests == {"/": 1}
    assert gateway.commands == ["MGET"]


async def test_set_many_is_one_request(cache: Cache, gateway: UpstashGateway) -> None:
    await cache.set_many(ITEMS, {str(i): {"i": i} for i in range(100)})
    assert gateway.requests == {"/pipeline": 1}
    assert gateway.commands == ["SET"] * 100
    assert len(await cache.get_many(ITEMS, [str(i) for i in range(100)])) == 100


async def test_delete_many_is_one_request(cache: Cache, gateway: UpstashGateway) -> None:
    await cache.set_many(ITEMS, {str(i): i for i in range(100)})
    gateway.reset()
    await cache.delete_many(ITEMS, [str(i) for i in range(100)])
    assert gateway.requests == {"/": 1}
    assert gateway.commands == ["UNLINK"]
    assert await cache.get_many(ITEMS, [str(i) for i in range(100)]) == {}


async def test_a_hit_is_one_request(cache: Cache, gateway: UpstashGateway) -> None:
    await cache.set(ITEMS, "k", 1)
    gateway.reset()

    async def load() -> int:
        raise AssertionError("a hit must not load")

    assert await cache.get_or_load(ITEMS, "k", load) == 1
    assert gateway.requests == {"/": 1}


async def test_a_miss_is_a_get_a_lease_and_a_compare_and_set(
    cache: Cache, gateway: UpstashGateway
) -> None:
    await cache.get_or_load(ITEMS, "warm-up", _load)  # Upstash now holds both scripts
    gateway.reset()
    assert await cache.get_or_load(ITEMS, "k", _load) == "from the database"
    assert gateway.commands == ["GET", "EVALSHA", "EVALSHA"]  # scripts by SHA, no text sent


async def test_every_request_asks_for_base64_replies(cache: Cache, gateway: UpstashGateway) -> None:
    await cache.set(ITEMS, "k", "v")
    await cache.get(ITEMS, "k")
    await cache.set_many(ITEMS, {"a": 1})
    await cache.count_keys()
    assert gateway.encodings
    assert set(gateway.encodings) == {"base64"}


async def test_each_request_carries_the_sync_token_of_the_previous_reply(
    backend: UpstashBackend, gateway: UpstashGateway
) -> None:
    key = f"{unique_prefix()}:k"
    await backend.ping()  # a reply, hence a token
    gateway.reset()
    await backend.set(key, b"v", 60)
    await backend.delete(key)
    await backend.get(key)
    tokens = [token or "" for token in gateway.sync_tokens]
    assert all(token.startswith("sync-") for token in tokens)
    numbers = [int(token.removeprefix("sync-")) for token in tokens]
    assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2]  # each the latest reply's


async def test_clear_prefix_pipelines_each_unlink_with_the_next_scan(
    gateway: UpstashGateway,
) -> None:
    cache = Cache(UpstashBackend(gateway.url, gateway.token), prefix=unique_prefix())
    try:
        await cache.set_many(ITEMS, {str(i): i for i in range(2500)})
        gateway.reset()
        assert await cache.clear_prefix("item:") == 2500
        scans = gateway.commands.count("SCAN")
        assert scans >= 2
        assert sum(gateway.requests.values()) <= scans + 1  # an UNLINK rides with a SCAN
        assert (await cache.count_keys()).count == 0
    finally:
        await cache.clear()
        await cache.close()


async def test_count_keys_stops_at_its_bound(gateway: UpstashGateway) -> None:
    backend = UpstashBackend(gateway.url, gateway.token, BackendOptions(scan_batch=10))
    cache = Cache(backend, prefix=unique_prefix(), policy=Policy(key_count_limit=10))
    try:
        await cache.set_many(ITEMS, {str(i): i for i in range(100)})
        counted = await cache.count_keys()
        assert not counted.complete
        assert counted.count < 100
    finally:
        await cache.clear()
        await cache.close()


# --- values: exact bytes both ways ---------------------------------------------------------

VALUES = [
    "Привет, OG Lab 🌿 — «цена» 1 100 ₽".encode(),
    b'{"w":"0123456789abcdef","v":"\xc3\xa9t\xc3\xa9"}',
    b"\x80not json",
    bytes(range(256)),
    b"\x00\x00\xff\xfe",
    b"OK",  # the one string Upstash leaves unencoded
    b"",
    os.urandom(64 * 1024),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{len(v)}B")
async def test_values_round_trip_exactly(backend: UpstashBackend, value: bytes) -> None:
    key = f"{unique_prefix()}:ключ:🌿"
    other = f"{unique_prefix()}:other"
    try:
        await backend.set(key, value, 60)
        assert await backend.get(key) == value
        await backend.set_many([(other, value, 60), (key, value + b"!", 60)])
        assert await backend.get_many([other, key, "absent"]) == [value, value + b"!", None]
        assert await backend.add(key, b"ignored", 60) == value + b"!"
        assert await backend.delete(key)
        assert await backend.add(key, value, 60) is None
        assert await backend.get(key) == value
    finally:
        await backend.delete_many([key, other])


@pytest.mark.parametrize("value", VALUES[:5], ids=lambda v: f"{len(v)}B")
async def test_compare_and_set_compares_and_stores_exact_bytes(
    backend: UpstashBackend, value: bytes
) -> None:
    key = f"{unique_prefix()}:k"
    stored = b"head" + value + b"\xfftail"
    try:
        await backend.set(key, stored, 60)
        assert not await backend.replace_if(key, value + b"\xfe", 4, b"new", 60)
        if value:
            assert await backend.replace_if(key, value, 4, b"\x81" + value, 60)
            assert await backend.get(key) == b"\x81" + value
            assert await backend.replace_if(key, b"\x81", 0, None, 60)  # a delete
            assert await backend.get(key) is None
    finally:
        await backend.delete(key)


async def test_utf8_values_are_plain_commands_and_other_bytes_a_decoding_script(
    backend: UpstashBackend, gateway: UpstashGateway, redis: Redis
) -> None:
    text, binary = f"{unique_prefix()}:text", f"{unique_prefix()}:binary"
    try:
        gateway.reset()
        await backend.set(text, "é🌿".encode(), 60)
        await backend.set(binary, b"\xff\x00\x80", 60)
        assert gateway.commands == ["SET", "EVAL"]
        assert await redis.get(text) == "é🌿".encode()  # the same bytes as the Redis backend's
        assert await redis.get(binary) == b"\xff\x00\x80"
        assert 59_000 < await redis.pttl(binary) <= 60_000
    finally:
        await backend.delete_many([text, binary])


async def test_a_script_the_database_does_not_hold_is_sent_once_as_eval(
    tmp_path: Path,
) -> None:
    fresh = start_redis(tmp_path)  # no script cached yet
    gateway = UpstashGateway(fresh.url, token="fresh-token").start()
    backend = UpstashBackend(gateway.url, gateway.token)
    try:
        assert await backend.add("k", b"v", 60) is None
        assert gateway.commands == ["EVALSHA", "EVAL"]  # NOSCRIPT, then the text
        assert await backend.add("k", b"w", 60) == b"v"
        assert await backend.replace_if("k", b"v", 0, b"x", 60)
        assert gateway.commands == ["EVALSHA", "EVAL", "EVALSHA", "EVALSHA", "EVAL"]
    finally:
        await backend.close()
        gateway.stop()
        fresh.stop()


# --- errors become BackendError; the data path degrades -----------------------------------


async def test_a_command_error_is_a_backend_error(
    backend: UpstashBackend, gateway: UpstashGateway, redis: Redis
) -> None:
    key = f"{unique_prefix()}:hash"
    await redis.hset(key, "field", "value")
    try:
        with pytest.raises(BackendError, match="WRONGTYPE"):
            await backend.get(key)
        gateway.fail["SET"] = "ERR injected failure"
        with pytest.raises(BackendError, match="injected failure"):
            await backend.set_many([(f"{key}:a", b"1", 60), (f"{key}:b", b"2", 60)])
    finally:
        await redis.delete(key)


async def test_a_wrong_token_is_a_backend_error_and_the_data_path_degrades(
    gateway: UpstashGateway,
) -> None:
    backend = UpstashBackend(gateway.url, WRONG_TOKEN)
    with pytest.raises(BackendError, match="401") as raised:
        await backend.get("k")
    assert WRONG_TOKEN not in str(raised.value)
    cache = Cache(backend, prefix="t")
    assert await cache.get_or_load(ITEMS, "k", _load) == "from the database"
    assert not await cache.set(ITEMS, "k", "v")
    assert cache.stats()["item"].errors >= 1
    with pytest.raises(BackendError):
        await cache.ping()
    report = await cache.report()
    assert not report.available
    assert WRONG_TOKEN not in (report.error or "")
    await cache.close()


async def test_an_unreachable_gateway_degrades_and_admin_calls_raise() -> None:
    backend = UpstashBackend(f"http://127.0.0.1:{free_port()}", "token")
    cache = Cache(backend, prefix="t")
    started = time.monotonic()
    assert await cache.get_or_load(ITEMS, "k", _load) == "from the database"
    assert cache.stats()["item"].errors == 1
    assert time.monotonic() - started < 1.0
    with pytest.raises(BackendError, match="ConnectError") as raised:
        await backend.get("k")
    assert raised.value.__cause__ is None  # httpx's request, which holds the token, is not kept
    with pytest.raises(BackendError, match="upstash"):
        await cache.clear()
    with pytest.raises(BackendError):
        await cache.ping()
    await cache.close()


@pytest.fixture
def own_gateway(redis_url: str) -> Iterator[UpstashGateway]:
    gateway = UpstashGateway(redis_url, token="own-token").start()
    yield gateway
    gateway.stop()


async def test_a_hung_gateway_is_bounded_by_the_timeout(own_gateway: UpstashGateway) -> None:
    backend = UpstashBackend(own_gateway.url, own_gateway.token, BackendOptions(timeout=0.2))
    cache = Cache(backend, prefix="t")
    await cache.ping()
    own_gateway.delay = 1.0
    started = time.monotonic()
    assert await cache.get_or_load(ITEMS, "k", _load) == "from the database"
    assert time.monotonic() - started < 0.7  # the 0.2 s read timeout, not the 1 s hang
    assert cache.stats()["item"].errors == 1
    own_gateway.delay = 0
    await cache.close()


def _replying(status: int, content: bytes) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, content=content))


@pytest.mark.parametrize(
    ("status", "content", "message"),
    [
        (502, b"<html>Bad Gateway</html>", "HTTP 502"),
        (200, b"not json", "not the REST protocol"),
        (200, b'{"nothing": 1}', "not the REST protocol"),
        (200, b'{"result": "***not base64***"}', "not base64"),
        (200, b'{"result": 7}', "expected a string"),
        (400, b'{"error": "ERR unknown command"}', "ERR unknown command"),
    ],
)
async def test_a_reply_outside_the_protocol_is_a_backend_error(
    status: int, content: bytes, message: str
) -> None:
    backend = UpstashBackend("https://example.invalid", "t", transport=_replying(status, content))
    with pytest.raises(BackendError, match=message):
        await backend.get("k")
    await backend.close()


async def test_a_pipeline_reply_of_the_wrong_length_is_a_backend_error() -> None:
    transport = _replying(200, b'[{"result": "OK"}]')
    backend = UpstashBackend("https://example.invalid", "t", transport=transport)
    with pytest.raises(BackendError, match="does not match"):
        await backend.set_many([("a", b"1", 60), ("b", b"2", 60)])
    await backend.close()


async def test_the_token_is_sent_as_a_bearer_header_and_never_shown() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(400, json={"error": f"ERR echoing {WRONG_TOKEN}"})

    backend = UpstashBackend(
        "https://eu1-example.upstash.io/", WRONG_TOKEN, transport=httpx.MockTransport(handler)
    )
    with pytest.raises(BackendError) as raised:
        await backend.get("k")
    assert WRONG_TOKEN not in str(raised.value)
    assert WRONG_TOKEN not in repr(backend)
    assert repr(backend) == "UpstashBackend(eu1-example.upstash.io)"
    request = seen[0]
    assert str(request.url) == "https://eu1-example.upstash.io"
    assert request.headers["authorization"] == f"Bearer {WRONG_TOKEN}"
    assert request.headers["upstash-encoding"] == "base64"
    assert request.content == b'["GET","k"]'
    await backend.close()


# --- configuration -------------------------------------------------------------------------


async def test_create_upstash_backend_applies_the_options(gateway: UpstashGateway) -> None:
    backend = create_upstash_backend(
        gateway.url, gateway.token, BackendOptions(timeout=0.3, max_connections=4)
    )
    assert isinstance(backend, UpstashBackend)
    await backend.ping()
    await backend.close()


@pytest.mark.parametrize(
    ("url", "token", "options", "message"),
    [
        ("redis://127.0.0.1:6379", "t", {}, "https://"),
        ("eu1-example.upstash.io", "t", {}, "https://"),
        ("https://eu1-example.upstash.io?_token=secret", "t", {}, "query"),
        ("https://eu1-example.upstash.io", "", {}, "token"),
        ("https://eu1-example.upstash.io", " t ", {}, "token"),
        ("https://eu1-example.upstash.io", "t", {"timeout": 0}, "timeout"),
        ("https://eu1-example.upstash.io", "t", {"max_connections": 0}, "max_connections"),
    ],
)
def test_bad_configuration_is_rejected(
    url: str, token: str, options: dict[str, float], message: str
) -> None:
    with pytest.raises(CacheConfigurationError, match=message):
        UpstashBackend(url, token, BackendOptions(**options))  # type: ignore[arg-type]


async def test_concurrent_requests_share_a_bounded_pool(gateway: UpstashGateway) -> None:
    backend = UpstashBackend(gateway.url, gateway.token, BackendOptions(max_connections=4))
    cache = Cache(backend, prefix=unique_prefix())
    try:
        await cache.set(ITEMS, "k", 1)
        results = await asyncio.gather(*(cache.get(ITEMS, "k") for _ in range(200)))
        assert results == [1] * 200
        assert cache.stats()["item"].errors == 0
    finally:
        await cache.clear()
        await cache.close()
