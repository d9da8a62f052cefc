"""``ogcache serve --workers 4`` on PostgreSQL and Redis, as issue 12 describes it: load on
several routes while ``/metrics`` is scraped 20 times; no counter may ever go down, and the
hits summed over the workers are the hits the load caused."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import httpx
import pytest

from bench.resilience import USER, AppServer, prepared_database
from ogcache.api.worker_stats import PUBLISH_INTERVAL
from ogcache.config import load_settings
from ogcache.runtime import Runtime

pytestmark = pytest.mark.slow

WORKERS = 4
ROUNDS = 10
MENU_PER_ROUND = 30
PROFILE_PER_ROUND = 10
# Another worker's counters are at most PUBLISH_INTERVAL old, plus a busy machine's stall.
SETTLE = PUBLISH_INTERVAL + 1.0
_SAMPLE = re.compile(r"^(\w+)(\{[^}]*\})? (\S+)$")

Series = dict[str, float]


@pytest.fixture
async def service(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """The service's URL and a bearer header of the demo user."""
    jwt_secret = secrets.token_urlsafe(48)
    async with prepared_database(postgres_url) as database_url:
        settings = {
            "database_url": database_url,
            "redis_url": redis_url,
            "jwt_secret": jwt_secret,
            "cache_prefix": f"workers-{uuid.uuid4().hex[:10]}",
            "auto_migrate": False,
            "seed_demo_data": False,
            "refresh_interval": 0,
            "verify_sample": 0,
            "log_level": "WARNING",
        }
        server = AppServer(settings, tmp_path / "service.log", workers=WORKERS)
        await server.start()
        try:
            local = load_settings(
                _env_file=None, database_url=database_url, redis_url=None, jwt_secret=jwt_secret
            )
            async with Runtime.open(local) as runtime:
                token = (await runtime.auth.issue_token(USER)).access_token
            yield server.base_url, {"Authorization": f"Bearer {token}"}
        finally:
            await asyncio.to_thread(server.stop)


def counters(text: str) -> Series:
    """Every counter and histogram sample of a scrape, by series."""
    types = dict(re.findall(r"^# TYPE (\w+) (\w+)$", text, re.M))
    series: Series = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found is None:
            continue
        name = found.group(1)
        kind = types.get(name) or types.get(re.sub(r"_(bucket|count|sum)$", "", name))
        if kind in ("counter", "histogram"):
            series[name + (found.group(2) or "")] = float(found.group(3))
    return series


async def scrape(base: str) -> Series:
    """One scrape on a new connection (so that any worker may answer it)."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        response = await http.get("/metrics")
        assert response.status_code == 200
        return counters(response.text)


async def all_workers_published(base: str) -> None:
    """Wait until every worker has written its statistics once (1 s after its start-up)."""
    for _ in range(300):
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            workers = (await http.get("/api/cache")).json()["workers"]
        if sum(worker["alive"] for worker in workers) >= WORKERS:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not every worker published its statistics: {workers}")


async def load(base: str, auth: dict[str, str]) -> dict[str, int]:
    """Rounds of menu and profile reads (and unknown paths), spread over several connections."""
    sent = {"menu": 0, "profile": 0}
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as http:
        for _ in range(ROUNDS):
            answers = await asyncio.gather(
                *(http.get("/api/menu") for _ in range(MENU_PER_ROUND)),
                *(
                    http.get(f"/api/profiles/{USER}", headers=auth)
                    for _ in range(PROFILE_PER_ROUND)
                ),
                http.get("/no/such/path"),
            )
            assert [a.status_code for a in answers[:-1]] == [200] * (len(answers) - 1)
            assert answers[-1].status_code == 404
            sent["menu"] += MENU_PER_ROUND
            sent["profile"] += PROFILE_PER_ROUND
            await asyncio.sleep(0.3)
    return sent


def profile(http: httpx.AsyncClient, auth: dict[str, str]) -> Awaitable[httpx.Response]:
    return http.get(f"/api/profiles/{USER}", headers=auth)


def delta(after: Series, before: Series, series: str) -> float:
    return after.get(series, 0.0) - before.get(series, 0.0)


async def test_counters_never_go_down_and_sum_to_the_load_over_four_workers(
    service: tuple[str, dict[str, str]],
) -> None:
    base, auth = service
    await all_workers_published(base)
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:  # entries in Redis
        for _ in range(3):
            assert (await http.get("/api/menu")).status_code == 200
            assert (await http.get(f"/api/profiles/{USER}", headers=auth)).status_code == 200
    await asyncio.sleep(SETTLE)
    before = await scrape(base)

    scrapes: list[Series] = []

    async def scraper() -> None:
        for _ in range(20):
            scrapes.append(await scrape(base))
            await asyncio.sleep(0.2)

    sent, _ = await asyncio.gather(load(base, auth), scraper())

    for earlier, later in zip([before, *scrapes], scrapes, strict=False):
        went_down = {s: (v, later.get(s)) for s, v in earlier.items() if later.get(s, -1) < v}
        assert not went_down, went_down
    await asyncio.sleep(SETTLE)
    after = await scrape(base)
    hits = 'ogcache_cache_hits_total{namespace="%s"}'
    assert delta(after, before, hits % "menu") == sent["menu"]
    assert delta(after, before, 'ogcache_cache_misses_total{namespace="menu"}') == 0
    assert delta(after, before, hits % "user:profile") == sent["profile"]
    tokens = delta(after, before, hits % "auth:token")
    assert (
        tokens + delta(after, before, 'ogcache_cache_misses_total{namespace="auth:token"}')
        == (sent["profile"])
    )
    route = 'ogcache_http_requests_total{method="GET",route="/api/menu",status="200"}'
    assert delta(after, before, route) == sent["menu"]
    unmatched = 'ogcache_http_requests_total{method="GET",route="<unmatched>",status="404"}'
    assert delta(after, before, unmatched) == ROUNDS
    await _check_the_breakdown(base, after[hits % "menu"])


async def _check_the_breakdown(base: str, menu_hits: float) -> None:
    """GET /api/cache: the totals of /metrics, and the workers' own figures adding up to them
    (several workers served the load)."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        body = (await http.get("/api/cache")).json()
    assert body["stats"]["namespaces"]["menu"]["hits"] == menu_hits
    workers = body["workers"]
    assert len({worker["pid"] for worker in workers}) == len(workers) >= WORKERS
    assert sum(w["namespaces"].get("menu", {}).get("hits", 0) for w in workers) == menu_hits
    assert sum(w["hits"] for w in workers) == sum(
        n["hits"] for n in body["stats"]["namespaces"].values()
    )
    assert sum(w["namespaces"].get("menu", {}).get("hits", 0) > 0 for w in workers) >= 2
