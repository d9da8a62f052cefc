from __future__ import annotations

import pytest

from ogcache.cache import CacheConfigurationError, InvalidKeyError, Namespace


def test_key_joins_parts_with_colons() -> None:
    assert Namespace("menu", ttl=1).key("items", "concentrates") == "items:concentrates"


@pytest.mark.parametrize("part", ["", "a b", "tab\there", "nl\n", "\x00"])
def test_key_rejects_empty_or_unprintable_parts(part: str) -> None:
    with pytest.raises(InvalidKeyError, match="key part"):
        Namespace("menu", ttl=1).key(part)


def test_key_rejects_overlong_keys() -> None:
    with pytest.raises(InvalidKeyError, match="limit"):
        Namespace("menu", ttl=1).key("x" * 513)


@pytest.mark.parametrize("name", ["", "Upper", "has space", ":leading", "trailing:"])
def test_namespace_names_are_validated(name: str) -> None:
    with pytest.raises(InvalidKeyError, match="namespace name"):
        Namespace(name, ttl=1)


@pytest.mark.parametrize(
    "options", [{"ttl": 0}, {"ttl": -1}, {"ttl": 1, "version": 0}, {"ttl": 1, "negative_ttl": 0}]
)
def test_namespace_numbers_are_validated(options: dict[str, float]) -> None:
    with pytest.raises(CacheConfigurationError):
        Namespace("menu", **options)  # type: ignore[arg-type]
