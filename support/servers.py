"""Start the servers the tests and the benchmarks run against, on free loopback ports.

Shared by ``tests/`` and ``bench/`` (neither imports the other): a redis-server of one's own
that can be stopped, hung (SIGSTOP) and restarted, free ports, waiting for a port to open.
Not part of the ``ogcache`` package.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "RedisProcess",
    "ServerUnavailable",
    "free_port",
    "port_open",
    "redis_answers",
    "start_redis",
    "wait_for_port",
]


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
