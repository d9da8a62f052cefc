"""/api/conversations: start one, read it with its messages (cached), add messages; another
user's conversation reads as absent."""

from __future__ import annotations

import uuid

import httpx

from tests.api.conftest import ADMIN, ALICE, NIRAN, assert_error, namespace_hits, one_stack


async def first_conversation(client: httpx.AsyncClient, user_id: str) -> dict:
    response = await client.get(f"/api/profiles/{user_id}/conversations", headers=ADMIN)
    return response.json()[0]


async def test_a_user_reads_their_conversation_with_its_messages(
    client: httpx.AsyncClient, alice: dict
) -> None:
    summary = await first_conversation(client, ALICE)
    response = await client.get(f"/api/conversations/{summary['id']}", headers=alice)
    assert response.status_code == 200
    conversation = response.json()
    assert conversation["user_id"] == ALICE
    assert len(conversation["messages"]) == conversation["message_count"] == 4
    assert {message["role"] for message in conversation["messages"]} == {"user", "assistant"}


async def test_second_read_of_a_conversation_is_a_cache_hit(
    client: httpx.AsyncClient, alice: dict
) -> None:
    summary = await first_conversation(client, ALICE)
    first = await client.get(f"/api/conversations/{summary['id']}", headers=alice)
    before = await namespace_hits(client, "conversation")
    second = await client.get(f"/api/conversations/{summary['id']}", headers=alice)
    assert second.json() == first.json()
    assert await namespace_hits(client, "conversation") == before + 1


async def test_a_user_cannot_read_another_users_conversation(
    client: httpx.AsyncClient, alice: dict
) -> None:
    summary = await first_conversation(client, NIRAN)
    response = await client.get(f"/api/conversations/{summary['id']}", headers=alice)
    assert_error(response, 404, "not_found")


async def test_the_admin_reads_any_conversation(client: httpx.AsyncClient) -> None:
    summary = await first_conversation(client, NIRAN)
    response = await client.get(f"/api/conversations/{summary['id']}", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["user_id"] == NIRAN


async def test_an_unknown_conversation_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/conversations/{uuid.uuid4()}", headers=ADMIN)
    assert_error(response, 404, "not_found")


@one_stack
async def test_a_conversation_id_that_is_not_a_uuid_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/conversations/conv_456", headers=ADMIN)
    assert_error(response, 422, "validation_error")


async def test_a_user_starts_a_conversation_that_appears_in_their_list(
    client: httpx.AsyncClient, alice: dict
) -> None:
    await client.get(f"/api/profiles/{ALICE}/conversations", headers=alice)
    body = {"user_id": ALICE, "channel": "web", "language": "ru"}
    created = await client.post("/api/conversations", json=body, headers=alice)
    assert created.status_code == 201
    conversation = created.json()
    assert (conversation["user_id"], conversation["channel"], conversation["language"]) == (
        ALICE,
        "web",
        "ru",
    )
    assert conversation["messages"] == []
    listed = await client.get(f"/api/profiles/{ALICE}/conversations", headers=alice)
    assert listed.json()[0]["id"] == conversation["id"]
    assert len(listed.json()) == 3


async def test_a_user_cannot_start_a_conversation_for_another_user(
    client: httpx.AsyncClient, alice: dict
) -> None:
    body = {"user_id": NIRAN, "channel": "web"}
    assert_error(await client.post("/api/conversations", json=body, headers=alice), 403)
    listed = await client.get(f"/api/profiles/{NIRAN}/conversations", headers=ADMIN)
    assert len(listed.json()) == 1


async def test_starting_a_conversation_for_an_unknown_user_is_404(
    client: httpx.AsyncClient,
) -> None:
    body = {"user_id": "nobody_here", "channel": "api"}
    assert_error(await client.post("/api/conversations", json=body, headers=ADMIN), 404)


@one_stack
async def test_an_unknown_channel_is_422(client: httpx.AsyncClient, alice: dict) -> None:
    body = {"user_id": ALICE, "channel": "fax"}
    assert_error(await client.post("/api/conversations", json=body, headers=alice), 422)


async def test_a_posted_message_is_visible_on_the_next_read(
    client: httpx.AsyncClient, alice: dict
) -> None:
    summary = await first_conversation(client, ALICE)
    url = f"/api/conversations/{summary['id']}"
    await client.get(url, headers=alice)  # cached now
    message = {"role": "user", "content": "Do you have Gelato 41 in 5g?"}
    response = await client.post(f"{url}/messages", json=message, headers=alice)
    assert response.status_code == 201
    assert response.json()["messages"][-1]["content"] == message["content"]
    read = (await client.get(url, headers=alice)).json()
    assert read["message_count"] == 5
    assert (read["messages"][-1]["role"], read["messages"][-1]["content"]) == (
        "user",
        message["content"],
    )


async def test_a_posted_message_updates_the_profile_and_the_list(
    client: httpx.AsyncClient, alice: dict
) -> None:
    profile = (await client.get(f"/api/profiles/{ALICE}", headers=alice)).json()
    summary = await first_conversation(client, ALICE)
    message = {"role": "assistant", "content": "Yes, 5000 THB."}
    await client.post(f"/api/conversations/{summary['id']}/messages", json=message, headers=alice)
    after = (await client.get(f"/api/profiles/{ALICE}", headers=alice)).json()
    assert after["total_messages"] == profile["total_messages"] + 1
    listed = await client.get(f"/api/profiles/{ALICE}/conversations", headers=alice)
    assert listed.json()[0]["message_count"] == summary["message_count"] + 1


async def test_a_user_cannot_post_to_another_users_conversation(
    client: httpx.AsyncClient, alice: dict
) -> None:
    summary = await first_conversation(client, NIRAN)
    url = f"/api/conversations/{summary['id']}"
    message = {"role": "user", "content": "hello"}
    assert_error(await client.post(f"{url}/messages", json=message, headers=alice), 404)
    read = await client.get(url, headers=ADMIN)
    assert read.json()["message_count"] == summary["message_count"]


async def test_posting_to_an_unknown_conversation_is_404(client: httpx.AsyncClient) -> None:
    message = {"role": "user", "content": "hello"}
    response = await client.post(
        f"/api/conversations/{uuid.uuid4()}/messages", json=message, headers=ADMIN
    )
    assert_error(response, 404, "not_found")


@one_stack
async def test_a_message_with_an_unknown_role_or_no_content_is_422(
    client: httpx.AsyncClient, alice: dict
) -> None:
    summary = await first_conversation(client, ALICE)
    url = f"/api/conversations/{summary['id']}/messages"
    for message in ({"role": "system", "content": "x"}, {"role": "user", "content": ""}):
        assert_error(await client.post(url, json=message, headers=alice), 422)
