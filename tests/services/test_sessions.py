"""Session data: a JSON object per session id, kept in the cache only, for ``ttl_session``.

Each session is stored as a :class:`SessionRecord`: its id, its owner (``None`` unless one is
given), its data, and when it was last written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from ogcache.cache import MISSING
from ogcache.config import Settings
from ogcache.errors import InvalidInputError, NotFoundError
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
    assert await runtime.cache.get(runtime.namespaces.session, SESSION) == stored


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
    read = await runtime.sessions.get(SESSION)
    assert read == stored
    assert read is not None
    assert read.owner == "web_alice"
    cached = await runtime.cache.get(runtime.namespaces.session, SESSION)
    assert isinstance(cached, SessionRecord)
    assert cached.owner == "web_alice"


async def test_update_field_keeps_the_owner(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"step": "greeting"}, owner="web_alice")
    updated = await runtime.sessions.update_field(SESSION, "step", "ordering")
    assert updated.owner == "web_alice"
    assert updated.data == {"step": "ordering"}
    again = await runtime.sessions.update_field(SESSION, "lang", "en")
    assert again.owner == "web_alice"
    read = await runtime.sessions.get(SESSION)
    assert read == again
    assert read is not None
    assert read.owner == "web_alice"
    assert read.data == {"step": "ordering", "lang": "en"}


async def test_set_replaces_the_owner_given(runtime: Runtime) -> None:
    """``set`` replaces the whole record: the owner is the one given to this call."""
    await runtime.sessions.set(SESSION, {"a": 1}, owner="web_alice")
    replaced = await runtime.sessions.set(SESSION, {"a": 2}, owner="web_bob")
    assert replaced.owner == "web_bob"
    assert (await runtime.sessions.get(SESSION)) == replaced


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
    one = await runtime.sessions.get("session_one")
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
    assert await runtime.cache.get(runtime.namespaces.session, SESSION) is MISSING


async def test_deleting_an_unknown_session_is_harmless(runtime: Runtime) -> None:
    assert await runtime.sessions.delete(SESSION) is None
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
        await runtime.sessions.update_field(SESSION, field, 1)
    assert await runtime.sessions.get(SESSION) == stored


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
