"""Property-based fuzzing of every operation of the app's own OpenAPI schema: no 5xx, ever.

Schemathesis generates valid and invalid requests for each operation. The app runs with its
own lifespan (migrate, seed, warm-up) on a SQLite file and the in-process cache, as
``ogcache serve --demo`` does, on schemathesis' own event loop thread.

Random data mostly stops at authentication or at a 404, so each case is steered part of the
time towards what exists: it is sent as the admin, as a demo user, or with whatever
credentials it was generated with; path parameters sometimes name a demo user, a seeded
conversation or a stored session; cache actions are sometimes valid ones; and a quarter of
the bodies that take JSON get a value nested 1 to 1,000 levels deep. Demo users are
reset and given fresh tokens before each operation, since an earlier one may have logged
them out, blocked or deleted them.
"""

from __future__ import annotations

import asyncio
import atexit
import random
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import Case
from sqlalchemy import select

from ogcache.api.app import create_app
from ogcache.api.routes.cache import ACTIONS
from ogcache.config import load_settings
from ogcache.db.models import Conversation
from ogcache.db.seed import seed_demo_data
from ogcache.runtime import Runtime
from ogcache.schemas import ProfileUpdate
from tests.api.conftest import ADMIN_TOKEN, ALICE, DIMA, NIRAN
from tests.services.conftest import TEST_JWT_SECRET

pytestmark = pytest.mark.slow

T = TypeVar("T")

# Demo users who get tokens, and demo users the admin may block or delete while fuzzing.
TOKEN_HOLDERS = (ALICE, NIRAN, DIMA)
OTHERS = ("tg_100000002", "web_demo_blocked")
SESSION_ID = "fuzz_session_0001"

FUZZ_DIRECTORY = Path(tempfile.mkdtemp(prefix="ogcache-fuzz-"))
# Removed at exit, after schemathesis (registered later, so run earlier) has stopped the app;
# also when the fuzz is deselected and only this module's import ran.
atexit.register(shutil.rmtree, FUZZ_DIRECTORY, ignore_errors=True)
FUZZ_SETTINGS = load_settings(
    _env_file=None,
    database_url=f"sqlite:///{FUZZ_DIRECTORY / 'ogcache.db'}",
    redis_url=None,
    jwt_secret=TEST_JWT_SECRET,
    admin_token=ADMIN_TOKEN,
    seed_demo_data=True,
    refresh_interval=0,
)


def run(coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a loop of its own, away from this thread's (pytest-asyncio's)."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine()).result()


@dataclass(frozen=True, slots=True)
class Known:
    tokens: dict[str, str]
    conversations: list[str]


async def reset_demo_users() -> Known:
    """Seed what is missing, unblock the token holders, issue them tokens; the seeded
    conversations' ids. (The app's lifespan seeds too; both are idempotent.)"""
    async with Runtime.open(FUZZ_SETTINGS) as runtime:
        await runtime.migrate()
        await seed_demo_data(runtime.db)
        tokens = {}
        for user in TOKEN_HOLDERS:
            if (await runtime.profiles.require(user)).is_blocked:
                await runtime.profiles.update(user, ProfileUpdate(is_blocked=False))
            tokens[user] = (await runtime.auth.issue_token(user)).access_token
        async with runtime.db() as session:
            conversations = [str(id_) for id_ in await session.scalars(select(Conversation.id))]
    return Known(tokens, conversations)


run(reset_demo_users)
app = create_app(FUZZ_SETTINGS)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture
def known() -> Known:
    return run(reset_demo_users)


def authorization(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Depths around the request limit (32), and the depths that broke the cache's codec before.
DEPTHS = (1, 31, 32, 33, 100, 240, 255, 300, 1000)


def nested(depth: int, rng: random.Random) -> Any:
    """A JSON value ``depth`` levels deep, lists and objects mixed."""
    value: Any = rng.choice([0, "leaf", None, 1.5])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def deepen(case: Case, rng: random.Random) -> None:
    """Put a deeply nested value where the operation's body takes JSON."""
    method, path = case.operation.method.upper(), case.operation.path
    deep = nested(rng.choice(DEPTHS), rng)
    if (method, path) == ("PATCH", "/api/profiles/{user_id}"):
        case.body = {"preferences": {"deep": deep}}
    elif (method, path) == ("PUT", "/api/sessions/{session_id}"):
        case.body = {"deep": deep}
    elif (method, path) == ("PATCH", "/api/sessions/{session_id}"):
        case.body = {"field": "deep", "value": deep}
    elif (method, path) == ("POST", "/api/cache"):
        case.body = {"action": deep}
    elif (method, path) == ("POST", "/api/conversations/{conversation_id}/messages"):
        case.body = {"role": "user", "content": deep}


def steer(case: Case, draw: Callable[..., Any], known: Known, headers: dict[str, str]) -> None:
    """Point some of the case's parameters at records that exist."""
    params = case.path_parameters
    if params and "user_id" in params and draw(st.booleans(), "existing user"):
        # Token holders are not deleted: their tokens would die for the rest of the operation.
        users = OTHERS if case.method == "DELETE" else TOKEN_HOLDERS + OTHERS
        params["user_id"] = draw(st.sampled_from(users), "user_id")
    if params and "conversation_id" in params and draw(st.booleans(), "existing conversation"):
        params["conversation_id"] = draw(st.sampled_from(known.conversations), "conversation")
    if params and "session_id" in params and draw(st.booleans(), "stored session"):
        params["session_id"] = SESSION_ID
        if case.method != "PUT":
            store = schema["/api/sessions/{session_id}"]["PUT"].Case(
                path_parameters={"session_id": SESSION_ID}, body={"step": 1}
            )
            assert store.call(headers=headers).status_code < 500
    body = case.body if isinstance(case.body, dict) else {}
    if "user_id" in body and draw(st.booleans(), "body names an existing user"):
        body["user_id"] = draw(st.sampled_from(TOKEN_HOLDERS + OTHERS), "body user_id")
    if case.path == "/api/cache" and "action" in body and draw(st.booleans(), "valid action"):
        body["action"] = draw(st.sampled_from(ACTIONS), "action")
    if draw(st.integers(0, 3), "deeply nested body") == 0:
        deepen(case, random.Random(draw(st.integers(0, 2**32), "nesting seed")))


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_makes_the_server_fail(case: Case, data: st.DataObject, known: Known) -> None:
    caller = data.draw(st.sampled_from(["admin", "user", "as generated"]), "caller")
    headers: dict[str, str] = {}
    if caller == "admin":
        headers = authorization(ADMIN_TOKEN)
    elif caller == "user":
        headers = authorization(known.tokens[data.draw(st.sampled_from(TOKEN_HOLDERS), "user")])
    steer(case, data.draw, known, headers)
    response = case.call(headers=headers)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )
