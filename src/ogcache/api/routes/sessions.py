"""Session data (chat or UI state kept for an hour): read, replace, update a field, delete.

A session belongs to the user who first stored it; other users see it as absent. The data
lives only in the cache, so while the cache is unreachable writes answer 503.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, status
from pydantic import BaseModel, ConfigDict, Field

from ogcache.api.deps import Caller, CallerDep, RuntimeDep
from ogcache.errors import NotFoundError
from ogcache.runtime import Runtime
from ogcache.schemas import SessionRecord
from ogcache.services.sessions import SESSION_ID_PATTERN

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

SessionIdPath = Annotated[str, Path(pattern=SESSION_ID_PATTERN)]


class SessionFieldUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, max_length=128)
    value: Any = None


async def _visible(runtime: Runtime, caller: Caller, session_id: str) -> SessionRecord:
    record = await runtime.sessions.get(session_id)
    if record is None or not caller.may_see(record.owner):
        raise NotFoundError(f"no session {session_id!r} (expired, deleted or never stored)")
    return record


def _owner(caller: Caller) -> str | None:
    return caller.identity.user_id if caller.identity is not None else None


@router.get("/{session_id}", response_model=SessionRecord)
async def get_session(
    session_id: SessionIdPath, runtime: RuntimeDep, caller: CallerDep
) -> SessionRecord:
    return await _visible(runtime, caller, session_id)


@router.put("/{session_id}", response_model=SessionRecord)
async def put_session(
    session_id: SessionIdPath,
    data: Annotated[dict[str, Any], Body(description="The session's data, a JSON object.")],
    runtime: RuntimeDep,
    caller: CallerDep,
) -> SessionRecord:
    """Replace the session's data (its hour starts again)."""
    existing = await runtime.sessions.get(session_id)
    if existing is not None:
        await _visible(runtime, caller, session_id)
    owner = existing.owner if existing is not None else _owner(caller)
    return await runtime.sessions.set(session_id, data, owner=owner)


@router.patch("/{session_id}", response_model=SessionRecord)
async def update_session_field(
    session_id: SessionIdPath, change: SessionFieldUpdate, runtime: RuntimeDep, caller: CallerDep
) -> SessionRecord:
    """Set one field of the session's data."""
    await _visible(runtime, caller, session_id)
    return await runtime.sessions.update_field(session_id, change.field, change.value)


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_session(session_id: SessionIdPath, runtime: RuntimeDep, caller: CallerDep) -> None:
    await _visible(runtime, caller, session_id)
    await runtime.sessions.delete(session_id)
