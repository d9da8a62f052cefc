"""Serialization of cache values: a pair of functions, bytes out and bytes in, never pickle.

JSON is the only wire format, so a value written by one version of the code can be inspected
with ``redis-cli`` and never executes anything when read. :class:`JsonCodec` (orjson) stores
plain JSON-compatible values; :class:`ModelCodec` stores any type pydantic can validate
(models, lists of models, ``X | None``) and gives back the same type. pydantic is imported
only when a :class:`ModelCodec` is made, so the engine installs and imports without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import orjson

from ogcache.cache.exceptions import DecodeError

if TYPE_CHECKING:
    from pydantic import TypeAdapter

__all__ = ["Codec", "JsonCodec", "ModelCodec"]

T = TypeVar("T")


class Codec(Protocol[T]):
    """Turns a value into bytes and back. ``loads`` raises :class:`DecodeError` on bad input."""

    def dumps(self, value: T) -> bytes: ...

    def loads(self, data: bytes) -> T: ...


class JsonCodec:
    """orjson for JSON-compatible values (dicts, lists, str, int, float, bool, None)."""

    __slots__ = ()

    def dumps(self, value: Any) -> bytes:
        return orjson.dumps(value)

    def loads(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"cached bytes are not valid JSON: {exc}") from exc

    def __repr__(self) -> str:
        return "JsonCodec()"


class ModelCodec(Generic[T]):
    """JSON through a pydantic ``TypeAdapter``, so reads return validated, typed values.

    A cached value whose shape no longer matches the type (an old deploy's value) fails
    validation and is reported as a :class:`DecodeError`, which the cache treats as a miss.
    """

    __slots__ = ("_adapter", "_invalid", "_type")

    def __init__(self, type_: type[T] | Any) -> None:
        try:
            from pydantic import TypeAdapter, ValidationError
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                "ModelCodec needs pydantic: pip install 'ogcache[pydantic]'", name="pydantic"
            ) from exc
        self._type = type_
        self._adapter: TypeAdapter[T] = TypeAdapter(type_)
        self._invalid = ValidationError

    def dumps(self, value: T) -> bytes:
        return self._adapter.dump_json(value)

    def loads(self, data: bytes) -> T:
        try:
            return self._adapter.validate_json(data)
        except self._invalid as exc:
            raise DecodeError(
                f"cached value does not match {self._type!r}: {exc.error_count()} error(s)"
            ) from exc

    def __repr__(self) -> str:
        return f"ModelCodec({self._type!r})"
