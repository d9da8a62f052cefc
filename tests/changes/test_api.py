"""Through the HTTP API: a price set with SQL is on the next read of the menu routes, and the
capture's figures are in GET /api/cache and /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from ogcache.api.app import create_app
from ogcache.runtime import Runtime
from tests.api.conftest import ADMIN, client_for
from tests.changes.conftest import sql, until


@pytest.fixture
async def client(app: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(runtime=app)) as http:
        yield http


async def test_a_price_set_with_sql_is_served_by_the_menu_routes(
    client: httpx.AsyncClient, app: Runtime
) -> None:
    for path in ("/api/menu", "/api/menu?concentrates=true", "/api/menu/context"):
        assert "4321" not in (await client.get(path)).text
    await sql(app, "UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'")

    async def served() -> bool:
        bodies = [(await client.get(path)).text for path in ("/api/menu", "/api/menu/context")]
        return all("4321" in body for body in bodies)

    await until(served)
    assert "4321" in (await client.get("/api/menu?concentrates=true")).text


async def test_the_figures_are_in_the_cache_report_and_the_metrics(
    client: httpx.AsyncClient, app: Runtime
) -> None:
    await sql(app, "UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'")
    await until(lambda: app.changes.stats.applied >= 1)
    changes = (await client.get("/api/cache", headers=ADMIN)).json()["stats"]["changes"]
    assert changes["enabled"] is True
    assert changes["role"] in ("leader", "local")
    assert changes["applied"] >= 1
    assert changes["lagMs"]["count"] >= 1
    metrics = (await client.get("/metrics", headers=ADMIN)).text
    assert "ogcache_change_lag_seconds_count" in metrics
    assert "ogcache_changes_applied_total" in metrics
    assert 'ogcache_change_role{role="' in metrics
