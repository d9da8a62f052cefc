"""The cache management API, compatible with the original's curl examples.

``GET /api/cache`` answers statistics to anyone (no secrets in it, like ``/metrics``); the
key count and memory figures it shows anyone are at most ``OGCACHE_STATS_MAX_AGE`` seconds old
and shared, so calling it often cannot make Redis scan more (the admin token gets them fresh).
``POST /api/cache`` actions need the admin token.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ogcache.api.change_metrics import changes_json
from ogcache.api.deps import AdminDep, IsAdminDep, RuntimeDep
from ogcache.api.errors import BadRequestRoute
from ogcache.api.worker_stats import add_workers, workers_of
from ogcache.cache import CacheReport, NamespaceStatsSnapshot, VerifierSettings
from ogcache.cache.local import LocalStats
from ogcache.errors import InvalidInputError

ActionName = Literal["warmup", "warmup-menu", "clear", "clear-prefix"]
ACTIONS: tuple[str, ...] = get_args(ActionName)


class _ActionRoute(BadRequestRoute):
    hint = (
        f"send one of {', '.join(ACTIONS)} as 'action'; only clear-prefix takes another field "
        '(\'prefix\'), e.g. {"action": "clear-prefix", "prefix": "menu:"}'
    )


# Admin actions are refused as a whole when their body is malformed: a 400, like any other
# action the service will not run (GET takes no input, so this changes nothing for it).
router = APIRouter(prefix="/api/cache", tags=["cache"], route_class=_ActionRoute)


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WarmupAction(_Action):
    action: Literal["warmup"]


class WarmupMenuAction(_Action):
    action: Literal["warmup-menu"]


class ClearAction(_Action):
    action: Literal["clear"]


class ClearPrefixAction(_Action):
    action: Literal["clear-prefix"]
    prefix: str = Field(
        max_length=512,
        description="A literal key prefix inside this application's keyspace, e.g. "
        "'user:profile:'.",
    )


# Each action takes exactly its own fields: `{"action": "clear", "prefix": "menu:"}` is refused
# rather than read as a clear of everything.
CacheAction = Annotated[
    WarmupAction | WarmupMenuAction | ClearAction | ClearPrefixAction,
    Field(discriminator="action"),
]


class CacheActionResult(BaseModel):
    action: ActionName
    warmed: list[str] | None = None
    keysWarmed: int | None = None
    keysCleared: int | None = None
    prefix: str | None = None


def report_json(report: CacheReport, verifier: VerifierSettings | None = None) -> dict[str, Any]:
    """The statistics in the original API's shape, with ours added."""
    return {
        "available": report.available,
        "backend": report.backend,
        "prefix": report.prefix,
        "stats": _stats_json(report, verifier),
    }


def _stats_json(report: CacheReport, verifier: VerifierSettings | None) -> dict[str, Any]:
    """The original's ``stats`` object; the optional sections only when the cache has them."""
    hits = sum(s.hits for s in report.namespaces.values())
    lookups = hits + sum(s.misses for s in report.namespaces.values())
    stats: dict[str, Any] = {
        "available": report.available,
        "totalKeys": report.keys.count if report.keys else None,
        "totalKeysComplete": report.keys.complete if report.keys else None,
        "measuredSecondsAgo": round(report.age, 3),
        "hitRate": hits / lookups if lookups else None,
        "namespaces": {
            name: _namespace_json(snapshot) for name, snapshot in report.namespaces.items()
        },
    }
    if report.info is not None:
        stats["memory"] = {
            "usedBytes": report.info.memory_used_bytes,
            "limitBytes": report.info.memory_limit_bytes,
            "evictionPolicy": report.info.eviction_policy,
        }
    if report.breaker is not None:
        stats["circuit"] = {
            "state": report.breaker.state.value,
            "trips": report.breaker.trips,
            "openSeconds": report.breaker.open_seconds,
            "pendingInvalidations": report.breaker.pending_invalidations,
        }
    if report.local is not None:
        stats["local"] = _local_json(report.local, live=report.local_live)
    if report.error:
        stats["error"] = report.error
    if verifier is not None:
        stats["verifier"] = _verifier_json(report, verifier)
    return stats


def _namespace_json(stats: NamespaceStatsSnapshot) -> dict[str, Any]:
    return {
        "hits": stats.hits,
        "localHits": stats.local_hits,
        "misses": stats.misses,
        "hitRate": stats.hit_rate,
        "loads": stats.loads,
        "loadErrors": stats.load_errors,
        "errors": stats.errors,
        "invalidations": stats.invalidations,
        "verified": stats.verified,
        "inconsistent": stats.inconsistent,
        "inconsistencyAgeSeconds": stats.inconsistency_age_max,
        "latencyMs": {
            "mean": stats.operation_latency.mean_ms,
            "p50": stats.operation_latency.p50_ms,
            "p99": stats.operation_latency.p99_ms,
        },
        "loadLatencyMs": {
            "mean": stats.load_latency.mean_ms,
            "p99": stats.load_latency.p99_ms,
        },
    }


def _verifier_json(report: CacheReport, verifier: VerifierSettings) -> dict[str, Any]:
    """The consistency verifier's settings and totals (docs/consistency.md)."""
    namespaces = report.namespaces.values()
    return {
        "sample": verifier.sample,
        "delaySeconds": verifier.delay,
        "verified": sum(s.verified for s in namespaces),
        "inconsistent": sum(s.inconsistent for s in namespaces),
        "maxInconsistencyAgeSeconds": max(
            (s.inconsistency_age_max for s in namespaces), default=0.0
        ),
    }


def _local_json(local: LocalStats, *, live: bool | None) -> dict[str, Any]:
    return {
        "live": live,
        "entries": local.entries,
        "bytes": local.bytes,
        "maxEntries": local.max_entries,
        "maxBytes": local.max_bytes,
        "evictions": local.evictions,
        "flushes": local.flushes,
    }


@router.get("")
async def cache_stats(request: Request, runtime: RuntimeDep, admin: IsAdminDep) -> dict[str, Any]:
    """Availability, key count, memory and per-namespace statistics. Availability, the key
    count and memory are measured at most every ``OGCACHE_STATS_MAX_AGE`` seconds for callers
    without the admin token (``measuredSecondsAgo`` says when). Under ``serve --workers N``
    the counters are totals over every worker (latencies: the answering worker's), and
    ``workers`` lists each one's hits and misses (at most a second old)."""
    max_age = 0.0 if admin else runtime.settings.stats_max_age
    body = report_json(await runtime.cache.report(max_age=max_age), runtime.cache.policy.verifier)
    body["stats"]["changes"] = changes_json(
        runtime.changes.stats, enabled=runtime.settings.change_capture
    )
    add_workers(body, workers_of(request.app.state.metrics_registry))
    return body


@router.post("", response_model=CacheActionResult, response_model_exclude_none=True)
async def cache_action(
    body: CacheAction, runtime: RuntimeDep, _admin: AdminDep
) -> CacheActionResult:
    """Run an admin action: ``warmup``, ``warmup-menu``, ``clear`` or ``clear-prefix``
    (``prefix`` only with ``clear-prefix``). A body that is not exactly one of these is a 400
    and does nothing."""
    if isinstance(body, WarmupAction):
        report = await runtime.warmup.warm_critical()
        return CacheActionResult(action="warmup", warmed=report.warmed, keysWarmed=len(report))
    if isinstance(body, WarmupMenuAction):
        report = await runtime.warmup.warm_menu()
        return CacheActionResult(action="warmup-menu", warmed=report.warmed, keysWarmed=len(report))
    if isinstance(body, ClearAction):
        return CacheActionResult(action="clear", keysCleared=await runtime.cache.clear())
    prefix = body.prefix.strip()
    own = f"{runtime.cache.prefix}:"
    if prefix.startswith(own):
        prefix = prefix[len(own) :]
    if not prefix:
        raise InvalidInputError(
            "clear-prefix needs a non-empty 'prefix', e.g. 'user:profile:'; "
            "use the 'clear' action to remove everything"
        )
    removed = await runtime.cache.clear_prefix(prefix)
    return CacheActionResult(action="clear-prefix", keysCleared=removed, prefix=prefix)
