"""Reading ``cache_changes``, the outbox the triggers of migration 0003 fill.

PostgreSQL: the outbox is a queue. A pass locks the oldest rows it can see (``FOR UPDATE SKIP
LOCKED``), invalidates, and deletes them in the same transaction, so a row leaves the table
only once its invalidation succeeded. Only committed rows are visible: a transaction that took
its ids early and commits late (ids are assigned at insert, not at commit) is simply read by a
later pass, so no "last id seen" can skip it.

SQLite: writers are serialised (one write transaction at a time) and ``AUTOINCREMENT`` never
reuses an id, so id order is commit order and "everything after the last id applied" is exact.
Each consumer keeps that id in ``cache_change_progress``; rows are trimmed once older than
any entry can live (the capture's ``retention``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ogcache.changes.mapping import Change

__all__ = ["BATCH", "PostgresOutbox", "SqliteOutbox"]

BATCH: Final = 500

_TAKE: Final = """
SELECT id, table_name, op, keys::text, EXTRACT(EPOCH FROM clock_timestamp() - changed_at)
FROM cache_changes ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"""


def _change(row: Sequence[Any]) -> Change:
    keys = row[3]
    return Change(
        id=int(row[0]),
        table=str(row[1]),
        op=str(row[2]),
        keys=orjson.loads(keys) if isinstance(keys, str | bytes) else keys,
        age=max(0.0, float(row[4] or 0.0)),
    )


class PostgresOutbox:
    """Queue operations on one asyncpg connection (``asyncpg.Connection``)."""

    def __init__(self, connection: Any) -> None:
        self._pg = connection

    def transaction(self) -> Any:
        return self._pg.transaction()

    async def pending(self) -> bool:
        """Whether any change is queued: one index probe, no transaction."""
        return bool(await self._pg.fetchval("SELECT EXISTS (SELECT 1 FROM cache_changes)"))

    async def take(self, limit: int = BATCH) -> list[Change]:
        """The oldest committed changes, locked until the transaction ends."""
        return [_change(row) for row in await self._pg.fetch(_TAKE, limit)]

    async def done(self, changes: Sequence[Change]) -> None:
        await self._pg.execute(
            "DELETE FROM cache_changes WHERE id = ANY($1::bigint[])", [c.id for c in changes]
        )

    async def sessions_of(self, users: set[str]) -> list[str]:
        rows = await self._pg.fetch(
            "SELECT id::text FROM auth_sessions WHERE user_id = ANY($1::text[])", list(users)
        )
        return [row[0] for row in rows]

    async def backlog(self) -> int:
        return int(await self._pg.fetchval("SELECT count(*) FROM cache_changes"))


class SqliteOutbox:
    """Reads after a consumer's last applied id, on one SQLAlchemy connection."""

    def __init__(self, connection: AsyncConnection, consumer: str) -> None:
        self._db = connection
        self._consumer = consumer

    async def position(self, *, resume: bool) -> int:
        """Where to start: with ``resume`` (a shared cache, which may hold entries older than
        this process) the saved position, or the oldest change kept when none is saved; else
        the newest change (a new, empty cache of this process's own)."""
        if resume:
            saved = await self._scalar(
                "SELECT last_id FROM cache_change_progress WHERE consumer = :c",
                c=self._consumer,
            )
        else:
            saved = await self._scalar("SELECT coalesce(max(id), 0) FROM cache_changes")
        return int(saved or 0)

    async def take(self, after: int, limit: int = BATCH) -> list[Change]:
        rows = await self._db.execute(
            text(
                "SELECT id, table_name, op, keys, "
                "(julianday('now') - julianday(changed_at)) * 86400.0 "
                "FROM cache_changes WHERE id > :after ORDER BY id LIMIT :limit"
            ),
            {"after": after, "limit": limit},
        )
        changes = [_change(row) for row in rows]
        await self._db.commit()
        return changes

    async def backlog(self, after: int) -> int:
        return int(await self._scalar("SELECT count(*) FROM cache_changes WHERE id > :a", a=after))

    async def sessions_of(self, users: set[str]) -> list[str]:
        names = {f"u{i}": user for i, user in enumerate(users)}
        placeholders = ", ".join(f":{name}" for name in names)
        rows = await self._db.execute(
            text(f"SELECT id FROM auth_sessions WHERE user_id IN ({placeholders})"),  # noqa: S608
            names,
        )
        sessions = [str(row[0]) for row in rows]
        await self._db.commit()
        return sessions

    async def save(self, last_id: int) -> None:
        """Record the position (processes sharing a cache share it: the furthest wins)."""
        await self._db.execute(
            text(
                "INSERT INTO cache_change_progress (consumer, last_id) VALUES (:c, :id) "
                "ON CONFLICT (consumer) DO UPDATE SET last_id = max(last_id, excluded.last_id)"
            ),
            {"c": self._consumer, "id": last_id},
        )
        await self._db.commit()

    async def trim(self, retention: float) -> None:
        """Drop changes older than ``retention`` seconds: every entry they keyed has expired."""
        await self._db.execute(
            text("DELETE FROM cache_changes WHERE changed_at < datetime('now', :retention)"),
            {"retention": f"-{int(retention)} seconds"},
        )
        await self._db.commit()

    async def _scalar(self, statement: str, **params: Any) -> Any:
        value = await self._db.scalar(text(statement), params)
        await self._db.commit()
        return value
