"""/api/analytics (admin only): today's metrics and top products, cached."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from tests.api.conftest import ADMIN, assert_error, namespace_hits, one_stack

ADMIN_ROUTES = ("/api/analytics/today", "/api/analytics/top-products")


async def test_the_admin_reads_todays_metrics(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/analytics/today", headers=ADMIN)
    assert response.status_code == 200
    metrics = response.json()
    assert metrics["day"] == datetime.now(UTC).date().isoformat()
    assert metrics["events_total"] == sum(metrics["events_by_type"].values())
    assert metrics["events_total"] > 0


async def test_second_read_of_todays_metrics_is_a_cache_hit(client: httpx.AsyncClient) -> None:
    first = await client.get("/api/analytics/today", headers=ADMIN)
    before = await namespace_hits(client, "analytics:today")
    second = await client.get("/api/analytics/today", headers=ADMIN)
    assert second.json() == first.json()
    assert await namespace_hits(client, "analytics:today") == before + 1


async def test_the_admin_reads_top_products_within_the_limit(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/analytics/top-products", params={"days": 30, "limit": 3}, headers=ADMIN
    )
    assert response.status_code == 200
    products = response.json()
    assert 0 < len(products) <= 3
    assert set(products[0]) == {"product", "mentions", "orders"}


async def test_second_read_of_top_products_is_a_cache_hit(client: httpx.AsyncClient) -> None:
    await client.get("/api/analytics/top-products", headers=ADMIN)
    before = await namespace_hits(client, "analytics:top")
    await client.get("/api/analytics/top-products", headers=ADMIN)
    assert await namespace_hits(client, "analytics:top") == before + 1


@one_stack
async def test_top_products_out_of_range_is_422(client: httpx.AsyncClient) -> None:
    for params in ({"days": 0}, {"days": 366}, {"limit": 0}, {"limit": 101}, {"days": "week"}):
        response = await client.get("/api/analytics/top-products", params=params, headers=ADMIN)
        assert_error(response, 422, "validation_error")


async def test_analytics_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    for path in ADMIN_ROUTES:
        assert_error(await client.get(path), 401, "unauthorized")


async def test_analytics_with_a_user_token_is_403(client: httpx.AsyncClient, alice: dict) -> None:
    for path in ADMIN_ROUTES:
        assert_error(await client.get(path, headers=alice), 403, "forbidden")


async def test_analytics_with_a_wrong_admin_token_is_403(client: httpx.AsyncClient) -> None:
    wrong = {"Authorization": "Bearer " + "x" * 48}
    for path in ADMIN_ROUTES:
        assert_error(await client.get(path, headers=wrong), 403, "forbidden")


async def test_analytics_without_a_configured_admin_token_is_403_naming_the_setting(
    no_admin_client: httpx.AsyncClient, alice: dict
) -> None:
    for path in ADMIN_ROUTES:
        for headers in (ADMIN, alice):
            error = assert_error(await no_admin_client.get(path, headers=headers), 403)
            assert error["code"] == "admin_disabled"
            assert "OGCACHE_ADMIN_TOKEN" in error["message"]
