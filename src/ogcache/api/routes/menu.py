"""The menu: public reads (items with prices, the agent's menu text) and the admin's item
management. Every write drops the four cached menu entries, so the next read shows it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import PlainTextResponse

from ogcache.api.deps import AdminDep, RuntimeDep
from ogcache.api.responses import JsonBytes
from ogcache.schemas import MenuItemCreate, MenuItemPublic, MenuItemUpdate, MenuPublic

router = APIRouter(prefix="/api/menu", tags=["menu"])

Concentrates = Annotated[bool, Query(description="Include concentrates (hash, rosin, resin).")]
# The column is a 32-bit INTEGER: a larger id cannot exist, and PostgreSQL would refuse it.
ItemIdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="The menu item's id.")]


@router.get("", response_model=MenuPublic)
async def get_menu(runtime: RuntimeDep, concentrates: Concentrates = False) -> Response:
    """Every available item with its prices (a cache hit is answered before routing, by
    :mod:`ogcache.api.hot_reads`)."""
    return JsonBytes(await runtime.menu.get_menu_json(include_concentrates=concentrates))


@router.get("/context", response_class=PlainTextResponse)
async def get_menu_context(runtime: RuntimeDep, concentrates: Concentrates = False) -> str:
    """The menu as the text the agent's prompt includes."""
    return await runtime.menu.get_context(include_concentrates=concentrates)


@router.get("/items", response_model=list[MenuItemPublic], summary="List every menu item")
async def list_menu_items(runtime: RuntimeDep, _admin: AdminDep) -> list[MenuItemPublic]:
    """Every item as stored, in menu order, read from the database: unavailable items and
    concentrates included (with their ids, for PATCH and DELETE)."""
    return await runtime.menu.list_items()


@router.get("/items/{item_id}", response_model=MenuItemPublic, summary="Get one menu item")
async def get_menu_item(
    item_id: ItemIdPath, runtime: RuntimeDep, _admin: AdminDep
) -> MenuItemPublic:
    """The item as stored, read from the database: unavailable items included."""
    return await runtime.menu.get_item(item_id)


@router.post(
    "/items",
    response_model=MenuItemPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Add a menu item",
)
async def create_menu_item(
    body: MenuItemCreate, runtime: RuntimeDep, _admin: AdminDep
) -> MenuItemPublic:
    """Add an item; 409 if its name is taken. The public menu shows it on the next read."""
    return await runtime.menu.create_item(body)


@router.patch("/items/{item_id}", response_model=MenuItemPublic, summary="Change a menu item")
async def update_menu_item(
    item_id: ItemIdPath, changes: MenuItemUpdate, runtime: RuntimeDep, _admin: AdminDep
) -> MenuItemPublic:
    """Set the fields given (``null`` clears a price tier, ``type`` or ``description``);
    the public menu shows the change on the next read."""
    return await runtime.menu.update_item(item_id, changes)


@router.delete(
    "/items/{item_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a menu item"
)
async def delete_menu_item(item_id: ItemIdPath, runtime: RuntimeDep, _admin: AdminDep) -> None:
    """Delete the item; the public menu leaves it out from the next read."""
    await runtime.menu.delete_item(item_id)
