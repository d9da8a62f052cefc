"""A request id on every response and log line, and a JSON 500 for what nothing else caught.

The id is the caller's ``X-Request-ID`` when it is a short token (a proxy's, so one id follows
the request through every hop), otherwise a fresh one. It is sent back in ``X-Request-ID``, is
in every log line written while the request runs, and is the only thing a 500 tells the
client: the traceback goes to the log, never into the response.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from collections.abc import Callable
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ogcache.log import request_id as _current

__all__ = ["HEADER", "RequestId"]

HEADER: Final = "X-Request-ID"
_HEADER_KEY: Final = HEADER.lower().encode()
_ACCEPTED = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
# A fresh id is this process's random prefix and a counter: unique across processes and
# restarts without a random draw per request.
_PROCESS = secrets.token_hex(6)
_sequence = itertools.count(1)

logger = logging.getLogger("ogcache.api")


def _incoming(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER_KEY:
            return value.decode("ascii") if _ACCEPTED.fullmatch(value) else None
    return None


class RequestId:
    """Outermost application middleware: sets the id, and turns an exception that escaped
    every handler into a logged traceback plus ``on_error()``, a response that leaks nothing."""

    def __init__(self, app: ASGIApp, on_error: Callable[[], ASGIApp]) -> None:
        self.app = app
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming(scope) or f"{_PROCESS}-{next(_sequence):x}"
        token = _current.set(request_id)
        header = (_HEADER_KEY, request_id.encode("ascii"))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception(
                "unhandled error on %s %s (request %s)", scope["method"], scope["path"], request_id
            )
            if started:  # the status is already sent: all that is left is to cut the response
                raise
            await self.on_error()(scope, receive, send_with_id)
        finally:
            _current.reset(token)
