"""The hottest reads answered from this process's memory, before FastAPI's router.

``GET /api/menu``, ``GET /api/auth/me`` and ``GET /api/profiles/{user_id}`` are most of a
chat backend's traffic. When this process can answer one entirely from its in-process tier
(no I/O: the token verified here before, the value held with its JSON bytes, the invalidation
feed live), this middleware sends those bytes itself, as Django's ``FetchFromCacheMiddleware``
answers a cached page before URL resolution. Routing, dependency solving and response
validation cost a cached read more than half its time (``bench/README.md``, http).

Anything else goes on to the route, which stays the API's definition (OpenAPI, validation,
errors) and answers as before: a miss, ``HEAD``, a query other than ``concentrates=true|false``,
a missing, unknown or admin token, another user's profile, a user id the route would refuse.
So this answers only what the route would answer, with the same status, headers and bytes,
for the same cache state (``tests/api/test_hot_reads.py`` compares the two).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Final

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ogcache.api.deps import VERIFIED, is_admin_token
from ogcache.api.routes import auth, menu, profiles
from ogcache.cache import ReadScope
from ogcache.runtime import Runtime
from ogcache.schemas import USER_ID_PATTERN, AuthIdentity

__all__ = ["HotReads"]

logger = logging.getLogger("ogcache.api")

_PROFILES: Final = "/api/profiles/"
_USER_ID: Final = re.compile(USER_ID_PATTERN.removeprefix("^").removesuffix("$"))
_CONCENTRATES: Final = {b"": False, b"concentrates=false": False, b"concentrates=true": True}
_AUTHORIZATION: Final = b"authorization"

Answer = Callable[[Scope, Runtime], Awaitable[bytes | None]]


def _route(router_routes: list[BaseRoute], endpoint: object) -> BaseRoute:
    """The route of ``endpoint``: put in the scope, as the router would, for the metrics."""
    return next(r for r in router_routes if getattr(r, "endpoint", None) is endpoint)


def _bearer(scope: Scope) -> str | None:
    """The bearer token as ``HTTPBearer`` reads it (the first Authorization header)."""
    for name, value in scope["headers"]:
        if name == _AUTHORIZATION:
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token if scheme.lower() == "bearer" and token else None
    return None


async def _user(scope: Scope, runtime: Runtime) -> AuthIdentity | None:
    token = _bearer(scope)
    if token is None or is_admin_token(runtime, token):
        return None
    identity = await runtime.auth.verified_here(token)
    if identity is not None:  # the route, if it answers, need not verify (and count) again
        scope.setdefault("state", {})[VERIFIED] = (token, identity)
    return identity


async def _menu(scope: Scope, runtime: Runtime) -> bytes | None:
    include = _CONCENTRATES.get(scope["query_string"])
    return None if include is None else await runtime.menu.local_menu_json(include)


async def _me(scope: Scope, runtime: Runtime) -> bytes | None:
    identity = await _user(scope, runtime)
    return None if identity is None else auth.identity_json(identity)


async def _profile(scope: Scope, runtime: Runtime) -> bytes | None:
    user_id = scope["path"][len(_PROFILES) :]
    if not _USER_ID.fullmatch(user_id):
        return None
    identity = await _user(scope, runtime)
    if identity is None or identity.user_id != user_id:
        return None
    return await runtime.profiles.local_json(user_id)


class HotReads:
    """The middleware; add it innermost, so that request ids, metrics and limits apply."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._exact: dict[str, tuple[Answer, BaseRoute]] = {
            "/api/menu": (_menu, _route(menu.router.routes, menu.get_menu)),
            "/api/auth/me": (_me, _route(auth.router.routes, auth.me)),
        }
        self._profile = (_profile, _route(profiles.router.routes, profiles.get_profile))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with ReadScope():  # every in-process tier read of this request sees every change
            if scope["method"] != "GET" or not await self._answer(scope, send):
                await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send) -> bool:
        """Send the answer from memory if there is one; whether it was sent."""
        path: str = scope["path"]
        found = self._exact.get(path) or (self._profile if path.startswith(_PROFILES) else None)
        runtime: Runtime | None = getattr(scope["app"].state, "runtime", None)
        if found is None or runtime is None:
            return False
        answer, route = found
        try:
            body = await answer(scope, runtime)
        except Exception:  # never fail a request the route could answer
            logger.exception("hot read of %s failed; the route answers it", path)
            return False
        if body is None:
            return False
        scope["route"] = route
        headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True
