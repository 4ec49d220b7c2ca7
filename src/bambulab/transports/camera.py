"""The P1/A1 "chamber image" camera stream: TLS on port 6000, one JPEG per frame.

Wire format (reference PROTOCOL.md section 7.1):

* after the TLS handshake the client sends one 80-byte auth packet: ``<IIII`` ``0x40``,
  ``0x3000``, 0, 0, then the user ``bblp`` and the access code, each NUL-padded to 32 bytes;
* the printer then sends, per frame, a 16-byte header (``<IIII`` JPEG length, 0, 1, 0) and
  exactly that many JPEG bytes (``FF D8`` ... ``FF D9``);
* a wrong access code gets no answer: the printer closes the connection without sending a byte.

:class:`JpegStreamClient` reads this with an :class:`asyncio.BufferedProtocol`: TLS decrypts
straight into a 16-byte header buffer and then into one reusable payload buffer sized to the
frame, and each complete frame is copied once into the ``bytes`` a caller gets. There is no
line or chunk parsing and no intermediate stream buffer.

The pure helpers (:func:`build_auth_packet`, :func:`parse_frame_header`, :func:`is_complete_jpeg`)
touch no socket. Access codes never appear in messages, ``repr`` or logs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Self, cast

from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    NotConnectedError,
)
from bambulab.transports.tls import (
    PrinterCertificateError,
    check_peer_serial,
    default_printer_context,
    is_verifying,
    warn_serial_unchecked,
)

__all__ = [
    "AUTH_PACKET_SIZE",
    "DEFAULT_JPEG_PORT",
    "FRAME_HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "Frame",
    "JpegStreamClient",
    "build_auth_packet",
    "is_complete_jpeg",
    "parse_frame_header",
]

log = logging.getLogger(__name__)

#: The port of the JPEG stream on P1/A1 printers.
DEFAULT_JPEG_PORT: Final = 6000
AUTH_PACKET_SIZE: Final = 80
FRAME_HEADER_SIZE: Final = 16
#: A header announcing more than this is taken as a broken stream, not a frame.
MAX_FRAME_SIZE: Final = 16 * 1024 * 1024

_HEADER = struct.Struct("<IIII")
_AUTH_LENGTH = 0x40
_AUTH_TYPE = 0x3000
_FIELD = 32
_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_BUFFER_SIZE = 256 * 1024  # per connection; grows to fit twice the largest frame
_MIN_READ = 32 * 1024  # always offer TLS at least this much room (two full TLS records)


# ------------------------------------------------------------------------------------ pure parts


def build_auth_packet(access_code: str, username: str = "bblp") -> bytes:
    """The 80-byte login packet. Raises ``ValueError`` for a code that does not fit (32 bytes)."""
    user = username.encode("ascii")
    try:
        code = access_code.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("the access code must be ASCII") from None
    if len(user) > _FIELD or len(code) > _FIELD:
        raise ValueError("user name and access code must be at most 32 bytes")
    return _HEADER.pack(_AUTH_LENGTH, _AUTH_TYPE, 0, 0) + user.ljust(_FIELD, b"\0") + code.ljust(_FIELD, b"\0")


def parse_frame_header(header: bytes | bytearray | memoryview) -> int:
    """The JPEG length announced by a 16-byte frame header. ``ValueError`` if it is implausible."""
    if len(header) != FRAME_HEADER_SIZE:
        raise ValueError(f"a frame header has {FRAME_HEADER_SIZE} bytes, got {len(header)}")
    size: int = _HEADER.unpack_from(header)[0]
    if not 0 < size <= MAX_FRAME_SIZE:
        raise ValueError(f"implausible frame size {size}")
    return size


def is_complete_jpeg(data: bytes | bytearray | memoryview) -> bool:
    """True when ``data`` starts with the JPEG SOI marker and ends with EOI."""
    return len(data) >= 4 and data[:2] == _SOI and data[-2:] == _EOI


@dataclass(frozen=True, slots=True)
class Frame:
    """One JPEG from the camera.

    ``jpeg`` is the complete image (``FF D8`` ... ``FF D9``); ``received`` is
    :func:`time.monotonic` when its last byte arrived; ``index`` counts valid frames on the
    connection from 0 (a gap means frames were dropped because the reader was slower than the
    camera); ``size`` is ``len(jpeg)``.
    """

    jpeg: bytes = field(repr=False)
    received: float
    index: int
    size: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", len(self.jpeg))


# ------------------------------------------------------------------------------------- protocol


class _StreamProtocol(asyncio.BufferedProtocol):
    """Parses header, payload, header, ... out of one buffer that TLS decrypts straight into.

    Bytes arrive at ``_end`` and frames are cut from ``_start``; several frames may be parsed
    from one read. When the free space runs low, the unparsed tail (less than one frame) moves
    to the front (``memoryview`` slice assignment is a memmove). The buffer grows to twice the
    largest frame seen; nothing is allocated per frame except the frame's own ``bytes`` (the
    one copy a frame costs).
    """

    def __init__(self, max_queued: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.frames: collections.deque[Frame] = collections.deque()
        self.max_queued = max_queued
        self.bytes_received = 0
        self.frames_received = 0  # valid frames, including dropped ones
        self.bad_frames = 0
        self.dropped = 0
        self.closed = False
        self.error: tuple[type[BambuError], str] | None = None
        self._view = memoryview(bytearray(_BUFFER_SIZE))
        self._start = 0  # the first byte not parsed yet
        self._end = 0  # the end of the received bytes
        self._need = FRAME_HEADER_SIZE  # bytes from _start that complete the next step
        self._waiter: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; not an isinstance check: uvloop's transports do not subclass asyncio's.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        view = self._view
        capacity = len(view)
        if capacity - self._end < _MIN_READ or capacity - self._start < self._need:
            view = self._compact()
        return view[self._end :]

    def _compact(self) -> memoryview:
        view = self._view
        pending = self._end - self._start
        wanted = max(self._need, pending) + _MIN_READ
        if len(view) < wanted:
            grown = memoryview(bytearray(max(2 * len(view), 2 * wanted)))
            grown[:pending] = view[self._start : self._end]
            self._view = view = grown
        elif pending:
            view[:pending] = view[self._start : self._end]  # overlapping: memoryview uses memmove
        self._start, self._end = 0, pending
        return view

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_received += nbytes
        self._end += nbytes
        view = self._view
        start, end = self._start, self._end
        need = FRAME_HEADER_SIZE
        while end - start >= FRAME_HEADER_SIZE:
            size: int = _HEADER.unpack_from(view, start)[0]
            if not 0 < size <= MAX_FRAME_SIZE:
                self._fail(BambuConnectionError, f"camera stream out of sync: implausible frame size {size}")
                return
            total = FRAME_HEADER_SIZE + size
            if end - start < total:
                need = total
                break
            payload = view[start + FRAME_HEADER_SIZE : start + total]
            start += total
            if payload[:2] != _SOI or payload[-2:] != _EOI:
                self.bad_frames += 1
                log.debug("camera: skipped a frame without JPEG start/end markers (%d bytes)", size)
                continue
            frame = Frame(payload.tobytes(), time.monotonic(), self.frames_received)
            self.frames_received += 1
            if len(self.frames) >= self.max_queued:
                self.frames.popleft()
                self.dropped += 1
            self.frames.append(frame)
            self._wake()
        if start == end:
            start = end = 0
        self._start, self._end, self._need = start, end, need

    def eof_received(self) -> bool:
        self._closed_by_peer()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self._closed_by_peer()
        self.closed = True
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()

    # helpers

    def _closed_by_peer(self) -> None:
        if self.error is not None or self.closed:
            return
        if self.bytes_received == 0:
            self.error = (
                AuthenticationError,
                "the camera closed the connection right after login without sending a frame: "
                "wrong access code?",
            )
        else:
            self.error = (BambuConnectionError, "the camera closed the connection")

    def _fail(self, kind: type[BambuError], message: str) -> None:
        if self.error is None:
            self.error = (kind, message)
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def waiter(self) -> asyncio.Future[None]:
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter


# --------------------------------------------------------------------------------------- client


class JpegStreamClient:
    """One connection to a P1/A1 camera stream.

    ::

        async with JpegStreamClient(host, access_code, serial=serial, ssl_context=ctx) as stream:
            frame = await stream.read_frame()

    :meth:`connect` opens TCP + TLS and sends the login; it does not wait for a frame (a wrong
    access code shows as :class:`AuthenticationError` from the first :meth:`read_frame`).
    ``frame_timeout`` bounds the wait for each frame (:class:`BambuTimeoutError`), and
    ``connect_timeout`` the TCP connect and TLS handshake. At most ``max_queued`` frames are
    kept for a reader that falls behind; older ones are dropped (:attr:`dropped`) so a reader
    always gets recent images. Frames without JPEG start/end markers are skipped
    (:attr:`bad_frames`).

    ``ssl_context`` defaults to :func:`~bambulab.transports.tls.default_printer_context` (the
    bundled Bambu CA); with ``serial`` the certificate must also name that serial.

    Errors: :class:`BambuConnectionError` (refused, unreachable, TLS failure, stream closed or
    out of sync), :class:`AuthenticationError` (closed right after login; its subclass
    :class:`~bambulab.transports.tls.PrinterCertificateError` for an untrusted certificate),
    :class:`BambuTimeoutError`, :class:`NotConnectedError` (not connected or closed).
    """

    def __init__(
        self,
        host: str,
        access_code: str,
        *,
        port: int = DEFAULT_JPEG_PORT,
        serial: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 10.0,
        frame_timeout: float = 15.0,
        max_queued: int = 2,
    ) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self.host = host
        self.port = port
        self._auth = build_auth_packet(access_code)
        self.serial = serial
        self._ssl_context = ssl_context if ssl_context is not None else default_printer_context()
        self._server_hostname = server_hostname
        self.connect_timeout = connect_timeout
        self.frame_timeout = frame_timeout
        self._max_queued = max_queued
        self._protocol: _StreamProtocol | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self.connected else "new"
        return f"<JpegStreamClient {self.host}:{self.port} {state}>"

    @property
    def connected(self) -> bool:
        p = self._protocol
        return p is not None and not p.closed and p.error is None

    @property
    def frames_received(self) -> int:
        return self._protocol.frames_received if self._protocol else 0

    @property
    def bad_frames(self) -> int:
        return self._protocol.bad_frames if self._protocol else 0

    @property
    def dropped(self) -> int:
        return self._protocol.dropped if self._protocol else 0

    @property
    def bytes_received(self) -> int:
        return self._protocol.bytes_received if self._protocol else 0

    async def connect(self) -> None:
        if self._closed:
            raise NotConnectedError("this camera stream was closed; open a new one")
        if self._protocol is not None:
            return
        loop = asyncio.get_running_loop()
        where = f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, protocol = await loop.create_connection(
                    lambda: _StreamProtocol(self._max_queued),
                    self.host,
                    self.port,
                    ssl=self._ssl_context,
                    server_hostname=self._server_hostname,
                )
        except TimeoutError:
            raise BambuTimeoutError(
                f"camera at {where}: no TLS connection within {self.connect_timeout:g} s"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise PrinterCertificateError(
                f"camera at {where}: the printer's TLS certificate did not verify ({exc.verify_message}): "
                "it is not signed by the trusted CA"
            ) from exc
        except ssl.SSLError as exc:
            raise BambuConnectionError(f"camera at {where}: TLS handshake failed: {exc.reason or exc}") from exc
        except socket.gaierror as exc:
            raise BambuConnectionError(f"camera at {where}: cannot resolve the host: {exc.strerror}") from exc
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise BambuConnectionError(f"cannot connect to the camera at {where}: {reason}") from exc
        assert isinstance(protocol, _StreamProtocol)
        self._protocol = protocol
        ssl_object = transport.get_extra_info("ssl_object")
        if self.serial and ssl_object is not None:
            try:
                check_peer_serial(ssl_object, self.serial, where=f"{where} (camera)")
            except BambuError:
                transport.abort()
                raise
        elif ssl_object is not None and is_verifying(self._ssl_context):
            warn_serial_unchecked("the camera (JPEG stream)")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(self._auth)
        log.debug("camera %s: connected, login sent", where)

    async def read_frame(self, frame_timeout: float | None = None) -> Frame:
        """The next frame (the oldest one queued); ``frame_timeout`` overrides the client's."""
        protocol = self._protocol
        if protocol is None:
            raise NotConnectedError("the camera stream is not connected" if not self._closed else
                                    "the camera stream was closed")
        limit = self.frame_timeout if frame_timeout is None else frame_timeout
        frames = protocol.frames
        if frames:
            return frames.popleft()
        try:
            async with asyncio.timeout(limit):
                while not frames:
                    if protocol.error is not None:
                        kind, message = protocol.error
                        raise kind(f"{message} ({self.host}:{self.port})")
                    if protocol.closed:
                        raise NotConnectedError("the camera stream was closed")
                    await protocol.waiter()
        except TimeoutError as exc:
            if isinstance(exc, BambuError):
                raise
            raise BambuTimeoutError(
                f"camera at {self.host}:{self.port}: no frame within {limit:g} s"
            ) from None
        return frames.popleft()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Frame:
        return await self.read_frame()

    async def close(self) -> None:
        """Close the connection (TLS close_notify, then TCP); waits briefly for it to end."""
        self._closed = True
        protocol = self._protocol
        if protocol is None:
            return
        protocol.closed = True
        transport = protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()
        if not protocol.lost.done():
            try:
                await asyncio.wait_for(asyncio.shield(protocol.lost), 1.0)
            except TimeoutError:
                if protocol.transport is not None:
                    protocol.transport.abort()
                try:
                    await asyncio.wait_for(asyncio.shield(protocol.lost), 1.0)
                except TimeoutError:  # pragma: no cover - the loop never reported the close
                    log.debug("camera %s:%d: close not confirmed", self.host, self.port)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
