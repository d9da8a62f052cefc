"""Session data: a JSON object per (owner, session id), kept in the cache only, for
``ttl_session``, within per-owner limits on count and bytes.

Each session is stored as a :class:`SessionRecord`: its id, its owner (``None`` unless one is
given: the admin's own space), its data, and when it was last written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from ogcache.cache import MISSING
from ogcache.config import Settings
from ogcache.errors import InvalidInputError, LimitExceededError, NotFoundError
from ogcache.runtime import Runtime
from ogcache.schemas import SessionRecord
from ogcache.services.sessions import MAX_SESSION_BYTES

SESSION = "chat_session-0001"


@pytest.fixture
async def short_lived(stack_settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime of the same stack whose sessions live 0.3 s."""
    app = Runtime.open(stack_settings.model_copy(update={"ttl_session": 0.3}))
    assert app.namespaces.session.ttl == 0.3
    yield app
    await app.cache.clear()
    await app.close()


def key_of(session_id: str, owner: str | None = None) -> str:
    """The session's key in the ``session`` namespace."""
    return f"{owner or '#admin'}:{session_id}"


async def data_of(runtime: Runtime, session_id: str) -> dict[str, Any] | None:
    """The session's data, or ``None`` when there is no session."""
    record = await runtime.sessions.get(session_id)
    if record is None:
        return None
    assert isinstance(record, SessionRecord)
    assert record.session_id == session_id
    return record.data


async def test_an_unknown_session_reads_as_none(runtime: Runtime) -> None:
    assert await runtime.sessions.get(SESSION) is None


async def test_set_then_get_round_trips(runtime: Runtime) -> None:
    data = {"step": "choosing", "cart": [{"item": "Runtz", "grams": 5}], "vip": True, "n": 1.5}
    before = datetime.now(UTC)
    stored = await runtime.sessions.set(SESSION, data)
    after = datetime.now(UTC)
    assert isinstance(stored, SessionRecord)
    assert stored.session_id == SESSION
    assert stored.data == data
    assert before <= stored.updated_at <= after
    assert stored.updated_at.utcoffset() is not None  # timezone-aware

    read = await runtime.sessions.get(SESSION)
    assert read == stored
    assert read is not None
    assert read.data == data
    assert read.updated_at == stored.updated_at
    assert await runtime.cache.get(runtime.namespaces.session, key_of(SESSION)) == stored


async def test_the_owner_is_none_by_default(runtime: Runtime) -> None:
    stored = await runtime.sessions.set(SESSION, {"a": 1})
    assert stored.owner is None
    read = await runtime.sessions.get(SESSION)
    assert read is not None
    assert read.owner is None
    updated = await runtime.sessions.update_field(SESSION, "b", 2)
    assert updated.owner is None
    assert (await runtime.sessions.get(SESSION)).owner is None  # type: ignore[union-attr]


async def test_set_with_an_owner_stores_it(runtime: Runtime) -> None:
    stored = await runtime.sessions.set(SESSION, {"step": "greeting"}, owner="web_alice")
    assert stored.owner == "web_alice"
    assert stored.data == {"step": "greeting"}
    read = await runtime.sessions.get(SESSION, owner="web_alice")
    assert read == stored
    assert read is not None
    assert read.owner == "web_alice"
    assert await runtime.sessions.get(SESSION) is None  # the admin's own space: another one
    cached = await runtime.cache.get(runtime.namespaces.session, key_of(SESSION, "web_alice"))
    assert isinstance(cached, SessionRecord)
    assert cached.owner == "web_alice"


async def test_update_field_keeps_the_owner(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"step": "greeting"}, owner="web_alice")
    updated = await runtime.sessions.update_field(SESSION, "step", "ordering", owner="web_alice")
    assert updated.owner == "web_alice"
    assert updated.data == {"step": "ordering"}
    again = await runtime.sessions.update_field(SESSION, "lang", "en", owner="web_alice")
    assert again.owner == "web_alice"
    read = await runtime.sessions.get(SESSION, owner="web_alice")
    assert read == again
    assert read is not None
    assert read.owner == "web_alice"
    assert read.data == {"step": "ordering", "lang": "en"}


async def test_one_id_of_two_owners_is_two_sessions(runtime: Runtime) -> None:
    """No owner can read, replace or delete another's session by using its id."""
    alice = await runtime.sessions.set(SESSION, {"a": 1}, owner="web_alice")
    bob = await runtime.sessions.set(SESSION, {"a": 2}, owner="web_bob")
    admin = await runtime.sessions.set(SESSION, {"a": 3})
    assert await runtime.sessions.get(SESSION, owner="web_alice") == alice
    assert await runtime.sessions.get(SESSION, owner="web_bob") == bob
    assert await runtime.sessions.get(SESSION) == admin
    await runtime.sessions.delete(SESSION, owner="web_bob")
    assert await runtime.sessions.get(SESSION, owner="web_alice") == alice
    assert await runtime.sessions.get(SESSION, owner="web_bob") is None


@pytest.mark.parametrize("owner", ["", "has space", "#admin", "x" * 129, 42])
async def test_an_owner_that_is_not_a_user_id_is_refused(runtime: Runtime, owner: Any) -> None:
    with pytest.raises(InvalidInputError, match="owner"):
        await runtime.sessions.set(SESSION, {"a": 1}, owner=owner)
    with pytest.raises(InvalidInputError, match="owner"):
        await runtime.sessions.get(SESSION, owner=owner)


async def test_updated_at_moves_forward_on_set_and_update(runtime: Runtime) -> None:
    first = await runtime.sessions.set(SESSION, {"a": 1})
    await asyncio.sleep(0.002)
    second = await runtime.sessions.set(SESSION, {"a": 2})
    assert second.updated_at > first.updated_at
    await asyncio.sleep(0.002)
    third = await runtime.sessions.update_field(SESSION, "a", 3)
    assert third.updated_at > second.updated_at
    read = await runtime.sessions.get(SESSION)
    assert read is not None
    assert read.updated_at == third.updated_at


async def test_set_replaces_the_whole_session(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"a": 1, "b": 2})
    await runtime.sessions.set(SESSION, {"c": 3})
    assert await data_of(runtime, SESSION) == {"c": 3}


async def test_sessions_are_kept_apart(runtime: Runtime) -> None:
    await runtime.sessions.set("session_one", {"who": 1}, owner="web_alice")
    await runtime.sessions.set("session_two", {"who": 2})
    one = await runtime.sessions.get("session_one", owner="web_alice")
    two = await runtime.sessions.get("session_two")
    assert one is not None
    assert two is not None
    assert (one.session_id, one.owner, one.data) == ("session_one", "web_alice", {"who": 1})
    assert (two.session_id, two.owner, two.data) == ("session_two", None, {"who": 2})


async def test_an_empty_object_is_a_session(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {})
    assert await data_of(runtime, SESSION) == {}
    assert (await runtime.sessions.update_field(SESSION, "a", 1)).data == {"a": 1}


async def test_delete_removes_the_session(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"a": 1})
    assert await runtime.sessions.delete(SESSION) is None
    assert await runtime.sessions.get(SESSION) is None
    assert await runtime.cache.get(runtime.namespaces.session, key_of(SESSION)) is MISSING


async def test_deleting_an_unknown_session_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFoundError, match="no session"):
        await runtime.sessions.delete(SESSION)
    assert await runtime.sessions.get(SESSION) is None


async def test_update_field_sets_one_field_and_keeps_the_others(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"step": "greeting", "lang": "en"})
    updated = await runtime.sessions.update_field(SESSION, "step", "ordering")
    assert updated.session_id == SESSION
    assert updated.data == {"step": "ordering", "lang": "en"}
    assert await runtime.sessions.get(SESSION) == updated


async def test_update_field_adds_a_new_field(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"lang": "en"})
    updated = await runtime.sessions.update_field(SESSION, "cart", ["Runtz"])
    assert updated.data == {"lang": "en", "cart": ["Runtz"]}
    assert await runtime.sessions.get(SESSION) == updated


async def test_update_field_of_a_missing_session_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFoundError):
        await runtime.sessions.update_field(SESSION, "step", "x")
    assert await runtime.sessions.get(SESSION) is None


async def test_update_field_of_a_deleted_session_is_not_found(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"a": 1})
    await runtime.sessions.delete(SESSION)
    with pytest.raises(NotFoundError):
        await runtime.sessions.update_field(SESSION, "a", 2)


@pytest.mark.parametrize("field", ["", "f" * 129])
async def test_update_field_rejects_a_bad_field_name(runtime: Runtime, field: str) -> None:
    stored = await runtime.sessions.set(SESSION, {"a": 1}, owner="web_alice")
    with pytest.raises(InvalidInputError, match="field"):
        await runtime.sessions.update_field(SESSION, field, 1, owner="web_alice")
    assert await runtime.sessions.get(SESSION, owner="web_alice") == stored


@pytest.mark.parametrize(
    "session_id",
    ["short", "", "has space here", "x" * 129, "semi;colon;id", "ключ-сессии", 12345678],
)
async def test_invalid_session_ids_are_rejected(runtime: Runtime, session_id: Any) -> None:
    with pytest.raises(InvalidInputError, match="session id"):
        await runtime.sessions.get(session_id)
    with pytest.raises(InvalidInputError, match="session id"):
        await runtime.sessions.set(session_id, {"a": 1})
    with pytest.raises(InvalidInputError, match="session id"):
        await runtime.sessions.set(session_id, {"a": 1}, owner="web_alice")
    with pytest.raises(InvalidInputError, match="session id"):
        await runtime.sessions.delete(session_id)
    with pytest.raises(InvalidInputError, match="session id"):
        await runtime.sessions.update_field(session_id, "a", 1)


@pytest.mark.parametrize("session_id", ["a" * 8, "A-b_9" * 25 + "xyz"])
async def test_session_ids_at_the_length_bounds_are_accepted(
    runtime: Runtime, session_id: str
) -> None:
    assert 8 <= len(session_id) <= 128
    stored = await runtime.sessions.set(session_id, {"ok": True})
    assert stored.session_id == session_id
    assert await data_of(runtime, session_id) == {"ok": True}


@pytest.mark.parametrize("data", [[1, 2], "text", 42, None, ("a", 1)])
async def test_data_that_is_not_an_object_is_rejected(runtime: Runtime, data: Any) -> None:
    with pytest.raises(InvalidInputError, match="JSON object"):
        await runtime.sessions.set(SESSION, data)
    assert await runtime.sessions.get(SESSION) is None


async def test_oversize_data_is_rejected(runtime: Runtime) -> None:
    stored = await runtime.sessions.set(SESSION, {"small": True})
    with pytest.raises(InvalidInputError, match="bytes"):
        await runtime.sessions.set(SESSION, {"blob": "x" * MAX_SESSION_BYTES})
    assert await runtime.sessions.get(SESSION) == stored


async def test_data_of_exactly_the_limit_is_accepted(runtime: Runtime) -> None:
    # The limit applies to the data as JSON, not to the record around it.
    overhead = len(orjson.dumps({"blob": ""}))
    data = {"blob": "x" * (MAX_SESSION_BYTES - overhead)}
    assert len(orjson.dumps(data)) == MAX_SESSION_BYTES
    stored = await runtime.sessions.set(SESSION, data)
    assert stored.data == data
    assert await data_of(runtime, SESSION) == data
    with pytest.raises(InvalidInputError, match="bytes"):
        await runtime.sessions.set(SESSION, {"blob": data["blob"] + "x"})
    assert await data_of(runtime, SESSION) == data


async def test_update_field_that_would_exceed_the_limit_is_rejected(runtime: Runtime) -> None:
    stored = await runtime.sessions.set(SESSION, {"a": 1})
    with pytest.raises(InvalidInputError, match="bytes"):
        await runtime.sessions.update_field(SESSION, "blob", "x" * MAX_SESSION_BYTES)
    assert await runtime.sessions.get(SESSION) == stored


async def test_a_session_expires_after_its_ttl(short_lived: Runtime) -> None:
    await short_lived.sessions.set(SESSION, {"a": 1})
    assert await data_of(short_lived, SESSION) == {"a": 1}
    await asyncio.sleep(0.45)
    assert await short_lived.sessions.get(SESSION) is None
    with pytest.raises(NotFoundError):
        await short_lived.sessions.update_field(SESSION, "a", 2)


async def test_writing_a_session_restarts_its_ttl(short_lived: Runtime) -> None:
    await short_lived.sessions.set(SESSION, {"a": 1})
    await asyncio.sleep(0.2)
    await short_lived.sessions.update_field(SESSION, "a", 2)
    await asyncio.sleep(0.2)  # 0.4 s after the first write, 0.2 s after the second
    assert await data_of(short_lived, SESSION) == {"a": 2}
    await asyncio.sleep(0.25)
    assert await short_lived.sessions.get(SESSION) is None


@pytest.mark.parametrize("data", [{"tags": {"a", "b"}}, {1: "integer key"}, {"obj": object()}])
async def test_data_that_is_not_json_is_rejected(runtime: Runtime, data: dict[Any, Any]) -> None:
    with pytest.raises(InvalidInputError, match="JSON"):
        await runtime.sessions.set(SESSION, data)
    assert await runtime.sessions.get(SESSION) is None


async def test_update_field_with_a_value_that_is_not_json_is_rejected(runtime: Runtime) -> None:
    stored = await runtime.sessions.set(SESSION, {"a": 1})
    with pytest.raises(InvalidInputError, match="JSON"):
        await runtime.sessions.update_field(SESSION, "tags", {"x", "y"})
    assert await runtime.sessions.get(SESSION) == stored


# --- JSON that is refused everywhere (the HTTP API answers 422 before the service) ----------


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "data",
    [
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": [float("-inf")]},
        nested(33),
        nested(220),  # used to be stored, then read back as absent
    ],
    ids=["nan", "infinity", "-infinity", "depth-33", "depth-220"],
)
async def test_data_that_json_cannot_hold_is_refused_and_nothing_stored(
    runtime: Runtime, data: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInputError, match="JSON"):
        await runtime.sessions.set(SESSION, data, owner="web_alice")
    assert await runtime.sessions.get(SESSION, owner="web_alice") is None
    stored = await runtime.sessions.set(SESSION, {"a": 1}, owner="web_alice")
    with pytest.raises(InvalidInputError, match="JSON"):
        await runtime.sessions.update_field(SESSION, "x", float("nan"), owner="web_alice")
    assert await runtime.sessions.get(SESSION, owner="web_alice") == stored


async def test_data_nested_32_deep_is_accepted(runtime: Runtime) -> None:
    stored = await runtime.sessions.set(SESSION, nested(32))
    assert await runtime.sessions.get(SESSION) == stored


# --- per-owner limits -------------------------------------------------------------------------

LIMITS = {"max_sessions_per_user": 4, "max_session_bytes_per_user": 2048}


@pytest.fixture
async def limited(stack_settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime of the same stack whose owners may keep 4 sessions of 2 KiB in all."""
    app = Runtime.open(stack_settings.model_copy(update=LIMITS))
    yield app
    await app.cache.clear()
    await app.close()


def blob(size: int) -> dict[str, str]:
    """Data of exactly ``size`` bytes as JSON."""
    return {"b": "x" * (size - len(b'{"b":""}'))}


async def test_the_count_limit_refuses_a_new_session_and_stores_nothing(limited: Runtime) -> None:
    for n in range(4):
        await limited.sessions.set(f"session_{n}", {}, owner="web_alice")
    with pytest.raises(LimitExceededError, match="OGCACHE_MAX_SESSIONS_PER_USER"):
        await limited.sessions.set("session_9", {}, owner="web_alice")
    assert await limited.sessions.get("session_9", owner="web_alice") is None
    await limited.sessions.set("session_9", {}, owner="web_bob")  # another owner's room


async def test_the_bytes_limit_counts_every_session_of_the_owner(limited: Runtime) -> None:
    await limited.sessions.set("session_0", blob(1500), owner="web_alice")
    with pytest.raises(LimitExceededError, match="OGCACHE_MAX_SESSION_BYTES_PER_USER"):
        await limited.sessions.set("session_1", blob(549), owner="web_alice")
    with pytest.raises(LimitExceededError):
        await limited.sessions.update_field("session_0", "more", "x" * 600, owner="web_alice")
    await limited.sessions.set("session_1", blob(548), owner="web_alice")  # exactly 2048


async def test_a_same_size_or_smaller_replacement_always_passes(limited: Runtime) -> None:
    await limited.sessions.set("session_0", blob(2048), owner="web_alice")
    await limited.sessions.set("session_0", blob(2048), owner="web_alice")
    await limited.sessions.set("session_0", blob(1000), owner="web_alice")
    await limited.sessions.set("session_1", blob(1048), owner="web_alice")  # the freed room


async def test_deleting_frees_room_even_when_the_session_itself_is_gone(limited: Runtime) -> None:
    """A session evicted or lost from the cache still counts until deleted or expired."""
    for n in range(4):
        await limited.sessions.set(f"session_{n}", blob(512), owner="web_alice")
    await limited.sessions.delete("session_0", owner="web_alice")
    await limited.cache.delete(limited.namespaces.session, "web_alice:session_1")  # "evicted"
    with pytest.raises(NotFoundError):
        await limited.sessions.delete("session_1", owner="web_alice")
    await limited.sessions.set("session_4", blob(512), owner="web_alice")
    await limited.sessions.set("session_5", blob(512), owner="web_alice")
    with pytest.raises(LimitExceededError):
        await limited.sessions.set("session_6", {}, owner="web_alice")


async def test_concurrent_new_sessions_stop_exactly_at_the_limit(limited: Runtime) -> None:
    async def attempt(n: int) -> bool:
        try:
            await limited.sessions.set(f"session_{n}", {"n": n}, owner="web_alice")
        except LimitExceededError:
            return False
        return True

    stored = await asyncio.gather(*(attempt(n) for n in range(50)))
    assert sum(stored) == 4
    for n, ok in enumerate(stored):
        record = await limited.sessions.get(f"session_{n}", owner="web_alice")
        assert (record is not None) == ok
    index = await limited.cache.get(limited.namespaces.session_index, "web_alice")
    assert isinstance(index, dict)
    assert sorted(index) == sorted(f"session_{n}" for n, ok in enumerate(stored) if ok)


async def test_concurrent_writes_and_deletes_never_leave_a_session_uncounted(
    limited: Runtime,
) -> None:
    """Whatever the interleaving, every stored session is in its owner's index."""
    for round_ in range(10):
        sid = f"session_r{round_}"
        await limited.sessions.set(sid, {}, owner="web_alice")
        await asyncio.gather(
            limited.sessions.set(sid, {"again": True}, owner="web_alice"),
            limited.sessions.delete(sid, owner="web_alice"),
            return_exceptions=True,
        )
        index = await limited.cache.get(limited.namespaces.session_index, "web_alice")
        if await limited.sessions.get(sid, owner="web_alice") is not None:
            assert isinstance(index, dict)
            assert sid in index
        with contextlib.suppress(NotFoundError):
            await limited.sessions.delete(sid, owner="web_alice")


async def test_expired_sessions_stop_counting(stack_settings: Settings) -> None:
    ttl = 0.3
    app = Runtime.open(stack_settings.model_copy(update={**LIMITS, "ttl_session": ttl}))
    try:
        for n in range(4):
            await app.sessions.set(f"session_{n}", blob(512), owner="web_alice")
        with pytest.raises(LimitExceededError):
            await app.sessions.set("session_9", {}, owner="web_alice")
        await asyncio.sleep(10 * ttl)
        for n in range(4, 8):
            await app.sessions.set(f"session_{n}", blob(512), owner="web_alice")
        index = await app.cache.get(app.namespaces.session_index, "web_alice")
        assert isinstance(index, dict)
        assert sorted(index) == [f"session_{n}" for n in range(4, 8)]  # the expired pruned
    finally:
        await app.cache.clear()
        await app.close()
