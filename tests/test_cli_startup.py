"""``ogcache --help`` loads the command line, not the service behind it.

The help took 4 s on a busy machine because ``ogcache.cli`` imported FastAPI, SQLAlchemy, the
Redis client and the rest at import time; each command now imports what it needs when it
runs. Import time depends on the machine, so this checks what is imported, not how long it
takes (the figures are in the change log of the commit that made it so).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# The service's packages: none of them is needed to print help.
HEAVY = (
    "alembic",
    "asyncpg",
    "fastapi",
    "httpx",
    "prometheus_client",
    "pydantic_settings",
    "redis",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "ogcache.api",
    "ogcache.cache",
    "ogcache.config",
    "ogcache.runtime",
)

# Runs the command line in a fresh interpreter as the console script does, then prints which
# of the module names given on stdin got imported.
SCRIPT = """
import json, sys
from ogcache.cli import app
try:
    app(sys.argv[1:], prog_name="ogcache")
except SystemExit:
    pass
heavy = json.loads(sys.stdin.read())
print(json.dumps(sorted(name for name in heavy if name in sys.modules)))
"""


def imported_by(*arguments: str, among: tuple[str, ...] = HEAVY) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *arguments],
        input=json.dumps(among),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    names: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return names


@pytest.mark.parametrize(
    "arguments",
    [
        ("--help",),
        ("--version",),
        (),
        ("serve", "--help"),
        ("demo", "--help"),
        ("warmup", "--help"),
        ("db", "--help"),
        ("db", "upgrade", "--help"),
        ("cache", "clear-prefix", "--help"),
        ("token", "issue", "--help"),
        ("menu", "add", "--help"),
        ("menu", "set", "--help"),
    ],
    ids=lambda arguments: " ".join(arguments) or "no arguments",
)
def test_help_imports_none_of_the_service(arguments: tuple[str, ...]) -> None:
    assert imported_by(*arguments) == []


def test_the_check_sees_a_command_that_runs() -> None:
    """The same probe on a command that does work must see its imports, or it proves nothing:
    an invalid ``menu add`` validates its options (the schemas) and exits 2 before any I/O."""
    arguments = ("menu", "add", "--name", "x", "--category", "y", "--thc", "500")
    assert imported_by(*arguments, among=("ogcache.schemas",)) == ["ogcache.schemas"]
