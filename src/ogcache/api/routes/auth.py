"""Who am I, and logout."""

from __future__ import annotations

from fastapi import APIRouter, status

from ogcache.api.deps import IsAdminDep, RuntimeDep, TokenDep
from ogcache.errors import AuthenticationError
from ogcache.schemas import AuthIdentity

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _user_token(token: str, admin: bool) -> str:
    if admin:
        raise AuthenticationError(
            "the admin token has no user identity: send a user's access token "
            "(ogcache token issue --user <user_id>)"
        )
    return token


@router.get("/me", response_model=AuthIdentity)
async def me(runtime: RuntimeDep, token: TokenDep, admin: IsAdminDep) -> AuthIdentity:
    """The identity of the bearer token (cached; checked against revocation every time)."""
    return await runtime.auth.verify(_user_token(token, admin))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(runtime: RuntimeDep, token: TokenDep, admin: IsAdminDep) -> None:
    """Revoke the token's session: this token and any other of the session fail from now on."""
    await runtime.auth.logout(_user_token(token, admin))
