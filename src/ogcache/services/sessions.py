"""Short-lived session data (chat state, UI state) kept in the cache only, for 1 h by default.

This is a session store, not a cache of database rows: there is no database copy, so while
the cache backend is unreachable reads find nothing and writes raise
:class:`~ogcache.errors.UnavailableError`. Keep anything that must survive in the database
(profiles, conversations).

Sessions are kept per owner: the cache key is ``{owner}:{session id}``, so two users' sessions
of the same id are two sessions and no user can read, replace or squat another's. Sessions
stored without an owner (the admin's own) live in a space of their own, ``#admin``, which no
user id can name.

**Limits.** Each owner may keep ``max_sessions_per_user`` sessions of at most
``max_session_bytes_per_user`` bytes of data in all (settings), so one token cannot fill the
cache and push other users' sessions out (eviction) or make every write fail (``noeviction``).
An index entry per owner (``session:index``: session id -> bytes and expiry) counts them; it
is changed with :meth:`~ogcache.cache.Cache.update`, an atomic compare-and-set, so concurrent
writes of one owner cannot pass the limits together. Expired sessions are pruned from it on
every write; deleting a session frees its room at once. A write reserves its room before it
stores the session and confirms it after, and a delete frees the room before it removes the
session, so a write racing a delete of the same id leaves the session counted, never stored
uncounted. What the index cannot prevent: if the cache evicts an owner's index entry (it is
rewritten on every write, so LRU takes it late), that owner's live sessions stop counting
until they expire, so they may hold up to twice their limits for one session TTL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Final

import orjson

from ogcache.cache import MISSING, BackendError
from ogcache.cache.namespace import MAX_TTL
from ogcache.db.models import utc_now
from ogcache.errors import InvalidInputError, LimitExceededError, NotFoundError, UnavailableError
from ogcache.schemas import USER_ID_PATTERN, SessionRecord, check_json
from ogcache.services.base import ServiceContext

__all__ = ["MAX_SESSION_BYTES", "SESSION_ID_PATTERN", "SessionService", "validate_session_id"]

SESSION_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{8,128}$"
_SESSION_ID = re.compile(SESSION_ID_PATTERN)
_USER_ID = re.compile(USER_ID_PATTERN)
MAX_SESSION_BYTES: Final = 64 * 1024
# The owner space of sessions stored without an owner: '#' never occurs in a user id.
_ADMIN_SPACE: Final = "#admin"
_UNREACHABLE: Final = "the session store (cache) is unreachable; retry later"

Index = dict[str, dict[str, float]]
Change = Callable[[Index | None], Index | None]


def validate_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
        raise InvalidInputError(
            "session id must be 8-128 characters of letters, digits, '_' or '-'"
        )
    return session_id


def _space(owner: str | None) -> str:
    if owner is None:
        return _ADMIN_SPACE
    if not isinstance(owner, str) or not _USER_ID.match(owner):
        raise InvalidInputError("owner must be a user id (1-128 letters, digits or '_.:@-')")
    return owner


def _key(space: str, session_id: str) -> str:
    return f"{space}:{session_id}"


def _absent(session_id: str) -> NotFoundError:
    return NotFoundError(f"no session {session_id!r} (expired, deleted or never stored)")


def _validate_data(data: dict[str, Any]) -> int:
    """The data's size as JSON, or ``InvalidInputError`` saying what is wrong with it."""
    if not isinstance(data, dict):
        raise InvalidInputError("session data must be a JSON object")
    try:
        check_json(data)  # before encoding: orjson writes NaN and Infinity as null
        encoded = orjson.dumps(data)
    except (TypeError, ValueError) as exc:  # a non-JSON value or key, NaN, too deep
        raise InvalidInputError(f"session data must be JSON: {exc}") from None
    if len(encoded) > MAX_SESSION_BYTES:
        raise InvalidInputError(f"session data must be at most {MAX_SESSION_BYTES} bytes")
    return len(encoded)


class SessionService:
    """get / set / delete / update one field of a JSON object per (owner, session id)."""

    def __init__(self, context: ServiceContext) -> None:
        self._cache = context.cache
        self._ns = context.namespaces.session
        self._index = context.namespaces.session_index
        self._limits = context.limits

    async def get(self, session_id: str, *, owner: str | None = None) -> SessionRecord | None:
        """The owner's session, or ``None`` when it expired, was deleted, was never stored, or
        the cache is unreachable."""
        key = _key(_space(owner), validate_session_id(session_id))
        record = await self._cache.get(self._ns, key)
        return None if record is MISSING else record

    async def require(self, session_id: str, *, owner: str | None = None) -> SessionRecord:
        """The owner's session; ``NotFoundError`` when :meth:`get` finds none."""
        record = await self.get(session_id, owner=owner)
        if record is None:
            raise _absent(session_id)
        return record

    async def set(
        self, session_id: str, data: dict[str, Any], *, owner: str | None = None
    ) -> SessionRecord:
        """Replace the owner's session (its TTL starts again), within the owner's limits.

        Raises ``LimitExceededError`` (nothing stored) when a new session would pass the
        owner's count, or larger data their bytes; a same-size or smaller replacement always
        passes.
        """
        space = _space(owner)
        validate_session_id(session_id)
        size = _validate_data(data)
        ttl = self._ns.ttl
        expires_at = time.time() + ttl  # the session's key expires by then (TTL jitter shortens)
        await self._change_index(space, self._reserve(session_id, size, expires_at))
        record = SessionRecord(session_id=session_id, owner=owner, data=data, updated_at=utc_now())
        if not await self._cache.set(self._ns, _key(space, session_id), record, ttl=ttl):
            raise UnavailableError(_UNREACHABLE)  # the reservation lapses with its expiry
        # A delete of this id between the reservation and the write freed the room: count
        # the session again (past the limits if need be) rather than keep it uncounted.
        await self._change_index(space, _confirm(session_id, size, expires_at))
        return record

    async def delete(self, session_id: str, *, owner: str | None = None) -> None:
        """Delete the owner's session and free its room; ``NotFoundError`` if there was none
        (its room, if still counted, is freed all the same)."""
        space = _space(owner)
        record = await self.get(session_id, owner=owner)
        await self._change_index(space, _release(session_id))
        if not await self._cache.delete(self._ns, _key(space, session_id)):
            raise UnavailableError(_UNREACHABLE)
        if record is None:
            raise _absent(session_id)

    async def delete_owner(self, owner: str) -> int:
        """Delete every session the owner's index counts, and the index (their profile was
        deleted); how many were counted. With the cache unreachable nothing can be read, and
        the sessions expire with their TTL, as do those an evicted index forgot."""
        space = _space(owner)
        index = await self._cache.get(self._index, space)
        counted = [] if index is MISSING or index is None else list(index)
        entries = [(self._ns, _key(space, session_id)) for session_id in counted]
        await self._cache.invalidate([*entries, (self._index, space)])
        return len(counted)

    async def update_field(
        self, session_id: str, field: str, value: Any, *, owner: str | None = None
    ) -> SessionRecord:
        """Set one field of the owner's existing session and return the whole session.

        Read-modify-write: two concurrent updates of different fields of one session can
        lose one of them (the last write wins).
        """
        if not isinstance(field, str) or not 1 <= len(field) <= 128:
            raise InvalidInputError("field name must be 1-128 characters")
        record = await self.require(session_id, owner=owner)
        return await self.set(session_id, {**record.data, field: value}, owner=owner)

    async def _change_index(self, space: str, change: Change) -> None:
        # The index outlives every session it counts: each expires within one session TTL of
        # the index's last write (and the index's TTL is only ever shortened by jitter).
        try:
            await self._cache.update(self._index, space, change, ttl=min(2 * self._ns.ttl, MAX_TTL))
        except BackendError:
            raise UnavailableError(_UNREACHABLE) from None

    def _reserve(self, session_id: str, size: int, expires_at: float) -> Change:
        limits = self._limits

        def reserve(index: Index | None) -> Index:
            live = _live(index)
            previous = live.get(session_id)
            if previous is None or size > previous["bytes"]:
                if previous is None and len(live) >= limits.max_sessions_per_user:
                    raise LimitExceededError(
                        f"at most {limits.max_sessions_per_user} sessions per user "
                        "(OGCACHE_MAX_SESSIONS_PER_USER); delete one or reuse its id"
                    )
                others = sum(int(e["bytes"]) for sid, e in live.items() if sid != session_id)
                if others + size > limits.max_session_bytes_per_user:
                    raise LimitExceededError(
                        f"sessions may hold at most {limits.max_session_bytes_per_user} bytes "
                        f"of data per user (OGCACHE_MAX_SESSION_BYTES_PER_USER); {others} are "
                        f"in use by other sessions and this one has {size}: delete or shrink one"
                    )
            live[session_id] = {"bytes": size, "expires_at": expires_at}
            return live

        return reserve


def _live(index: Index | None) -> Index:
    """The index without the sessions that have expired."""
    now = time.time()
    return {sid: e for sid, e in (index or {}).items() if e["expires_at"] > now}


def _confirm(session_id: str, size: int, expires_at: float) -> Change:
    def confirm(index: Index | None) -> Index | None:
        entry = (index or {}).get(session_id)
        if entry is not None and entry["expires_at"] >= expires_at:
            return index  # still counted (the usual case): nothing to write
        live = _live(index)
        live[session_id] = {"bytes": size, "expires_at": expires_at}
        return live

    return confirm


def _release(session_id: str) -> Change:
    def release(index: Index | None) -> Index | None:
        if index is None or session_id not in index:
            return index
        live = _live(index)
        live.pop(session_id, None)
        return live or None

    return release
