"""Find or start the Redis and PostgreSQL servers the tests talk to.

Order of preference, for each server: the URL in ``OGCACHE_TEST_REDIS_URL`` /
``OGCACHE_TEST_DATABASE_URL``; the default local server (127.0.0.1:6379, 127.0.0.1:5432);
a throwaway server started from the installed binaries on a free loopback port. If none of
these works the run stops with a message that says what to install.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


class ServerUnavailable(RuntimeError):
    """No server could be found or started; the message says what to do."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_answers(url: str) -> bool:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port, timeout=0.2):
            return
        time.sleep(0.05)
    raise ServerUnavailable(f"server on {host}:{port} did not start within {timeout:.0f} s")


@dataclass
class RedisProcess:
    """A redis-server of the tests' own on a loopback port: stop it, hang it, restart it."""

    port: int
    directory: Path
    extra_args: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerUnavailable(
                "redis-server is not installed: install it (Debian/Ubuntu: "
                "apt-get install redis-server) or set OGCACHE_TEST_REDIS_URL"
            )
        self.process = subprocess.Popen(
            [
                binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def start_redis(directory: Path, extra_args: Sequence[str] = ()) -> RedisProcess:
    return RedisProcess(port=free_port(), directory=directory, extra_args=extra_args).start()


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
