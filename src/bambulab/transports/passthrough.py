"""HTTP/1.1 pass-through for the cloud API proxy: raw requests over a lean keep-alive pool.

Why not :mod:`bambulab.transports.http` (httpx2)? A proxy sends every request as it came - any
method, the raw query, any body, streamed both ways - and does so under load. httpx2's pool
probes every idle connection's socket on each request, which at twenty concurrent requests costs
more than the upstream's own work (measured: the proxy reached a fifth of the upstream's rate).
This module speaks HTTP/1.1 with ``h11`` over asyncio streams: one pool per origin, connections
reused while both sides keep them, a reused connection that turns out to be closed retried once
on a fresh one (only for idempotent methods whose body can be sent again), nothing else.

* No cookies are kept and no redirects followed; the caller sets every header except ``Host``
  and the body framing (``Content-Length`` / ``Transfer-Encoding``), which come from the body.
* The body comes back as the server sent it (``Accept-Encoding`` is the caller's business).
* Failures map as in :mod:`bambulab.transports.http`: no connection, a reset or a protocol error
  raise :class:`~bambulab.exceptions.BambuConnectionError`, silence past the timeout
  :class:`~bambulab.exceptions.BambuTimeoutError`. Messages name the method, host and path, never
  the query, a header or a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

from bambulab.exceptions import BambuConnectionError, BambuTimeoutError
from bambulab.transports.tls import cloud_ssl_context

__all__ = ["AsyncPassThrough", "HttpStream"]

log = logging.getLogger(__name__)

_READ = 65536
_FRAMING = frozenset({"host", "content-length", "transfer-encoding"})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def _where(method: str, scheme: str, host: str, port: int, path: str) -> str:
    return f"{method} {scheme}://{host}:{port}{path}"


@dataclass(eq=False)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT, max_incomplete_event_size=65536))
    idle_since: float = 0.0
    reused: bool = False

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof() and not self.reader._buffer  # type: ignore[attr-defined]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


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
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None, limit=_READ * 4)
        return _Conn(reader, writer)

    def put(self, conn: _Conn) -> None:
        if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE and len(self.idle) < self.size:
            conn.h11.start_next_cycle()
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
    _done: bool = field(repr=False, default=False)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in reversed(self.headers) if k == name), None)

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None or self._done:
            return
        while True:
            event = await _next_event(conn, self._timeout, f"{self._method} {self.url}")
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._done = True
                return
            else:  # ConnectionClosed before the end: a truncated body
                raise BambuConnectionError(f"{self._method} {self.url}: the answer broke off")

    async def read(self, limit: int) -> bytes:
        """The whole body; :class:`~bambulab.exceptions.BambuConnectionError` past ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise BambuConnectionError(f"{self._method} {self.url}: the answer is larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._pool is not None:
            self._pool.put(conn)
        else:
            conn.close()

    async def __aenter__(self) -> HttpStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _next_event(conn: _Conn, seconds: float, where: str) -> object:
    while True:
        try:
            event = conn.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise BambuConnectionError(f"{where}: the server broke the HTTP protocol") from exc
        if event is not h11.NEED_DATA:
            return event
        try:
            async with asyncio.timeout(seconds):
                data = await conn.reader.read(_READ)
        except TimeoutError:
            raise BambuTimeoutError(f"{where}: no answer within {seconds} s") from None
        except OSError as exc:
            raise BambuConnectionError(f"{where}: the connection failed ({type(exc).__name__})") from exc
        conn.h11.receive_data(data)


class _Stale(Exception):
    """A reused connection was closed by the server before it answered: send again on a new one."""


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

    def _pool(self, scheme: str, host: str, port: int) -> _Pool:
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            ctx = (self._ssl or cloud_ssl_context()) if scheme == "https" else None
            pool = self._pools[key] = _Pool(scheme, host, port, ctx, self._max, self._idle_timeout)
        return pool

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
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{method} {parts.scheme}://{parts.hostname or ''}{parts.path}: invalid URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        where = _where(method, parts.scheme, parts.hostname, port, parts.path)
        target = (parts.path or "/") + (f"?{query}" if query else "")
        host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        out = [("host", host_header)] + [(k, v) for k, v in headers if k.lower() not in _FRAMING]
        length = next((v for k, v in headers if k.lower() == "content-length"), None)
        if isinstance(content, bytes | bytearray):
            out.append(("content-length", str(len(content))))
        elif content is not None:
            out.append(("content-length", length) if length is not None else ("transfer-encoding", "chunked"))
        pool = self._pool(parts.scheme, parts.hostname, port)
        started = time.monotonic()
        # Sent again on a fresh connection only when that cannot do a thing twice.
        retry_ok = method in _IDEMPOTENT and (content is None or isinstance(content, bytes | bytearray))
        for attempt in (1, 2):
            conn = await self._connect(pool, seconds, where)
            try:
                status, response_headers = await self._exchange(conn, method, target, out, content, seconds, where)
            except _Stale:
                conn.close()
                if attempt == 1 and retry_ok:
                    continue
                raise BambuConnectionError(f"{where}: the server closed the connection") from None
            except BaseException:
                conn.close()
                raise
            log.debug("%s -> %d (%.0f ms)", where, status, (time.monotonic() - started) * 1000)
            stream = HttpStream(status, response_headers, where.split(" ", 1)[1], conn, pool, method, seconds)
            if method == "HEAD" or status in (204, 304):
                stream._done = await self._finish(conn, seconds, where)
            return stream
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self, pool: _Pool, seconds: float, where: str) -> _Conn:
        try:
            return await pool.get(seconds)
        except TimeoutError:
            raise BambuTimeoutError(f"{where}: no connection within {seconds} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise BambuConnectionError(f"{where}: cannot reach the server ({type(exc).__name__})") from exc

    @staticmethod
    async def _finish(conn: _Conn, seconds: float, where: str) -> bool:
        event = await _next_event(conn, seconds, where)
        return isinstance(event, h11.EndOfMessage)

    async def _exchange(self, conn: _Conn, method: str, target: str, headers: list[tuple[str, str]],
                        content: bytes | AsyncIterable[bytes] | None, seconds: float,
                        where: str) -> tuple[int, tuple[tuple[str, str], ...]]:
        try:
            request = h11.Request(method=method, target=target, headers=headers)
        except h11.LocalProtocolError as exc:
            raise ValueError(f"{where}: the request cannot be sent as HTTP/1.1") from exc
        try:
            conn.writer.write(conn.h11.send(request) or b"")
            if isinstance(content, bytes | bytearray):
                if content:
                    conn.writer.write(conn.h11.send(h11.Data(data=bytes(content))) or b"")
            elif content is not None:
                async for chunk in content:
                    if chunk:
                        conn.writer.write(conn.h11.send(h11.Data(data=chunk)) or b"")
                        await conn.writer.drain()
            conn.writer.write(conn.h11.send(h11.EndOfMessage()) or b"")
            transport = conn.writer.transport
            if transport.get_write_buffer_size() or transport.is_closing():  # else all is sent: no timer
                async with asyncio.timeout(seconds):
                    await conn.writer.drain()
        except TimeoutError:
            raise BambuTimeoutError(f"{where}: the upload did not finish within {seconds} s") from None
        except h11.LocalProtocolError as exc:
            raise BambuConnectionError(f"{where}: the request body does not match its length") from exc
        except OSError as exc:
            if conn.reused:
                raise _Stale from exc
            raise BambuConnectionError(f"{where}: the connection failed ({type(exc).__name__})") from exc
        while True:
            try:
                event = await _next_event(conn, seconds, where)
            except BambuConnectionError:
                if conn.reused:  # closed by the server while idle: nothing of an answer arrived
                    raise _Stale from None
                raise
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                pairs = tuple((bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in event.headers)
                return event.status_code, pairs
            if isinstance(event, h11.ConnectionClosed) and conn.reused:
                raise _Stale
            raise BambuConnectionError(f"{where}: the server closed the connection without answering")

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def __repr__(self) -> str:
        return f"AsyncPassThrough(timeout={self.timeout}, pools={len(self._pools)})"
