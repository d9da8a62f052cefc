"""A response whose body is JSON already encoded: a cache hit's stored bytes, sent as they are.

A route declares its ``response_model`` (the OpenAPI schema) and returns :class:`JsonBytes`
with the bytes the cache keeps for that very model, so FastAPI neither validates nor encodes
the value again: the cached bytes are the response.
"""

from __future__ import annotations

from starlette.responses import Response

__all__ = ["JsonBytes"]


class JsonBytes(Response):
    media_type = "application/json"
