"""The ``ogcache`` command, run in-process against a SQLite file and the shared Redis."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ogcache.cli import app
from tests.conftest import unique_prefix

runner = CliRunner()


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> dict[str, str]:
    for name in ("OGCACHE_ADMIN_TOKEN", "OGCACHE_JWT_SECRET", "OGCACHE_SEED_DEMO_DATA"):
        monkeypatch.delenv(name, raising=False)
    values = {
        "OGCACHE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "OGCACHE_REDIS_URL": redis_url,
        "OGCACHE_CACHE_PREFIX": unique_prefix(),
        "OGCACHE_JWT_SECRET": "cli-test-secret-0123456789-0123456789-0123",
        "OGCACHE_LOG_LEVEL": "WARNING",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no stray .env file is read
    return values


def invoke(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.output


@pytest.fixture
def seeded(environment: dict[str, str]) -> Iterator[dict[str, str]]:
    assert invoke("db", "upgrade")[0] == 0
    assert invoke("db", "seed")[0] == 0
    yield environment
    invoke("cache", "clear", "--yes")


def test_db_upgrade_then_seed_loads_the_demo_data(environment: dict[str, str]) -> None:
    code, output = invoke("db", "upgrade")
    assert code == 0, output
    code, output = invoke("db", "seed")
    assert code == 0, output
    assert "added 40 menu items, 5 users" in output
    assert "added 0 menu items, 0 users" in invoke("db", "seed")[1]


def test_warmup_reports_what_it_warmed(seeded: dict[str, str]) -> None:
    code, output = invoke("warmup")
    assert code == 0, output
    assert "Warmed 6 entries" in output
    assert "menu:items:concentrates" in output
    assert "analytics:today" in output


def test_warmup_menu_only_and_one_user(seeded: dict[str, str]) -> None:
    code, output = invoke("warmup", "--menu", "--user", "web_demo_alice")
    assert code == 0, output
    assert "menu:items" in output
    assert "user:profile:web_demo_alice" in output
    assert "analytics" not in output


def test_cache_stats_counts_keys(seeded: dict[str, str]) -> None:
    invoke("warmup")
    code, output = invoke("cache", "stats")
    assert code == 0, output
    assert "backend: redis" in output
    assert "keys: 6" in output
    assert "Redis memory used (whole server, all applications)" in output


def test_cache_clear_asks_for_confirmation(seeded: dict[str, str]) -> None:
    invoke("warmup")
    code, _ = invoke("cache", "clear", input="n\n")
    assert code != 0
    assert "keys: 6" in invoke("cache", "stats")[1]
    code, output = invoke("cache", "clear", input="y\n")
    assert code == 0, output
    assert "removed 6 keys" in output


def test_cache_clear_prefix_removes_only_that_prefix(seeded: dict[str, str]) -> None:
    invoke("warmup")
    code, output = invoke("cache", "clear-prefix", "menu:context:")
    assert code == 0, output
    assert "removed 2 keys" in output
    assert "keys: 4" in invoke("cache", "stats")[1]


def test_token_issue_prints_a_token_that_verifies(seeded: dict[str, str]) -> None:
    code, output = invoke("token", "issue", "--user", "web_demo_alice")
    assert code == 0, output
    token = output.strip()
    assert token.count(".") == 2


def test_token_issue_for_an_unknown_user_fails_readably(seeded: dict[str, str]) -> None:
    code, output = invoke("token", "issue", "--user", "nobody")
    assert code == 1
    assert "no user profile" in output


def test_cache_clear_with_redis_unreachable_fails_readably(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OGCACHE_REDIS_URL", "redis://127.0.0.1:1/0")
    code, output = invoke("cache", "clear", "--yes")
    assert code == 1
    assert "error:" in output
    assert "redis" in output.lower()


def test_invalid_settings_fail_with_the_variable_named(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OGCACHE_TTL_MENU", "-5")
    code, output = invoke("cache", "stats")
    assert code == 1
    assert "OGCACHE_TTL_MENU" in output


def test_demo_prints_cached_and_uncached_timings(environment: dict[str, str]) -> None:
    code, output = invoke("demo", "--rounds", "10")
    assert code == 0, output
    for operation in ("Auth check", "User profile", "Conversation", "Menu"):
        assert operation in output
    assert "Speed-up" in output


def test_serve_on_a_taken_port_fails_before_any_work(environment: dict[str, str]) -> None:
    """A second `make run` said nothing of the port until after migrating and printing
    fresh tokens, then exited 3; now it stops first, saying how to choose another port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--demo", "--port", str(port)], env=environment)
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "make run PORT=" in result.output
    assert "ADMIN_TOKEN" not in result.output  # nothing printed, nothing migrated


@pytest.mark.parametrize(
    "command",
    [
        ("warmup",),
        ("cache", "stats"),
        ("cache", "clear", "--yes"),
        ("cache", "clear-prefix", "menu:"),
    ],
)
def test_cache_commands_refuse_an_in_process_cache_they_cannot_see(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    """Without Redis the cache lives inside the server: a command acting on one of its own
    reported "Warmed 11 entries" or "keys: 0" (exit 0) while the server held its entries."""
    monkeypatch.delenv("OGCACHE_REDIS_URL")
    assert invoke("db", "upgrade")[0] == 0
    code, output = invoke(*command)
    assert code == 1, output
    assert "the cache is in-process" in output
    assert "/api/cache" in output
    assert "Warmed" not in output
    assert "removed" not in output
