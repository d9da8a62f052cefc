"""Conversations: start one, read it with its newest messages, page older ones, add messages."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from ogcache.api.deps import Caller, CallerDep, RuntimeDep
from ogcache.errors import NotFoundError
from ogcache.runtime import Runtime
from ogcache.schemas import ConversationCreate, ConversationPublic, MessageCreate, MessagePublic
from ogcache.services.conversations import MAX_PAGE, MAX_SEQ

router = APIRouter(prefix="/api/conversations", tags=["conversations"])


async def _owned(
    runtime: Runtime, caller: Caller, conversation_id: uuid.UUID
) -> ConversationPublic:
    conversation = await runtime.conversations.get(conversation_id)
    if conversation is None or not caller.may_see(conversation.user_id):
        raise NotFoundError(f"no conversation with id {conversation_id}")
    return conversation


@router.post("", response_model=ConversationPublic, status_code=status.HTTP_201_CREATED)
async def create_conversation(
    body: ConversationCreate, runtime: RuntimeDep, caller: CallerDep
) -> ConversationPublic:
    """Start a conversation; 409 ``limit_exceeded`` when the user has
    ``OGCACHE_MAX_CONVERSATIONS_PER_USER`` already."""
    caller.require_user(body.user_id)
    return await runtime.conversations.create(body)


@router.get("/{conversation_id}", response_model=ConversationPublic)
async def get_conversation(
    conversation_id: uuid.UUID, runtime: RuntimeDep, caller: CallerDep
) -> ConversationPublic:
    return await _owned(runtime, caller, conversation_id)


@router.get("/{conversation_id}/messages", response_model=list[MessagePublic])
async def list_messages(
    conversation_id: uuid.UUID,
    runtime: RuntimeDep,
    caller: CallerDep,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_SEQ, description="only messages with a lower seq")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> list[MessagePublic]:
    """The newest ``limit`` messages before ``before`` (all when omitted), oldest first; the
    next older page is ``before=<the first seq of this one>``."""
    await _owned(runtime, caller, conversation_id)
    return await runtime.conversations.messages(conversation_id, before=before, limit=limit)


@router.post(
    "/{conversation_id}/messages",
    response_model=ConversationPublic,
    status_code=status.HTTP_201_CREATED,
)
async def add_message(
    conversation_id: uuid.UUID, message: MessageCreate, runtime: RuntimeDep, caller: CallerDep
) -> ConversationPublic:
    """Append a message; answers with the conversation as stored afterwards (its newest
    messages). 409 ``limit_exceeded`` when the conversation or the user is full."""
    await _owned(runtime, caller, conversation_id)
    return await runtime.conversations.add_message(conversation_id, message)
