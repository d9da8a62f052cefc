"""Analytics (admin only): today's metrics and top products."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ogcache.api.deps import AdminDep, RuntimeDep
from ogcache.schemas import TodayMetrics, TopProduct

router = APIRouter(prefix="/api/analytics", tags=["analytics"])


@router.get("/today", response_model=TodayMetrics)
async def today(runtime: RuntimeDep, _admin: AdminDep) -> TodayMetrics:
    return await runtime.analytics.today()


@router.get("/top-products", response_model=list[TopProduct])
async def top_products(
    runtime: RuntimeDep,
    _admin: AdminDep,
    days: Annotated[int, Query(ge=1, le=365)] = 7,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[TopProduct]:
    return await runtime.analytics.top_products(days=days, limit=limit)
