"""What the benchmarks share: server URLs, throwaway databases, process start-up, quantiles."""

from __future__ import annotations

import multiprocessing
import os
import platform
import queue
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def machine(load_before: Sequence[float] | None = None) -> dict[str, Any]:
    """The machine a result was measured on, for its report: CPUs, platform, Python, and the
    load averages when the run began (``os.getloadavg()`` then) and now."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if load_before is not None:
        info["load_average_before"] = [round(x, 2) for x in load_before]
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return info


def database_url() -> str:
    return os.environ.get("OGCACHE_BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL


def redis_url() -> str:
    return os.environ.get("OGCACHE_BENCH_REDIS_URL") or DEFAULT_REDIS_URL


def asyncpg_dsn(url: str) -> str:
    """A DSN asyncpg accepts, from a ``postgresql[+driver]://`` URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def unique_name(kind: str) -> str:
    return f"ogcache_bench_{kind}_{uuid.uuid4().hex[:10]}"


async def create_database(server_url: str, name: str) -> str:
    """Create an empty database ``name`` on the server of ``server_url``; its DSN."""
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return asyncpg_dsn(make_url(server_url).set(database=name).render_as_string(False))


async def drop_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def quantile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile of an already sorted sequence."""
    if not ordered:
        return None
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Latency:
    """Milliseconds."""

    count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ordered = sorted(seconds)

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 2)

        return cls(
            count=len(ordered),
            p50_ms=ms(quantile(ordered, 0.50)),
            p99_ms=ms(quantile(ordered, 0.99)),
            max_ms=ms(ordered[-1] if ordered else None),
        )


class Gate:
    """Start worker processes together: each reports ready, then all begin at one instant.

    The instant is a wall-clock time a little after the last worker reported ready, so the
    workers' event loops are already running when it comes and their work really overlaps.
    """

    def __init__(self, ctx: Any) -> None:
        self.results: Any = ctx.Queue()
        self.go: Any = ctx.Event()
        self.start_at: Any = ctx.Value("d", 0.0)

    # --- in a worker ---

    def ready(self) -> None:
        self.results.put(("ready", None))

    def wait_start(self, timeout: float) -> float:
        """Block until the parent says go; the common start time (epoch seconds)."""
        if not self.go.wait(timeout):
            raise TimeoutError("the benchmark parent never gave the start signal")
        return float(self.start_at.value)

    def send(self, payload: Any) -> None:
        self.results.put(("result", payload))

    def fail(self) -> None:
        self.results.put(("error", traceback.format_exc()))


def run_processes(
    target: Callable[..., None],
    args_for: Callable[[int, Gate], tuple[Any, ...]],
    count: int,
    *,
    timeout: float,
    lead: float = 0.2,
) -> list[Any]:
    """Start ``count`` spawned processes running ``target(*args_for(index, gate))``; start
    them together (see :class:`Gate`) and return what each sent, in no particular order."""
    ctx = multiprocessing.get_context("spawn")
    gate = Gate(ctx)
    processes = [
        ctx.Process(target=target, args=args_for(index, gate), daemon=True)
        for index in range(count)
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + timeout
    results: list[Any] = []
    try:
        ready = 0
        while ready < count or len(results) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"benchmark processes did not finish within {timeout:.0f} s")
            try:
                kind, payload = gate.results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(
                        f"a benchmark process exited with code {dead[0].exitcode}"
                    ) from None
                continue
            if kind == "error":
                raise RuntimeError(f"a benchmark process failed:\n{payload}")
            if kind == "ready":
                ready += 1
                if ready == count:
                    gate.start_at.value = time.time() + lead
                    gate.go.set()
            else:
                results.append(payload)
        for process in processes:
            process.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
    return results
