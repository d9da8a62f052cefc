"""The HTTP API over each storage stack, called in-process through ``httpx.ASGITransport``.

The runtime comes from the service tests' fixtures (a fresh keyspace per test, tables emptied
after it) with an admin token added; ``client`` is an app built around that runtime, so the
tests can look at the cache and the database behind the API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from ogcache.api.app import create_app
from ogcache.config import Settings
from ogcache.runtime import Runtime
from tests.services import conftest as services
from tests.services.conftest import make_settings

# The service tests' fixtures, made visible to these tests (pytest finds them by name here).
postgres_database = services.postgres_database
sqlite_database = services.sqlite_database
runtime = services.runtime
seeded = services.seeded

ADMIN_TOKEN = "admin-token-of-the-api-tests-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# Demo users of the seed (ogcache.db.demo_data).
ALICE = "web_demo_alice"
NIRAN = "web_demo_niran"
DIMA = "tg_100000001"
DIMA_TELEGRAM_ID = 100000001


@pytest.fixture(params=["postgresql+redis", "sqlite+memory"])
def stack_settings(request: pytest.FixtureRequest) -> Settings:
    """The service tests' stacks, with an admin token; tests using it run once per stack."""
    if request.param == "postgresql+redis":
        return make_settings(
            request.getfixturevalue("postgres_database"),
            request.getfixturevalue("redis_url"),
            admin_token=ADMIN_TOKEN,
        )
    return make_settings(request.getfixturevalue("sqlite_database"), None, admin_token=ADMIN_TOKEN)


# For tests of request validation, which answers before any store is touched: running them
# on the second stack would test nothing more.
one_stack = pytest.mark.parametrize("stack_settings", ["sqlite+memory"], indirect=True)


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
def app(seeded: Runtime) -> FastAPI:
    return create_app(runtime=seeded)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


async def bearer(app_runtime: Runtime, user_id: str) -> dict[str, str]:
    """Headers carrying a fresh access token of ``user_id``."""
    issued = await app_runtime.auth.issue_token(user_id)
    return {"Authorization": f"Bearer {issued.access_token}"}


@pytest.fixture
async def alice(seeded: Runtime) -> dict[str, str]:
    return await bearer(seeded, ALICE)


@pytest.fixture
async def niran(seeded: Runtime) -> dict[str, str]:
    return await bearer(seeded, NIRAN)


async def namespace_hits(http: httpx.AsyncClient, namespace: str) -> int:
    """Hits of one namespace, as ``GET /api/cache`` reports them."""
    response = await http.get("/api/cache")
    assert response.status_code == 200
    stats = response.json()["stats"]["namespaces"].get(namespace)
    return 0 if stats is None else stats["hits"]


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """The response is an error of ``status`` in the API's one error shape; its body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str)
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.fixture
async def no_admin_client(seeded: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An app over the same stack and data whose settings have no admin token at all."""
    settings = seeded.settings.model_copy(update={"admin_token": None})
    async with Runtime.open(settings) as other, client_for(create_app(runtime=other)) as http:
        yield http
