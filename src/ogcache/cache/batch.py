"""Operations on many keys, one round trip each: reads, writes and invalidations.

The cache front end's ``get_entries``, ``set_many`` and ``invalidate`` are thin over these;
each counts every entry in its own namespace's statistics, and none raises for a store error
(counted, logged sparingly, reported as a miss or as ``False``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ogcache.cache.failures import log_key, logger
from ogcache.cache.fill import Parts
from ogcache.cache.missing import MISSING
from ogcache.cache.namespace import Namespace
from ogcache.cache.stats import NamespaceStats
from ogcache.cache.stored import State

__all__ = ["invalidate_entries", "read_entries", "write_entries"]

_now = time.perf_counter

StatsFor = Callable[[Namespace[Any]], NamespaceStats]
Entries = Sequence[tuple[Namespace[Any], str]]


async def read_entries(
    parts: Parts, stats_for: StatsFor, entries: Entries, fulls: list[str], *, count: bool = True
) -> list[Any]:
    """Values of ``entries`` (stored as ``fulls``), :data:`MISSING` where there is none;
    ``count=False`` leaves hits and misses uncounted (a report looking, not a reader)."""
    values: list[Any] = [MISSING] * len(entries)
    wanted = list(range(len(entries)))
    tokens: dict[int, int] = {}
    if any(namespace.local_ttl for namespace, _ in entries):
        live = {ns.name: parts.l1.live(ns) for ns, _ in entries if ns.local_ttl}
        wanted, tokens = await _from_local(parts, stats_for, (entries, fulls), values, live, count)
        if not wanted:
            return values
    asked = {entries[index][0].name: entries[index][0] for index in wanted}.values()
    start = _now()
    try:
        if len(wanted) == 1:  # get(): the single-key command is leaner than MGET
            raws = [await parts.store.get(fulls[wanted[0]])]
        else:
            raws = await parts.store.get_many(
                fulls if len(wanted) == len(fulls) else [fulls[index] for index in wanted]
            )
    except Exception as exc:
        for index in wanted:
            stats_for(entries[index][0]).misses += count
        for namespace in asked:
            parts.failed(stats_for(namespace), "get_many", exc)
        return values
    elapsed = _now() - start
    for namespace in asked:
        stats_for(namespace).operations.record(elapsed)
    now = parts.stored.now()
    for index, raw in zip(wanted, raws, strict=True):
        namespace, key = entries[index]
        stats = stats_for(namespace)
        found = parts.stored.inspect(namespace, stats, raw, now)
        hit = found.state is State.FRESH
        if hit:
            stats.hits += count
            values[index] = found.value
            token = tokens.get(index)
            if token is not None and found.entry is not None and found.raw is not None:
                ttl = min(namespace.local_ttl, found.entry.expires_at - now)
                parts.l1.keep(
                    fulls[index], found.value, found.entry.payload, len(found.raw), ttl, token
                )
        else:
            stats.misses += count
            if found.state is State.MISSING and raw is not None:
                await _discard_undecodable(parts, stats, fulls[index], raw)
        if count and logger.isEnabledFor(logging.DEBUG):
            log_key("cache.hit" if hit else "cache.miss", namespace, key)
    return values


async def _from_local(
    parts: Parts,
    stats_for: StatsFor,
    keys: tuple[Entries, list[str]],
    values: list[Any],
    live: dict[str, bool],
    count: bool,
) -> tuple[list[int], dict[int, int]]:
    """Fill ``values`` from the in-process tier where it may serve (``live``, by namespace);
    the indexes still wanted from the store, and the tier's tokens for those it may keep."""
    entries, fulls = keys
    wanted: list[int] = []
    tokens: dict[int, int] = {}
    for index, ((namespace, key), full) in enumerate(zip(entries, fulls, strict=True)):
        if live.get(namespace.name):
            held = await parts.l1.hit(full)
            if held is not MISSING:
                stats = stats_for(namespace)
                stats.local_hits += count
                stats.hits += count
                if count and logger.isEnabledFor(logging.DEBUG):
                    log_key("cache.hit", namespace, key)
                values[index] = held[0]
                continue
            tokens[index] = parts.l1.token(full)
        wanted.append(index)
    return wanted, tokens


async def _discard_undecodable(parts: Parts, stats: NamespaceStats, full: str, raw: bytes) -> None:
    """Delete an undecodable entry, unless it has been replaced meanwhile."""
    try:
        await parts.store.replace_if(full, raw, 0, None, 1)
    except Exception as exc:
        parts.failed(stats, "delete", exc)


async def write_entries(
    parts: Parts,
    namespace: Namespace[Any],
    stats: NamespaceStats,
    items: list[tuple[str, str, Any]],
    ttl: float | None,
) -> bool:
    """Store each ``(key, full key, value)`` of one namespace; False if none was stored."""
    try:
        rows = []
        for _, full, value in items:
            data, lifetime = parts.stored.encode(namespace, value, ttl, 0.0)
            rows.append((full, data, lifetime))
    except Exception as exc:
        parts.failures.not_encoded(namespace, stats, exc)
        return False
    start = _now()
    try:
        await parts.store.set_many(rows)
    except Exception as exc:
        parts.failed(stats, "set", exc)
        return False
    finally:
        parts.l1.invalidate([full for full, _, _ in rows])
    stats.operations.record(_now() - start)
    stats.sets += len(rows)
    if logger.isEnabledFor(logging.DEBUG):
        for key, _, _ in items:
            log_key("cache.cached", namespace, key)
    return True


async def invalidate_entries(
    parts: Parts, stats_for: StatsFor, entries: Entries, fulls: list[str]
) -> bool:
    """Delete ``entries`` (stored as ``fulls``) and any lease on them; False if it failed."""
    namespaces = {namespace.name: namespace for namespace, _ in entries}.values()
    start = _now()
    try:
        await parts.store.delete_many(fulls)
    except Exception as exc:
        for namespace in namespaces:
            parts.failed(stats_for(namespace), "invalidate", exc)
        return False
    finally:  # here at once, whatever happened there; other processes hear it from the feed
        parts.l1.invalidate(fulls)
    elapsed = _now() - start
    for namespace in namespaces:
        stats_for(namespace).operations.record(elapsed)
    debug = logger.isEnabledFor(logging.DEBUG)
    for namespace, key in entries:
        stats_for(namespace).invalidations += 1
        if debug:
            log_key("cache.invalidated", namespace, key)
    return True
