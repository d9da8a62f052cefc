"""A database that cannot be reached is one line naming it, its host and the cause, within
``OGCACHE_DATABASE_CONNECT_TIMEOUT``: for the commands and for ``serve``, run as a user runs
them (subprocesses), against the real PostgreSQL, a refused port and a server that hangs.

They printed a 720-line traceback (``serve``: 160-219), and a server that accepts TCP and
never answers held them 62-65 s before ``cannot reach the database: `` with no reason.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from ogcache.db.failures import explained_failures
from ogcache.errors import NotFoundError
from tests.support.servers import free_port

pytestmark = pytest.mark.slow

PASSWORD = "pw-never-printed"
OGCACHE = str(Path(sys.executable).parent / "ogcache")
# Seconds beyond the interpreter's own start-up (imports) a failing command may take: the
# connect timeout is 1 s, so 10 s is ten times it on a busy 2-core machine.
SLACK = 10.0


@dataclass(frozen=True)
class Failure:
    url: str
    cause: str

    @property
    def place(self) -> str:
        url = make_url(self.url)
        return f"cannot reach the database {url.database} on {url.host}:{url.port}: "


@pytest.fixture(scope="module")
def start_up() -> float:
    """Seconds this machine takes to start Python and import what the commands import."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", "import ogcache.cli, ogcache.api.app"], check=True, timeout=120
    )
    return time.monotonic() - started


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: a hung PostgreSQL."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture(params=["missing-database", "refused", "hung"])
def failure(request: pytest.FixtureRequest, postgres_url: str, silent_port: int) -> Failure:
    if request.param == "missing-database":
        url = make_url(postgres_url).set(database="ogcache_no_such_db", password=PASSWORD)
        return Failure(
            url.set(port=url.port or 5432).render_as_string(hide_password=False),
            'database "ogcache_no_such_db" does not exist',
        )
    port = free_port() if request.param == "refused" else silent_port
    cause = "connection refused" if request.param == "refused" else "no answer within 1 s"
    return Failure(f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/ogcache", cause)


def _run(
    arguments: list[str], database_url: str, directory: Path, extra: dict[str, str] | None = None
) -> tuple[int, str, float]:
    """Exit code, everything printed, seconds taken."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OGCACHE_")}
    environment.update(extra or {})
    environment.update(
        OGCACHE_DATABASE_URL=database_url,
        OGCACHE_DATABASE_CONNECT_TIMEOUT="1",
        OGCACHE_JWT_SECRET="database-failure-tests-secret-0123456789",
        OGCACHE_LOG_LEVEL="WARNING",
        COLUMNS="80",  # the width a terminal wraps at; the line must still be one
    )
    started = time.monotonic()
    finished = subprocess.run(
        [OGCACHE, *arguments],
        cwd=directory,  # no .env or demo secrets of this checkout
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return finished.returncode, finished.stdout + finished.stderr, time.monotonic() - started


@pytest.mark.parametrize(
    "command",
    [["db", "upgrade"], ["token", "issue", "--user", "web_demo_alice"], ["demo", "--rounds", "10"]],
    ids=["db-upgrade", "token-issue", "demo"],
)
def test_a_command_says_in_one_line_why_the_database_cannot_be_reached(
    command: list[str], failure: Failure, tmp_path: Path, start_up: float
) -> None:
    code, printed, elapsed = _run(command, failure.url, tmp_path)
    assert code == 1
    assert printed.splitlines() == [
        f"error: {failure.place}{failure.cause} (check OGCACHE_DATABASE_URL)"
    ]
    assert PASSWORD not in printed
    assert elapsed < start_up + SLACK


def test_serve_logs_one_line_and_exits_non_zero(
    failure: Failure, tmp_path: Path, start_up: float
) -> None:
    code, printed, elapsed = _run(["serve", "--port", str(free_port())], failure.url, tmp_path)
    assert code != 0
    assert "Traceback" not in printed
    assert PASSWORD not in printed
    reasons = [line for line in printed.splitlines() if "cannot reach the database" in line]
    assert len(reasons) == 1
    assert reasons[0].endswith(f"{failure.place}{failure.cause} (check OGCACHE_DATABASE_URL)")
    assert len(printed.splitlines()) <= 2  # with uvicorn's "Application startup failed."
    assert elapsed < start_up + SLACK


def test_serve_demo_says_it_in_one_line_too(tmp_path: Path, start_up: float) -> None:
    """``serve --demo`` migrates and seeds in the command itself, before uvicorn starts."""
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/ogcache"
    code, printed, elapsed = _run(["serve", "--demo", "--port", str(free_port())], url, tmp_path)
    assert code == 1
    assert printed.splitlines()[-1] == (
        f"error: cannot reach the database ogcache on {url.split('@')[1].split('/')[0]}: "
        "connection refused (check OGCACHE_DATABASE_URL)"
    )
    assert "Traceback" not in printed
    assert elapsed < start_up + SLACK


def test_errors_other_than_connecting_pass_through_unchanged() -> None:
    """A missing row or a refused statement is reported as before, not as unreachable."""
    with (
        pytest.raises(NotFoundError, match="no such user"),
        explained_failures("postgresql://u:p@db.example:5432/app", 1.0),
    ):
        raise NotFoundError("no such user")


def test_a_cache_that_cannot_be_reached_is_not_called_the_database(tmp_path: Path) -> None:
    """Redis's refused socket is in its error's chain too: it must stay the cache's error."""
    database = f"sqlite:///{tmp_path / 'ok.db'}"
    environment = {"OGCACHE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    code, printed, _ = _run(["cache", "clear", "--yes"], database, tmp_path, environment)
    assert code == 1
    assert printed.startswith("error: ")
    assert "redis" in printed.lower()
    assert "database" not in printed
