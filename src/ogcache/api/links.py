"""OpenAPI links: which response gives the id another operation takes.

They tell a client (and a stateful API fuzzer) that the ``user_id`` a profile answer carries
is the ``{user_id}`` of the profile routes, the ``id`` of a new conversation the
``{conversation_id}`` of its routes, and so on. Targets are named by method and path; their
generated operation ids are looked up in the schema, so renaming a handler breaks nothing.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI

__all__ = ["LINKS", "add_links"]

Operation = tuple[str, str]  # (method, path)

_USER = {"user_id": "$response.body#/user_id"}
_CONVERSATION = {"conversation_id": "$response.body#/id"}
# The admin names a user's session with ?user_id=; the same owner is meant by the next call.
_SESSION = {"session_id": "$response.body#/session_id", "user_id": "$request.query.user_id"}

# (source operation, status) -> link name -> (target operation, parameters, request body).
LINKS: Final[dict[tuple[Operation, str], dict[str, tuple[Operation, dict[str, str], Any]]]] = {
    (("POST", "/api/profiles"), "200"): {
        "GetProfile": (("GET", "/api/profiles/{user_id}"), _USER, None),
        "UpdateProfile": (("PATCH", "/api/profiles/{user_id}"), _USER, None),
        "DeleteProfile": (("DELETE", "/api/profiles/{user_id}"), _USER, None),
        "ListConversations": (("GET", "/api/profiles/{user_id}/conversations"), _USER, None),
        "StartConversation": (
            ("POST", "/api/conversations"),
            {},
            {"user_id": "$response.body#/user_id", "channel": "web"},
        ),
    },
    (("PATCH", "/api/profiles/{user_id}"), "200"): {
        "GetProfile": (("GET", "/api/profiles/{user_id}"), _USER, None),
    },
    (("POST", "/api/conversations"), "201"): {
        "GetConversation": (("GET", "/api/conversations/{conversation_id}"), _CONVERSATION, None),
        "AddMessage": (
            ("POST", "/api/conversations/{conversation_id}/messages"),
            _CONVERSATION,
            None,
        ),
        "ListMessages": (
            ("GET", "/api/conversations/{conversation_id}/messages"),
            _CONVERSATION,
            None,
        ),
    },
    (("POST", "/api/conversations/{conversation_id}/messages"), "201"): {
        "GetConversation": (("GET", "/api/conversations/{conversation_id}"), _CONVERSATION, None),
        "ListMessages": (
            ("GET", "/api/conversations/{conversation_id}/messages"),
            _CONVERSATION,
            None,
        ),
    },
    (("PUT", "/api/sessions/{session_id}"), "200"): {
        "GetSession": (("GET", "/api/sessions/{session_id}"), _SESSION, None),
        "UpdateSessionField": (("PATCH", "/api/sessions/{session_id}"), _SESSION, None),
        "DeleteSession": (("DELETE", "/api/sessions/{session_id}"), _SESSION, None),
    },
}


def _operation_id(schema: dict[str, Any], operation: Operation) -> str | None:
    method, path = operation
    found = schema["paths"].get(path, {}).get(method.lower())
    return None if found is None else found.get("operationId")


def _with_links(schema: dict[str, Any]) -> dict[str, Any]:
    for ((method, path), status), links in LINKS.items():
        response = schema["paths"].get(path, {}).get(method.lower(), {}).get("responses", {})
        if status not in response:
            continue  # the source operation is not part of this app
        resolved: dict[str, Any] = {}
        for name, (target, parameters, body) in links.items():
            operation_id = _operation_id(schema, target)
            if operation_id is None:
                continue
            link: dict[str, Any] = {"operationId": operation_id}
            if parameters:
                link["parameters"] = parameters
            if body is not None:
                link["requestBody"] = body
            resolved[name] = link
        if resolved:
            response[status]["links"] = resolved
    return schema


def add_links(app: FastAPI) -> None:
    """Add :data:`LINKS` to the app's OpenAPI schema (built once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_links(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
