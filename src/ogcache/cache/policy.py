"""How a :class:`~ogcache.cache.Cache` fills and stores entries: one frozen settings object.

Grouped so a cache is configured by naming what changes (``Policy(lease_wait=0.5)``), and
checked when built, so a wrong setting fails at start-up rather than at the first miss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ogcache.cache.exceptions import CacheConfigurationError
from ogcache.cache.verifier import VerifierSettings

__all__ = ["Policy", "check_prefix"]

_APP_PREFIX: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Policy:
    """Fill and storage settings; every field has the default most applications want.

    - ``ttl_jitter``: each stored TTL is spread by ± this fraction, so entries written
      together do not expire together;
    - ``lease_ttl``: how long a crashed loader's lease can block its key;
    - ``lease_wait``: how long other callers wait for the lease holder's value before
      loading themselves (uncached);
    - ``early_refresh_beta``: XFetch's beta; 0 turns early refresh off;
    - ``max_value_bytes``: larger encoded values are not cached (counted and logged once);
    - ``key_count_limit``: the most keys :meth:`Cache.count_keys` scans before it stops;
    - ``error_log_interval``: store errors are logged at most once per this many seconds;
    - ``verifier``: re-check a sample of hits against the loader
      (:class:`~ogcache.cache.verifier.VerifierSettings`; ``None``: off).
    """

    ttl_jitter: float = 0.1
    lease_ttl: float = 10.0
    lease_wait: float = 2.0
    early_refresh_beta: float = 1.0
    max_value_bytes: int = 1024 * 1024
    key_count_limit: int = 100_000
    error_log_interval: float = 10.0
    verifier: VerifierSettings | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.ttl_jitter < 1:
            raise CacheConfigurationError(
                f"ttl_jitter must be at least 0 and below 1, not {self.ttl_jitter}"
            )
        if not self.lease_ttl > 0:
            raise CacheConfigurationError(f"lease_ttl must be > 0, not {self.lease_ttl}")
        if not (self.lease_wait >= 0 and self.early_refresh_beta >= 0):
            raise CacheConfigurationError("lease_wait and early_refresh_beta must be >= 0")
        if self.max_value_bytes < 1 or self.key_count_limit < 1:
            raise CacheConfigurationError("max_value_bytes and key_count_limit must be >= 1")
        if not self.error_log_interval >= 0:
            raise CacheConfigurationError("error_log_interval must be >= 0")


def check_prefix(prefix: str) -> str:
    """A cache's keyspace name, checked: 1-64 letters, digits or ``_.-``, no ``:``."""
    if not _APP_PREFIX.match(prefix):
        raise CacheConfigurationError(
            f"cache prefix {prefix!r} must be 1-64 letters, digits or '_.-' "
            "(no ':'; it separates the prefix from namespaces)"
        )
    return prefix
