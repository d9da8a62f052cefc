"""What the cache stores under a key and how it reads it back.

Every value is stored in an envelope (:mod:`ogcache.cache.envelope`) with a random write id
and its logical expiry, so a reader can tell a fresh value, a value past its TTL (kept for the
namespace's stale grace), a loader's lease, and bytes it cannot decode. ``None`` ("not found")
is stored as JSON ``null`` whatever the namespace's codec, so negative caching works for typed
namespaces too.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from ogcache.cache.envelope import Entry, Lease, new_token, unwrap, wrap
from ogcache.cache.exceptions import DecodeError, InvalidKeyError
from ogcache.cache.failures import TooLargeError, logger
from ogcache.cache.namespace import MAX_TTL, Namespace
from ogcache.cache.policy import Policy
from ogcache.cache.stats import NamespaceStats

__all__ = ["NULL", "Found", "State", "Stored", "UnreadableError", "check_ttl"]

T = TypeVar("T")

NULL: Final = b"null"
# A payload with fewer JSON openers than this cannot nest deep enough for a codec to refuse
# reading it back (pydantic stops near 200 levels, orjson near 1,024), so only payloads with
# more are decoded once before they are stored. Two byte counts: ~1 us per 100 KB.
_ROUND_TRIP_CHECK_FROM: Final = 128


class State(enum.Enum):
    MISSING = enum.auto()
    LEASED = enum.auto()
    FRESH = enum.auto()
    STALE = enum.auto()


@dataclass(slots=True)  # not frozen: built on every read, and never changed
class Found(Generic[T]):
    """What a read of one key found."""

    state: State
    raw: bytes | None = None
    entry: Entry | None = None
    value: T | None = None


class UnreadableError(Exception):
    """A value the namespace's codec encodes but could not decode (nested too deep)."""


def check_ttl(ttl: float | None) -> None:
    if ttl is not None and not 0 < ttl <= MAX_TTL:
        raise InvalidKeyError(f"ttl must be > 0 and at most {MAX_TTL:.0f} seconds, not {ttl}")


class Stored:
    """Encodes values into envelopes and classifies what a read returned."""

    __slots__ = ("_clock", "_policy", "random")

    def __init__(self, policy: Policy, clock: Callable[[], float]) -> None:
        self._policy = policy
        self._clock = clock
        # A generator of our own: jitter and early refresh must not touch (or be steered by)
        # the application's global random state.
        self.random = random.Random()

    def encode(
        self, namespace: Namespace[T], value: T | None, ttl: float | None, load_time: float
    ) -> tuple[bytes, float]:
        """The stored bytes and the key's lifetime (the logical TTL plus any stale grace).

        A value its codec could not read back is refused here, before anything is stored: a
        stored one would be a miss on every read, reloaded and refused again.
        A namespace's TTL is jittered both ways; a TTL given by the caller is an upper bound
        (a token's remaining life, say), so it is only ever shortened.
        """
        payload = self.payload(namespace, value)
        if value is None and namespace.negative_ttl is not None and ttl is None:
            ttl = namespace.negative_ttl
        seconds = namespace.ttl if ttl is None else ttl
        jitter = self._policy.ttl_jitter
        if jitter:
            spread = self.random.random() if ttl is None else self.random.random() / 2
            seconds *= 1 + jitter * (2 * spread - 1)
        if len(payload) > self._policy.max_value_bytes:
            raise TooLargeError(namespace, len(payload))
        if payload.count(b"[") + payload.count(b"{") >= _ROUND_TRIP_CHECK_FROM:
            try:
                namespace.codec.loads(payload)
            except DecodeError as exc:
                raise UnreadableError(f"it could not be read back ({exc})") from exc
        data = wrap(
            payload, write_id=new_token(), expires_at=self._clock() + seconds, load_time=load_time
        )
        return data, seconds + namespace.stale_ttl

    def inspect(
        self,
        namespace: Namespace[T],
        stats: NamespaceStats,
        raw: bytes | None,
        now: float | None = None,
    ) -> Found[T]:
        """Classify stored bytes (fresh at ``now``, by default the clock's time); an
        undecodable entry counts as absent (and is reported)."""
        if raw is None:
            return Found(State.MISSING)
        try:
            stored = unwrap(raw)
            if isinstance(stored, Lease):
                return Found(State.LEASED, raw)
            if stored.expires_at <= (self._clock() if now is None else now):
                return Found(State.STALE, raw, stored)
            value = self.decode(namespace, stored)
        except DecodeError as exc:
            stats.decode_errors += 1
            logger.warning(
                "dropping undecodable cache entry in %s: %s",
                namespace.name,
                exc,
                extra={"event": "cache.decode_error", "namespace": namespace.name},
            )
            return Found(State.MISSING, raw)
        return Found(State.FRESH, raw, stored, value)

    @staticmethod
    def payload(namespace: Namespace[T], value: T | None) -> bytes:
        """The value's bytes as stored inside the envelope (``None``: JSON ``null``)."""
        return NULL if value is None else namespace.codec.dumps(value)

    @staticmethod
    def decode(namespace: Namespace[T], entry: Entry) -> T | None:
        payload = entry.payload
        return None if payload == NULL else namespace.codec.loads(payload)

    def now(self) -> float:
        return self._clock()
