"""Memo: one computation shared by the callers that accept its age; errors are not kept."""

from __future__ import annotations

import asyncio

import pytest

from ogcache.cache.memo import Memo


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> int:
        self.calls += 1
        await self.gate.wait()
        return self.calls


async def test_concurrent_callers_share_one_computation() -> None:
    memo: Memo[int] = Memo()
    compute = Counter()
    compute.gate.clear()
    waiting = [asyncio.create_task(memo.get(compute, 10)) for _ in range(50)]
    await asyncio.sleep(0)
    compute.gate.set()
    assert {value for value, _ in await asyncio.gather(*waiting)} == {1}
    assert compute.calls == 1


async def test_a_result_is_reused_until_it_is_older_than_max_age() -> None:
    clock = Clock()
    memo: Memo[int] = Memo(clock)
    compute = Counter()
    assert await memo.get(compute, 10) == (1, 0.0)
    clock.now += 9
    assert await memo.get(compute, 10) == (1, 9.0)
    clock.now += 2
    assert await memo.get(compute, 10) == (2, 0.0)


async def test_max_age_zero_always_computes_and_forget_drops_the_result() -> None:
    memo: Memo[int] = Memo(Clock())
    compute = Counter()
    assert (await memo.get(compute, 0))[0] == 1
    assert (await memo.get(compute, 0))[0] == 2
    assert (await memo.get(compute, 60))[0] == 2  # a fresh computation is shared too
    memo.forget()
    assert (await memo.get(compute, 60))[0] == 3


async def test_a_failure_reaches_every_waiter_and_is_not_kept() -> None:
    memo: Memo[int] = Memo()
    failures = 0

    async def failing() -> int:
        nonlocal failures
        failures += 1
        await asyncio.sleep(0)
        raise RuntimeError("backend down")

    results = await asyncio.gather(
        *(memo.get(failing, 10) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert failures == 1
    with pytest.raises(RuntimeError):
        await memo.get(failing, 10)
    assert failures == 2


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    memo: Memo[int] = Memo()
    compute = Counter()
    compute.gate.clear()
    first = asyncio.create_task(memo.get(compute, 10))
    second = asyncio.create_task(memo.get(compute, 10))
    await asyncio.sleep(0)
    first.cancel()
    compute.gate.set()
    assert (await second)[0] == 1
