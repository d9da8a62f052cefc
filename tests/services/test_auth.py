"""Auth: bearer tokens verified through the cache, keyed by the token's SHA-256 only.

Every cached success must be dropped by logout, revocation, blocking and deletion; nothing
about a failed verification is ever cached; the raw token is never stored.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from redis.asyncio import Redis

from ogcache.cache import (
    MISSING,
    BackendOptions,
    CacheBackend,
    Namespace,
    create_backend,
)
from ogcache.config import Settings
from ogcache.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from ogcache.runtime import Runtime
from ogcache.schemas import AuthIdentity, IssuedToken, ProfileUpdate, SessionState
from ogcache.services.auth import token_digest
from tests.services.conftest import TEST_JWT_SECRET
from tests.support.databases import empty_all_tables

OTHER_SECRET = "another-secret-that-is-long-enough-for-hs256-98765"

# --- the runtime: on the memory stack, a store that can say what it was given ---------------


class RecordingBackend:
    """A store that remembers every key written to it and until when it is kept, for the
    checks below that read the store itself: the memory store can list neither (Redis can).
    Everything else is the wrapped store's own answer."""

    def __init__(self, inner: CacheBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.deadlines: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self.deadlines[key] = time.monotonic() + ttl  # taken first: never past the store's
        await self.inner.set(key, value, ttl)

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        now = time.monotonic()
        self.deadlines.update((key, now + ttl) for key, _, ttl in items)
        await self.inner.set_many(items)

    async def add(self, key: str, value: bytes, ttl: float) -> bytes | None:
        deadline = time.monotonic() + ttl
        existing = await self.inner.add(key, value, ttl)
        if existing is None:
            self.deadlines[key] = deadline
        return existing

    async def replace_if(
        self, key: str, expected: bytes, offset: int, value: bytes | None, ttl: float
    ) -> bool:
        deadline = time.monotonic() + ttl
        replaced = await self.inner.replace_if(key, expected, offset, value, ttl)
        if replaced and value is not None:
            self.deadlines[key] = deadline
        return replaced

    async def held(self, prefix: str) -> list[tuple[str, bytes]]:
        """The keys written under ``prefix`` that the store still holds, with their values."""
        keys = [key for key in self.deadlines if key.startswith(prefix)]
        values = await self.inner.get_many(keys)
        return [(key, value) for key, value in zip(keys, values, strict=True) if value is not None]


@pytest.fixture
async def runtime(stack_settings: Settings) -> AsyncIterator[Runtime]:
    """The services' runtime (as in conftest), its memory store wrapped in a RecordingBackend."""
    backend = None
    if stack_settings.redis_url is None:
        options = BackendOptions(
            memory_max_entries=stack_settings.memory_cache_max_entries,
            memory_max_bytes=stack_settings.memory_cache_max_bytes,
        )
        backend = RecordingBackend(create_backend(None, options))
    app = Runtime.open(stack_settings, backend=backend)
    yield app
    await app.cache.clear()
    await empty_all_tables(app.engine)
    await app.close()


# --- helpers -----------------------------------------------------------------------------


def claims_for(user_id: str, session_id: uuid.UUID | str, *, lifetime: int = 3600) -> dict:
    """Claims in the order ``issue_token`` writes them."""
    now = int(time.time())
    return {
        "sub": user_id,
        "session_id": str(session_id),
        "role": "authenticated",
        "aud": "authenticated",
        "iss": "ogcache",
        "iat": now,
        "exp": now + lifetime,
    }


def sign(claims: dict[str, Any], secret: str = TEST_JWT_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def flip(char: str) -> str:
    return "B" if char == "A" else "A"


async def issue(runtime: Runtime, user_id: str = "web_alice", **kwargs: Any) -> IssuedToken:
    await runtime.profiles.get_or_create(user_id=user_id)
    return await runtime.auth.issue_token(user_id, **kwargs)


async def cached_entries(runtime: Runtime, token: str, session_id: uuid.UUID) -> tuple[Any, Any]:
    ns = runtime.namespaces
    return (
        await runtime.cache.get(ns.auth_token, token_digest(token)),
        await runtime.cache.get(ns.auth_session, str(session_id)),
    )


async def stored_items(runtime: Runtime) -> list[tuple[str, bytes]]:
    """Every (key, value) this runtime's cache holds, read straight from the store."""
    prefix = f"{runtime.cache.prefix}:"
    backend = runtime.cache.backend
    if isinstance(backend, RecordingBackend):
        return await backend.held(prefix)
    assert runtime.settings.redis_url is not None
    client = Redis.from_url(runtime.settings.redis_url)
    try:
        items = []
        async for key in client.scan_iter(match=f"{prefix}*"):
            items.append((key.decode(), await client.get(key) or b""))
        return items
    finally:
        await client.aclose()


async def remaining_ttl(runtime: Runtime, full_key: str) -> float:
    """Seconds the store will keep ``full_key``."""
    backend = runtime.cache.backend
    if isinstance(backend, RecordingBackend):
        return backend.deadlines[full_key] - time.monotonic()
    assert runtime.settings.redis_url is not None
    client = Redis.from_url(runtime.settings.redis_url)
    try:
        milliseconds = await client.pttl(full_key)
    finally:
        await client.aclose()
    assert milliseconds > 0, f"{full_key} has no TTL ({milliseconds})"
    return float(milliseconds) / 1000


# --- the happy path and the cache ---------------------------------------------------------


async def test_verify_returns_the_identity_of_an_issued_token(runtime: Runtime) -> None:
    profile = await runtime.profiles.get_or_create(user_id="web_alice")
    issued = await runtime.auth.issue_token("web_alice", role="admin")
    identity = await runtime.auth.verify(issued.access_token)
    assert identity == AuthIdentity(
        user_id="web_alice",
        profile_id=profile.id,
        session_id=issued.session_id,
        role="admin",
        expires_at=issued.expires_at,
    )
    assert issued.token_type == "bearer"
    assert issued.user_id == "web_alice"


async def test_second_verify_is_a_hit_in_both_auth_namespaces(runtime: Runtime) -> None:
    issued = await issue(runtime)
    runtime.cache.reset_stats()
    first = await runtime.auth.verify(issued.access_token)
    second = await runtime.auth.verify(issued.access_token)
    assert first == second
    stats = runtime.cache.stats()
    for name in ("auth:token", "auth:session"):
        assert (stats[name].misses, stats[name].hits, stats[name].sets) == (1, 1, 1), name


async def test_identity_is_cached_under_the_sha256_of_the_whole_token(runtime: Runtime) -> None:
    issued = await issue(runtime)
    identity = await runtime.auth.verify(issued.access_token)
    ns = runtime.namespaces
    assert await runtime.cache.get(ns.auth_token, token_digest(issued.access_token)) == identity
    state = await runtime.cache.get(ns.auth_session, str(issued.session_id))
    assert state == SessionState(session_id=issued.session_id, user_id="web_alice", active=True)
    keys = {key for key, _ in await stored_items(runtime)}
    assert runtime.cache.full_key(ns.auth_token, token_digest(issued.access_token)) in keys


async def test_the_raw_token_and_its_prefix_are_stored_nowhere(runtime: Runtime) -> None:
    issued = await issue(runtime)
    await runtime.auth.verify(issued.access_token)
    await runtime.auth.verify(issued.access_token)
    token = issued.access_token.encode()
    items = await stored_items(runtime)
    assert len(items) >= 2
    for key, value in items:
        for needle in (token, token[:50]):
            assert needle not in key.encode(), key
            assert needle not in value, key


async def test_the_token_is_never_logged(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    issued = await issue(runtime)
    with caplog.at_level(logging.DEBUG, logger="ogcache"):
        await runtime.auth.verify(issued.access_token)
        await runtime.auth.verify(issued.access_token)
        await runtime.auth.logout(issued.access_token)
        with pytest.raises(AuthenticationError):
            await runtime.auth.verify(issued.access_token)
    assert caplog.records
    logged = caplog.text + "".join(repr(record.__dict__) for record in caplog.records)
    assert issued.access_token[:50] not in logged
    assert token_digest(issued.access_token) not in logged


async def test_tokens_sharing_their_first_50_characters_resolve_to_their_own_users(
    runtime: Runtime,
) -> None:
    users = ["user_" + "a" * 40 + "1", "user_" + "a" * 40 + "2"]
    tokens = []
    for user_id in users:
        session_id = (await issue(runtime, user_id)).session_id
        tokens.append(sign(claims_for(user_id, session_id)))
    assert tokens[0] != tokens[1]
    assert tokens[0][:50] == tokens[1][:50]

    for _ in range(2):  # the first round loads from the database, the second from the cache
        for user_id, token in zip(users, tokens, strict=True):
            assert (await runtime.auth.verify(token)).user_id == user_id
    assert runtime.cache.stats()["auth:token"].hits == 2


# --- tokens that must be rejected ---------------------------------------------------------


async def test_an_expired_token_is_rejected_even_with_a_valid_cached_entry(
    runtime: Runtime,
) -> None:
    profile = await runtime.profiles.get_or_create(user_id="web_alice")
    issued = await runtime.auth.issue_token("web_alice")
    claims = claims_for("web_alice", issued.session_id)
    claims["exp"] = int(time.time()) - 10
    expired = sign(claims)
    ns = runtime.namespaces
    identity = AuthIdentity(
        user_id="web_alice",
        profile_id=profile.id,
        session_id=issued.session_id,
        role="authenticated",
        expires_at=datetime.now(UTC),
    )
    state = SessionState(session_id=issued.session_id, user_id="web_alice", active=True)
    await runtime.cache.set(ns.auth_token, token_digest(expired), identity)
    await runtime.cache.set(ns.auth_session, str(issued.session_id), state)

    with pytest.raises(AuthenticationError, match="expired"):
        await runtime.auth.verify(expired)


async def test_cached_identity_lives_no_longer_than_the_token(runtime: Runtime) -> None:
    issued = await issue(runtime, ttl=2)
    await runtime.auth.verify(issued.access_token)
    ns = runtime.namespaces
    for full_key in (
        runtime.cache.full_key(ns.auth_token, token_digest(issued.access_token)),
        runtime.cache.full_key(ns.auth_session, str(issued.session_id)),
    ):
        assert 0 < await remaining_ttl(runtime, full_key) <= 2.0

    await asyncio.sleep(2.5)

    assert await cached_entries(runtime, issued.access_token, issued.session_id) == (
        MISSING,
        MISSING,
    )
    with pytest.raises(AuthenticationError, match="expired"):
        await runtime.auth.verify(issued.access_token)


@pytest.mark.parametrize("part", ["payload", "signature"])
async def test_a_tampered_token_is_rejected(runtime: Runtime, part: str) -> None:
    issued = await issue(runtime)
    await runtime.auth.verify(issued.access_token)  # a cached entry exists for the original
    header, payload, signature = issued.access_token.split(".")
    if part == "payload":
        middle = len(payload) // 2
        payload = payload[:middle] + flip(payload[middle]) + payload[middle + 1 :]
    else:
        middle = len(signature) // 2
        signature = signature[:middle] + flip(signature[middle]) + signature[middle + 1 :]
    tampered = f"{header}.{payload}.{signature}"
    assert tampered != issued.access_token
    with pytest.raises(AuthenticationError):
        await runtime.auth.verify(tampered)


async def test_a_token_with_a_swapped_subject_keeps_no_valid_signature(runtime: Runtime) -> None:
    issued = await issue(runtime)
    await issue(runtime, "web_mallory")
    header, _, signature = issued.access_token.split(".")
    forged = f"{header}.{b64(claims_for('web_mallory', issued.session_id))}.{signature}"
    with pytest.raises(AuthenticationError, match="signature"):
        await runtime.auth.verify(forged)


async def test_a_token_signed_with_another_secret_is_rejected(runtime: Runtime) -> None:
    issued = await issue(runtime)
    token = sign(claims_for("web_alice", issued.session_id), OTHER_SECRET)
    with pytest.raises(AuthenticationError, match="signature"):
        await runtime.auth.verify(token)


async def test_an_unsigned_alg_none_token_is_rejected(runtime: Runtime) -> None:
    issued = await issue(runtime)
    token = jwt.encode(claims_for("web_alice", issued.session_id), None, algorithm="none")
    with pytest.raises(AuthenticationError):
        await runtime.auth.verify(token)
    header = b64({"alg": "none", "typ": "JWT"})
    stripped = f"{header}.{issued.access_token.split('.')[1]}."
    with pytest.raises(AuthenticationError):
        await runtime.auth.verify(stripped)


@pytest.mark.parametrize("claim", ["sub", "session_id", "exp", "aud"])
async def test_a_token_missing_a_claim_is_rejected(runtime: Runtime, claim: str) -> None:
    issued = await issue(runtime)
    claims = claims_for("web_alice", issued.session_id)
    del claims[claim]
    with pytest.raises(AuthenticationError):
        await runtime.auth.verify(sign(claims))


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("session_id", "not-a-uuid"),
        ("session_id", 12345),
        ("sub", 12345),
        ("aud", "service_role"),
        ("exp", "tomorrow"),
    ],
)
async def test_a_token_with_a_malformed_claim_is_rejected(
    runtime: Runtime, claim: str, value: object
) -> None:
    issued = await issue(runtime)
    claims = claims_for("web_alice", issued.session_id)
    claims[claim] = value
    with pytest.raises(AuthenticationError):
        await runtime.auth.verify(sign(claims))


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 10_000])
async def test_malformed_bearer_strings_are_rejected(runtime: Runtime, token: str) -> None:
    with pytest.raises(AuthenticationError):
        await runtime.auth.verify(token)


async def test_a_token_for_an_unknown_session_is_rejected(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    with pytest.raises(AuthenticationError, match="session not found"):
        await runtime.auth.verify(sign(claims_for("web_alice", uuid.uuid4())))


async def test_a_token_naming_another_users_session_is_rejected(runtime: Runtime) -> None:
    alice = await issue(runtime, "web_alice")
    await issue(runtime, "web_mallory")
    await runtime.auth.verify(alice.access_token)  # alice's session state is cached as active
    forged = sign(claims_for("web_mallory", alice.session_id))
    with pytest.raises(AuthenticationError, match="does not own"):
        await runtime.auth.verify(forged)
    with pytest.raises(AuthenticationError, match="does not own"):
        await runtime.auth.verify(forged)


# --- logout, revocation, blocking, deletion ------------------------------------------------


async def test_logout_makes_the_very_next_verify_fail(runtime: Runtime) -> None:
    issued = await issue(runtime)
    await runtime.auth.verify(issued.access_token)
    await runtime.auth.verify(issued.access_token)  # served from the cache
    await runtime.auth.logout(issued.access_token)
    with pytest.raises(AuthenticationError, match="revoked"):
        await runtime.auth.verify(issued.access_token)


async def test_logout_ends_the_session_even_if_the_identity_entry_stays_cached(
    runtime: Runtime,
) -> None:
    issued = await issue(runtime)
    identity = await runtime.auth.verify(issued.access_token)
    await runtime.auth.logout(issued.access_token)
    # Put the identity back, as a concurrent request or a stale replica could.
    ns = runtime.namespaces
    await runtime.cache.set(ns.auth_token, token_digest(issued.access_token), identity)
    with pytest.raises(AuthenticationError, match="revoked"):
        await runtime.auth.verify(issued.access_token)


async def test_revoke_session_ends_every_token_of_the_session(runtime: Runtime) -> None:
    issued = await issue(runtime)
    sibling = sign(claims_for("web_alice", issued.session_id, lifetime=600))
    other = await runtime.auth.issue_token("web_alice")
    for token in (issued.access_token, sibling, other.access_token):
        await runtime.auth.verify(token)
        await runtime.auth.verify(token)

    await runtime.auth.revoke_session(issued.session_id)

    for token in (issued.access_token, sibling):
        with pytest.raises(AuthenticationError, match="revoked"):
            await runtime.auth.verify(token)
    assert (await runtime.auth.verify(other.access_token)).session_id == other.session_id


async def test_logout_with_one_token_ends_its_siblings(runtime: Runtime) -> None:
    issued = await issue(runtime)
    sibling = sign(claims_for("web_alice", issued.session_id, lifetime=600))
    await runtime.auth.verify(sibling)
    await runtime.auth.logout(issued.access_token)
    with pytest.raises(AuthenticationError, match="revoked"):
        await runtime.auth.verify(sibling)


async def test_blocking_ends_a_cached_token_and_unblocking_restores_it(runtime: Runtime) -> None:
    issued = await issue(runtime)
    await runtime.auth.verify(issued.access_token)
    await runtime.auth.verify(issued.access_token)

    await runtime.profiles.update("web_alice", ProfileUpdate(is_blocked=True))
    with pytest.raises(AuthenticationError, match="blocked"):
        await runtime.auth.verify(issued.access_token)

    await runtime.profiles.update("web_alice", ProfileUpdate(is_blocked=False))
    assert (await runtime.auth.verify(issued.access_token)).user_id == "web_alice"


async def test_deleting_the_profile_ends_its_cached_tokens(runtime: Runtime) -> None:
    issued = await issue(runtime)
    await runtime.auth.verify(issued.access_token)
    await runtime.profiles.delete("web_alice")
    with pytest.raises(AuthenticationError):
        await runtime.auth.verify(issued.access_token)


async def test_a_failed_verification_caches_nothing(runtime: Runtime) -> None:
    # A blocked user, a revoked session, an unknown session, a stranger's session: each
    # token is rejected by the database check, and neither auth entry may appear.
    blocked = await issue(runtime, "web_blocked")
    await runtime.profiles.update("web_blocked", ProfileUpdate(is_blocked=True))
    revoked = await issue(runtime, "web_revoked")
    await runtime.auth.revoke_session(revoked.session_id)
    unknown_session = uuid.uuid4()
    alice = await issue(runtime, "web_alice")
    cases = [
        (blocked.access_token, blocked.session_id),
        (revoked.access_token, revoked.session_id),
        (sign(claims_for("web_alice", unknown_session)), unknown_session),
        (sign(claims_for("web_blocked", alice.session_id)), alice.session_id),
    ]
    for token, session_id in cases:
        for _ in range(2):
            with pytest.raises(AuthenticationError):
                await runtime.auth.verify(token)
        assert await cached_entries(runtime, token, session_id) == (MISSING, MISSING)
    assert runtime.cache.stats()["auth:token"].sets == 0
    assert runtime.cache.stats()["auth:session"].sets == 0


async def _verify_while(
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    token: str,
    interleaved: Callable[[uuid.UUID], Awaitable[object]],
) -> None:
    """Verify ``token`` with ``interleaved`` run after its database check, before caching:
    just before the verification stores the identity it checked."""
    store = runtime.cache.set
    done = False

    async def interleave_then_set(
        namespace: Namespace[Any], key: str, value: Any, *args: Any
    ) -> bool:
        nonlocal done
        if namespace is runtime.namespaces.auth_token and not done:
            done = True
            await interleaved(value.session_id)
        return await store(namespace, key, value, *args)

    monkeypatch.setattr(runtime.cache, "set", interleave_then_set)
    # This verification raced the write, so either answer is fine for it...
    with contextlib.suppress(AuthenticationError):
        await runtime.auth.verify(token)
    monkeypatch.undo()
    assert done


async def test_a_logout_racing_a_verification_still_ends_the_token(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = await issue(runtime)
    await _verify_while(runtime, monkeypatch, issued.access_token, runtime.auth.revoke_session)
    # ...but it must not leave the revoked session cached as active.
    with pytest.raises(AuthenticationError, match="revoked"):
        await runtime.auth.verify(issued.access_token)


async def test_a_block_racing_a_verification_still_ends_the_token(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = await issue(runtime)

    async def block(_: uuid.UUID) -> object:
        return await runtime.profiles.update("web_alice", ProfileUpdate(is_blocked=True))

    await _verify_while(runtime, monkeypatch, issued.access_token, block)
    with pytest.raises(AuthenticationError, match="blocked"):
        await runtime.auth.verify(issued.access_token)


# --- issuing ------------------------------------------------------------------------------


async def test_issuing_for_an_unknown_user_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFoundError):
        await runtime.auth.issue_token("nobody")


async def test_issuing_for_a_blocked_user_is_a_conflict(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    await runtime.profiles.update("web_alice", ProfileUpdate(is_blocked=True))
    with pytest.raises(ConflictError, match="blocked"):
        await runtime.auth.issue_token("web_alice")


@pytest.mark.parametrize("ttl", [0, -5, 31 * 24 * 3600])
async def test_issuing_with_an_out_of_range_ttl_is_invalid(runtime: Runtime, ttl: float) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    with pytest.raises(InvalidInputError, match="ttl"):
        await runtime.auth.issue_token("web_alice", ttl=ttl)


async def test_each_issued_token_opens_its_own_session(runtime: Runtime) -> None:
    first = await issue(runtime)
    second = await runtime.auth.issue_token("web_alice")
    assert first.session_id != second.session_id
    assert first.access_token != second.access_token
