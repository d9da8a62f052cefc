"""Which cache entries a committed database change affects: the README's key table, read
from the database's side.

A change names the old and new values of the columns that key cache entries (migration
0003's triggers). Both sides are invalidated, so an UPDATE that moves a lookup key (a
profile's ``telegram_user_id``) drops the entry under the old key and any "not found" cached
under the new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ogcache.cache import Namespace
from ogcache.services.analytics import MAX_DAYS
from ogcache.services.namespaces import MENU_CONTEXT_KEYS, MENU_KEYS, AppNamespaces, CacheEntry

__all__ = ["ANALYTICS_TABLE", "Change", "ChangeMap"]

ANALYTICS_TABLE = "agent_events"


@dataclass(frozen=True, slots=True)
class Change:
    """One row of ``cache_changes``: ``keys`` maps a column to its ``[old, new]`` values;
    ``age`` is the seconds between the trigger and the read of the row (database clock)."""

    id: int
    table: str
    op: str
    keys: Mapping[str, list[Any]]
    age: float = 0.0

    def values(self, column: str) -> set[Any]:
        """The column's old and new values, without NULLs."""
        return {value for value in self.keys.get(column, ()) if value is not None}


def _uuids(values: Iterable[Any]) -> list[str]:
    """PostgreSQL gives ``8-4-4-4-12``, SQLite 32 hex digits: the cache keys use the former.
    A value that is no UUID (SQLite stores what it is given) can key no entry: skipped, so one
    odd row cannot block the outbox."""
    keys = []
    for value in values:
        try:
            keys.append(str(uuid.UUID(str(value))))
        except ValueError:
            continue
    return keys


class ChangeMap:
    """Turns changes into the entries to invalidate."""

    def __init__(self, namespaces: AppNamespaces) -> None:
        self._ns = namespaces

    @staticmethod
    def users_to_log_out(changes: Iterable[Change]) -> set[str]:
        """Users blocked, unblocked or renamed: their auth sessions' cached state must go (the
        caller looks the sessions up, see :meth:`entries`)."""
        users: set[str] = set()
        for change in changes:
            if change.table != "user_profiles" or change.op != "UPDATE":
                continue
            old_blocked, new_blocked = change.keys.get("is_blocked", [None, None])
            user_ids = change.values("user_id")
            if bool(old_blocked) != bool(new_blocked) or len(user_ids) > 1:
                users |= user_ids
        return users

    def entries(self, changes: Iterable[Change], sessions: Iterable[Any] = ()) -> list[CacheEntry]:
        """The entries ``changes`` affect, each once; ``sessions``: the auth session ids of
        :meth:`users_to_log_out`."""
        ns = self._ns
        found: dict[tuple[str, str], CacheEntry] = {}

        def add(namespace: Any, keys: Iterable[Any]) -> None:
            for key in keys:
                found[(namespace.name, str(key))] = (namespace, str(key))

        add(ns.auth_session, _uuids(sessions))
        for change in changes:
            if change.table == "user_profiles":
                user_ids = change.values("user_id")
                add(ns.profile, user_ids)
                add(ns.profile_by_telegram, change.values("telegram_user_id"))
                if change.op == "DELETE" or len(user_ids) > 1:  # deleted or renamed
                    add(ns.recent_conversations, user_ids)
            elif change.table == "conversations":
                add(ns.conversation, _uuids(change.values("id")))
                add(ns.recent_conversations, change.values("user_id"))
            elif change.table == "conversation_messages":
                add(ns.conversation, _uuids(change.values("conversation_id")))
            elif change.table == "auth_sessions":
                add(ns.auth_session, _uuids(change.values("id")))
            elif change.table == "menu_items":
                add(ns.menu, MENU_KEYS)
                add(ns.menu_context, MENU_CONTEXT_KEYS)
        return list(found.values())

    def truncated(self, changes: Iterable[Change]) -> list[Namespace[Any]]:
        """The namespaces a ``TRUNCATE`` empties (no row names its keys: clear them whole)."""
        ns = self._ns
        by_table: dict[str, tuple[Namespace[Any], ...]] = {
            "user_profiles": (
                ns.profile,
                ns.profile_by_telegram,
                ns.recent_conversations,
                ns.auth_session,
            ),
            "conversations": (ns.conversation, ns.recent_conversations),
            "conversation_messages": (ns.conversation,),
            "auth_sessions": (ns.auth_session,),
        }
        found: dict[str, Namespace[Any]] = {}
        for change in changes:
            if change.op == "TRUNCATE":
                for namespace in by_table.get(change.table, ()):
                    found[namespace.name] = namespace
        return list(found.values())

    @staticmethod
    def touches_analytics(change: Change) -> bool:
        """Events, and new conversations (today's metrics count conversations started)."""
        return change.table == ANALYTICS_TABLE or (
            change.table == "conversations" and change.op in ("INSERT", "TRUNCATE")
        )

    def analytics_entries(self, today: date) -> list[CacheEntry]:
        """Every analytics aggregate an event of today (or of late yesterday) may change:
        today's and yesterday's metrics, and the top products of every window."""
        ns = self._ns
        days = (today, today - timedelta(days=1))
        return [
            *((ns.analytics_today, day.isoformat()) for day in days),
            *((ns.analytics_top, str(window)) for window in range(1, MAX_DAYS + 1)),
        ]
