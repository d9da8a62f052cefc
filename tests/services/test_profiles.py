"""Profiles: cached by user_id and telegram_user_id, both invalidated by every write."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, update

from ogcache.cache import MISSING
from ogcache.db.models import UserProfile
from ogcache.errors import ConflictError, InvalidInputError, NotFoundError
from ogcache.runtime import Runtime
from ogcache.schemas import ConversationCreate, ProfileUpdate, UserProfilePublic


async def database_profile(runtime: Runtime, user_id: str) -> UserProfilePublic | None:
    async with runtime.db() as session:
        row = await session.scalar(select(UserProfile).where(UserProfile.user_id == user_id))
        return UserProfilePublic.model_validate(row) if row else None


async def cached(runtime: Runtime, user_id: str, telegram_user_id: int | None = None) -> tuple:
    ns = runtime.namespaces
    by_user = await runtime.cache.get(ns.profile, user_id)
    by_telegram = (
        await runtime.cache.get(ns.profile_by_telegram, str(telegram_user_id))
        if telegram_user_id is not None
        else MISSING
    )
    return by_user, by_telegram


async def test_get_or_create_creates_a_profile_that_reads_back(runtime: Runtime) -> None:
    created = await runtime.profiles.get_or_create(user_id="web_alice")
    assert created.user_id == "web_alice"
    assert await runtime.profiles.get("web_alice") == await database_profile(runtime, "web_alice")


async def test_second_read_of_a_profile_is_a_cache_hit(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    runtime.cache.reset_stats()
    first = await runtime.profiles.get("web_alice")
    second = await runtime.profiles.get("web_alice")
    assert first == second
    stats = runtime.cache.stats()["user:profile"]
    assert (stats.misses, stats.hits, stats.loads) == (1, 1, 1)


async def test_profile_by_telegram_id_is_cached_under_its_own_key(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(telegram_user_id=100001, telegram_username="bob")
    profile = await runtime.profiles.get_by_telegram(100001)
    assert profile is not None
    assert profile.user_id == "tg_100001"
    assert profile.telegram_username == "bob"
    assert (await cached(runtime, "tg_100001", 100001))[1] == profile


async def test_an_unknown_user_reads_as_none(runtime: Runtime) -> None:
    assert await runtime.profiles.get("nobody") is None
    assert await runtime.profiles.get_by_telegram(42) is None


async def test_concurrent_get_or_create_makes_one_row(runtime: Runtime) -> None:
    results = await asyncio.gather(
        *(runtime.profiles.get_or_create(user_id="web_race") for _ in range(20))
    )
    assert len({profile.id for profile in results}) == 1
    async with runtime.db() as session:
        count = await session.scalar(
            select(func.count()).select_from(UserProfile).where(UserProfile.user_id == "web_race")
        )
    assert count == 1


async def test_concurrent_get_or_create_by_telegram_makes_one_row(runtime: Runtime) -> None:
    results = await asyncio.gather(
        *(runtime.profiles.get_or_create(telegram_user_id=777) for _ in range(20))
    )
    assert {profile.user_id for profile in results} == {"tg_777"}


async def test_update_merges_preferences_and_invalidates_both_keys(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice", telegram_user_id=5001)
    await runtime.profiles.update(
        "web_alice", ProfileUpdate(preferences={"language": "en", "experienceLevel": "beginner"})
    )
    await runtime.profiles.get("web_alice")
    await runtime.profiles.get_by_telegram(5001)

    await runtime.profiles.update(
        "web_alice", ProfileUpdate(preferences={"language": "ru", "experienceLevel": None})
    )

    assert await cached(runtime, "web_alice", 5001) == (MISSING, MISSING)
    for profile in (
        await runtime.profiles.get("web_alice"),
        await runtime.profiles.get_by_telegram(5001),
    ):
        assert profile is not None
        assert profile.preferences == {"language": "ru"}


async def test_record_visit_invalidates_and_is_visible(runtime: Runtime) -> None:
    created = await runtime.profiles.get_or_create(user_id="web_alice", telegram_user_id=5002)
    await runtime.profiles.get("web_alice")
    await runtime.profiles.get_by_telegram(5002)
    visited = await runtime.profiles.record_visit("web_alice")
    assert visited.last_visit > created.last_visit
    assert await cached(runtime, "web_alice", 5002) == (MISSING, MISSING)
    assert await runtime.profiles.get("web_alice") == visited


async def test_link_telegram_invalidates_old_and_new_telegram_keys(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice", telegram_user_id=6001)
    await runtime.profiles.get("web_alice")
    await runtime.profiles.get_by_telegram(6001)

    await runtime.profiles.link_telegram("web_alice", 6002, "alice_tg")

    assert await runtime.profiles.get_by_telegram(6001) is None
    relinked = await runtime.profiles.get_by_telegram(6002)
    assert relinked is not None
    assert relinked.user_id == "web_alice"
    assert relinked.telegram_username == "alice_tg"


async def test_get_or_create_links_a_telegram_id_to_an_unlinked_profile(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    linked = await runtime.profiles.get_or_create(user_id="web_alice", telegram_user_id=6100)
    assert linked.telegram_user_id == 6100
    assert await runtime.profiles.get_by_telegram(6100) == linked


async def test_a_telegram_id_linked_to_another_user_is_a_conflict(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice", telegram_user_id=6200)
    await runtime.profiles.get_or_create(user_id="web_bob")
    with pytest.raises(ConflictError, match="another user"):
        await runtime.profiles.link_telegram("web_bob", 6200)
    with pytest.raises(ConflictError):
        await runtime.profiles.get_or_create(user_id="web_carol", telegram_user_id=6200)


async def test_delete_invalidates_profile_conversations_and_list(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice", telegram_user_id=6300)
    conversation = await runtime.conversations.create(
        ConversationCreate(user_id="web_alice", channel="web")
    )
    await runtime.profiles.get("web_alice")
    await runtime.profiles.get_by_telegram(6300)
    await runtime.conversations.get(conversation.id)
    await runtime.conversations.recent("web_alice")

    await runtime.profiles.delete("web_alice")

    ns = runtime.namespaces
    assert await cached(runtime, "web_alice", 6300) == (MISSING, MISSING)
    assert await runtime.cache.get(ns.conversation, str(conversation.id)) is MISSING
    assert await runtime.cache.get(ns.recent_conversations, "web_alice") is MISSING
    assert await runtime.profiles.get("web_alice") is None
    assert await runtime.conversations.get(conversation.id) is None


async def test_cached_profile_matches_the_database_after_each_write(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    writes = [
        lambda: runtime.profiles.update("web_alice", ProfileUpdate(loyalty_points=50)),
        lambda: runtime.profiles.update("web_alice", ProfileUpdate(notes="prefers edibles")),
        lambda: runtime.profiles.record_visit("web_alice"),
        lambda: runtime.profiles.link_telegram("web_alice", 6400),
        lambda: runtime.conversations.create(
            ConversationCreate(user_id="web_alice", channel="web")
        ),
    ]
    for write in writes:
        await runtime.profiles.get("web_alice")  # make sure a cached copy exists
        await write()
        assert await runtime.profiles.get("web_alice") == await database_profile(
            runtime, "web_alice"
        )


async def test_a_write_made_directly_in_the_database_shows_after_invalidate(
    runtime: Runtime,
) -> None:
    profile = await runtime.profiles.get_or_create(user_id="web_alice")
    await runtime.profiles.get("web_alice")
    async with runtime.db.begin() as session:
        await session.execute(
            update(UserProfile).where(UserProfile.id == profile.id).values(loyalty_points=999)
        )
    await runtime.profiles.invalidate(profile)
    refreshed = await runtime.profiles.get("web_alice")
    assert refreshed is not None
    assert refreshed.loyalty_points == 999


async def test_updating_an_unknown_user_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFoundError):
        await runtime.profiles.update("nobody", ProfileUpdate(notes="x"))
    with pytest.raises(NotFoundError):
        await runtime.profiles.delete("nobody")


@pytest.mark.parametrize("user_id", ["", "has space", "x" * 129, "semi;colon"])
async def test_invalid_user_ids_are_rejected(runtime: Runtime, user_id: str) -> None:
    with pytest.raises(InvalidInputError, match="user_id"):
        await runtime.profiles.get(user_id)


@pytest.mark.parametrize("telegram_user_id", [0, -1, 2**63, True])
async def test_invalid_telegram_ids_are_rejected(runtime: Runtime, telegram_user_id: int) -> None:
    with pytest.raises(InvalidInputError, match="telegram_user_id"):
        await runtime.profiles.get_by_telegram(telegram_user_id)


async def test_get_or_create_needs_an_id(runtime: Runtime) -> None:
    with pytest.raises(InvalidInputError):
        await runtime.profiles.get_or_create()


# --- concurrent writes, on both stacks --------------------------------------------------------


async def test_concurrent_preference_updates_lose_no_key(runtime: Runtime) -> None:
    """Each update is a locked read-modify-write (FOR UPDATE, or SQLite's write lock)."""
    await runtime.profiles.get_or_create(user_id="web_alice", telegram_user_id=7001)
    await runtime.profiles.update("web_alice", ProfileUpdate(preferences={"language": "en"}))
    await runtime.profiles.get("web_alice")  # a cached copy, to be invalidated
    await runtime.profiles.get_by_telegram(7001)

    results = await asyncio.gather(
        *(
            runtime.profiles.update("web_alice", ProfileUpdate(preferences={f"k{i}": i}))
            for i in range(20)
        )
    )

    expected = {"language": "en", **{f"k{i}": i for i in range(20)}}
    for i, result in enumerate(results):
        assert result.preferences[f"k{i}"] == i  # each update saw its own key
        assert result.preferences["language"] == "en"
    # The updates ran one after another: each saw all earlier ones, so the sizes are distinct.
    assert sorted(len(result.preferences) for result in results) == list(range(2, 22))
    stored = await database_profile(runtime, "web_alice")
    assert stored is not None
    assert stored.preferences == expected
    assert await runtime.profiles.get("web_alice") == stored
    assert await runtime.profiles.get_by_telegram(7001) == stored
    assert await cached(runtime, "web_alice", 7001) == (stored, stored)


async def test_concurrent_links_of_one_telegram_id_have_one_winner(runtime: Runtime) -> None:
    telegram_user_id = 7100
    await runtime.profiles.get_or_create(user_id="web_alice")
    await runtime.profiles.get_or_create(user_id="web_bob")
    # Cached copies of both profiles; nobody holds the Telegram id yet.
    await runtime.profiles.get("web_alice")
    await runtime.profiles.get("web_bob")
    assert await runtime.profiles.get_by_telegram(telegram_user_id) is None

    outcomes = await asyncio.gather(
        runtime.profiles.link_telegram("web_alice", telegram_user_id, "alice_tg"),
        runtime.profiles.link_telegram("web_bob", telegram_user_id, "bob_tg"),
        return_exceptions=True,
    )

    for outcome in outcomes:  # a profile or a ConflictError, never an IntegrityError
        assert isinstance(outcome, UserProfilePublic | ConflictError), repr(outcome)
    winners = [outcome for outcome in outcomes if isinstance(outcome, UserProfilePublic)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, ConflictError)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert "another user" in str(losers[0])
    winner = winners[0]
    loser_id = ({"web_alice", "web_bob"} - {winner.user_id}).pop()
    assert winner.telegram_user_id == telegram_user_id
    assert winner.telegram_username == f"{winner.user_id.removeprefix('web_')}_tg"

    # The database holds the winner's link only; the loser's profile is unchanged.
    assert await database_profile(runtime, winner.user_id) == winner
    loser = await database_profile(runtime, loser_id)
    assert loser is not None
    assert (loser.telegram_user_id, loser.telegram_username) == (None, None)
    assert await runtime.profiles.get(loser_id) == loser

    # The cache serves the winner under user:telegram: loaded once, then a hit.
    runtime.cache.reset_stats()
    assert await runtime.profiles.get_by_telegram(telegram_user_id) == winner
    assert await runtime.profiles.get_by_telegram(telegram_user_id) == winner
    stats = runtime.cache.stats()["user:telegram"]
    assert (stats.loads, stats.hits) == (1, 1)
    by_telegram = runtime.namespaces.profile_by_telegram
    assert await runtime.cache.get(by_telegram, str(telegram_user_id)) == winner
    assert await runtime.profiles.get(winner.user_id) == winner


async def test_a_profile_created_after_a_not_found_read_is_visible_at_once(
    runtime: Runtime,
) -> None:
    assert await runtime.profiles.get("web_late") is None  # "not found" is cached now
    assert await runtime.profiles.get_by_telegram(8800) is None
    created = await runtime.profiles.get_or_create(user_id="web_late", telegram_user_id=8800)
    assert await runtime.profiles.get("web_late") == created
    assert await runtime.profiles.get_by_telegram(8800) == created
