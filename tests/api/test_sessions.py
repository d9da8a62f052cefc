"""/api/sessions: session data kept in the cache for an hour; it belongs to the user who
stored it first, and reads as absent to every other user."""

from __future__ import annotations

import httpx

from ogcache.services.sessions import MAX_SESSION_BYTES
from tests.api.conftest import ADMIN, assert_error, one_stack

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
        "web_demo_alice",
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


async def test_another_user_cannot_change_or_delete_a_users_session(
    client: httpx.AsyncClient, alice: dict, niran: dict
) -> None:
    await client.put(SESSION, json={"cart": ["Runtz"]}, headers=alice)
    assert_error(await client.put(SESSION, json={"cart": []}, headers=niran), 404)
    assert_error(await client.patch(SESSION, json={"field": "cart"}, headers=niran), 404)
    assert_error(await client.delete(SESSION, headers=niran), 404)
    record = (await client.get(SESSION, headers=alice)).json()
    assert (record["owner"], record["data"]) == ("web_demo_alice", {"cart": ["Runtz"]})


async def test_the_admin_reads_and_changes_a_users_session_keeping_its_owner(
    client: httpx.AsyncClient, alice: dict
) -> None:
    await client.put(SESSION, json={"cart": ["Runtz"]}, headers=alice)
    assert (await client.get(SESSION, headers=ADMIN)).json()["data"] == {"cart": ["Runtz"]}
    replaced = await client.put(SESSION, json={"cart": []}, headers=ADMIN)
    assert replaced.json()["owner"] == "web_demo_alice"
    assert (await client.get(SESSION, headers=alice)).json()["data"] == {"cart": []}


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
