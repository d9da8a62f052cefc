"""The menu: two cached variants and two cached texts, all four dropped by every write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select

from ogcache.cache import MISSING
from ogcache.config import Settings
from ogcache.db.models import MenuItem
from ogcache.errors import ConflictError, InvalidInputError, NotFoundError
from ogcache.runtime import Runtime
from ogcache.schemas import MenuItemCreate, MenuItemPublic, MenuItemUpdate


async def database_items(runtime: Runtime, *, include_concentrates: bool) -> list[MenuItemPublic]:
    """Available items read straight from the table, ordered by id."""
    query = select(MenuItem).where(MenuItem.available.is_(True)).order_by(MenuItem.id)
    if not include_concentrates:
        query = query.where(MenuItem.is_concentrate.is_(False))
    async with runtime.db() as session:
        return [MenuItemPublic.model_validate(row) for row in await session.scalars(query)]


async def item_named(runtime: Runtime, name: str) -> MenuItemPublic:
    async with runtime.db() as session:
        row = await session.scalar(select(MenuItem).where(MenuItem.name == name))
    assert row is not None, name
    return MenuItemPublic.model_validate(row)


def by_id(items: list[MenuItemPublic]) -> list[MenuItemPublic]:
    return sorted(items, key=lambda item: item.id)


async def populate_all_four(runtime: Runtime) -> None:
    for include_concentrates in (False, True):
        await runtime.menu.get_menu(include_concentrates)
        await runtime.menu.get_context(include_concentrates)
    assert MISSING not in await cached_entries(runtime)


async def cached_entries(runtime: Runtime) -> list[object]:
    ns = runtime.namespaces
    return await runtime.cache.get_entries(
        [
            (ns.menu, "items"),
            (ns.menu, "items:concentrates"),
            (ns.menu_context, "text"),
            (ns.menu_context, "text:concentrates"),
        ]
    )


async def test_menu_lists_available_items_without_concentrates(seeded: Runtime) -> None:
    menu = await seeded.menu.get_menu()
    assert not menu.include_concentrates
    assert by_id(menu.items) == await database_items(seeded, include_concentrates=False)
    assert menu.items
    assert all(item.available and not item.is_concentrate for item in menu.items)
    names = {item.name for item in menu.items}
    assert "Zkittlez" not in names  # unavailable
    assert "Bubble Hash" not in names  # a concentrate


async def test_menu_with_concentrates_lists_every_available_item(seeded: Runtime) -> None:
    menu = await seeded.menu.get_menu(True)
    assert menu.include_concentrates
    assert by_id(menu.items) == await database_items(seeded, include_concentrates=True)
    names = {item.name for item in menu.items}
    assert {"Bubble Hash", "Live Rosin"} <= names
    assert "Flower Rosin" not in names  # an unavailable concentrate


async def test_menu_is_ordered_by_sort_order(seeded: Runtime) -> None:
    items = (await seeded.menu.get_menu(True)).items
    assert items == sorted(items, key=lambda item: (item.sort_order, item.name))


async def test_second_menu_read_is_a_cache_hit(seeded: Runtime) -> None:
    seeded.cache.reset_stats()
    first = await seeded.menu.get_menu()
    second = await seeded.menu.get_menu()
    assert first == second
    stats = seeded.cache.stats()["menu"]
    assert (stats.misses, stats.hits, stats.loads) == (1, 1, 1)


async def test_the_two_menu_variants_are_cached_apart(seeded: Runtime) -> None:
    plain = await seeded.menu.get_menu(False)
    full = await seeded.menu.get_menu(True)
    assert len(full.items) > len(plain.items)
    assert await seeded.cache.get(seeded.namespaces.menu, "items") == plain
    assert await seeded.cache.get(seeded.namespaces.menu, "items:concentrates") == full


async def test_context_names_items_with_their_prices(seeded: Runtime) -> None:
    text = await seeded.menu.get_context()
    gelato = await item_named(seeded, "Gelato 41")
    gummies = await item_named(seeded, "Mango Gummies")
    assert "- Gelato 41 (" in text
    assert f"1g {gelato.price_1g} THB" in text
    assert f"1pc {gummies.price_1pc} THB" in text
    assert "## TOP SHELF" in text
    assert "Zkittlez" not in text
    assert "Bubble Hash" not in text


async def test_context_with_concentrates_includes_them(seeded: Runtime) -> None:
    text = await seeded.menu.get_context(True)
    rosin = await item_named(seeded, "Live Rosin")
    assert "- Live Rosin" in text
    assert f"1g {rosin.price_1g} THB" in text
    assert "Flower Rosin" not in text


async def test_context_is_cached_under_menu_context(seeded: Runtime) -> None:
    text = await seeded.menu.get_context()
    full_text = await seeded.menu.get_context(True)
    assert await seeded.cache.get(seeded.namespaces.menu_context, "text") == text
    assert await seeded.cache.get(seeded.namespaces.menu_context, "text:concentrates") == full_text
    seeded.cache.reset_stats()
    assert await seeded.menu.get_context() == text
    stats = seeded.cache.stats()["menu:context"]
    assert (stats.hits, stats.loads) == (1, 0)


async def test_create_item_invalidates_all_four_entries(seeded: Runtime) -> None:
    await populate_all_four(seeded)
    created = await seeded.menu.create_item(
        MenuItemCreate(name="Koh Samui Kush", category="TOP SHELF", price_1g=1300, sort_order=15)
    )
    assert await cached_entries(seeded) == [MISSING] * 4
    assert created in (await seeded.menu.get_menu()).items
    assert created in (await seeded.menu.get_menu(True)).items
    assert "Koh Samui Kush" in await seeded.menu.get_context()
    assert "1g 1300 THB" in await seeded.menu.get_context(True)


async def test_creating_a_concentrate_shows_only_with_concentrates(seeded: Runtime) -> None:
    await populate_all_four(seeded)
    await seeded.menu.create_item(
        MenuItemCreate(name="Ice Hash", category="HASH", price_1g=1500, is_concentrate=True)
    )
    assert "Ice Hash" not in {item.name for item in (await seeded.menu.get_menu()).items}
    assert "Ice Hash" in {item.name for item in (await seeded.menu.get_menu(True)).items}
    assert "Ice Hash" in await seeded.menu.get_context(True)


async def test_price_change_invalidates_all_four_entries(seeded: Runtime) -> None:
    gelato = await item_named(seeded, "Gelato 41")
    await populate_all_four(seeded)
    updated = await seeded.menu.update_item(gelato.id, MenuItemUpdate(price_1g=1234))
    assert updated.price_1g == 1234
    assert updated.name == gelato.name
    assert updated.price_5g == gelato.price_5g  # unset fields keep their value
    assert await cached_entries(seeded) == [MISSING] * 4
    assert updated in (await seeded.menu.get_menu()).items
    assert "1g 1234 THB" in await seeded.menu.get_context()
    assert "1g 1234 THB" in await seeded.menu.get_context(True)


async def test_making_an_item_unavailable_invalidates_all_four_entries(seeded: Runtime) -> None:
    gelato = await item_named(seeded, "Gelato 41")
    await populate_all_four(seeded)
    await seeded.menu.update_item(gelato.id, MenuItemUpdate(available=False))
    assert await cached_entries(seeded) == [MISSING] * 4
    for include_concentrates in (False, True):
        menu = await seeded.menu.get_menu(include_concentrates)
        assert gelato.id not in {item.id for item in menu.items}
        assert "- Gelato 41 (" not in await seeded.menu.get_context(include_concentrates)


async def test_delete_item_invalidates_all_four_entries(seeded: Runtime) -> None:
    hash_ = await item_named(seeded, "Bubble Hash")
    await populate_all_four(seeded)
    await seeded.menu.delete_item(hash_.id)
    assert await cached_entries(seeded) == [MISSING] * 4
    assert hash_.id not in {item.id for item in (await seeded.menu.get_menu(True)).items}
    assert "Bubble Hash" not in await seeded.menu.get_context(True)
    with pytest.raises(NotFoundError):
        await seeded.menu.get_item(hash_.id)


async def test_cached_menu_matches_the_database_after_each_write(seeded: Runtime) -> None:
    runtz = await item_named(seeded, "Runtz")
    writes: list[Callable[[], Awaitable[object]]] = [
        lambda: seeded.menu.create_item(MenuItemCreate(name="New One", category="PREMIUM")),
        lambda: seeded.menu.update_item(runtz.id, MenuItemUpdate(price_5g=5000)),
        lambda: seeded.menu.update_item(runtz.id, MenuItemUpdate(available=False)),
        lambda: seeded.menu.update_item(runtz.id, MenuItemUpdate(available=True)),
        lambda: seeded.menu.delete_item(runtz.id),
    ]
    for write in writes:
        await populate_all_four(seeded)
        await write()
        for include_concentrates in (False, True):
            menu = await seeded.menu.get_menu(include_concentrates)
            assert by_id(menu.items) == await database_items(
                seeded, include_concentrates=include_concentrates
            )


async def test_a_duplicate_name_is_a_conflict(seeded: Runtime) -> None:
    await populate_all_four(seeded)
    with pytest.raises(ConflictError, match="Gelato 41"):
        await seeded.menu.create_item(MenuItemCreate(name="Gelato 41", category="TOP SHELF"))
    async with seeded.db() as session:
        rows = list(await session.scalars(select(MenuItem).where(MenuItem.name == "Gelato 41")))
    assert len(rows) == 1


@pytest.mark.parametrize("field", ["category", "available", "sort_order"])
async def test_update_rejects_null_for_a_required_field(seeded: Runtime, field: str) -> None:
    gelato = await item_named(seeded, "Gelato 41")
    await populate_all_four(seeded)
    with pytest.raises(InvalidInputError, match=field):
        await seeded.menu.update_item(gelato.id, MenuItemUpdate.model_validate({field: None}))
    assert await seeded.menu.get_item(gelato.id) == gelato
    assert MISSING not in await cached_entries(seeded)


async def test_update_can_remove_a_price_tier(seeded: Runtime) -> None:
    gelato = await item_named(seeded, "Gelato 41")
    assert gelato.price_20g is not None
    updated = await seeded.menu.update_item(gelato.id, MenuItemUpdate(price_20g=None))
    assert updated.price_20g is None
    text = await seeded.menu.get_context()
    (line,) = [line for line in text.splitlines() if line.startswith("- Gelato 41 (")]
    assert "5g" in line
    assert "20g" not in line


async def test_get_item_reads_one_item(seeded: Runtime) -> None:
    gelato = await item_named(seeded, "Gelato 41")
    assert await seeded.menu.get_item(gelato.id) == gelato


async def test_an_unknown_item_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFoundError):
        await runtime.menu.get_item(999_999)
    with pytest.raises(NotFoundError):
        await runtime.menu.update_item(999_999, MenuItemUpdate(price_1g=1))
    with pytest.raises(NotFoundError):
        await runtime.menu.delete_item(999_999)


async def test_an_empty_menu_reads_as_no_items(runtime: Runtime) -> None:
    assert (await runtime.menu.get_menu()).items == []
    assert (await runtime.menu.get_context()).startswith("OG Lab menu")


async def test_a_write_in_one_process_reaches_the_other_process_in_process_tier(
    seeded: Runtime, stack_settings: Settings
) -> None:
    """Two runtimes on one database and one Redis keyspace stand for two worker processes;
    the menu is in their in-process tiers when one of them changes a price."""
    if stack_settings.redis_url is None:
        pytest.skip("the in-process tier needs Redis's invalidation feed")
    assert seeded.namespaces.menu.local_ttl > 0  # on by default
    other = Runtime.open(stack_settings)
    try:
        for runtime in (seeded, other):
            for _ in range(500):
                await runtime.menu.get_context()
                if runtime.cache.stats()["menu:context"].local_hits:
                    break
                await asyncio.sleep(0.01)
            assert runtime.cache.stats()["menu:context"].local_hits
        gelato = await item_named(seeded, "Gelato 41")
        await seeded.menu.update_item(gelato.id, MenuItemUpdate(price_1g=4321))
        start = time.monotonic()
        while "1g 4321 THB" not in await other.menu.get_context():
            assert time.monotonic() - start < 1.0, "the other process kept the old menu"
            await asyncio.sleep(0.001)
        assert "1g 4321 THB" in await seeded.menu.get_context()
    finally:
        await other.close()
