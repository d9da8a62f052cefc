"""Logging set-up shared by the CLI and every server worker process."""

from __future__ import annotations

import logging

from ogcache.config import Settings

__all__ = ["configure_logging"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """Send ``ogcache`` records at ``OGCACHE_LOG_LEVEL`` to stderr (once per process)."""
    logging.basicConfig(level=settings.log_level, format=FORMAT)
    logging.getLogger("ogcache").setLevel(settings.log_level)
