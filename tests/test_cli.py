"""The ``ogcache`` command, run in-process against a SQLite file and the shared Redis."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ogcache.cli import app
from ogcache.config import load_settings
from ogcache.runtime import Runtime
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


def menu_read(*, concentrates: bool = False) -> tuple[str, int]:
    """The agent's menu text as a fresh runtime of these settings reads it now, and whether
    that read was a cache hit (1) or loaded from the database (0). Without the in-process
    tier: this runtime lives for one read (and one closed right after its tier's Redis feed
    started leaves that connection to the garbage collector, a ResourceWarning)."""

    async def read() -> tuple[str, int]:
        async with Runtime.open(load_settings(_env_file=None, local_ttl_menu=0)) as runtime:
            text = await runtime.menu.get_context(include_concentrates=concentrates)
            return text, runtime.cache.stats()["menu:context"].hits

    return asyncio.run(read())


def item_id(name: str) -> int:
    """The id `menu list` shows for ``name``."""
    (line,) = [line for line in invoke("menu", "list")[1].splitlines() if f"  {name}  " in line]
    return int(line.split()[0].removeprefix("#"))


@pytest.fixture
def warm_menu(seeded: dict[str, str]) -> dict[str, str]:
    """The demo menu with all four of its entries cached (both texts load both menus), and a
    read served from the cache."""
    menu_read()
    menu_read(concentrates=True)
    assert "keys: 4" in invoke("cache", "stats")[1]
    assert menu_read()[1] == 1
    assert menu_read(concentrates=True)[1] == 1
    return seeded


def test_menu_list_shows_every_item_with_prices(seeded: dict[str, str]) -> None:
    code, output = invoke("menu", "list")
    assert code == 0, output
    lines = output.splitlines()
    assert f"#{item_id('Gelato 41')}  Gelato 41  (TOP SHELF, hybrid)  1g " in output
    assert lines[-1] == "40 items, 36 available"
    assert sum("  unavailable" in line for line in lines) == 4


def test_menu_add_shows_on_the_next_read_of_the_cached_menu(warm_menu: dict[str, str]) -> None:
    code, output = invoke(
        "menu", "add", "--name", "Koh Phangan Haze", "--category", "TOP SHELF",
        "--type", "sativa", "--thc", "27.5", "--price-1g", "777", "--price-5g", "3333",
        "--description", "Island grown", "--sort-order", "5",
    )  # fmt: skip
    assert code == 0, output
    assert "added #41  Koh Phangan Haze  (TOP SHELF, sativa)  1g 777, 5g 3333 THB  available" in (
        output
    )
    assert "warning" not in output
    assert "keys: 0" in invoke("cache", "stats")[1]  # all four entries dropped
    text, hits = menu_read()
    assert hits == 0
    assert "- Koh Phangan Haze (sativa, THC 27.5%): 1g 777 THB, 5g 3333 THB" in text


def test_menu_add_of_a_concentrate_shows_in_that_variant_only(warm_menu: dict[str, str]) -> None:
    code, output = invoke(
        "menu", "add", "--name", "Lebanese Gold", "--category", "HASH", "--price-1g", "900",
        "--concentrate", "--ours",
    )  # fmt: skip
    assert code == 0, output
    assert "available, concentrate" in output
    assert "- Lebanese Gold: 1g 900 THB" in menu_read(concentrates=True)[0]
    assert "Lebanese Gold" not in menu_read()[0]


def test_menu_set_changes_prices_and_availability_for_the_next_read(
    warm_menu: dict[str, str],
) -> None:
    gelato = item_id("Gelato 41")
    code, output = invoke("menu", "set", str(gelato), "--price-1g", "900", "--clear", "price-20g")
    assert code == 0, output
    assert f"changed #{gelato}  Gelato 41  (TOP SHELF, hybrid)  1g 900, 5g " in output
    assert "20g" not in output
    text, hits = menu_read()
    assert hits == 0
    (line,) = [line for line in text.splitlines() if line.startswith("- Gelato 41 (")]
    assert "1g 900 THB" in line
    assert "20g" not in line

    assert menu_read()[1] == 1  # cached again
    code, output = invoke("menu", "set", str(gelato), "--unavailable")
    assert code == 0, output
    assert output.rstrip().endswith("unavailable")
    assert "- Gelato 41 (" not in menu_read()[0]
    code, output = invoke("menu", "set", str(gelato), "--available")
    assert code == 0, output
    assert "- Gelato 41 (" in menu_read()[0]


def test_menu_delete_removes_the_item_from_the_next_read(warm_menu: dict[str, str]) -> None:
    gelato = item_id("Gelato 41")
    code, output = invoke("menu", "delete", str(gelato))
    assert code == 0, output
    assert f"deleted menu item {gelato}" in output
    assert "- Gelato 41 (" not in menu_read()[0]
    assert "39 items" in invoke("menu", "list")[1]
    code, output = invoke("menu", "delete", str(gelato))
    assert code == 1
    assert f"no menu item with id {gelato}" in output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("add", "--name", " ", "--category", "X"), "--name: String should have at least 1"),
        (("add", "--name", "A", "--category", "X", "--price-1g", "-1"), "--price-1g: Input"),
        (("add", "--name", "A", "--category", "X", "--thc", "101"), "--thc: Input should be"),
        (("add", "--name", "A", "--category", "X", "--type", "ruderalis"), "--type: Input"),
        (("add", "--name", "A", "--category", "X", "--sort-order", "2000000"), "--sort-order"),
        (("set", "1"), "nothing to change"),
        (("set", "1", "--category", ""), "--category: String should have at least 1"),
        (("set", "1", "--clear", "colour"), "--clear colour: not one of type, thc"),
        (("set", "1", "--clear", "price-1g", "--price-1g", "5"), "contradicts --price-1g"),
    ],
)
def test_invalid_menu_input_is_one_line_and_exit_2(
    seeded: dict[str, str], arguments: tuple[str, ...], message: str
) -> None:
    before = invoke("menu", "list")[1]
    code, output = invoke("menu", *arguments)
    assert code == 2, output
    assert output.strip().splitlines() == [output.strip()]
    assert output.startswith("error: ")
    assert message in output
    assert invoke("menu", "list")[1] == before  # nothing written


@pytest.mark.parametrize("arguments", [("set", "0", "--price-1g", "1"), ("delete", "abc")])
def test_an_item_id_that_cannot_exist_is_a_usage_error(
    environment: dict[str, str], arguments: tuple[str, ...]
) -> None:
    code, output = invoke("menu", *arguments)
    assert code == 2, output
    assert "ID" in output


def test_menu_add_of_a_taken_name_fails_readably(seeded: dict[str, str]) -> None:
    code, output = invoke("menu", "add", "--name", "Gelato 41", "--category", "HASH")
    assert code == 1
    assert "error: a menu item named 'Gelato 41' already exists" in output


def test_menu_set_of_an_unknown_item_fails_readably(seeded: dict[str, str]) -> None:
    code, output = invoke("menu", "set", "999999", "--price-1g", "1")
    assert code == 1
    assert "no menu item with id 999999" in output


def test_menu_commands_on_a_database_not_migrated_fail_readably(
    environment: dict[str, str],
) -> None:
    for arguments in (("list",), ("delete", "1")):
        code, output = invoke("menu", *arguments)
        assert code == 1, output
        assert "error: the database refused: no such table: menu_items" in output
        assert "ogcache db upgrade" in output
        assert "Traceback" not in output


def test_menu_write_with_an_in_process_cache_warns_only_with_change_capture_off(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write reaches the database; a running server applies it from there (change
    capture), unless capture is off: then the cache it invalidated is this command's own, and
    the operator is told so."""
    monkeypatch.delenv("OGCACHE_REDIS_URL")
    assert invoke("db", "upgrade")[0] == 0
    code, output = invoke("menu", "add", "--name", "Solo", "--category", "X", "--price-1g", "5")
    assert code == 0, output
    assert "warning" not in output
    assert "#1  Solo  (X)  1g 5 THB  available" in invoke("menu", "list")[1]
    monkeypatch.setenv("OGCACHE_CHANGE_CAPTURE", "false")
    code, output = invoke("menu", "add", "--name", "Duo", "--category", "X")
    assert code == 0, output
    assert "OGCACHE_CHANGE_CAPTURE=false and an in-process cache" in output
