"""User profiles: read, get-or-create, update, delete; and a user's conversations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ogcache.api.deps import CallerDep, RuntimeDep, runtime_of
from ogcache.api.errors import ForbiddenError
from ogcache.api.responses import JsonBytes
from ogcache.errors import NotFoundError
from ogcache.schemas import USER_ID_PATTERN, ConversationSummary, ProfileUpdate, UserProfilePublic

router = APIRouter(prefix="/api/profiles", tags=["profiles"])

UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, description="The profile's user_id.")]
TelegramIdPath = Annotated[int, Path(gt=0, le=2**63 - 1)]

# Fields only the admin may change through PATCH. The Telegram fields are claims about an
# account on another service: only the bot, which has seen that account, may make them.
ADMIN_FIELDS = {"is_blocked", "blocked_reason", "loyalty_points", "notes", "telegram_username"}
TELEGRAM_FIELDS = {"telegram_user_id", "telegram_username"}


class ProfileCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)
    telegram_user_id: StrictInt | None = Field(default=None, gt=0, le=2**63 - 1)
    telegram_username: str | None = Field(default=None, max_length=64)


@router.get("/{user_id}", response_model=UserProfilePublic)
async def get_profile(user_id: UserIdPath, request: Request, caller: CallerDep) -> Response:
    caller.require_user(user_id)
    return JsonBytes(await runtime_of(request).profiles.require_json(user_id))


@router.get("/by-telegram/{telegram_user_id}", response_model=UserProfilePublic)
async def get_profile_by_telegram(
    telegram_user_id: TelegramIdPath, runtime: RuntimeDep, caller: CallerDep
) -> UserProfilePublic:
    profile = await runtime.profiles.get_by_telegram(telegram_user_id)
    if profile is None or not caller.may_see(profile.user_id):
        raise NotFoundError(f"no user profile with telegram_user_id {telegram_user_id}")
    return profile


@router.post("", response_model=UserProfilePublic, status_code=status.HTTP_200_OK)
async def get_or_create_profile(
    body: ProfileCreate, runtime: RuntimeDep, caller: CallerDep
) -> UserProfilePublic:
    """Get the profile, creating it if needed. The admin (the Telegram bot) may create any
    profile and link a Telegram account; a user may only get their own ``user_id``, without
    Telegram fields: a user who could name a Telegram id would take over that account's chats."""
    if not caller.is_admin:
        assert caller.identity is not None
        if body.user_id != caller.identity.user_id:
            raise ForbiddenError("a user may only get-or-create their own profile (send user_id)")
        claimed = TELEGRAM_FIELDS & body.model_fields_set
        if claimed:
            raise ForbiddenError(
                f"only the admin (the Telegram bot) may set {', '.join(sorted(claimed))}: "
                "a Telegram account is linked by the bot that has seen it"
            )
    return await runtime.profiles.get_or_create(
        user_id=body.user_id,
        telegram_user_id=body.telegram_user_id,
        telegram_username=body.telegram_username,
    )


@router.patch("/{user_id}", response_model=UserProfilePublic)
async def update_profile(
    user_id: UserIdPath, changes: ProfileUpdate, runtime: RuntimeDep, caller: CallerDep
) -> UserProfilePublic:
    """Merge ``preferences`` keys (``null`` removes one) and set the other fields given.
    ``is_blocked``, ``blocked_reason``, ``loyalty_points`` and ``notes`` are admin-only."""
    caller.require_user(user_id)
    if not caller.is_admin:
        forbidden = ADMIN_FIELDS & changes.model_fields_set
        if forbidden:
            raise ForbiddenError(f"only the admin may change {', '.join(sorted(forbidden))}")
    return await runtime.profiles.update(user_id, changes)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_profile(user_id: UserIdPath, runtime: RuntimeDep, caller: CallerDep) -> None:
    """Delete the profile with its conversations, auth sessions and session data."""
    caller.require_user(user_id)
    await runtime.profiles.delete(user_id)
    await runtime.sessions.delete_owner(user_id)


@router.get("/{user_id}/conversations", response_model=list[ConversationSummary])
async def list_conversations(
    user_id: UserIdPath, runtime: RuntimeDep, caller: CallerDep
) -> list[ConversationSummary]:
    """The user's 20 most recent conversations, newest first, without messages."""
    caller.require_user(user_id)
    return await runtime.conversations.recent(user_id)
