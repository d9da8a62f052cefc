"""docs/library.md's FastAPI example runs as printed: cached reads, invalidation on write."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import unique_prefix

PAGE = Path(__file__).resolve().parents[2] / "docs" / "library.md"


async def test_the_fastapi_example_caches_and_invalidates(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)[0]
    assert 'prefix="myapp"' in example
    monkeypatch.setenv("REDIS_URL", redis_url)
    module: dict[str, Any] = {"__name__": "app"}
    exec(compile(example.replace('"myapp"', f'"{unique_prefix()}"'), "app.py", "exec"), module)  # noqa: S102
    loads = 0

    class Database(dict[int, Any]):
        def get(self, key: int, default: Any = None) -> Any:  # what load_user calls
            nonlocal loads
            loads += 1
            return super().get(key, default)

    module["DATABASE"] = Database(module["DATABASE"])
    app = module["app"]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        assert (await client.get("/users/1")).json() == {"id": 1, "name": "Ann"}
        assert (await client.get("/users/1")).json() == {"id": 1, "name": "Ann"}
        assert loads == 1
        assert (await client.get("/users/2")).status_code == 404
        assert (await client.put("/users/1", params={"name": "Anna"})).status_code == 200
        assert (await client.get("/users/1")).json() == {"id": 1, "name": "Anna"}
        assert loads == 3
