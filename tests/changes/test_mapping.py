"""Which entries a change names: both sides of a moved key, UUIDs in either database's form,
and values that key nothing skipped rather than blocking the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ogcache.changes import Change, ChangeMap
from ogcache.services import AppNamespaces
from tests.services.conftest import make_settings

NS = AppNamespaces.from_settings(make_settings("sqlite:///unused.db", None))
MAP = ChangeMap(NS)


def names(changes: list[Change], sessions: Sequence[str] = ()) -> set[tuple[str, str]]:
    return {(ns.name, key) for ns, key in MAP.entries(changes, sessions)}


def test_a_moved_telegram_link_names_the_old_and_the_new_key() -> None:
    change = Change(
        1,
        "user_profiles",
        "UPDATE",
        {"user_id": ["u1", "u1"], "telegram_user_id": [5, 7], "is_blocked": [False, False]},
    )
    assert names([change]) == {
        ("user:profile", "u1"),
        ("user:telegram", "5"),
        ("user:telegram", "7"),
    }
    assert MAP.users_to_log_out([change]) == set()


def test_blocking_a_user_logs_their_sessions_out() -> None:
    change = Change(1, "user_profiles", "UPDATE", {"user_id": ["u1", "u1"], "is_blocked": [0, 1]})
    assert MAP.users_to_log_out([change]) == {"u1"}
    session = uuid.uuid4()
    assert ("auth:session", str(session)) in names([change], [session.hex])


def test_uuids_in_sqlite_form_key_the_same_entries_and_odd_values_are_skipped() -> None:
    cid = uuid.uuid4()
    change = Change(1, "conversation_messages", "INSERT", {"conversation_id": [None, cid.hex]})
    odd = Change(
        2, "conversations", "UPDATE", {"id": ["not a uuid", None], "user_id": [None, None]}
    )
    assert names([change, odd]) == {("conversation", str(cid))}


def test_a_menu_statement_names_both_menus_and_both_texts() -> None:
    assert names([Change(1, "menu_items", "TRUNCATE", {})]) == {
        ("menu", "items"),
        ("menu", "items:concentrates"),
        ("menu:context", "text"),
        ("menu:context", "text:concentrates"),
    }
