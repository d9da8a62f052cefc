"""Logging set-up shared by the CLI and every server worker process.

Each line names the request it was written for (``-`` outside a request), so a 500's request
id finds its traceback. ``OGCACHE_LOG_FORMAT=json``: one JSON object per line (time, level,
logger, request_id, message, the record's own fields such as ``event`` and ``namespace``, and
the traceback), uvicorn's lines included, for a log pipeline to index.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from ogcache.config import Settings

__all__ = [
    "FORMAT",
    "JsonFormatter",
    "RequestIdFilter",
    "configure_logging",
    "current_request_id",
    "request_id",
    "uvicorn_log_config",
]

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


# What every LogRecord has; anything else on a record was given by the caller (``extra=``).
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; values that are not JSON are written as their ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", request_id.get()),
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in body:
                body[name] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


def configure_logging(settings: Settings) -> None:
    """Send ``ogcache`` records at ``OGCACHE_LOG_LEVEL`` to stderr (once per process), as text
    or JSON (``OGCACHE_LOG_FORMAT``)."""
    logging.basicConfig(level=settings.log_level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        if settings.log_format == "json":
            handler.setFormatter(JsonFormatter())
    logging.getLogger("ogcache").setLevel(settings.log_level)


def uvicorn_log_config(settings: Settings) -> dict[str, Any] | None:
    """uvicorn's own loggers (start-up, errors, the access line) as JSON with the request id
    (the access line is written inside the request, so it has one); ``None``: uvicorn's
    default text."""
    if settings.log_format != "json":
        return None
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["request_id"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"request_id": {"()": RequestIdFilter}},
        "handlers": {"json": handler},
        "loggers": {
            name: {"handlers": ["json"], "level": settings.log_level, "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
