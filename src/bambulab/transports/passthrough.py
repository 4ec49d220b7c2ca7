"""HTTP/1.1 pass-through for the cloud API proxy: raw requests over a lean keep-alive pool.

Why not :mod:`bambulab.transports.http` (httpx2)? A proxy sends every request as it came - any
method, the raw query, any body, streamed both ways - and does so under load. httpx2's pool
probes every idle connection's socket on each request, which at twenty concurrent requests costs
more than the upstream's own work (measured: the proxy reached a fifth of the upstream's rate).
An earlier version of this module used ``h11`` over asyncio streams; parsing the answers and
validating the requests in pure Python was then half of the proxy's CPU per uncached request.

So each connection is an :class:`asyncio.Protocol` whose answers are parsed by ``httptools``
(llhttp, in C), and a request is written as one buffer after a check of its method, target and
headers. One pool per origin; connections reused while both sides keep them; a reused connection
that turns out to be closed is retried once on a fresh one (only for idempotent methods whose
body can be sent again); nothing else.

* No cookies are kept and no redirects followed; the caller sets every header except ``Host``
  and the body framing (``Content-Length`` / ``Transfer-Encoding``), which come from the body.
* The body comes back as the server sent it (``Accept-Encoding`` is the caller's business).
* Bounded: the status line and headers may take 64 KiB; a body is read ahead by at most
  ``_READ_AHEAD`` bytes (plus one socket read) before the socket is paused for the reader.
* Failures map as in :mod:`bambulab.transports.http`: no connection, a reset or a protocol error
  raise :class:`~bambulab.exceptions.BambuConnectionError`, silence past the timeout
  :class:`~bambulab.exceptions.BambuTimeoutError`. Messages name the method, host and path, never
  the query, a header or a body.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

from bambulab.exceptions import BambuConnectionError, BambuTimeoutError
from bambulab.transports.tls import cloud_ssl_context

__all__ = ["AsyncPassThrough", "HttpStream"]

log = logging.getLogger(__name__)

_MAX_HEAD = 65536
_READ_AHEAD = 256 * 1024
_FRAMING = frozenset({"host", "content-length", "transfer-encoding"})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_BAD_VALUE = re.compile(r"[\x00\r\n]")
_OWS = " \t"


class _Closed(Exception):
    """The connection ended (reset, EOF or a protocol error); ``answered`` if any byte had come."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def _within(waiter: asyncio.Future[None], seconds: float) -> None:
    """Await ``waiter``; TimeoutError after ``seconds`` (one timer, no task: this is the hot path)."""
    handle = waiter.get_loop().call_later(seconds, _expire, waiter)
    try:
        await waiter
    finally:
        handle.cancel()


class _Conn(asyncio.Protocol):
    """One keep-alive connection: the socket's events and the parser's callbacks meet here.

    An exchange starts with :meth:`begin` (a fresh parser for the answer); the reader awaits the
    head with :meth:`head` and the body with :meth:`chunk`. ``done`` once the answer has ended.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.dirty = False  # bytes came that belong to no exchange: never reuse
        self.reused = False
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None
        self._head_only = False
        self._status = 0
        self._headers: list[tuple[str, str]] = []
        self._head_done = False
        self._head_size = 0
        self._messages = 0
        self._until_close = False
        self._keep_alive = False
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._read_paused = False
        self.done = False
        self._error: _Closed | None = None
        self._answered = False
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's too)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or self.done:
            self.dirty = True  # an answer nobody asked for
            self.close()
            return
        self._answered = True
        if not self._head_done:
            self._head_size += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("the server switched protocols")
        except httptools.HttpParserError:
            self._fail("the server broke the HTTP protocol")
        if not self._head_done and self._head_size > _MAX_HEAD and self._error is None:
            self._fail(f"the server sent more than {_MAX_HEAD} bytes of headers")

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost tells the rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is not None and not self.done:
            if self._head_done and self._until_close and exc is None:
                self._complete()  # a body delimited by the end of the connection
            else:
                self._fail("the connection closed" if exc is None else f"the connection failed ({type(exc).__name__})")
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_exception(_Closed("the connection closed", answered=self._answered))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # ---------------------------------------------------------------- httptools callbacks

    def on_message_begin(self) -> None:
        self._messages += 1
        if self.done:  # a second answer to one request: the connection is out of step
            self.dirty = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.done:
            self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        if self.done:
            return
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # informational: the real answer follows
            self._headers = []
            self._messages -= 1
            return
        self._status = status
        self._head_done = True
        self._keep_alive = parser.should_keep_alive()
        if not (self._head_only or status in (204, 304)):
            self._until_close = not any(k in ("content-length", "transfer-encoding") for k, _ in self._headers)
        self._wake()
        if self._head_only:
            self._complete()

    def on_body(self, body: bytes) -> None:
        if self.done:
            return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _READ_AHEAD and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._head_done and not self.done:
            self._complete()

    # ---------------------------------------------------------------- the exchange

    def usable(self) -> bool:
        transport = self.transport
        return (not self.closed and not self.dirty and transport is not None and not transport.is_closing()
                and self._keep_alive and self.done and not self._body)

    def begin(self, head_only: bool) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = head_only
        self._status, self._headers, self._head_done, self._head_size = 0, [], False, 0
        self._messages, self._until_close, self._keep_alive = 0, False, False
        self._body.clear()
        self._buffered = 0
        self.done = False
        self._error = None
        self._answered = False

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise _Closed("the connection closed", answered=self._answered)
        self.transport.write(data)

    async def drain(self, seconds: float) -> None:
        if self.closed:
            raise _Closed("the connection closed", answered=self._answered)
        if not self._write_paused:
            return
        self._drain = self.loop.create_future()
        await _within(self._drain, seconds)

    async def head(self, seconds: float) -> tuple[int, tuple[tuple[str, str], ...]]:
        while not self._head_done:
            await self._wait(seconds)
        return self._status, tuple(self._headers)

    async def chunk(self, seconds: float) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while not self._body:
            if self.done:
                return None
            await self._wait(seconds)
        data = self._body.popleft()
        self._buffered -= len(data)
        if self._read_paused and self._buffered <= _READ_AHEAD // 2 and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        return data

    async def _wait(self, seconds: float) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = self.loop.create_future()
        try:
            await _within(self._waiter, seconds)
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _complete(self) -> None:
        self.done = True
        if self._messages > 1:
            self.dirty = True
        self._wake()

    def _fail(self, message: str) -> None:
        if self._error is None:
            self._error = _Closed(message, answered=self._answered)
        self.close()
        self._wake()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    def __init__(self, scheme: str, host: str, port: int, ssl_context: ssl.SSLContext | None, size: int,
                 idle_timeout: float) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self.ssl = ssl_context
        self.idle: deque[_Conn] = deque()
        self.size = size
        self.idle_timeout = idle_timeout

    async def get(self, seconds: float) -> _Conn:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()  # the most recently used: the least likely to have been closed
            if conn.usable() and now - conn.idle_since < self.idle_timeout:
                conn.reused = True
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(seconds):
            _, conn = await loop.create_connection(
                lambda: _Conn(loop), self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl else None)
        return conn

    def put(self, conn: _Conn) -> None:
        if conn.usable() and len(self.idle) < self.size:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


@dataclass(eq=False)
class HttpStream:
    """A response whose body is read on demand: status, every header (repeats kept), then the body.

    ``headers`` are ``(lower-case name, value)`` pairs, as sent. Always :meth:`aclose` it (``async
    with`` does): a body read to its end returns the connection to the pool, anything else closes it.
    """

    status: int
    headers: tuple[tuple[str, str], ...] = field(repr=False)  # a Set-Cookie may carry a token
    url: str = ""  # scheme://host:port/path, no query
    _conn: _Conn | None = field(repr=False, default=None)
    _pool: _Pool | None = field(repr=False, default=None)
    _method: str = field(repr=False, default="GET")
    _timeout: float = field(repr=False, default=15.0)
    _index: dict[str, str] | None = field(repr=False, default=None)

    def header(self, name: str) -> str | None:
        """The last value of a header (names are matched without regard to case)."""
        if self._index is None:
            self._index = dict(self.headers)  # a repeated name keeps its last value
        return self._index.get(name.lower())

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        while (data := await self._next()) is not None:
            yield data

    async def read(self, limit: int) -> bytes:
        """The whole body; :class:`~bambulab.exceptions.BambuConnectionError` past ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        while (chunk := await self._next()) is not None:  # no async generator: this is the hot path
            size += len(chunk)
            if size > limit:
                raise BambuConnectionError(f"{self._method} {self.url}: the answer is larger than {limit} bytes")
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _next(self) -> bytes | None:
        conn = self._conn
        if conn is None:
            return None
        try:
            return await conn.chunk(self._timeout)
        except TimeoutError:
            raise BambuTimeoutError(f"{self._method} {self.url}: the answer stalled for {self._timeout} s") from None
        except _Closed:
            raise BambuConnectionError(f"{self._method} {self.url}: the answer broke off") from None

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.done and self._pool is not None:
            self._pool.put(conn)
        else:
            conn.close()

    async def __aenter__(self) -> HttpStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Stale(Exception):
    """A reused connection was closed by the server before it answered: send again on a new one."""


def _request_head(method: str, target: str, headers: list[tuple[str, str]], where: str) -> bytes:
    """The request line and headers, each checked: no header can smuggle a line break in."""
    if not _TOKEN.fullmatch(method) or not target or _BAD_TARGET.search(target):
        raise ValueError(f"{where}: the request cannot be sent as HTTP/1.1")
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise ValueError(f"{where}: the request cannot be sent as HTTP/1.1")
        lines.append(f"{name}: {value.strip(_OWS)}\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{where}: the request cannot be sent as HTTP/1.1") from None


@dataclass(frozen=True)
class _Origin:
    where: str  # scheme://host:port, for messages
    host_header: str
    pool: _Pool


class AsyncPassThrough:
    """Forwards requests as given (the API proxy's upstream): raw query, any body, any method.

    ``max_connections`` bounds the idle connections kept per origin; connections in use are as
    many as the requests under way (the proxy's server bounds those).
    """

    def __init__(
        self,
        *,
        timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 100,
        idle_timeout: float = 30.0,
    ) -> None:
        self.timeout = timeout
        self._ssl = ssl_context
        self._max = max_connections
        self._idle_timeout = idle_timeout
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._origins: dict[str, _Origin] = {}

    def _pool(self, scheme: str, host: str, port: int) -> _Pool:
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            ctx = (self._ssl or cloud_ssl_context()) if scheme == "https" else None
            pool = self._pools[key] = _Pool(scheme, host, port, ctx, self._max, self._idle_timeout)
        return pool

    def _origin(self, method: str, url: str) -> tuple[_Origin, str]:
        """The origin (parsed once, then remembered) and the path of ``url``.

        ``urlsplit`` and its ``hostname``/``port`` properties were a tenth of the proxy's CPU
        per uncached request, for an origin that is the same on every request.
        """
        slash = url.find("/", url.find("://") + 3) if "://" in url else -1
        prefix, path = (url[:slash], url[slash:]) if slash >= 0 else (url, "/")
        path = path.split("#", 1)[0].split("?", 1)[0] or "/"
        origin = self._origins.get(prefix)
        if origin is None:
            parts = urlsplit(prefix)
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                port = 0
            if parts.scheme not in ("http", "https") or not parts.hostname or not port:
                raise ValueError(f"{method} {parts.scheme}://{parts.hostname or ''}{path}: invalid URL")
            host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
            if ":" in parts.hostname:  # an IPv6 literal goes in brackets
                host_header = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port is not None else "")
            if len(self._origins) >= 64:
                self._origins.clear()
            pool = self._pool(parts.scheme, parts.hostname, port)
            origin = self._origins[prefix] = _Origin(f"{parts.scheme}://{parts.hostname}:{port}", host_header, pool)
        return origin, path

    async def send(
        self,
        method: str,
        url: str,
        *,
        query: str = "",
        headers: Sequence[tuple[str, str]] = (),
        content: bytes | AsyncIterable[bytes] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - enforced per operation below
    ) -> HttpStream:
        """Send and return once the status and headers are in; the body is read from the stream."""
        seconds = self.timeout if timeout is None else timeout
        origin, path = self._origin(method, url)
        where = f"{method} {origin.where}{path}"
        target = path + (f"?{query}" if query else "")
        host_header = origin.host_header
        out = [("host", host_header)] + [(k, v) for k, v in headers if k.lower() not in _FRAMING]
        length: int | None = None
        chunked = False
        if isinstance(content, bytes | bytearray):
            length = len(content)
            out.append(("content-length", str(length)))
        elif content is not None:
            given = next((v for k, v in headers if k.lower() == "content-length"), None)
            if given is not None and given.strip().isdigit():
                length = int(given)
                out.append(("content-length", str(length)))
            else:
                chunked = True
                out.append(("transfer-encoding", "chunked"))
        head = _request_head(method, target, out, where)
        pool = origin.pool
        started = time.monotonic()
        # Sent again on a fresh connection only when that cannot do a thing twice.
        retry_ok = method in _IDEMPOTENT and (content is None or isinstance(content, bytes | bytearray))
        for attempt in (1, 2):
            conn = await self._connect(pool, seconds, where)
            try:
                status, response_headers = await self._exchange(
                    conn, method, head, content, length, chunked, seconds, where)
            except _Stale:
                conn.close()
                if attempt == 1 and retry_ok:
                    continue
                raise BambuConnectionError(f"{where}: the server closed the connection") from None
            except BaseException:
                conn.close()
                raise
            log.debug("%s -> %d (%.0f ms)", where, status, (time.monotonic() - started) * 1000)
            return HttpStream(status, response_headers, where.split(" ", 1)[1], conn, pool, method, seconds)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self, pool: _Pool, seconds: float, where: str) -> _Conn:
        try:
            return await pool.get(seconds)
        except TimeoutError:
            raise BambuTimeoutError(f"{where}: no connection within {seconds} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise BambuConnectionError(f"{where}: cannot reach the server ({type(exc).__name__})") from exc

    @staticmethod
    async def _exchange(conn: _Conn, method: str, head: bytes, content: bytes | AsyncIterable[bytes] | None,
                        length: int | None, chunked: bool, seconds: float,
                        where: str) -> tuple[int, tuple[tuple[str, str], ...]]:
        conn.begin(head_only=method == "HEAD")
        try:
            if isinstance(content, bytes | bytearray):
                if len(content) < 65536:  # one write, one segment
                    conn.write(head + bytes(content))
                else:
                    conn.write(head)
                    conn.write(bytes(content))
            else:
                conn.write(head)
                if content is not None:
                    sent = 0
                    async for chunk in content:
                        if not chunk:
                            continue
                        sent += len(chunk)
                        if length is not None and sent > length:
                            raise BambuConnectionError(f"{where}: the request body does not match its length")
                        conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                        await conn.drain(seconds)
                    if chunked:
                        conn.write(b"0\r\n\r\n")
                    elif length is not None and sent != length:
                        raise BambuConnectionError(f"{where}: the request body does not match its length")
            await conn.drain(seconds)
        except TimeoutError:
            raise BambuTimeoutError(f"{where}: the upload did not finish within {seconds} s") from None
        except _Closed as exc:
            if conn.reused and not exc.answered:
                raise _Stale from None
            raise BambuConnectionError(f"{where}: the connection failed") from None
        try:
            return await conn.head(seconds)
        except TimeoutError:
            raise BambuTimeoutError(f"{where}: no answer within {seconds} s") from None
        except _Closed as exc:
            if conn.reused and not exc.answered:  # closed by the server while idle: nothing arrived
                raise _Stale from None
            raise BambuConnectionError(f"{where}: {exc}") from None

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._origins.clear()

    def __repr__(self) -> str:
        return f"AsyncPassThrough(timeout={self.timeout}, pools={len(self._pools)})"
