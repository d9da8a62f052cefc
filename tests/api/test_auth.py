"""/api/auth: who a token belongs to (cached), and logout, which ends it at once."""

from __future__ import annotations

import httpx
import jwt
import pytest

from ogcache.runtime import Runtime
from tests.api.conftest import ADMIN, ALICE, assert_error, bearer, namespace_hits, one_stack


async def test_me_answers_the_tokens_identity(client: httpx.AsyncClient, seeded: Runtime) -> None:
    issued = await seeded.auth.issue_token(ALICE)
    response = await client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {issued.access_token}"}
    )
    assert response.status_code == 200
    identity = response.json()
    assert identity["user_id"] == ALICE
    assert identity["session_id"] == str(issued.session_id)
    assert identity["role"] == "authenticated"


async def test_second_auth_check_is_a_cache_hit(client: httpx.AsyncClient, alice: dict) -> None:
    first = await client.get("/api/auth/me", headers=alice)
    tokens, sessions = (
        await namespace_hits(client, "auth:token"),
        await namespace_hits(client, "auth:session"),
    )
    second = await client.get("/api/auth/me", headers=alice)
    assert second.json() == first.json()
    assert await namespace_hits(client, "auth:token") == tokens + 1
    assert await namespace_hits(client, "auth:session") == sessions + 1


async def test_me_without_a_token_is_401_asking_for_bearer(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/me")
    assert "Bearer" in assert_error(response, 401, "unauthorized")["message"]
    assert response.headers["www-authenticate"] == "Bearer"


@one_stack
async def test_me_with_a_malformed_token_is_401(client: httpx.AsyncClient) -> None:
    for authorization in ("Bearer not-a-jwt", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "Bearer "):
        response = await client.get("/api/auth/me", headers={"Authorization": authorization})
        assert_error(response, 401, "unauthorized")


async def test_me_with_a_tampered_token_is_401(client: httpx.AsyncClient, alice: dict) -> None:
    token = alice["Authorization"].removeprefix("Bearer ")
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {tampered}"})
    assert_error(response, 401, "unauthorized")


async def test_the_admin_token_is_not_a_user_identity(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/api/auth/me", headers=ADMIN),
        await client.post("/api/auth/logout", headers=ADMIN),
    ):
        message = assert_error(response, 401, "unauthorized")["message"]
        assert "admin token has no user identity" in message
        assert "segments" not in message  # not PyJWT's words


@one_stack
async def test_a_token_that_is_not_a_jwt_says_so(client: httpx.AsyncClient) -> None:
    headers = {"Authorization": "Bearer not-a-jwt-at-all"}
    message = assert_error(await client.get("/api/auth/me", headers=headers), 401)["message"]
    assert "not an access token" in message


async def test_logout_makes_the_token_fail_on_the_very_next_request(
    client: httpx.AsyncClient, alice: dict
) -> None:
    assert (await client.get("/api/auth/me", headers=alice)).status_code == 200  # cached
    response = await client.post("/api/auth/logout", headers=alice)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await client.get("/api/auth/me", headers=alice), 401, "unauthorized")
    assert_error(await client.get(f"/api/profiles/{ALICE}", headers=alice), 401)


async def test_logout_leaves_the_users_other_sessions_alone(
    client: httpx.AsyncClient, seeded: Runtime, alice: dict
) -> None:
    other = await bearer(seeded, ALICE)
    await client.get("/api/auth/me", headers=other)
    assert (await client.post("/api/auth/logout", headers=alice)).status_code == 204
    assert (await client.get("/api/auth/me", headers=other)).status_code == 200


async def test_logging_out_twice_is_401(client: httpx.AsyncClient, alice: dict) -> None:
    await client.post("/api/auth/logout", headers=alice)
    assert_error(await client.post("/api/auth/logout", headers=alice), 401)


async def test_logout_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/auth/logout"), 401, "unauthorized")


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "99999999999"},
        {"exp": 10**20},
        {"exp": 1e308},
        {"exp": -(10**20)},
        {"exp": {"at": 1}},
        {"role": {"admin": True}},
        {"iat": {"at": 1}},
        {"nbf": [1]},
    ],
    ids=repr,
)
async def test_claims_of_the_wrong_type_in_a_validly_signed_token_are_401(
    client: httpx.AsyncClient, seeded: Runtime, alice: dict, claims: dict
) -> None:
    """Signed with the real secret, so only the claims' types and ranges can refuse it."""
    secret = seeded.settings.jwt_secret
    assert secret is not None
    token = alice["Authorization"].removeprefix("Bearer ")
    genuine = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode({**genuine, **claims}, secret.get_secret_value(), algorithm="HS256")
    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert_error(response, 401, "unauthorized")
    # The genuine token still works: nothing was cached from the refused one.
    assert (await client.get("/api/auth/me", headers=alice)).status_code == 200
