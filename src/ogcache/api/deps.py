"""Dependencies of the routes, as ``Annotated`` aliases: the runtime and who is calling.

Callers authenticate with ``Authorization: Bearer <token>``: either a user's access token
(verified through the cached auth service) or the admin token ``OGCACHE_ADMIN_TOKEN``
(compared in constant time). Without a configured admin token every admin action is refused.

Every dependency is ``async``: FastAPI runs a plain ``def`` one in a worker thread, which cost
a cached read a third of its throughput. Each ``Depends`` costs a few microseconds per request
more, so :data:`CallerDep` is one dependency (the bearer scheme that also verifies), and the
hottest reads take ``request`` and :func:`runtime_of` instead of :data:`RuntimeDep`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ogcache.api.errors import AdminDisabledError, ForbiddenError
from ogcache.errors import AuthenticationError
from ogcache.runtime import Runtime
from ogcache.schemas import AuthIdentity

__all__ = [
    "VERIFIED",
    "AdminDep",
    "Caller",
    "CallerDep",
    "IsAdminDep",
    "RuntimeDep",
    "TokenDep",
    "is_admin_token",
    "runtime_of",
]

_bearer = HTTPBearer(auto_error=False, description="A user's access token or the admin token.")


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or not credentials.credentials:
        raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <token>'")
    return credentials.credentials


TokenDep = Annotated[str, Depends(get_token)]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the admin, or a user with a verified identity."""

    identity: AuthIdentity | None

    @property
    def is_admin(self) -> bool:
        return self.identity is None

    def may_see(self, owner: str | None) -> bool:
        """Whether a record owned by ``owner`` is visible to this caller (the admin sees all).

        Routes answer 404 for records the caller may not see, so that whether another user's
        record exists is not revealed.
        """
        return self.identity is None or self.identity.user_id == owner

    def require_user(self, user_id: str) -> None:
        """Allow the admin and the user ``user_id``; refuse everyone else."""
        if self.identity is not None and self.identity.user_id != user_id:
            raise ForbiddenError("this token belongs to another user")


def is_admin_token(runtime: Runtime, token: str) -> bool:
    configured = runtime.settings.admin_token
    if configured is None:
        return False
    return hmac.compare_digest(token.encode(), configured.get_secret_value().encode())


_ADMIN = Caller(identity=None)
# The request's (token, identity) that :mod:`ogcache.api.hot_reads` verified before handing
# the request to its route, in ``scope["state"]``: verified (and counted) once per request.
VERIFIED = "ogcache.verified"


class _CallerScheme(HTTPBearer):
    """``HTTPBearer`` (so OpenAPI documents the scheme) answering the verified caller."""

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        credentials = await super().__call__(request)
        if credentials is None or not credentials.credentials:
            raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <token>'")
        known = request.scope.get("state", {}).get(VERIFIED)
        if known is not None and known[0] == credentials.credentials:
            return Caller(identity=known[1])
        runtime = runtime_of(request)
        if is_admin_token(runtime, credentials.credentials):
            return _ADMIN
        return Caller(identity=await runtime.auth.verify(credentials.credentials))


CallerDep = Annotated[
    Caller,
    Depends(_CallerScheme(auto_error=False, description=_bearer.model.description)),
]


async def require_admin(runtime: RuntimeDep, token: TokenDep) -> Caller:
    if runtime.settings.admin_token is None:
        raise AdminDisabledError(
            "admin actions are disabled: set OGCACHE_ADMIN_TOKEN (at least 32 characters) "
            "and send it as 'Authorization: Bearer <token>'"
        )
    if not is_admin_token(runtime, token):
        raise ForbiddenError("this action needs the admin token")
    return Caller(identity=None)


AdminDep = Annotated[Caller, Depends(require_admin)]


async def is_admin(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> bool:
    """Whether the request carries the admin token; for routes open to anyone, where the
    admin gets more (fresh figures) and no one is refused."""
    return credentials is not None and is_admin_token(runtime, credentials.credentials)


IsAdminDep = Annotated[bool, Depends(is_admin)]
