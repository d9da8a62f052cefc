"""HTTP request metrics: a count by method, route template and status, and a latency histogram
by method and route template.

A pure ASGI middleware (no ``BaseHTTPMiddleware``: no extra task or stream per request) that
reads the route the router matched (``scope["route"]``, set by Starlette) once the response is
sent, so the label is the template (``/api/profiles/{user_id}``), never the raw path; paths no
route matches are ``<unmatched>`` and unknown methods ``OTHER``, which bounds the number of
series. Recording is two dictionary updates and a bisect: a few microseconds per request.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ogcache.cache.stats import LATENCY_BUCKETS

__all__ = ["UNMATCHED", "HttpCollector", "HttpMetrics", "HttpStats"]

UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpStats:
    """Plain counters of this process: requests by (method, route, status); per (method,
    route) the histogram's bucket counts (last: above every bound), count and sum."""

    __slots__ = ("durations", "requests")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.durations: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        window = self.durations.get((method, route))
        if window is None:
            window = self.durations[(method, route)] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
        window[0][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        window[1][0] += seconds


class HttpMetrics:
    """The middleware; add it outermost so that its latency covers every other one."""

    def __init__(self, app: ASGIApp, stats: HttpStats) -> None:
        self.app = app
        self.stats = stats
        self._plain: dict[object, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the application fails before it answers

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.stats.record(method, self._template(scope), status, time.perf_counter() - started)

    def _template(self, scope: Scope) -> str:
        """The matched route's template. FastAPI's router names only its own routes in the
        scope; the plain ones (``/docs``, ``/openapi.json``) are found by their endpoint."""
        template: str | None = getattr(scope.get("route"), "path_format", None)
        if template is not None:
            return template
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED
        if endpoint not in self._plain:
            routes = getattr(scope.get("app"), "routes", ())
            found = (r for r in routes if getattr(r, "endpoint", None) is endpoint)
            self._plain[endpoint] = next(
                (r.path_format for r in found if getattr(r, "path_format", None)), UNMATCHED
            )
        return self._plain[endpoint]


class HttpCollector(Collector):
    def __init__(self, stats: HttpStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "ogcache_http_requests",
            "HTTP requests answered, by method, route template and status.",
            labels=["method", "route", "status"],
        )
        for labels, count in list(self._stats.requests.items()):
            requests.add_metric(list(labels), count)
        yield requests
        durations = HistogramMetricFamily(
            "ogcache_http_request_duration_seconds",
            "Time from a request's arrival to its response sent, by method and route template.",
            labels=["method", "route"],
        )
        for pair, (counts, total) in list(self._stats.durations.items()):
            buckets, running = [], 0
            for bound, count in zip(LATENCY_BUCKETS, counts, strict=False):
                running += count
                buckets.append((str(bound), float(running)))
            buckets.append(("+Inf", float(running + counts[-1])))
            durations.add_metric(list(pair), buckets, sum_value=total[0])
        yield durations
