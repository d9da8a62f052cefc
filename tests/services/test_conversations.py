"""Conversations: cached by id (with a window of the newest messages), listed per user, every
write invalidating what it changed; messages as rows, paged from the database; the storage
limits refuse a write and store nothing."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from ogcache.cache import MISSING
from ogcache.db.models import Conversation, ConversationMessage, UserProfile
from ogcache.errors import InvalidInputError, LimitExceededError, NotFoundError
from ogcache.runtime import Runtime
from ogcache.schemas import ConversationCreate, ConversationPublic, MessageCreate, MessagePublic
from ogcache.services import ConversationService, ServiceContext, StorageLimits
from ogcache.services.conversations import WINDOW_MAX_BYTES


async def database_conversation(
    runtime: Runtime, conversation_id: uuid.UUID
) -> ConversationPublic | None:
    """The conversation as the database holds it, with all its messages, read without the
    service."""
    async with runtime.db() as session:
        found = (
            await session.execute(
                select(Conversation, UserProfile.user_id)
                .join(UserProfile, UserProfile.id == Conversation.user_profile_id)
                .where(Conversation.id == conversation_id)
            )
        ).first()
        if found is None:
            return None
        row, user_id = found
        messages = await session.scalars(
            select(ConversationMessage)
            .where(ConversationMessage.conversation_id == conversation_id)
            .order_by(ConversationMessage.seq)
        )
        return ConversationPublic.model_validate(
            {
                **{c.key: getattr(row, c.key) for c in Conversation.__table__.columns},
                "user_id": user_id,
                "messages": [
                    {"seq": m.seq, "role": m.role, "content": m.content, "timestamp": m.created_at}
                    for m in messages
                ],
            }
        )


def limited(runtime: Runtime, **limits: int) -> ConversationService:
    """The runtime's conversation service with other storage limits (same database, cache)."""
    context = ServiceContext(
        db=runtime.db,
        cache=runtime.cache,
        namespaces=runtime.namespaces,
        limits=StorageLimits.defaults(**limits),
    )
    return ConversationService(context)


async def add(service: ConversationService, conversation_id: uuid.UUID, *contents: str) -> None:
    for content in contents:
        await service.add_message(conversation_id, MessageCreate(role="user", content=content))


async def start(runtime: Runtime, user_id: str = "web_alice") -> ConversationPublic:
    return await runtime.conversations.create(ConversationCreate(user_id=user_id, channel="web"))


async def test_create_for_an_unknown_user_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFoundError):
        await start(runtime, "nobody")


async def test_create_starts_an_empty_conversation(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await runtime.conversations.create(
        ConversationCreate(user_id="web_alice", channel="telegram", language="ru")
    )
    assert conversation.user_id == "web_alice"
    assert (conversation.channel, conversation.language) == ("telegram", "ru")
    assert (conversation.messages, conversation.message_count) == ([], 0)
    assert await runtime.conversations.get(conversation.id) == conversation


async def test_create_bumps_total_conversations_on_the_next_profile_read(
    runtime: Runtime,
) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    before = await runtime.profiles.get("web_alice")  # cached now
    assert before is not None
    await start(runtime)
    after = await runtime.profiles.get("web_alice")
    assert after is not None
    assert after.total_conversations == before.total_conversations + 1


async def test_get_returns_the_messages_as_stored(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    await runtime.conversations.add_message(
        conversation.id, MessageCreate(role="user", content="What is good for sleep?")
    )
    await runtime.conversations.add_message(
        conversation.id, MessageCreate(role="assistant", content="Try Granddaddy Purple.")
    )
    loaded = await runtime.conversations.get(str(conversation.id))
    assert loaded is not None
    assert loaded == await database_conversation(runtime, conversation.id)
    assert [(m.role, m.content) for m in loaded.messages] == [
        ("user", "What is good for sleep?"),
        ("assistant", "Try Granddaddy Purple."),
    ]


async def test_second_get_of_a_conversation_is_a_cache_hit(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    runtime.cache.reset_stats()
    first = await runtime.conversations.get(conversation.id)
    second = await runtime.conversations.get(conversation.id)
    assert first == second == conversation
    stats = runtime.cache.stats()["conversation"]
    assert (stats.misses, stats.hits, stats.loads) == (1, 1, 1)


async def test_add_message_appends_and_bumps_the_counters(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    before_profile = await runtime.profiles.get("web_alice")
    assert before_profile is not None

    updated = await runtime.conversations.add_message(
        conversation.id, MessageCreate(role="user", content="hello")
    )

    assert updated.message_count == 1
    assert [(m.role, m.content) for m in updated.messages] == [("user", "hello")]
    assert updated.last_message_at > conversation.last_message_at
    assert updated.last_message_at == updated.messages[0].timestamp
    assert updated == await database_conversation(runtime, conversation.id)
    profile = await runtime.profiles.get("web_alice")
    assert profile is not None
    assert profile.total_messages == before_profile.total_messages + 1


async def test_add_message_invalidates_conversation_list_and_both_profile_keys(
    runtime: Runtime,
) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice", telegram_user_id=7001)
    conversation = await start(runtime)
    await runtime.conversations.get(conversation.id)
    await runtime.conversations.recent("web_alice")
    await runtime.profiles.get("web_alice")
    await runtime.profiles.get_by_telegram(7001)
    ns = runtime.namespaces
    entries = [
        (ns.conversation, str(conversation.id)),
        (ns.recent_conversations, "web_alice"),
        (ns.profile, "web_alice"),
        (ns.profile_by_telegram, "7001"),
    ]
    assert MISSING not in await runtime.cache.get_entries(entries)

    added = await runtime.conversations.add_message(
        conversation.id, MessageCreate(role="user", content="anything sativa?")
    )

    # The conversation's entry holds the new state (add_message reads its answer through the
    # cache after invalidating); the others are gone until the next read.
    cached = await runtime.cache.get_entries(entries)
    assert cached[0] == added
    assert [m.content for m in added.messages] == ["anything sativa?"]
    assert cached[1:] == [MISSING] * 3
    loaded = await runtime.conversations.get(conversation.id)
    assert loaded is not None
    assert [m.content for m in loaded.messages] == ["anything sativa?"]
    (summary,) = await runtime.conversations.recent("web_alice")
    assert summary.message_count == 1
    for profile in (
        await runtime.profiles.get("web_alice"),
        await runtime.profiles.get_by_telegram(7001),
    ):
        assert profile is not None
        assert profile.total_messages == 1


async def test_concurrent_add_message_loses_no_message(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    contents = [f"message {n}" for n in range(20)]

    await asyncio.gather(
        *(
            runtime.conversations.add_message(
                conversation.id, MessageCreate(role="user", content=content)
            )
            for content in contents
        )
    )

    stored = await database_conversation(runtime, conversation.id)
    assert stored is not None
    assert stored.message_count == 20
    assert sorted(m.content for m in stored.messages) == sorted(contents)
    assert [m.seq for m in stored.messages] == list(range(1, 21))
    assert await runtime.conversations.get(conversation.id) == stored
    profile = await runtime.profiles.get("web_alice")
    assert profile is not None
    assert profile.total_messages == 20


async def test_recent_lists_newest_first_without_messages(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    first = await start(runtime)
    second = await start(runtime)
    third = await start(runtime)
    recent = await runtime.conversations.recent("web_alice")
    assert [summary.id for summary in recent] == [third.id, second.id, first.id]
    assert all(not hasattr(summary, "messages") for summary in recent)
    assert [s.id for s in await runtime.conversations.recent("web_alice", limit=2)] == [
        third.id,
        second.id,
    ]


async def test_recent_lists_only_the_users_own_conversations(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    await runtime.profiles.get_or_create(user_id="web_bob")
    mine = await start(runtime, "web_alice")
    await start(runtime, "web_bob")
    assert [s.id for s in await runtime.conversations.recent("web_alice")] == [mine.id]


async def test_second_recent_read_is_a_cache_hit(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    await start(runtime)
    runtime.cache.reset_stats()
    first = await runtime.conversations.recent("web_alice")
    second = await runtime.conversations.recent("web_alice", limit=1)
    assert first == second
    stats = runtime.cache.stats()["conversation:recent"]
    assert (stats.misses, stats.hits, stats.loads) == (1, 1, 1)


async def test_create_invalidates_the_recent_list(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    first = await start(runtime)
    assert [s.id for s in await runtime.conversations.recent("web_alice")] == [first.id]

    second = await start(runtime)

    cached = await runtime.cache.get(runtime.namespaces.recent_conversations, "web_alice")
    assert cached is MISSING
    assert [s.id for s in await runtime.conversations.recent("web_alice")] == [
        second.id,
        first.id,
    ]


async def test_add_message_refreshes_the_recent_list(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    (before,) = await runtime.conversations.recent("web_alice")
    assert before.message_count == 0

    await runtime.conversations.add_message(
        conversation.id, MessageCreate(role="user", content="hi")
    )

    (after,) = await runtime.conversations.recent("web_alice")
    assert after.message_count == 1
    assert after.last_message_at > before.last_message_at


async def test_recent_of_an_unknown_user_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFoundError):
        await runtime.conversations.recent("nobody")


@pytest.mark.parametrize("limit", [0, -1, 21])
async def test_recent_rejects_a_limit_out_of_range(runtime: Runtime, limit: int) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    with pytest.raises(InvalidInputError, match="limit"):
        await runtime.conversations.recent("web_alice", limit=limit)


async def test_recent_rejects_an_invalid_user_id(runtime: Runtime) -> None:
    with pytest.raises(InvalidInputError, match="user_id"):
        await runtime.conversations.recent("has space")


@pytest.mark.parametrize("conversation_id", ["not-a-uuid", "", "1234"])
async def test_an_invalid_conversation_id_is_rejected(
    runtime: Runtime, conversation_id: str
) -> None:
    with pytest.raises(InvalidInputError, match="UUID"):
        await runtime.conversations.get(conversation_id)
    with pytest.raises(InvalidInputError, match="UUID"):
        await runtime.conversations.add_message(
            conversation_id, MessageCreate(role="user", content="hi")
        )


async def test_an_unknown_conversation_reads_as_none(runtime: Runtime) -> None:
    assert await runtime.conversations.get(uuid.uuid4()) is None
    with pytest.raises(NotFoundError):
        await runtime.conversations.require(uuid.uuid4())


async def test_adding_to_an_unknown_conversation_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFoundError):
        await runtime.conversations.add_message(
            uuid.uuid4(), MessageCreate(role="user", content="hi")
        )


@pytest.mark.parametrize(
    "fields",
    [
        {"user_id": "web_alice", "channel": "sms"},
        {"user_id": "web_alice"},
        {"user_id": "has space", "channel": "web"},
        {"user_id": "web_alice", "channel": "web", "language": "English"},
        {"user_id": "web_alice", "channel": "web", "extra": 1},
    ],
)
def test_invalid_conversation_input_is_a_validation_error(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ConversationCreate.model_validate(fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"role": "user", "content": ""},
        {"role": "system", "content": "hi"},
        {"role": "user", "content": "x" * 16_001},
        {"content": "hi"},
    ],
)
def test_invalid_message_input_is_a_validation_error(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        MessageCreate.model_validate(fields)


async def test_concurrent_create_counts_every_conversation(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    created = await asyncio.gather(*(start(runtime) for _ in range(10)))
    assert len({conversation.id for conversation in created}) == 10
    profile = await runtime.profiles.get("web_alice")
    assert profile is not None
    assert profile.total_conversations == 10


# --- messages as rows: the window, paging, the limits ---------------------------------------


async def test_concurrent_writers_get_distinct_consecutive_seqs(runtime: Runtime) -> None:
    """Several tasks, each appending in turn, interleave: nothing is lost, no seq repeats."""
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    writers, each = 5, 6

    async def writer(name: int) -> None:
        await add(runtime.conversations, conversation.id, *(f"w{name}-{n}" for n in range(each)))

    await asyncio.gather(*(writer(name) for name in range(writers)))

    stored = await database_conversation(runtime, conversation.id)
    assert stored is not None
    assert stored.message_count == writers * each
    assert [m.seq for m in stored.messages] == list(range(1, writers * each + 1))
    assert sorted(m.content for m in stored.messages) == sorted(
        f"w{name}-{n}" for name in range(writers) for n in range(each)
    )
    for name in range(writers):  # each writer's own messages keep their order
        mine = [m.content for m in stored.messages if m.content.startswith(f"w{name}-")]
        assert mine == [f"w{name}-{n}" for n in range(each)]


async def test_get_holds_the_newest_window_in_order_and_the_total_count(
    runtime: Runtime,
) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    service = limited(runtime, conversation_window=3)
    await add(service, conversation.id, *(f"m{n}" for n in range(1, 8)))

    loaded = await service.get(conversation.id)

    assert loaded is not None
    assert loaded.message_count == 7
    assert [(m.seq, m.content) for m in loaded.messages] == [(5, "m5"), (6, "m6"), (7, "m7")]
    cached = await runtime.cache.get(runtime.namespaces.conversation, str(conversation.id))
    assert cached == loaded


async def test_the_cached_window_stays_below_the_byte_cap_with_large_messages(
    runtime: Runtime,
) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    # 16,000 three-byte characters: 48,000 bytes each, so only two fit in 128 KiB.
    big = [str(n % 10) + "€" * 15_999 for n in range(12)]
    await add(runtime.conversations, conversation.id, *big)

    loaded = await runtime.conversations.get(conversation.id)

    assert loaded is not None
    assert loaded.message_count == 12
    assert [m.seq for m in loaded.messages] == [11, 12]
    assert [m.content for m in loaded.messages] == big[-2:]
    ns = runtime.namespaces.conversation
    cached = await runtime.cache.get(ns, str(conversation.id))
    assert cached == loaded  # cached, not refused as oversized
    assert sum(len(m.content.encode()) for m in loaded.messages) <= WINDOW_MAX_BYTES
    assert len(ns.codec.dumps(loaded)) < WINDOW_MAX_BYTES + 4096
    assert runtime.cache.stats()["conversation"].oversized == 0


async def test_the_byte_cap_counts_the_encoded_size_of_escaped_content(
    runtime: Runtime,
) -> None:
    """Control characters take 6 bytes each in JSON: the cap counts what the cache stores."""
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    await add(runtime.conversations, conversation.id, *(["\x01" * 16_000] * 4))

    loaded = await runtime.conversations.get(conversation.id)

    assert loaded is not None
    assert [m.seq for m in loaded.messages] == [4]  # 96,002 bytes each: one fits
    ns = runtime.namespaces.conversation
    assert await runtime.cache.get(ns, str(conversation.id)) == loaded
    assert len(ns.codec.dumps(loaded)) < WINDOW_MAX_BYTES + 4096


async def test_paging_returns_every_message_exactly_once(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    await add(runtime.conversations, conversation.id, *(f"m{n}" for n in range(1, 24)))

    pages: list[list[MessagePublic]] = []
    before: int | None = None
    while True:
        page = await runtime.conversations.messages(conversation.id, before=before, limit=5)
        if not page:
            break
        pages.append(page)
        before = page[0].seq

    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    for page in pages:  # each page chronological, the newest page first
        assert [m.seq for m in page] == sorted(m.seq for m in page)
    assert pages[0][-1].seq == 23
    seen = [m for page in reversed(pages) for m in page]
    assert [(m.seq, m.content) for m in seen] == [(n, f"m{n}") for n in range(1, 24)]
    everything = await runtime.conversations.messages(conversation.id, limit=100)
    assert everything == seen


async def test_paging_validates_its_arguments(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    for limit in (0, 101):
        with pytest.raises(InvalidInputError, match="limit"):
            await runtime.conversations.messages(conversation.id, limit=limit)
    for before in (0, 2**31, 10**30):  # past a 32-bit seq: SQLite cannot even bind it
        with pytest.raises(InvalidInputError, match="before"):
            await runtime.conversations.messages(conversation.id, before=before)
    assert await runtime.conversations.messages(conversation.id, before=2**31 - 1) == []
    assert await runtime.conversations.messages(conversation.id) == []
    with pytest.raises(NotFoundError):
        await runtime.conversations.messages(uuid.uuid4())


async def test_a_full_conversation_refuses_a_message_and_stores_nothing(
    runtime: Runtime,
) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    service = limited(runtime, max_messages_per_conversation=3)
    await add(service, conversation.id, "one", "two", "three")
    before = await database_conversation(runtime, conversation.id)
    profile_before = await runtime.profiles.get("web_alice")

    with pytest.raises(LimitExceededError, match="OGCACHE_MAX_MESSAGES_PER_CONVERSATION"):
        await add(service, conversation.id, "four")

    assert await database_conversation(runtime, conversation.id) == before
    assert before is not None
    assert before.message_count == 3
    assert await runtime.profiles.get("web_alice") == profile_before
    # Another conversation of the same user still takes messages.
    other = await start(runtime)
    await add(service, other.id, "elsewhere")


async def test_the_per_user_message_budget_spans_conversations(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    first, second = await start(runtime), await start(runtime)
    service = limited(runtime, max_messages_per_user=3)
    await add(service, first.id, "a", "b")
    await add(service, second.id, "c")

    with pytest.raises(LimitExceededError, match="OGCACHE_MAX_MESSAGES_PER_USER"):
        await add(service, second.id, "d")

    stored = await database_conversation(runtime, second.id)
    assert stored is not None
    assert [m.content for m in stored.messages] == ["c"]


async def test_concurrent_appends_stop_exactly_at_the_limit(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    conversation = await start(runtime)
    service = limited(runtime, max_messages_per_conversation=4)

    results = await asyncio.gather(
        *(
            service.add_message(conversation.id, MessageCreate(role="user", content=f"m{n}"))
            for n in range(10)
        ),
        return_exceptions=True,
    )

    refused = [r for r in results if isinstance(r, LimitExceededError)]
    assert len(refused) == 6
    assert all(isinstance(r, ConversationPublic) for r in results if r not in refused)
    stored = await database_conversation(runtime, conversation.id)
    assert stored is not None
    assert [m.seq for m in stored.messages] == [1, 2, 3, 4]
    assert stored.message_count == 4


async def test_create_refuses_past_the_conversation_limit(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    service = limited(runtime, max_conversations_per_user=3)

    results = await asyncio.gather(
        *(service.create(ConversationCreate(user_id="web_alice", channel="web")) for _ in range(8)),
        return_exceptions=True,
    )

    created = [r for r in results if isinstance(r, ConversationPublic)]
    refused = [r for r in results if isinstance(r, LimitExceededError)]
    assert (len(created), len(refused)) == (3, 5)
    assert "OGCACHE_MAX_CONVERSATIONS_PER_USER" in str(refused[0])
    async with runtime.db() as session:
        rows = list(await session.scalars(select(Conversation.id)))
    assert sorted(rows) == sorted(c.id for c in created)
    profile = await runtime.profiles.get("web_alice")
    assert profile is not None
    assert profile.total_conversations == 3


async def test_deleting_the_profile_deletes_the_message_rows(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    await runtime.profiles.get_or_create(user_id="web_bob")
    mine, theirs = await start(runtime, "web_alice"), await start(runtime, "web_bob")
    await add(runtime.conversations, mine.id, "a", "b")
    await add(runtime.conversations, theirs.id, "c")

    await runtime.profiles.delete("web_alice")

    async with runtime.db() as session:
        left = list(await session.scalars(select(ConversationMessage.content)))
    assert left == ["c"]
