"""Short-lived session data (chat state, UI state) kept in the cache only, for 1 h by default.

This is a session store, not a cache of database rows: there is no database copy, so while
the cache backend is unreachable reads find nothing and writes report ``False``. Keep
anything that must survive in the database (profiles, conversations).
"""

from __future__ import annotations

import re
from typing import Any

from ogcache.cache import MISSING
from ogcache.errors import InvalidInputError, NotFoundError
from ogcache.services.base import ServiceContext

__all__ = ["MAX_SESSION_BYTES", "SessionService", "validate_session_id"]

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
MAX_SESSION_BYTES = 64 * 1024


def validate_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
        raise InvalidInputError(
            "session id must be 8-128 characters of letters, digits, '_' or '-'"
        )
    return session_id


class SessionService:
    """get / set / delete / update one field of a JSON object per session id."""

    def __init__(self, context: ServiceContext) -> None:
        self._cache = context.cache
        self._ns = context.namespaces.session

    async def get(self, session_id: str) -> dict[str, Any] | None:
        value = await self._cache.get(self._ns, validate_session_id(session_id))
        return None if value is MISSING else value

    async def set(self, session_id: str, data: dict[str, Any]) -> bool:
        """Replace the session's data (TTL restarts); False if the cache could not store it."""
        validate_session_id(session_id)
        if not isinstance(data, dict):
            raise InvalidInputError("session data must be a JSON object")
        try:
            encoded = self._ns.codec.dumps(data)
        except TypeError as exc:  # orjson: a non-JSON value or a non-string key
            raise InvalidInputError(f"session data must be JSON: {exc}") from None
        if len(encoded) > MAX_SESSION_BYTES:
            raise InvalidInputError(f"session data must be at most {MAX_SESSION_BYTES} bytes")
        return await self._cache.set(self._ns, session_id, data)

    async def delete(self, session_id: str) -> bool:
        return await self._cache.delete(self._ns, validate_session_id(session_id))

    async def update_field(self, session_id: str, field: str, value: Any) -> dict[str, Any]:
        """Set one field of an existing session and return the whole session.

        Read-modify-write: two concurrent updates of different fields of one session can
        lose one of them (the last write wins).
        """
        if not field or len(field) > 128:
            raise InvalidInputError("field name must be 1-128 characters")
        data = await self.get(session_id)
        if data is None:
            raise NotFoundError(f"no session {session_id!r} (expired or never set)")
        data[field] = value
        await self.set(session_id, data)
        return data
