"""Session data: a JSON object per session id, kept in the cache only, for ``ttl_session``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ogcache.cache import MISSING
from ogcache.config import Settings
from ogcache.errors import InvalidInputError, NotFoundError
from ogcache.runtime import Runtime
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


async def test_an_unknown_session_reads_as_none(runtime: Runtime) -> None:
    assert await runtime.sessions.get(SESSION) is None


async def test_set_then_get_round_trips(runtime: Runtime) -> None:
    data = {"step": "choosing", "cart": [{"item": "Runtz", "grams": 5}], "vip": True, "n": 1.5}
    assert await runtime.sessions.set(SESSION, data) is True
    assert await runtime.sessions.get(SESSION) == data
    assert await runtime.cache.get(runtime.namespaces.session, SESSION) == data


async def test_set_replaces_the_whole_session(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"a": 1, "b": 2})
    await runtime.sessions.set(SESSION, {"c": 3})
    assert await runtime.sessions.get(SESSION) == {"c": 3}


async def test_sessions_are_kept_apart(runtime: Runtime) -> None:
    await runtime.sessions.set("session_one", {"who": 1})
    await runtime.sessions.set("session_two", {"who": 2})
    assert await runtime.sessions.get("session_one") == {"who": 1}
    assert await runtime.sessions.get("session_two") == {"who": 2}


async def test_an_empty_object_is_a_session(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {})
    assert await runtime.sessions.get(SESSION) == {}
    assert await runtime.sessions.update_field(SESSION, "a", 1) == {"a": 1}


async def test_delete_removes_the_session(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"a": 1})
    assert await runtime.sessions.delete(SESSION) is True
    assert await runtime.sessions.get(SESSION) is None
    assert await runtime.cache.get(runtime.namespaces.session, SESSION) is MISSING


async def test_deleting_an_unknown_session_is_harmless(runtime: Runtime) -> None:
    assert await runtime.sessions.delete(SESSION) is True
    assert await runtime.sessions.get(SESSION) is None


async def test_update_field_sets_one_field_and_keeps_the_others(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"step": "greeting", "lang": "en"})
    updated = await runtime.sessions.update_field(SESSION, "step", "ordering")
    assert updated == {"step": "ordering", "lang": "en"}
    assert await runtime.sessions.get(SESSION) == updated


async def test_update_field_adds_a_new_field(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"lang": "en"})
    updated = await runtime.sessions.update_field(SESSION, "cart", ["Runtz"])
    assert updated == {"lang": "en", "cart": ["Runtz"]}
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
    await runtime.sessions.set(SESSION, {"a": 1})
    with pytest.raises(InvalidInputError, match="field"):
        await runtime.sessions.update_field(SESSION, field, 1)
    assert await runtime.sessions.get(SESSION) == {"a": 1}


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
        await runtime.sessions.delete(session_id)
    with pytest.raises(InvalidInputError, match="session id"):
        await runtime.sessions.update_field(session_id, "a", 1)


@pytest.mark.parametrize("session_id", ["a" * 8, "A-b_9" * 25 + "xyz"])
async def test_session_ids_at_the_length_bounds_are_accepted(
    runtime: Runtime, session_id: str
) -> None:
    assert 8 <= len(session_id) <= 128
    await runtime.sessions.set(session_id, {"ok": True})
    assert await runtime.sessions.get(session_id) == {"ok": True}


@pytest.mark.parametrize("data", [[1, 2], "text", 42, None, ("a", 1)])
async def test_data_that_is_not_an_object_is_rejected(runtime: Runtime, data: Any) -> None:
    with pytest.raises(InvalidInputError, match="JSON object"):
        await runtime.sessions.set(SESSION, data)
    assert await runtime.sessions.get(SESSION) is None


async def test_oversize_data_is_rejected(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"small": True})
    with pytest.raises(InvalidInputError, match="bytes"):
        await runtime.sessions.set(SESSION, {"blob": "x" * MAX_SESSION_BYTES})
    assert await runtime.sessions.get(SESSION) == {"small": True}


async def test_data_of_exactly_the_limit_is_accepted(runtime: Runtime) -> None:
    data = {"blob": ""}
    overhead = len(runtime.namespaces.session.codec.dumps(data))
    data = {"blob": "x" * (MAX_SESSION_BYTES - overhead)}
    assert len(runtime.namespaces.session.codec.dumps(data)) == MAX_SESSION_BYTES
    assert await runtime.sessions.set(SESSION, data) is True
    assert await runtime.sessions.get(SESSION) == data


async def test_update_field_that_would_exceed_the_limit_is_rejected(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"a": 1})
    with pytest.raises(InvalidInputError, match="bytes"):
        await runtime.sessions.update_field(SESSION, "blob", "x" * MAX_SESSION_BYTES)
    assert await runtime.sessions.get(SESSION) == {"a": 1}


async def test_a_session_expires_after_its_ttl(short_lived: Runtime) -> None:
    await short_lived.sessions.set(SESSION, {"a": 1})
    assert await short_lived.sessions.get(SESSION) == {"a": 1}
    await asyncio.sleep(0.45)
    assert await short_lived.sessions.get(SESSION) is None
    with pytest.raises(NotFoundError):
        await short_lived.sessions.update_field(SESSION, "a", 2)


async def test_writing_a_session_restarts_its_ttl(short_lived: Runtime) -> None:
    await short_lived.sessions.set(SESSION, {"a": 1})
    await asyncio.sleep(0.2)
    await short_lived.sessions.update_field(SESSION, "a", 2)
    await asyncio.sleep(0.2)  # 0.4 s after the first write, 0.2 s after the second
    assert await short_lived.sessions.get(SESSION) == {"a": 2}
    await asyncio.sleep(0.25)
    assert await short_lived.sessions.get(SESSION) is None


@pytest.mark.parametrize("data", [{"tags": {"a", "b"}}, {1: "integer key"}, {"obj": object()}])
async def test_data_that_is_not_json_is_rejected(runtime: Runtime, data: dict[Any, Any]) -> None:
    with pytest.raises(InvalidInputError, match="JSON"):
        await runtime.sessions.set(SESSION, data)
    assert await runtime.sessions.get(SESSION) is None


async def test_update_field_with_a_value_that_is_not_json_is_rejected(runtime: Runtime) -> None:
    await runtime.sessions.set(SESSION, {"a": 1})
    with pytest.raises(InvalidInputError, match="JSON"):
        await runtime.sessions.update_field(SESSION, "tags", {"x", "y"})
    assert await runtime.sessions.get(SESSION) == {"a": 1}
