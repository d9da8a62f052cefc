"""``@cache.cached``: behaviour on the memory backend and real Redis, errors at decoration
time, the guarantees it inherits from ``get_or_load``, and the types mypy --strict sees."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ogcache.cache import (
    MISSING,
    Cache,
    CacheBackend,
    CacheConfigurationError,
    InvalidKeyError,
    MemoryBackend,
    Namespace,
    RedisBackend,
    cached,
)
from tests.support.servers import free_port

USERS = Namespace("user", ttl=60)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[CacheBackend]:
    """The decorator adds no store logic of its own: memory and one real Redis suffice."""
    store: CacheBackend = (
        MemoryBackend()
        if request.param == "memory"
        else RedisBackend(request.getfixturevalue("redis_url"))
    )
    yield store
    await store.close()


class Users:
    """A table of user names with a load counter and an optional gate to hold loads."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {1: "Ann", 2: "Bob"}
        self.loads = 0
        self.gate: asyncio.Event | None = None
        self.loading = asyncio.Event()

    async def load(self, user_id: int) -> str | None:
        self.loads += 1
        self.loading.set()
        name = self.names.get(user_id)
        if self.gate is not None:
            await self.gate.wait()
        return name


async def test_a_call_loads_once_then_hits(cache: Cache) -> None:
    db = Users()

    @cache.cached(USERS, key="user:{user_id}")
    async def user_name(user_id: int) -> str | None:
        return await db.load(user_id)

    assert [await user_name(1) for _ in range(3)] == ["Ann"] * 3
    assert await user_name(2) == "Bob"
    assert db.loads == 2
    assert (cache.stats()["user"].hits, cache.stats()["user"].misses) == (2, 2)
    assert await cache.get(USERS, "user:1") == "Ann"


async def test_equal_arguments_of_other_types_keep_their_own_keys(cache: Cache) -> None:
    """1, True, 1.0 and "1" are equal or alike as dictionary keys, not as key text: the keys
    the decorator remembers for ints and strings never stand in for another type's."""
    seen: list[object] = []

    @cache.cached(USERS, key="any:{value}")
    async def echo(value: object) -> str:
        seen.append(value)
        return repr(value)

    for _ in range(2):  # the second round: all hits
        assert [await echo(v) for v in (1, True, 1.0, "1")] == ["1", "True", "1.0", "1"]
    assert seen == [1, True, 1.0]  # "1" renders as 1 does (str()): the same entry, a hit
    assert [echo.key(v) for v in (1, True, 1.0, "1")] == ["any:1", "any:True", "any:1.0", "any:1"]


async def test_positional_keyword_and_default_arguments_address_one_entry(cache: Cache) -> None:
    db = Users()

    @cache.cached(USERS, key="user:{user_id}:{lang}")
    async def user_name(user_id: int, lang: str = "en", *, verbose: bool = False) -> str | None:
        return await db.load(user_id)

    assert await user_name(1) == "Ann"
    assert await user_name(1, "en") == "Ann"
    assert await user_name(user_id=1) == "Ann"
    assert await user_name(1, lang="en", verbose=True) == "Ann"  # verbose is not in the key
    assert db.loads == 1
    assert await user_name(1, "ru") == "Ann"
    assert db.loads == 2
    assert user_name.key(1) == "user:1:en"
    assert user_name.key(lang="ru", user_id=7) == "user:7:ru"
    with pytest.raises(TypeError):  # a call the function itself would refuse
        user_name.key(1, "en", "extra")  # type: ignore[call-arg]


async def test_frameworks_see_an_async_function_with_its_signature(cache: Cache) -> None:
    """FastAPI and Starlette decide how to call an endpoint or dependency from these."""

    async def user_name(user_id: int, lang: str = "en") -> str:
        return "Ann"

    wrapped = cache.cached(USERS, key="user:{user_id}")(user_name)
    assert inspect.iscoroutinefunction(wrapped.__call__)
    assert inspect.signature(wrapped) == inspect.signature(user_name)
    assert wrapped.__name__ == "user_name"
    assert wrapped.__wrapped__ is user_name


async def test_keyword_only_and_attribute_fields(cache: Cache) -> None:
    @dataclass
    class Order:
        id: int

    @cache.cached(USERS, key="order:{order.id}:{region}")
    async def total(order: Order, *, region: str) -> int:
        return order.id * 10

    assert await total(Order(4), region="eu") == 40
    assert total.key(Order(4), region="eu") == "order:4:eu"
    assert await cache.get(USERS, "order:4:eu") == 40


async def fetch(user_id: int) -> int:
    return user_id


@pytest.mark.parametrize(
    ("template", "function", "says"),
    [
        ("user:{id}", fetch, "{id} is not a parameter of the function (it has user_id)"),
        ("user:{user_id.}", fetch, "must name a parameter"),
        ("user:{0}", fetch, "must name a parameter"),
        ("user:{}", fetch, "must name a parameter"),
        ("user:{user_id!r}", fetch, "drop the '!…' or ':…' part"),
        ("user:{user_id:>4}", fetch, "drop the '!…' or ':…' part"),
        ("user:{user_id", fetch, "write fields as {parameter}"),
        ("all-users", fetch, "names no parameter"),
        ("user {user_id}", fetch, "without whitespace"),
    ],
)
def test_a_template_that_cannot_work_fails_at_decoration(
    template: str, function: Callable[..., Awaitable[Any]], says: str
) -> None:
    cache = Cache(MemoryBackend())
    with pytest.raises(CacheConfigurationError) as error:
        cache.cached(USERS, key=template)(function)
    assert says in str(error.value)


async def varargs(*ids: int) -> int:
    return 0


async def varkw(**filters: str) -> int:
    return 0


async def positional_only(user_id: int, /, **extra: str) -> int:
    return 0


def not_async(user_id: int) -> int:
    return 0


@pytest.mark.parametrize(
    ("template", "function", "says"),
    [
        ("ids:{ids}", varargs, "is a *args or **kwargs parameter"),
        ("f:{filters}", varkw, "is a *args or **kwargs parameter"),
        ("u:{user_id}", positional_only, "positional-only and the function takes **kwargs"),
        ("u:{user_id}", not_async, "declare it with 'async def'"),
    ],
)
def test_a_signature_the_template_cannot_key_on_fails_at_decoration(
    template: str, function: Callable[..., Any], says: str
) -> None:
    with pytest.raises(CacheConfigurationError) as error:
        cached(Cache(MemoryBackend()), USERS, key=template)(function)
    assert says in str(error.value)


@pytest.mark.parametrize("value", ["", "a b", "tab\there", "x" * 600])
async def test_an_unusable_key_value_is_refused_before_the_function_runs(
    cache: Cache, value: str
) -> None:
    db = Users()

    @cache.cached(USERS, key="name:{name}")
    async def by_name(name: str) -> str | None:
        return await db.load(1)

    with pytest.raises(InvalidKeyError):
        await by_name(value)
    assert db.loads == 0


async def test_invalidate_makes_the_next_call_reload(cache: Cache) -> None:
    db = Users()

    @cache.cached(USERS, key="user:{user_id}")
    async def user_name(user_id: int) -> str | None:
        return await db.load(user_id)

    assert await user_name(1) == "Ann"
    db.names[1] = "Anna"  # the write commits...
    assert await user_name.invalidate(1)  # ...then invalidates
    assert await cache.get(USERS, "user:1") is MISSING
    assert await user_name(1) == "Anna"
    assert db.loads == 2


async def test_the_decorator_ttl_overrides_the_namespace(cache: Cache) -> None:
    db = Users()

    @cache.cached(USERS, key="user:{user_id}", ttl=0.1)
    async def user_name(user_id: int) -> str | None:
        return await db.load(user_id)

    assert await user_name(1) == await user_name(1) == "Ann"
    assert db.loads == 1
    await asyncio.sleep(0.25)
    assert await user_name(1) == "Ann"
    assert db.loads == 2


async def test_a_none_result_is_cached_as_not_found(cache: Cache) -> None:
    db = Users()

    @cache.cached(USERS, key="user:{user_id}")
    async def user_name(user_id: int) -> str | None:
        return await db.load(user_id)

    assert await user_name(99) is None
    assert await user_name(99) is None
    assert db.loads == 1


async def test_refresh_reloads_and_stores(cache: Cache) -> None:
    db = Users()

    @cache.cached(USERS, key="user:{user_id}")
    async def user_name(user_id: int) -> str | None:
        return await db.load(user_id)

    await user_name(1)
    db.names[1] = "Anna"
    assert await user_name.refresh(1) == "Anna"
    assert await user_name(1) == "Anna"
    assert db.loads == 2


async def test_concurrent_callers_share_one_load(cache: Cache) -> None:
    db = Users()
    db.gate = asyncio.Event()

    @cache.cached(USERS, key="user:{user_id}")
    async def user_name(user_id: int) -> str | None:
        return await db.load(user_id)

    calls = asyncio.gather(*(user_name(1) for _ in range(200)))
    for _ in range(2000):  # until every caller has looked and missed
        if (stats := cache.stats().get("user")) is not None and stats.misses == 200:
            break
        await asyncio.sleep(0.005)
    db.gate.set()
    assert await calls == ["Ann"] * 200
    assert db.loads == 1


async def test_a_load_overtaken_by_an_invalidation_is_not_stored(cache: Cache) -> None:
    db = Users()
    db.gate = asyncio.Event()

    @cache.cached(USERS, key="user:{user_id}")
    async def user_name(user_id: int) -> str | None:
        return await db.load(user_id)

    reader = asyncio.create_task(user_name(1))
    await db.loading.wait()  # the reader has missed and is loading the old row
    db.names[1] = "Anna"  # the writer commits...
    await user_name.invalidate(1)  # ...then invalidates, while the reader still loads
    db.gate.set()
    assert await reader == "Ann"  # the reader began before the write: it may see the old row
    assert await cache.get(USERS, "user:1") is MISSING  # but the old row is not cached
    assert cache.stats()["user"].sets_rejected == 1
    db.gate = None
    assert await user_name(1) == "Anna"


async def test_with_redis_down_the_function_still_answers() -> None:
    db = Users()
    async with Cache(
        RedisBackend(f"redis://127.0.0.1:{free_port()}/0"), prefix="test-deco-down"
    ) as down:

        @down.cached(USERS, key="user:{user_id}")
        async def user_name(user_id: int) -> str | None:
            return await db.load(user_id)

        assert [await user_name(1) for _ in range(3)] == ["Ann"] * 3
        assert db.loads == 3  # nothing could be cached: every call loads
        assert not await user_name.invalidate(1)  # and says the invalidation did not happen
        assert down.stats()["user"].errors > 0


async def test_async_with_closes_the_cache() -> None:
    closed: list[bool] = []
    cache = Cache(MemoryBackend())
    close = cache.close

    async def counted_close() -> None:
        closed.append(True)
        await close()

    cache.close = counted_close  # type: ignore[method-assign]
    async with cache as entered:
        assert entered is cache
    assert closed == [True]


def test_mypy_strict_sees_the_function_types(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from collections.abc import Mapping, Sequence

            from ogcache.cache import Cache, MemoryBackend, Namespace, cached_many

            cache = Cache(MemoryBackend())
            users: Namespace[str] = Namespace("user", ttl=60)

            @cache.cached(users, key="user:{user_id}")
            async def user_name(user_id: int, lang: str = "en") -> str | None:
                return None

            @cached_many(cache, users, key="user:{id}")
            async def user_names(ids: Sequence[int]) -> Mapping[int, str]:
                return {}

            async def main() -> None:
                reveal_type(await user_name(1))
                reveal_type(user_name.invalidate)
                await user_name("one")
                reveal_type(await user_names([1, 2]))
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(snippet)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    out = result.stdout.replace("builtins.", "")  # older mypy versions qualify builtins
    assert 'Revealed type is "str | None"' in out, out
    assert (
        'Revealed type is "def (user_id: int, lang: str =) -> typing.Coroutine[Any, Any, bool]"'
    ) in out, out
    assert 'Argument 1 to "__call__" of "CachedFunction" has incompatible type "str"' in out, out
    assert 'Revealed type is "dict[int, str]"' in out, out
    assert out.count("error:") == 1, out
