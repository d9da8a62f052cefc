"""Conversations with their messages, and each user's recent conversations.

Adding a message appends to the stored list under a row lock (no lost messages between
concurrent writers), bumps the counters of the conversation and of the profile, and then
invalidates the conversation, the user's list and the user's profile.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ogcache.cache import Namespace
from ogcache.db.locking import lock_for_write
from ogcache.db.models import Conversation, UserProfile, utc_now
from ogcache.errors import InvalidInputError, NotFoundError
from ogcache.schemas import (
    ConversationCreate,
    ConversationPublic,
    ConversationSummary,
    MessageCreate,
)
from ogcache.services.base import ServiceContext
from ogcache.services.namespaces import CacheEntry
from ogcache.services.profiles import validate_user_id

__all__ = ["RECENT_LIMIT", "ConversationService", "parse_conversation_id"]

RECENT_LIMIT = 20


def parse_conversation_id(conversation_id: str | uuid.UUID) -> uuid.UUID:
    if isinstance(conversation_id, uuid.UUID):
        return conversation_id
    try:
        return uuid.UUID(conversation_id)
    except (ValueError, TypeError, AttributeError):
        raise InvalidInputError(f"conversation id {conversation_id!r} is not a UUID") from None


def _columns(row: Conversation, user_id: str) -> dict[str, Any]:
    return {
        **{c.key: getattr(row, c.key) for c in Conversation.__table__.columns},
        "user_id": user_id,
    }


def _public(row: Conversation, user_id: str) -> ConversationPublic:
    return ConversationPublic.model_validate(_columns(row, user_id))


class ConversationService:
    """Create conversations, add messages, and read them through the cache."""

    def __init__(self, context: ServiceContext) -> None:
        self._db = context.db
        self._cache = context.cache
        self._ns = context.namespaces

    async def create(self, data: ConversationCreate) -> ConversationPublic:
        """Start a conversation for an existing user (``NotFoundError`` otherwise)."""
        async with self._db.begin() as session:
            await lock_for_write(session)
            profile = await self._locked_profile(session, data.user_id)
            now = utc_now()
            row = Conversation(
                user_profile_id=profile.id,
                channel=data.channel,
                language=data.language,
                started_at=now,
                last_message_at=now,
                messages=[],
                message_count=0,
            )
            session.add(row)
            profile.total_conversations += 1
            await session.flush()
            conversation = _public(row, profile.user_id)
        await self._invalidate(conversation, profile.telegram_user_id)
        return conversation

    async def get(self, conversation_id: str | uuid.UUID) -> ConversationPublic | None:
        """The conversation with its messages, or ``None``."""
        cid = parse_conversation_id(conversation_id)
        return await self._cache.get_or_load(
            self._ns.conversation, str(cid), lambda: self._load(cid)
        )

    async def require(self, conversation_id: str | uuid.UUID) -> ConversationPublic:
        conversation = await self.get(conversation_id)
        if conversation is None:
            raise NotFoundError(f"no conversation with id {conversation_id}")
        return conversation

    async def _load(self, conversation_id: uuid.UUID) -> ConversationPublic | None:
        async with self._db() as session:
            found = (
                await session.execute(
                    select(Conversation, UserProfile.user_id)
                    .join(UserProfile, UserProfile.id == Conversation.user_profile_id)
                    .where(Conversation.id == conversation_id)
                )
            ).first()
            return _public(found[0], found[1]) if found is not None else None

    async def add_message(
        self, conversation_id: str | uuid.UUID, message: MessageCreate
    ) -> ConversationPublic:
        """Append a message; the conversation as stored afterwards is returned."""
        cid = parse_conversation_id(conversation_id)
        async with self._db.begin() as session:
            await lock_for_write(session)
            row = await session.scalar(
                select(Conversation).where(Conversation.id == cid).with_for_update()
            )
            if row is None:
                raise NotFoundError(f"no conversation with id {cid}")
            profile = await session.scalar(
                select(UserProfile).where(UserProfile.id == row.user_profile_id).with_for_update()
            )
            assert profile is not None  # the foreign key guarantees it
            now = utc_now()
            entry = {"role": message.role, "content": message.content, "timestamp": now.isoformat()}
            row.messages = [*row.messages, entry]
            row.message_count = row.message_count + 1
            row.last_message_at = now
            profile.total_messages += 1
            await session.flush()
            conversation = _public(row, profile.user_id)
        await self._invalidate(conversation, profile.telegram_user_id)
        return conversation

    async def recent(self, user_id: str, limit: int = RECENT_LIMIT) -> list[ConversationSummary]:
        """The user's most recent conversations (newest first, without messages)."""
        validate_user_id(user_id)
        if not 1 <= limit <= RECENT_LIMIT:
            raise InvalidInputError(f"limit must be between 1 and {RECENT_LIMIT}")
        summaries = await self._cache.get_or_load(
            self._ns.recent_conversations, user_id, lambda: self._load_recent(user_id)
        )
        return summaries[:limit]

    async def _load_recent(self, user_id: str) -> list[ConversationSummary]:
        async with self._db() as session:
            profile_id = await session.scalar(
                select(UserProfile.id).where(UserProfile.user_id == user_id)
            )
            if profile_id is None:
                raise NotFoundError(f"no user profile with user_id {user_id!r}")
            rows = await session.scalars(
                select(Conversation)
                .where(Conversation.user_profile_id == profile_id)
                .order_by(Conversation.started_at.desc(), Conversation.id)
                .limit(RECENT_LIMIT)
            )
            # Built from the columns, not from a ConversationPublic: pydantic would keep that
            # subclass instance as it is, messages included.
            return [ConversationSummary.model_validate(_columns(r, user_id)) for r in rows]

    async def refresh_recent(self, user_id: str) -> list[CacheEntry]:
        """Reload the user's recent list and those conversations into the cache (warm-up)."""
        validate_user_id(user_id)
        summaries = await self._cache.refresh(
            self._ns.recent_conversations, user_id, lambda: self._load_recent(user_id)
        )
        entries: list[CacheEntry] = [(self._ns.recent_conversations, user_id)]
        for summary in summaries or []:
            await self._cache.refresh(
                self._ns.conversation, str(summary.id), partial(self._load, summary.id)
            )
            entries.append((self._ns.conversation, str(summary.id)))
        return entries

    async def _locked_profile(self, session: AsyncSession, user_id: str) -> UserProfile:
        validate_user_id(user_id)
        profile = await session.scalar(
            select(UserProfile).where(UserProfile.user_id == user_id).with_for_update()
        )
        if profile is None:
            raise NotFoundError(f"no user profile with user_id {user_id!r}")
        return profile

    async def _invalidate(
        self, conversation: ConversationPublic, telegram_user_id: int | None
    ) -> None:
        entries: list[tuple[Namespace[Any], str]] = [
            (self._ns.conversation, str(conversation.id)),
            (self._ns.recent_conversations, conversation.user_id),
            (self._ns.profile, conversation.user_id),
        ]
        if telegram_user_id is not None:
            entries.append((self._ns.profile_by_telegram, str(telegram_user_id)))
        await self._cache.invalidate(entries)
