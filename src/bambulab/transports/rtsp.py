"""The RTSPS camera (X1/H2/P2S, port 322) behind a loopback relay that this layer verifies.

FFmpeg, which decodes the H.264 stream, cannot check that the camera's certificate names the
printer's serial, and with ``rtsps://bblp:<code>@host`` it would answer a ``401 WWW-Authenticate:
Basic`` challenge with the access code in clear. So FFmpeg never talks to the printer:

* :class:`RtspRelay` opens the TLS connection to the camera itself, verified like every printer
  connection (:mod:`bambulab.transports.tls`: the context's CA chain, then CN = serial), and
  listens on ``127.0.0.1`` (a random port) for FFmpeg's plain RTSP;
* it forwards the camera's bytes unchanged, and FFmpeg's requests only after reading them: a
  request carrying ``Authorization: Basic`` is never forwarded (the relay drops both sides and
  records :class:`~bambulab.exceptions.AuthenticationError`), so the code leaves the host only as
  an RTSP Digest response (what the printers' live555 server asks for);
* a printer that reports a plaintext ``rtsp://`` URL gets the same relay without TLS, and only when
  the caller opted in (:class:`~bambulab.camera.Camera` decides).

Everything is bounded: an RTSP request head is at most :data:`MAX_REQUEST_HEAD` bytes, a body at
most :data:`MAX_REQUEST_BODY`, and at most :data:`MAX_CONNECTIONS` connections are relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
from typing import Final

from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    PrinterCertificateError,
)
from bambulab.transports.tls import check_peer_serial, is_verifying, warn_serial_unchecked

__all__ = ["MAX_CONNECTIONS", "MAX_REQUEST_BODY", "MAX_REQUEST_HEAD", "RtspRelay", "is_basic_authorization"]

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD: Final = 16 * 1024
MAX_REQUEST_BODY: Final = 64 * 1024
MAX_CONNECTIONS: Final = 4
_CHUNK: Final = 64 * 1024
_BASIC: Final = re.compile(rb"^authorization[ \t]*:[ \t]*basic\b", re.IGNORECASE | re.MULTILINE)
_LENGTH: Final = re.compile(rb"^content-length[ \t]*:[ \t]*(\d{1,9})[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


def is_basic_authorization(head: bytes) -> bool:
    """Whether an RTSP/HTTP request head carries ``Authorization: Basic`` (credentials in clear)."""
    return _BASIC.search(head) is not None


class _Refused(Exception):
    """A request the relay will not forward (never leaves this module)."""


class RtspRelay:
    """A loopback RTSP endpoint forwarding to one printer camera (see the module docstring).

    ``await relay.start()`` connects to the camera (raising what a printer connection raises:
    :class:`~bambulab.exceptions.PrinterCertificateError`, ``BambuConnectionError``,
    ``BambuTimeoutError``) and listens; :attr:`port` is then where FFmpeg connects (RTSP,
    ``127.0.0.1``). :attr:`error` is the reason a relayed connection was cut, if any.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        serial: str | None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.remote_port = port
        self._ssl_context = ssl_context
        self._serial = serial
        self._connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._first: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._accepted = 0
        #: Why a relayed connection was cut (a refused Basic challenge), else None.
        self.error: BambuError | None = None
        #: Bytes forwarded each way (camera to FFmpeg, FFmpeg to camera).
        self.received = 0
        self.sent = 0

    def __repr__(self) -> str:
        scheme = "rtsps" if self._ssl_context is not None else "rtsp"
        return f"<RtspRelay {scheme}://{self.host}:{self.remote_port} via 127.0.0.1:{self.port}>"

    @property
    def port(self) -> int:
        server = self._server
        if server is None or not server.sockets:
            return 0
        return int(server.sockets[0].getsockname()[1])

    @property
    def where(self) -> str:
        return f"{self.host}:{self.remote_port}"

    async def start(self) -> int:
        """Connect to the camera (verified) and listen on 127.0.0.1; returns the local port."""
        self._first = await self._connect_upstream()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_CHUNK)
        return self.port

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        first, self._first = self._first, None
        if first is not None:
            first[1].close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    # -- the camera side ------------------------------------------------------------------------

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        where = self.where
        ctx = self._ssl_context
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self.host, self.remote_port, ssl=ctx, server_hostname=(self._serial or self.host) if ctx else None,
                    limit=_CHUNK,
                )
        except TimeoutError:
            raise BambuTimeoutError(
                f"the RTSP camera at {where} sent nothing for {self._connect_timeout:g} s (no TLS connection)"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise PrinterCertificateError(
                f"the RTSP camera at {where}: the TLS certificate did not verify ({exc.verify_message}): "
                "it is not signed by the trusted CA"
            ) from None
        except ssl.SSLError as exc:
            reason = exc.reason or type(exc).__name__
            raise BambuConnectionError(f"the RTSP camera at {where}: TLS handshake failed: {reason}") from None
        except ConnectionRefusedError:
            raise BambuConnectionError(
                f"the RTSP camera at {where} refused the connection: is LAN liveview on?"
            ) from None
        except socket.gaierror as exc:
            raise BambuConnectionError(f"the RTSP camera at {where}: cannot resolve the host: {exc.strerror}") from None
        except OSError as exc:
            raise BambuConnectionError(f"cannot connect to the RTSP camera at {where}: {exc.strerror or exc}") from None
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            if self._serial:
                try:
                    check_peer_serial(ssl_object, self._serial, where=f"{where} (camera)")
                except BambuError:
                    writer.close()
                    raise
            elif ctx is not None and is_verifying(ctx):
                warn_serial_unchecked("the camera (RTSPS)")
        return reader, writer

    # -- the FFmpeg side ------------------------------------------------------------------------

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            self._accepted += 1
            if self._accepted > MAX_CONNECTIONS:
                return
            if self._first is not None:
                (upstream_reader, upstream_writer), self._first = self._first, None
            else:
                try:
                    upstream_reader, upstream_writer = await self._connect_upstream()
                except BambuError as exc:
                    self.error = exc
                    return
            self._writers.add(upstream_writer)
            down = asyncio.ensure_future(self._pump(upstream_reader, client_writer))
            try:
                await self._forward_requests(client_reader, upstream_writer)
            except _Refused as exc:
                log.warning("RTSP camera at %s: %s", self.where, exc)
                self.error = AuthenticationError(
                    f"the RTSP camera at {self.where} asked for Basic authentication, which would send the "
                    "access code in clear: refused (Bambu printers use Digest)"
                )
            finally:
                down.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await down
        except (ConnectionError, OSError):
            pass
        finally:
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Camera to FFmpeg, unchanged (interleaved RTP and RTSP replies)."""
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(_CHUNK):
                self.received += len(data)
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _forward_requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """FFmpeg to camera, one whole request (or interleaved frame) at a time, Basic never."""
        buffer = bytearray()
        while data := await reader.read(_CHUNK):
            buffer += data
            while buffer:
                if buffer[0] == 0x24:  # "$": an interleaved RTCP frame (channel, 16-bit length)
                    if len(buffer) < 4:
                        break
                    size = 4 + int.from_bytes(buffer[2:4], "big")
                    if len(buffer) < size:
                        break
                    chunk = bytes(buffer[:size])
                else:
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buffer) > MAX_REQUEST_HEAD:
                            raise _Refused("an RTSP request head longer than the relay accepts")
                        break
                    head = bytes(buffer[: end + 4])
                    if is_basic_authorization(head):
                        raise _Refused("FFmpeg offered Basic credentials after a Basic challenge; not forwarded")
                    match = _LENGTH.search(head)
                    length = int(match.group(1)) if match else 0
                    if length > MAX_REQUEST_BODY:
                        raise _Refused("an RTSP request body larger than the relay accepts")
                    size = end + 4 + length
                    if len(buffer) < size:
                        break
                    chunk = bytes(buffer[:size])
                del buffer[:size]
                self.sent += len(chunk)
                writer.write(chunk)
            await writer.drain()
