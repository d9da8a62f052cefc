"""Errors raised by the cache engine.

The tree::

    CacheError                  root: catch this to handle any engine error
    ├── InvalidKeyError         a key part or prefix that cannot be used (also a ValueError)
    ├── CacheConfigurationError a backend URL or option that cannot work (also a ValueError)
    ├── DecodeError             stored bytes that the namespace's codec cannot read
    └── BackendError            the store failed or timed out (driver errors are translated here)
        └── BackendBusyError    no connection was free in time: this process is overloaded

Data-path operations (``get``, ``set``, ``delete``, ``get_or_load`` and their ``_many`` forms)
never raise ``BackendError``: they count and log it and degrade to a miss. Administrative
operations (``clear``, ``clear_prefix``, ``count_keys``, ``ping``) raise it, because an operator
who asked to clear the cache must learn that nothing was cleared; so does ``update``, whose
caller must know whether its change was made.
"""

from __future__ import annotations

__all__ = [
    "BackendBusyError",
    "BackendError",
    "CacheConfigurationError",
    "CacheError",
    "DecodeError",
    "InvalidKeyError",
]


class CacheError(Exception):
    """Root of every error the cache engine raises."""


class InvalidKeyError(CacheError, ValueError):
    """A key part or prefix is empty, too long, or contains characters a key cannot hold."""


class CacheConfigurationError(CacheError, ValueError):
    """A backend URL or option cannot work; the message names it and says what to change."""


class DecodeError(CacheError):
    """Stored bytes could not be decoded by the namespace's codec (treated as a miss)."""


class BackendError(CacheError):
    """The cache store failed, was unreachable, or did not answer in time."""


class BackendBusyError(BackendError):
    """Every connection to the store stayed busy for ``pool_timeout``: the call never reached
    the store. A burst in this process, not a sign that the store failed, so the circuit
    breaker does not count it (a hung store is still caught by the calls in flight timing
    out). Raise ``max_connections`` or ``pool_timeout`` if it happens often."""
