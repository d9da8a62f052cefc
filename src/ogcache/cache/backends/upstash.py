"""Upstash Redis over its REST API: the same commands as the Redis backend, as JSON over HTTPS.

Protocol (https://upstash.com/docs/redis/features/restapi), and what this module uses of it:

* ``POST {url}`` with a JSON array ``["SET", "key", "value", "PX", "1000"]`` runs one
  command; ``POST {url}/pipeline`` with an array of such arrays runs them in order (not
  atomically) in one HTTP request. Authentication is ``Authorization: Bearer <token>``.
* A reply is ``{"result": ...}`` or ``{"error": "..."}`` (HTTP 400 for a failed command, 401
  for a bad token); a pipeline answers an array of those, one per command.
* Every request carries ``Upstash-Encoding: base64``, so every string in a reply is base64 of
  the exact bytes Redis holds (except a bare ``"OK"``), and binary values come back intact.
* Every request carries the ``Upstash-Sync-Token`` of the latest reply, so on a database with
  read replicas this process reads its own writes (and invalidations).

Requests are JSON, so an argument is a string. Values that are valid UTF-8 (everything the
cache front end writes: JSON envelopes, leases) are sent as JSON strings, which Upstash stores
as exactly those UTF-8 bytes. Any other bytes are sent base64-encoded inside a Lua script
(``EVAL``) whose first lines decode the marked arguments before running the command, so
arbitrary bytes are stored exactly too; that path costs a script run, and only values that are
not UTF-8 take it. ``add`` and ``replace_if`` are the Redis backend's own Lua scripts
(``EVALSHA``, falling back to ``EVAL`` once when Upstash does not know the script yet).

One :class:`httpx.AsyncClient` keeps connections alive in a bounded pool; every request is
bounded by the connect, read and pool timeouts, and is never retried. Every failure becomes
:class:`BackendError`: transport errors, HTTP statuses, ``{"error"}`` and replies of the wrong
shape in :meth:`UpstashBackend._exchange`, the one place requests are sent; a result of the
wrong type in the decoders (``_value``, ``_integer``, ``_scanned``). No message carries the
token, and httpx's exception (whose request holds it) is not chained.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit

try:
    import httpx
except ModuleNotFoundError as exc:  # an optional dependency of the engine
    raise ModuleNotFoundError(
        "the Upstash backend needs httpx: pip install 'ogcache[upstash]'", name=exc.name
    ) from exc
import orjson

from ogcache.cache.backend import BackendInfo, BackendOptions, KeyCount
from ogcache.cache.backends.redis import _ADD, _REPLACE_IF, _milliseconds, escape_glob
from ogcache.cache.exceptions import BackendError, CacheConfigurationError

__all__ = ["UpstashBackend"]

# Prepended to a script whose last ARGV lists (comma-separated) the positions of arguments
# sent base64-encoded: it removes that list and decodes those arguments in place, so the
# script body below it sees the original bytes. Plain Lua 5.1: no library beyond string.
_DECODE_ARGS: Final = """
local alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local digits = {}
for n = 1, 64 do digits[string.byte(alphabet, n)] = n - 1 end
for position in string.gmatch(table.remove(ARGV), '%d+') do
  local i = tonumber(position)
  local text, out, value, bits = ARGV[i], {}, 0, 0
  for n = 1, #text do
    local digit = digits[string.byte(text, n)]
    if digit then
      value = value * 64 + digit
      bits = bits + 6
      if bits >= 8 then
        bits = bits - 8
        local byte = math.floor(value / 2 ^ bits)
        out[#out + 1] = string.char(byte)
        value = value - byte * 2 ^ bits
      end
    end
  end
  ARGV[i] = table.concat(out)
end
"""

_SET: Final = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_HEADERS_BASE64: Final = {"Upstash-Encoding": "base64", "Content-Type": "application/json"}
# Read-your-writes on databases with read replicas: each reply carries the primary's state, and
# a request carrying it is served by a replica only once it has caught up.
_SYNC_HEADER: Final = "Upstash-Sync-Token"


class _Script:
    """A Lua script in two forms: as is, and behind ``_DECODE_ARGS`` for binary arguments."""

    def __init__(self, body: str) -> None:
        self.text = body
        self.sha = _sha1(body)
        self.binary_text = _DECODE_ARGS + body


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


_ADD_SCRIPT: Final = _Script(_ADD)
_REPLACE_IF_SCRIPT: Final = _Script(_REPLACE_IF)
_SET_SCRIPT: Final = _Script(_SET)


class _NoScript(BackendError):
    """``EVALSHA`` named a script Upstash does not hold (yet)."""


def _utf8(value: bytes) -> str | None:
    """``value`` as text when it is valid UTF-8 (sent as is), else ``None`` (sent base64)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _arguments(values: Sequence[bytes | str]) -> tuple[list[str], str]:
    """Script arguments as strings, and the positions (``"1,3"``) of the base64 ones."""
    out: list[str] = []
    encoded: list[str] = []
    for position, value in enumerate(values, start=1):
        if isinstance(value, str):
            out.append(value)
            continue
        text = _utf8(value)
        if text is None:
            out.append(base64.b64encode(value).decode("ascii"))
            encoded.append(str(position))
        else:
            out.append(text)
    return out, ",".join(encoded)


def _value(result: Any) -> bytes | None:
    """A string reply (base64, or the bare ``"OK"`` Upstash leaves unencoded) as bytes."""
    if result is None:
        return None
    if not isinstance(result, str):
        raise BackendError(f"upstash: expected a string reply, got {type(result).__name__}")
    if result == "OK":
        return b"OK"
    try:
        return base64.b64decode(result, validate=True)
    except binascii.Error as exc:
        raise BackendError(f"upstash: a reply is not base64 ({exc})") from None


def _integer(result: Any) -> int:
    if isinstance(result, bool) or not isinstance(result, int):
        raise BackendError(f"upstash: expected an integer reply, got {type(result).__name__}")
    return result


def _key_text(key: bytes) -> str:
    text = _utf8(key)
    if text is None:
        raise BackendError("upstash: a key under the prefix is not UTF-8 and cannot be named")
    return text


class UpstashBackend:
    """An Upstash Redis database through its REST API (``https://…upstash.io`` and a token).

    ``timeout`` bounds each read and write of a request, ``connect_timeout`` the TCP and TLS
    set-up, ``pool_timeout`` the wait for one of ``max_connections`` kept-alive connections.
    ``scan_batch`` is the SCAN ``COUNT``. ``transport`` replaces httpx's (tests only; the
    pool limits then do not apply).
    """

    name = "upstash"

    def __init__(
        self,
        url: str,
        token: str,
        options: BackendOptions | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = options or BackendOptions()
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise CacheConfigurationError(
                "upstash backend: the REST URL must be https://<host> (UPSTASH_REDIS_REST_URL)"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise CacheConfigurationError(
                "upstash backend: the REST URL must not carry a query, fragment or credentials; "
                "give the token separately (UPSTASH_REDIS_REST_TOKEN)"
            )
        if not token or token != token.strip():
            raise CacheConfigurationError(
                "upstash backend: the token is empty or has surrounding whitespace "
                "(UPSTASH_REDIS_REST_TOKEN)"
            )
        self._url = url.rstrip("/")
        self._host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        self._token = token
        self._scan_batch = options.scan_batch
        self._sync_token: str | None = None
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}", **_HEADERS_BASE64},
            timeout=httpx.Timeout(
                options.timeout, connect=options.connect_timeout, pool=options.pool_timeout
            ),
            limits=httpx.Limits(
                max_connections=options.max_connections,
                max_keepalive_connections=options.max_connections,
            ),
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )

    # --- the one round trip, and the one place errors are translated ------------------------

    async def _exchange(self, operation: str, commands: list[list[str]], *, batch: bool) -> Any:
        """Send one command (``batch=False``: its result) or a pipeline (a list of results).

        Raises :class:`BackendError` for anything but a well-formed success, naming the
        operation and never the token.
        """
        try:
            body = orjson.dumps(commands if batch else commands[0])
            response = await self._client.post(
                f"{self._url}/pipeline" if batch else self._url,
                content=body,
                headers={_SYNC_HEADER: self._sync_token} if self._sync_token else None,
            )
            status = response.status_code
            self._sync_token = response.headers.get(_SYNC_HEADER, self._sync_token)
            try:
                reply = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                reply = None
        except orjson.JSONEncodeError as exc:
            raise BackendError(f"upstash {operation}: cannot encode the request: {exc}") from exc
        except (httpx.HTTPError, OSError) as exc:
            detail = str(exc).replace(self._token, "***") or "no detail"
            raise BackendError(
                f"upstash {operation} failed: {type(exc).__name__}: {detail}"
            ) from None
        if status == 401:
            raise BackendError(
                f"upstash {operation} failed: HTTP 401, the token was refused "
                "(check UPSTASH_REDIS_REST_TOKEN)"
            )
        if isinstance(reply, dict) and "error" in reply:
            raise self._command_error(operation, reply["error"])
        if status != 200:
            raise BackendError(f"upstash {operation} failed: HTTP {status}")
        if not batch:
            reply = [reply]
        if not isinstance(reply, list) or len(reply) != len(commands):
            raise BackendError(f"upstash {operation}: the reply does not match the request")
        results = []
        for item in reply:
            if isinstance(item, dict) and "error" in item:
                raise self._command_error(operation, item["error"])
            if not isinstance(item, dict) or "result" not in item:
                raise BackendError(f"upstash {operation}: the reply is not the REST protocol")
            results.append(item["result"])
        return results if batch else results[0]

    def _command_error(self, operation: str, error: Any) -> BackendError:
        message = str(error).replace(self._token, "***")
        kind = _NoScript if message.startswith("NOSCRIPT") else BackendError
        return kind(f"upstash {operation} failed: {message}")

    async def _call(self, operation: str, *command: str) -> Any:
        return await self._exchange(operation, [list(command)], batch=False)

    async def _script(
        self, operation: str, script: _Script, key: str, values: Sequence[bytes | str]
    ) -> Any:
        args, encoded = _arguments(values)
        if encoded:  # some value is not UTF-8: the script that decodes it first
            return await self._call(operation, "EVAL", script.binary_text, "1", key, *args, encoded)
        try:
            return await self._call(operation, "EVALSHA", script.sha, "1", key, *args)
        except _NoScript:  # first use on this database: EVAL also caches it for EVALSHA
            return await self._call(operation, "EVAL", script.text, "1", key, *args)

    # --- the CacheBackend commands ------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return _value(await self._call("GET", "GET", key))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        results = await self._call("MGET", "MGET", *keys)
        if not isinstance(results, list) or len(results) != len(keys):
            raise BackendError("upstash MGET: the reply does not match the keys")
        return [_value(result) for result in results]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._exchange("SET", [self._set_command(key, value, ttl)], batch=False)

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        if not items:
            return
        commands = [self._set_command(key, value, ttl) for key, value, ttl in items]
        await self._exchange("SET (pipeline)", commands, batch=True)

    @staticmethod
    def _set_command(key: str, value: bytes, ttl: float) -> list[str]:
        args, encoded = _arguments([value, str(_milliseconds(ttl))])
        if not encoded:
            return ["SET", key, args[0], "PX", args[1]]
        return ["EVAL", _SET_SCRIPT.binary_text, "1", key, *args, encoded]

    async def add(self, key: str, value: bytes, ttl: float) -> bytes | None:
        existing = await self._script(
            "add (Lua)", _ADD_SCRIPT, key, [value, str(_milliseconds(ttl))]
        )
        return _value(existing)

    async def replace_if(
        self, key: str, expected: bytes, offset: int, value: bytes | None, ttl: float
    ) -> bool:
        if not expected:
            return False  # an empty comparison would match anything
        replaced = await self._script(
            "replace_if (Lua)",
            _REPLACE_IF_SCRIPT,
            key,
            [expected, str(offset), value or b"", str(_milliseconds(ttl))],
        )
        return bool(_integer(replaced))

    async def delete(self, key: str) -> bool:
        return bool(_integer(await self._call("UNLINK", "UNLINK", key)))

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        return _integer(await self._call("UNLINK", "UNLINK", *keys))

    async def delete_prefix(self, prefix: str) -> int:
        """SCAN, then UNLINK what it found together with the next SCAN: one request a batch."""
        pattern = escape_glob(prefix) + "*"
        scan = ["SCAN", "0", "MATCH", pattern, "COUNT", str(self._scan_batch)]
        cursor, keys = self._scanned(await self._call("SCAN", *scan))
        deleted = 0
        while True:
            if cursor == "0":
                if keys:
                    deleted += _integer(await self._call("UNLINK", "UNLINK", *keys))
                return deleted
            scan[1] = cursor
            if keys:
                unlinked, scanned = await self._exchange(
                    "UNLINK+SCAN", [["UNLINK", *keys], scan], batch=True
                )
                deleted += _integer(unlinked)
            else:
                scanned = await self._call("SCAN", *scan)
            cursor, keys = self._scanned(scanned)

    async def count_prefix(self, prefix: str, limit: int) -> KeyCount:
        scan = ["SCAN", "0", "MATCH", escape_glob(prefix) + "*", "COUNT", str(self._scan_batch)]
        count = 0
        examined = 0
        while True:
            cursor, keys = self._scanned(await self._call("SCAN", *scan), names=False)
            count += len(keys)
            examined += self._scan_batch
            if cursor == "0":
                return KeyCount(count, complete=True)
            if examined >= limit:
                return KeyCount(count, complete=False)
            scan[1] = cursor

    @staticmethod
    def _scanned(result: Any, *, names: bool = True) -> tuple[str, list[str]]:
        """``[cursor, [keys]]`` of a SCAN reply (the keys decoded to text only if ``names``)."""
        if not (isinstance(result, list) and len(result) == 2 and isinstance(result[1], list)):
            raise BackendError("upstash SCAN: the reply is not [cursor, keys]")
        cursor = _value(result[0])
        if cursor is None or not cursor.isdigit():
            raise BackendError("upstash SCAN: the cursor is not a number")
        if not names:
            return cursor.decode("ascii"), [""] * len(result[1])
        return cursor.decode("ascii"), [_key_text(_value(key) or b"") for key in result[1]]

    async def info(self) -> BackendInfo:
        raw = _value(await self._call("INFO memory", "INFO", "memory")) or b""
        fields: dict[str, str] = {}
        for line in raw.decode("utf-8", "replace").splitlines():
            name, colon, value = line.partition(":")
            if colon and not name.startswith("#"):
                fields[name.strip()] = value.strip()
        used = fields.get("used_memory", "")
        limit = fields.get("maxmemory", "")
        return BackendInfo(
            backend=self.name,
            memory_used_bytes=int(used) if used.isdigit() else None,
            memory_limit_bytes=(int(limit) or None) if limit.isdigit() else None,
            eviction_policy=fields.get("maxmemory_policy") or None,
        )

    async def ping(self) -> None:
        await self._call("PING", "PING")

    async def close(self) -> None:
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"UpstashBackend({self._host})"
