"""Initial schema: user profiles, conversations, menu, auth sessions, agent events.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here rather than imported from the models, so this revision stays as it was
# when the models change.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    _create_user_profiles()
    _create_conversations()
    _create_menu_items()
    _create_auth_sessions()
    _create_agent_events()


def _create_user_profiles() -> None:
    """One row per user; the others refer to it by ``id`` or ``user_id``."""
    op.create_table(
        "user_profiles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("telegram_user_id", sa.BigInteger(), nullable=True),
        sa.Column("telegram_username", sa.Text(), nullable=True),
        timestamp("created_at"),
        timestamp("updated_at"),
        timestamp("first_visit"),
        timestamp("last_visit"),
        sa.Column("total_conversations", sa.Integer(), nullable=False),
        sa.Column("total_messages", sa.Integer(), nullable=False),
        sa.Column("total_orders", sa.Integer(), nullable=False),
        sa.Column("total_spent", sa.Numeric(12, 2, asdecimal=False), nullable=False),
        sa.Column("preferences", JSON, nullable=False),
        sa.Column("loyalty_points", sa.Integer(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_blocked", sa.Boolean(), nullable=False),
        sa.Column("blocked_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_profiles")),
        sa.UniqueConstraint("user_id", name=op.f("uq_user_profiles_user_id")),
        sa.UniqueConstraint("telegram_user_id", name=op.f("uq_user_profiles_telegram_user_id")),
    )
    op.create_index(op.f("ix_user_profiles_last_visit"), "user_profiles", ["last_visit"])


def _create_conversations() -> None:
    """A user's conversations, with their messages inline (0002 moves them out)."""
    op.create_table(
        "conversations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_profile_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        timestamp("started_at"),
        timestamp("ended_at", nullable=True),
        timestamp("last_message_at"),
        sa.Column("messages", JSON, nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "channel IN ('web', 'telegram', 'api')", name=op.f("ck_conversations_channel")
        ),
        sa.ForeignKeyConstraint(
            ["user_profile_id"],
            ["user_profiles.id"],
            name=op.f("fk_conversations_user_profile_id_user_profiles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_index(
        "ix_conversations_user_profile_id_started_at",
        "conversations",
        ["user_profile_id", "started_at"],
    )


def _create_menu_items() -> None:
    """The menu, read in category then sort order."""
    op.create_table(
        "menu_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=True),
        sa.Column("thc", sa.Float(), nullable=True),
        sa.Column("cbg", sa.Float(), nullable=True),
        sa.Column("cbd", sa.Float(), nullable=True),
        sa.Column("price_1pc", sa.Integer(), nullable=True),
        sa.Column("price_1g", sa.Integer(), nullable=True),
        sa.Column("price_5g", sa.Integer(), nullable=True),
        sa.Column("price_20g", sa.Integer(), nullable=True),
        sa.Column("is_concentrate", sa.Boolean(), nullable=False),
        sa.Column("our", sa.Boolean(), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_menu_items")),
        sa.UniqueConstraint("name", name=op.f("uq_menu_items_name")),
    )
    op.create_index("ix_menu_items_category_sort_order", "menu_items", ["category", "sort_order"])


def _create_auth_sessions() -> None:
    """Sign-in sessions, revocable; they go with their user."""
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        timestamp("created_at"),
        timestamp("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_profiles.user_id"],
            name=op.f("fk_auth_sessions_user_id_user_profiles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
    )
    op.create_index(op.f("ix_auth_sessions_user_id"), "auth_sessions", ["user_id"])


def _create_agent_events() -> None:
    """What the agent did, for the analytics; kept when the user or conversation goes."""
    op.create_table(
        "agent_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_profile_id", sa.Uuid(), nullable=True),
        sa.Column("conversation_id", sa.Uuid(), nullable=True),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("event_data", JSON, nullable=True),
        sa.Column("channel", sa.Text(), nullable=True),
        timestamp("created_at"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_agent_events_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_profile_id"],
            ["user_profiles.id"],
            name=op.f("fk_agent_events_user_profile_id_user_profiles"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_events")),
    )
    op.create_index(op.f("ix_agent_events_created_at"), "agent_events", ["created_at"])
    op.create_index(
        "ix_agent_events_event_type_created_at", "agent_events", ["event_type", "created_at"]
    )
    op.create_index(op.f("ix_agent_events_user_profile_id"), "agent_events", ["user_profile_id"])


def downgrade() -> None:
    op.drop_table("agent_events")
    op.drop_table("auth_sessions")
    op.drop_table("menu_items")
    op.drop_table("conversations")
    op.drop_table("user_profiles")
