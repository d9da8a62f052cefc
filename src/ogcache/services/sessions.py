"""Short-lived session data (chat state, UI state) kept in the cache only, for 1 h by default.

This is a session store, not a cache of database rows: there is no database copy, so while
the cache backend is unreachable reads find nothing and writes raise
:class:`~ogcache.errors.UnavailableError`. Keep anything that must survive in the database
(profiles, conversations). Each session remembers its owner (the user who stored it first),
so the HTTP API can keep users out of each other's sessions.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from ogcache.cache import MISSING
from ogcache.db.models import utc_now
from ogcache.errors import InvalidInputError, NotFoundError, UnavailableError
from ogcache.schemas import SessionRecord
from ogcache.services.base import ServiceContext

__all__ = ["MAX_SESSION_BYTES", "SESSION_ID_PATTERN", "SessionService", "validate_session_id"]

SESSION_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{8,128}$"
_SESSION_ID = re.compile(SESSION_ID_PATTERN)
MAX_SESSION_BYTES: Final = 64 * 1024


def validate_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
        raise InvalidInputError(
            "session id must be 8-128 characters of letters, digits, '_' or '-'"
        )
    return session_id


def _validate_data(data: dict[str, Any]) -> None:
    if not isinstance(data, dict):
        raise InvalidInputError("session data must be a JSON object")
    try:
        encoded = orjson.dumps(data)
    except TypeError as exc:  # a non-JSON value or a non-string key
        raise InvalidInputError(f"session data must be JSON: {exc}") from None
    if len(encoded) > MAX_SESSION_BYTES:
        raise InvalidInputError(f"session data must be at most {MAX_SESSION_BYTES} bytes")


class SessionService:
    """get / set / delete / update one field of a JSON object per session id."""

    def __init__(self, context: ServiceContext) -> None:
        self._cache = context.cache
        self._ns = context.namespaces.session

    async def get(self, session_id: str) -> SessionRecord | None:
        """The session, or ``None`` when it expired, was deleted, or the cache is unreachable."""
        record = await self._cache.get(self._ns, validate_session_id(session_id))
        return None if record is MISSING else record

    async def set(
        self, session_id: str, data: dict[str, Any], *, owner: str | None = None
    ) -> SessionRecord:
        """Replace the session's data; its TTL starts again."""
        validate_session_id(session_id)
        _validate_data(data)
        record = SessionRecord(session_id=session_id, owner=owner, data=data, updated_at=utc_now())
        if not await self._cache.set(self._ns, session_id, record):
            raise UnavailableError("the session store (cache) is unreachable; retry later")
        return record

    async def delete(self, session_id: str) -> None:
        if not await self._cache.delete(self._ns, validate_session_id(session_id)):
            raise UnavailableError("the session store (cache) is unreachable; retry later")

    async def update_field(self, session_id: str, field: str, value: Any) -> SessionRecord:
        """Set one field of an existing session and return the whole session.

        Read-modify-write: two concurrent updates of different fields of one session can
        lose one of them (the last write wins).
        """
        if not isinstance(field, str) or not 1 <= len(field) <= 128:
            raise InvalidInputError("field name must be 1-128 characters")
        record = await self.get(session_id)
        if record is None:
            raise NotFoundError(f"no session {session_id!r} (expired or never set)")
        return await self.set(session_id, {**record.data, field: value}, owner=record.owner)
