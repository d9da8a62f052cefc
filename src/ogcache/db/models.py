"""The tables, with the column names of the original Supabase schema.

Types are chosen to work on both PostgreSQL and SQLite: ``Uuid`` (native ``uuid`` on
PostgreSQL), JSON (``jsonb`` on PostgreSQL), and timestamps that always come back as
timezone-aware UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    FetchedValue,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AgentEvent",
    "AuthSession",
    "Base",
    "CacheChange",
    "CacheChangeProgress",
    "Conversation",
    "ConversationMessage",
    "MenuItem",
    "UTCDateTime",
    "UserProfile",
    "utc_now",
]


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz`` on PostgreSQL; on SQLite, naive values are read back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC datetimes")
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


JSONType = JSON().with_variant(JSONB(), "postgresql")
BigIntegerKey = BigInteger().with_variant(Integer(), "sqlite")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UserProfile(Base):
    """A customer, known by an app user id and optionally by a Telegram user id."""

    __tablename__ = "user_profiles"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[str] = mapped_column(Text, unique=True)
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    telegram_username: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, onupdate=utc_now)
    first_visit: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    last_visit: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, index=True)
    total_conversations: Mapped[int] = mapped_column(Integer, default=0)
    total_messages: Mapped[int] = mapped_column(Integer, default=0)
    total_orders: Mapped[int] = mapped_column(Integer, default=0)
    total_spent: Mapped[float] = mapped_column(Numeric(12, 2, asdecimal=False), default=0)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    loyalty_points: Mapped[int] = mapped_column(Integer, default=0)
    notes: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    blocked_reason: Mapped[str | None] = mapped_column(Text)


class Conversation(Base):
    """A chat between a customer and the agent; its messages are rows of
    :class:`ConversationMessage` and ``message_count`` is how many it holds."""

    __tablename__ = "conversations"
    __table_args__ = (
        CheckConstraint("channel IN ('web', 'telegram', 'api')", name="channel"),
        Index("ix_conversations_user_profile_id_started_at", "user_profile_id", "started_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_profile_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_profiles.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(Text, default="en")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_message_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    summary: Mapped[str | None] = mapped_column(Text)
    message_count: Mapped[int] = mapped_column(Integer, default=0)


class ConversationMessage(Base):
    """One message of a conversation, one row each, so that an append writes one row
    whatever the conversation's length; ``seq`` is its 1-based position."""

    __tablename__ = "conversation_messages"
    __table_args__ = (UniqueConstraint("conversation_id", "seq"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class MenuItem(Base):
    """One product of the shop menu, with its price tiers in THB."""

    __tablename__ = "menu_items"
    __table_args__ = (Index("ix_menu_items_category_sort_order", "category", "sort_order"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    category: Mapped[str] = mapped_column(Text)
    type: Mapped[str | None] = mapped_column(Text)
    thc: Mapped[float | None] = mapped_column(Float)
    cbg: Mapped[float | None] = mapped_column(Float)
    cbd: Mapped[float | None] = mapped_column(Float)
    price_1pc: Mapped[int | None] = mapped_column(Integer)
    price_1g: Mapped[int | None] = mapped_column(Integer)
    price_5g: Mapped[int | None] = mapped_column(Integer)
    price_20g: Mapped[int | None] = mapped_column(Integer)
    is_concentrate: Mapped[bool] = mapped_column(Boolean, default=False)
    our: Mapped[bool] = mapped_column(Boolean, default=False)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(Text)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, onupdate=utc_now)


class AuthSession(Base):
    """A login session; access tokens name it, and revoking it invalidates them all."""

    __tablename__ = "auth_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[str] = mapped_column(
        ForeignKey("user_profiles.user_id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AgentEvent(Base):
    """An analytics event of the agent (message sent, product mentioned, order created...)."""

    __tablename__ = "agent_events"
    __table_args__ = (Index("ix_agent_events_event_type_created_at", "event_type", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    user_profile_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_profiles.id", ondelete="SET NULL"), index=True
    )
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    event_type: Mapped[str] = mapped_column(Text)
    event_data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    channel: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, index=True)


class CacheChange(Base):
    """A committed write of a cached table, written by the table's trigger in the writer's
    transaction (migration 0003): what ``ogcache.changes`` turns into invalidations."""

    __tablename__ = "cache_changes"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    table_name: Mapped[str] = mapped_column(Text)
    op: Mapped[str] = mapped_column(Text)
    # The old and new values of the columns that name cache entries, never the row's data.
    keys: Mapped[dict[str, Any]] = mapped_column(JSONType)
    changed_at: Mapped[datetime] = mapped_column(
        UTCDateTime,
        server_default=FetchedValue(),  # the trigger's clock (0003)
    )


class CacheChangeProgress(Base):
    """Per consumer, the last change applied (SQLite; PostgreSQL deletes applied changes)."""

    __tablename__ = "cache_change_progress"

    consumer: Mapped[str] = mapped_column(Text, primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
