"""Bad input anywhere is a 4xx in the one error shape, never a 500; unknown records are 404."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from ogcache.runtime import Runtime
from tests.api.conftest import ADMIN, ALICE, assert_error, one_stack

JSON = {"Content-Type": "application/json"}


async def a_conversation_id(client: httpx.AsyncClient) -> str:
    listed = await client.get(f"/api/profiles/{ALICE}/conversations", headers=ADMIN)
    return listed.json()[0]["id"]


# Every route that takes a JSON body, with a body it accepts.
BODY_ROUTES = [
    ("POST", "/api/profiles", {"user_id": ALICE}),
    ("PATCH", f"/api/profiles/{ALICE}", {"preferences": {"a": 1}}),
    ("POST", "/api/conversations", {"user_id": ALICE, "channel": "web"}),
    ("POST", "/api/conversations/{conversation}/messages", {"role": "user", "content": "hi"}),
    ("PUT", "/api/sessions/chat_state_0001", {"a": 1}),
    ("PATCH", "/api/sessions/chat_state_0001", {"field": "a", "value": 2}),
    ("POST", "/api/cache", {"action": "warmup-menu"}),
]


@pytest.fixture
async def body_routes(client: httpx.AsyncClient) -> list[tuple[str, str, dict]]:
    """The routes above, ready to call: a real conversation id, a stored session."""
    conversation = await a_conversation_id(client)
    await client.put("/api/sessions/chat_state_0001", json={}, headers=ADMIN)
    return [
        (method, path.format(conversation=conversation), body) for method, path, body in BODY_ROUTES
    ]


@one_stack
async def test_every_body_route_accepts_its_valid_body(
    client: httpx.AsyncClient, body_routes: list
) -> None:
    for method, path, body in body_routes:
        response = await client.request(method, path, json=body, headers=ADMIN)
        assert response.status_code < 300, (method, path, response.text)


@one_stack
@pytest.mark.parametrize(
    "content",
    [b"{bad", b'{"a": 1', b"", b"\xff\xfe", b"[" * 50_000, b'{"a": "\\ud800"}', b"null"],
    ids=["broken", "unterminated", "empty", "not-utf8", "deeply-nested", "lone-surrogate", "null"],
)
async def test_malformed_json_is_a_4xx_everywhere(
    client: httpx.AsyncClient, body_routes: list, content: bytes
) -> None:
    for method, path, _ in body_routes:
        response = await client.request(method, path, content=content, headers={**JSON, **ADMIN})
        assert_error(response, response.status_code)
        assert 400 <= response.status_code < 500, (method, path, response.text)


@one_stack
async def test_broken_json_is_a_422_naming_the_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/profiles", content=b"{bad", headers={**JSON, **ADMIN})
    error = assert_error(response, 422, "validation_error")
    assert "JSON" in error["message"]
    assert error["details"]


def invalid(path: str) -> tuple[int, str]:
    """The status and code of a request body the route cannot take: a 400 for an admin
    command (not understood, so refused as a whole), a 422 elsewhere."""
    return (400, "invalid_input") if path == "/api/cache" else (422, "validation_error")


@one_stack
async def test_a_body_of_the_wrong_json_type_is_422_everywhere(
    client: httpx.AsyncClient, body_routes: list
) -> None:
    for method, path, _ in body_routes:
        for wrong in ([1, 2], "text", 42):
            response = await client.request(method, path, json=wrong, headers=ADMIN)
            assert_error(response, *invalid(path))


@one_stack
async def test_unknown_fields_are_422_everywhere_they_are_not_data(
    client: httpx.AsyncClient, body_routes: list
) -> None:
    for method, path, body in body_routes:
        if path.startswith("/api/sessions") and method == "PUT":
            continue  # session data is any JSON object
        response = await client.request(
            method, path, json={**body, "is_admin": True}, headers=ADMIN
        )
        assert_error(response, *invalid(path))


@one_stack
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("preferences", "not an object"),
        ("preferences", {str(n): n for n in range(101)}),
        ("loyalty_points", "lots"),
        ("loyalty_points", -1),
        ("loyalty_points", 10**30),
        ("is_blocked", "maybe"),
        ("telegram_username", "x" * 65),
        ("notes", 12),
    ],
)
async def test_a_profile_patch_with_a_wrong_value_is_422(
    client: httpx.AsyncClient, field: str, value: object
) -> None:
    response = await client.patch(f"/api/profiles/{ALICE}", json={field: value}, headers=ADMIN)
    error = assert_error(response, 422, "validation_error")
    assert field in error["message"]


@one_stack
@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "has space"},
        {"user_id": ""},
        {"user_id": "x" * 129},
        {"telegram_user_id": 0},
        {"telegram_user_id": 2**63},
        {"telegram_user_id": "one hundred"},
        {"telegram_user_id": 1.5},
    ],
)
async def test_get_or_create_with_a_bad_id_is_422(client: httpx.AsyncClient, body: dict) -> None:
    assert_error(await client.post("/api/profiles", json=body, headers=ADMIN), 422)


@one_stack
@pytest.mark.parametrize(
    "path",
    [
        "/api/profiles/has%20space",
        "/api/profiles/%00",
        "/api/profiles/" + "x" * 129,
        "/api/profiles/a%2Fb/conversations",
        "/api/profiles/by-telegram/0",
        "/api/profiles/by-telegram/-5",
        "/api/profiles/by-telegram/abc",
        "/api/profiles/by-telegram/99999999999999999999999",
        "/api/conversations/not-a-uuid",
        "/api/conversations/12345",
        "/api/sessions/short",
        "/api/sessions/with.dot.in.it",
    ],
)
async def test_a_bad_identifier_in_the_path_is_a_4xx(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers=ADMIN)
    assert_error(response, response.status_code)
    assert response.status_code in (404, 422), response.text


async def test_a_conversation_id_in_another_uuid_form_reads_the_same(
    client: httpx.AsyncClient,
) -> None:
    conversation = await a_conversation_id(client)
    response = await client.get(f"/api/conversations/{conversation.upper()}", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["id"] == conversation


async def test_unknown_records_are_404(client: httpx.AsyncClient) -> None:
    for path in (
        "/api/profiles/nobody_here",
        "/api/profiles/nobody_here/conversations",
        "/api/profiles/by-telegram/123456",
        f"/api/conversations/{uuid.uuid4()}",
        "/api/sessions/never_stored_session",
    ):
        assert_error(await client.get(path, headers=ADMIN), 404, "not_found")


@one_stack
async def test_an_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/nothing-here"), 404, "not_found")


@one_stack
async def test_a_wrong_method_is_a_json_405(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete("/api/cache", headers=ADMIN), 405, "method_not_allowed")
    assert_error(await client.put("/api/menu"), 405, "method_not_allowed")


@one_stack
async def test_a_body_declared_larger_than_the_limit_is_413(
    client: httpx.AsyncClient, seeded: Runtime
) -> None:
    limit = seeded.settings.max_body_bytes
    huge = b'{"blob": "' + b"x" * limit + b'"}'
    response = await client.put(
        "/api/sessions/chat_state_0001", content=huge, headers={**JSON, **ADMIN}
    )
    assert str(limit) in assert_error(response, 413, "payload_too_large")["message"]


@one_stack
async def test_a_streamed_body_larger_than_the_limit_is_413(
    client: httpx.AsyncClient, seeded: Runtime
) -> None:
    limit = seeded.settings.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"blob": "'
        for _ in range(limit // 8192 + 2):
            yield b"x" * 8192
        yield b'"}'

    response = await client.put(
        "/api/sessions/chat_state_0001", content=chunks(), headers={**JSON, **ADMIN}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")
    assert_error(await client.get("/api/sessions/chat_state_0001", headers=ADMIN), 404)


@one_stack
async def test_a_negative_content_length_is_a_4xx(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/menu", headers={"Content-Length": "-1"})
    assert_error(response, response.status_code)
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", f"/api/profiles/{ALICE}", {"telegram_username": "a\u0000b"}),
        ("PATCH", f"/api/profiles/{ALICE}", {"notes": "a\u0000b"}),
        ("PATCH", f"/api/profiles/{ALICE}", {"preferences": {"note": "a\u0000b"}}),
        ("PATCH", f"/api/profiles/{ALICE}", {"preferences": {"a\u0000b": 1}}),
        ("POST", "/api/profiles", {"user_id": "web_nul", "telegram_username": "\u0000"}),
        ("POST", "/api/conversations/{conversation}/messages", {"role": "user", "content": "\0"}),
        ("PUT", "/api/sessions/chat_state_0001", {"a\u0000": "\u0000"}),
    ],
)
async def test_a_nul_character_is_never_a_500(
    client: httpx.AsyncClient, method: str, path: str, body: dict
) -> None:
    """PostgreSQL cannot store NUL in text or JSON: that is a 400, not a crash."""
    path = path.format(conversation=await a_conversation_id(client))
    response = await client.request(method, path, json=body, headers=ADMIN)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_error(response, 400, "invalid_input")


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
async def test_a_non_finite_number_in_a_body_is_never_a_500(
    client: httpx.AsyncClient, number: bytes
) -> None:
    """Not JSON, but Python's parser accepts it; the database must not turn it into a 500."""
    for method, path, content in (
        ("PATCH", f"/api/profiles/{ALICE}", b'{"preferences": {"x": %s}}' % number),
        ("PUT", "/api/sessions/chat_state_0001", b'{"x": %s}' % number),
    ):
        response = await client.request(method, path, content=content, headers={**JSON, **ADMIN})
        assert response.status_code < 500, (method, path, response.text)
    read = await client.get(f"/api/profiles/{ALICE}", headers=ADMIN)
    assert read.status_code == 200


async def test_non_finite_numbers_in_preferences_are_rejected() -> None:
    from pydantic import ValidationError

    from ogcache.schemas import ProfileUpdate

    with pytest.raises(ValidationError, match="finite"):
        ProfileUpdate(preferences={"nested": {"budget": float("nan")}})
    with pytest.raises(ValidationError, match="finite"):
        ProfileUpdate(preferences={"list": [1.0, float("inf")]})


@one_stack
async def test_an_unexpected_error_is_a_json_500_naming_the_request_and_leaking_nothing(
    client: httpx.AsyncClient,
    seeded: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No input can make our code fail (other tests check that), so a bug is planted here.
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret-detail-of-the-bug")

    monkeypatch.setattr(seeded.menu, "get_menu_json", broken)
    with caplog.at_level("ERROR", logger="ogcache"):
        response = await client.get("/api/menu")
    error = assert_error(response, 500, "internal_error")
    assert "secret-detail" not in response.text
    assert "Traceback" not in response.text
    assert error["request_id"] == response.headers["X-Request-ID"]
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) == 1
    assert error["request_id"] in logged[0].getMessage()
    assert "secret-detail-of-the-bug" in str(logged[0].exc_info[1])
    # The service goes on answering.
    monkeypatch.undo()
    assert (await client.get("/api/menu")).status_code == 200


@one_stack
async def test_every_response_carries_a_request_id_and_keeps_a_well_formed_incoming_one(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/api/menu")
    second = await client.get("/api/nowhere")
    ids = {first.headers["X-Request-ID"], second.headers["X-Request-ID"]}
    assert len(ids) == 2
    kept = await client.get("/api/menu", headers={"X-Request-ID": "proxy-7f3a.1"})
    assert kept.headers["X-Request-ID"] == "proxy-7f3a.1"
    for bad in ("a" * 65, "new\\line", "a b"):
        replaced = await client.get("/api/menu", headers={"X-Request-ID": bad})
        assert replaced.headers["X-Request-ID"] != bad
