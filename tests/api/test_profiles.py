"""/api/profiles: read (cached), get-or-create, PATCH merge, delete, a user's conversations;
each user reaches only their own profile, the admin reaches every one."""

from __future__ import annotations

import httpx
import pytest

from ogcache.runtime import Runtime
from tests.api.conftest import (
    ADMIN,
    ALICE,
    DIMA,
    DIMA_TELEGRAM_ID,
    NIRAN,
    assert_error,
    bearer,
    namespace_hits,
)

# --- reading ---------------------------------------------------------------------------------


async def test_a_user_reads_their_own_profile(client: httpx.AsyncClient, alice: dict) -> None:
    response = await client.get(f"/api/profiles/{ALICE}", headers=alice)
    assert response.status_code == 200
    profile = response.json()
    assert profile["user_id"] == ALICE
    assert profile["preferences"]["experienceLevel"] == "intermediate"


async def test_second_read_of_a_profile_is_a_cache_hit(
    client: httpx.AsyncClient, alice: dict
) -> None:
    first = await client.get(f"/api/profiles/{ALICE}", headers=alice)
    before = await namespace_hits(client, "user:profile")
    second = await client.get(f"/api/profiles/{ALICE}", headers=alice)
    assert second.json() == first.json()
    assert await namespace_hits(client, "user:profile") == before + 1


async def test_the_admin_reads_any_profile(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/profiles/{NIRAN}", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["user_id"] == NIRAN


async def test_a_user_cannot_read_another_users_profile(
    client: httpx.AsyncClient, alice: dict
) -> None:
    assert_error(await client.get(f"/api/profiles/{NIRAN}", headers=alice), 403, "forbidden")


async def test_an_unknown_profile_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/profiles/nobody_here", headers=ADMIN), 404, "not_found")


async def test_reading_a_profile_needs_a_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"/api/profiles/{ALICE}"), 401, "unauthorized")


async def test_a_user_reads_their_profile_by_telegram_id(
    client: httpx.AsyncClient, seeded: Runtime
) -> None:
    response = await client.get(
        f"/api/profiles/by-telegram/{DIMA_TELEGRAM_ID}", headers=await bearer(seeded, DIMA)
    )
    assert response.status_code == 200
    assert response.json()["user_id"] == DIMA


async def test_another_users_telegram_id_reads_as_absent(
    client: httpx.AsyncClient, alice: dict
) -> None:
    response = await client.get(f"/api/profiles/by-telegram/{DIMA_TELEGRAM_ID}", headers=alice)
    error = assert_error(response, 404, "not_found")
    assert DIMA not in error["message"]


async def test_the_admin_reads_a_profile_by_telegram_id(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/profiles/by-telegram/{DIMA_TELEGRAM_ID}", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["telegram_user_id"] == DIMA_TELEGRAM_ID


async def test_an_unknown_telegram_id_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/profiles/by-telegram/999", headers=ADMIN), 404)


# --- get-or-create ---------------------------------------------------------------------------


async def test_the_admin_creates_a_profile_that_reads_back(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/profiles", json={"user_id": "web_new"}, headers=ADMIN)
    assert created.status_code == 200
    assert created.json()["user_id"] == "web_new"
    read = await client.get("/api/profiles/web_new", headers=ADMIN)
    assert read.json() == created.json()


async def test_get_or_create_answers_the_existing_profile(client: httpx.AsyncClient) -> None:
    existing = await client.get(f"/api/profiles/{ALICE}", headers=ADMIN)
    again = await client.post("/api/profiles", json={"user_id": ALICE}, headers=ADMIN)
    assert again.status_code == 200
    assert again.json()["id"] == existing.json()["id"]


async def test_the_admin_creates_a_profile_from_a_telegram_id(client: httpx.AsyncClient) -> None:
    body = {"telegram_user_id": 4242, "telegram_username": "new_on_tg"}
    created = await client.post("/api/profiles", json=body, headers=ADMIN)
    assert created.status_code == 200
    assert created.json()["user_id"] == "tg_4242"
    by_telegram = await client.get("/api/profiles/by-telegram/4242", headers=ADMIN)
    assert by_telegram.json()["telegram_username"] == "new_on_tg"


async def test_a_user_cannot_claim_a_telegram_account(
    client: httpx.AsyncClient, alice: dict
) -> None:
    victim = 5151
    body = {"user_id": ALICE, "telegram_user_id": victim}
    error = assert_error(await client.post("/api/profiles", json=body, headers=alice), 403)
    assert "telegram_user_id" in error["message"]
    assert_error(await client.get(f"/api/profiles/by-telegram/{victim}", headers=ADMIN), 404)
    # The bot then creates the victim's own profile, and the victim's chats stay the victim's.
    created = await client.post("/api/profiles", json={"telegram_user_id": victim}, headers=ADMIN)
    assert created.status_code == 200
    assert created.json()["user_id"] == f"tg_{victim}"
    chat = {"user_id": f"tg_{victim}", "channel": "telegram"}
    conversation = await client.post("/api/conversations", json=chat, headers=ADMIN)
    conversation_id = conversation.json()["id"]
    assert_error(await client.get(f"/api/conversations/{conversation_id}", headers=alice), 404)


async def test_a_user_cannot_tell_which_telegram_ids_are_linked(
    client: httpx.AsyncClient, alice: dict
) -> None:
    answers = []
    for telegram_user_id in (DIMA_TELEGRAM_ID, 777_777):  # linked to Dima; linked to nobody
        body = {"user_id": ALICE, "telegram_user_id": telegram_user_id}
        response = await client.post("/api/profiles", json=body, headers=alice)
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 403


async def test_a_user_cannot_set_a_telegram_username(
    client: httpx.AsyncClient, alice: dict
) -> None:
    body = {"user_id": ALICE, "telegram_username": "durov"}
    assert_error(await client.post("/api/profiles", json=body, headers=alice), 403, "forbidden")
    patch = {"telegram_username": "durov"}
    response = await client.patch(f"/api/profiles/{ALICE}", json=patch, headers=alice)
    assert "telegram_username" in assert_error(response, 403, "forbidden")["message"]
    read = await client.get(f"/api/profiles/{ALICE}", headers=alice)
    assert read.json()["telegram_username"] is None


async def test_the_admin_links_a_telegram_account_to_a_profile(
    client: httpx.AsyncClient, alice: dict
) -> None:
    body = {"user_id": ALICE, "telegram_user_id": 5151, "telegram_username": "alice_tg"}
    linked = await client.post("/api/profiles", json=body, headers=ADMIN)
    assert linked.status_code == 200
    assert linked.json()["telegram_user_id"] == 5151
    read = await client.get("/api/profiles/by-telegram/5151", headers=alice)
    assert read.json()["user_id"] == ALICE


async def test_a_user_gets_their_own_profile_through_post(
    client: httpx.AsyncClient, alice: dict
) -> None:
    response = await client.post("/api/profiles", json={"user_id": ALICE}, headers=alice)
    assert response.status_code == 200
    assert response.json()["user_id"] == ALICE


async def test_a_user_cannot_get_or_create_another_users_profile(
    client: httpx.AsyncClient, alice: dict
) -> None:
    response = await client.post("/api/profiles", json={"user_id": "web_someone"}, headers=alice)
    assert_error(response, 403, "forbidden")
    assert_error(await client.get("/api/profiles/web_someone", headers=ADMIN), 404)


async def test_a_user_cannot_get_or_create_by_telegram_id_alone(
    client: httpx.AsyncClient, alice: dict
) -> None:
    response = await client.post("/api/profiles", json={"telegram_user_id": 6262}, headers=alice)
    assert_error(response, 403, "forbidden")


async def test_get_or_create_without_any_id_is_400(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/profiles", json={}, headers=ADMIN), 400, "invalid_input")


async def test_linking_a_telegram_id_held_by_another_user_is_409(
    client: httpx.AsyncClient,
) -> None:
    body = {"user_id": ALICE, "telegram_user_id": DIMA_TELEGRAM_ID}
    assert_error(await client.post("/api/profiles", json=body, headers=ADMIN), 409, "conflict")


# --- PATCH -----------------------------------------------------------------------------------


async def test_patch_merges_preferences_and_the_next_read_shows_it(
    client: httpx.AsyncClient, alice: dict
) -> None:
    before = (await client.get(f"/api/profiles/{ALICE}", headers=alice)).json()["preferences"]
    patch = {"preferences": {"budget": "mid", "language": None}}
    response = await client.patch(f"/api/profiles/{ALICE}", json=patch, headers=alice)
    assert response.status_code == 200
    expected = {key: value for key, value in before.items() if key != "language"}
    expected["budget"] = "mid"
    assert response.json()["preferences"] == expected
    read = await client.get(f"/api/profiles/{ALICE}", headers=alice)
    assert read.json()["preferences"] == expected


async def test_the_admin_sets_a_telegram_username(client: httpx.AsyncClient, alice: dict) -> None:
    patch = {"telegram_username": "alice_again"}
    response = await client.patch(f"/api/profiles/{ALICE}", json=patch, headers=ADMIN)
    assert response.status_code == 200
    read = await client.get(f"/api/profiles/{ALICE}", headers=alice)
    assert read.json()["telegram_username"] == "alice_again"


async def test_a_user_cannot_patch_another_users_profile(
    client: httpx.AsyncClient, alice: dict
) -> None:
    patch = {"preferences": {"hacked": True}}
    assert_error(await client.patch(f"/api/profiles/{NIRAN}", json=patch, headers=alice), 403)
    read = await client.get(f"/api/profiles/{NIRAN}", headers=ADMIN)
    assert "hacked" not in read.json()["preferences"]


async def test_a_user_cannot_patch_admin_only_fields(
    client: httpx.AsyncClient, alice: dict
) -> None:
    for field, value in (
        ("loyalty_points", 1_000_000),
        ("is_blocked", False),
        ("blocked_reason", "none"),
        ("notes", "VIP"),
    ):
        response = await client.patch(f"/api/profiles/{ALICE}", json={field: value}, headers=alice)
        error = assert_error(response, 403, "forbidden")
        assert field in error["message"]
    read = await client.get(f"/api/profiles/{ALICE}", headers=alice)
    assert read.json()["loyalty_points"] == 240
    assert read.json()["notes"] is None


async def test_the_admin_patches_admin_only_fields(client: httpx.AsyncClient, alice: dict) -> None:
    await client.get(f"/api/profiles/{ALICE}", headers=alice)
    patch = {"loyalty_points": 500, "notes": "regular"}
    response = await client.patch(f"/api/profiles/{ALICE}", json=patch, headers=ADMIN)
    assert response.status_code == 200
    read = (await client.get(f"/api/profiles/{ALICE}", headers=alice)).json()
    assert (read["loyalty_points"], read["notes"]) == (500, "regular")


async def test_a_blocked_users_token_fails_on_the_next_request(
    client: httpx.AsyncClient, alice: dict
) -> None:
    assert (await client.get("/api/auth/me", headers=alice)).status_code == 200
    patch = {"is_blocked": True, "blocked_reason": "abuse"}
    assert (
        await client.patch(f"/api/profiles/{ALICE}", json=patch, headers=ADMIN)
    ).status_code == 200
    assert_error(await client.get("/api/auth/me", headers=alice), 401, "unauthorized")


def nested(depth: int) -> object:
    """A JSON value ``depth`` levels deep: lists in lists around a number."""
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [33, 240, 300])
async def test_deeply_nested_preferences_are_refused_and_the_profile_stays_readable(
    client: httpx.AsyncClient, alice: dict, depth: int
) -> None:
    patch = {"preferences": {"a": nested(depth - 1)}}  # the preferences object is one level
    response = await client.patch(f"/api/profiles/{ALICE}", json=patch, headers=alice)
    assert "32 levels" in assert_error(response, 422, "validation_error")["message"]
    for _ in range(2):  # a miss, then a hit
        read = await client.get(f"/api/profiles/{ALICE}", headers=alice)
        assert read.status_code == 200
        assert "a" not in read.json()["preferences"]


@pytest.mark.parametrize("number", ["1" + "0" * 30, "-" + "9" * 25, str(2**63)])
async def test_integers_beyond_64_bits_are_refused_everywhere_json_is_stored(
    client: httpx.AsyncClient, alice: dict, number: str
) -> None:
    """The JSON encoder cannot write them: stored, they made the write answer 500."""
    headers = {**alice, "Content-Type": "application/json"}
    for method, path, body in (
        ("PATCH", f"/api/profiles/{ALICE}", '{"preferences": {"big": %s}}'),
        ("PUT", "/api/sessions/big_number_01", '{"big": %s}'),
        ("PATCH", "/api/sessions/big_number_01", '{"field": "big", "value": %s}'),
    ):
        response = await client.request(method, path, content=body % number, headers=headers)
        assert "64 bits" in assert_error(response, 422, "validation_error")["message"]
    read = await client.get(f"/api/profiles/{ALICE}", headers=alice)
    assert "big" not in read.json()["preferences"]
    edge = {"preferences": {"big": 2**63 - 1, "small": -(2**63)}}
    stored = await client.patch(f"/api/profiles/{ALICE}", json=edge, headers=alice)
    assert stored.json()["preferences"]["big"] == 2**63 - 1


async def test_preferences_nested_to_the_limit_are_stored_and_read_back(
    client: httpx.AsyncClient, alice: dict
) -> None:
    patch = {"preferences": {"a": nested(31)}}
    response = await client.patch(f"/api/profiles/{ALICE}", json=patch, headers=alice)
    assert response.status_code == 200
    for _ in range(2):
        read = await client.get(f"/api/profiles/{ALICE}", headers=alice)
        assert read.json()["preferences"]["a"] == nested(31)


async def test_stored_preferences_are_bounded_across_patches(
    client: httpx.AsyncClient, alice: dict
) -> None:
    before = (await client.get(f"/api/profiles/{ALICE}", headers=alice)).json()["preferences"]
    patch = {"preferences": {f"k{n}": n for n in range(100 - len(before))}}
    assert (await client.patch(f"/api/profiles/{ALICE}", json=patch, headers=alice)).is_success
    one_more = {"preferences": {"one_more": 1}}
    response = await client.patch(f"/api/profiles/{ALICE}", json=one_more, headers=alice)
    assert (
        "OGCACHE_MAX_PREFERENCES_KEYS" in assert_error(response, 409, "limit_exceeded")["message"]
    )
    # Removing keys is always allowed, and makes room.
    freed = {"preferences": {"k0": None, "one_more": 1}}
    assert (await client.patch(f"/api/profiles/{ALICE}", json=freed, headers=alice)).is_success
    read = (await client.get(f"/api/profiles/{ALICE}", headers=alice)).json()["preferences"]
    assert len(read) == 100
    assert "k0" not in read


async def test_stored_preferences_are_bounded_in_bytes(
    client: httpx.AsyncClient, alice: dict
) -> None:
    for n in range(3):  # 3 x 6 KB: the third takes the profile past 16 KiB
        patch = {"preferences": {f"big{n}": "x" * 6000}}
        response = await client.patch(f"/api/profiles/{ALICE}", json=patch, headers=alice)
    assert (
        "OGCACHE_MAX_PREFERENCES_BYTES" in assert_error(response, 409, "limit_exceeded")["message"]
    )
    read = (await client.get(f"/api/profiles/{ALICE}", headers=alice)).json()["preferences"]
    assert "big1" in read
    assert "big2" not in read


async def test_null_for_a_field_that_cannot_be_null_is_refused(
    client: httpx.AsyncClient,
) -> None:
    for field in ("loyalty_points", "is_blocked"):
        response = await client.patch(f"/api/profiles/{ALICE}", json={field: None}, headers=ADMIN)
        assert field in assert_error(response, 400, "invalid_input")["message"]


async def test_patching_an_unknown_profile_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch("/api/profiles/nobody_here", json={}, headers=ADMIN)
    assert_error(response, 404, "not_found")


# --- DELETE ----------------------------------------------------------------------------------


async def test_a_user_cannot_delete_another_users_profile(
    client: httpx.AsyncClient, alice: dict
) -> None:
    assert_error(await client.delete(f"/api/profiles/{NIRAN}", headers=alice), 403)
    assert (await client.get(f"/api/profiles/{NIRAN}", headers=ADMIN)).status_code == 200


async def test_a_user_deletes_their_profile_and_their_token_stops_working(
    client: httpx.AsyncClient, alice: dict
) -> None:
    await client.get(f"/api/profiles/{ALICE}", headers=alice)
    response = await client.delete(f"/api/profiles/{ALICE}", headers=alice)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await client.get(f"/api/profiles/{ALICE}", headers=alice), 401)
    assert_error(await client.get(f"/api/profiles/{ALICE}", headers=ADMIN), 404)


async def test_the_admin_deletes_a_profile_with_its_conversations(
    client: httpx.AsyncClient,
) -> None:
    listed = await client.get(f"/api/profiles/{ALICE}/conversations", headers=ADMIN)
    conversation_id = listed.json()[0]["id"]
    await client.get(f"/api/conversations/{conversation_id}", headers=ADMIN)
    assert (await client.delete(f"/api/profiles/{ALICE}", headers=ADMIN)).status_code == 204
    assert_error(await client.get(f"/api/conversations/{conversation_id}", headers=ADMIN), 404)


async def test_deleting_an_unknown_profile_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete("/api/profiles/nobody_here", headers=ADMIN), 404)


# --- a user's conversations ------------------------------------------------------------------


async def test_a_user_lists_their_conversations_newest_first(
    client: httpx.AsyncClient, alice: dict
) -> None:
    response = await client.get(f"/api/profiles/{ALICE}/conversations", headers=alice)
    assert response.status_code == 200
    listed = response.json()
    assert len(listed) == 2
    assert {item["user_id"] for item in listed} == {ALICE}
    assert "messages" not in listed[0]
    started = [item["started_at"] for item in listed]
    assert started == sorted(started, reverse=True)


async def test_second_read_of_a_users_conversation_list_is_a_cache_hit(
    client: httpx.AsyncClient, alice: dict
) -> None:
    await client.get(f"/api/profiles/{ALICE}/conversations", headers=alice)
    before = await namespace_hits(client, "conversation:recent")
    await client.get(f"/api/profiles/{ALICE}/conversations", headers=alice)
    assert await namespace_hits(client, "conversation:recent") == before + 1


async def test_a_user_cannot_list_another_users_conversations(
    client: httpx.AsyncClient, alice: dict
) -> None:
    assert_error(await client.get(f"/api/profiles/{NIRAN}/conversations", headers=alice), 403)


@pytest.mark.parametrize("telegram_user_id", [True, "100", 1.5])
async def test_a_telegram_id_must_be_a_json_integer(
    client: httpx.AsyncClient, telegram_user_id: object
) -> None:
    response = await client.post(
        "/api/profiles", json={"telegram_user_id": telegram_user_id}, headers=ADMIN
    )
    assert response.status_code == 422
