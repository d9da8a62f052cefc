"""/api/sessions: session data kept in the cache for an hour, per user: each user's ids are
their own; the admin addresses a user's with ``?user_id=``. Per-user limits answer 409."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from ogcache.api.app import create_app
from ogcache.runtime import Runtime
from ogcache.services.sessions import MAX_SESSION_BYTES
from tests.api.conftest import ADMIN, ALICE, NIRAN, assert_error, client_for, one_stack

SESSION = "/api/sessions/chat_state_0001"


async def test_a_stored_session_reads_back_owned_by_its_user(
    client: httpx.AsyncClient, alice: dict
) -> None:
    data = {"step": "choosing", "cart": ["Gelato 41"]}
    stored = await client.put(SESSION, json=data, headers=alice)
    assert stored.status_code == 200
    read = await client.get(SESSION, headers=alice)
    assert read.status_code == 200
    record = read.json()
    assert (record["session_id"], record["owner"], record["data"]) == (
        "chat_state_0001",
        ALICE,
        data,
    )


async def test_put_replaces_the_data(client: httpx.AsyncClient, alice: dict) -> None:
    await client.put(SESSION, json={"a": 1, "b": 2}, headers=alice)
    await client.put(SESSION, json={"c": 3}, headers=alice)
    assert (await client.get(SESSION, headers=alice)).json()["data"] == {"c": 3}


async def test_patch_sets_one_field_and_keeps_the_others(
    client: httpx.AsyncClient, alice: dict
) -> None:
    await client.put(SESSION, json={"step": "greeting", "lang": "en"}, headers=alice)
    response = await client.patch(
        SESSION, json={"field": "step", "value": {"name": "checkout"}}, headers=alice
    )
    assert response.status_code == 200
    expected = {"step": {"name": "checkout"}, "lang": "en"}
    assert response.json()["data"] == expected
    assert (await client.get(SESSION, headers=alice)).json()["data"] == expected


async def test_a_deleted_session_reads_as_absent(client: httpx.AsyncClient, alice: dict) -> None:
    await client.put(SESSION, json={"x": 1}, headers=alice)
    response = await client.delete(SESSION, headers=alice)
    assert response.status_code == 204
    assert_error(await client.get(SESSION, headers=alice), 404, "not_found")


async def test_a_session_never_stored_is_404(client: httpx.AsyncClient, alice: dict) -> None:
    assert_error(await client.get(SESSION, headers=alice), 404, "not_found")
    assert_error(await client.patch(SESSION, json={"field": "x"}, headers=alice), 404)
    assert_error(await client.delete(SESSION, headers=alice), 404)


async def test_another_user_cannot_read_a_users_session(
    client: httpx.AsyncClient, alice: dict, niran: dict
) -> None:
    await client.put(SESSION, json={"secret": "alice's cart"}, headers=alice)
    assert_error(await client.get(SESSION, headers=niran), 404, "not_found")


async def test_the_same_id_from_two_users_is_two_sessions(
    client: httpx.AsyncClient, alice: dict, niran: dict
) -> None:
    """The first writer of an id does not own it for everyone: ids are per user."""
    await client.put(SESSION, json={"cart": ["Runtz"]}, headers=alice)
    mine = await client.put(SESSION, json={"cart": []}, headers=niran)
    assert mine.status_code == 200
    assert mine.json()["owner"] == NIRAN
    patched = await client.patch(SESSION, json={"field": "lang", "value": "th"}, headers=niran)
    assert patched.json()["data"] == {"cart": [], "lang": "th"}
    assert (await client.delete(SESSION, headers=niran)).status_code == 204
    record = (await client.get(SESSION, headers=alice)).json()
    assert (record["owner"], record["data"]) == (ALICE, {"cart": ["Runtz"]})


async def test_a_user_may_not_address_another_users_sessions(
    client: httpx.AsyncClient, alice: dict, niran: dict
) -> None:
    await client.put(SESSION, json={"cart": ["Runtz"]}, headers=alice)
    other = f"{SESSION}?user_id={ALICE}"
    assert_error(await client.get(other, headers=niran), 403, "forbidden")
    assert_error(await client.put(other, json={}, headers=niran), 403, "forbidden")
    assert_error(await client.delete(other, headers=niran), 403, "forbidden")
    assert (await client.get(other, headers=alice)).json()["data"] == {"cart": ["Runtz"]}


async def test_the_admin_reads_and_changes_a_users_session_keeping_its_owner(
    client: httpx.AsyncClient, alice: dict
) -> None:
    await client.put(SESSION, json={"cart": ["Runtz"]}, headers=alice)
    as_admin = f"{SESSION}?user_id={ALICE}"
    assert (await client.get(as_admin, headers=ADMIN)).json()["data"] == {"cart": ["Runtz"]}
    replaced = await client.put(as_admin, json={"cart": []}, headers=ADMIN)
    assert replaced.json()["owner"] == ALICE
    assert (await client.get(SESSION, headers=alice)).json()["data"] == {"cart": []}
    assert (await client.delete(as_admin, headers=ADMIN)).status_code == 204
    assert_error(await client.get(SESSION, headers=alice), 404)


async def test_deleting_a_profile_deletes_its_session_data(
    client: httpx.AsyncClient, seeded: Runtime, alice: dict, niran: dict
) -> None:
    for n in range(3):
        await client.put(f"/api/sessions/alice_state_{n:04d}", json={"n": n}, headers=alice)
    await client.put(SESSION, json={"who": "niran"}, headers=niran)
    assert (await client.delete(f"/api/profiles/{ALICE}", headers=ADMIN)).status_code == 204
    for n in range(3):
        path = f"/api/sessions/alice_state_{n:04d}?user_id={ALICE}"
        assert_error(await client.get(path, headers=ADMIN), 404)
    assert await seeded.sessions.delete_owner(ALICE) == 0  # the index went with them
    assert (await client.get(SESSION, headers=niran)).json()["data"] == {"who": "niran"}


async def test_the_admins_own_sessions_are_apart_from_users(
    client: httpx.AsyncClient, alice: dict
) -> None:
    await client.put(SESSION, json={"who": "alice"}, headers=alice)
    assert_error(await client.get(SESSION, headers=ADMIN), 404)  # no user_id: the admin's own
    stored = await client.put(SESSION, json={"who": "admin"}, headers=ADMIN)
    assert stored.json()["owner"] is None
    assert (await client.get(SESSION, headers=ADMIN)).json()["data"] == {"who": "admin"}
    assert (await client.get(SESSION, headers=alice)).json()["data"] == {"who": "alice"}


async def test_sessions_need_a_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.put(SESSION, json={}), 401)
    assert_error(await client.get(SESSION), 401)


@one_stack
async def test_a_malformed_session_id_is_422(client: httpx.AsyncClient, alice: dict) -> None:
    for session_id in ("short", "has%20space_long", "x" * 129):
        response = await client.get(f"/api/sessions/{session_id}", headers=alice)
        assert_error(response, 422, "validation_error")


@one_stack
async def test_session_data_must_be_a_json_object(client: httpx.AsyncClient, alice: dict) -> None:
    for data in ([1, 2], "text", 3):
        assert_error(await client.put(SESSION, json=data, headers=alice), 422)


async def test_session_data_over_the_size_limit_is_400(
    client: httpx.AsyncClient, alice: dict
) -> None:
    data = {"blob": "x" * (MAX_SESSION_BYTES + 1)}
    assert_error(await client.put(SESSION, json=data, headers=alice), 400, "invalid_input")
    assert_error(await client.get(SESSION, headers=alice), 404)


@one_stack
async def test_a_field_update_with_unknown_keys_is_422(
    client: httpx.AsyncClient, alice: dict
) -> None:
    await client.put(SESSION, json={}, headers=alice)
    response = await client.patch(
        SESSION, json={"field": "a", "value": 1, "extra": True}, headers=alice
    )
    assert_error(response, 422, "validation_error")
    assert_error(await client.patch(SESSION, json={"field": ""}, headers=alice), 422)


# --- validation: what PUT and PATCH refuse, they refuse with 422 and store nothing ----------

DEEP = b'{"a":' * 220 + b"1" + b"}" * 220  # the depth that used to answer 200, then 404
NOT_JSON_NUMBERS = (b'{"x": NaN}', b'{"x": Infinity}', b'{"x": [-Infinity]}')


@one_stack
async def test_put_refuses_nan_infinity_and_deep_data(
    client: httpx.AsyncClient, alice: dict
) -> None:
    headers = {**alice, "Content-Type": "application/json"}
    for body in (*NOT_JSON_NUMBERS, DEEP, b'{"a":' * 33 + b"1" + b"}" * 33):
        response = await client.put(SESSION, content=body, headers=headers)
        assert_error(response, 422, "validation_error")
    assert_error(await client.get(SESSION, headers=alice), 404)
    ok = b'{"a":' * 32 + b"1" + b"}" * 32  # depth 32 is the limit, and allowed
    assert (await client.put(SESSION, content=ok, headers=headers)).status_code == 200


@one_stack
async def test_patch_refuses_nan_infinity_and_deep_values(
    client: httpx.AsyncClient, alice: dict
) -> None:
    await client.put(SESSION, json={"step": 1}, headers=alice)
    headers = {**alice, "Content-Type": "application/json"}
    for value in (b"NaN", b"Infinity", DEEP):
        body = b'{"field": "x", "value": ' + value + b"}"
        response = await client.patch(SESSION, content=body, headers=headers)
        assert_error(response, 422, "validation_error")
    assert (await client.get(SESSION, headers=alice)).json()["data"] == {"step": 1}


# --- per-user limits ------------------------------------------------------------------------

MAX_SESSIONS = 5
MAX_BYTES = 4096


@pytest.fixture
async def limited(seeded: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The same stack with small per-user limits: 5 sessions, 4 KiB of data."""
    settings = seeded.settings.model_copy(
        update={"max_sessions_per_user": MAX_SESSIONS, "max_session_bytes_per_user": MAX_BYTES}
    )
    async with Runtime.open(settings) as other, client_for(create_app(runtime=other)) as http:
        yield http


def session(n: int) -> str:
    return f"/api/sessions/session_{n:04d}"


def blob(size: int) -> dict[str, str]:
    """Data of exactly ``size`` bytes as JSON."""
    return {"b": "x" * (size - len(b'{"b":""}'))}


async def test_a_new_session_past_the_count_limit_is_409(
    limited: httpx.AsyncClient, alice: dict
) -> None:
    for n in range(MAX_SESSIONS):
        assert (await limited.put(session(n), json={"n": n}, headers=alice)).status_code == 200
    error = assert_error(await limited.put(session(99), json={}, headers=alice), 409)
    assert error["code"] == "limit_exceeded"
    assert "OGCACHE_MAX_SESSIONS_PER_USER" in error["message"]
    assert_error(await limited.get(session(99), headers=alice), 404)


async def test_data_past_the_bytes_limit_is_409(limited: httpx.AsyncClient, alice: dict) -> None:
    assert (await limited.put(session(0), json=blob(3000), headers=alice)).status_code == 200
    error = assert_error(await limited.put(session(1), json=blob(1500), headers=alice), 409)
    assert "OGCACHE_MAX_SESSION_BYTES_PER_USER" in error["message"]
    assert_error(await limited.get(session(1), headers=alice), 404)
    assert (await limited.put(session(1), json=blob(1096), headers=alice)).status_code == 200
    # Growing a session past the limit through PATCH is refused the same way.
    grow = {"field": "more", "value": "y" * 100}
    assert_error(await limited.patch(session(1), json=grow, headers=alice), 409)
    assert (await limited.get(session(1), headers=alice)).json()["data"] == blob(1096)


async def test_replacing_with_same_or_smaller_data_works_at_the_limits(
    limited: httpx.AsyncClient, alice: dict
) -> None:
    for n in range(MAX_SESSIONS - 1):
        await limited.put(session(n), json=blob(200), headers=alice)
    last = session(MAX_SESSIONS - 1)
    assert (await limited.put(last, json=blob(MAX_BYTES - 800), headers=alice)).status_code == 200
    # Full in count and in bytes: a replacement of the same size or smaller still passes.
    assert (await limited.put(last, json=blob(MAX_BYTES - 800), headers=alice)).status_code == 200
    assert (await limited.put(last, json=blob(100), headers=alice)).status_code == 200
    assert (await limited.put(session(0), json=blob(10), headers=alice)).status_code == 200
    # The room freed by shrinking can be used again.
    assert (await limited.put(last, json=blob(2000), headers=alice)).status_code == 200


async def test_deleting_a_session_frees_its_room(limited: httpx.AsyncClient, alice: dict) -> None:
    for n in range(MAX_SESSIONS):
        await limited.put(session(n), json=blob(MAX_BYTES // MAX_SESSIONS), headers=alice)
    assert_error(await limited.put(session(99), json={}, headers=alice), 409)
    assert (await limited.delete(session(0), headers=alice)).status_code == 204
    assert_error(await limited.delete(session(0), headers=alice), 404, "not_found")
    assert (await limited.put(session(99), json=blob(800), headers=alice)).status_code == 200


async def test_a_burst_of_new_sessions_stops_exactly_at_the_limit(
    limited: httpx.AsyncClient, alice: dict
) -> None:
    responses = await asyncio.gather(
        *(limited.put(session(n), json={"n": n}, headers=alice) for n in range(50))
    )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: MAX_SESSIONS, 409: 50 - MAX_SESSIONS}
    reads = await asyncio.gather(*(limited.get(session(n), headers=alice) for n in range(50)))
    assert sum(read.status_code == 200 for read in reads) == MAX_SESSIONS


async def test_one_users_sessions_do_not_use_another_users_room(
    limited: httpx.AsyncClient, alice: dict, niran: dict
) -> None:
    for n in range(MAX_SESSIONS):
        await limited.put(session(n), json={"n": n}, headers=alice)
    assert_error(await limited.put(session(99), json={}, headers=alice), 409)
    for n in range(MAX_SESSIONS):
        assert (await limited.put(session(n), json={}, headers=niran)).status_code == 200
    assert (await limited.get(session(0), headers=alice)).json()["data"] == {"n": 0}


async def test_the_admins_own_space_has_its_limits_too(limited: httpx.AsyncClient) -> None:
    for n in range(MAX_SESSIONS):
        assert (await limited.put(session(n), json={}, headers=ADMIN)).status_code == 200
    assert_error(await limited.put(session(99), json={}, headers=ADMIN), 409, "limit_exceeded")


async def test_expired_sessions_stop_counting(seeded: Runtime, alice: dict) -> None:
    ttl = 0.3
    settings = seeded.settings.model_copy(update={"max_sessions_per_user": 2, "ttl_session": ttl})
    async with Runtime.open(settings) as other, client_for(create_app(runtime=other)) as http:
        for n in range(2):
            assert (await http.put(session(n), json={}, headers=alice)).status_code == 200
        assert_error(await http.put(session(2), json={}, headers=alice), 409)
        await asyncio.sleep(10 * ttl)
        for n in range(2, 4):
            assert (await http.put(session(n), json={}, headers=alice)).status_code == 200
