"""/livez and /readyz: liveness without I/O, readiness on the database's SELECT 1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from ogcache.api.app import create_app
from ogcache.runtime import Runtime
from tests.api import test_operations as operations
from tests.api.conftest import ADMIN_TOKEN, client_for
from tests.services.conftest import make_settings

# The /healthz tests' fixtures, made visible to these tests (pytest finds them by name here).
cache_down = operations.cache_down
database_down = operations.database_down


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung PostgreSQL)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@asynccontextmanager
async def _client_on(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url, None, admin_token=ADMIN_TOKEN)
    async with Runtime.open(settings) as runtime, client_for(create_app(runtime=runtime)) as http:
        yield http


def _count_statements(runtime: Runtime) -> tuple[list[str], Any]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.strip())

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
    return statements, count


# --- /livez ----------------------------------------------------------------------------------


async def test_livez_is_ok_and_touches_no_store(client: httpx.AsyncClient, seeded: Runtime) -> None:
    statements, count = _count_statements(seeded)
    try:
        response = await client.get("/livez")
    finally:
        event.remove(seeded.engine.sync_engine, "before_cursor_execute", count)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert statements == []


async def test_livez_is_ok_while_the_database_is_down(database_down: httpx.AsyncClient) -> None:
    response = await database_down.get("/livez")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


# --- /readyz ---------------------------------------------------------------------------------


async def test_readyz_is_ready_when_everything_is_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "up", "cache": "up"}


async def test_readyz_is_degraded_but_200_when_the_cache_is_down(
    cache_down: httpx.AsyncClient,
) -> None:
    response = await cache_down.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "database": "up", "cache": "down"}


async def test_readyz_is_503_with_the_reason_in_one_line_when_the_database_is_down(
    database_down: httpx.AsyncClient,
) -> None:
    response = await database_down.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"], body["cache"]) == ("down", "down", "up")
    url = make_url(operations.UNREACHABLE_POSTGRES)
    assert body["reason"] == (
        f"cannot reach the database {url.database} on 127.0.0.1:1: connection refused "
        "(check OGCACHE_DATABASE_URL)"
    )


async def test_readyz_names_an_unknown_role_without_its_password(postgres_url: str) -> None:
    url = make_url(postgres_url).set(username="no_such_role_x", password="pw-not-to-be-shown")
    async with _client_on(url.render_as_string(hide_password=False)) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    reason = response.json()["reason"]
    assert 'role "no_such_role_x" does not exist' in reason
    assert f"{url.host}:{url.port or 5432}" in reason
    assert "pw-not-to-be-shown" not in response.text
    assert "\n" not in reason


async def test_readyz_names_a_database_that_does_not_exist(postgres_url: str) -> None:
    url = make_url(postgres_url).set(database="ogcache_no_such_database")
    async with _client_on(url.render_as_string(hide_password=False)) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert 'database "ogcache_no_such_database" does not exist' in response.json()["reason"]


async def test_readyz_answers_within_its_probe_timeout_on_a_hung_database(
    silent_server: int,
) -> None:
    """A server that accepts and never answers: 503 after the 2 s probe, not asyncpg's 60 s."""
    async with _client_on(f"postgresql://postgres@127.0.0.1:{silent_server}/hung") as http:
        started = time.monotonic()
        response = await http.get("/readyz")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert "no answer within 2 s" in response.json()["reason"]
    assert elapsed < 20


async def test_a_flood_of_readiness_and_health_probes_costs_the_database_one_check(
    client: httpx.AsyncClient, seeded: Runtime
) -> None:
    statements, count = _count_statements(seeded)
    try:
        answers = await asyncio.gather(*(client.get(path) for path in ("/readyz", "/healthz") * 25))
    finally:
        event.remove(seeded.engine.sync_engine, "before_cursor_execute", count)
    assert {r.status_code for r in answers} == {200}
    assert statements.count("SELECT 1") == 1


async def test_the_probes_have_openapi_summaries(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/livez", "/readyz", "/healthz"):
        assert paths[path]["get"]["summary"], path
