"""The hottest reads answered from the in-process tier (``ogcache.api.hot_reads``), seen from
outside: a hit it answers is the route's very answer, and everything else reaches the route.

Whether the route ran is seen through FastAPI's ``dependency_overrides``: every route these
tests call takes the runtime or the caller through a dependency, which the ``probe`` counts.
The route's answer for the same state comes from a second runtime over the same database and
keyspace whose in-process tier is off (``OGCACHE_LOCAL_TTL_*=0``), so only its routes answer.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import get_args

import httpx
import pytest
from fastapi import FastAPI, Request

from ogcache.api.app import create_app
from ogcache.api.deps import Caller, CallerDep, get_runtime, runtime_of
from ogcache.runtime import Runtime
from tests.api.conftest import ADMIN, ALICE, NIRAN, assert_error, client_for

redis_stack = pytest.mark.parametrize("stack_settings", ["postgresql+redis"], indirect=True)
memory_stack = pytest.mark.parametrize("stack_settings", ["sqlite+memory"], indirect=True)

ME = "/api/auth/me"
MENU = "/api/menu"
ALICES = f"/api/profiles/{ALICE}"
NIRANS = f"/api/profiles/{NIRAN}"
VARYING = {"date", "x-request-id"}  # the only headers two answers may differ in
WITHIN = 10.0  # seconds: generous, for the invalidation feed to go live


@dataclass
class Probe:
    """How many times a route ran (any route taking the runtime or the caller)."""

    runs: int = 0


@pytest.fixture
def probe(app: FastAPI) -> Probe:
    counted = Probe()
    scheme = get_args(CallerDep)[1].dependency

    async def counting_runtime(request: Request) -> Runtime:
        counted.runs += 1
        return runtime_of(request)

    async def counting_caller(request: Request) -> Caller:
        counted.runs += 1
        caller: Caller = await scheme(request)
        return caller

    app.dependency_overrides[get_runtime] = counting_runtime
    app.dependency_overrides[scheme] = counting_caller
    return counted


@pytest.fixture
async def reference(seeded: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The same database and cache keyspace, without the in-process tier: only routes answer."""
    settings = seeded.settings.model_copy(
        update={"local_ttl_auth": 0, "local_ttl_profile": 0, "local_ttl_menu": 0}
    )
    async with Runtime.open(settings) as other, client_for(create_app(runtime=other)) as http:
        yield http


def local_hits(runtime: Runtime) -> int:
    return sum(stats.local_hits for stats in runtime.cache.stats().values())


def same_answer(got: httpx.Response, expected: httpx.Response) -> None:
    """Same status, body bytes and headers (but the date and the request id)."""
    assert got.status_code == expected.status_code, (got.text, expected.text)
    assert got.content == expected.content

    def kept(response: httpx.Response) -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in response.headers.multi_items() if k not in VARYING)

    assert kept(got) == kept(expected)


async def from_memory(
    http: httpx.AsyncClient,
    probe: Probe,
    runtime: Runtime,
    path: str,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Read ``path`` until the middleware answers it (no route ran, a local hit counted): once
    the invalidation feed is live, a read fills the tier and the next one is a hit."""
    deadline = time.monotonic() + WITHIN
    while True:
        runs, hits = probe.runs, local_hits(runtime)
        response = await http.get(path, headers=headers)
        if probe.runs == runs:
            assert local_hits(runtime) > hits
            assert response.status_code == 200
            return response
        assert time.monotonic() < deadline, f"{path} never answered from memory"
        await asyncio.sleep(0.05)


async def by_route(
    http: httpx.AsyncClient,
    probe: Probe,
    path: str,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """The answer to one GET, which the route must have answered."""
    runs = probe.runs
    response = await http.get(path, headers=headers)
    assert probe.runs > runs, f"GET {path} was not answered by the route"
    return response


# --- 1. a hit answered from memory is the route's answer -------------------------------------


@redis_stack
@pytest.mark.parametrize(
    "path", [MENU, f"{MENU}?concentrates=true", f"{MENU}?concentrates=false", ME, ALICES]
)
async def test_a_hit_is_exactly_the_routes_answer(
    client: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    probe: Probe,
    seeded: Runtime,
    alice: dict[str, str],
    path: str,
) -> None:
    headers = None if path.startswith(MENU) else alice
    route = await by_route(client, probe, path, headers)  # the miss (or first hit): the route
    hit = await from_memory(client, probe, seeded, path, headers)
    same_answer(hit, route)
    same_answer(hit, await reference.get(path, headers=headers))
    assert hit.headers["content-type"] == "application/json"
    if path in (ME, ALICES):
        assert hit.json()["user_id"] == ALICE
    else:
        assert hit.json()["items"]


@redis_stack
async def test_the_menus_with_and_without_concentrates_are_not_mixed_up(
    client: httpx.AsyncClient, probe: Probe, seeded: Runtime, reference: httpx.AsyncClient
) -> None:
    with_them = await from_memory(client, probe, seeded, f"{MENU}?concentrates=true")
    without = await from_memory(client, probe, seeded, f"{MENU}?concentrates=false")
    plain = await from_memory(client, probe, seeded, MENU)
    assert with_them.content != without.content
    assert plain.content == without.content
    expected = await reference.get(f"{MENU}?concentrates=true")
    same_answer(with_them, expected)


# --- 2. everything else reaches the route ----------------------------------------------------


async def warm_all(
    client: httpx.AsyncClient, probe: Probe, runtime: Runtime, alice: dict[str, str]
) -> None:
    """Alice's token and profile and the menus held in memory (the middleware could answer)."""
    for path, headers in ((MENU, None), (f"{MENU}?concentrates=true", None)):
        await from_memory(client, probe, runtime, path, headers)
    await from_memory(client, probe, runtime, ME, alice)
    await from_memory(client, probe, runtime, ALICES, alice)


@redis_stack
@pytest.mark.parametrize("path", [MENU, ME, ALICES])
async def test_head_goes_to_the_route(
    client: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    probe: Probe,
    seeded: Runtime,
    alice: dict[str, str],
    path: str,
) -> None:
    await warm_all(client, probe, seeded, alice)
    response = await client.head(path, headers=alice)  # the router's answer (GET routes only)
    same_answer(response, await reference.head(path, headers=alice))
    assert response.status_code == 405


@redis_stack
@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("concentrates=yes", 200),
        ("concentrates=TRUE", 200),
        ("concentrates=True", 200),
        ("concentrates=1", 200),
        ("concentrates=maybe", 422),
        ("concentrates=", 422),
        ("concentrates=true&concentrates=false", 200),
        ("concentrates=true&extra=1", 200),
        ("extra=1", 200),
        ("concentrates=true&", 200),
        ("concentrates%3Dtrue", 200),
    ],
)
async def test_another_menu_query_goes_to_the_route(
    client: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    probe: Probe,
    seeded: Runtime,
    alice: dict[str, str],
    query: str,
    status: int,
) -> None:
    await warm_all(client, probe, seeded, alice)
    response = await by_route(client, probe, f"{MENU}?{query}")
    assert response.status_code == status, response.text
    if status == 422:
        assert_error(response, 422)
    same_answer(response, await reference.get(f"{MENU}?{query}"))


@redis_stack
@pytest.mark.parametrize("path", [ME, ALICES])
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic {token}",
        "Token {token}",
        "{token}",
        "Bearer",
        "Bearer ",
        "Bearer garbage-token",
        "Bearer a.b.c",
        "Bearer {token}x",
    ],
)
async def test_without_a_usable_bearer_token_the_route_answers_401(
    client: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    probe: Probe,
    seeded: Runtime,
    alice: dict[str, str],
    path: str,
    authorization: str | None,
) -> None:
    await warm_all(client, probe, seeded, alice)
    token = alice["Authorization"].removeprefix("Bearer ")
    headers = {} if authorization is None else {"Authorization": authorization.format(token=token)}
    response = await by_route(client, probe, path, headers)
    assert_error(response, 401, "unauthorized")
    assert ALICE not in response.text
    same_answer(response, await reference.get(path, headers=headers))


@redis_stack
@pytest.mark.parametrize("path", [ME, ALICES])
@pytest.mark.parametrize(
    "authorization", ["bearer {token}", "BEARER {token}", "Bearer  {token}", "Bearer {token} "]
)
async def test_other_spellings_of_the_bearer_header_get_the_routes_answer(
    client: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    probe: Probe,
    seeded: Runtime,
    alice: dict[str, str],
    path: str,
    authorization: str,
) -> None:
    """Whoever answers (the route, or the middleware for what the route accepts as it is)."""
    await warm_all(client, probe, seeded, alice)
    token = alice["Authorization"].removeprefix("Bearer ")
    headers = {"Authorization": authorization.format(token=token)}
    response = await client.get(path, headers=headers)
    same_answer(response, await reference.get(path, headers=headers))


@redis_stack
async def test_the_admin_token_on_me_gets_the_routes_401(
    client: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    probe: Probe,
    seeded: Runtime,
    alice: dict[str, str],
) -> None:
    await warm_all(client, probe, seeded, alice)
    response = await by_route(client, probe, ME, ADMIN)
    message = assert_error(response, 401, "unauthorized")["message"]
    assert "admin token has no user identity" in message
    same_answer(response, await reference.get(ME, headers=ADMIN))


@redis_stack
async def test_the_admin_reads_a_profile_held_in_memory_through_the_route(
    client: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    probe: Probe,
    seeded: Runtime,
    alice: dict[str, str],
) -> None:
    await warm_all(client, probe, seeded, alice)
    response = await by_route(client, probe, ALICES, ADMIN)
    assert response.status_code == 200
    assert response.json()["user_id"] == ALICE
    same_answer(response, await reference.get(ALICES, headers=ADMIN))


@redis_stack
async def test_another_users_profile_is_403_even_when_it_is_in_memory(
    client: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    probe: Probe,
    seeded: Runtime,
    alice: dict[str, str],
    niran: dict[str, str],
) -> None:
    await warm_all(client, probe, seeded, alice)
    held = await from_memory(client, probe, seeded, NIRANS, niran)  # Niran's profile in L1
    assert held.json()["user_id"] == NIRAN
    response = await by_route(client, probe, NIRANS, alice)
    assert_error(response, 403, "forbidden")
    assert NIRAN not in response.text
    assert held.content not in response.content
    same_answer(response, await reference.get(NIRANS, headers=alice))


@redis_stack
@pytest.mark.parametrize(
    "user_id",
    ["a%20b", "a" * 129, "a" * 200, f"{ALICE}%0A", f"{ALICE}%2Fx", "%C3%A9", f"{ALICE}/"],
)
async def test_a_user_id_the_middleware_refuses_gets_the_routes_answer(
    client: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    probe: Probe,
    seeded: Runtime,
    alice: dict[str, str],
    user_id: str,
) -> None:
    await warm_all(client, probe, seeded, alice)
    runs = probe.runs
    response = await client.get(f"/api/profiles/{user_id}", headers=alice)
    if probe.runs == runs:  # no such route: the router's own answer (a redirect, 404)
        assert response.status_code in (307, 404, 405), response.text
    else:
        assert response.status_code in (403, 422), response.text
    if response.status_code != 307:
        assert_error(response, response.status_code)
    assert '"preferences"' not in response.text  # never Alice's profile
    same_answer(response, await reference.get(f"/api/profiles/{user_id}", headers=alice))


@redis_stack
async def test_after_logout_the_token_is_refused_at_once(
    client: httpx.AsyncClient, probe: Probe, seeded: Runtime, alice: dict[str, str]
) -> None:
    await warm_all(client, probe, seeded, alice)
    assert (await client.post("/api/auth/logout", headers=alice)).status_code == 204
    assert_error(await by_route(client, probe, ME, alice), 401, "unauthorized")
    assert_error(await by_route(client, probe, ALICES, alice), 401, "unauthorized")


@redis_stack
async def test_a_blocked_user_is_refused_on_the_next_request(
    client: httpx.AsyncClient, probe: Probe, seeded: Runtime, alice: dict[str, str]
) -> None:
    await warm_all(client, probe, seeded, alice)
    blocked = await client.patch(ALICES, json={"is_blocked": True}, headers=ADMIN)
    assert blocked.status_code == 200, blocked.text
    assert blocked.json()["is_blocked"] is True
    assert_error(await by_route(client, probe, ME, alice), 401, "unauthorized")
    assert_error(await by_route(client, probe, ALICES, alice), 401, "unauthorized")


@redis_stack
async def test_a_users_profile_change_is_read_back_at_once(
    client: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    probe: Probe,
    seeded: Runtime,
    alice: dict[str, str],
) -> None:
    before = await from_memory(client, probe, seeded, ALICES, alice)
    assert before.json()["preferences"].get("hotReadsMarker") is None
    for value in ("first", "second"):
        changed = await client.patch(
            ALICES, json={"preferences": {"hotReadsMarker": value}}, headers=alice
        )
        assert changed.status_code == 200, changed.text
        read = await client.get(ALICES, headers=alice)
        assert read.status_code == 200
        assert read.json()["preferences"]["hotReadsMarker"] == value
        assert read.json() == changed.json()
        # Held in memory again later, and still the new value.
        held = await from_memory(client, probe, seeded, ALICES, alice)
        assert held.json()["preferences"]["hotReadsMarker"] == value
        same_answer(held, await reference.get(ALICES, headers=alice))


@redis_stack
async def test_a_token_that_expires_while_in_memory_is_refused(
    client: httpx.AsyncClient, probe: Probe, seeded: Runtime
) -> None:
    issued = await seeded.auth.issue_token(ALICE, ttl=2)
    headers = {"Authorization": f"Bearer {issued.access_token}"}
    served = await from_memory(client, probe, seeded, ME, headers)
    assert served.json()["session_id"] == str(issued.session_id)
    if datetime.now(UTC) >= issued.expires_at:
        pytest.skip("the feed went live too late to hold the token before it expired")
    await from_memory(client, probe, seeded, ALICES, headers)
    wait = (issued.expires_at - datetime.now(UTC)).total_seconds() + 1.5
    await asyncio.sleep(max(wait, 0))
    assert_error(await client.get(ME, headers=headers), 401, "unauthorized")
    assert_error(await client.get(ALICES, headers=headers), 401, "unauthorized")


@memory_stack
@pytest.mark.parametrize("path", [MENU, ME, ALICES])
async def test_without_an_invalidation_feed_only_the_route_answers(
    client: httpx.AsyncClient, probe: Probe, seeded: Runtime, alice: dict[str, str], path: str
) -> None:
    first = await by_route(client, probe, path, alice)
    assert first.status_code == 200
    for _ in range(5):
        again = await by_route(client, probe, path, alice)
        same_answer(again, first)
    assert local_hits(seeded) == 0


# --- 3. metrics and request ids --------------------------------------------------------------


def requests_counted(text: str, route: str, status: str = "200") -> float:
    series = f'ogcache_http_requests_total{{method="GET",route="{route}",status="{status}"}}'
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


@redis_stack
@pytest.mark.parametrize(
    ("path", "route"),
    [(ALICES, "/api/profiles/{user_id}"), (ME, "/api/auth/me"), (MENU, "/api/menu")],
)
async def test_answers_from_memory_are_counted_under_the_route_template(
    client: httpx.AsyncClient,
    probe: Probe,
    seeded: Runtime,
    alice: dict[str, str],
    path: str,
    route: str,
) -> None:
    await from_memory(client, probe, seeded, path, alice)
    before = requests_counted((await client.get("/metrics")).text, route)
    ids = set()
    for _ in range(3):
        runs = probe.runs
        response = await client.get(path, headers=alice)
        assert probe.runs == runs  # answered from memory
        assert response.status_code == 200
        ids.add(response.headers["x-request-id"])
    assert len(ids) == 3
    assert all(ids)
    text = (await client.get("/metrics")).text
    assert requests_counted(text, route) == before + 3
    assert requests_counted(text, "<unmatched>") == 0
    assert ALICE not in text


@redis_stack
async def test_a_request_id_sent_is_echoed_on_an_answer_from_memory(
    client: httpx.AsyncClient, probe: Probe, seeded: Runtime, alice: dict[str, str]
) -> None:
    await from_memory(client, probe, seeded, ALICES, alice)
    runs = probe.runs
    response = await client.get(ALICES, headers={**alice, "X-Request-ID": "hot-read-id-42"})
    assert probe.runs == runs
    assert response.headers["x-request-id"] == "hot-read-id-42"


# --- 4. a request served from the cache opens no database connection ------------------------


@redis_stack
@pytest.mark.parametrize("tier", ["in-process", "redis"])
async def test_a_request_served_from_the_cache_opens_no_database_connection(
    seeded: Runtime, alice: dict[str, str], tier: str
) -> None:
    """From the in-process tier (before the router) and from Redis (through the routes: the
    tier off), a cached read checks out no connection from the database pool."""
    from sqlalchemy import event

    off = {"local_ttl_auth": 0, "local_ttl_profile": 0, "local_ttl_menu": 0}
    settings = seeded.settings.model_copy(update=off if tier == "redis" else {})
    async with Runtime.open(settings) as runtime, client_for(create_app(runtime=runtime)) as http:
        for _ in range(3):  # cached now (and in the tier, once its feed is live)
            for path, headers in ((MENU, None), (ME, alice), (ALICES, alice)):
                assert (await http.get(path, headers=headers)).status_code == 200
        await asyncio.sleep(0.5)
        checkouts: list[object] = []
        pool_events = runtime.engine.sync_engine.pool
        listener = lambda *args: checkouts.append(args)  # noqa: E731
        event.listen(pool_events, "checkout", listener)
        try:
            for _ in range(20):
                for path, headers in ((MENU, None), (ME, alice), (ALICES, alice)):
                    assert (await http.get(path, headers=headers)).status_code == 200
        finally:
            event.remove(pool_events, "checkout", listener)
        assert checkouts == []
        stats = runtime.cache.stats()
        assert stats["menu"].hits >= 20
        if tier == "redis":
            assert sum(s.local_hits for s in stats.values()) == 0
