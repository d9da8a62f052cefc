"""Namespaces: a family of cache entries with one TTL, one codec and one key layout.

A full key is ``{prefix}:{name}:v{version}:{key}``. The application prefix keeps this
application's keys apart from anything else in a shared Redis; the version lets a deploy that
changes a value's shape bump it, so new code never reads values written by old code (old keys
simply expire).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from ogcache.cache.codec import Codec, JsonCodec
from ogcache.cache.exceptions import CacheConfigurationError, InvalidKeyError

__all__ = ["MAX_KEY_LENGTH", "MAX_TTL", "Namespace", "validate_prefix"]

T = TypeVar("T")

MAX_KEY_LENGTH: Final = 512
# Expiry times are stored as 13-digit epoch milliseconds: ten years keeps far inside that.
MAX_TTL: Final = 10 * 365 * 24 * 3600.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.:-]*[a-z0-9_]$|^[a-z0-9]$")
_FORBIDDEN_IN_PART = re.compile(r"[\s\x00-\x1f\x7f]")


def validate_prefix(prefix: str, *, what: str = "prefix") -> str:
    """Check a literal key prefix: non-empty, printable, no whitespace, bounded length."""
    if not prefix:
        raise InvalidKeyError(f"{what} must not be empty")
    if len(prefix) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"{what} is {len(prefix)} characters; the limit is {MAX_KEY_LENGTH}")
    if _FORBIDDEN_IN_PART.search(prefix):
        raise InvalidKeyError(f"{what} {prefix!r} contains whitespace or control characters")
    return prefix


@dataclass(frozen=True, slots=True)
class Namespace(Generic[T]):
    """A named family of entries.

    ``ttl`` is in seconds. ``log_keys=False`` keeps the namespace's keys out of log records
    (for keys derived from secrets, even hashed). ``negative_ttl`` is how long ``get_or_load``
    caches a ``None`` ("not found") result (30 s by default; ``None``: never). ``stale_ttl``
    > 0 keeps an expired value that long to serve it when the loader fails (never after an
    invalidation). ``early_refresh`` lets one caller reload a hot entry shortly before it
    expires (XFetch). ``local_ttl`` > 0 also keeps decoded values in this process's memory
    (the L1 tier) for at most that many seconds, dropped on any invalidation in any process;
    values served from it are shared objects, to be treated as immutable. Build keys with
    :meth:`key`.

    For the consistency verifier (``docs/consistency.md``): ``compare_key`` maps a value to
    what is compared with the database's (e.g. the value without a load timestamp that
    differs on every load); ``None`` compares whole values. ``verify=False`` never checks
    this namespace (entries not invalidated on write by design, or loaders that read
    through the cache).
    """

    name: str
    ttl: float
    version: int = 1
    codec: Codec[T] = field(default_factory=JsonCodec)
    negative_ttl: float | None = 30.0
    stale_ttl: float = 0.0
    early_refresh: bool = True
    log_keys: bool = True
    local_ttl: float = 0.0
    compare_key: Callable[[T], object] | None = field(default=None, compare=False)
    verify: bool = True
    stored_prefix: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise InvalidKeyError(
                f"namespace name {self.name!r} must be lower-case letters, digits and "
                "'_.:-', starting and ending with a letter or digit"
            )
        if not 0 < self.ttl <= MAX_TTL:
            raise CacheConfigurationError(
                f"namespace {self.name!r}: ttl must be > 0 and at most {MAX_TTL:.0f} seconds"
            )
        if self.negative_ttl is not None and not self.negative_ttl > 0:
            raise CacheConfigurationError(
                f"namespace {self.name!r}: negative_ttl must be > 0 seconds"
            )
        if self.stale_ttl < 0:
            raise CacheConfigurationError(
                f"namespace {self.name!r}: stale_ttl must be >= 0 seconds"
            )
        if not 0 <= self.local_ttl <= MAX_TTL:
            raise CacheConfigurationError(
                f"namespace {self.name!r}: local_ttl must be >= 0 seconds"
            )
        if self.version < 1:
            raise CacheConfigurationError(f"namespace {self.name!r}: version must be >= 1")
        # Built once: every lookup prepends it.
        object.__setattr__(self, "stored_prefix", f"{self.name}:v{self.version}:")

    def key(self, *parts: Any) -> str:
        """Join key parts with ``:``; each part must be non-empty and printable."""
        if not parts:
            raise InvalidKeyError(f"namespace {self.name!r}: a key needs at least one part")
        texts = []
        for part in parts:
            text = str(part)
            if not text or _FORBIDDEN_IN_PART.search(text):
                raise InvalidKeyError(
                    f"namespace {self.name!r}: key part {text!r} is empty or contains "
                    "whitespace or control characters"
                )
            texts.append(text)
        key = ":".join(texts)
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidKeyError(
                f"namespace {self.name!r}: key is {len(key)} characters; "
                f"the limit is {MAX_KEY_LENGTH}"
            )
        return key
