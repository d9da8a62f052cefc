"""The sentinel for "no value in the cache", distinct from a cached ``None``."""

from __future__ import annotations

import enum
from typing import Final, Literal

__all__ = ["MISSING", "Missing"]


class Missing(enum.Enum):
    """Type of :data:`MISSING`; an enum so that ``is MISSING`` narrows types under mypy."""

    MISSING = enum.auto()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> Literal[False]:
        return False


MISSING: Final = Missing.MISSING
