"""A TCP proxy, in a process of its own, that delays a server's replies: a slow Redis.

Every chunk the upstream server sends is held for the current delay before it is passed on
(requests go through at once, so the server still executes every command it is sent, in
order; only the answers come late, like a Redis far away or stuck in a slow command). The
delay can be changed while connections are open; it applies to the next chunk of each.

Run on its own (``python support/latency_proxy.py --upstream 127.0.0.1:6379``) it prints
``listening <port>`` and then reads commands on stdin, one a line: ``delay <seconds>``
(answered ``ok``) and ``quit``. :class:`LatencyProxy` starts and drives it from a test or a
benchmark; a separate process keeps its work out of the measuring process's interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class _Proxy:
    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self.upstream = upstream
        self.delay = delay
        self._connections: set[asyncio.StreamWriter] = set()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if delayed and self.delay > 0:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()  # upstream down: refuse, as the server itself would
            return
        self._connections.update((client_w, upstream_w))
        try:
            await asyncio.gather(
                self._pump(client_r, upstream_w, delayed=False),
                self._pump(upstream_r, client_w, delayed=True),
            )
        finally:
            self._connections.difference_update((client_w, upstream_w))


async def _serve(upstream: tuple[str, int], port: int, delay: float) -> None:
    proxy = _Proxy(upstream, delay)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", port)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    async with server:
        while line := (await commands.readline()).decode().strip():
            verb, _, argument = line.partition(" ")
            if verb == "quit":
                break
            if verb == "delay":
                proxy.delay = max(0.0, float(argument))
                print("ok", flush=True)
            else:
                print(f"error unknown command {verb!r}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--upstream", required=True, help="host:port of the server")
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: any free one)")
    parser.add_argument("--delay", type=float, default=0.0, help="initial delay, seconds")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve((host or "127.0.0.1", int(port)), args.port, args.delay))


@dataclass
class LatencyProxy:
    """The proxy's process, in front of ``upstream_port`` on loopback."""

    upstream_port: int
    delay: float = 0.0
    port: int = 0
    process: subprocess.Popen[str] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LatencyProxy:
        self.process = subprocess.Popen(
            [
                sys.executable, str(Path(__file__).resolve()),
                "--upstream", f"127.0.0.1:{self.upstream_port}",
                "--port", str(self.port),
                "--delay", str(self.delay),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        line = self._read_line()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"latency proxy did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def _read_line(self) -> str:
        assert self.process is not None
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        return stdout.readline().strip()

    def set_delay(self, seconds: float) -> None:
        """Delay every reply chunk from now on by ``seconds`` (0: pass them at once)."""
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(f"delay {seconds}\n")
        self.process.stdin.flush()
        answer = self._read_line()
        if answer != "ok":
            raise RuntimeError(f"latency proxy refused the delay: {answer!r}")
        self.delay = seconds

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self.process = None


if __name__ == "__main__":
    main()
