"""Today's agent metrics and top products, aggregated from ``agent_events``.

Aggregates are cached for ``OGCACHE_TTL_ANALYTICS`` (5 min by default). Every chat message
records events, so invalidating on each would leave these entries always empty: change
capture (:mod:`ogcache.changes`) drops them at most once per
``OGCACHE_CHANGE_ANALYTICS_INTERVAL`` (10 s) after events change, and the periodic refresh
keeps them warm. Recording an event is a plain insert.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import distinct, func, select

from ogcache.db.models import AgentEvent, Conversation, utc_now
from ogcache.errors import InvalidInputError
from ogcache.schemas import TodayMetrics, TopProduct
from ogcache.services.base import ServiceContext
from ogcache.services.namespaces import CacheEntry

__all__ = ["AnalyticsService"]

PRODUCT_EVENTS = ("product_mentioned", "order_created")
MAX_DAYS = 365
MAX_TOP = 100


class AnalyticsService:
    """Record events; read cached aggregates."""

    def __init__(self, context: ServiceContext) -> None:
        self._db = context.db
        self._cache = context.cache
        self._ns = context.namespaces

    async def record_event(
        self,
        event_type: str,
        event_data: dict[str, Any] | None = None,
        *,
        user_profile_id: uuid.UUID | None = None,
        conversation_id: uuid.UUID | None = None,
        channel: str | None = None,
        at: datetime | None = None,
    ) -> None:
        if not event_type or len(event_type) > 64:
            raise InvalidInputError("event_type must be 1-64 characters")
        async with self._db.begin() as session:
            session.add(
                AgentEvent(
                    event_type=event_type,
                    event_data=event_data,
                    user_profile_id=user_profile_id,
                    conversation_id=conversation_id,
                    channel=channel,
                    created_at=at or utc_now(),
                )
            )

    async def today(self) -> TodayMetrics:
        day = utc_now().date()
        return await self._cache.get_or_load(
            self._ns.analytics_today, day.isoformat(), lambda: self._load_day(day)
        )

    async def _load_day(self, day: date) -> TodayMetrics:
        start = datetime.combine(day, time.min, tzinfo=UTC)
        end = start + timedelta(days=1)
        in_day = (AgentEvent.created_at >= start, AgentEvent.created_at < end)
        async with self._db() as session:
            rows = await session.execute(
                select(AgentEvent.event_type, func.count())
                .where(*in_day)
                .group_by(AgentEvent.event_type)
            )
            by_type: dict[str, int] = dict(rows.all())
            active_users = await session.scalar(
                select(func.count(distinct(AgentEvent.user_profile_id))).where(*in_day)
            )
            started = await session.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.started_at >= start, Conversation.started_at < end)
            )
        return TodayMetrics(
            day=day,
            events_total=sum(by_type.values()),
            events_by_type=by_type,
            active_users=active_users or 0,
            conversations_started=started or 0,
            messages_sent=by_type.get("message_sent", 0),
            orders_created=by_type.get("order_created", 0),
        )

    async def top_products(self, days: int = 7, limit: int = 10) -> list[TopProduct]:
        """Products most mentioned or ordered over the last ``days`` days."""
        if not 1 <= days <= MAX_DAYS:
            raise InvalidInputError(f"days must be between 1 and {MAX_DAYS}")
        if not 1 <= limit <= MAX_TOP:
            raise InvalidInputError(f"limit must be between 1 and {MAX_TOP}")
        # One entry per window, holding the longest list: any limit is a slice of it, and a
        # new event invalidates at most MAX_DAYS entries (ogcache.changes).
        top = await self._cache.get_or_load(
            self._ns.analytics_top, str(days), lambda: self._load_top(days, MAX_TOP)
        )
        return top[:limit]

    async def _load_top(self, days: int, limit: int) -> list[TopProduct]:
        since = utc_now() - timedelta(days=days)
        product = AgentEvent.event_data["product"].as_string()
        query = (
            select(product, AgentEvent.event_type, func.count())
            .where(
                AgentEvent.created_at >= since,
                AgentEvent.event_type.in_(PRODUCT_EVENTS),
                product.is_not(None),
            )
            .group_by(product, AgentEvent.event_type)
        )
        totals: dict[str, dict[str, int]] = {}
        async with self._db() as session:
            for name, event_type, count in await session.execute(query):
                totals.setdefault(name, {}).setdefault(event_type, 0)
                totals[name][event_type] += count
        ranked = sorted(
            (
                TopProduct(
                    product=name,
                    mentions=counts.get("product_mentioned", 0),
                    orders=counts.get("order_created", 0),
                )
                for name, counts in totals.items()
            ),
            key=lambda top: (-(top.mentions + top.orders), -top.orders, top.product),
        )
        return ranked[:limit]

    async def refresh(self) -> list[CacheEntry]:
        """Reload today's metrics and the 7-day top products into the cache (warm-up)."""
        day = utc_now().date()
        await self._cache.refresh(
            self._ns.analytics_today, day.isoformat(), lambda: self._load_day(day)
        )
        await self._cache.refresh(self._ns.analytics_top, "7", lambda: self._load_top(7, MAX_TOP))
        return [(self._ns.analytics_today, day.isoformat()), (self._ns.analytics_top, "7")]
