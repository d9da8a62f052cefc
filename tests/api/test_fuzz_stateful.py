"""Stateful fuzzing on PostgreSQL + Redis: sequences of calls that follow the schema's links
(create a profile, then read, patch, delete it; start a conversation, add messages, page
them; store a session, then read and change it), with deeply nested JSON slipped into the
bodies that take JSON. Two properties, whoever calls: no 5xx, and what was accepted can be
read back (a record that answers 200 on write and fails or vanishes on read is poisoned).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from hypothesis.stateful import Bundle
from schemathesis import Case
from schemathesis.core.transport import Response
from schemathesis.generation.stateful.state_machine import StepInput
from schemathesis.specs.openapi.stateful import is_root_allowed, transition

from ogcache.api.app import create_app
from ogcache.config import load_settings
from ogcache.runtime import Runtime
from tests.api.conftest import ADMIN_TOKEN, ALICE, NIRAN
from tests.api.test_fuzz import deepen, run
from tests.services.conftest import TEST_JWT_SECRET
from tests.support.databases import create_postgres_database, drop_postgres_database

pytestmark = pytest.mark.slow

MIN_STEPS = 300

# A successful write, and the read that must then succeed with the same caller.
READ_BACK = {
    ("PATCH", "/api/profiles/{user_id}"): ("GET", "/api/profiles/{user_id}"),
    ("POST", "/api/profiles"): ("GET", "/api/profiles/{user_id}"),
    ("PUT", "/api/sessions/{session_id}"): ("GET", "/api/sessions/{session_id}"),
    ("PATCH", "/api/sessions/{session_id}"): ("GET", "/api/sessions/{session_id}"),
    ("POST", "/api/conversations"): ("GET", "/api/conversations/{conversation_id}"),
    ("POST", "/api/conversations/{conversation_id}/messages"): (
        "GET",
        "/api/conversations/{conversation_id}",
    ),
}


@pytest.fixture
def stack_url(postgres_url: str) -> Iterator[str]:
    url = run(lambda: create_postgres_database(postgres_url))
    yield url
    run(lambda: drop_postgres_database(postgres_url, url))


def test_call_sequences_never_fail_and_what_is_accepted_reads_back(
    stack_url: str, redis_url: str
) -> None:
    fuzz_settings = load_settings(
        _env_file=None,
        database_url=stack_url,
        redis_url=redis_url,
        cache_prefix=f"fuzz{random.randrange(10**9)}",
        jwt_secret=TEST_JWT_SECRET,
        admin_token=ADMIN_TOKEN,
        seed_demo_data=True,
        refresh_interval=0,
    )

    async def prepare() -> dict[str, str]:
        async with Runtime.open(fuzz_settings) as runtime:
            await runtime.migrate()
            from ogcache.db.seed import seed_demo_data

            await seed_demo_data(runtime.db)
            return {
                "admin": ADMIN_TOKEN,
                **{u: (await runtime.auth.issue_token(u)).access_token for u in (ALICE, NIRAN)},
            }

    tokens = run(prepare)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(fuzz_settings))
    callers = list(tokens)

    generated = schema.as_state_machine()
    # Schemathesis' inference picks the roots (calls made with generated data, no link in): it
    # takes only the message POST here. Creating a profile and storing a session are the real
    # starting points of this API, so they are roots too.
    roots = {"POST /api/profiles": ("/api/profiles", "POST")}
    roots["PUT /api/sessions/{session_id}"] = ("/api/sessions/{session_id}", "PUT")
    extra_rules = {
        f"RANDOM_{n}": transition(
            name=f"RANDOM_{n}",
            target=Bundle("catch_all"),
            precondition=is_root_allowed(label),
            input=schema[path][method].as_strategy().map(StepInput.initial),
        )
        for n, (label, (path, method)) in enumerate(roots.items())
    }
    base = type(
        "Generated",
        (generated,),
        {
            "root_rules": generated.root_rules | set(extra_rules),
            **extra_rules,
        },
    )

    # Violations are collected, not raised: the server's state outlives each scenario, so a
    # replay by Hypothesis (to shrink) would not see the same responses. Every scenario runs
    # once, and the test fails at the end with every violation seen.
    violations: list[str] = []
    called: set[tuple[str, str]] = set()
    linked: set[tuple[str, str]] = set()
    steps = [0]

    class Workflow(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            super().__init__()
            # The controller spreads calls between the roots it knows: ours are roots too.
            self.control.roots = frozenset(self.control.roots) | set(roots)

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            rng = random.Random(case.id)
            caller = "admin" if rng.random() < 0.6 else rng.choice(callers)
            return {"headers": {"Authorization": f"Bearer {tokens[caller]}"}}

        def before_call(self, case: Case) -> None:
            rng = random.Random(f"deep-{case.id}")
            if rng.random() < 0.4:
                deepen(case, rng)

        def step(self, input: StepInput) -> Any:
            operation = (input.case.operation.method.upper(), input.case.operation.path)
            called.add(operation)
            steps[0] += 1
            if input.transition is not None and input.is_applied:
                linked.add(operation)
            return super().step(input)

        def validate_response(self, response: Response, case: Case, **kwargs: Any) -> None:
            what = f"{case.method} {case.formatted_path} {str(case.body)[:120]}"
            if response.status_code >= 500:
                violations.append(f"{what} -> {response.status_code}: {response.text[:300]}")
                return
            read = READ_BACK.get((case.operation.method.upper(), case.operation.path))
            if read is None or response.status_code >= 300:
                return
            body = response.json()
            ids = {
                "user_id": body.get("user_id"),
                "session_id": body.get("session_id"),
                "conversation_id": body.get("conversation_id", body.get("id")),
            }
            method, path = read
            # The same owner: an admin's ?user_id= names whose session was written.
            query = {k: v for k, v in (case.query or {}).items() if k == "user_id"}
            back = schema[path][method].Case(
                path_parameters={k: v for k, v in ids.items() if "{" + k + "}" in path},
                query=query or None,
            )
            again = back.call(**kwargs)
            if again.status_code != 200:
                violations.append(
                    f"{what} -> {response.status_code}, then {method} {back.formatted_path} -> "
                    f"{again.status_code}: {again.text[:300]}"
                )

    # Hypothesis may notice that the server's state changed its draws and stop a run early:
    # runs are repeated until enough calls were made (the violations tell all).
    for _ in range(20):
        with contextlib.suppress(Flaky):
            Workflow.run(
                settings=settings(
                    max_examples=50,
                    stateful_step_count=8,
                    deadline=None,
                    database=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
            )
        if steps[0] >= MIN_STEPS:
            break
    assert not violations, "\n".join(violations)
    # The fuzz reached what it is for: the roots that create records, and links out of them.
    assert {("POST", "/api/profiles"), ("PUT", "/api/sessions/{session_id}")} <= called
    assert len(linked) >= 3, f"links followed into only {sorted(linked)}"
    assert steps[0] >= MIN_STEPS
