"""Shared flights: a call is shared only with callers that started before it was decided."""

from __future__ import annotations

import asyncio

import pytest

from ogcache.cache.flight import Decide, Flights
from ogcache.cache.missing import MISSING, Missing


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


async def read(
    flights: Flights[int], key: str, store: Store, defer_to: Flights[int] | None = None
) -> int | Missing:
    """One read through ``flights``, as the cache sends its GETs."""
    value, _ = await flights.run(key, lambda _: store.fetch(key), defer_to=defer_to)
    return value


async def test_callers_arriving_during_a_read_share_the_next_one() -> None:
    store, reads = Store(), Flights[int]()
    first = asyncio.create_task(read(reads, "k", store))
    await asyncio.sleep(0.005)  # fetch 1 is out: whatever it returns may predate the others
    later = [asyncio.create_task(read(reads, "k", store)) for _ in range(50)]
    assert await first == 1
    assert await asyncio.gather(*later) == [2] * 50
    assert store.sent == 2
    assert reads.shared == 49


async def test_concurrent_reads_of_other_keys_are_independent() -> None:
    store, reads = Store(), Flights[int]()
    results = await asyncio.gather(*(read(reads, f"k{i}", store) for i in range(5)))
    assert sorted(results) == [1, 2, 3, 4, 5]


async def test_a_failed_shared_read_fails_those_who_shared_it_only() -> None:
    store, reads = Store(), Flights[int]()
    first = asyncio.create_task(read(reads, "k", store))
    await asyncio.sleep(0.005)
    store.fail_next = True  # fetch 2, the shared one, fails
    later = [asyncio.create_task(read(reads, "k", store)) for _ in range(3)]
    assert await first == 1
    outcomes = await asyncio.gather(*later, return_exceptions=True)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert await read(reads, "k", store) == 3  # and the next caller reads afresh


async def test_a_cancelled_reader_does_not_fail_those_waiting_for_it() -> None:
    store, reads = Store(), Flights[int]()
    first = asyncio.create_task(read(reads, "k", store))
    await asyncio.sleep(0.005)
    waiters = [asyncio.create_task(read(reads, "k", store)) for _ in range(3)]
    assert await first == 1
    await asyncio.sleep(0.005)  # one waiter now sends fetch 2 for all
    reader = next(t for t in waiters if store.sent == 2 and not t.done())
    reader.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) <= 1
    assert all(r == 2 or r == 3 or isinstance(r, asyncio.CancelledError) for r in results)
    assert any(r in (2, 3) for r in results)


async def test_a_waiter_defers_to_a_call_in_flight_elsewhere_without_reading() -> None:
    store, reads, fills = Store(), Flights[int](), Flights[int]()
    first = asyncio.create_task(read(reads, "k", store))
    await asyncio.sleep(0.005)
    joined = asyncio.create_task(read(reads, "k", store, defer_to=fills))
    gate = asyncio.Event()

    async def fill(decide: Decide) -> int:
        await gate.wait()
        return 0

    filling = asyncio.create_task(fills.run("k", fill))
    assert await first == 1
    assert await joined is MISSING
    assert store.sent == 1
    gate.set()
    assert await filling == (0, False)


async def test_a_call_decided_after_a_caller_arrived_is_shared_with_it() -> None:
    flights: Flights[int] = Flights()
    runs = 0
    arrived = asyncio.Event()

    async def work(decide: Decide) -> int:
        nonlocal runs
        runs += 1
        await arrived.wait()
        decide()  # e.g. the load starts now: its result is no older than this
        await asyncio.sleep(0.01)
        return runs

    first = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0.005)
    second = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0.005)
    arrived.set()
    assert await first == (1, False)
    assert await second == (1, True)
    assert runs == 1


async def test_a_call_decided_before_a_caller_arrived_is_run_again_for_it() -> None:
    flights: Flights[int] = Flights()
    runs = 0
    late = asyncio.Event()

    async def work(decide: Decide) -> int:
        nonlocal runs
        runs += 1
        number = runs
        await late.wait()  # decided at the start only: the caller below arrives after that
        return number

    first = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0.005)
    second = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0.005)
    late.set()
    assert await first == (1, False)
    assert await second == (2, False)


async def test_an_uncontended_read_leaves_nothing_behind() -> None:
    store, reads = Store(delay=0), Flights[int]()
    assert await read(reads, "k", store) == 1
    assert len(reads) == 0
    store.fail_next = True
    with pytest.raises(RuntimeError):
        await read(reads, "k", store)
    assert len(reads) == 0
