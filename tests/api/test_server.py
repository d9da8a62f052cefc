"""Request head and read-time limits of ``ogcache serve``, over raw sockets to a real process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import free_port, wait_for_port

pytestmark = pytest.mark.slow

MAX_HEADER_BYTES = 16 * 1024
READ_TIMEOUT = 2.0
# Slack for timing on a busy machine: an answer due after READ_TIMEOUT may take this long.
PATIENCE = READ_TIMEOUT * 10
ADMIN_TOKEN = "server-test-admin-token-0123456789"


class Server:
    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.process = process

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=PATIENCE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def peak_memory_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmHWM:")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _serve(tmp_path_factory.mktemp("server")) as started:
        yield started


@contextlib.contextmanager
def _serve(directory: Path, *options: str) -> Iterator[Server]:
    port = free_port()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("OGCACHE_")
    }
    environment.update(
        OGCACHE_DATABASE_URL=f"sqlite:///{directory / 'serve.db'}",
        OGCACHE_LOG_LEVEL="WARNING",
        OGCACHE_ADMIN_TOKEN=ADMIN_TOKEN,
        OGCACHE_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
        OGCACHE_REQUEST_READ_TIMEOUT=str(READ_TIMEOUT),
    )
    command = [str(Path(sys.executable).parent / "ogcache"), "serve", "--demo"]
    process = subprocess.Popen(
        [*command, "--port", str(port), *options],
        cwd=directory,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield Server(port, process)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _request(path: str = "/healthz", *, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (Content-Length framed); raise ConnectionError if the server closed.

    Reads no byte past the response: a pipelined answer that arrived in the same segment
    stays in the socket for the next call."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)  # the head byte by byte: a few hundred calls, never too far
        if not chunk:
            raise ConnectionError(f"closed before a response; got {data!r}")
        data += chunk
    head, body = data[:-4], b""
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise ConnectionError("closed in the middle of a response body")
        body += chunk
    return int(status_line.split()[1]), headers, body


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed the connection (an end of file or a reset)."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def _error(body: bytes) -> dict[str, str]:
    error: dict[str, str] = json.loads(body)["error"]
    return error


def _padded(size: int) -> bytes:
    """A request whose head is exactly ``size`` bytes."""
    bare = _request(headers={"X-Pad": ""})
    return _request(headers={"X-Pad": "a" * (size - len(bare))})


def test_a_head_over_the_limit_is_answered_431_json(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(_padded(17 * 1024))
        status, headers, body = _read_response(sock)
        assert status == 431
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        error = _error(body)
        assert error["code"] == "headers_too_large"
        assert "OGCACHE_MAX_HEADER_BYTES" in error["message"]
        assert _closed(sock)


def test_bytes_that_are_not_http_are_answered_400_json(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, headers, body = _read_response(sock)
        assert status == 400
        assert headers["content-type"] == "application/json"
        assert _error(body)["code"] == "bad_request"
        assert _closed(sock)


def test_a_head_of_exactly_the_limit_is_served_and_one_byte_more_is_not(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(_padded(MAX_HEADER_BYTES))
        status, _, body = _read_response(sock)
        assert status == 200, body
    with server.connect() as sock:
        sock.sendall(_padded(MAX_HEADER_BYTES + 1))
        assert _read_response(sock)[0] == 431


@pytest.mark.parametrize("size", [1024 * 1024, 32 * 1024 * 1024])
def test_a_huge_head_is_refused_without_buffering_it(server: Server, size: int) -> None:
    before = server.peak_memory_kib()
    with server.connect() as sock:
        # Many headers, so that the parser has complete ones to report, and one long value.
        head = _request(headers={f"X-H{i}": "v" * 100 for i in range(100)})[:-2]
        head += b"X-Long: " + b"a" * (size - len(head))
        # The server may stop reading: fine, as long as the answer came first.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
        status, _, body = _read_response(sock)
        assert status == 431
        assert _error(body)["code"] == "headers_too_large"
    # The process never held the head: its peak memory grew far less than the head's size.
    assert server.peak_memory_kib() - before < 8 * 1024


def test_a_head_sent_a_byte_a_second_is_answered_408(server: Server) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        answer = b""
        for byte in _request():
            sock.sendall(bytes([byte]))
            sock.settimeout(1.0)
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            break
        sock.settimeout(PATIENCE)
        assert answer, "the server kept waiting for the head"
        assert time.monotonic() - started < PATIENCE
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b'"code":"request_timeout"' in answer
        assert b"OGCACHE_REQUEST_READ_TIMEOUT" in answer


def test_a_stalled_body_is_answered_408_and_closed(server: Server) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /api/cache HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
            b"Content-Length: 1000\r\n\r\n" + b" " * 10
        )
        status, _, body = _read_response(sock)
        assert time.monotonic() - started < PATIENCE
        assert status == 408
        assert _error(body)["code"] == "request_timeout"
        assert _closed(sock)


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        assert _closed(sock)
        elapsed = time.monotonic() - started
        assert READ_TIMEOUT * 0.5 < elapsed < PATIENCE


def test_keep_alive_and_pipelining_still_work(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(_request())
        assert _read_response(sock)[0] == 200
        sock.sendall(_request("/api/menu"))
        assert _read_response(sock)[0] == 200
        # Two requests in one write: both answered, in order.
        sock.sendall(_request("/api/menu") + _request())
        assert _read_response(sock)[0] == 200
        status, _, body = _read_response(sock)
        assert status == 200
        assert json.loads(body)["status"] == "ok"


def test_a_large_body_within_the_limits_is_read(server: Server) -> None:
    payload = b'{"action": "warmup"' + b" " * (200 * 1024) + b"}"
    with server.connect() as sock:
        sock.sendall(
            b"POST /api/cache HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )
        status, _, body = _read_response(sock)
        assert status == 200, body
        assert json.loads(body)["keysWarmed"] == 6
        # The connection stays usable.
        sock.sendall(_request())
        assert _read_response(sock)[0] == 200


def test_every_worker_process_applies_the_limits(tmp_path: Path) -> None:
    with _serve(tmp_path, "--workers", "2") as server:
        for _ in range(4):  # connections are spread over the workers
            with server.connect() as sock:
                sock.sendall(_padded(17 * 1024))
                assert _read_response(sock)[0] == 431
            with server.connect() as sock:
                sock.sendall(_request()[:-2])
                status, _, body = _read_response(sock)
                assert status == 408
                assert _error(body)["code"] == "request_timeout"


def test_a_refused_pipelined_request_does_not_cut_the_answer_before_it(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(_request() + _padded(MAX_HEADER_BYTES + 1))
        status, headers, body = _read_response(sock)
        assert status == 200
        assert json.loads(body)["status"] == "ok"
        assert headers["connection"] == "close"
        assert _closed(sock)


@pytest.fixture
def restored_limits() -> Iterator[None]:
    """The protocol's limits are per process: a test that sets them leaves them as they were."""
    from ogcache.api import httptools_protocol

    previous = httptools_protocol.set_limits(None)
    yield
    httptools_protocol.set_limits(previous)


@pytest.mark.usefixtures("restored_limits")
def test_the_server_passes_the_limits_to_the_protocol_by_import_path() -> None:
    from uvicorn.importer import import_from_string

    from ogcache.api import httptools_protocol
    from ogcache.api.server import http_protocol
    from ogcache.config import load_settings

    settings = load_settings(max_header_bytes=4096, request_read_timeout=3)
    path = http_protocol(settings)
    assert import_from_string(path) is httptools_protocol.LimitedHttpToolsProtocol
    limits = httptools_protocol.current_limits()
    assert (limits.max_header_bytes, limits.read_timeout) == (4096, 3)


class _Transport(asyncio.Transport):
    """In memory: what the protocol wrote, and whether it closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        peers = {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}
        return peers.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.mark.usefixtures("restored_limits")
async def test_a_late_pipelined_body_is_answered_408_after_the_answer_before_it() -> None:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from ogcache.api import httptools_protocol

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        # Listening for a disconnect (as a streaming response does) resumes reading.
        listener = asyncio.ensure_future(receive())
        await asyncio.sleep(0.5)
        listener.cancel()
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    httptools_protocol.configure(4096, 0.1)
    config = Config(app=app, log_level="warning", access_log=False)
    config.load()
    protocol = httptools_protocol.LimitedHttpToolsProtocol(
        config, ServerState(), {}, asyncio.get_running_loop()
    )
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"
    )
    for _ in range(100):
        if transport.closed:
            break
        await asyncio.sleep(0.05)
    assert transport.closed
    first, second = transport.written.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ")
    assert first.endswith(b"ok")
    assert second.startswith(b"408 ")
    assert b'"code":"request_timeout"' in second
