"""Bearer-token verification with a cached result, logout, and token issuing.

Tokens are Supabase-style JWTs (HS256; ``sub``, ``exp``, ``session_id``, ``role``). Every
request checks the signature and expiry locally (microseconds); the cache saves the database
checks (session not revoked, user exists and is not blocked). Two entries are read in one
round trip:

- ``auth:token:<sha256 of the whole token>`` → the verified identity. The token itself, or
  any prefix of it, is never stored or logged.
- ``auth:session:<session id>`` → whether the session is still active. Logout, revocation,
  blocking and deletion drop it, which ends every token of that session at once, even those
  whose identity entry is still cached.

Both live for min(``OGCACHE_TTL_AUTH``, time left until the token expires). Failures are
never cached.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import select, update

from ogcache.cache import MISSING
from ogcache.db.models import AuthSession, UserProfile, utc_now
from ogcache.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from ogcache.schemas import AuthIdentity, IssuedToken, SessionState
from ogcache.services.base import ServiceContext
from ogcache.services.profiles import validate_user_id

__all__ = ["AuthService", "token_digest"]

logger = logging.getLogger("ogcache.auth")

ALGORITHM = "HS256"
AUDIENCE = "authenticated"
ISSUER = "ogcache"
MAX_TOKEN_LENGTH = 8192


def token_digest(token: str) -> str:
    """SHA-256 of the whole token, hex: the only form of a token that is ever stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def _expiry(exp: object) -> datetime:
    """The ``exp`` claim as a datetime; PyJWT accepts strings and numbers no clock can hold."""
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise AuthenticationError("token claim exp must be a number of seconds since the epoch")
    try:
        if not math.isfinite(exp):
            raise ValueError(exp)
        return datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError):
        raise AuthenticationError("token claim exp is out of range") from None


class AuthService:
    """Verify bearer tokens through the cache; issue and revoke them."""

    def __init__(self, context: ServiceContext, *, secret: str, token_ttl: float) -> None:
        if len(secret) < 32:
            raise InvalidInputError("the JWT secret must be at least 32 characters")
        self._db = context.db
        self._cache = context.cache
        self._ns = context.namespaces
        self._secret = secret
        self._token_ttl = token_ttl

    # --- verification --------------------------------------------------------------------

    def _decode(self, token: str) -> dict[str, Any]:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise AuthenticationError("missing or oversized bearer token")
        if token.count(".") != 2:
            raise AuthenticationError(
                "the bearer token is not an access token (a JWT: three parts separated by '.')"
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["exp", "sub", "session_id"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("token signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"token rejected: {exc}") from None
        if not isinstance(claims["sub"], str) or not isinstance(claims["session_id"], str):
            raise AuthenticationError("token claims sub and session_id must be strings")
        if not isinstance(claims.get("role", AUDIENCE), str):
            raise AuthenticationError("token claim role must be a string")
        claims["exp"] = _expiry(claims["exp"])
        return claims

    async def verify(self, token: str) -> AuthIdentity:
        """The identity of a valid token; ``AuthenticationError`` says why one is not."""
        known = await self.verified_here(token)
        if known is not None:
            return known
        claims = self._decode(token)
        try:
            session_id = uuid.UUID(claims["session_id"])
        except ValueError:
            raise AuthenticationError("token session_id is not a UUID") from None
        digest = token_digest(token)
        identity, state = await self._cache.get_entries(
            [(self._ns.auth_token, digest), (self._ns.auth_session, str(session_id))]
        )
        if (
            identity is not MISSING
            and state is not MISSING
            and state.active
            and identity.session_id == session_id
            and identity.user_id == claims["sub"]
        ):
            return identity  # type: ignore[no-any-return]
        identity = await self._check_database(claims, session_id)
        ttl = min(self._ns.auth_token.ttl, identity.expires_at.timestamp() - utc_now().timestamp())
        if ttl > 0:
            stored = await self._cache.set(self._ns.auth_token, digest, identity, ttl)
            state = SessionState(session_id=session_id, user_id=identity.user_id, active=True)
            stored |= await self._cache.set(self._ns.auth_session, str(session_id), state, ttl)
            if stored:
                # A logout, block or deletion committed between the check above and these
                # writes dropped the entries before they existed: check again, so that the
                # entries just written cannot outlive it.
                try:
                    await self._check_database(claims, session_id)
                except AuthenticationError:
                    await self._cache.invalidate(
                        [(self._ns.auth_token, digest), (self._ns.auth_session, str(session_id))]
                    )
                    raise
        return identity

    async def verified_here(self, token: str) -> AuthIdentity | None:
        """The identity of a token this process verified before, from its in-process tier
        alone (no read of the store: a dictionary lookup per entry): the very token (its
        SHA-256), unexpired, of a session still active; ``None`` otherwise (then
        :meth:`verify`).
        The signature and claims were checked when the entries were made, and nothing but
        the clock can make those checks fail later; a logout, revocation or block drops the
        entries here through the invalidation feed."""
        if len(token) > MAX_TOKEN_LENGTH:
            return None
        identity = await self._cache.get_local(self._ns.auth_token, token_digest(token))
        if identity is MISSING or identity is None or identity.expires_at <= utc_now():
            return None
        state = await self._cache.get_local(self._ns.auth_session, str(identity.session_id))
        if state is MISSING or state is None or not state.active:
            return None
        if state.session_id != identity.session_id or state.user_id != identity.user_id:
            return None
        return identity

    async def _check_database(self, claims: dict[str, Any], session_id: uuid.UUID) -> AuthIdentity:
        async with self._db() as session:
            found = (
                await session.execute(
                    select(AuthSession, UserProfile)
                    .join(UserProfile, UserProfile.user_id == AuthSession.user_id)
                    .where(AuthSession.id == session_id)
                )
            ).first()
        if found is None:
            raise AuthenticationError("session not found")
        auth_session, profile = found
        if auth_session.revoked_at is not None:
            raise AuthenticationError("session revoked")
        if auth_session.user_id != claims["sub"]:
            raise AuthenticationError("token subject does not own the session")
        if profile.is_blocked:
            raise AuthenticationError("user is blocked")
        return AuthIdentity(
            user_id=profile.user_id,
            profile_id=profile.id,
            session_id=session_id,
            role=claims.get("role", AUDIENCE),
            expires_at=claims["exp"],
        )

    # --- logout and revocation -----------------------------------------------------------

    async def logout(self, token: str) -> None:
        """Revoke the token's session; the token (and its siblings) fail from the next call."""
        identity = await self.verify(token)
        await self.revoke_session(identity.session_id)
        await self._cache.delete(self._ns.auth_token, token_digest(token))

    async def revoke_session(self, session_id: uuid.UUID) -> None:
        async with self._db.begin() as session:
            await session.execute(
                update(AuthSession)
                .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
                .values(revoked_at=utc_now())
            )
        await self._cache.delete(self._ns.auth_session, str(session_id))

    # --- issuing -------------------------------------------------------------------------

    async def issue_token(
        self, user_id: str, *, role: str = AUDIENCE, ttl: float | None = None
    ) -> IssuedToken:
        """Open a session for an existing, unblocked user and sign an access token for it."""
        validate_user_id(user_id)
        lifetime = self._token_ttl if ttl is None else ttl
        if not 0 < lifetime <= 30 * 24 * 3600:
            raise InvalidInputError("token ttl must be between 1 second and 30 days")
        async with self._db.begin() as session:
            profile = await session.scalar(
                select(UserProfile).where(UserProfile.user_id == user_id)
            )
            if profile is None:
                raise NotFoundError(f"no user profile with user_id {user_id!r}")
            if profile.is_blocked:
                raise ConflictError(f"user {user_id!r} is blocked; unblock them first")
            auth_session = AuthSession(user_id=user_id, created_at=utc_now())
            session.add(auth_session)
            await session.flush()
            session_id = auth_session.id
        now = utc_now()
        expires_at = now + timedelta(seconds=lifetime)
        claims: dict[str, str | int] = {
            "sub": user_id,
            "session_id": str(session_id),
            "role": role,
            "aud": AUDIENCE,
            "iss": ISSUER,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        expires = datetime.fromtimestamp(int(expires_at.timestamp()), UTC)
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return IssuedToken(
            access_token=token,
            session_id=session_id,
            user_id=user_id,
            expires_at=expires,
        )
