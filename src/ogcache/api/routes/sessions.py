"""Session data (chat or UI state kept for an hour): read, replace, update a field, delete.

Sessions are kept per user: a user's token addresses that user's own sessions, so two users
may use the same session id without ever seeing each other's data. The admin token addresses
a user's sessions with ``?user_id=``, or without it a space of the admin's own. Each user may
keep ``OGCACHE_MAX_SESSIONS_PER_USER`` sessions of ``OGCACHE_MAX_SESSION_BYTES_PER_USER`` bytes
in all (409 past them). The data lives only in the cache, so while the cache is unreachable
writes answer 503.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from ogcache.api.deps import Caller, CallerDep, RuntimeDep
from ogcache.schemas import USER_ID_PATTERN, JsonObject, JsonValue, SessionRecord
from ogcache.services.sessions import SESSION_ID_PATTERN

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

SessionIdPath = Annotated[str, Path(pattern=SESSION_ID_PATTERN)]
UserIdQuery = Annotated[
    str | None,
    Query(
        pattern=USER_ID_PATTERN,
        description="Admin: the user whose session this is (default: the admin's own space). "
        "A user may give only their own id.",
    ),
]


class SessionFieldUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, max_length=128)
    value: JsonValue = None


def _owner(caller: Caller, user_id: str | None) -> str | None:
    """Whose sessions the call addresses: the user's own, or for the admin ``user_id``."""
    if caller.identity is None:
        return user_id
    if user_id is not None:
        caller.require_user(user_id)
    return caller.identity.user_id


@router.get("/{session_id}", response_model=SessionRecord)
async def get_session(
    session_id: SessionIdPath, runtime: RuntimeDep, caller: CallerDep, user_id: UserIdQuery = None
) -> SessionRecord:
    return await runtime.sessions.require(session_id, owner=_owner(caller, user_id))


@router.put("/{session_id}", response_model=SessionRecord)
async def put_session(
    session_id: SessionIdPath,
    data: Annotated[JsonObject, Body(description="The session's data, a JSON object.")],
    runtime: RuntimeDep,
    caller: CallerDep,
    user_id: UserIdQuery = None,
) -> SessionRecord:
    """Replace the session's data (its hour starts again); 409 past the user's limits."""
    return await runtime.sessions.set(session_id, data, owner=_owner(caller, user_id))


@router.patch("/{session_id}", response_model=SessionRecord)
async def update_session_field(
    session_id: SessionIdPath,
    change: SessionFieldUpdate,
    runtime: RuntimeDep,
    caller: CallerDep,
    user_id: UserIdQuery = None,
) -> SessionRecord:
    """Set one field of the session's data."""
    return await runtime.sessions.update_field(
        session_id, change.field, change.value, owner=_owner(caller, user_id)
    )


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_session(
    session_id: SessionIdPath, runtime: RuntimeDep, caller: CallerDep, user_id: UserIdQuery = None
) -> None:
    """Delete the session and free its room; 404 if there was none."""
    await runtime.sessions.delete(session_id, owner=_owner(caller, user_id))
