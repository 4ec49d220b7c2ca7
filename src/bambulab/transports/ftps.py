"""Implicit FTPS to a printer's vsftpd (port 990): a blocking ``ftplib`` client and its async twin.

What the printers need, and what this module does about it:

* **Implicit TLS.** The socket is wrapped in TLS right after the TCP connect, before the ``220``
  greeting (``AUTH TLS`` is never sent).
* **TLS session reuse.** vsftpd runs with ``require_ssl_reuse=YES``: every data connection must
  resume the control connection's TLS session, or the transfer fails with ``522``
  (:class:`~bambulab.exceptions.SessionReuseError`).
* **Passive mode, control host.** ``PASV`` only; the address in the ``227`` reply is ignored
  (printers may advertise ``0.0.0.0``) and the data connection goes to the control peer.
* **close_notify, then a half-close, after an upload.** After the last block the client sends
  TLS ``close_notify`` (a stock OpenSSL 3 server treats an upload that ends without one as cut
  short) but never waits for the server's (the A1 never sends one, and a blocking ``unwrap()``
  hangs there), half-closes TCP, reads whatever the server still sends (TLS 1.3 session tickets:
  leaving them unread would make the kernel answer with a reset that can cut the upload short)
  until the server closes or answers, then closes and reads the reply. A ``426`` after a
  complete ``STOR`` counts as success only when ``SIZE`` then matches.
* **Optional TLS 1.2 cap** for firmware that refuses TLS 1.3 (``tls12=True``).
* **Timeouts** are per socket operation: a transfer that keeps moving never times out, a stalled
  printer raises :class:`~bambulab.exceptions.BambuTimeoutError` after ``timeout`` seconds.
  Everything but a file transfer (connect and log in, a command's reply, a listing) also has an
  overall ``deadline``, which a server that keeps sending cannot push back.
* **Bounded input.** A reply line is at most 8 KiB (``ftplib``), a reply at most
  :data:`MAX_REPLY_LINES` lines, a listing at most :data:`MAX_LISTING_BYTES`, a download at most
  the size ``SIZE`` announced: a hostile server gets an error, never the client's memory.

Errors are mapped at this boundary: ``530`` → :class:`~bambulab.exceptions.AuthenticationError`,
``522`` → :class:`~bambulab.exceptions.SessionReuseError`, ``550`` →
:class:`~bambulab.exceptions.FileTransferError` ("no such file"), other refusals →
:class:`~bambulab.exceptions.FileTransferError`, socket and TLS errors →
:class:`~bambulab.exceptions.BambuConnectionError`, timeouts →
:class:`~bambulab.exceptions.BambuTimeoutError`. The access code is never logged and never part of
an error message or a ``repr``.

:class:`FtpsClient` is the async side: one control connection, used by one operation at a time
(an :class:`asyncio.Lock`), driven by one dedicated worker thread, opened lazily and reopened
after a connection-level failure. Cancelling an operation aborts its sockets at once.
"""

# ruff: noqa: S321 - ftplib here always runs inside implicit TLS, as the printers require

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ftplib
import logging
import os
import select
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any, Final, TypeVar

from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    FileTransferError,
    NotConnectedError,
    SessionReuseError,
)

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_DEADLINE",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "LOGIN_USER",
    "MAX_LISTING_BYTES",
    "MAX_REPLY_LINES",
    "FtpsClient",
    "ImplicitFTPS",
    "Progress",
    "UploadSource",
    "reply_code",
    "tls12_context",
]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: The most lines one reply may have (a greeting or a ``STAT`` of a few lines is normal).
MAX_REPLY_LINES: Final = 256
#: The most bytes a listing may have (a folder of thousands of files is a few hundred KiB).
MAX_LISTING_BYTES: Final = 16 * 1024 * 1024
#: Seconds an operation other than a file transfer may take in all (connect and log in, a
#: reply, a listing), however steadily the server keeps sending.
DEFAULT_DEADLINE: Final = 60.0
_TRANSFERS: Final = frozenset({"upload", "download"})

DEFAULT_PORT: Final = 990
#: Seconds any single socket operation may wait (connect, handshake, a reply, one block).
DEFAULT_TIMEOUT: Final = 15.0
#: Bytes per send/receive call on data connections; large blocks keep Python out of the way.
DEFAULT_BLOCK_SIZE: Final = 256 * 1024
LOGIN_USER: Final = "bblp"
#: How long after the last uploaded byte the client waits for the server to close the data
#: connection (or to answer) before it closes anyway.
_DRAIN_LIMIT: Final = 5.0
#: A control connection idle for longer is probed with NOOP before use (printers drop idle
#: sessions after about five minutes) and reopened if the probe fails.
_IDLE_PROBE_AFTER: Final = 20.0

#: ``progress(bytes_done, total)``; ``total`` is ``None`` when unknown.
Progress = Callable[[int, int | None], object]
#: What :meth:`ImplicitFTPS.store` sends: bytes-like data or a binary file opened for reading.
UploadSource = bytes | bytearray | memoryview | IO[bytes]

_CONNECTION_ERRORS = (OSError, EOFError, ftplib.error_proto, ftplib.error_reply)


class _Aborted(Exception):
    """The transfer was aborted from another thread (cancellation or close)."""


class _TooMuch(ftplib.Error):
    """The server sent more than a reply, a listing or the announced file size can hold."""


class _Overdue(ftplib.Error):
    """The operation ran past its overall deadline while the server kept sending."""


class _LocalIOError(Exception):
    """Reading the upload source or writing the download failed: not the printer's fault.

    Carries the original ``OSError`` as ``__cause__``; :class:`FtpsClient` raises that one.
    """


def _reply_code(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else ""
    return text[:3]


def reply_code(exc: BaseException) -> str | None:
    """The FTP reply code (``"550"``) behind an error this module raised, if a reply caused it."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ftplib.Error):
            code = _reply_code(cause)
            return code if code.isdigit() else None
        cause = cause.__cause__
    return None


def tls12_context(context: ssl.SSLContext) -> ssl.SSLContext:
    """A copy of a client context capped at TLS 1.2, for firmware that refuses TLS 1.3.

    :class:`ssl.SSLContext` cannot be copied, and the caller's context may be shared with other
    connections (MQTT), so it is rebuilt: verification mode, hostname check, verify flags,
    options, minimum version and the CA certificates loaded into it (``get_ca_certs``) carry
    over. Certificates that an OpenSSL ``capath`` would load lazily do not: pass a context
    built with ``cadata``/``cafile`` (as the library's own are).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = context.verify_mode
    ctx.check_hostname = context.check_hostname
    ctx.verify_flags = context.verify_flags
    ctx.options = context.options
    ctx.minimum_version = context.minimum_version
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    for der in context.get_ca_certs(binary_form=True):
        ctx.load_verify_locations(cadata=der)
    return ctx


# --------------------------------------------------------------------------- the blocking client


class ImplicitFTPS(ftplib.FTP_TLS):
    """``ftplib.FTP_TLS`` speaking implicit TLS with session reuse, as Bambu printers need.

    Blocking; use it from one thread at a time (:class:`FtpsClient` does). With ``serial`` the
    printer's certificate must name it (:func:`bambulab.transports.tls.check_peer_serial`), and
    it is the TLS server name. :meth:`interrupt` is the
    one method another thread may call. ``reuse_session=False`` makes data connections start a
    fresh TLS session (only useful to see a printer refuse it with ``522``).
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        serial: str | None = None,
        reuse_session: bool = True,
        block_size: int = DEFAULT_BLOCK_SIZE,
        deadline: float | None = DEFAULT_DEADLINE,
    ) -> None:
        if not isinstance(context, ssl.SSLContext):
            raise TypeError("context must be an ssl.SSLContext")
        if deadline is not None and deadline <= 0:
            raise ValueError("deadline must be a positive number of seconds (or None)")
        if timeout is None or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if block_size < 4096:
            raise ValueError("block_size must be at least 4096 bytes")
        super().__init__(context=context, timeout=timeout)
        self.op_timeout = float(timeout)
        self.serial = serial
        self.reuse_session = reuse_session
        self.block_size = block_size
        #: Whether each data connection resumed the control session (most recent last, bounded).
        self.data_reused: list[bool] = []
        self.last_used = time.monotonic()
        self.deadline = deadline
        self._due: float | None = None  # monotonic time the current operation must end by
        self._aborted = threading.Event()
        self._data: socket.socket | None = None

    def __repr__(self) -> str:
        return f"<ImplicitFTPS {self.host}:{self.port}>"

    # -- connection

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        """Connect, start TLS at once (implicit), then read the ``220`` greeting."""
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
            self.op_timeout = float(timeout)
        if source_address is not None:
            self.source_address = source_address
        raw = socket.create_connection((self.host, self.port), self.timeout, source_address=self.source_address)
        try:
            tls = self.context.wrap_socket(raw, server_hostname=self.serial or self.host)
        except BaseException:
            raw.close()
            raise
        if self.serial:
            from bambulab.transports.tls import check_peer_serial

            try:
                check_peer_serial(tls, self.serial, where=f"{self.host}:{self.port}")
            except BaseException:
                tls.close()
                raise
        elif self.context.verify_mode != ssl.CERT_NONE:
            from bambulab.transports.tls import warn_serial_unchecked

            warn_serial_unchecked("FTPS")
        self.sock = tls
        self.af = tls.family
        self.file = tls.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        self.last_used = time.monotonic()
        return self.welcome

    def open_session(self, host: str, port: int, access_code: str) -> None:
        """Connect, log in as ``bblp``, protect data connections (``PROT P``), binary mode."""
        self._due = None if self.deadline is None else time.monotonic() + self.deadline
        self.connect(host, port)
        self.login(LOGIN_USER, access_code)
        self.prot_p()
        self.voidcmd("TYPE I")

    @property
    def control(self) -> ssl.SSLSocket:
        sock = self.sock
        if not isinstance(sock, ssl.SSLSocket):
            raise BrokenPipeError("not connected")
        return sock

    @property
    def tls_version(self) -> str | None:
        """The control connection's TLS version (``"TLSv1.3"``), ``None`` when not connected."""
        sock = self.sock
        return sock.version() if isinstance(sock, ssl.SSLSocket) else None

    def interrupt(self) -> None:
        """From any thread: make the operation in progress fail now, and the connection unusable."""
        self._aborted.set()
        for sock in (self._data, self.sock):
            if sock is not None:
                with contextlib.suppress(OSError):
                    # The plain socket's shutdown: SSLSocket.shutdown would drop its SSL object
                    # under the feet of the thread that is using it.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def idle_and_open(self) -> bool:
        """Between operations: False when the server closed the connection or said something
        unasked (vsftpd's ``421 Timeout.`` before it hangs up)."""
        sock = self.sock
        if not isinstance(sock, ssl.SSLSocket) or self._aborted.is_set():
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable and not sock.pending()

    def begin_operation(self, *, transfer: bool = False) -> None:
        """Start an operation: file transfers have no overall deadline (their size bounds them)."""
        self._aborted.clear()
        self._due = None if transfer or self.deadline is None else time.monotonic() + self.deadline

    def _check_due(self) -> None:
        if self._due is not None and time.monotonic() > self._due:
            raise _Overdue(f"the operation took longer than {self.deadline:g} s")

    # -- replies, bounded

    def getline(self) -> str:
        self._check_due()
        return super().getline()

    def getmultiline(self) -> str:
        """One reply, at most :data:`MAX_REPLY_LINES` lines (``ftplib`` would read forever)."""
        lines = [self.getline()]
        if lines[0][3:4] == "-":
            code = lines[0][:3]
            while True:
                if len(lines) >= MAX_REPLY_LINES:
                    raise _TooMuch(f"a reply of more than {MAX_REPLY_LINES} lines")
                line = self.getline()
                lines.append(line)
                if line[:3] == code and line[3:4] != "-":
                    break
        return "\n".join(lines)

    def _check_abort(self) -> None:
        if self._aborted.is_set():
            raise _Aborted("aborted")

    # -- data connections

    def makepasv(self) -> tuple[str, int]:
        """``PASV``; the data connection goes to the control connection's peer, whatever the reply says."""
        _advertised, port = ftplib.parse227(self.sendcmd("PASV"))
        return self.control.getpeername()[0], port

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        """Open a passive data connection, send ``cmd``, and start TLS resuming the control session."""
        if rest is not None:
            raise ValueError("the printers do not support REST (resumed transfers)")
        self._check_abort()
        host, port = self.makepasv()
        raw = socket.create_connection((host, port), self.timeout, source_address=self.source_address)
        try:
            resp = self.sendcmd(cmd)
            if resp[0] == "2":  # a stray 2xx before the 1xx: read on, as ftplib does
                resp = self.getresp()
            if resp[0] != "1":
                raise ftplib.error_reply(resp)
        except BaseException:
            raw.close()
            raise
        session = self.control.session if self.reuse_session else None
        try:
            conn = self.context.wrap_socket(
                raw, server_hostname=self.serial or self.host, session=session
            )
        except OSError as exc:
            raw.close()
            self._reply_after_data_error(exc)
            raise
        self.data_reused.append(bool(conn.session_reused))
        del self.data_reused[:-16]
        size = ftplib.parse150(resp) if resp[:3] == "150" else None
        return conn, size

    def _reply_after_data_error(self, exc: BaseException) -> None:
        """After a failed data connection, the control reply usually says why (522, 426 ...).

        Raises that reply as an ``ftplib`` error when one arrives; returns when none does.
        """
        if isinstance(exc, _Aborted | TimeoutError) or self._aborted.is_set():
            return
        sock = self.sock
        if sock is None:
            return
        try:
            sock.settimeout(min(self.op_timeout, 5.0))
            resp = self.getresp()  # raises error_perm / error_temp for 4xx / 5xx
        except (ftplib.error_perm, ftplib.error_temp):
            raise
        except Exception:
            return
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(self.op_timeout)
        if resp[:1] not in ("1", "2"):
            raise ftplib.error_reply(resp)

    def _close_notify(self, conn: socket.socket, deadline: float) -> None:
        """Send TLS ``close_notify`` without waiting for the server's (the A1 never answers one).

        Non-blocking: ``SSL_shutdown`` writes our alert, then reports that the answer has not
        arrived (``SSLWantReadError``), which is where a blocking ``unwrap()`` would hang.
        """
        if not isinstance(conn, ssl.SSLSocket):
            return
        conn.setblocking(False)
        try:
            while True:
                try:
                    conn.unwrap()
                    return  # the server's close_notify was already there
                except ssl.SSLWantReadError:
                    return  # ours is sent
                except ssl.SSLWantWriteError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    select.select([], [conn], [], left)
        except (OSError, ValueError):  # a reset, or the socket already closed: the reply tells
            return

    def _drain_after_upload(self, conn: socket.socket) -> None:
        """Send close_notify, half-close, and read until the server closes the connection or answers."""
        deadline = time.monotonic() + min(self.op_timeout, _DRAIN_LIMIT)
        self._close_notify(conn, deadline)
        with contextlib.suppress(OSError):
            socket.socket.shutdown(conn, socket.SHUT_WR)
        control = self.sock
        watch: list[Any] = [conn] if control is None else [conn, control]
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                readable, _, _ = select.select(watch, [], [], left)
                if conn not in readable:  # the reply is already here, or nothing came in time
                    return
                if not socket.socket.recv(conn, 65536):  # raw: tickets, close_notify, then EOF
                    return
            except OSError:  # a reset after the last byte: the reply tells how the upload went
                return

    # -- transfers

    def store(self, remote: str, source: UploadSource, total: int | None, progress: Progress | None) -> tuple[str, int]:
        """``STOR`` ``source`` to ``remote``; returns the final reply and the bytes sent.

        A ``426`` after every byte was sent is checked with ``SIZE``: equal means success (the
        reply is then ``"226 ..."`` in spirit: it is returned as it came).
        """
        self._check_abort()
        conn = self.transfercmd(f"STOR {remote}")
        self._data = conn
        sent = 0
        data_error: BaseException | None = None
        try:
            sent = self._send(conn, source, total, progress)
            self._drain_after_upload(conn)
        except (OSError, _Aborted) as exc:
            data_error = exc
        finally:
            self._data = None
            conn.close()
        if isinstance(data_error, _Aborted):
            raise data_error
        try:
            reply = self.voidresp()
        except ftplib.error_temp as exc:
            complete = data_error is None and (total is None or sent == total)
            if not (complete and _reply_code(exc) == "426"):
                raise
            try:
                size = self.size(remote)
            except ftplib.Error as size_exc:
                raise FileTransferError(f"upload of {remote} failed: {exc}") from size_exc
            if size != sent:
                raise FileTransferError(
                    f"upload of {remote} failed: the printer kept {size} of {sent} bytes ({exc})"
                ) from exc
            _log.debug("FTPS %s: 426 after a complete STOR of %s; SIZE matches", self.host, remote)
            reply = str(exc)
        if data_error is not None:
            raise data_error
        self.last_used = time.monotonic()
        return reply, sent

    def _send(self, conn: socket.socket, source: UploadSource, total: int | None, progress: Progress | None) -> int:
        bs = self.block_size
        sendall = conn.sendall
        aborted = self._aborted.is_set
        sent = 0
        if isinstance(source, bytes | bytearray | memoryview):
            with memoryview(source) as whole, whole.cast("B") as view:
                size = len(view)
                for offset in range(0, size, bs):
                    if aborted():
                        raise _Aborted("aborted")
                    block = view[offset : offset + bs]
                    sendall(block)
                    sent += len(block)
                    if progress is not None:
                        progress(sent, total)
            return sent
        buffer = bytearray(bs)
        with memoryview(buffer) as view:
            readinto = getattr(source, "readinto", None)
            while True:
                if aborted():
                    raise _Aborted("aborted")
                try:
                    chunk = view[: readinto(view) or 0] if readinto is not None else source.read(bs)
                except OSError as exc:
                    raise _LocalIOError("reading the upload source failed") from exc
                n = len(chunk)
                if not n:
                    break
                sendall(chunk)
                sent += n
                if progress is not None:
                    progress(sent, total)
        return sent

    def retrieve(
        self, remote: str, write: Callable[[bytes], object], total: int | None, progress: Progress | None
    ) -> int:
        """``RETR`` ``remote``, handing each block to ``write``; returns the bytes received."""
        self._check_abort()
        conn = self.transfercmd(f"RETR {remote}")
        self._data = conn
        received = 0
        data_error: BaseException | None = None
        try:
            recv = conn.recv
            bs = self.block_size
            aborted = self._aborted.is_set
            while True:
                if aborted():
                    raise _Aborted("aborted")
                chunk = recv(bs)
                if not chunk:
                    break
                if total is not None and received + len(chunk) > total:
                    raise _TooMuch(f"more than the {total} bytes SIZE announced")
                try:
                    write(chunk)
                except OSError as exc:
                    raise _LocalIOError("writing the download failed") from exc
                received += len(chunk)
                if progress is not None:
                    progress(received, total)
        except (OSError, _Aborted, _TooMuch) as exc:
            data_error = exc
        finally:
            self._data = None
            conn.close()  # no unwrap(): the server already ended the TLS stream
        if isinstance(data_error, _TooMuch):
            raise data_error
        if isinstance(data_error, _Aborted):
            raise data_error
        self.voidresp()
        if data_error is not None:
            raise data_error
        self.last_used = time.monotonic()
        return received

    def lines(self, cmd: str) -> list[str]:
        """Run a listing command (``LIST``/``NLST``) and return its lines, without line ends."""
        chunks: list[bytes] = []
        self.retrieve_cmd(cmd, chunks.append)
        text = b"".join(chunks).decode(self.encoding, "replace")
        return [line for line in text.splitlines() if line.strip()]

    def retrieve_cmd(self, cmd: str, write: Callable[[bytes], object], limit: int = MAX_LISTING_BYTES) -> None:
        """Run ``cmd`` and hand its data to ``write``: at most ``limit`` bytes, within the deadline."""
        self._check_abort()
        conn = self.transfercmd(cmd)
        self._data = conn
        data_error: BaseException | None = None
        received = 0
        try:
            while True:
                self._check_due()
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += len(chunk)
                if received > limit:
                    raise _TooMuch(f"a listing of more than {limit} bytes")
                write(chunk)
        except (_TooMuch, _Overdue):
            self._data = None
            conn.close()  # the control connection is dropped too: its reply is not awaited
            raise
        except OSError as exc:
            data_error = exc
        finally:
            self._data = None
            conn.close()
        self.voidresp()
        if data_error is not None:
            raise data_error
        self.last_used = time.monotonic()

    def size(self, filename: str) -> int:
        resp = self.sendcmd(f"SIZE {filename}")
        if resp[:3] != "213":
            raise ftplib.error_reply(resp)
        self.last_used = time.monotonic()
        return int(resp[3:].strip())

    def close(self) -> None:
        """Close without a goodbye (no ``QUIT`` round trip, no TLS shutdown)."""
        self._data = None
        super().close()


# --------------------------------------------------------------------------- error mapping


def _map_error(exc: BaseException, *, host: str, action: str, path: str | None) -> BambuError:
    """The library's exception for what ftplib, ssl or socket raised (the access code never appears)."""
    where = f" {path}" if path else ""
    if isinstance(exc, BambuError):
        return exc
    if isinstance(exc, _Aborted):
        return BambuConnectionError(f"FTPS {action}{where} on {host} was aborted")
    if isinstance(exc, _TooMuch):
        return BambuConnectionError(f"FTPS {action}{where} on {host}: the server sent too much ({exc}); "
                                    "is this a printer?")
    if isinstance(exc, _Overdue):
        return BambuTimeoutError(f"FTPS {action}{where} on {host}: {exc}, although the server kept sending")
    if isinstance(exc, ftplib.error_perm | ftplib.error_temp):
        reply = str(exc)
        code = _reply_code(exc)
        if code == "530":
            return AuthenticationError(f"the printer at {host} refused the FTPS login: wrong access code")
        if code == "522":
            return SessionReuseError(
                f"the printer at {host} refused the data connection: it must resume the control "
                f"connection's TLS session ({reply})"
            )
        if code == "550":
            return FileTransferError(f"no such file on the printer at {host}:{where or ' (path)'} ({reply})")
        if code == "421":
            return BambuConnectionError(f"the printer at {host} closed the FTPS session ({reply})")
        return FileTransferError(f"FTPS {action}{where} on {host} failed: {reply}")
    if isinstance(exc, TimeoutError):
        return BambuTimeoutError(f"FTPS {action}{where} on {host}: no answer in time")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return BambuConnectionError(f"FTPS to {host}: the printer's TLS certificate is not trusted ({exc.reason})")
    if isinstance(exc, EOFError):
        return BambuConnectionError(f"FTPS {action}{where} on {host}: the printer closed the connection")
    if isinstance(exc, ftplib.error_proto | ftplib.error_reply):
        return BambuConnectionError(f"FTPS {action}{where} on {host}: unexpected reply {exc}")
    if isinstance(exc, OSError):
        detail = exc.strerror or type(exc).__name__
        return BambuConnectionError(f"FTPS {action}{where} on {host} failed: {detail}")
    return BambuError(f"FTPS {action}{where} on {host} failed: {type(exc).__name__}")


def _keeps_connection(exc: BaseException) -> bool:
    """Whether the control connection is still good after this error (a plain refusal)."""
    if isinstance(exc, ftplib.error_perm | ftplib.error_temp):
        return _reply_code(exc) != "421"
    return isinstance(exc, FileTransferError)


# --------------------------------------------------------------------------- the async client


class FtpsClient:
    """Async FTPS to one printer: one control connection, one operation at a time.

    The blocking :class:`ImplicitFTPS` runs in a dedicated worker thread; an :class:`asyncio.Lock`
    keeps operations in order. The connection opens on first use (or :meth:`connect`), and after a
    connection-level failure the next operation opens a new one. ``progress`` callbacks run on the
    event loop. ``access_code`` is kept out of ``repr``, logs and errors.

    ``ssl_context`` defaults to :func:`bambulab.transports.tls.default_printer_context` (the
    bundled Bambu CA); with ``serial`` the certificate must name that serial. ``tls12`` caps TLS
    at 1.2 on a copy of the context (the given one may be shared, and is left alone).
    """

    #: The blocking client class each connection uses (a seam for diagnostics and tests).
    ftps_class: type[ImplicitFTPS] = ImplicitFTPS

    def __init__(
        self,
        host: str,
        access_code: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        port: int = DEFAULT_PORT,
        tls12: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        serial: str | None = None,
        block_size: int = DEFAULT_BLOCK_SIZE,
        reuse_session: bool = True,
        deadline: float | None = DEFAULT_DEADLINE,
    ) -> None:
        if ssl_context is None:
            from bambulab.transports.tls import default_printer_context, printer_ssl_context

            ssl_context = printer_ssl_context(tls_max=ssl.TLSVersion.TLSv1_2) if tls12 else default_printer_context()
            tls12 = False  # already capped
        if not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError("ssl_context must be an ssl.SSLContext")
        if not host:
            raise ValueError("host is required")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.host = host
        self.port = int(port)
        self.timeout = float(timeout)
        self.tls12 = tls12
        self.serial = serial
        self.block_size = block_size
        self.reuse_session = reuse_session
        #: Seconds any operation but a file transfer may take in all (None: no overall limit).
        self.deadline = deadline
        self._access_code = access_code
        self._context = tls12_context(ssl_context) if tls12 else ssl_context
        self._lock = asyncio.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._ftp: ImplicitFTPS | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self._ftp is not None else "idle")
        return f"<FtpsClient {self.host}:{self.port} {state}>"

    async def __aenter__(self) -> FtpsClient:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ftp is not None

    @property
    def tls_version(self) -> str | None:
        ftp = self._ftp
        return ftp.tls_version if ftp is not None else None

    @property
    def data_reused(self) -> list[bool]:
        """Session reuse of the current connection's recent data connections (for diagnostics)."""
        ftp = self._ftp
        return list(ftp.data_reused) if ftp is not None else []

    # -- lifecycle

    async def connect(self) -> None:
        """Open and log in now (otherwise the first operation does)."""
        await self._run("connect", None, lambda ftp, _: None)

    async def close(self) -> None:
        """Close the connection and end the worker thread. The client cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        ftp, executor = self._ftp, self._executor
        self._executor = None
        if ftp is not None:
            ftp.interrupt()  # an operation still running in the thread (after a cancel) ends now
        if executor is None:
            return
        async with self._lock:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(executor.submit(self._drop))
        executor.shutdown(wait=False)

    # -- operations

    async def upload(
        self,
        source: UploadSource | str | os.PathLike[str],
        remote: str,
        *,
        progress: Progress | None = None,
    ) -> int:
        """Upload bytes, a binary file object or a local file to ``remote``; return the bytes sent.

        Local files are opened before anything is sent, so a missing one raises
        ``FileNotFoundError``; a local read error during the upload raises that ``OSError``.
        """
        if isinstance(source, str | os.PathLike):
            fh = await asyncio.to_thread(open, source, "rb")
            try:
                return await self._upload(fh, remote, progress)
            finally:
                await asyncio.to_thread(fh.close)
        return await self._upload(source, remote, progress)

    async def _upload(self, source: UploadSource, remote: str, progress: Progress | None) -> int:
        total: int | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            total = memoryview(source).nbytes
        else:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                info = os.fstat(source.fileno())
                if stat.S_ISREG(info.st_mode):
                    total = info.st_size - source.tell()

        def job(ftp: ImplicitFTPS, report: Progress | None) -> int:
            return ftp.store(remote, source, total, report)[1]

        return await self._run("upload", remote, job, progress)

    async def download(
        self,
        remote: str,
        write: Callable[[bytes], object],
        *,
        progress: Progress | None = None,
    ) -> int:
        """Download ``remote``; ``write`` gets each block in the worker thread. Returns the byte count.

        The size is asked first (``SIZE``), so a missing file fails before any data connection and
        a short transfer is an error.
        """

        def job(ftp: ImplicitFTPS, report: Progress | None) -> int:
            total = ftp.size(remote)
            got = ftp.retrieve(remote, write, total, report)
            if got != total:
                raise FileTransferError(f"download of {remote} from {self.host} ended after {got} of {total} bytes")
            return got

        return await self._run("download", remote, job, progress)

    async def size(self, remote: str) -> int:
        return await self._run("SIZE", remote, lambda ftp, _: ftp.size(remote))

    async def list_lines(self, path: str) -> list[str]:
        """``LIST path``: the server's lines (unix ``ls -l`` on the printers)."""
        return await self._run("LIST", path, lambda ftp, _: ftp.lines(f"LIST {path}"))

    async def nlst(self, path: str) -> list[str]:
        """``NLST path``: names (P1/A1) or full paths (X1), as the server sends them."""
        return await self._run("NLST", path, lambda ftp, _: ftp.lines(f"NLST {path}"))

    async def delete(self, remote: str) -> None:
        await self._run("DELE", remote, lambda ftp, _: ftp.delete(remote))

    async def mkdir(self, remote: str) -> None:
        await self._run("MKD", remote, lambda ftp, _: ftp.mkd(remote))

    async def rmdir(self, remote: str) -> None:
        await self._run("RMD", remote, lambda ftp, _: ftp.rmd(remote))

    async def noop(self) -> None:
        await self._run("NOOP", None, lambda ftp, _: ftp.voidcmd("NOOP"))

    # -- machinery

    async def _run(
        self,
        action: str,
        path: str | None,
        job: Callable[[ImplicitFTPS, Progress | None], _T],
        progress: Progress | None = None,
    ) -> _T:
        if self._closed:
            raise NotConnectedError(f"the FTPS client for {self.host} is closed")
        loop = asyncio.get_running_loop()
        report: Progress | None = None
        if progress is not None:
            callback = progress

            def report(done: int, total: int | None) -> None:
                loop.call_soon_threadsafe(callback, done, total)

        async with self._lock:
            if self._closed:
                raise NotConnectedError(f"the FTPS client for {self.host} is closed")
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"bambu-ftps-{self.host}")
            future = self._executor.submit(self._in_thread, action, path, job, report)
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                ftp = self._ftp
                if ftp is not None:
                    ftp.interrupt()
                raise

    def _in_thread(
        self,
        action: str,
        path: str | None,
        job: Callable[[ImplicitFTPS, Progress | None], _T],
        report: Progress | None,
    ) -> _T:
        """Runs in the worker thread: open the connection if needed, run ``job``, map errors."""
        try:
            ftp = self._ensure()
            ftp.begin_operation(transfer=action in _TRANSFERS)
            return job(ftp, report)
        except BaseException as exc:
            if not _keeps_connection(exc):
                self._drop()
            if isinstance(exc, _LocalIOError) and isinstance(exc.__cause__, OSError):
                raise exc.__cause__ from None
            if isinstance(exc, Exception):
                raise _map_error(exc, host=self.host, action=action, path=path) from exc
            raise

    def _ensure(self) -> ImplicitFTPS:
        ftp: ImplicitFTPS | None = self._ftp
        if ftp is not None and not ftp.idle_and_open():
            _log.debug("FTPS %s: the printer closed the idle connection; reconnecting", self.host)
            self._drop()
            ftp = None
        if ftp is not None and time.monotonic() - ftp.last_used > _IDLE_PROBE_AFTER:
            try:
                ftp.begin_operation()
                ftp.voidcmd("NOOP")
                ftp.last_used = time.monotonic()
            except Exception:
                _log.debug("FTPS %s: idle connection is gone; reconnecting", self.host)
                self._drop()
                ftp = None
        if ftp is None:
            ftp = self.ftps_class(
                self._context,
                timeout=self.timeout,
                serial=self.serial,
                reuse_session=self.reuse_session,
                block_size=self.block_size,
                deadline=self.deadline,
            )
            try:
                ftp.open_session(self.host, self.port, self._access_code)
            except BaseException:
                ftp.close()
                raise
            self._ftp = ftp
            _log.debug("FTPS %s:%s connected (%s)", self.host, self.port, ftp.tls_version)
        return ftp

    def _drop(self) -> None:
        ftp, self._ftp = self._ftp, None
        if ftp is not None:
            with contextlib.suppress(Exception):
                ftp.close()
