"""The data the services return and accept: pydantic models, separate from the tables.

``*Public`` models are what reads return (and what the cache stores as JSON); ``*Create`` and
``*Update`` models are validated input. Field names are the tables' column names.
"""

from __future__ import annotations

import math
import unicodedata
import uuid
from collections.abc import Iterable
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "MAX_JSON_DEPTH",
    "AuthIdentity",
    "Channel",
    "ConversationCreate",
    "ConversationPublic",
    "ConversationSummary",
    "IssuedToken",
    "JsonObject",
    "JsonValue",
    "MenuItemCreate",
    "MenuItemPublic",
    "MenuItemUpdate",
    "MenuPublic",
    "MessageCreate",
    "MessagePublic",
    "ProfileUpdate",
    "SessionRecord",
    "SessionState",
    "TodayMetrics",
    "TopProduct",
    "UserId",
    "UserProfilePublic",
]

Channel = Literal["web", "telegram", "api"]
Role = Literal["user", "assistant"]
UserId = str
TelegramUserId = int

USER_ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"

# Free-form JSON a client stores (preferences, session data) nests at most this deep, so that
# every value we accept can be encoded, cached, read back and answered (the JSON libraries
# stop between 200 and 255 levels, and a value near that would poison its own record).
MAX_JSON_DEPTH: Final = 32


# Integers a client stores fit in 64 signed bits: the JSON encoder (orjson) refuses larger ones.
_MIN_INT: Final = -(2**63)
_MAX_INT: Final = 2**63 - 1


def check_json(value: Any) -> Any:
    """``value`` if it is JSON we store: nested at most ``MAX_JSON_DEPTH`` deep (a scalar is
    depth 0, ``{}`` depth 1), with finite numbers and 64-bit integers only; ``ValueError``
    saying why otherwise."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            # NaN and Infinity are not JSON: PostgreSQL refuses them, a JSON encoder nulls them.
            raise ValueError("numbers must be finite (no NaN or Infinity)")
        if isinstance(item, int) and not _MIN_INT <= item <= _MAX_INT:
            raise ValueError("integers must fit in 64 bits (-2**63 to 2**63 - 1)")
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= MAX_JSON_DEPTH:
            raise ValueError(f"JSON must nest at most {MAX_JSON_DEPTH} levels deep")
        pending.extend((child, depth + 1) for child in children)
    return value


JsonValue = Annotated[Any, AfterValidator(check_json)]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class UserProfilePublic(_Public):
    id: uuid.UUID
    user_id: str
    telegram_user_id: int | None
    telegram_username: str | None
    created_at: datetime
    updated_at: datetime
    first_visit: datetime
    last_visit: datetime
    total_conversations: int
    total_messages: int
    total_orders: int
    total_spent: float
    preferences: dict[str, Any]
    loyalty_points: int
    notes: str | None
    is_active: bool
    is_blocked: bool
    blocked_reason: str | None


class ProfileUpdate(BaseModel):
    """Fields to change; ``preferences`` is merged key by key (a ``null`` value removes a key)."""

    model_config = ConfigDict(extra="forbid")

    preferences: JsonObject | None = Field(default=None, max_length=100)
    telegram_username: str | None = Field(default=None, max_length=64)
    notes: str | None = Field(default=None, max_length=4000)
    loyalty_points: int | None = Field(default=None, ge=0, le=10_000_000)
    is_blocked: bool | None = None
    blocked_reason: str | None = Field(default=None, max_length=500)


class MessagePublic(_Public):
    """One message; ``seq`` is its 1-based position in the conversation (for paging)."""

    seq: int
    role: Role
    content: str
    timestamp: datetime


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str = Field(min_length=1, max_length=16_000)


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(pattern=USER_ID_PATTERN)
    channel: Channel
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")


class ConversationSummary(_Public):
    """A conversation without its messages, as listed for a user."""

    id: uuid.UUID
    user_profile_id: uuid.UUID
    user_id: str
    channel: Channel
    language: str
    started_at: datetime
    ended_at: datetime | None
    last_message_at: datetime
    message_count: int
    summary: str | None


class ConversationPublic(ConversationSummary):
    """The conversation with its newest messages in chronological order: at most
    ``OGCACHE_CONVERSATION_WINDOW`` of them, and fewer when their content passes 128 KiB;
    ``message_count`` is the total, and older ones are paged from
    ``GET /api/conversations/{id}/messages``."""

    messages: list[MessagePublic]


class MenuItemPublic(_Public):
    id: int
    name: str
    category: str
    type: str | None
    thc: float | None
    cbg: float | None
    cbd: float | None
    price_1pc: int | None
    price_1g: int | None
    price_5g: int | None
    price_20g: int | None
    is_concentrate: bool
    our: bool
    available: bool
    description: str | None
    sort_order: int
    updated_at: datetime


_Price = Field(default=None, ge=0, le=10_000_000)
_Percent = Field(default=None, ge=0, le=100)
_SORT_ORDER_BOUND: Final = 1_000_000  # far inside a 32-bit INTEGER column


def _one_line(value: str) -> str:
    # A name or category is one line of the agent's menu text: a line break or another
    # control character in it would start a line the prompt does not expect.
    # Cc: C0/C1 controls (incl. U+0085); Zl/Zp: U+2028/U+2029, which splitlines() breaks on.
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in value):
        raise ValueError("must be one line of text, without control characters")
    return value


ItemName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=120),
    AfterValidator(_one_line),
]
ItemCategory = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=60),
    AfterValidator(_one_line),
]
ItemType = Literal["indica", "sativa", "hybrid"]
SortOrder = Annotated[int, Field(ge=-_SORT_ORDER_BOUND, le=_SORT_ORDER_BOUND)]


class MenuItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ItemName
    category: ItemCategory
    type: ItemType | None = None
    thc: float | None = _Percent
    cbg: float | None = _Percent
    cbd: float | None = _Percent
    price_1pc: int | None = _Price
    price_1g: int | None = _Price
    price_5g: int | None = _Price
    price_20g: int | None = _Price
    is_concentrate: bool = False
    our: bool = False
    available: bool = True
    description: str | None = Field(default=None, max_length=1000)
    sort_order: SortOrder = 0


class MenuItemUpdate(BaseModel):
    """Fields to change on one menu item; unset fields keep their value. ``null`` clears a
    nullable field (a price tier, ``type``, ``description``); the service refuses it for
    ``category``, ``available`` and ``sort_order``."""

    model_config = ConfigDict(extra="forbid")

    category: ItemCategory | None = None
    type: ItemType | None = None
    thc: float | None = _Percent
    cbg: float | None = _Percent
    cbd: float | None = _Percent
    price_1pc: int | None = _Price
    price_1g: int | None = _Price
    price_5g: int | None = _Price
    price_20g: int | None = _Price
    available: bool | None = None
    description: str | None = Field(default=None, max_length=1000)
    sort_order: SortOrder | None = None


class MenuPublic(_Public):
    include_concentrates: bool
    items: list[MenuItemPublic]
    loaded_at: datetime


class AuthIdentity(_Public):
    """Who a verified bearer token belongs to."""

    user_id: str
    profile_id: uuid.UUID
    session_id: uuid.UUID
    role: str
    expires_at: datetime


class SessionRecord(_Public):
    """Session data kept in the cache only, with the user who stored it first."""

    session_id: str
    owner: str | None
    data: dict[str, Any]
    updated_at: datetime


class SessionState(_Public):
    """Whether an auth session may still be used (cached; every token of it checks this)."""

    session_id: uuid.UUID
    user_id: str
    active: bool


class IssuedToken(_Public):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    session_id: uuid.UUID
    user_id: str
    expires_at: datetime


class TodayMetrics(_Public):
    day: date
    events_total: int
    events_by_type: dict[str, int]
    active_users: int
    conversations_started: int
    messages_sent: int
    orders_created: int


class TopProduct(_Public):
    product: str
    mentions: int
    orders: int
