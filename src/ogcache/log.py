"""Logging set-up shared by the CLI and every server worker process.

Each line names the request it was written for (``-`` outside a request), so a 500's request
id finds its traceback.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from ogcache.config import Settings

__all__ = ["FORMAT", "RequestIdFilter", "configure_logging", "current_request_id", "request_id"]

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

request_id: ContextVar[str] = ContextVar("ogcache_request_id", default="-")


def current_request_id() -> str:
    """The id of the request being handled in this task, ``-`` outside any request."""
    return request_id.get()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record a handler emits, so its format can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure_logging(settings: Settings) -> None:
    """Send ``ogcache`` records at ``OGCACHE_LOG_LEVEL`` to stderr (once per process)."""
    logging.basicConfig(level=settings.log_level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
    logging.getLogger("ogcache").setLevel(settings.log_level)
