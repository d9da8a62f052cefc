"""The HTTP service: FastAPI routes over the cached services, the cache API, metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ogcache.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `ogcache serve` reaches ogcache.api.server (the supervisor of
    # --workers) and ogcache.api.httptools_protocol through this package, and neither needs
    # the application; each worker imports it once, through the factory.
    if name == "create_app":
        from ogcache.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
