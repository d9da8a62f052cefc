"""Run the API under uvicorn with the request limits of the settings applied.

With httptools installed (``uvicorn[standard]``, a dependency) the protocol is
:mod:`ogcache.api.httptools_protocol`: ``431`` past ``max_header_bytes``, ``408`` past
``request_read_timeout``. Without it uvicorn falls back to h11, which only bounds the head
(``h11_max_incomplete_event_size``, answered with a plain-text ``400``) and has no read
deadline: a warning says so.
"""

from __future__ import annotations

import logging
import os

import uvicorn

from ogcache.config import Settings
from ogcache.log import uvicorn_log_config

__all__ = ["http_protocol", "run"]

logger = logging.getLogger("ogcache.api")

# Seconds uvicorn's supervisor waits for a ``--workers`` process to answer its ping before it
# replaces it as dead, and gives a new one to be ready on SIGHUP (uvicorn's default: 5). On a
# busy machine a worker importing and starting the application can take longer than that.
WORKER_HEALTHCHECK_TIMEOUT = 30


def http_protocol(settings: Settings) -> str:
    """uvicorn's ``http=`` for these settings: the limited httptools protocol by import path
    (so that ``--workers`` processes load it too), else ``"h11"``."""
    try:
        from ogcache.api import httptools_protocol
    except ImportError:
        logger.warning(
            "httptools is not installed: request heads are limited by h11 (400, not 431) and "
            "slow requests are never timed out; install uvicorn[standard] or put a reverse "
            "proxy with read timeouts in front (docs/security.md)"
        )
        return "h11"
    httptools_protocol.configure(settings.max_header_bytes, settings.request_read_timeout)
    return httptools_protocol.IMPORT_PATH


def run(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    app: str = "ogcache.api.app:create_app_from_environment",
) -> None:
    """Serve ``app`` (a factory import path) until interrupted."""
    # Worker processes read their settings from the environment: pass these limits on.
    os.environ["OGCACHE_MAX_HEADER_BYTES"] = str(settings.max_header_bytes)
    os.environ["OGCACHE_REQUEST_READ_TIMEOUT"] = repr(settings.request_read_timeout)
    log_config = uvicorn_log_config(settings) or uvicorn.config.LOGGING_CONFIG
    uvicorn.run(
        app,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=http_protocol(settings),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        log_level=settings.log_level.lower(),
        access_log=settings.access_log,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_TIMEOUT,
        log_config=log_config,
    )
