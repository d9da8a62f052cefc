"""Row locking that also works on SQLite, which ignores ``SELECT ... FOR UPDATE``."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["lock_for_write"]


async def lock_for_write(session: AsyncSession) -> None:
    """Serialise a read-modify-write transaction on SQLite; a no-op elsewhere.

    Call it first in the transaction. ``BEGIN IMMEDIATE`` takes SQLite's database write lock
    before anything is read (waiting up to the busy timeout), so a concurrent writer cannot
    overwrite what this one read. On PostgreSQL the transaction's ``FOR UPDATE`` row locks do
    this job.
    """
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(text("BEGIN IMMEDIATE"))
