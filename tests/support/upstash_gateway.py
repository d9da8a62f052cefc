"""A stand-in for Upstash's REST API over a real local Redis, for the tests.

It serves the part of the protocol the Upstash backend uses (see ``docs/upstash.md``):

* ``POST /`` with a JSON array ``["CMD", "arg", ...]`` answers ``{"result": ...}``, or
  ``{"error": "..."}`` with HTTP 400 when Redis refuses the command or the body is not a
  command;
* ``POST /pipeline`` with an array of such arrays runs them in order, not atomically, in one
  Redis pipeline, and answers an array of ``{"result"}`` / ``{"error"}`` with HTTP 200;
* every executed request's reply carries a new ``Upstash-Sync-Token`` header (a counter);
* ``Authorization: Bearer <token>`` is required (HTTP 401 ``{"error": "Unauthorized"}``
  otherwise); other methods get 405, other paths 404;
* with ``Upstash-Encoding: base64`` every string in a result is base64 of Redis's bytes,
  except the status reply ``OK``; without it strings are UTF-8 text with U+FFFD for invalid
  bytes.

Arguments are JSON strings (stored as their UTF-8 bytes) or numbers. The gateway speaks RESP2
to Redis itself (a few lines below, over a small connection pool), so replies and error texts
are exactly Redis's, with no client library's conversions.

The gateway counts requests per path and records each command's name and the encoding asked
for, so tests can assert on round trips; ``delay`` holds every request (a hung server) and
``fail`` answers a command name with an error.

It runs uvicorn in a background thread on a loopback port of its own.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class UpstashGateway:
    def __init__(self, redis_url: str, token: str) -> None:
        self.redis_url = redis_url
        self.token = token
        self.requests: Counter[str] = Counter()
        self.commands: list[str] = []
        self.encodings: list[str | None] = []
        self.sync_tokens: list[str | None] = []  # the Upstash-Sync-Token of each request
        self._writes = 0
        self.delay = 0.0
        self.fail: dict[str, str] = {}
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget the counts, the delay and the injected failures."""
        self.requests.clear()
        self.commands.clear()
        self.encodings.clear()
        self.sync_tokens.clear()
        self.delay = 0.0
        self.fail.clear()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> UpstashGateway:
        app = Starlette(
            routes=[
                Route("/", self._command, methods=["POST"]),
                Route("/pipeline", self._pipeline, methods=["POST"]),
            ],
            lifespan=self._lifespan,
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            ws="none",
            http="httptools",
            timeout_graceful_shutdown=1,  # a request held by ``delay`` does not hold up stop()
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Upstash test gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._socket.close()

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for _, writer in self._idle:
                writer.close()
            self._idle.clear()

    # --- RESP2 to Redis ----------------------------------------------------------------------

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        parts = urlsplit(self.redis_url)
        reader, writer = await asyncio.open_connection(
            parts.hostname or "127.0.0.1", parts.port or 6379
        )
        setup = []
        if parts.password:
            setup.append(["AUTH", parts.username or "default", parts.password])
        database = parts.path.strip("/") or "0"
        if database != "0":
            setup.append(["SELECT", database])
        if setup:
            writer.write(b"".join(_encode(command) for command in setup))
            for _ in setup:
                reply = await _read(reader)
                if isinstance(reply, _Error):
                    raise RuntimeError(f"gateway cannot set up its Redis connection: {reply}")
        return reader, writer

    async def _redis(self, commands: list[list[Any]]) -> list[Any]:
        """Send ``commands`` in one write and read their replies (a pipeline, not atomic)."""
        reader, writer = self._idle.pop() if self._idle else await self._connect()
        try:
            writer.write(b"".join(_encode(command) for command in commands))
            await writer.drain()
            replies = [await _read(reader) for _ in commands]
        except BaseException:
            writer.close()
            raise
        self._idle.append((reader, writer))
        return replies

    # --- the protocol ----------------------------------------------------------------------

    async def _admit(self, request: Request) -> tuple[bool, Any] | JSONResponse:
        """Count, delay, authenticate and parse a request; a response when it is refused."""
        self.requests[request.url.path] += 1
        encoding = request.headers.get("upstash-encoding")
        self.encodings.append(encoding)
        self.sync_tokens.append(request.headers.get("upstash-sync-token"))
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "ERR the body is not JSON"}, status_code=400)
        return (encoding or "").lower() == "base64", body

    async def _command(self, request: Request) -> JSONResponse:
        admitted = await self._admit(request)
        if isinstance(admitted, JSONResponse):
            return admitted
        base64_wanted, body = admitted
        if not _is_command(body):
            return JSONResponse({"error": "ERR a command is a JSON array"}, status_code=400)
        self.commands.append(str(body[0]).upper())
        reply = await self._run(body, base64_wanted)
        return self._respond(reply, status_code=400 if "error" in reply else 200)

    async def _pipeline(self, request: Request) -> JSONResponse:
        admitted = await self._admit(request)
        if isinstance(admitted, JSONResponse):
            return admitted
        base64_wanted, body = admitted
        if not (isinstance(body, list) and body and all(_is_command(c) for c in body)):
            return JSONResponse(
                {"error": "ERR a pipeline is a JSON array of commands"}, status_code=400
            )
        self.commands.extend(str(command[0]).upper() for command in body)
        injected = [self.fail.get(str(command[0]).upper()) for command in body]
        sent = [command for command, error in zip(body, injected, strict=True) if error is None]
        results = iter(await self._redis(sent) if sent else [])
        replies = [
            {"error": error} if error is not None else _reply(next(results), base64_wanted)
            for error in injected
        ]
        return self._respond(replies)

    def _respond(self, content: Any, status_code: int = 200) -> JSONResponse:
        """A reply with a fresh ``Upstash-Sync-Token`` (here: a counter of executed requests)."""
        self._writes += 1
        headers = {"Upstash-Sync-Token": f"sync-{self._writes}"}
        return JSONResponse(content, status_code=status_code, headers=headers)

    async def _run(self, command: list[Any], base64_wanted: bool) -> dict[str, Any]:
        injected = self.fail.get(str(command[0]).upper())
        if injected is not None:
            return {"error": injected}
        (result,) = await self._redis([command])
        return _reply(result, base64_wanted)


class _Status(bytes):
    """A RESP status reply (``+OK``), as opposed to a bulk string."""


class _Error(str):
    """A RESP error reply (``-ERR ...``), its text as Redis sent it."""


def _encode(command: list[Any]) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for argument in command:
        data = argument.encode() if isinstance(argument, str) else str(argument).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


async def _read(reader: asyncio.StreamReader) -> Any:
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return _Status(rest)
    if kind == b"-":
        return _Error(rest.decode("utf-8", "replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        length = int(rest)
        return None if length < 0 else (await reader.readexactly(length + 2))[:-2]
    if kind == b"*":
        length = int(rest)
        return None if length < 0 else [await _read(reader) for _ in range(length)]
    raise RuntimeError(f"gateway: unexpected RESP reply {line!r}")


def _reply(result: Any, base64_wanted: bool) -> dict[str, Any]:
    if isinstance(result, _Error):
        return {"error": str(result)}
    return {"result": _to_json(result, base64_wanted)}


def _is_command(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and isinstance(value[0], str)
        and all(isinstance(a, str | int | float) and not isinstance(a, bool) for a in value)
    )


def _to_json(result: Any, base64_wanted: bool) -> Any:
    if isinstance(result, bytes):
        if not base64_wanted:
            return result.decode("utf-8", "replace")
        if isinstance(result, _Status) and result == b"OK":
            return "OK"
        return base64.b64encode(result).decode("ascii")
    if isinstance(result, _Error):
        return str(result)
    if isinstance(result, list):
        return [_to_json(item, base64_wanted) for item in result]
    return result  # an integer or None
