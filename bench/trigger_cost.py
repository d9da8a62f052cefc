"""What the change-capture triggers cost a write.

On a fresh, migrated database with the demo data and no service running, single-row
statements are timed one by one (each its own transaction, through one asyncpg connection:
the time until its COMMIT returned) with the capture triggers (``ogcache_capture...``)
enabled, then disabled (``ALTER TABLE ... DISABLE TRIGGER`` naming each of them), in
``rounds`` batches each, alternating (on, off, off, on, ...), so that both states share the
machine's busy and quiet moments; ``warmup`` statements before each batch are not counted.
Per statement and state: p50 and p99 over all its timed statements, the ratios enabled /
disabled, and each batch's p50. With triggers enabled the outbox (``cache_changes``)
is emptied before each batch and its rows counted after it (rows written per statement).

Then throughput under concurrency: ``writers`` connections each updating its own menu row in
a loop for ``seconds``, triggers enabled and disabled alternately over ``rounds`` rounds
(commits per second, summed). A trigger that serialised commits (as ``NOTIFY`` does) shows
here, not in the one-connection timings.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from bench._support import asyncpg_dsn, quantile

__all__ = [
    "CostConfig",
    "StatementCost",
    "capture_triggers",
    "measure_concurrent_writes",
    "measure_trigger_cost",
]

CAPTURE_PREFIX = "ogcache_capture"
OUTBOX = "cache_changes"
STATES = ("enabled", "disabled")


@dataclass(frozen=True, slots=True)
class CostConfig:
    statements: int = 2000  # timed, per statement and state, over all rounds
    rounds: int = 10  # alternating enabled/disabled batches of statements / rounds each
    warmup: int = 20  # per batch, not timed
    writers: int = 16  # concurrent connections of the throughput measurement
    writer_seconds: float = 2.0  # per state and round


@dataclass
class StatementCost:
    """Microseconds, per state: p50 and p99 over every timed statement of all rounds (the
    rounds alternate, so both states share the machine's moments), and each round's p50."""

    statement: str
    table: str
    seconds: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STATES})
    round_p50_us: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STATES})
    outbox_rows_per_statement: list[float] = field(default_factory=list)

    def add(self, state: str, seconds: list[float]) -> None:
        self.seconds[state] += seconds
        self.round_p50_us[state].append(_us(sorted(seconds), 0.5))

    def quantile_us(self, q: float, state: str) -> float | None:
        found = self.seconds[state]
        return _us(sorted(found), q) if found else None

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "statement": self.statement,
            "table": self.table,
            "count": {s: len(self.seconds[s]) for s in STATES},
        }
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            on, off = self.quantile_us(q, "enabled"), self.quantile_us(q, "disabled")
            shown[f"{name}_us"] = {"enabled": on, "disabled": off}
            shown[f"{name}_ratio"] = round(on / off, 2) if on and off else None
        shown["round_p50_us"] = self.round_p50_us
        shown["outbox_rows_per_statement"] = self.outbox_rows_per_statement
        return shown


def _us(ordered: list[float], q: float) -> float:
    return round((quantile(ordered, q) or 0.0) * 1e6, 1)


async def capture_triggers(database_url: str) -> dict[str, list[str]]:
    """The capture triggers of the database: table -> trigger names."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await _triggers(connection)
    finally:
        await connection.close()


async def _triggers(connection: asyncpg.Connection) -> dict[str, list[str]]:
    rows = await connection.fetch(
        "SELECT c.relname AS relation, t.tgname AS name FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE NOT t.tgisinternal AND t.tgname LIKE $1 ORDER BY 1, 2",
        CAPTURE_PREFIX + "%",
    )
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(str(row["relation"]), []).append(str(row["name"]))
    return found


# (label, table, SQL, arguments of the i-th statement)
_STATEMENTS: list[tuple[str, str, str]] = [
    ("UPDATE menu_items SET price_1g", "menu_items",
     "UPDATE menu_items SET price_1g = $1 WHERE id = $2"),
    ("UPDATE user_profiles SET notes", "user_profiles",
     "UPDATE user_profiles SET notes = $1 WHERE user_id = $2"),
    ("INSERT INTO agent_events", "agent_events",
     "INSERT INTO agent_events (event_type, event_data, channel, created_at) "
     "VALUES ($1, $2, $3, now())"),
]  # fmt: skip


async def _arguments(connection: asyncpg.Connection) -> list[Any]:
    """Per statement, a function of i giving its arguments (a single row each time)."""
    item_id = await connection.fetchval("SELECT min(id) FROM menu_items")
    user = await connection.fetchval("SELECT min(user_id) FROM user_profiles")
    return [
        lambda i: (1000 + i % 500, item_id),
        lambda i: (f"trigger cost {i}", user),
        lambda i: ("bench_trigger_cost", f'{{"i": {i}}}', "web"),
    ]


async def _set_triggers(
    connection: asyncpg.Connection, triggers: dict[str, list[str]], enabled: bool
) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    for table, names in triggers.items():
        for name in names:
            await connection.execute(f'ALTER TABLE "{table}" {verb} TRIGGER "{name}"')


async def _timed(connection: asyncpg.Connection, sql: str, args: Any, count: int) -> list[float]:
    """Seconds of each of ``count`` statements (autocommit: each one a transaction)."""
    seconds = []
    for i in range(count):
        start = time.perf_counter()
        await connection.execute(sql, *args(i))
        seconds.append(time.perf_counter() - start)
    return seconds


async def _outbox(connection: asyncpg.Connection, *, empty: bool) -> int | None:
    if await connection.fetchval("SELECT to_regclass($1)", OUTBOX) is None:
        return None
    if empty:
        await connection.execute(f"TRUNCATE {OUTBOX}")
        return 0
    return int(await connection.fetchval(f"SELECT count(*) FROM {OUTBOX}"))  # noqa: S608


async def measure_trigger_cost(database_url: str, config: CostConfig) -> dict[str, Any]:
    """The statements' cost with the capture triggers enabled and disabled; nothing asserted."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        triggers = await _triggers(connection)
        arguments = await _arguments(connection)
        costs = [StatementCost(label, table) for label, table, _ in _STATEMENTS]
        per_round = max(1, config.statements // config.rounds)
        for round_index in range(config.rounds):
            order = STATES if round_index % 2 == 0 else STATES[::-1]
            for state in order:
                await _set_triggers(connection, triggers, state == "enabled")
                for cost, (_, _, sql), args in zip(costs, _STATEMENTS, arguments, strict=True):
                    await _timed(connection, sql, args, config.warmup)
                    await _outbox(connection, empty=True)
                    cost.add(state, await _timed(connection, sql, args, per_round))
                    rows = await _outbox(connection, empty=False)
                    if state == "enabled" and rows is not None:
                        cost.outbox_rows_per_statement.append(rows / per_round)
        await _set_triggers(connection, triggers, True)
    finally:
        await connection.close()
    return {
        "config": asdict(config),
        "triggers": triggers,
        "statements": [cost.as_dict() for cost in costs],
        "concurrent": await measure_concurrent_writes(database_url, config, triggers),
    }


async def measure_concurrent_writes(
    database_url: str, config: CostConfig, triggers: dict[str, list[str]]
) -> dict[str, Any]:
    """Commits per second of ``config.writers`` concurrent single-row UPDATEs, triggers
    enabled and disabled in alternation; per state the median over the rounds."""
    dsn = asyncpg_dsn(database_url)
    control = await asyncpg.connect(dsn)
    writers = [await asyncpg.connect(dsn) for _ in range(config.writers)]
    try:
        ids = [row[0] for row in await control.fetch("SELECT id FROM menu_items ORDER BY id")]
        rates: dict[str, list[float]] = {state: [] for state in STATES}
        for round_index in range(max(2, config.rounds // 5)):
            for state in STATES if round_index % 2 == 0 else STATES[::-1]:
                await _set_triggers(control, triggers, state == "enabled")
                rates[state].append(await _write_for(writers, ids, config.writer_seconds))
        await _set_triggers(control, triggers, True)
        await _outbox(control, empty=True)
    finally:
        for connection in (control, *writers):
            await connection.close()
    median = {state: sorted(found)[len(found) // 2] for state, found in rates.items()}
    return {
        "writers": config.writers,
        "commits_per_s": {state: round(rate) for state, rate in median.items()},
        "ratio": round(median["enabled"] / median["disabled"], 2) if median["disabled"] else None,
        "rounds": rates,
    }


async def _write_for(writers: list[asyncpg.Connection], ids: list[int], seconds: float) -> float:
    """Commits per second of every writer updating its own row until ``seconds`` pass."""
    stop = time.perf_counter() + seconds
    done = 0

    async def write(connection: asyncpg.Connection, item_id: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await connection.execute(
                "UPDATE menu_items SET sort_order = sort_order + 1 WHERE id = $1", item_id
            )
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(write(c, ids[i % len(ids)]) for i, c in enumerate(writers)))
    return done / (time.perf_counter() - started)
