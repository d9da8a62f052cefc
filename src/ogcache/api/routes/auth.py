"""Who am I, and logout."""

from __future__ import annotations

from fastapi import APIRouter, status

from ogcache.api.deps import RuntimeDep, TokenDep
from ogcache.schemas import AuthIdentity

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.get("/me", response_model=AuthIdentity)
async def me(runtime: RuntimeDep, token: TokenDep) -> AuthIdentity:
    """The identity of the bearer token (cached; checked against revocation every time)."""
    return await runtime.auth.verify(token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(runtime: RuntimeDep, token: TokenDep) -> None:
    """Revoke the token's session: this token and any other of the session fail from now on."""
    await runtime.auth.logout(token)
