"""Read coalescing: shared only with callers that started before the shared read was sent."""

from __future__ import annotations

import asyncio

import pytest

from ogcache.cache.coalesce import ReadCoalescer


class Store:
    """Each fetch returns how many fetches had been sent when it was sent, after a delay."""

    def __init__(self, delay: float = 0.02) -> None:
        self.sent = 0
        self.delay = delay
        self.fail_next = False

    async def fetch(self, key: str) -> int:
        self.sent += 1
        number = self.sent
        fail, self.fail_next = self.fail_next, False
        await asyncio.sleep(self.delay)
        if fail:
            raise RuntimeError(f"fetch {number} failed")
        return number


async def test_callers_arriving_during_a_read_share_the_next_one() -> None:
    store, reads = Store(), ReadCoalescer[int]()
    first = asyncio.create_task(reads.read("k", store.fetch))
    await asyncio.sleep(0.005)  # fetch 1 is out: whatever it returns may predate the others
    later = [asyncio.create_task(reads.read("k", store.fetch)) for _ in range(50)]
    assert await first == 1
    assert await asyncio.gather(*later) == [2] * 50
    assert store.sent == 2
    assert reads.shared == 49


async def test_concurrent_reads_of_other_keys_are_independent() -> None:
    store, reads = Store(), ReadCoalescer[int]()
    results = await asyncio.gather(*(reads.read(f"k{i}", store.fetch) for i in range(5)))
    assert sorted(results) == [1, 2, 3, 4, 5]


async def test_a_failed_shared_read_fails_those_who_shared_it_only() -> None:
    store, reads = Store(), ReadCoalescer[int]()
    first = asyncio.create_task(reads.read("k", store.fetch))
    await asyncio.sleep(0.005)
    store.fail_next = True  # fetch 2, the shared one, fails
    later = [asyncio.create_task(reads.read("k", store.fetch)) for _ in range(3)]
    assert await first == 1
    outcomes = await asyncio.gather(*later, return_exceptions=True)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert await reads.read("k", store.fetch) == 3  # and the next caller reads afresh


async def test_a_cancelled_reader_does_not_fail_those_waiting_for_it() -> None:
    store, reads = Store(), ReadCoalescer[int]()
    first = asyncio.create_task(reads.read("k", store.fetch))
    await asyncio.sleep(0.005)
    waiters = [asyncio.create_task(reads.read("k", store.fetch)) for _ in range(3)]
    assert await first == 1
    await asyncio.sleep(0.005)  # one waiter now sends fetch 2 for all
    reader = next(t for t in waiters if store.sent == 2 and not t.done())
    reader.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) <= 1
    assert all(r == 2 or r == 3 or isinstance(r, asyncio.CancelledError) for r in results)
    assert any(r in (2, 3) for r in results)


async def test_unless_lets_a_waiter_go_elsewhere_without_reading() -> None:
    store, reads = Store(), ReadCoalescer[int]()
    first = asyncio.create_task(reads.read("k", store.fetch))
    await asyncio.sleep(0.005)
    joined = asyncio.create_task(reads.read("k", store.fetch, unless=lambda: True))
    assert await first == 1
    assert await joined is None
    assert store.sent == 1


async def test_an_uncontended_read_leaves_nothing_behind() -> None:
    store, reads = Store(delay=0), ReadCoalescer[int]()
    assert await reads.read("k", store.fetch) == 1
    assert not reads._reads
    store.fail_next = True
    with pytest.raises(RuntimeError):
        await reads.read("k", store.fetch)
    assert not reads._reads
