"""The shop menu with prices, its variant including concentrates, and the agent's menu text.

Four cached entries, all dropped by any menu write: the two menu variants (``menu`` namespace)
and the two context texts built from them (``menu:context``). Only available items are shown.
"""

from __future__ import annotations

from functools import partial
from itertools import groupby
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ogcache.cache import Namespace
from ogcache.db.models import MenuItem, utc_now
from ogcache.errors import ConflictError, InvalidInputError, NotFoundError
from ogcache.schemas import MenuItemCreate, MenuItemPublic, MenuItemUpdate, MenuPublic
from ogcache.services.base import ServiceContext
from ogcache.services.namespaces import MENU_CONTEXT_KEYS, MENU_KEYS, CacheEntry

__all__ = ["MenuService", "price_tiers", "render_menu_context"]

# Columns that ``MenuItemUpdate`` types as optional only to mean "unchanged": never null.
_NOT_NULL = ("category", "available", "sort_order")


def _menu_key(include_concentrates: bool) -> str:
    return MENU_KEYS[1] if include_concentrates else MENU_KEYS[0]


def _context_key(include_concentrates: bool) -> str:
    return MENU_CONTEXT_KEYS[1] if include_concentrates else MENU_CONTEXT_KEYS[0]


def price_tiers(item: MenuItemPublic) -> list[tuple[str, int]]:
    """The item's priced tiers, smallest first: ``[("1g", 1100), ...]``."""
    tiers = (
        ("1pc", item.price_1pc),
        ("1g", item.price_1g),
        ("5g", item.price_5g),
        ("20g", item.price_20g),
    )
    return [(label, price) for label, price in tiers if price is not None]


def _price_text(item: MenuItemPublic) -> str:
    tiers = price_tiers(item)
    return ", ".join(f"{label} {price} THB" for label, price in tiers) or "price on request"


def render_menu_context(menu: MenuPublic) -> str:
    """The menu as the text the agent's prompt includes: one line per item, by category."""
    lines = ["OG Lab menu (prices in THB):"]
    for category, items in groupby(menu.items, key=lambda item: item.category):
        lines.append(f"\n## {category}")
        for item in items:
            facts = [f for f in (item.type, f"THC {item.thc}%" if item.thc else None) if f]
            if item.cbg:
                facts.append(f"CBG {item.cbg}%")
            detail = f" ({', '.join(facts)})" if facts else ""
            lines.append(f"- {item.name}{detail}: {_price_text(item)}")
    return "\n".join(lines)


class MenuService:
    """Read the menu through the cache; every write invalidates all four entries."""

    def __init__(self, context: ServiceContext) -> None:
        self._db = context.db
        self._cache = context.cache
        self._ns = context.namespaces

    async def get_menu(self, include_concentrates: bool = False) -> MenuPublic:
        return await self._cache.get_or_load(
            self._ns.menu,
            _menu_key(include_concentrates),
            lambda: self._load(include_concentrates),
        )

    async def get_menu_json(self, include_concentrates: bool = False) -> bytes:
        """:meth:`get_menu` as the JSON the API answers with (the cached bytes on a hit)."""
        body = await self._cache.get_or_load_encoded(
            self._ns.menu,
            _menu_key(include_concentrates),
            lambda: self._load(include_concentrates),
        )
        assert body is not None  # the loader never answers None
        return body

    async def local_menu_json(self, include_concentrates: bool = False) -> bytes | None:
        """:meth:`get_menu_json` from this process's in-process tier alone (no read of the
        store), or ``None`` when it has no live copy (then call :meth:`get_menu_json`)."""
        body = await self._cache.get_local_encoded(self._ns.menu, _menu_key(include_concentrates))
        return body if isinstance(body, bytes) else None

    async def get_context(self, include_concentrates: bool = False) -> str:
        return await self._cache.get_or_load(
            self._ns.menu_context,
            _context_key(include_concentrates),
            lambda: self._build_context(include_concentrates),
        )

    async def _build_context(self, include_concentrates: bool) -> str:
        # Built from a read of the menu made now (under this entry's lease), never from a menu
        # loaded earlier, so an invalidation in between cannot leave an old text cached.
        return render_menu_context(await self.get_menu(include_concentrates))

    async def _render_loaded(self, include_concentrates: bool) -> str:
        # Warm-up's text: from the database read now, under the text's lease like
        # _build_context, but not through the cache, where it would count as a reader's hit.
        return render_menu_context(await self._load(include_concentrates))

    async def _load(self, include_concentrates: bool) -> MenuPublic:
        query = select(MenuItem).where(MenuItem.available.is_(True))
        if not include_concentrates:
            query = query.where(MenuItem.is_concentrate.is_(False))
        query = query.order_by(MenuItem.sort_order, MenuItem.name)
        async with self._db() as session:
            rows = await session.scalars(query)
            items = [MenuItemPublic.model_validate(row) for row in rows]
        return MenuPublic(
            include_concentrates=include_concentrates, items=items, loaded_at=utc_now()
        )

    async def refresh(self) -> list[CacheEntry]:
        """Reload both menu variants and both texts into the cache; the entries refreshed."""
        entries: list[CacheEntry] = []
        for include in (False, True):
            await self._cache.refresh(
                self._ns.menu, _menu_key(include), partial(self._load, include)
            )
            await self._cache.refresh(
                self._ns.menu_context,
                _context_key(include),
                partial(self._render_loaded, include),
            )
            entries += [
                (self._ns.menu, _menu_key(include)),
                (self._ns.menu_context, _context_key(include)),
            ]
        return entries

    async def list_items(self) -> list[MenuItemPublic]:
        """Every item, available or not, in menu order, from the database (the admin's view)."""
        async with self._db() as session:
            rows = await session.scalars(
                select(MenuItem).order_by(MenuItem.sort_order, MenuItem.name)
            )
            return [MenuItemPublic.model_validate(row) for row in rows]

    async def get_item(self, item_id: int) -> MenuItemPublic:
        async with self._db() as session:
            row = await session.get(MenuItem, item_id)
            if row is None:
                raise NotFoundError(f"no menu item with id {item_id}")
            return MenuItemPublic.model_validate(row)

    async def create_item(self, data: MenuItemCreate) -> MenuItemPublic:
        try:
            async with self._db.begin() as session:
                row = MenuItem(**data.model_dump(), updated_at=utc_now())
                session.add(row)
                await session.flush()
                item = MenuItemPublic.model_validate(row)
        except IntegrityError:
            raise ConflictError(f"a menu item named {data.name!r} already exists") from None
        await self.invalidate()
        return item

    async def update_item(self, item_id: int, changes: MenuItemUpdate) -> MenuItemPublic:
        fields = changes.model_dump(exclude_unset=True)
        nulls = [name for name in _NOT_NULL if name in fields and fields[name] is None]
        if nulls:
            raise InvalidInputError(f"{', '.join(nulls)} cannot be null")
        async with self._db.begin() as session:
            row = await session.get(MenuItem, item_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no menu item with id {item_id}")
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = utc_now()
            await session.flush()
            item = MenuItemPublic.model_validate(row)
        await self.invalidate()
        return item

    async def delete_item(self, item_id: int) -> None:
        async with self._db.begin() as session:
            result = await session.execute(delete(MenuItem).where(MenuItem.id == item_id))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFoundError(f"no menu item with id {item_id}")
        await self.invalidate()

    async def invalidate(self) -> None:
        """Drop every cached menu entry (both variants, both texts)."""
        entries: list[tuple[Namespace[Any], str]] = [
            *((self._ns.menu, key) for key in MENU_KEYS),
            *((self._ns.menu_context, key) for key in MENU_CONTEXT_KEYS),
        ]
        await self._cache.invalidate(entries)
