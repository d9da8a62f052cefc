"""The ``ogcache`` command: demo, database, cache and token operations.

Every command talks to the database and cache directly (no running server needed) and exits
non-zero with a readable message on failure.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ogcache import __version__
from ogcache.errors import OgcacheError

# What a command needs (pydantic, SQLAlchemy, the cache backends, FastAPI, uvicorn) is imported
# in its body, so that `ogcache --help` and a command's `--help` load typer and rich only;
# tests/test_cli_startup.py holds this module to it.
if TYPE_CHECKING:
    from pydantic import BaseModel

    from ogcache.config import Settings
    from ogcache.runtime import Runtime
    from ogcache.schemas import MenuItemPublic
    from ogcache.services import MenuService, WarmupReport

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(help="OG Lab agent backend with the ogcache cache layer.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema and demo data.", no_args_is_help=True)
cache_app = typer.Typer(help="Inspect and clear the cache.", no_args_is_help=True)
token_app = typer.Typer(help="Access tokens for operators and the demo.", no_args_is_help=True)
menu_app = typer.Typer(
    help="List and edit the menu; every write drops the menu's cached entries.",
    no_args_is_help=True,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"ogcache {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    # ``ogcache --version`` is answered by ogcache.entry before this module is imported; the
    # option is here so that ``--help`` lists it and ``app`` run directly answers it too.
    pass


app.add_typer(db_app, name="db")
app.add_typer(cache_app, name="cache")
app.add_typer(token_app, name="token")
app.add_typer(menu_app, name="menu")

console = Console(emoji=False, highlight=False)
errors = Console(stderr=True, emoji=False, highlight=False)


# The secrets `serve --demo` made, kept beside the demo database so that every command run
# from this directory (`ogcache token issue` in another shell, the next `make run`) uses them.
DEMO_SECRETS = Path(".ogcache-demo.env")


def _settings() -> Settings:
    from ogcache.config import load_settings
    from ogcache.log import configure_logging

    files = (".env", DEMO_SECRETS) if DEMO_SECRETS.is_file() else ".env"
    settings = load_settings(_env_file=files)
    configure_logging(settings)
    return settings


def _demo_secrets(settings: Settings) -> Settings:
    """An admin token and a JWT secret for the demo where none is configured: made once,
    written to :data:`DEMO_SECRETS` (mode 0600, git-ignored), reused by later commands."""
    import secrets

    missing = [
        variable
        for variable in ("OGCACHE_ADMIN_TOKEN", "OGCACHE_JWT_SECRET")
        if getattr(settings, variable[8:].lower()) is None
    ]
    if not missing:
        return settings
    lines = [f"{variable}={secrets.token_urlsafe(32)}\n" for variable in missing]
    descriptor = os.open(DEMO_SECRETS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "a") as file:
        file.writelines(lines)
    console.print(
        f"demo secrets ({', '.join(missing)}) kept in {DEMO_SECRETS}: "
        "commands run from here use them; delete the file for new ones"
    )
    return _settings()


def _run(work: Callable[[Runtime], Awaitable[T]], *, shared_cache: bool = False) -> T:
    """Open the runtime, run ``work``, close; turn known errors into a message and exit 1.

    ``shared_cache``: ``work`` acts on the server's cache, which this process can reach only
    when it is shared (Redis, Upstash); the in-process one lives inside each server."""
    import asyncio

    from ogcache.cache import CacheError
    from ogcache.runtime import Runtime

    async def main() -> T:
        from ogcache.db.failures import bound_connect_time, explained_failures

        settings = _settings()
        if shared_cache:
            _require_shared_cache(settings)
        timeout = settings.database_connect_timeout
        async with Runtime.open(settings) as runtime:
            bound_connect_time(runtime.engine, timeout)
            with explained_failures(settings.database_url, timeout):  # one line, not 720
                return await work(runtime)

    try:
        return asyncio.run(main())
    except (OgcacheError, CacheError) as exc:
        errors.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        errors.print(f"[bold red]error:[/] cannot reach the database: {exc}")
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Seed demo data, and create an admin token and a JWT secret for this run "
            "if none are configured; print curl examples.",
        ),
    ] = False,
) -> None:
    """Run the HTTP service (migrations applied at start-up, caches warmed in the background)."""
    try:
        settings = _settings()
    except OgcacheError as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    _check_port_free(host, port)
    if demo:
        os.environ["OGCACHE_SEED_DEMO_DATA"] = "true"
        settings = _demo_secrets(settings)
        for variable, secret in (
            ("OGCACHE_ADMIN_TOKEN", settings.admin_token),
            ("OGCACHE_JWT_SECRET", settings.jwt_secret),
        ):  # the worker processes read their settings from the environment
            if secret is not None:
                os.environ.setdefault(variable, secret.get_secret_value())
        _print_demo_help(settings, host, port)
    if workers > 1:
        _prepare_once(settings)
    if workers > 1 and not settings.redis_url and settings.database_url.startswith("postgres"):
        errors.print(
            "[yellow]warning:[/] several workers with the in-process cache on PostgreSQL: each "
            "worker has its own cache, and writes made outside the app reach only one of them "
            "(the change capture leader's); set OGCACHE_REDIS_URL"
        )
    from ogcache.api.server import run
    from ogcache.api.worker_stats import shared_directory

    with shared_directory(workers):  # the workers' counters, summed in /metrics
        run(settings, host=host, port=port, workers=workers)


def _prepare_once(settings: Settings) -> None:
    """Migrate (and seed, if asked) here, once, before the workers start: each worker would
    otherwise run the same migration at the same moment, and all but one would fail."""
    if not (settings.auto_migrate or settings.seed_demo_data):
        return
    from ogcache.db.seed import seed_demo_data

    async def prepare(runtime: Runtime) -> None:
        if settings.auto_migrate:
            await runtime.migrate()
        if settings.seed_demo_data:
            await seed_demo_data(runtime.db)

    _run(prepare)
    os.environ["OGCACHE_AUTO_MIGRATE"] = "false"  # the workers read the environment
    os.environ["OGCACHE_SEED_DEMO_DATA"] = "false"


def _require_shared_cache(settings: Settings) -> None:
    """Refuse to act on a throwaway in-process cache of this command's own (it used to
    report "Warmed 11 entries" or "keys: 0" while the server held its own entries)."""
    redis = settings.redis_url
    if (redis and not redis.startswith("memory:")) or settings.upstash_redis_rest_url:
        return
    raise OgcacheError(
        "the cache is in-process (OGCACHE_REDIS_URL is not set): it lives inside the running "
        "server, and this command would only see an empty one of its own. Use the server's "
        "API (GET /api/cache; POST /api/cache with the admin token and "
        '{"action": "warmup"}, "clear" or "clear-prefix"), or set OGCACHE_REDIS_URL '
        "for the server and this command"
    )


def _check_port_free(host: str, port: int) -> None:
    """Fail before any work (migrations, tokens printed) when the address is taken."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        errors.print(
            f"[bold red]error:[/] cannot listen on {host}:{port} ({exc.strerror}); another "
            "server (an earlier `make run`?) may hold it: stop it, or choose another port "
            "with --port (make run PORT=8001)"
        )
        raise typer.Exit(1) from None


def _print_demo_help(settings: Settings, host: str, port: int) -> None:
    """Print where to point curl, with this run's admin token and a demo user's token."""
    from ogcache.config import redact_url
    from ogcache.db.seed import seed_demo_data

    async def prepare(runtime: Runtime) -> str:
        await runtime.migrate()
        await seed_demo_data(runtime.db)
        return (await runtime.auth.issue_token("web_demo_alice", ttl=24 * 3600)).access_token

    user_token = _run(prepare)
    admin = settings.admin_token.get_secret_value() if settings.admin_token else ""
    base = f"http://{host}:{port}"
    cache = redact_url(settings.redis_url) if settings.redis_url else "in-process memory"
    console.print(
        f"""[bold]OG Lab agent backend[/] on {base}  (OpenAPI docs: {base}/docs)
database: {redact_url(settings.database_url)}   cache: {cache}

export ADMIN_TOKEN={admin}
export USER_TOKEN={user_token}

curl {base}/api/cache
curl -X POST {base}/api/cache -H "Authorization: Bearer $ADMIN_TOKEN" \\
     -H "Content-Type: application/json" -d '{{"action": "warmup"}}'
curl {base}/api/menu
curl {base}/api/profiles/web_demo_alice -H "Authorization: Bearer $USER_TOKEN"
curl {base}/api/auth/me -H "Authorization: Bearer $USER_TOKEN"
curl {base}/metrics
""",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def demo(
    rounds: Annotated[int, typer.Option(min=10, max=100_000, help="Timed rounds per row.")] = 200,
) -> None:
    """Create the schema, seed demo data, and compare cached and uncached reads."""
    from rich.table import Table

    from ogcache.config import redact_url
    from ogcache.db.seed import seed_demo_data
    from ogcache.demo import run_demo

    async def work(runtime: Runtime) -> None:
        await runtime.migrate()
        seeded = await seed_demo_data(runtime.db)
        console.print(
            f"database: {redact_url(runtime.settings.database_url)} (migrated; demo data added: "
            f"{seeded})"
        )
        console.print(f"cache: {runtime.cache.backend!r}, prefix {runtime.cache.prefix!r}")
        rows = await run_demo(runtime, rounds)
        table = Table(title=f"Cached vs uncached reads (medians of {rounds} rounds each)")
        table.add_column("Operation")
        table.add_column("Uncached (miss) ms", justify="right")
        table.add_column("Cached (hit) ms", justify="right")
        table.add_column("Speed-up", justify="right")
        for row in rows:
            table.add_row(
                row.operation,
                f"{row.uncached_ms:.3f}",
                f"{row.cached_ms:.3f}",
                f"{row.speedup:.1f}x",
            )
        console.print(table)
        _print_stats(runtime)

    _run(work)


def _print_stats(runtime: Runtime) -> None:
    from rich.table import Table

    table = Table(title="Cache statistics per namespace")
    for column in ("Namespace", "Hits", "Misses", "Hit rate", "Loads", "Errors", "p99 op ms"):
        table.add_column(column, justify="left" if column == "Namespace" else "right")
    for name, stats in runtime.cache.stats().items():
        p99 = stats.operation_latency.p99_ms
        table.add_row(
            name,
            str(stats.hits),
            str(stats.misses),
            f"{stats.hit_rate:.1%}" if stats.hit_rate is not None else "-",
            str(stats.loads),
            str(stats.errors),
            f"{p99:.3f}" if p99 is not None else "-",
        )
    console.print(table)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations."""

    async def work(runtime: Runtime) -> None:
        await runtime.migrate()

    _run(work)
    console.print("database migrated to the latest revision")


@db_app.command("seed")
def db_seed() -> None:
    """Load the demo data where it is missing (idempotent)."""
    from ogcache.db.seed import seed_demo_data

    async def work(runtime: Runtime) -> None:
        report = await seed_demo_data(runtime.db)
        console.print(
            f"added {report.menu_items} menu items, {report.users} users, "
            f"{report.conversations} conversations, {report.events} events"
        )

    _run(work)


@cache_app.command("stats")
def cache_stats() -> None:
    """Backend, availability, key count and memory use of the cache."""
    from ogcache.cache import BackendError

    async def work(runtime: Runtime) -> None:
        report = await runtime.cache.report()
        if not report.available:
            raise BackendError(f"cache unavailable: {report.error}")
        console.print(f"backend: {report.backend}  prefix: {report.prefix}")
        if report.keys is not None:
            bound = "" if report.keys.complete else " (at least; counting stopped at its bound)"
            console.print(f"keys: {report.keys.count}{bound}")
        if report.info is not None and report.info.memory_used_bytes is not None:
            # INFO memory is the server's, shared with whatever else uses that Redis.
            console.print(
                f"Redis memory used (whole server, all applications): "
                f"{report.info.memory_used_bytes:,} bytes"
            )

    _run(work, shared_cache=True)


@cache_app.command("clear")
def cache_clear(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove every key of this application from the cache."""
    if not yes:
        typer.confirm("Remove every cached entry of this application?", abort=True)
    removed = _run(lambda runtime: runtime.cache.clear(), shared_cache=True)
    console.print(f"removed {removed} keys")


@cache_app.command("clear-prefix")
def cache_clear_prefix(prefix: str) -> None:
    """Remove the keys under a literal prefix, e.g. 'user:profile:'."""
    removed = _run(lambda runtime: runtime.cache.clear_prefix(prefix), shared_cache=True)
    console.print(f"removed {removed} keys under {prefix!r}")


@app.command()
def warmup(
    menu: Annotated[bool, typer.Option("--menu", help="Only the menu.")] = False,
    user: Annotated[str | None, typer.Option("--user", help="Also this user's data.")] = None,
) -> None:
    """Load critical data from the database into the cache."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
    from rich.table import Table

    async def work(runtime: Runtime) -> list[tuple[str, str]]:
        await runtime.cache.ping()  # warming an unreachable cache would store nothing
        steps: list[tuple[str, Callable[[], Awaitable[WarmupReport]]]] = [
            ("menu", runtime.warmup.warm_menu)
        ]
        if not menu:
            steps.append(("analytics", runtime.warmup.warm_analytics))
        if user is not None:
            steps.append((f"user {user}", lambda: runtime.warmup.warm_user(user)))
        warmed: list[tuple[str, str]] = []
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            console=console, transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("warming", total=len(steps))
            for name, step in steps:
                progress.update(task, description=f"warming {name}")
                warmed += [(name, entry) for entry in (await step()).warmed]
                progress.advance(task)
        return warmed

    warmed = _run(work, shared_cache=True)
    table = Table(title=f"Warmed {len(warmed)} entries")
    table.add_column("Group")
    table.add_column("Entry")
    for group, entry in warmed:
        table.add_row(group, entry)
    console.print(table)


@token_app.command("issue")
def token_issue(
    user: Annotated[str, typer.Option("--user", help="user_id of an existing profile.")],
    ttl: Annotated[
        float | None, typer.Option(help="Lifetime in seconds (default: OGCACHE_TOKEN_TTL).")
    ] = None,
) -> None:
    """Open a session for a user and print an access token for it."""
    issued = _run(lambda runtime: runtime.auth.issue_token(user, ttl=ttl))
    print(issued.access_token)


# Options of `menu add` and `menu set`, named after the fields they fill (price_1g:
# --price-1g); their bounds are the schemas', checked in one place by _validated.
ItemIdArgument = Annotated[
    int,
    typer.Argument(
        min=1, max=2**31 - 1, metavar="ID", help="The item's id, as `ogcache menu list` shows."
    ),
]
CategoryOption = Annotated[str | None, typer.Option(help="Category, e.g. 'TOP SHELF'.")]
TypeOption = Annotated[str | None, typer.Option("--type", help="indica, sativa or hybrid.")]
PercentOption = Annotated[float | None, typer.Option(help="Percent, 0 to 100.")]
PriceOption = Annotated[int | None, typer.Option(help="Price in THB.")]
AvailableOption = Annotated[
    bool | None, typer.Option("--available/--unavailable", help="Shown on the menu or not.")
]
DescriptionOption = Annotated[str | None, typer.Option(help="Free text, up to 1000 characters.")]
SortOrderOption = Annotated[int | None, typer.Option(help="Position on the menu (lower first).")]

# Fields `menu set --clear` may empty: the nullable ones of MenuItemUpdate.
CLEARABLE = (
    "type", "thc", "cbd", "cbg", "price_1pc", "price_1g", "price_5g", "price_20g", "description"
)  # fmt: skip

M = TypeVar("M", bound="BaseModel")


def _usage_error(message: str) -> NoReturn:
    """One line on stderr and exit 2: the command was given input it cannot use."""
    errors.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


def _validated(model: type[M], fields: dict[str, Any], nulls: Iterable[str] = ()) -> M:
    """The options given (``None``: not given, dropped) and ``nulls`` set to ``None`` as
    ``model``, or exit 2 naming each option that is wrong, by its option name."""
    from pydantic import ValidationError

    given = {name: value for name, value in fields.items() if value is not None}
    try:
        return model.model_validate(given | dict.fromkeys(nulls))
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(str(part) for part in error['loc']).replace('_', '-')}: {error['msg']}"
            for error in exc.errors()
        )
        _usage_error(f"invalid menu item: {problems}")


def _cleared(clear: list[str], fields: dict[str, Any]) -> list[str]:
    """The fields ``--clear`` names (``price-1g`` or ``price_1g``), or exit 2 for one that
    cannot be cleared or is also given a value."""
    names: list[str] = []
    for option in clear:
        name = option.removeprefix("--").replace("-", "_")
        if name not in CLEARABLE:
            _usage_error(f"--clear {option}: not one of {', '.join(CLEARABLE)}")
        if fields.get(name) is not None:
            _usage_error(f"--clear {option} contradicts --{name.replace('_', '-')}")
        names.append(name)
    return names


def _item_line(item: MenuItemPublic) -> str:
    """One item on one line: id, name, category (and type), prices, availability."""
    from ogcache.services.menu import price_tiers

    tiers = [f"{label} {price}" for label, price in price_tiers(item)]
    kind = ", ".join(part for part in (item.category, item.type) if part)
    prices = f"{', '.join(tiers)} THB" if tiers else "no price"
    flags = ["available" if item.available else "unavailable"]
    if item.is_concentrate:
        flags.append("concentrate")
    return f"#{item.id}  {item.name}  ({kind})  {prices}  {', '.join(flags)}"


async def _database_read_or_write(work: Awaitable[T]) -> T:
    """``work``, with a database error (e.g. a database not migrated yet) as a message, not
    a traceback: ``_run`` reports it and exits 1."""
    from sqlalchemy.exc import DBAPIError

    try:
        return await work
    except DBAPIError as exc:
        reason = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
        if "no such table" in reason or "does not exist" in reason:
            reason += "; run `ogcache db upgrade` first"
        raise OgcacheError(f"the database refused: {reason}") from None


def _write_menu(write: Callable[[MenuService], Awaitable[T]]) -> T:
    """Run one menu write through the service (database, then cache invalidation). Running
    servers apply it from the database (change capture) whatever cache this command has; with
    capture off, a cache in this process is not the server's, so say so."""

    async def work(runtime: Runtime) -> T:
        result = await _database_read_or_write(write(runtime.menu))
        try:
            _require_shared_cache(runtime.settings)
        except OgcacheError:
            if not runtime.settings.change_capture:
                errors.print(
                    "[yellow]warning:[/] written to the database, but with "
                    "OGCACHE_CHANGE_CAPTURE=false and an in-process cache a running server "
                    "shows its cached menu until it expires (OGCACHE_TTL_MENU)",
                    soft_wrap=True,
                )
        return result

    return _run(work)


@menu_app.command("list")
def menu_list() -> None:
    """Every item, available or not, in menu order: id, name, category, prices."""
    items = _run(lambda runtime: _database_read_or_write(runtime.menu.list_items()))
    for item in items:
        typer.echo(_item_line(item))
    shown = sum(item.available for item in items)
    typer.echo(f"{len(items)} items, {shown} available")


@menu_app.command("add")
def menu_add(
    name: Annotated[str, typer.Option(help="Unique name, e.g. 'Gelato 41'.")],
    category: Annotated[str, typer.Option(help="Category, e.g. 'TOP SHELF'.")],
    kind: TypeOption = None,
    thc: PercentOption = None,
    cbd: PercentOption = None,
    cbg: PercentOption = None,
    price_1pc: PriceOption = None,
    price_1g: PriceOption = None,
    price_5g: PriceOption = None,
    price_20g: PriceOption = None,
    concentrate: Annotated[
        bool,
        typer.Option(
            "--concentrate", help="Hash, rosin, resin: on the menu variant with concentrates only."
        ),
    ] = False,
    ours: Annotated[bool, typer.Option("--ours", help="Grown by OG Lab.")] = False,
    available: AvailableOption = None,
    description: DescriptionOption = None,
    sort_order: SortOrderOption = None,
) -> None:
    """Add an item (exit 2 for invalid input, 1 if the name is taken)."""
    from ogcache.schemas import MenuItemCreate

    data = _validated(
        MenuItemCreate,
        {
            "name": name, "category": category, "type": kind, "thc": thc, "cbd": cbd,
            "cbg": cbg, "price_1pc": price_1pc, "price_1g": price_1g, "price_5g": price_5g,
            "price_20g": price_20g, "is_concentrate": concentrate, "our": ours,
            "available": available, "description": description, "sort_order": sort_order,
        },
    )  # fmt: skip
    item = _write_menu(lambda menu: menu.create_item(data))
    typer.echo(f"added {_item_line(item)}")


@menu_app.command("set")
def menu_set(
    item_id: ItemIdArgument,
    category: CategoryOption = None,
    kind: TypeOption = None,
    thc: PercentOption = None,
    cbd: PercentOption = None,
    cbg: PercentOption = None,
    price_1pc: PriceOption = None,
    price_1g: PriceOption = None,
    price_5g: PriceOption = None,
    price_20g: PriceOption = None,
    available: AvailableOption = None,
    description: DescriptionOption = None,
    sort_order: SortOrderOption = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(help=f"Remove a field's value (repeatable): {', '.join(CLEARABLE)}."),
    ] = None,
) -> None:
    """Change the options given of one item, e.g. `--price-1g 900 --unavailable`."""
    from ogcache.schemas import MenuItemUpdate

    fields = {
        "category": category, "type": kind, "thc": thc, "cbd": cbd, "cbg": cbg,
        "price_1pc": price_1pc, "price_1g": price_1g, "price_5g": price_5g,
        "price_20g": price_20g, "available": available, "description": description,
        "sort_order": sort_order,
    }  # fmt: skip
    changes = _validated(MenuItemUpdate, fields, _cleared(clear or [], fields))
    if not changes.model_fields_set:
        _usage_error("nothing to change: give an option, e.g. --price-1g 900 or --unavailable")
    item = _write_menu(lambda menu: menu.update_item(item_id, changes))
    typer.echo(f"changed {_item_line(item)}")


@menu_app.command("delete")
def menu_delete(item_id: ItemIdArgument) -> None:
    """Delete one item (exit 1 if there is no such item)."""
    _write_menu(lambda menu: menu.delete_item(item_id))
    typer.echo(f"deleted menu item {item_id}")


def main() -> None:
    app()
