"""The quick-start demonstration: the same reads with and without the cache, side by side.

Each operation is timed alternately as a miss (its cache entry dropped first, so the call goes
to the database and caches the result) and as a hit (the very next call), many times in one
run, and medians are compared. Nothing is estimated; every figure printed is measured here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ogcache.cache import Namespace
from ogcache.runtime import Runtime
from ogcache.schemas import ConversationCreate, MessageCreate

__all__ = ["DemoRow", "run_demo"]

DEMO_USER = "web_demo_alice"


@dataclass(frozen=True, slots=True)
class DemoRow:
    operation: str
    uncached_ms: float
    cached_ms: float

    @property
    def speedup(self) -> float:
        return self.uncached_ms / self.cached_ms if self.cached_ms else float("inf")


async def _measure(
    runtime: Runtime,
    call: Callable[[], Awaitable[Any]],
    entries: list[tuple[Namespace[Any], str]],
    rounds: int,
) -> tuple[float, float]:
    misses: list[float] = []
    hits: list[float] = []
    await call()
    for _ in range(rounds):
        await runtime.cache.invalidate(entries)
        start = time.perf_counter()
        await call()
        misses.append(time.perf_counter() - start)
        start = time.perf_counter()
        await call()
        hits.append(time.perf_counter() - start)
    return statistics.median(misses) * 1000, statistics.median(hits) * 1000


async def run_demo(runtime: Runtime, rounds: int = 200) -> list[DemoRow]:
    """Measure the seed's operations on ``runtime``'s database and cache."""
    ns = runtime.namespaces
    token = await runtime.auth.issue_token(DEMO_USER)
    recent = await runtime.conversations.recent(DEMO_USER)
    if recent:
        conversation_id = recent[0].id
    else:
        created = await runtime.conversations.create(
            ConversationCreate(user_id=DEMO_USER, channel="web")
        )
        await runtime.conversations.add_message(
            created.id, MessageCreate(role="user", content="What is good for sleep?")
        )
        conversation_id = created.id
    digest_entries: list[tuple[Namespace[Any], str]] = [
        (ns.auth_token, _digest(token.access_token)),
        (ns.auth_session, str(token.session_id)),
    ]
    operations: list[tuple[str, Callable[[], Awaitable[Any]], list[tuple[Namespace[Any], str]]]] = [
        ("Auth check", lambda: runtime.auth.verify(token.access_token), digest_entries),
        ("User profile", lambda: runtime.profiles.get(DEMO_USER), [(ns.profile, DEMO_USER)]),
        (
            "Conversation",
            lambda: runtime.conversations.get(conversation_id),
            [(ns.conversation, str(conversation_id))],
        ),
        (
            "Menu (with concentrates)",
            lambda: runtime.menu.get_menu(include_concentrates=True),
            [(ns.menu, "items:concentrates")],
        ),
        (
            "Menu context text",
            lambda: runtime.menu.get_context(),
            [(ns.menu, "items"), (ns.menu_context, "text")],
        ),
    ]
    rows = []
    for name, call, entries in operations:
        uncached, cached = await _measure(runtime, call, entries, rounds)
        rows.append(DemoRow(name, uncached, cached))
    await runtime.auth.revoke_session(token.session_id)
    return rows


def _digest(token: str) -> str:
    from ogcache.services.auth import token_digest

    return token_digest(token)
