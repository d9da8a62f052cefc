"""Conversations with their messages, and each user's recent conversations.

Messages are rows. Adding one inserts one row under the conversation's row lock (seq =
``message_count`` + 1, so concurrent writers get distinct consecutive positions and lose
nothing), bumps the counters of the conversation and of the profile, and then invalidates the
conversation, the user's list and the user's profile. Reads cache only a window of the newest
messages, bounded in count and bytes; older messages are paged from the database.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any, Final

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ogcache.cache import Namespace
from ogcache.db.locking import lock_for_write
from ogcache.db.models import Conversation, ConversationMessage, UserProfile, utc_now
from ogcache.errors import InvalidInputError, LimitExceededError, NotFoundError
from ogcache.schemas import (
    ConversationCreate,
    ConversationPublic,
    ConversationSummary,
    MessageCreate,
    MessagePublic,
)
from ogcache.services.base import ServiceContext
from ogcache.services.namespaces import CacheEntry
from ogcache.services.profiles import validate_user_id

__all__ = [
    "MAX_PAGE",
    "MAX_SEQ",
    "RECENT_LIMIT",
    "WINDOW_MAX_BYTES",
    "ConversationService",
    "parse_conversation_id",
]

RECENT_LIMIT = 20
MAX_SEQ: Final = 2**31 - 1  # a message's seq is a 32-bit integer column
MAX_PAGE: Final = 100
# The window's content, as the cache encodes it (JSON strings: UTF-8 plus escapes), stops at
# this; the newest message is always in it (one is at most 16,000 characters, at most 96 KB
# encoded). A cached conversation thus stays far below the cache's 1 MiB value limit.
WINDOW_MAX_BYTES: Final = 128 * 1024


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


def _message(row: ConversationMessage) -> MessagePublic:
    return MessagePublic.model_validate(
        {"seq": row.seq, "role": row.role, "content": row.content, "timestamp": row.created_at}
    )


def _window(newest_first: list[ConversationMessage]) -> list[MessagePublic]:
    """The newest messages whose content fits ``WINDOW_MAX_BYTES`` (at least one), oldest
    first."""
    kept: list[MessagePublic] = []
    size = 0
    for row in newest_first:
        size += len(orjson.dumps(row.content))
        if kept and size > WINDOW_MAX_BYTES:
            break
        kept.append(_message(row))
    kept.reverse()
    return kept


class ConversationService:
    """Create conversations, add messages, and read them through the cache."""

    def __init__(self, context: ServiceContext) -> None:
        self._db = context.db
        self._cache = context.cache
        self._ns = context.namespaces
        self._limits = context.limits

    async def create(self, data: ConversationCreate) -> ConversationPublic:
        """Start a conversation for an existing user (``NotFoundError`` otherwise)."""
        async with self._db.begin() as session:
            await lock_for_write(session)
            profile = await self._locked_profile(session, data.user_id)
            # Counted under the profile lock: concurrent creates cannot both pass the limit.
            held = await session.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.user_profile_id == profile.id)
            )
            if (held or 0) >= self._limits.max_conversations_per_user:
                raise LimitExceededError(
                    f"user {data.user_id!r} already has {held} conversations, the limit "
                    "(OGCACHE_MAX_CONVERSATIONS_PER_USER); continue an existing conversation"
                )
            now = utc_now()
            row = Conversation(
                user_profile_id=profile.id,
                channel=data.channel,
                language=data.language,
                started_at=now,
                last_message_at=now,
                message_count=0,
            )
            session.add(row)
            profile.total_conversations += 1
            await session.flush()
            conversation = ConversationPublic.model_validate(
                {**_columns(row, profile.user_id), "messages": []}
            )
        await self._invalidate(conversation, profile.telegram_user_id)
        return conversation

    async def get(self, conversation_id: str | uuid.UUID) -> ConversationPublic | None:
        """The conversation with its newest messages (see ``ConversationPublic``), or
        ``None``."""
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
            if found is None:
                return None
            row, user_id = found
            # Not past the count just read: an append committed in between stays out, so the
            # window always agrees with message_count and last_message_at.
            newest = await session.scalars(
                select(ConversationMessage)
                .where(
                    ConversationMessage.conversation_id == conversation_id,
                    ConversationMessage.seq <= row.message_count,
                )
                .order_by(ConversationMessage.seq.desc())
                .limit(self._limits.conversation_window)
            )
            return ConversationPublic.model_validate(
                {**_columns(row, user_id), "messages": _window(list(newest))}
            )

    async def messages(
        self, conversation_id: str | uuid.UUID, *, before: int | None = None, limit: int = 50
    ) -> list[MessagePublic]:
        """Up to ``limit`` messages with ``seq < before`` (any when ``None``): the newest of
        them, oldest first. Read from the database, not cached: to page back through a
        conversation, pass the first ``seq`` of a page as the next ``before``.
        ``NotFoundError`` for an unknown conversation."""
        cid = parse_conversation_id(conversation_id)
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE}")
        if before is not None and not 1 <= before <= MAX_SEQ:
            raise InvalidInputError(f"before must be a seq, between 1 and {MAX_SEQ}")
        query = select(ConversationMessage).where(ConversationMessage.conversation_id == cid)
        if before is not None:
            query = query.where(ConversationMessage.seq < before)
        async with self._db() as session:
            rows = list(
                await session.scalars(query.order_by(ConversationMessage.seq.desc()).limit(limit))
            )
            if not rows and await session.get(Conversation, cid) is None:
                raise NotFoundError(f"no conversation with id {cid}")
        return [_message(row) for row in reversed(rows)]

    async def add_message(
        self, conversation_id: str | uuid.UUID, message: MessageCreate
    ) -> ConversationPublic:
        """Append a message (one row insert, whatever the conversation's length); the
        conversation as stored afterwards is returned. ``LimitExceededError`` when the
        conversation or the user is full."""
        cid = parse_conversation_id(conversation_id)
        limits = self._limits
        async with self._db.begin() as session:
            await lock_for_write(session)
            row = await session.scalar(
                select(Conversation).where(Conversation.id == cid).with_for_update()
            )
            if row is None:
                raise NotFoundError(f"no conversation with id {cid}")
            if row.message_count >= limits.max_messages_per_conversation:
                raise LimitExceededError(
                    f"conversation {cid} already holds {row.message_count} messages, the limit "
                    "(OGCACHE_MAX_MESSAGES_PER_CONVERSATION); start a new conversation"
                )
            profile = await session.scalar(
                select(UserProfile).where(UserProfile.id == row.user_profile_id).with_for_update()
            )
            assert profile is not None  # the foreign key guarantees it
            if profile.total_messages >= limits.max_messages_per_user:
                raise LimitExceededError(
                    f"user {profile.user_id!r} already has {profile.total_messages} messages, "
                    "the limit (OGCACHE_MAX_MESSAGES_PER_USER); the operator can raise it"
                )
            now = utc_now()
            session.add(
                ConversationMessage(
                    conversation_id=cid,
                    seq=row.message_count + 1,
                    role=message.role,
                    content=message.content,
                    created_at=now,
                )
            )
            row.message_count = row.message_count + 1
            row.last_message_at = now
            profile.total_messages += 1
            await session.flush()
            summary = ConversationSummary.model_validate(_columns(row, profile.user_id))
        await self._invalidate(summary, profile.telegram_user_id)
        # The answer's window is read after the commit, outside the locks, through the cache
        # (so the next read is a hit); it may already show messages added since.
        return await self.require(cid)

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
        self, conversation: ConversationSummary, telegram_user_id: int | None
    ) -> None:
        entries: list[tuple[Namespace[Any], str]] = [
            (self._ns.conversation, str(conversation.id)),
            (self._ns.recent_conversations, conversation.user_id),
            (self._ns.profile, conversation.user_id),
        ]
        if telegram_user_id is not None:
            entries.append((self._ns.profile_by_telegram, str(telegram_user_id)))
        await self._cache.invalidate(entries)
