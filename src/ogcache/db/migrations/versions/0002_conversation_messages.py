"""Messages as rows: ``conversation_messages`` replaces the JSON list ``conversations.messages``.

Appending to the JSON list rewrote the whole list (and every read loaded it whole); a row per
message makes an append one insert and lets reads take only the newest messages. The upgrade
copies every stored message into a row (in list order, keeping its timestamp) and sets
``message_count`` to the number copied; the downgrade rebuilds the lists from the rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here rather than imported from the models, so this revision stays as it was
# when the models change.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BATCH = 200  # conversations read per query while copying

conversations = sa.table(
    "conversations",
    sa.column("id", sa.Uuid()),
    sa.column("messages", JSON),
    sa.column("last_message_at", sa.DateTime(timezone=True)),
    sa.column("message_count", sa.Integer()),
)
messages = sa.table(
    "conversation_messages",
    sa.column("conversation_id", sa.Uuid()),
    sa.column("seq", sa.Integer()),
    sa.column("role", sa.Text()),
    sa.column("content", sa.Text()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _utc(value: datetime) -> datetime:
    # Aware UTC: PostgreSQL stores it as is, SQLite's DATETIME drops the (UTC) offset.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _timestamp(message: dict[str, Any], fallback: datetime) -> datetime:
    try:
        return _utc(datetime.fromisoformat(str(message["timestamp"])))
    except (KeyError, ValueError, TypeError):
        return _utc(fallback)


def _conversation_batches(
    connection: sa.Connection, columns: Sequence[sa.ColumnElement[Any]]
) -> Iterator[Sequence[sa.Row[Any]]]:
    """Every conversation, ``BATCH`` at a time in id order (never the whole table in memory)."""
    after: uuid.UUID | None = None
    while True:
        query = sa.select(*columns).order_by(conversations.c.id).limit(BATCH)
        if after is not None:
            query = query.where(conversations.c.id > after)
        rows = connection.execute(query).all()
        if not rows:
            return
        yield rows
        after = rows[-1].id


def upgrade() -> None:
    op.create_table(
        "conversation_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_conversation_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_messages")),
        sa.UniqueConstraint(
            "conversation_id", "seq", name=op.f("uq_conversation_messages_conversation_id_seq")
        ),
    )

    connection = op.get_bind()
    columns = (
        conversations.c.id,
        conversations.c.messages,
        conversations.c.last_message_at,
        conversations.c.message_count,
    )
    for batch in _conversation_batches(connection, columns):
        rows: list[dict[str, Any]] = []
        for conversation in batch:
            stored = conversation.messages or []
            rows.extend(
                {
                    "conversation_id": conversation.id,
                    "seq": seq,
                    "role": str(message.get("role", "")),
                    "content": str(message.get("content", "")),
                    "created_at": _timestamp(message, conversation.last_message_at),
                }
                for seq, message in enumerate(stored, start=1)
            )
            # The next append takes seq = message_count + 1: it must count the rows.
            if conversation.message_count != len(stored):
                connection.execute(
                    conversations.update()
                    .where(conversations.c.id == conversation.id)
                    .values(message_count=len(stored))
                )
        if rows:
            connection.execute(messages.insert(), rows)

    # SQLite >= 3.35 drops a column in place (no table rebuild).
    op.drop_column("conversations", "messages")


def downgrade() -> None:
    # NOT NULL needs a default for the existing rows; PostgreSQL drops it again below. SQLite
    # keeps it: removing it means rebuilding the table, and dropping the old table would fire
    # the ON DELETE actions of agent_events.
    op.add_column(
        "conversations",
        sa.Column("messages", JSON, nullable=False, server_default=sa.text("'[]'")),
    )
    connection = op.get_bind()
    for batch in _conversation_batches(connection, (conversations.c.id,)):
        for conversation in batch:
            found = connection.execute(
                sa.select(messages.c.role, messages.c.content, messages.c.created_at)
                .where(messages.c.conversation_id == conversation.id)
                .order_by(messages.c.seq)
            ).all()
            if not found:
                continue
            stored = [
                {
                    "role": m.role,
                    "content": m.content,
                    "timestamp": _utc(m.created_at).isoformat(),
                }
                for m in found
            ]
            connection.execute(
                conversations.update()
                .where(conversations.c.id == conversation.id)
                .values(messages=stored)
            )
    if connection.dialect.name != "sqlite":
        op.alter_column("conversations", "messages", server_default=None)
    op.drop_table("conversation_messages")
