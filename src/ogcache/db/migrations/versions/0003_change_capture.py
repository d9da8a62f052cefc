"""Change capture: every committed write of a cached table leaves a row in ``cache_changes``.

Triggers write the row in the writer's own transaction, so it commits (or rolls back) with the
change, whoever made it: the app, ``psql``, the Supabase dashboard, another service. A row
names what identifies the affected cache entries (old and new values of the lookup columns),
never the row's data. Plain SQL and PL/pgSQL only: no extension, no ``wal_level`` change, no
superuser. No ``NOTIFY``: a transaction that notifies takes a lock at commit that every other
notifying transaction waits for, and 16 concurrent writers fell from ~3,000 to ~250 commits/s;
the server polls instead. The trigger functions are ``SECURITY DEFINER`` (other writers need
no right on the outbox), and the outbox has row-level security on with no policy, so a role
that does not own it (Supabase's ``anon``, ``authenticated``) can neither read nor write it.

``cache_change_progress`` keeps, per consumer, the last row applied (SQLite, where ids are in
commit order; on PostgreSQL applied rows are deleted instead).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ROW_TABLES = ("user_profiles", "conversations", "conversation_messages", "auth_sessions")
STATEMENT_TABLES = ("menu_items", "agent_events")  # any change: the whole menu / analytics

# What a row change names, per table: (field, expression of the row ``{row}``), taken from
# OLD and from NEW (NULL for the side an INSERT or a DELETE lacks).
KEYS = {
    "user_profiles": (
        ("user_id", "{row}.user_id"),
        ("telegram_user_id", "{row}.telegram_user_id"),
        ("is_blocked", "{row}.is_blocked"),
    ),
    "conversations": (
        ("id", "{row}.id"),
        ("user_id", "(SELECT user_id FROM user_profiles WHERE id = {row}.user_profile_id)"),
    ),
    "conversation_messages": (("conversation_id", "{row}.conversation_id"),),
    "auth_sessions": (("id", "{row}.id"),),
}


def _keys(table: str, array: str, *, old: bool = True, new: bool = True) -> str:
    """``field, array(old, new), ...`` for ``table``; a side not given is NULL."""

    def side(template: str, row: str, present: bool) -> str:
        return template.format(row=row) if present else "NULL"

    return ", ".join(
        f"'{field}', {array}({side(template, 'OLD', old)}, {side(template, 'NEW', new)})"
        for field, template in KEYS.get(table, ())
    )


def _postgres_upgrade() -> None:
    branches = "\n    ELS".join(
        f"IF TG_TABLE_NAME = '{table}' THEN "
        f"names := jsonb_build_object({_keys(table, 'jsonb_build_array')});"
        for table in ROW_TABLES
    )
    op.execute(f"""
CREATE FUNCTION ogcache_capture_row() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE names jsonb;
BEGIN
    {branches}
    END IF;
    INSERT INTO cache_changes (table_name, op, keys) VALUES (TG_TABLE_NAME, TG_OP, names);
    RETURN NULL;
END $$""")
    op.execute("""
CREATE FUNCTION ogcache_capture_statement() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO cache_changes (table_name, op, keys) VALUES (TG_TABLE_NAME, TG_OP, '{}');
    RETURN NULL;
END $$""")
    for table in ROW_TABLES:
        op.execute(
            f"CREATE TRIGGER ogcache_capture AFTER INSERT OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ogcache_capture_row()"
        )
        # An UPDATE that changes nothing leaves no row.
        op.execute(
            f"CREATE TRIGGER ogcache_capture_update AFTER UPDATE ON {table} FOR EACH ROW "
            "WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION ogcache_capture_row()"
        )
        # TRUNCATE fires no row trigger: one statement row (the server drops the namespaces).
        op.execute(
            f"CREATE TRIGGER ogcache_capture_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ogcache_capture_statement()"
        )
    for table in STATEMENT_TABLES:
        op.execute(
            f"CREATE TRIGGER ogcache_capture AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION ogcache_capture_statement()"
        )
    for table in ("cache_changes", "cache_change_progress"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM PUBLIC")


def _sqlite_upgrade() -> None:
    for table in (*ROW_TABLES, *STATEMENT_TABLES):
        for event in ("INSERT", "UPDATE", "DELETE"):
            keys = _keys(table, "json_array", old=event != "INSERT", new=event != "DELETE")
            op.execute(
                f"CREATE TRIGGER ogcache_capture_{event.lower()}_{table} AFTER {event} ON {table} "
                f"BEGIN INSERT INTO cache_changes (table_name, op, keys) "
                f"VALUES ('{table}', '{event}', json_object({keys})); END"
            )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "cache_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("op", sa.Text(), nullable=False),
        sa.Column("keys", JSON, nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text(
                "clock_timestamp()"
                if dialect == "postgresql"
                else "(strftime('%Y-%m-%d %H:%M:%f', 'now'))"
            ),
        ),
        sqlite_autoincrement=True,  # ids never reused: the SQLite consumer keeps the last one
    )
    op.create_table(
        "cache_change_progress",
        sa.Column("consumer", sa.Text(), primary_key=True),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
    )
    if dialect == "postgresql":
        _postgres_upgrade()
    else:
        _sqlite_upgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in (*ROW_TABLES, *STATEMENT_TABLES):
            op.execute(f"DROP TRIGGER IF EXISTS ogcache_capture ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS ogcache_capture_update ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS ogcache_capture_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS ogcache_capture_row()")
        op.execute("DROP FUNCTION IF EXISTS ogcache_capture_statement()")
    else:
        for table in (*ROW_TABLES, *STATEMENT_TABLES):
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS ogcache_capture_{event}_{table}")
    op.drop_table("cache_change_progress")
    op.drop_table("cache_changes")
