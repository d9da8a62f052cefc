"""The HTTP service: FastAPI routes over the cached services, the cache API, metrics."""

from ogcache.api.app import create_app

__all__ = ["create_app"]
