"""Conversations: start one, read it with its messages, add messages."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from ogcache.api.deps import Caller, CallerDep, RuntimeDep
from ogcache.errors import NotFoundError
from ogcache.runtime import Runtime
from ogcache.schemas import ConversationCreate, ConversationPublic, MessageCreate

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
    caller.require_user(body.user_id)
    return await runtime.conversations.create(body)


@router.get("/{conversation_id}", response_model=ConversationPublic)
async def get_conversation(
    conversation_id: uuid.UUID, runtime: RuntimeDep, caller: CallerDep
) -> ConversationPublic:
    return await _owned(runtime, caller, conversation_id)


@router.post(
    "/{conversation_id}/messages",
    response_model=ConversationPublic,
    status_code=status.HTTP_201_CREATED,
)
async def add_message(
    conversation_id: uuid.UUID, message: MessageCreate, runtime: RuntimeDep, caller: CallerDep
) -> ConversationPublic:
    """Append a message; answers with the conversation as stored afterwards."""
    await _owned(runtime, caller, conversation_id)
    return await runtime.conversations.add_message(conversation_id, message)
