"""/api/cache: statistics for anyone; warmup, warmup-menu, clear and clear-prefix for the
admin, accepting the original's curl bodies as they are."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from ogcache.api.app import create_app
from ogcache.runtime import Runtime
from tests.api.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    ALICE,
    assert_error,
    client_for,
    namespace_hits,
    one_stack,
)
from tests.services.conftest import make_settings
from tests.support.servers import start_redis

JSON = {"Content-Type": "application/json"}

# The request bodies of the curl examples in the seed, byte for byte.
SEED_CURL_BODIES = (
    '{"action": "warmup"}',
    '{"action": "clear"}',
    '{"action": "clear-prefix", "prefix": "user:profile:"}',
    '{"action": "clear-prefix", "prefix": "conversation:"}',
)


async def total_keys(client: httpx.AsyncClient) -> int:
    return (await client.get("/api/cache", headers=ADMIN)).json()["stats"]["totalKeys"]


async def action(client: httpx.AsyncClient, **body: str) -> httpx.Response:
    return await client.post("/api/cache", json=body, headers=ADMIN)


async def populate(client: httpx.AsyncClient, alice: dict) -> None:
    """Cache a profile, a conversation list with its conversations, and the menu."""
    listed = await client.get(f"/api/profiles/{ALICE}/conversations", headers=alice)
    for summary in listed.json():
        await client.get(f"/api/conversations/{summary['id']}", headers=alice)
    await client.get(f"/api/profiles/{ALICE}", headers=alice)
    await client.get("/api/menu")


# --- GET -------------------------------------------------------------------------------------


async def test_stats_have_the_originals_shape_and_need_no_token(
    client: httpx.AsyncClient, seeded: Runtime
) -> None:
    response = await client.get("/api/cache")
    assert response.status_code == 200
    body = response.json()
    assert body["available"] is True
    assert body["backend"] == seeded.cache.backend.name
    assert body["stats"]["available"] is True
    assert body["stats"]["totalKeys"] == 0
    assert isinstance(body["stats"]["namespaces"], dict)


async def test_stats_count_the_keys_and_report_each_namespace(client: httpx.AsyncClient) -> None:
    await client.get("/api/menu")
    await client.get("/api/menu")
    stats = (await client.get("/api/cache")).json()["stats"]
    assert stats["totalKeys"] == 1
    menu = stats["namespaces"]["menu"]
    assert (menu["hits"], menu["misses"], menu["loads"], menu["hitRate"]) == (1, 1, 1, 0.5)
    assert set(menu["latencyMs"]) == {"mean", "p50", "p99"}


# --- authorization ---------------------------------------------------------------------------


async def test_actions_without_a_token_are_401(client: httpx.AsyncClient) -> None:
    await client.get("/api/menu")
    response = await client.post("/api/cache", json={"action": "clear"})
    assert_error(response, 401, "unauthorized")
    assert await total_keys(client) == 1


async def test_actions_with_a_user_token_are_403(client: httpx.AsyncClient, alice: dict) -> None:
    await client.get("/api/menu")
    response = await client.post("/api/cache", json={"action": "clear"}, headers=alice)
    assert_error(response, 403, "forbidden")
    assert await total_keys(client) == 1


async def test_actions_with_a_wrong_admin_token_are_403(client: httpx.AsyncClient) -> None:
    for token in ("x" * 48, ADMIN["Authorization"].removeprefix("Bearer ")[:-1]):
        response = await client.post(
            "/api/cache", json={"action": "warmup"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert_error(response, 403, "forbidden")
    assert await total_keys(client) == 0


async def test_actions_without_a_configured_admin_token_are_403_naming_the_setting(
    no_admin_client: httpx.AsyncClient, alice: dict
) -> None:
    for headers in (ADMIN, alice):
        response = await no_admin_client.post(
            "/api/cache", json={"action": "clear"}, headers=headers
        )
        error = assert_error(response, 403, "admin_disabled")
        assert "OGCACHE_ADMIN_TOKEN" in error["message"]


# --- warmup ----------------------------------------------------------------------------------


async def test_warmup_answers_the_keys_it_warmed(client: httpx.AsyncClient) -> None:
    response = await action(client, action="warmup")
    assert response.status_code == 200
    body = response.json()
    assert body["action"] == "warmup"
    assert body["keysWarmed"] == len(body["warmed"]) == await total_keys(client)
    assert {"menu:items", "menu:items:concentrates", "menu:context:text"} <= set(body["warmed"])
    assert any(key.startswith("analytics:today:") for key in body["warmed"])


async def test_warming_is_not_reading_the_hit_rate_stays_the_readers(
    client: httpx.AsyncClient,
) -> None:
    """Warm-up's check of what it cached counts no hit: before any read there is no hit rate
    (it read 1.0 at start-up, before a single request)."""
    await action(client, action="warmup")
    stats = (await client.get("/api/cache")).json()["stats"]["namespaces"]
    assert {"menu", "menu:context"} <= set(stats)  # what warm-up touched has its figures...
    for name, figures in stats.items():  # ...and no lookup counted
        assert (figures["hits"], figures["misses"], figures["hitRate"]) == (0, 0, None), name
    await client.get("/api/menu")
    menu = (await client.get("/api/cache")).json()["stats"]["namespaces"]["menu"]
    assert (menu["hits"], menu["hitRate"]) == (1, 1.0)


async def test_after_warmup_the_first_menu_read_is_a_hit(client: httpx.AsyncClient) -> None:
    await action(client, action="warmup")
    before = await namespace_hits(client, "menu")
    await client.get("/api/menu")
    assert await namespace_hits(client, "menu") == before + 1


async def test_warmup_menu_warms_only_the_menu(client: httpx.AsyncClient) -> None:
    response = await action(client, action="warmup-menu")
    assert response.status_code == 200
    body = response.json()
    assert body["action"] == "warmup-menu"
    assert body["keysWarmed"] == 4
    assert all(key.startswith("menu:") for key in body["warmed"])
    assert await total_keys(client) == 4


# --- clear -----------------------------------------------------------------------------------


async def test_clear_answers_the_keys_cleared_and_empties_the_cache(
    client: httpx.AsyncClient, alice: dict
) -> None:
    await populate(client, alice)
    cached = await total_keys(client)
    assert cached > 0
    response = await action(client, action="clear")
    assert response.status_code == 200
    assert response.json() == {"action": "clear", "keysCleared": cached}
    assert await total_keys(client) == 0


async def test_after_clear_the_next_read_is_a_miss(client: httpx.AsyncClient) -> None:
    await client.get("/api/menu")
    await action(client, action="clear")
    before = await namespace_hits(client, "menu")
    assert (await client.get("/api/menu")).status_code == 200
    assert await namespace_hits(client, "menu") == before


async def test_clear_prefix_removes_only_profile_keys(
    client: httpx.AsyncClient, alice: dict
) -> None:
    await populate(client, alice)
    cached = await total_keys(client)
    response = await action(client, action="clear-prefix", prefix="user:profile:")
    assert response.status_code == 200
    assert response.json() == {
        "action": "clear-prefix",
        "keysCleared": 1,
        "prefix": "user:profile:",
    }
    assert await total_keys(client) == cached - 1
    menu_hits, profile_hits = (
        await namespace_hits(client, "menu"),
        await namespace_hits(client, "user:profile"),
    )
    await client.get("/api/menu")
    await client.get(f"/api/profiles/{ALICE}", headers=alice)
    assert await namespace_hits(client, "menu") == menu_hits + 1
    assert await namespace_hits(client, "user:profile") == profile_hits


async def test_clear_prefix_conversation_removes_conversations_and_lists(
    client: httpx.AsyncClient, alice: dict
) -> None:
    await populate(client, alice)
    cached = await total_keys(client)
    response = await action(client, action="clear-prefix", prefix="conversation:")
    assert response.json()["keysCleared"] == 3  # two conversations and alice's list
    assert await total_keys(client) == cached - 3


async def test_clear_prefix_accepts_the_full_key_prefix(
    client: httpx.AsyncClient, seeded: Runtime, alice: dict
) -> None:
    await populate(client, alice)
    full = f"{seeded.cache.prefix}:user:profile:"
    response = await action(client, action="clear-prefix", prefix=full)
    assert response.json() == {
        "action": "clear-prefix",
        "keysCleared": 1,
        "prefix": "user:profile:",
    }


@pytest.mark.parametrize("glob", ["user:*", "*", "user:profile:*", "[a-z]*", "conversation:?"])
async def test_clear_prefix_treats_glob_characters_literally(
    client: httpx.AsyncClient, alice: dict, glob: str
) -> None:
    await populate(client, alice)
    cached = await total_keys(client)
    response = await action(client, action="clear-prefix", prefix=glob)
    assert response.status_code == 200
    assert response.json()["keysCleared"] == 0
    assert await total_keys(client) == cached


@pytest.mark.parametrize("body", [{"prefix": ""}, {"prefix": "   "}, {}])
async def test_clear_prefix_without_a_prefix_is_400(
    client: httpx.AsyncClient, alice: dict, body: dict
) -> None:
    await populate(client, alice)
    cached = await total_keys(client)
    response = await client.post(
        "/api/cache", json={"action": "clear-prefix", **body}, headers=ADMIN
    )
    assert "prefix" in assert_error(response, 400, "invalid_input")["message"]
    assert await total_keys(client) == cached


async def test_clear_prefix_with_whitespace_inside_is_400(client: httpx.AsyncClient) -> None:
    response = await action(client, action="clear-prefix", prefix="user: profile")
    assert_error(response, 400, "invalid_input")


@one_stack
async def test_an_unknown_action_is_400_listing_the_valid_ones(client: httpx.AsyncClient) -> None:
    response = await action(client, action="flushall")
    message = assert_error(response, 400, "invalid_input")["message"]
    assert "flushall" in message
    for valid in ("warmup", "warmup-menu", "clear", "clear-prefix"):
        assert valid in message


@one_stack
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"action": "clear", "force": True},
        {"action": 1},
        {"action": "clear-prefix", "prefix": 5},
        {"action": ["clear"]},
        ["clear"],
    ],
)
async def test_a_malformed_action_body_is_400(client: httpx.AsyncClient, body: object) -> None:
    response = await client.post("/api/cache", json=body, headers=ADMIN)
    assert_error(response, 400, "invalid_input")


@pytest.mark.parametrize(
    "body",
    [
        {"action": "clear", "prefix": "menu:"},
        {"action": "clear", "prefix": ""},
        {"action": "warmup", "prefix": "menu:"},
        {"action": "clear", "force": True},
        {"action": "clear-prefix", "prefix": "menu:", "all": True},
    ],
    ids=repr,
)
async def test_an_action_with_a_field_it_does_not_take_is_400_and_does_nothing(
    client: httpx.AsyncClient, alice: dict, body: dict
) -> None:
    await populate(client, alice)
    cached = await total_keys(client)
    response = await client.post("/api/cache", json=body, headers=ADMIN)
    error = assert_error(response, 400, "invalid_input")
    assert "not permitted" in error["message"]
    assert "only clear-prefix takes another field" in error["message"]
    assert await total_keys(client) == cached


@one_stack
async def test_a_prefix_longer_than_512_characters_is_400(client: httpx.AsyncClient) -> None:
    response = await action(client, action="clear-prefix", prefix="a" * 513)
    assert_error(response, 400, "invalid_input")


@pytest.mark.parametrize("body", SEED_CURL_BODIES)
async def test_the_seeds_curl_bodies_are_accepted_verbatim(
    client: httpx.AsyncClient, alice: dict, body: str
) -> None:
    await populate(client, alice)
    response = await client.post("/api/cache", content=body, headers={**JSON, **ADMIN})
    assert response.status_code == 200, response.text
    assert response.json()["action"] == body.split('"')[3]


async def test_the_seeds_curl_bodies_without_a_token_are_401(client: httpx.AsyncClient) -> None:
    for body in SEED_CURL_BODIES:
        response = await client.post("/api/cache", content=body, headers=JSON)
        assert_error(response, 401, "unauthorized")


async def test_stats_and_metrics_show_the_in_process_tier(
    client: httpx.AsyncClient, seeded: Runtime
) -> None:
    if seeded.settings.redis_url is None:
        pytest.skip("the in-process tier needs Redis's invalidation feed")
    for _ in range(500):  # until the feed is live and the menu is served from the tier
        await client.get("/api/menu")
        stats = (await client.get("/api/cache")).json()["stats"]
        if stats["namespaces"]["menu"]["localHits"]:
            break
        await asyncio.sleep(0.01)
    assert stats["namespaces"]["menu"]["localHits"] >= 1
    assert stats["local"]["live"] is True
    assert stats["local"]["entries"] >= 1
    metrics = (await client.get("/metrics")).text
    assert "ogcache_cache_local_live 1.0" in metrics
    assert 'ogcache_cache_local_hits_total{namespace="menu"}' in metrics


# --- cost of the statistics ------------------------------------------------------------------


async def scans(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


async def test_anonymous_stats_cost_redis_one_scan_per_period_however_many_ask(
    postgres_database: str, tmp_path: Path
) -> None:
    """The issue's lever: 100 anonymous calls, 20 at a time, on a Redis with many keys. On a
    private redis-server, so the SCAN count is ours alone."""
    server = start_redis(tmp_path)
    redis = aioredis.from_url(server.url)
    settings = make_settings(
        postgres_database, server.url, admin_token=ADMIN_TOKEN, stats_max_age=3600
    )
    try:
        async with (
            Runtime.open(settings) as runtime,
            client_for(create_app(runtime=runtime)) as http,
        ):
            await redis.eval(  # 20,000 keys of ours, so one count takes many SCAN pages
                "for i = 1, 20000 do redis.call('SET', ARGV[1] .. i, 'x') end",
                0,
                f"{runtime.cache.prefix}:filler:",
            )
            before = await scans(redis)
            fresh = (await http.get("/api/cache", headers=ADMIN)).json()["stats"]
            one_count = await scans(redis) - before
            assert fresh["totalKeys"] == 20_000
            assert one_count >= 5  # a full count is many pages: what the lever would repeat

            before = await scans(redis)
            answers: list[httpx.Response] = []
            for _ in range(5):
                answers += await asyncio.gather(*(http.get("/api/cache") for _ in range(20)))
            anonymous = await scans(redis) - before

            assert all(r.status_code == 200 for r in answers)
            assert {r.json()["stats"]["totalKeys"] for r in answers} == {20_000}
            assert anonymous <= one_count  # one shared measurement for all 100 calls

            # The admin token still measures afresh, and a clear is seen at once by everyone.
            before = await scans(redis)
            await http.get("/api/cache", headers=ADMIN)
            assert await scans(redis) - before >= one_count
            await http.post("/api/cache", json={"action": "clear"}, headers=ADMIN)
            assert (await http.get("/api/cache")).json()["stats"]["totalKeys"] == 0
    finally:
        await redis.aclose()
        server.stop()
