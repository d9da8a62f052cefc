"""The ``ogcache`` console script, kept free of the server's dependencies.

``ogcache --version`` answers without importing typer or FastAPI, and on a lean install
(``pip install ogcache``, the engine alone) every other command says which extra to install
instead of ending in a traceback.
"""

from __future__ import annotations

import sys

from ogcache import __version__

__all__ = ["SERVER_EXTRA_HINT", "main"]

SERVER_EXTRA_HINT = "ogcache's command line needs the server extra: pip install 'ogcache[server]'"

# Top-level modules that come with the server extra; a missing one of these means the extra
# is not installed, anything else missing is a bug worth its traceback.
_SERVER_MODULES = frozenset(
    {
        "aiosqlite",
        "alembic",
        "asyncpg",
        "click",
        "fastapi",
        "httpx",
        "jwt",
        "prometheus_client",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "rich",
        "sqlalchemy",
        "starlette",
        "typer",
        "uvicorn",
    }
)


def main() -> None:
    """Print the version, or run the command line if the server extra is installed."""
    if sys.argv[1:2] in (["--version"], ["-V"]):
        print(f"ogcache {__version__}")
        return
    try:
        from ogcache.cli import main as cli_main

        # The commands import what they need when they run (``--help`` loads typer and rich
        # only), so a missing server package shows up here too, not only at the import.
        cli_main()
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _SERVER_MODULES:
            raise
        print(SERVER_EXTRA_HINT, file=sys.stderr)
        raise SystemExit(1) from None
