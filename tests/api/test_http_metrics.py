"""HTTP request metrics, counters summed over workers sharing a directory, GET /api/cache's
per-worker breakdown, and the Grafana dashboard's queries against a real scrape."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from ogcache.api.app import create_app
from ogcache.api.worker_stats import DIRECTORY_VARIABLE
from ogcache.runtime import Runtime
from tests.api.conftest import ALICE, client_for

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "ogcache.json"
redis_stack = pytest.mark.parametrize("stack_settings", ["postgresql+redis"], indirect=True)


def value(text: str, series: str) -> float:
    """The sample of exactly ``series`` (name and labels as printed) in a scrape; 0 if absent."""
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    for _ in range(3):
        await client.get("/api/menu")
    await client.get(f"/api/profiles/{ALICE}", headers=alice)
    await client.get("/api/profiles/nobody_at_all", headers=alice)  # another user's: 403
    await client.get("/no/such/path/123")
    text = (await client.get("/metrics")).text
    requests = 'ogcache_http_requests_total{method="GET",route="%s",status="%s"}'
    assert value(text, requests % ("/api/menu", "200")) == 3
    profile = requests % ("/api/profiles/{user_id}", "%s")
    assert value(text, profile % "200") == 1
    assert value(text, profile % "403") == 1
    assert value(text, requests % ("<unmatched>", "404")) == 1
    assert "/no/such/path" not in text  # never a raw path
    assert ALICE not in text
    count = 'ogcache_http_request_duration_seconds_count{method="GET",route="/api/menu"}'
    assert value(text, count) == 3
    infinite = (
        'ogcache_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/api/menu"}'
    )
    assert value(text, infinite) == 3
    assert "# TYPE ogcache_http_request_duration_seconds histogram" in text


async def test_one_process_reports_itself_as_the_only_worker(client: httpx.AsyncClient) -> None:
    await client.get("/api/menu")
    await client.get("/api/menu")
    body = (await client.get("/api/cache")).json()
    (worker,) = body["workers"]
    assert worker["alive"] is True
    assert worker["namespaces"]["menu"]["hits"] == body["stats"]["namespaces"]["menu"]["hits"]
    assert worker["hits"] + worker["misses"] >= 2
    assert worker["requests"] >= 2


@pytest.fixture
async def two_workers(
    seeded: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    """Two apps, each with its own runtime (own counters) over the same stores, sharing a
    statistics directory as the workers of ``serve --workers 2`` do."""
    monkeypatch.setenv(DIRECTORY_VARIABLE, str(tmp_path))
    async with Runtime.open(seeded.settings) as first, Runtime.open(seeded.settings) as second:
        yield create_app(runtime=first), create_app(runtime=second)


@redis_stack
async def test_workers_counters_are_summed_and_a_stopped_workers_stay(
    two_workers: tuple[FastAPI, FastAPI],
) -> None:
    one, other = two_workers
    hits = 'ogcache_cache_hits_total{namespace="menu"}'
    async with client_for(one) as first, client_for(other) as second:
        await first.get("/api/menu")  # a miss, loaded into Redis
        async with other.router.lifespan_context(other):  # publishes, and once more at its end
            for _ in range(4):
                await second.get("/api/menu")
            own = value((await second.get("/metrics")).text, hits)
            for _ in range(2):
                await first.get("/api/menu")
        summed = value((await first.get("/metrics")).text, hits)
        assert (own, summed) == (4, 6)
        body = (await first.get("/api/cache")).json()
    assert body["stats"]["namespaces"]["menu"]["hits"] == 6
    assert body["stats"]["namespaces"]["menu"]["misses"] == 1
    workers = body["workers"]
    assert [w["namespaces"]["menu"]["hits"] for w in workers] == [2, 4]
    assert [w["alive"] for w in workers] == [True, False]  # the other one has stopped
    route = 'ogcache_http_requests_total{method="GET",route="/api/menu",status="200"}'
    async with client_for(one) as first:
        assert value((await first.get("/metrics")).text, route) == 7


def _metric_names(expression: str) -> set[str]:
    return set(re.findall(r"\b(ogcache_[a-z0-9_]+)\b", expression))


@redis_stack
async def test_every_dashboard_query_names_a_metric_the_service_exposes(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    await client.get("/api/menu")
    await client.get(f"/api/profiles/{ALICE}", headers=alice)
    text = (await client.get("/metrics")).text
    exposed = set(re.findall(r"^(ogcache_[a-z0-9_]+)[{ ]", text, re.M))
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(expressions) >= 10
    used = set().union(*(_metric_names(e) for e in expressions))
    assert used - exposed == set()
    for needed in ("ogcache_http_requests_total", "ogcache_cache_circuit_state"):
        assert needed in used
