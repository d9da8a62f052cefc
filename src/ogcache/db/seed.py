"""Load the demo data (menu, users, conversations, events) into the database, idempotently.

Each part is loaded only where it is missing: the menu when the menu is empty, each demo
user when their ``user_id`` is absent (with their conversations), the events when there are
none. Running it twice changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ogcache.db.demo_data import (
    DEMO_CONVERSATIONS,
    DEMO_EVENTS,
    DEMO_USERS,
    MENU_ITEMS,
    ConversationSeed,
)
from ogcache.db.models import (
    AgentEvent,
    Conversation,
    ConversationMessage,
    MenuItem,
    UserProfile,
    utc_now,
)

__all__ = ["SeedReport", "seed_demo_data"]


@dataclass(frozen=True, slots=True)
class SeedReport:
    menu_items: int
    users: int
    conversations: int
    events: int

    def __str__(self) -> str:
        return (
            f"{self.menu_items} menu items, {self.users} users, "
            f"{self.conversations} conversations, {self.events} events"
        )


async def seed_demo_data(db: async_sessionmaker[AsyncSession]) -> SeedReport:
    """Insert what is missing of the demo data; return how many rows of each were added."""
    now = utc_now()
    async with db.begin() as session:
        menu_items = await _seed_menu(session, now)
        profiles = await _seed_users(session, now)
        conversations = await _seed_conversations(session, profiles, now)
        events = await _seed_events(session, now)
    return SeedReport(
        menu_items=menu_items, users=len(profiles), conversations=conversations, events=events
    )


async def _seed_menu(session: AsyncSession, now: datetime) -> int:
    """The whole menu when it is empty: a menu the operator edited is left alone."""
    if await session.scalar(select(func.count()).select_from(MenuItem)):
        return 0
    session.add_all(MenuItem(**item, updated_at=now) for item in MENU_ITEMS)
    return len(MENU_ITEMS)


async def _seed_users(session: AsyncSession, now: datetime) -> dict[str, UserProfile]:
    """The demo users whose ``user_id`` is absent, flushed so they have ids; by user_id."""
    existing = set(
        await session.scalars(
            select(UserProfile.user_id).where(
                UserProfile.user_id.in_([user["user_id"] for user in DEMO_USERS])
            )
        )
    )
    profiles: dict[str, UserProfile] = {}
    for user in DEMO_USERS:
        if user["user_id"] in existing:
            continue
        profile = UserProfile(**user, first_visit=now - timedelta(days=30), last_visit=now)
        session.add(profile)
        profiles[user["user_id"]] = profile
    await session.flush()
    return profiles


async def _seed_conversations(
    session: AsyncSession, profiles: dict[str, UserProfile], now: datetime
) -> int:
    """The conversations of the users just added (a day apart, the last a day ago); their
    owners' totals count them. Returns how many were added."""
    added = 0
    for index, seed in enumerate(DEMO_CONVERSATIONS):
        owner = profiles.get(seed["user_id"])
        if owner is None:
            continue
        started = now - timedelta(days=len(DEMO_CONVERSATIONS) - index, minutes=30)
        await _add_conversation(session, owner, seed, started)
        added += 1
    return added


async def _add_conversation(
    session: AsyncSession, owner: UserProfile, seed: ConversationSeed, started: datetime
) -> None:
    """One conversation with its messages a minute apart from ``started``."""
    count = len(seed["messages"])
    conversation = Conversation(
        id=uuid.uuid4(),
        user_profile_id=owner.id,
        channel=seed["channel"],
        language=seed["language"],
        started_at=started,
        last_message_at=started + timedelta(minutes=count),
        message_count=count,
    )
    session.add(conversation)
    await session.flush()  # the conversation row first: its messages refer to it
    session.add_all(
        ConversationMessage(
            conversation_id=conversation.id,
            seq=n,
            role=message["role"],
            content=message["content"],
            created_at=started + timedelta(minutes=n - 1),
        )
        for n, message in enumerate(seed["messages"], start=1)
    )
    owner.total_conversations += 1
    owner.total_messages += count


async def _seed_events(session: AsyncSession, now: datetime) -> int:
    """The demo events when there are none, each tied to its user where that user exists."""
    if await session.scalar(select(func.count()).select_from(AgentEvent)):
        return 0
    rows = await session.execute(select(UserProfile.user_id, UserProfile.id))
    ids = dict(rows.all())
    for n, event in enumerate(DEMO_EVENTS):
        session.add(
            AgentEvent(
                event_type=event["event_type"],
                event_data=event["event_data"],
                user_profile_id=ids.get(event["user_id"]) if event["user_id"] else None,
                created_at=now - timedelta(days=event["days_ago"], seconds=n),
            )
        )
    return len(DEMO_EVENTS)
