"""``ogcache serve --demo`` as the README starts it: a real server process on loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port, wait_for_port

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("OGCACHE_")
    }
    environment.update(
        OGCACHE_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}", OGCACHE_LOG_LEVEL="WARNING"
    )
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "ogcache"), "serve", "--demo", "--port", str(port)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _printed(process: subprocess.Popen[str], name: str) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        match = re.match(rf"export {name}=(\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"serve --demo did not print {name}")


def test_serve_demo_answers_the_seeds_cache_curl(
    server: tuple[str, subprocess.Popen[str]],
) -> None:
    base, process = server
    admin, user = _printed(process, "ADMIN_TOKEN"), _printed(process, "USER_TOKEN")

    stats = httpx.get(f"{base}/api/cache", timeout=5)
    assert stats.status_code == 200
    assert stats.json()["available"] is True
    assert "totalKeys" in stats.json()["stats"]

    warmup = httpx.post(
        f"{base}/api/cache",
        json={"action": "warmup"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert warmup.status_code == 200
    assert warmup.json()["keysWarmed"] == 6

    me = httpx.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {user}"}, timeout=5)
    assert me.json()["user_id"] == "web_demo_alice"
    assert httpx.get(f"{base}/healthz", timeout=5).json()["status"] == "ok"
