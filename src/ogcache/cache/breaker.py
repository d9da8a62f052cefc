"""The circuit breaker's state machine (no I/O); :mod:`ogcache.cache.breaker_backend` puts
it around a store and replays the invalidations it could not deliver.

While the backend keeps failing, waiting on it (up to the call timeout, every call) only
makes requests slower. The breaker decides, per process, whether calls go to the backend:

- **closed**: calls go to the backend. ``failure_threshold`` errors or timeouts in a row
  **open** the breaker; a timely answer resets the count.
- **suspect**: calls skip the backend at once while a probe runs, at once, and decides:
  **closed** again if the backend answers a PING in time (a false alarm), **open** if not.
  Entered when a call finds calls outstanding and no timely answer for ``stall_threshold``
  seconds, even after giving the loop a few turns to deliver answers that were only waiting
  for it (a hung backend: only the calls already in flight wait for their timeout); or after
  ``failure_threshold`` answers in a row slower than ``slow_call_threshold``, none of them
  excused by another call answered in time meanwhile (a queue for connections or a busy
  loop also makes answers late: the probe lets calls in flight end first, and discounts the
  loop's own delay). Both detections arm once the backend has answered in time once.
- **open**: every call fails at once with :class:`CircuitOpenError`; the cache front end
  goes to the loader. No user call waits for the backend: a background probe runs every
  ``cool_down`` seconds (**half_open** while it is in flight).
- **settling**: the probe succeeded and delivered this process's missed invalidations. Writes
  and deletes go through; reads (``get``, ``get_many``, ``add``) still skip the backend for
  ``recovery_settle`` seconds, long enough for every other process's probe to have delivered
  *its* missed invalidations. Then **closed**.

See ``docs/resilience.md``.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ogcache.cache.exceptions import BackendError, CacheConfigurationError

__all__ = [
    "SKIPPING",
    "BreakerSettings",
    "BreakerState",
    "BreakerStats",
    "CircuitBreaker",
    "CircuitOpenError",
    "SlowCallError",
]

logger = logging.getLogger("ogcache.cache")


class CircuitOpenError(BackendError):
    """The breaker is not closed (or reads are held back): the backend was not called."""


class SlowCallError(BackendError):
    """The backend answered, but slower than the slow-call threshold."""


class BreakerState(enum.Enum):
    CLOSED = "closed"
    SUSPECT = "suspect"
    OPEN = "open"
    HALF_OPEN = "half_open"
    SETTLING = "settling"


# The states in which calls skip the backend.
SKIPPING: Final = frozenset({BreakerState.SUSPECT, BreakerState.OPEN, BreakerState.HALF_OPEN})


@dataclass(frozen=True, slots=True)
class BreakerStats:
    state: BreakerState
    trips: int
    open_seconds: float
    consecutive_failures: int
    pending_invalidations: int
    replays: int
    suspicions: int = 0  # times a stall made the breaker suspect the backend
    false_alarms: int = 0  # suspicions the probe cleared at once
    slow_calls: int = 0
    probes: int = 0


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When the breaker opens and how it recovers; see the module's docstring.

    ``slow_call_threshold`` and ``stall_threshold`` are off (0) unless given: their useful
    values depend on how fast the store normally answers (the service sets 0.1 s and 0.02 s
    for a Redis nearby, ``OGCACHE_CACHE_*_THRESHOLD``). ``recovery_settle`` defaults to two
    cool-downs.
    """

    failure_threshold: int = 5
    cool_down: float = 2.0
    slow_call_threshold: float = 0.0
    stall_threshold: float = 0.0
    recovery_settle: float | None = None

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or not self.cool_down > 0:
            raise CacheConfigurationError("failure_threshold must be >= 1 and cool_down > 0")
        if self.slow_call_threshold < 0 or self.stall_threshold < 0:
            raise CacheConfigurationError(
                "slow_call_threshold and stall_threshold must be >= 0 (0: off)"
            )
        if self.recovery_settle is not None and self.recovery_settle < 0:
            raise CacheConfigurationError("recovery_settle must be >= 0")


class CircuitBreaker:
    """The state machine (no I/O): see the module's docstring."""

    def __init__(
        self,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = settings or BreakerSettings()
        self.settings = settings
        self.failure_threshold = settings.failure_threshold
        self.cool_down = settings.cool_down
        self.slow_call_threshold = settings.slow_call_threshold or math.inf
        self.stall_threshold = settings.stall_threshold or math.inf
        self.recovery_settle = (
            2 * settings.cool_down if settings.recovery_settle is None else settings.recovery_settle
        )
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.trips = 0
        self.consecutive_failures = 0
        self.suspicions = 0
        self.false_alarms = 0
        self.slow_calls = 0
        self.probes = 0
        self.failed_while_suspect: BaseException | None = None
        self.on_change: Callable[[], None] | None = None
        self._left_closed_at = 0.0  # when calls began to skip the backend
        self._open_total = 0.0
        self._next_probe_at = 0.0
        self._settle_until = 0.0

    @property
    def open_seconds(self) -> float:
        """Total time calls skipped the backend (suspect, open, half-open), including now."""
        if self.state in SKIPPING:
            return self._open_total + self._clock() - self._left_closed_at
        return self._open_total

    def _set(self, state: BreakerState) -> None:
        now = self._clock()
        if state in SKIPPING and self.state not in SKIPPING:
            self._left_closed_at = now
        elif state not in SKIPPING and self.state in SKIPPING:
            self._open_total += now - self._left_closed_at
        self.state = state
        if self.on_change is not None:
            self.on_change()

    def _open(self, reason: str) -> None:
        self._set(BreakerState.OPEN)
        self.trips += 1
        self._next_probe_at = self._clock() + self.cool_down
        logger.warning(
            "cache circuit opened (%s); serving without the cache, probing every %.1f s",
            reason,
            self.cool_down,
            extra={"event": "cache.circuit_opened"},
        )

    # --- what calls report -----------------------------------------------------------

    def admits(self, read: bool) -> bool:
        """Whether a call may go to the backend now (reads are held back while settling)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.SETTLING:
            if self._clock() >= self._settle_until:
                self._set(BreakerState.CLOSED)
                return True
            return not read
        return False

    def success(self) -> None:
        self.consecutive_failures = 0

    def failure(self, exc: BaseException) -> None:
        """An error or a timeout. Only a probe leaves suspect or open."""
        self.consecutive_failures += 1
        if self.state is BreakerState.SUSPECT:
            self.failed_while_suspect = exc
        elif (
            self.state in (BreakerState.CLOSED, BreakerState.SETTLING)
            and self.consecutive_failures >= self.failure_threshold
        ):
            self._open(f"{self.consecutive_failures} failed calls in a row; last: {exc}")

    def slow(self, seconds: float) -> None:
        """An answer slower than the threshold. ``failure_threshold`` in a row make the
        breaker suspect the backend (not open it: a queue for connections, or a busy loop,
        also makes answers late; the probe tells them apart)."""
        self.slow_calls += 1
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.failure_threshold:
            self.suspect()

    def suspect(self) -> bool:
        """Calls are outstanding and nothing answered for ``stall_threshold``: skip the
        backend until a probe says otherwise. True if this changed the state."""
        if self.state is not BreakerState.CLOSED and self.state is not BreakerState.SETTLING:
            return False
        self.suspicions += 1
        self.failed_while_suspect = None
        self._set(BreakerState.SUSPECT)
        logger.info(
            "cache backend suspected (no answer in time); skipping it while a probe decides",
            extra={"event": "cache.circuit_suspect"},
        )
        return True

    # --- the probe -------------------------------------------------------------------

    def probe_delay(self) -> float | None:
        """Seconds until the next probe is due; None when no probe is needed."""
        if self.state is BreakerState.SUSPECT:
            return 0.0
        if self.state is BreakerState.OPEN:
            return max(0.0, self._next_probe_at - self._clock())
        return None

    def settle_left(self) -> float | None:
        """Seconds until reads resume; None unless settling."""
        if self.state is not BreakerState.SETTLING:
            return None
        return max(0.0, self._settle_until - self._clock())

    def probe_started(self) -> None:
        self.probes += 1
        if self.state is BreakerState.OPEN:
            self._next_probe_at = self._clock() + self.cool_down  # a fixed rate
            self._set(BreakerState.HALF_OPEN)

    def probe_failed(self, exc: BaseException) -> None:
        if self.state is BreakerState.SUSPECT:
            self._open(f"suspected, then: {exc}")
        elif self.state is BreakerState.HALF_OPEN:
            self._set(BreakerState.OPEN)

    def probe_succeeded(self) -> None:
        self.consecutive_failures = 0
        if self.state is BreakerState.SUSPECT:
            self.false_alarms += 1
            settling = self._clock() < self._settle_until  # suspected while settling
            self._set(BreakerState.SETTLING if settling else BreakerState.CLOSED)
            logger.info(
                "cache backend answers in time: a false alarm, using it again",
                extra={"event": "cache.circuit_ok"},
            )
        elif self.state is BreakerState.HALF_OPEN:
            was_open = self._clock() - self._left_closed_at
            self._settle_until = self._clock() + self.recovery_settle
            self._set(BreakerState.SETTLING if self.recovery_settle > 0 else BreakerState.CLOSED)
            logger.warning(
                "cache circuit closed: the backend answers again (was open %.1f s); "
                "reads resume in %.1f s",
                was_open,
                self.recovery_settle,
                extra={"event": "cache.circuit_closed"},
            )
