"""Errors as JSON with one stable shape: ``{"error": {"code": ..., "message": ..., "details"?}}``.

Application errors map to status codes here, in one place; input that fails validation is a
422 that lists what is wrong; nothing a client sends can produce a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ogcache.cache import BackendError, CacheError, InvalidKeyError
from ogcache.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    OgcacheError,
    UnavailableError,
)
from ogcache.log import current_request_id

__all__ = [
    "BadRequestRoute",
    "BodySizeLimit",
    "ErrorBody",
    "ErrorResponse",
    "error_response",
    "install_handlers",
    "internal_error_response",
]

logger = logging.getLogger("ogcache.api")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody


class ForbiddenError(OgcacheError):
    """The caller is authenticated but may not do this."""


class AdminDisabledError(ForbiddenError):
    """Admin actions are refused because no admin token is configured."""


_STATUS: list[tuple[type[Exception], int, str]] = [
    (AuthenticationError, 401, "unauthorized"),
    (AdminDisabledError, 403, "admin_disabled"),
    (ForbiddenError, 403, "forbidden"),
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (LimitExceededError, 409, "limit_exceeded"),
    (InvalidInputError, 400, "invalid_input"),
    (InvalidKeyError, 400, "invalid_input"),
    (UnavailableError, 503, "unavailable"),
    (BackendError, 503, "unavailable"),
]


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def internal_error_response() -> JSONResponse:
    """A 500 that names the request (its traceback is in the server log) and nothing else."""
    request_id = current_request_id()
    body = ErrorResponse(
        error=ErrorBody(
            code="internal_error",
            message=f"internal error; the server log has the details under request {request_id}",
            request_id=request_id,
        )
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=500)


def _internal_error(request: Request, exc: Exception, what: str) -> JSONResponse:
    logger.error(
        "%s on %s %s (request %s)",
        what,
        request.method,
        request.url.path,
        current_request_id(),
        exc_info=exc,
    )
    return internal_error_response()


def _application_error(request: Request, exc: Exception) -> JSONResponse:
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            return error_response(status, code, str(exc))
    return _internal_error(request, exc, "unhandled application error")


def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """What the database said: a value it cannot store (PostgreSQL's data exceptions, such as
    a NUL character or a NaN in JSON) is the caller's error; a database that cannot be reached
    is a 503; anything else is a 500, logged."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    if sqlstate.startswith("22"):
        reason = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
        return error_response(
            400, "invalid_input", f"the database cannot store a value of this request: {reason}"
        )
    if isinstance(exc, OSError) or sqlstate.startswith("08"):
        return error_response(
            503,
            "unavailable",
            f"the database cannot be reached ({type(exc).__name__}); retry later",
        )
    return _internal_error(request, exc, "database error")


def _invalid(exc: RequestValidationError, status: int, code: str, hint: str = "") -> JSONResponse:
    details = [
        {"location": list(error.get("loc", ())), "message": error.get("msg", "")}
        for error in exc.errors()
    ]
    summary = "; ".join(
        f"{'.'.join(str(part) for part in d['location'])}: {d['message']}" for d in details[:5]
    )
    message = f"invalid request: {summary}" + (f"; {hint}" if hint else "")
    return error_response(status, code, message, details)


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _invalid(exc, 422, "validation_error")


class BadRequestRoute(APIRoute):
    """A route whose invalid input is a 400 ``invalid_input`` instead of a 422: for commands
    (admin actions) where a field the command does not take means the caller wants another
    command, and nothing may run. ``hint`` (set by a subclass) ends the message."""

    hint = ""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def refusing(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _invalid(exc, 400, "invalid_input", self.hint)

        return refusing


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OgcacheError, _application_error)
    app.add_exception_handler(CacheError, _application_error)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(OSError, _database_error)


class BodySizeLimit:
    """Reject request bodies larger than ``limit`` bytes with 413, before they are buffered.

    Checks the declared ``Content-Length`` and counts streamed chunks, so a chunked upload
    cannot slip past the declared size.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.limit:
                    await self._reject(scope, receive, send)
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge(self.limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "payload_too_large", f"request body is larger than {self.limit} bytes"
        )
        await response(scope, receive, send)


class _TooLarge(StarletteHTTPException):
    """An HTTP error, so that a body parser passes it on as it is (FastAPI turns any other
    error raised while reading the body into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes")
