"""The menu (public): items with prices, and the agent's menu text."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from ogcache.api.deps import RuntimeDep
from ogcache.schemas import MenuPublic

router = APIRouter(prefix="/api/menu", tags=["menu"])

Concentrates = Annotated[bool, Query(description="Include concentrates (hash, rosin, resin).")]


@router.get("", response_model=MenuPublic)
async def get_menu(runtime: RuntimeDep, concentrates: Concentrates = False) -> MenuPublic:
    return await runtime.menu.get_menu(include_concentrates=concentrates)


@router.get("/context", response_class=PlainTextResponse)
async def get_menu_context(runtime: RuntimeDep, concentrates: Concentrates = False) -> str:
    """The menu as the text the agent's prompt includes."""
    return await runtime.menu.get_context(include_concentrates=concentrates)
