"""Find or start the Redis and PostgreSQL servers the tests talk to.

Order of preference, for each server: the URL in ``OGCACHE_TEST_REDIS_URL`` /
``OGCACHE_TEST_DATABASE_URL``; the default local server (127.0.0.1:6379, 127.0.0.1:5432);
a throwaway server started from the installed binaries on a free loopback port. If none of
these works the run stops with a message that says what to install.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The server helpers shared with bench/ live in support.servers; re-exported for the tests.
from support.servers import (
    RedisProcess,
    ServerUnavailable,
    free_port,
    port_open,
    redis_answers,
    start_redis,
    wait_for_port,
)

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_REDIS_URL",
    "PostgresProcess",
    "RedisProcess",
    "ServerUnavailable",
    "Servers",
    "free_port",
    "port_open",
    "redis_answers",
    "start_redis",
    "stop_session",
    "wait_for_port",
]


def stop_session(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started (a
    server's workers): SIGTERM to the group, SIGKILL after 10 s (a worker still importing
    ignores SIGTERM)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class PostgresProcess:
    """A throwaway PostgreSQL cluster in a temporary directory."""

    port: int
    directory: Path
    bin_dir: Path
    user: str | None

    def _run(self, *args: str) -> None:
        command = list(args)
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> PostgresProcess:
        data = self.directory / "data"
        if self.user is not None:
            shutil.chown(self.directory, user=self.user)
        self._run(str(self.bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust")
        self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self.directory / "log"),
            "-o", f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-w", "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.directory / "data"),
            "-m",
            "immediate",
            "stop",
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def _postgres_bin_dir() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


class Servers:
    """The servers of one test session; throwaway ones are stopped by :meth:`close`."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ogcache-test-")
        self.tmp = Path(self._tmp.name)
        self._redis: str | None = None
        self._database: str | None = None
        self._owned_redis: RedisProcess | None = None
        self._owned_postgres: PostgresProcess | None = None

    def redis_url(self) -> str:
        if self._redis is None:
            self._redis = self._find_redis()
        return self._redis

    def _find_redis(self) -> str:
        configured = os.environ.get("OGCACHE_TEST_REDIS_URL")
        if configured:
            if not redis_answers(configured):
                raise ServerUnavailable(
                    f"OGCACHE_TEST_REDIS_URL={configured} does not answer PING; start that "
                    "Redis or unset the variable to use a local or throwaway one"
                )
            return configured
        if redis_answers(DEFAULT_REDIS_URL):
            return DEFAULT_REDIS_URL
        self._owned_redis = start_redis(self.tmp)
        return self._owned_redis.url

    def database_url(self) -> str:
        if self._database is None:
            self._database = self._find_postgres()
        return self._database

    def _find_postgres(self) -> str:
        configured = os.environ.get("OGCACHE_TEST_DATABASE_URL")
        if configured:
            return configured
        if port_open("127.0.0.1", 5432):
            return DEFAULT_DATABASE_URL
        bin_dir = _postgres_bin_dir()
        if bin_dir is None:
            raise ServerUnavailable(
                "PostgreSQL is not running on 127.0.0.1:5432 and initdb is not installed: "
                "install PostgreSQL (Debian/Ubuntu: apt-get install postgresql) or set "
                "OGCACHE_TEST_DATABASE_URL=postgresql://user@host:port/db"
            )
        user = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres").pw_name
            except KeyError as exc:
                raise ServerUnavailable(
                    "running as root and there is no 'postgres' user to run a throwaway "
                    "PostgreSQL as; set OGCACHE_TEST_DATABASE_URL instead"
                ) from exc
        directory = self.tmp / "pg"
        directory.mkdir()
        self._owned_postgres = PostgresProcess(free_port(), directory, bin_dir, user).start()
        return self._owned_postgres.url

    def close(self) -> None:
        if self._owned_redis is not None:
            self._owned_redis.stop()
        if self._owned_postgres is not None:
            self._owned_postgres.stop()
        self._tmp.cleanup()
