"""Errors of the OG Lab data layer (the cache engine has its own, in ``ogcache.cache``).

The tree::

    OgcacheError                 root: catch this to handle any application error
    ├── ConfigurationError       a setting is missing or invalid (names the variable)
    ├── InvalidInputError        a caller passed something unusable (also a ValueError)
    ├── NotFoundError            the user, conversation or item does not exist
    ├── ConflictError            the write contradicts stored data (e.g. a Telegram id in use)
    ├── LimitExceededError       the write would take a user past a storage limit (a setting)
    ├── AuthenticationError      a bearer token is missing, malformed, expired, tampered,
    │                            revoked, or belongs to a blocked or unknown user
    └── UnavailableError         a store with no database copy (the session store) is down
        └── DatabaseUnreachableError  the database itself cannot be connected to (the message
                                      names which, where and why)
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "DatabaseUnreachableError",
    "InvalidInputError",
    "LimitExceededError",
    "NotFoundError",
    "OgcacheError",
    "UnavailableError",
]


class OgcacheError(Exception):
    """Root of every error the application raises."""


class ConfigurationError(OgcacheError):
    """A setting is missing or invalid; the message names the environment variable."""


class InvalidInputError(OgcacheError, ValueError):
    """The caller's input cannot be used; the message says what is wrong."""


class NotFoundError(OgcacheError):
    """The requested record does not exist."""


class ConflictError(OgcacheError):
    """The write contradicts what is stored."""


class LimitExceededError(OgcacheError):
    """The write would take one user past a storage limit; the message names the limit and
    its setting. Nothing was written."""


class AuthenticationError(OgcacheError):
    """The bearer token cannot be accepted; the message says why without echoing the token."""


class UnavailableError(OgcacheError):
    """A store that has no database copy to fall back on cannot be reached; retry later."""


class DatabaseUnreachableError(UnavailableError):
    """Connecting to the database failed or timed out; the message names the database, the
    host and the cause (never the password), so an operator needs no traceback."""
