"""The consistency verifier: a sample of cache hits re-read from the database and compared.

Like Polaris for TAO, it measures what the protocol of ``docs/consistency.md`` promises
instead of assuming it: with probability ``sample`` a :meth:`Cache.get_or_load` hit (served
from the store, not from the in-process tier) schedules a check. ``delay`` seconds later the
check reads the key again; if it no longer holds the entry that was served (invalidated,
replaced, expired), the cache has moved on and the check counts as consistent. Otherwise it
calls the hit's loader (the database now), reads the key once more and compares. A
difference under the same write id is only a suspect: a write may have committed just
before the load while its invalidation is still on its way. So the check repeats once after
another ``delay``; a difference that is still there under the same write id is counted as
``inconsistent`` and logged (``cache.inconsistent``: the namespace and the first 16 hex digits
of the SHA-256 of the full key; never the key or the value).

Choices, and why:

- Off costs one attribute check on the hit path (the cache holds no verifier). On, a hit pays
  one random draw; a sampled hit also creates a task. The check itself runs after the answer.
- At most ``max_pending`` checks are in flight; a sample beyond that is skipped and counted,
  so a burst of hits cannot turn into a burst of database reads. ``Cache.close`` cancels them.
- The verifier calls the loader directly: its loads are not counted as the namespace's loads
  and never write the cache. A loader error or a store error is counted (``verify_errors``)
  and logged at most once per ``error_log_interval`` with the exception's type only (its
  message may quote user data).
- Values are compared by their encoding through the namespace's codec; if the bytes differ,
  both sides are decoded through the codec and compared with ``==`` (so a dict's key order is
  no difference), through the namespace's ``compare_key`` if it has one (to leave out fields
  that differ on every load, such as a load timestamp). ``Namespace(verify=False)`` opts a
  namespace out: entries deliberately not invalidated on write (bounded by their TTL), or
  whose loader reads through the cache.
- The envelope keeps a write id and an expiry, not a write time, so the reported age is an
  upper bound: the time since the entry can at the earliest have been written (its expiry
  minus the longest TTL it can have been given, jitter included). The entry cannot have been
  wrong for longer than that; it may have been for less (at least the two checks' interval).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ogcache.cache.envelope import Entry, Lease, unwrap
from ogcache.cache.exceptions import CacheConfigurationError, DecodeError
from ogcache.cache.namespace import Namespace
from ogcache.cache.stats import NamespaceStats

if TYPE_CHECKING:  # at run time these would import policy.py, which imports this module
    from ogcache.cache.fill import Parts

__all__ = ["Verifier", "VerifierSettings", "key_hash"]

logger = logging.getLogger("ogcache.cache")

_NULL: Final = b"null"  # how a cached None is stored (stored.NULL)
_MAX_DELAY: Final = 3600.0


@dataclass(frozen=True, slots=True)
class VerifierSettings:
    """``sample``: the share of ``get_or_load`` hits checked (0 to 1; 0: off); ``delay``:
    seconds between a hit and its check, and between a suspect and its re-check;
    ``max_pending``: checks in flight at most (further samples are skipped and counted)."""

    sample: float = 0.001
    delay: float = 2.0
    max_pending: int = 100

    def __post_init__(self) -> None:
        if not 0 <= self.sample <= 1:
            raise CacheConfigurationError(f"verifier sample must be 0 to 1, not {self.sample}")
        if not 0 < self.delay <= _MAX_DELAY:
            raise CacheConfigurationError(
                f"verifier delay must be > 0 and at most {_MAX_DELAY:.0f} s, not {self.delay}"
            )
        if isinstance(self.max_pending, bool) or not (
            isinstance(self.max_pending, int) and self.max_pending >= 1
        ):
            raise CacheConfigurationError(
                f"verifier max_pending must be an integer >= 1, not {self.max_pending!r}"
            )


def key_hash(full_key: str) -> str:
    """What a log line shows of a key: 16 hex digits of its SHA-256."""
    return hashlib.sha256(full_key.encode()).hexdigest()[:16]


@dataclass(slots=True)
class _Check:
    """One sampled hit: what was served, and how to load it again."""

    namespace: Namespace[Any]
    stats: NamespaceStats
    full: str
    loader: Callable[[], Awaitable[Any]]
    served: Entry
    ttl: float | None


class Verifier:
    """The checks of one cache; built by the cache when its policy has a non-zero sample."""

    __slots__ = ("_closed", "_draw", "_last_log", "_parts", "_suppressed", "_tasks", "settings")

    def __init__(self, settings: VerifierSettings, parts: Parts) -> None:
        self.settings = settings
        self._parts = parts
        # A generator of our own: sampling must not touch the application's random state.
        self._draw = random.Random().random
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._last_log = -math.inf
        self._suppressed = 0

    def sample(
        self,
        namespace: Namespace[Any],
        stats: NamespaceStats,
        full: str,
        loader: Callable[[], Awaitable[Any]],
        served: Entry,
        ttl: float | None,
    ) -> None:
        """Maybe schedule a check of a hit that served ``served`` (no I/O here)."""
        if self._draw() >= self.settings.sample or not namespace.verify or self._closed:
            return
        if len(self._tasks) >= self.settings.max_pending:
            stats.verify_skipped += 1
            return
        task = asyncio.ensure_future(
            self._check(_Check(namespace, stats, full, loader, served, ttl))
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel the checks in flight (they would only delay shutdown)."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _check(self, check: _Check) -> None:
        try:
            differs = await self._differs(check)
        except Exception as exc:  # the loader, the store or the codec: never the caller's
            check.stats.verify_errors += 1
            self._log_error(check.namespace, exc)
            return
        check.stats.verified += 1
        if differs:
            self._report(check)

    async def _differs(self, check: _Check) -> bool:
        """Whether the served entry still differs from the database after two rounds."""
        for _ in range(2):
            await asyncio.sleep(self.settings.delay)
            if await self._current(check) is None:
                return False  # invalidated or replaced: the cache moved on
            value = await check.loader()
            current = await self._current(check)
            if current is None or self._same(check.namespace, current, value):
                return False
        return True

    async def _current(self, check: _Check) -> Entry | None:
        """The key's entry if it is still the one served and unexpired, else ``None``."""
        raw = await self._parts.store.get(check.full)
        if raw is None:
            return None
        try:
            entry = unwrap(raw)
        except DecodeError:
            return None
        if isinstance(entry, Lease) or entry.write_id != check.served.write_id:
            return None
        return entry if entry.expires_at > self._parts.stored.now() else None

    def _same(self, namespace: Namespace[Any], entry: Entry, value: Any) -> bool:
        payload = _NULL if value is None else namespace.codec.dumps(value)
        if payload == entry.payload:
            return True
        cached = self._parts.stored.decode(namespace, entry)
        fresh = None if value is None else namespace.codec.loads(payload)
        if cached is None or fresh is None or namespace.compare_key is None:
            return bool(cached == fresh)
        return bool(namespace.compare_key(cached) == namespace.compare_key(fresh))

    def _age(self, check: _Check) -> float:
        """Seconds since the served entry can at the earliest have been written."""
        namespace, served = check.namespace, check.served
        if check.ttl is not None:  # a caller's TTL is only ever shortened by the jitter
            longest = check.ttl
        else:
            base = namespace.ttl
            if served.payload == _NULL and namespace.negative_ttl is not None:
                base = namespace.negative_ttl
            longest = base * (1 + self._parts.policy.ttl_jitter)
        return max(0.0, self._parts.stored.now() - (served.expires_at - longest))

    def _report(self, check: _Check) -> None:
        age = self._age(check)
        stats = check.stats
        stats.inconsistent += 1
        stats.inconsistency_age_last = age
        stats.inconsistency_age_max = max(stats.inconsistency_age_max, age)
        digest = key_hash(check.full)
        logger.warning(
            "cache entry of %s differs from the database (key sha256 %s, written at most "
            "%.1f s ago)",
            check.namespace.name,
            digest,
            age,
            extra={
                "event": "cache.inconsistent",
                "namespace": check.namespace.name,
                "key_hash": digest,
                "age_seconds": round(age, 3),
            },
        )

    def _log_error(self, namespace: Namespace[Any], exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_log < self._parts.policy.error_log_interval:
            self._suppressed += 1
            return
        suppressed, self._suppressed = self._suppressed, 0
        self._last_log = now
        logger.warning(
            "cache verifier could not check an entry of %s: %s%s",
            namespace.name,
            type(exc).__name__,
            f" ({suppressed} similar errors not logged)" if suppressed else "",
            extra={"event": "cache.verify_error", "namespace": namespace.name},
        )
