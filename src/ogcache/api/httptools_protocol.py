"""uvicorn's httptools protocol with a request-head size limit and a request read deadline.

uvicorn accepts request heads of any size (httptools buffers a header value until its end)
and waits for a slow head or body forever, so one client can hold memory and connections.
This subclass answers ``431`` when the request line and headers exceed
``OGCACHE_MAX_HEADER_BYTES`` and ``408`` when a request's head and body are not in within
``OGCACHE_REQUEST_READ_TIMEOUT`` seconds of its first byte; a connection that sends nothing
is closed after the same time. Both answers are JSON in the API's error shape and close the
connection.

The hot path pays one ``loop.time()`` and a few attribute writes per request: heads are
measured exactly only when the bytes received could exceed the limit, and one timer per
connection is re-armed only when it fires, not per request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

__all__ = ["LimitedHttpToolsProtocol", "RequestLimits", "configure", "current_limits", "set_limits"]

#: Passed to uvicorn as ``http=`` so that every ``--workers`` process imports it.
IMPORT_PATH = "ogcache.api.httptools_protocol:LimitedHttpToolsProtocol"

#: How long a refused connection still reads (and drops) what the client sends.
LINGER_SECONDS = 2.0


class RequestLimits:
    """The two limits, read once per process."""

    __slots__ = ("max_header_bytes", "read_timeout")

    def __init__(self, max_header_bytes: int, read_timeout: float) -> None:
        self.max_header_bytes = max_header_bytes
        self.read_timeout = read_timeout


_limits: RequestLimits | None = None


def configure(max_header_bytes: int, read_timeout: float) -> None:
    """Set this process's limits (the server does before it starts; tests may)."""
    set_limits(RequestLimits(max_header_bytes, read_timeout))


def set_limits(limits: RequestLimits | None) -> RequestLimits | None:
    """Set this process's limits, ``None`` to read them from the environment at first use;
    returns the ones set before, so that a caller (a test) can put them back."""
    global _limits
    previous, _limits = _limits, limits
    return previous


def current_limits() -> RequestLimits:
    """The configured limits or, in a ``--workers`` process, the ones from the environment."""
    global _limits
    if _limits is None:
        from ogcache.config import load_settings

        settings = load_settings()
        _limits = RequestLimits(settings.max_header_bytes, settings.request_read_timeout)
    return _limits


class _HeadTooLarge(Exception):
    """Raised from the parser's callback to stop parsing the rest of the data."""


class _Refusal:
    """An ASGI application that answers with a ready JSON error and closes the connection."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode("ascii")),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that enforces :class:`RequestLimits` (module docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = current_limits()
        self.max_header_bytes = limits.max_header_bytes
        self.read_timeout = limits.read_timeout
        # True while a request head is being received.
        self._reading_head = True
        # Bytes of the head counted from whole chunks that arrived after the one it began in
        # (a lower bound), and the size of the chunk it began in (with the former, an upper
        # bound): httptools does not say where in a chunk a head ends.
        self._head_bytes = 0
        self._first_chunk = 0
        self._chunk = 0
        # When the request being received must be in; None between requests.
        self._read_deadline: float | None = None
        self._read_timer: asyncio.TimerHandle | None = None
        # Set once the connection is refused while a response is still going out: further
        # data is dropped and the connection closes after that response.
        self._discard = False

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        self._read_deadline = self.loop.time() + self.read_timeout
        self._read_timer = self.loop.call_later(self.read_timeout, self._read_timer_fired)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        self._read_deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, with the head limit; parser errors get send_400_response (JSON, below).
        if self._discard:
            return
        self._unset_keepalive_if_required()
        size = len(data)
        self._chunk = size
        if self._reading_head:
            self._head_bytes += size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._head_too_large()
                return
            self._invalid_request()
            return
        except httptools.HttpParserError:
            self._invalid_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self._stop_read_timer()
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._reading_head and self._head_bytes > self.max_header_bytes:
            # An unfinished head already longer than the limit (at most one chunk more is
            # buffered than the limit allows).
            self._head_too_large()

    def _invalid_request(self) -> None:
        message = "Invalid HTTP request received."
        self.logger.warning(message)
        self.send_400_response(message)

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = 0
        self._first_chunk = self._chunk
        self._read_deadline = self.loop.time() + self.read_timeout
        if self._read_timer is None:
            self._read_timer = self.loop.call_later(self.read_timeout, self._read_timer_fired)

    def on_headers_complete(self) -> None:
        if (
            self._first_chunk + self._head_bytes > self.max_header_bytes
            and self._head_size() > self.max_header_bytes
        ):
            raise _HeadTooLarge
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._read_deadline = None
        super().on_message_complete()

    def _head_size(self) -> int:
        """The head's size as sent without optional whitespace: ``METHOD SP url SP
        HTTP/1.1 CRLF``, ``name: value CRLF`` per header, ``CRLF``."""
        size = len(self.parser.get_method()) + len(self.url) + 12 + 2
        for name, value in self.headers:
            size += len(name) + len(value) + 4
        return size

    # Refusals
    def _head_too_large(self) -> None:
        limit = self.max_header_bytes
        self._refuse(
            431,
            "headers_too_large",
            f"the request line and headers are larger than {limit} bytes "
            "(OGCACHE_MAX_HEADER_BYTES); send fewer or shorter headers",
        )

    def _read_timer_fired(self) -> None:
        self._read_timer = None
        deadline = self._read_deadline
        if deadline is None or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:
            # The server stopped reading (a pipelined request waits, or the application has
            # not taken the body yet): the client is not late; give it the full time again.
            deadline = self._read_deadline = now + self.read_timeout
        if now < deadline:
            self._read_timer = self.loop.call_later(deadline - now, self._read_timer_fired)
            return
        self._read_deadline = None
        if self._reading_head and self.scope is None:
            self.transport.close()  # connected but never sent a request: nothing to answer
            return
        cycle = self.cycle
        if not self._reading_head and cycle is not None and cycle.response_started:
            # The application answered without waiting for the whole body.
            if cycle.response_complete:
                self.transport.close()
            else:
                cycle.keep_alive = False
                self._discard = True
            return
        timeout = f"{self.read_timeout:g}"
        self._refuse(
            408,
            "request_timeout",
            f"the request was not received in full within {timeout} s "
            "(OGCACHE_REQUEST_READ_TIMEOUT); send the whole request without pauses",
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` with a JSON error and close, or, while an earlier pipelined
        response is still going out, close right after it."""
        self._stop_read_timer()
        self.logger.info("refused a request with %d: %s", status, code)
        body = orjson.dumps({"error": {"code": code, "message": message}})
        cycle = self.cycle
        if not self._reading_head and self.pipeline and self.pipeline[0][0] is cycle:
            # The late request waits behind another one's answer: answer it in its turn.
            self.pipeline[0] = (cycle, _Refusal(status, body))
            self._discard = True
            self.flow.pause_reading()
            return
        if self._reading_head and cycle is not None and not cycle.response_complete:
            # A head refused while an earlier answer goes out: close right after it.
            cycle.keep_alive = False
            self._discard = True
            self.flow.pause_reading()
            return
        if cycle is not None and not self._reading_head:
            # The request whose body is late: its application sees a disconnect.
            cycle.disconnected = True
            cycle.message_event.set()
        self._discard = True
        self.transport.write(self._error_response(status, body))
        self._close_lingering()

    def _error_response(self, status: int, body: bytes) -> bytes:
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        return b"".join(content)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP, in the API's JSON error shape."""
        body = orjson.dumps(
            {"error": {"code": "bad_request", "message": f"{msg} Send an HTTP/1.1 request."}}
        )
        self.transport.write(self._error_response(400, body))
        self.transport.close()

    def _close_lingering(self) -> None:
        """Close after the answer, reading and dropping what the client still sends for a
        moment: closing with unread data makes the kernel send a reset, and the client may
        lose the answer before it reads it (nginx's lingering close). uvicorn closes at once
        when the client closes its side."""
        transport = self.transport
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_SECONDS, transport.close)

    def _stop_read_timer(self) -> None:
        self._read_deadline = None
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
