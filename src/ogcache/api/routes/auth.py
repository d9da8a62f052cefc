"""Who am I, and logout."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ogcache.api.deps import CallerDep, IsAdminDep, RuntimeDep, TokenDep
from ogcache.api.responses import JsonBytes
from ogcache.errors import AuthenticationError
from ogcache.schemas import AuthIdentity

router = APIRouter(prefix="/api/auth", tags=["auth"])


_NO_IDENTITY = (
    "the admin token has no user identity: send a user's access token "
    "(ogcache token issue --user <user_id>)"
)


def _user_token(token: str, admin: bool) -> str:
    if admin:
        raise AuthenticationError(_NO_IDENTITY)
    return token


@router.get("/me", response_model=AuthIdentity)
async def me(caller: CallerDep) -> Response:
    """The identity of the bearer token (cached; checked against revocation every time)."""
    if caller.identity is None:
        raise AuthenticationError(_NO_IDENTITY)
    return JsonBytes(identity_json(caller.identity))


def identity_json(identity: AuthIdentity) -> bytes:
    """``/me``'s body (also answered by :mod:`ogcache.api.hot_reads`)."""
    return identity.__pydantic_serializer__.to_json(identity)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(runtime: RuntimeDep, token: TokenDep, admin: IsAdminDep) -> None:
    """Revoke the token's session: this token and any other of the session fail from now on."""
    await runtime.auth.logout(_user_token(token, admin))
