"""/healthz and /metrics, with everything up and with the cache or the database down."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from ogcache.api.app import create_app
from ogcache.runtime import Runtime
from tests.api.conftest import ADMIN, ADMIN_TOKEN, assert_error, client_for
from tests.services.conftest import make_settings

# Nothing listens on port 1 of the loopback interface: connections are refused at once.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
UNREACHABLE_POSTGRES = "postgresql://postgres@127.0.0.1:1/ogcache"


@pytest.fixture
async def cache_down(sqlite_database: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose database works and whose Redis cannot be reached."""
    settings = make_settings(sqlite_database, UNREACHABLE_REDIS, admin_token=ADMIN_TOKEN)
    async with Runtime.open(settings) as runtime, client_for(create_app(runtime=runtime)) as http:
        yield http


@pytest.fixture
async def database_down() -> AsyncIterator[httpx.AsyncClient]:
    """An app whose cache (in-process) works and whose database cannot be reached."""
    settings = make_settings(UNREACHABLE_POSTGRES, None, admin_token=ADMIN_TOKEN)
    async with Runtime.open(settings) as runtime, client_for(create_app(runtime=runtime)) as http:
        yield http


# --- /healthz --------------------------------------------------------------------------------


async def test_healthz_is_ok_when_everything_is_up(
    client: httpx.AsyncClient, seeded: Runtime
) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "cache": "ok",
        "backend": seeded.cache.backend.name,
    }


async def test_a_flood_of_health_probes_costs_the_database_one_check(
    client: httpx.AsyncClient, seeded: Runtime
) -> None:
    checks = 0

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal checks
        checks += statement.strip() == "SELECT 1"

    event.listen(seeded.engine.sync_engine, "before_cursor_execute", count)
    try:
        answers = await asyncio.gather(*(client.get("/healthz") for _ in range(50)))
    finally:
        event.remove(seeded.engine.sync_engine, "before_cursor_execute", count)
    assert {r.json()["status"] for r in answers} == {"ok"}
    assert checks == 1


async def test_healthz_is_degraded_but_200_when_the_cache_is_down(
    cache_down: httpx.AsyncClient,
) -> None:
    response = await cache_down.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["cache"] == "down"


async def test_healthz_is_down_and_503_when_the_database_is_down(
    database_down: httpx.AsyncClient,
) -> None:
    response = await database_down.get("/healthz")
    assert response.status_code == 503
    assert (response.json()["status"], response.json()["database"]) == ("down", "down")


# --- /metrics --------------------------------------------------------------------------------


async def test_metrics_are_prometheus_text_with_hits_per_namespace(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/api/menu")
    await client.get("/api/menu")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE ogcache_cache_hits_total counter" in response.text
    assert re.search(r'^ogcache_cache_hits_total\{namespace="menu"\} 1(\.0)?$', response.text, re.M)
    assert re.search(
        r'^ogcache_cache_misses_total\{namespace="menu"\} 1(\.0)?$', response.text, re.M
    )


async def test_metrics_have_latency_histograms(client: httpx.AsyncClient) -> None:
    await client.get("/api/menu")
    text = (await client.get("/metrics")).text
    assert "# TYPE ogcache_cache_operation_seconds histogram" in text
    buckets = re.findall(
        r'^ogcache_cache_operation_seconds_bucket\{.*namespace="menu".*\} ', text, re.M
    )
    assert len(buckets) > 1
    assert re.search(
        r'^ogcache_cache_operation_seconds_bucket\{le="\+Inf",namespace="menu"\} ', text, re.M
    )
    assert re.search(r'^ogcache_cache_load_seconds_count\{namespace="menu"\} 1(\.0)?$', text, re.M)


async def test_metrics_say_the_cache_is_up(client: httpx.AsyncClient, seeded: Runtime) -> None:
    text = (await client.get("/metrics")).text
    backend = seeded.cache.backend.name
    assert re.search(rf'^ogcache_cache_up\{{backend="{backend}"\}} 1(\.0)?$', text, re.M)


async def test_metrics_say_the_cache_is_down_when_it_is(cache_down: httpx.AsyncClient) -> None:
    text = (await cache_down.get("/metrics")).text
    assert re.search(r'^ogcache_cache_up\{backend="redis"\} 0(\.0)?$', text, re.M)


# --- serving with a backing store down -------------------------------------------------------


async def test_reads_are_served_from_the_database_while_the_cache_is_down(
    cache_down: httpx.AsyncClient,
) -> None:
    response = await cache_down.get("/api/cache")
    assert response.status_code == 200
    assert response.json()["available"] is False
    assert response.json()["stats"]["totalKeys"] is None
    assert (await cache_down.get("/api/menu")).status_code == 200


async def test_clearing_while_the_cache_is_down_is_503(cache_down: httpx.AsyncClient) -> None:
    for body in ({"action": "clear"}, {"action": "clear-prefix", "prefix": "menu:"}):
        response = await cache_down.post("/api/cache", json=body, headers=ADMIN)
        assert_error(response, 503, "unavailable")


async def test_storing_a_session_while_the_cache_is_down_is_503(
    cache_down: httpx.AsyncClient,
) -> None:
    response = await cache_down.put("/api/sessions/chat_state_0001", json={}, headers=ADMIN)
    assert_error(response, 503, "unavailable")


async def test_a_read_while_the_database_is_down_is_503(
    database_down: httpx.AsyncClient,
) -> None:
    assert_error(await database_down.get("/api/menu"), 503, "unavailable")
    response = await database_down.get("/api/profiles/web_demo_alice", headers=ADMIN)
    assert_error(response, 503, "unavailable")


async def test_metrics_export_every_breaker_state_and_detection(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    for state in ("closed", "suspect", "open", "half_open", "settling"):
        assert f'ogcache_cache_circuit_state{{state="{state}"}}' in text
    assert re.search(r'^ogcache_cache_circuit_state\{state="closed"\} 1(\.0)?$', text, re.M)
    for counter in ("suspicions", "false_alarms", "slow_calls", "probes"):
        assert re.search(rf"^ogcache_cache_circuit_{counter}_total \d", text, re.M), counter


async def test_start_up_logs_the_demo_data_it_added_in_words(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Start-up in the app's own lifespan (migrate, seed), as ``ogcache serve --demo`` runs;
    on a database of its own, since it seeds."""
    database = f"sqlite:///{tmp_path / 'start-up.db'}"
    settings = make_settings(database, None, seed_demo_data=True, refresh_interval=0)
    with caplog.at_level("INFO", logger="ogcache"):
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            pass
    seeded = [r.getMessage() for r in caplog.records if "demo data added" in r.getMessage()]
    assert len(seeded) == 1
    assert "SeedReport(" not in seeded[0]
    assert re.search(r"\d+ menu items, \d+ users, \d+ conversations, \d+ events", seeded[0])
