"""User profiles, cached by ``user_id`` and by ``telegram_user_id``.

Both keys are invalidated on every write of a profile (update, visit, Telegram link, delete),
including the old Telegram key when the link changes.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ogcache.cache import Namespace
from ogcache.db.locking import lock_for_write
from ogcache.db.models import AuthSession, Conversation, UserProfile, utc_now
from ogcache.errors import ConflictError, InvalidInputError, LimitExceededError, NotFoundError
from ogcache.schemas import USER_ID_PATTERN, ProfileUpdate, UserProfilePublic
from ogcache.services.base import ServiceContext
from ogcache.services.namespaces import CacheEntry

__all__ = ["ProfileService", "validate_telegram_user_id", "validate_user_id"]

_USER_ID = re.compile(USER_ID_PATTERN)
_MAX_TELEGRAM_ID = 2**63 - 1
# Columns that ``ProfileUpdate`` types as optional only to mean "unchanged": never null.
_NOT_NULL = ("preferences", "loyalty_points", "is_blocked")


def validate_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not _USER_ID.match(user_id):
        raise InvalidInputError("user_id must be 1-128 characters of letters, digits and '_.:@-'")
    return user_id


def validate_telegram_user_id(telegram_user_id: int) -> int:
    if (
        isinstance(telegram_user_id, bool)
        or not isinstance(telegram_user_id, int)
        or not 0 < telegram_user_id <= _MAX_TELEGRAM_ID
    ):
        raise InvalidInputError("telegram_user_id must be a positive 64-bit integer")
    return telegram_user_id


class ProfileService:
    """Get-or-create, read and update user profiles through the cache."""

    def __init__(self, context: ServiceContext) -> None:
        self._db = context.db
        self._cache = context.cache
        self._ns = context.namespaces
        self._limits = context.limits

    # --- reads ---------------------------------------------------------------------------

    async def get(self, user_id: str) -> UserProfilePublic | None:
        """The profile of ``user_id``, or ``None``."""
        validate_user_id(user_id)
        return await self._cache.get_or_load(
            self._ns.profile, user_id, lambda: self._load(UserProfile.user_id == user_id)
        )

    async def require_json(self, user_id: str) -> bytes:
        """The profile of ``user_id`` as the JSON the API answers with (the cached bytes on a
        hit); ``NotFoundError`` if there is none."""
        validate_user_id(user_id)
        body = await self._cache.get_or_load_encoded(
            self._ns.profile, user_id, lambda: self._load(UserProfile.user_id == user_id)
        )
        if body is None:
            raise NotFoundError(f"no user profile with user_id {user_id!r}")
        return body

    async def local_json(self, user_id: str) -> bytes | None:
        """:meth:`require_json` from this process's in-process tier alone (no read of the
        store), or ``None`` when it has no live copy of an existing profile (then call that)."""
        body = await self._cache.get_local_encoded(self._ns.profile, user_id)
        return body if isinstance(body, bytes) else None

    async def get_by_telegram(self, telegram_user_id: int) -> UserProfilePublic | None:
        """The profile linked to ``telegram_user_id``, or ``None``."""
        validate_telegram_user_id(telegram_user_id)
        return await self._cache.get_or_load(
            self._ns.profile_by_telegram,
            str(telegram_user_id),
            lambda: self._load(UserProfile.telegram_user_id == telegram_user_id),
        )

    async def require(self, user_id: str) -> UserProfilePublic:
        profile = await self.get(user_id)
        if profile is None:
            raise NotFoundError(f"no user profile with user_id {user_id!r}")
        return profile

    async def _load(self, condition: Any) -> UserProfilePublic | None:
        async with self._db() as session:
            row = await session.scalar(select(UserProfile).where(condition))
            return UserProfilePublic.model_validate(row) if row is not None else None

    async def refresh(self, user_id: str) -> list[CacheEntry]:
        """Reload the profile (under both keys) into the cache; the entries refreshed."""
        validate_user_id(user_id)
        profile = await self._cache.refresh(
            self._ns.profile, user_id, lambda: self._load(UserProfile.user_id == user_id)
        )
        if profile is None:
            raise NotFoundError(f"no user profile with user_id {user_id!r}")
        entries: list[CacheEntry] = [(self._ns.profile, user_id)]
        telegram_user_id = profile.telegram_user_id
        if telegram_user_id is not None:
            await self._cache.refresh(
                self._ns.profile_by_telegram,
                str(telegram_user_id),
                lambda: self._load(UserProfile.telegram_user_id == telegram_user_id),
            )
            entries.append((self._ns.profile_by_telegram, str(telegram_user_id)))
        return entries

    # --- writes --------------------------------------------------------------------------

    async def get_or_create(
        self,
        user_id: str | None = None,
        telegram_user_id: int | None = None,
        telegram_username: str | None = None,
    ) -> UserProfilePublic:
        """The profile of ``user_id`` and/or ``telegram_user_id``, created if there is none.

        Concurrent callers creating the same profile get the same row: the insert is
        ``ON CONFLICT DO NOTHING`` followed by a read. A Telegram id given with a ``user_id``
        whose profile has no Telegram link yet is linked; one linked elsewhere is a conflict.
        """
        if user_id is None and telegram_user_id is None:
            raise InvalidInputError("give user_id, telegram_user_id or both")
        if user_id is not None:
            validate_user_id(user_id)
        if telegram_user_id is not None:
            validate_telegram_user_id(telegram_user_id)
        if telegram_username is not None and len(telegram_username) > 64:
            raise InvalidInputError("telegram_username must be at most 64 characters")

        existing = (
            await self.get(user_id)
            if user_id is not None
            else await self.get_by_telegram(telegram_user_id)  # type: ignore[arg-type]
        )
        if existing is None:
            existing = await self._create(user_id, telegram_user_id, telegram_username)
        if telegram_user_id is not None and existing.telegram_user_id != telegram_user_id:
            return await self.link_telegram(existing.user_id, telegram_user_id, telegram_username)
        return existing

    async def _create(
        self, user_id: str | None, telegram_user_id: int | None, telegram_username: str | None
    ) -> UserProfilePublic:
        user_id = user_id if user_id is not None else f"tg_{telegram_user_id}"
        now = utc_now()
        values: dict[str, Any] = {
            "user_id": user_id,
            "telegram_user_id": telegram_user_id,
            "telegram_username": telegram_username,
            "first_visit": now,
            "last_visit": now,
        }
        async with self._db.begin() as session:
            dialect = session.get_bind().dialect.name
            insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
            await session.execute(insert(UserProfile).values(**values).on_conflict_do_nothing())
        # The row exists now (ours or a concurrent caller's); read it back by the id given.
        profile = await self._load(UserProfile.user_id == user_id)
        if profile is None and telegram_user_id is not None:
            # Our insert lost to a row holding the same Telegram id under another user_id.
            holder = await self._load(UserProfile.telegram_user_id == telegram_user_id)
            if holder is not None:
                raise ConflictError(
                    f"telegram_user_id {telegram_user_id} is linked to another user"
                )
        if profile is None:
            raise ConflictError(f"profile {user_id!r} could not be created; retry")
        await self._invalidate(profile)
        return profile

    async def link_telegram(
        self, user_id: str, telegram_user_id: int, telegram_username: str | None = None
    ) -> UserProfilePublic:
        """Link a Telegram account to a profile (replacing a previous link)."""
        validate_user_id(user_id)
        validate_telegram_user_id(telegram_user_id)
        try:
            profile, previous = await self._link(user_id, telegram_user_id, telegram_username)
        except IntegrityError:  # a concurrent link of the same Telegram id won
            raise ConflictError(
                f"telegram_user_id {telegram_user_id} is linked to another user"
            ) from None
        await self._invalidate(profile, previous_telegram_user_id=previous)
        return profile

    async def _link(
        self, user_id: str, telegram_user_id: int, telegram_username: str | None
    ) -> tuple[UserProfilePublic, int | None]:
        async with self._db.begin() as session:
            row = await self._locked(session, user_id)
            holder = await session.scalar(
                select(UserProfile.user_id).where(UserProfile.telegram_user_id == telegram_user_id)
            )
            if holder is not None and holder != user_id:
                raise ConflictError(
                    f"telegram_user_id {telegram_user_id} is linked to another user"
                )
            previous = row.telegram_user_id
            row.telegram_user_id = telegram_user_id
            if telegram_username is not None:
                row.telegram_username = telegram_username
            await session.flush()
            return UserProfilePublic.model_validate(row), previous

    async def update(self, user_id: str, changes: ProfileUpdate) -> UserProfilePublic:
        """Apply ``changes``; preferences are merged key by key, ``null`` removes a key.

        Blocking or unblocking a user also drops the cached state of their auth sessions, so
        their tokens are checked against the database on the next request.
        """
        validate_user_id(user_id)
        fields = changes.model_dump(exclude_unset=True)
        nulls = sorted(name for name in _NOT_NULL if name in fields and fields[name] is None)
        if nulls:
            raise InvalidInputError(
                f"{', '.join(nulls)} cannot be null; leave a field out to keep its value"
            )
        async with self._db.begin() as session:
            row = await self._locked(session, user_id)
            block_changed = "is_blocked" in fields and fields["is_blocked"] != row.is_blocked
            patch = fields.pop("preferences", None)
            if patch is not None:
                row.preferences = self._merged_preferences(row.preferences or {}, patch)
            for name, value in fields.items():
                setattr(row, name, value)
            await session.flush()
            profile = UserProfilePublic.model_validate(row)
            sessions = (
                list(
                    await session.scalars(
                        select(AuthSession.id).where(AuthSession.user_id == user_id)
                    )
                )
                if block_changed
                else []
            )
        await self._invalidate(
            profile, extra=[(self._ns.auth_session, str(session_id)) for session_id in sessions]
        )
        return profile

    def _merged_preferences(self, stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        """``stored`` with ``patch`` applied, within the limits on what one profile keeps (each
        PATCH is bounded, so without them a dozen PATCHes would grow it without end)."""
        merged = dict(stored)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if len(merged) > len(stored) and len(merged) > self._limits.max_preferences_keys:
            raise LimitExceededError(
                f"preferences would hold {len(merged)} keys, more than "
                f"{self._limits.max_preferences_keys} (OGCACHE_MAX_PREFERENCES_KEYS); "
                "remove keys by setting them to null"
            )
        size = len(orjson.dumps(merged))
        if size > self._limits.max_preferences_bytes and size > len(orjson.dumps(stored)):
            raise LimitExceededError(
                f"preferences would take {size} bytes, more than "
                f"{self._limits.max_preferences_bytes} (OGCACHE_MAX_PREFERENCES_BYTES); "
                "remove keys by setting them to null"
            )
        return merged

    async def record_visit(self, user_id: str, at: datetime | None = None) -> UserProfilePublic:
        """Set ``last_visit`` (to now by default)."""
        validate_user_id(user_id)
        async with self._db.begin() as session:
            row = await self._locked(session, user_id)
            row.last_visit = at or utc_now()
            await session.flush()
            profile = UserProfilePublic.model_validate(row)
        await self._invalidate(profile)
        return profile

    async def delete(self, user_id: str) -> None:
        """Delete the profile with its conversations and auth sessions."""
        validate_user_id(user_id)
        async with self._db.begin() as session:
            row = await self._locked(session, user_id)
            profile = UserProfilePublic.model_validate(row)
            conversations = list(
                await session.scalars(
                    select(Conversation.id).where(Conversation.user_profile_id == row.id)
                )
            )
            sessions = list(
                await session.scalars(select(AuthSession.id).where(AuthSession.user_id == user_id))
            )
            await session.execute(delete(UserProfile).where(UserProfile.id == row.id))
        extra: list[tuple[Namespace[Any], str]] = [
            (self._ns.recent_conversations, user_id),
            *((self._ns.conversation, str(cid)) for cid in conversations),
            *((self._ns.auth_session, str(sid)) for sid in sessions),
        ]
        await self._invalidate(profile, extra=extra)

    async def _locked(self, session: AsyncSession, user_id: str) -> UserProfile:
        await lock_for_write(session)
        row = await session.scalar(
            select(UserProfile).where(UserProfile.user_id == user_id).with_for_update()
        )
        if row is None:
            raise NotFoundError(f"no user profile with user_id {user_id!r}")
        return row

    async def invalidate(self, profile: UserProfilePublic) -> None:
        """Drop both cached copies of ``profile`` (after a write made elsewhere)."""
        await self._invalidate(profile)

    async def _invalidate(
        self,
        profile: UserProfilePublic,
        *,
        previous_telegram_user_id: int | None = None,
        extra: list[tuple[Namespace[Any], str]] | None = None,
    ) -> None:
        entries: list[tuple[Namespace[Any], str]] = [(self._ns.profile, profile.user_id)]
        for telegram_id in {profile.telegram_user_id, previous_telegram_user_id} - {None}:
            entries.append((self._ns.profile_by_telegram, str(telegram_id)))
        await self._cache.invalidate([*entries, *(extra or [])])
