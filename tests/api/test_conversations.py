"""/api/conversations: start one, read it with its newest messages (cached), page older ones,
add messages, within the storage limits (409); another user's conversation reads as absent."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from ogcache.api.app import create_app
from ogcache.runtime import Runtime
from tests.api.conftest import (
    ADMIN,
    ALICE,
    NIRAN,
    assert_error,
    client_for,
    namespace_hits,
    one_stack,
)


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


# --- the window, paging, the storage limits ---------------------------------------------


@asynccontextmanager
async def limited_client(seeded: Runtime, **settings: int) -> AsyncIterator[httpx.AsyncClient]:
    """An app over the same stack and data with other storage settings."""
    changed = seeded.settings.model_copy(update=settings)
    async with Runtime.open(changed) as other, client_for(create_app(runtime=other)) as http:
        yield http


async def post_messages(
    client: httpx.AsyncClient, conversation_id: str, headers: dict, count: int, start: int = 1
) -> None:
    for n in range(start, start + count):
        message = {"role": "user", "content": f"extra {n}"}
        response = await client.post(
            f"/api/conversations/{conversation_id}/messages", json=message, headers=headers
        )
        assert response.status_code == 201, response.text


async def test_each_message_carries_its_seq(client: httpx.AsyncClient, alice: dict) -> None:
    summary = await first_conversation(client, ALICE)
    conversation = (await client.get(f"/api/conversations/{summary['id']}", headers=alice)).json()
    assert [m["seq"] for m in conversation["messages"]] == [1, 2, 3, 4]


async def test_a_full_conversation_refuses_a_message_with_409_and_stores_nothing(
    seeded: Runtime, alice: dict
) -> None:
    async with limited_client(seeded, max_messages_per_conversation=5) as client:
        summary = await first_conversation(client, ALICE)  # 4 messages
        url = f"/api/conversations/{summary['id']}"
        await post_messages(client, summary["id"], alice, 1)
        before = (await client.get(url, headers=alice)).json()
        profile = (await client.get(f"/api/profiles/{ALICE}", headers=alice)).json()

        response = await client.post(
            f"{url}/messages", json={"role": "user", "content": "one too many"}, headers=alice
        )

        error = assert_error(response, 409, "limit_exceeded")
        assert "OGCACHE_MAX_MESSAGES_PER_CONVERSATION" in error["message"]
        assert (await client.get(url, headers=alice)).json() == before
        assert before["message_count"] == 5
        page = (await client.get(f"{url}/messages", headers=alice)).json()
        assert [m["seq"] for m in page] == [1, 2, 3, 4, 5]
        after = (await client.get(f"/api/profiles/{ALICE}", headers=alice)).json()
        assert after["total_messages"] == profile["total_messages"]


async def test_starting_a_conversation_past_the_limit_is_409(seeded: Runtime, alice: dict) -> None:
    async with limited_client(seeded, max_conversations_per_user=2) as client:
        listed = (await client.get(f"/api/profiles/{ALICE}/conversations", headers=alice)).json()
        assert len(listed) == 2
        body = {"user_id": ALICE, "channel": "web"}

        response = await client.post("/api/conversations", json=body, headers=alice)

        error = assert_error(response, 409, "limit_exceeded")
        assert "OGCACHE_MAX_CONVERSATIONS_PER_USER" in error["message"]
        again = (await client.get(f"/api/profiles/{ALICE}/conversations", headers=alice)).json()
        assert again == listed


async def test_a_conversation_answers_its_newest_window_and_the_total(
    seeded: Runtime, alice: dict
) -> None:
    async with limited_client(seeded, conversation_window=3) as client:
        summary = await first_conversation(client, ALICE)
        await post_messages(client, summary["id"], alice, 4, start=5)  # seq 5..8
        url = f"/api/conversations/{summary['id']}"

        posted = await client.post(
            f"{url}/messages", json={"role": "assistant", "content": "ninth"}, headers=alice
        )
        read = await client.get(url, headers=alice)

        for conversation in (posted.json(), read.json()):
            assert conversation["message_count"] == 9
            assert [(m["seq"], m["content"]) for m in conversation["messages"]] == [
                (7, "extra 7"),
                (8, "extra 8"),
                (9, "ninth"),
            ]


async def test_paging_covers_every_message_exactly_once(
    client: httpx.AsyncClient, alice: dict
) -> None:
    summary = await first_conversation(client, ALICE)
    await post_messages(client, summary["id"], alice, 9, start=5)  # 13 in all
    url = f"/api/conversations/{summary['id']}/messages"

    pages = []
    params: dict[str, int] = {"limit": 4}
    while True:
        response = await client.get(url, params=params, headers=alice)
        assert response.status_code == 200, response.text
        page = response.json()
        if not page:
            break
        assert [m["seq"] for m in page] == sorted(m["seq"] for m in page)
        pages.append(page)
        params = {"limit": 4, "before": page[0]["seq"]}

    assert [len(page) for page in pages] == [4, 4, 4, 1]
    seqs = [m["seq"] for page in reversed(pages) for m in page]
    assert seqs == list(range(1, 14))
    default = (await client.get(url, headers=alice)).json()
    assert [m["seq"] for m in default] == seqs  # limit 50 by default: all 13


async def test_a_user_cannot_page_another_users_conversation(
    client: httpx.AsyncClient, alice: dict
) -> None:
    summary = await first_conversation(client, NIRAN)
    url = f"/api/conversations/{summary['id']}/messages"
    assert_error(await client.get(url, headers=alice), 404, "not_found")
    assert_error(await client.get(url, params={"before": 2}, headers=alice), 404, "not_found")
    assert (await client.get(url, headers=ADMIN)).status_code == 200


async def test_paging_an_unknown_conversation_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/conversations/{uuid.uuid4()}/messages", headers=ADMIN)
    assert_error(response, 404, "not_found")


@one_stack
async def test_paging_rejects_bad_parameters_with_422(
    client: httpx.AsyncClient, alice: dict
) -> None:
    summary = await first_conversation(client, ALICE)
    url = f"/api/conversations/{summary['id']}/messages"
    for params in (
        {"limit": 0},
        {"limit": 101},
        {"limit": "x"},
        {"before": 0},
        {"before": "a"},
        {"before": 2**31},
        {"before": 10**30},
    ):
        assert_error(await client.get(url, params=params, headers=alice), 422, "validation_error")
