"""The virtual printer's FTPS server: implicit TLS, vsftpd-like, one thread for the whole farm.

Real printers run vsftpd on port 990 with implicit TLS (the TLS handshake comes before the
``220`` greeting), one login (``bblp`` + the access code), passive mode only, ``PROT P``
required, and ``require_ssl_reuse=YES``: the TLS session of every data connection must resume
the control connection's session, otherwise the server answers ``522 SSL connection failed;
session reuse required ...`` and drops the data connection. This module reproduces that with
pyftpdlib (and pyOpenSSL for the TLS side).

Threading model
    A farm runs hundreds of virtual printers, so there is no thread per printer. One
    :class:`FtpsHub` owns one background thread that runs one pyftpdlib ``IOLoop``; every
    printer's :class:`FtpsService` puts its listening server on that loop. All pyftpdlib objects
    are created, used and closed on the hub thread only; the asyncio side talks to the hub with
    thread-safe futures (:meth:`FtpsHub.run`), so ``await service.start()`` never blocks the
    event loop. The thread starts with the first server and ends when the last server stops
    (or on :meth:`FtpsHub.close`).

Uploads
    ``STOR`` writes to a hidden temporary file next to the target and renames it over the target
    only when the upload completed. A refused data connection (no session reuse), an aborted
    transfer or a dropped session leaves the previous file, if any, untouched and no partial
    file behind. (Plain pyftpdlib, and by our reading vsftpd too, open the target before the data
    connection exists, so a refused upload used to leave an empty or truncated file.) A data
    connection reset mid-upload is answered ``426 Failure reading network stream.`` and keeps
    what arrived, as vsftpd does. After the rename of a complete upload, and before the ``226``
    reply goes out, ``on_upload`` is called **on the hub thread** with the path relative to the
    FTP root (``"cache/plate.gcode.3mf"``): keep it short and thread-safe, for example
    ``loop.call_soon_threadsafe(...)``.

Access codes are never logged: the password check reads ``handle.access_code`` at login time
and nothing stores or prints the password.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import hmac
import logging
import os
import secrets
import socket
import ssl
import stat
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, TypeVar

from OpenSSL import SSL

with warnings.catch_warnings():
    # pyftpdlib imports the stdlib asyncore/asynchat, deprecated since Python 3.6.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.exceptions import _RetryError
    from pyftpdlib.filesystems import AbstractedFS
    from pyftpdlib.handlers import DTPHandler, TLS_DTPHandler, TLS_FTPHandler
    from pyftpdlib.handlers.ftp.dispatchers import PassiveDTP
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.log import logger as _pyftpdlib_logger
    from pyftpdlib.servers import FTPServer

from bambulab.protocol.models import PrinterFamily
from bambulab.sim.service import Service

if TYPE_CHECKING:
    from bambulab.sim.service import PrinterHandle

__all__ = [
    "DEFAULT_BANNER",
    "LAYOUT",
    "LOGIN_USER",
    "REUSE_REQUIRED_REPLY",
    "FtpsHub",
    "FtpsService",
    "session_reuse_check_available",
]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

LOGIN_USER = "bblp"
#: vsftpd's reply when a data connection does not resume the control connection's TLS session.
REUSE_REQUIRED_REPLY = (
    "522 SSL connection failed; session reuse required: see require_ssl_reuse option in vsftpd.conf man page"
)
#: The greeting text after ``220``. What real printers send is not recorded; this is vsftpd's shape.
DEFAULT_BANNER = "(vsFTPd 3.0.3)"
#: Folders a printer's storage always has (FTP paths).
LAYOUT: tuple[str, ...] = ("cache", "model", "timelapse", "timelapse/thumbnail", "image", "logger")

# Commands vsftpd on the printers does not offer (or that the simulator refuses like the printer
# does): no MLSD/MLST (clients fall back to LIST), no REST/APPE (no resume), passive mode only.
_REFUSED = frozenset(
    {"MLSD", "MLST", "REST", "APPE", "EPSV", "EPRT", "PORT", "STOU", "MFMT", "REIN", "SITE",
     "SITE CHMOD", "SITE HELP"}
)
_PERMS = "elrdfmw"  # cwd, list, retrieve, delete, rename, mkdir, store
_UPLOAD_PREFIX = ".bambu-upload-"
_MAX_DEFERRED = 32  # commands queued while a failed login is being delayed
_MAX_POLL = 5.0  # seconds the hub waits at most in one poll
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SIX_MONTHS = 182 * 24 * 3600
_OWNER = "1000"  # printers list numeric owner and group 1000 (vsftpd without user-name lookups)
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT})
_DISCONNECT_ERRNOS = _RESET_ERRNOS | {errno.ENOTCONN, errno.ESHUTDOWN, errno.EBADF}


# --------------------------------------------------------------------------- TLS session reuse


@functools.cache
def _private_reuse_probe() -> Callable[[Any], int] | None:
    """``SSL_session_reused`` through pyOpenSSL's private binding, if this version still has it."""
    try:
        from OpenSSL import _util
    except ImportError:  # pragma: no cover - depends on the pyOpenSSL version
        return None
    probe = getattr(getattr(_util, "lib", None), "SSL_session_reused", None)
    return probe if callable(probe) else None


def _session_reused(conn: Any) -> bool | None:
    """Whether the TLS connection resumed a session; ``None`` when this pyOpenSSL cannot tell.

    Prefers a public ``Connection.session_reused()`` (newer pyOpenSSL may add one), then the
    OpenSSL function through pyOpenSSL's private binding.
    """
    public = getattr(conn, "session_reused", None)
    if callable(public):
        return bool(public())
    probe = _private_reuse_probe()
    handle = getattr(conn, "_ssl", None)
    if probe is None or handle is None:
        return None
    return bool(probe(handle))


def session_reuse_check_available() -> bool:
    """True when the server can tell whether a data connection resumed the control session.

    When False (a pyOpenSSL without either API), session reuse is not enforced and a warning is
    logged once.
    """
    return callable(getattr(SSL.Connection, "session_reused", None)) or _private_reuse_probe() is not None


@functools.cache
def _warn_reuse_unchecked() -> None:
    _log.warning("FTPS: this pyOpenSSL cannot tell session reuse; data connections are not checked")


_TLS_VERSIONS: dict[ssl.TLSVersion, int] = {
    ssl.TLSVersion.TLSv1_2: SSL.TLS1_2_VERSION,
    ssl.TLSVersion.TLSv1_3: SSL.TLS1_3_VERSION,
}


def _ssl_context(cert_file: str, key_file: str, max_version: ssl.TLSVersion | None) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    if max_version is not None and max_version is not ssl.TLSVersion.MAXIMUM_SUPPORTED:
        try:
            ctx.set_max_proto_version(_TLS_VERSIONS[max_version])
        except KeyError:
            raise ValueError(f"unsupported tls_max_version {max_version!r} (use TLSv1_2 or TLSv1_3)") from None
    # A peer closing without close_notify is an ordinary end of stream (as with the OpenSSL 1.1
    # on printers). Without this OpenSSL 3 answers with a fatal alert, which turns the client's
    # FIN into a reset and a clean upload into a "426".
    ctx.set_options(SSL.OP_NO_COMPRESSION | getattr(SSL, "OP_IGNORE_UNEXPECTED_EOF", 0))
    ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    ctx.use_certificate_chain_file(cert_file)
    ctx.use_privatekey_file(key_file)
    ctx.check_privatekey()
    return ctx


# --------------------------------------------------------------------------- the hub


class _Waker:
    """The read end of a socket pair in the IOLoop: wakes the hub when a job is queued."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._fileno = sock.fileno()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read_event(self) -> None:
        with contextlib.suppress(OSError):
            while self.sock.recv(4096):
                pass

    def handle_write_event(self) -> None:  # pragma: no cover - never registered for writing
        pass

    def handle_close(self) -> None:
        pass

    def handle_error(self) -> None:  # pragma: no cover - recv errors are suppressed above
        _log.exception("FTPS hub: waker error")

    def close(self) -> None:
        self.sock.close()


class FtpsHub:
    """One background thread running one pyftpdlib IOLoop for every FTPS server of the process.

    Thread-safe: :meth:`submit` (and its awaitable form :meth:`run`) queue a callable that runs
    on the hub thread and receives the IOLoop. The thread starts with the first job and ends
    by itself once no server is attached and no job is queued, so a hub costs nothing while
    every printer is offline. :meth:`close` stops every server still on the hub.
    """

    _default: ClassVar[FtpsHub | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *, name: str = "bambu-ftps-hub") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._jobs: deque[tuple[Callable[[Any], Any], concurrent.futures.Future[Any]]] = deque()
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._wake: socket.socket | None = None
        self._servers: set[_PrinterServer] = set()  # touched on the hub thread only

    @classmethod
    def default(cls) -> FtpsHub:
        """The process-wide hub used by services created without ``hub=``."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    @property
    def running(self) -> bool:
        """Whether the hub thread is alive now."""
        with self._lock:
            return self._thread is not None

    @property
    def server_count(self) -> int:
        """How many FTPS servers listen on this hub."""
        return len(self._servers)

    def in_hub_thread(self) -> bool:
        return threading.get_ident() == self._thread_id

    def submit(self, job: Callable[[Any], _T]) -> concurrent.futures.Future[_T]:
        """Run ``job(ioloop)`` on the hub thread (starting it if needed); return its future."""
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        with self._lock:
            self._jobs.append((job, future))
            if self._thread is None:
                self._start_locked()
            elif self._wake is not None:
                with contextlib.suppress(OSError):  # a full pipe already means "wake up"
                    self._wake.send(b"\0")
        return future

    async def run(self, job: Callable[[Any], _T]) -> _T:
        """Await ``job(ioloop)`` run on the hub thread without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(job))

    def close(self, timeout: float = 10.0) -> None:
        """Stop every server on this hub (closing their sessions) and end the thread.

        Blocking; from async code use ``await asyncio.to_thread(hub.close)``. Starting a service
        on the hub later starts a new thread.
        """
        if self.in_hub_thread():
            raise RuntimeError("FtpsHub.close() cannot be called from the hub thread")
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        self.submit(self._close_servers).result(timeout)
        thread.join(timeout)

    def _close_servers(self, _loop: Any) -> None:
        for server in list(self._servers):
            server.shutdown()

    def _attach(self, server: _PrinterServer) -> None:
        self._servers.add(server)

    def _detach(self, server: _PrinterServer) -> None:
        self._servers.discard(server)

    def _start_locked(self) -> None:
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._wake = writer
        thread = threading.Thread(target=self._main, args=(reader, writer), name=self._name, daemon=True)
        self._thread = thread
        thread.start()

    def _run_jobs(self, loop: Any) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    return
                job, future = self._jobs.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = job(loop)
            except BaseException as exc:  # handed to the waiting side
                future.set_exception(exc)
            else:
                future.set_result(result)

    def _main(self, reader: socket.socket, writer: socket.socket) -> None:
        self._thread_id = threading.get_ident()
        loop = IOLoop()
        loop.register(reader.fileno(), _Waker(reader), loop.READ)
        try:
            while True:
                self._run_jobs(loop)
                with self._lock:
                    if not self._jobs and not self._servers:
                        # From here on a submit() starts a fresh thread with its own loop.
                        self._thread = None
                        self._thread_id = None
                        self._wake = None
                        return
                try:
                    timeout = loop.sched.poll()
                    loop.poll(_MAX_POLL if timeout is None else min(timeout, _MAX_POLL))
                except Exception:  # never let one bad callback kill every printer's FTPS
                    _log.exception("FTPS hub: error in the IO loop")
        finally:
            with self._lock:
                if self._thread is threading.current_thread():  # only on an unexpected exit
                    self._thread = None
                    self._thread_id = None
                    self._wake = None
            with contextlib.suppress(Exception):
                loop.close()
            reader.close()
            writer.close()


# --------------------------------------------------------------------------- pyftpdlib parts


def _freeze(disp: Any) -> None:
    """Take a dispatcher off the poller: its socket stays open but nothing is read or sent."""
    if disp is None or getattr(disp, "_sim_frozen", None) is not None or disp._closed:
        return
    if disp._fileno is None or disp._fileno not in disp.ioloop.socket_map:
        return
    disp._sim_frozen = (disp._wanted_io_events, disp._current_io_events)
    disp.del_channel()


def _thaw(disp: Any) -> None:
    saved = getattr(disp, "_sim_frozen", None) if disp is not None else None
    if saved is None:
        return
    disp._sim_frozen = None
    if disp._closed or disp._fileno is None:
        return
    disp.ioloop.register(disp._fileno, disp, saved[1])
    disp._wanted_io_events, disp._current_io_events = saved


_TCP_CLOSE = 7  # Linux tcp_states.h


def _peer_reset(conn: Any) -> bool:
    """Whether the peer reset the TCP connection (Linux ``TCP_INFO``; False when unknown)."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return False
    try:
        info = conn.getsockopt(socket.IPPROTO_TCP, option, 8)
    except (OSError, ValueError, TypeError):
        return False
    return bool(info) and info[0] == _TCP_CLOSE


def _level(logfun: Any) -> int:
    if logfun in (_pyftpdlib_logger.warning, _pyftpdlib_logger.error, _pyftpdlib_logger.critical):
        return logging.WARNING
    return logging.DEBUG


class _Authorizer:
    """pyftpdlib's authorizer interface; the login itself is checked in ``ftp_PASS``."""

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        return perm in _PERMS

    def get_perms(self, username: str) -> str:
        return _PERMS

    def get_msg_login(self, username: str) -> str:
        return "Login successful."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass


class _PrinterFS(AbstractedFS):
    """The printer's storage as an FTP root that cannot be escaped.

    ``chdir`` never touches the process's working directory (pyftpdlib's does, which is not
    safe with other threads), dot files are hidden like vsftpd's default, and files opened for
    writing are temporary files that the handler renames into place when the upload completes.
    """

    def chdir(self, path: str) -> None:
        if not os.path.isdir(path):
            raise NotADirectoryError(path)
        self.cwd = self.fs2ftp(path)

    def listdir(self, path: str) -> list[str]:
        return [name for name in os.listdir(path) if not name.startswith(".")]

    def open(self, filename: str, mode: str) -> IO[bytes]:
        if any(flag in mode for flag in "wa+"):
            handler: _ControlHandler = self.cmd_channel
            return handler.begin_upload(filename)
        return open(filename, mode)  # pyftpdlib closes it after the transfer

    def format_list(self, basedir: str, listing: list[str], ignore_err: bool = True) -> Iterator[bytes]:
        """``ls -l`` lines as vsftpd writes them (GMT times, numeric owner and group)."""
        now = time.time()
        for name in listing:
            try:
                st = os.lstat(os.path.join(basedir, name))
            except OSError:
                if ignore_err:
                    continue
                raise
            t = time.gmtime(st.st_mtime)
            if st.st_mtime > now or now - st.st_mtime > _SIX_MONTHS:
                when = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:02d}  {t.tm_year}"
            else:
                when = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}"
            line = (
                f"{stat.filemode(st.st_mode)} {st.st_nlink:4d} {_OWNER:<8} {_OWNER:<8} "
                f"{st.st_size:8d} {when} {name}\r\n"
            )
            yield line.encode("utf-8", "replace")


class _PassiveDTP(PassiveDTP):
    def handle_timeout(self) -> None:
        if self.cmd_channel.sim_server.stalled:
            self.call_later(self.timeout, self.handle_timeout)
            return
        super().handle_timeout()


class _DataHandler(TLS_DTPHandler):
    """A data connection: refuses TLS that does not resume the control session (vsftpd)."""

    def __init__(self, sock: socket.socket, cmd_channel: _ControlHandler) -> None:
        self.timeout = cmd_channel.settings.data_timeout
        super().__init__(sock, cmd_channel)

    def handle_ssl_established(self) -> None:
        if not self.cmd_channel.settings.require_session_reuse:
            return
        reused = _session_reused(self.socket)
        if reused is None:
            _warn_reuse_unchecked()
            return
        if not reused:
            self.cmd_channel.respond(REUSE_REQUIRED_REPLY, logfun=_pyftpdlib_logger.warning)
            self._error = True  # drop it: no TLS close_notify, no further reply
            self.close()

    def handle_timeout(self) -> None:
        if self.cmd_channel.sim_server.stalled:
            return
        super().handle_timeout()

    def handle_failed_ssl_handshake(self) -> None:
        if self._initialized:  # a transfer was waiting for this connection: say it failed
            super().handle_failed_ssl_handshake()
        else:  # e.g. ftplib closing the data socket after a 550: nothing to report
            self.close()

    def recv(self, buffer_size: int) -> bytes:
        """Read upload data; a reset or TLS error mid-upload fails it with vsftpd's ``426``.

        pyftpdlib takes every way a data connection can end as the end of the file (``226``).
        vsftpd answers ``426 Failure reading network stream.`` when the read fails, keeping what
        it had written. The usual cause is a TLS 1.3 client that closes the data socket without
        reading the server's session ticket: its kernel then sends a reset (and may drop data it
        had not sent yet). Real printers show the same "426 after STOR" quirk.
        """
        if not self.receive or not self._ssl_established:
            return bytes(super().recv(buffer_size))
        try:
            data: bytes = self.socket.recv(buffer_size)
        except SSL.WantReadError as err:
            self._ssl_want_read = True
            raise _RetryError from err
        except SSL.WantWriteError as err:
            self._ssl_want_write = True
            raise _RetryError from err
        except SSL.ZeroReturnError:  # close_notify, or a FIN (OP_IGNORE_UNEXPECTED_EOF)
            self._end_of_upload()
            return b""
        except SSL.SysCallError as err:
            code, text = (*err.args, None, None)[:2]
            if code in _RESET_ERRNOS:
                self._upload_failed()
            elif code in _DISCONNECT_ERRNOS or text == "Unexpected EOF":  # no close_notify
                self._end_of_upload()
            else:
                raise
            return b""
        except SSL.Error:
            self._upload_failed()
            return b""
        if not data:
            self._end_of_upload()
        return data

    def _end_of_upload(self) -> None:
        # The errno of a reset is sometimes lost on the way up through OpenSSL ("Unexpected EOF"),
        # so ask the kernel: a FIN leaves the socket in CLOSE_WAIT, a reset in CLOSE.
        if _peer_reset(self.socket):
            self._upload_failed()
        else:
            DTPHandler.handle_close(self)

    def _upload_failed(self) -> None:
        self.transfer_finished = True  # keep what arrived, as vsftpd does, but say it failed
        self._sim_failed = True
        self._resp = ("426 Failure reading network stream.", _pyftpdlib_logger.warning)
        self.close()

    def close(self) -> None:
        if (
            not self._closed
            and self.receive
            and self.transfer_finished
            and self.file_obj is not None
            and not self.file_obj.closed
        ):
            # Put the upload in place (and tell the printer) before the 226 reply goes out, so a
            # client that acts on the 226 always finds the file.
            self.file_obj.close()
            notify = not getattr(self, "_sim_failed", False)
            if not self.cmd_channel.commit_upload(self.file_obj.name, notify=notify):
                self._resp = ("451 Failure writing to local file.", _pyftpdlib_logger.warning)
        super().close()


class _ControlHandler(TLS_FTPHandler):
    """One FTPS control connection, configured from its server's settings."""

    tls_control_required = True
    tls_data_required = True
    dtp_handler = _DataHandler
    passive_dtp = _PassiveDTP
    abstracted_fs = _PrinterFS
    authorizer = _Authorizer()
    use_sendfile = False
    authenticated: bool
    username: str
    attempted_logins: int
    _in_buffer: list[bytes]
    _in_buffer_len: int
    proto_cmds: ClassVar[dict[str, Any]] = {
        k: v for k, v in TLS_FTPHandler.proto_cmds.items() if k not in _REFUSED
    }

    def __init__(self, conn: socket.socket, server: _PrinterServer, ioloop: Any = None) -> None:
        self.sim_server = server
        self.settings: _Settings = server.settings
        self.timeout = self.settings.idle_timeout
        self.banner = self.settings.banner
        self.masquerade_address = self.settings.pasv_address
        self.max_login_attempts = self.settings.max_login_attempts
        self._uploads: dict[str, str] = {}
        self._deferred: deque[bytes] = deque()
        self._login_pending = False
        self._greeted = False
        super().__init__(conn, server, ioloop)
        self.ssl_context = self.settings.ssl_context
        self._current_type = "i"  # vsftpd never rewrites line ends, whatever TYPE says

    @classmethod
    def get_ssl_context(cls) -> Any:
        # Each server has its own context (its printer's certificate and session cache); the
        # handler takes it from the server in __init__ instead of a class attribute.
        return None

    # -- connection and greeting

    def handle(self) -> None:
        """Implicit TLS: start the handshake at once; the 220 greeting follows it."""
        self.secure_connection(self.ssl_context)

    def handle_ssl_established(self) -> None:
        if not self._greeted:
            self._greeted = True
            super().handle()  # FTPHandler.handle(): the 220 greeting

    def handle_timeout(self) -> None:
        if self.sim_server.stalled:  # a stalled printer does not time anybody out either
            self._idler = self.ioloop.call_later(self.timeout, self.handle_timeout, _errback=self.handle_error)
            return
        if self._ssl_accepting:  # no TLS yet: nothing can be said
            self.abort()
            return
        self.respond("421 Timeout.", logfun=_pyftpdlib_logger.info)  # vsftpd's idle_session_timeout
        self.close_when_done()

    def set_frozen(self, frozen: bool) -> None:
        for disp in (self, self.data_channel, self._dtp_acceptor):
            (_freeze if frozen else _thaw)(disp)

    def abort(self) -> None:
        """Close the session and its data connection at once, with no reply and no TLS goodbye."""
        if self._closed:
            return
        data_channel = getattr(self, "data_channel", None)
        if data_channel is not None:
            data_channel._error = True
        self._error = True
        self.close()

    def close(self) -> None:
        super().close()
        if self._closed:
            for tmp in list(self._uploads):
                self.discard_upload(tmp)
            self.sim_server.session_closed(self)

    # -- logging: quiet by default (a farm has hundreds of printers), never the password

    def log(self, msg: str, logfun: Any = None) -> None:
        level = _level(logfun)
        if _log.isEnabledFor(level):
            peer = f"{getattr(self, 'remote_ip', '')}:{getattr(self, 'remote_port', '')}"
            _log.log(level, "FTPS %s %s [%s] %s", self.settings.serial, peer, getattr(self, "username", ""), msg)

    def logline(self, msg: str, logfun: Any = None) -> None:
        self.log(msg, logfun)

    def log_cmd(self, cmd: str, arg: str, respcode: int, respstr: str) -> None:
        if cmd == "PASS":
            arg = "******"
        super().log_cmd(cmd, arg, respcode, respstr)

    # -- command dispatch

    def found_terminator(self) -> None:
        if self._login_pending:
            # vsftpd sleeps after a wrong password; commands sent meanwhile wait their turn.
            line = b"".join(self._in_buffer)
            self._in_buffer = []
            self._in_buffer_len = 0
            if len(self._deferred) >= _MAX_DEFERRED:
                self.abort()
                return
            self._deferred.append(line)
            return
        super().found_terminator()

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        if cmd not in self.proto_cmds and cmd[-4:] not in ("ABOR", "STAT", "QUIT"):
            self.logline(f"<- {cmd} (unknown)")
            self.respond("500 Unknown command.")
            return
        if not self.authenticated and cmd in self.proto_cmds and self.proto_cmds[cmd]["auth"]:
            self.respond("530 Please login with USER and PASS.")
            return
        super().pre_process_command(line, cmd, arg)

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        if cmd == "PASV" and not self._prot:
            self.respond("522 Data connections must be encrypted.")
            return
        super().process_command(cmd, *args, **kwargs)

    # -- login

    def ftp_USER(self, line: str) -> None:
        if self.authenticated:
            self.respond("530 Can't change to another user.")
            return
        self.username = line
        self.respond("331 Please specify the password.")

    def ftp_PASS(self, line: str) -> None:
        if self.authenticated:
            self.respond("230 Already logged in.")
            return
        if not self.username:
            self.respond("503 Login with USER first.")
            return
        user, self.username = self.username, ""
        code = self.settings.handle.access_code
        if user == LOGIN_USER and hmac.compare_digest(line.encode(), code.encode()):
            self.username = user
            self.authenticated = True
            self.attempted_logins = 0
            self.fs = self.abstracted_fs(self.settings.root, self)
            self.respond("230 Login successful.")
            self.log(f"USER {user!r} logged in.")
            return
        self._login_pending = True
        self.call_later(self.settings.login_fail_delay, self._finish_failed_login)

    def _finish_failed_login(self) -> None:
        if self._closed:
            return
        if self.sim_server.stalled:  # frozen: answer once the stall is over
            self.call_later(max(self.settings.login_fail_delay, 0.05), self._finish_failed_login)
            return
        self._login_pending = False
        self.attempted_logins += 1
        self.respond("530 Login incorrect.", logfun=_pyftpdlib_logger.info)
        if self.attempted_logins >= self.max_login_attempts:
            self._deferred.clear()
            self.close_when_done()
            return
        while self._deferred and not self._login_pending and not self._closed:
            line = self._deferred.popleft()
            self._in_buffer = [line]
            self._in_buffer_len = len(line)
            super().found_terminator()

    # -- commands (arguments of file-system commands arrive as real paths inside the root)

    def ftp_TYPE(self, line: str) -> None:
        kind = line.upper().replace(" ", "")
        if kind in ("A", "AN", "L7"):
            self.respond("200 Switching to ASCII mode.")
        elif kind in ("I", "L8"):
            self.respond("200 Switching to Binary mode.")
        else:
            self.respond("500 Unrecognised TYPE command.")
            return
        # vsftpd's defaults (ascii_upload_enable=NO, ascii_download_enable=NO): bytes are never
        # rewritten, whatever TYPE says.
        self._current_type = "i"

    def ftp_CWD(self, path: str) -> None:
        try:
            self.fs.chdir(path)
        except OSError:
            self.respond("550 Failed to change directory.")
        else:
            self.respond("250 Directory successfully changed.")

    def ftp_CDUP(self, path: str) -> None:
        self.ftp_CWD(path)

    def ftp_SIZE(self, path: str) -> None:
        try:
            if not os.path.isfile(path):
                raise FileNotFoundError(path)
            size = os.path.getsize(path)
        except OSError:
            self.respond("550 Could not get file size.")
        else:
            self.respond(f"213 {size}")

    def ftp_RETR(self, file: str) -> None:
        if not os.path.isfile(file):
            self.respond("550 Failed to open file.")
            return
        super().ftp_RETR(file)

    def ftp_STOR(self, file: str, mode: str = "w") -> None:
        if os.path.isdir(file) or not os.path.isdir(os.path.dirname(file)):
            self.respond("553 Could not create file.")
            return
        super().ftp_STOR(file, mode)

    def ftp_DELE(self, path: str) -> None:
        try:
            if not os.path.isfile(path) or os.path.islink(path):
                raise FileNotFoundError(path)
            os.remove(path)
        except OSError:
            self.respond("550 Delete operation failed.")
        else:
            self.respond("250 Delete operation successful.")

    def ftp_MKD(self, path: str) -> None:
        try:
            os.mkdir(path)
        except OSError:
            self.respond("550 Create directory operation failed.")
        else:
            name = self.fs.fs2ftp(path).replace('"', '""')
            self.respond(f'257 "{name}" created')

    def ftp_RMD(self, path: str) -> None:
        try:
            if os.path.realpath(path) == os.path.realpath(self.settings.root):
                raise PermissionError(path)
            os.rmdir(path)
        except OSError:
            self.respond("550 Remove directory operation failed.")
        else:
            self.respond("250 Remove directory operation successful.")

    def ftp_NLST(self, path: str) -> None:
        try:
            if os.path.isdir(path):
                names = sorted(self.fs.listdir(path))
                folder = path
            else:
                os.lstat(path)
                folder, name = os.path.split(path)
                names = [name]
        except OSError:
            self.respond("550 Failed to open directory.")
            return
        if self.settings.nlst_full_paths:
            names = [self.fs.fs2ftp(os.path.join(folder, n)) for n in names]
        data = "".join(f"{n}\r\n" for n in names).encode("utf-8", "replace")
        self.push_dtp_data(data, cmd="NLST")

    # -- uploads: a temporary file, renamed into place when complete

    def begin_upload(self, final: str) -> IO[bytes]:
        folder = os.path.dirname(final)
        tmp = os.path.join(folder, f"{_UPLOAD_PREFIX}{secrets.token_hex(6)}.part")
        fh = open(tmp, "xb")  # noqa: SIM115 - the data channel closes it
        self._uploads[tmp] = final
        return fh

    def commit_upload(self, tmp: str, *, notify: bool = True) -> bool:
        final = self._uploads.pop(tmp, None)
        if final is None:
            return False
        try:
            os.replace(tmp, final)
        except OSError:
            _log.warning("FTPS %s: could not move an upload into place", self.settings.serial)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return False
        if notify:
            self.settings.uploaded(os.path.relpath(final, self.settings.root).replace(os.sep, "/"))
        return True

    def discard_upload(self, tmp: str) -> None:
        if self._uploads.pop(tmp, None) is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def on_incomplete_file_received(self, file: str) -> None:
        self.discard_upload(file)


@dataclass(frozen=True)
class _Settings:
    handle: PrinterHandle
    serial: str
    root: str
    ssl_context: Any
    banner: str
    idle_timeout: float
    data_timeout: float
    login_fail_delay: float
    max_login_attempts: int
    max_clients: int
    pasv_address: str | None
    nlst_full_paths: bool
    require_session_reuse: bool
    uploaded: Callable[[str], None]


class _PrinterServer(FTPServer):
    """One printer's listening socket on the hub's IOLoop, with its sessions."""

    def __init__(self, address: tuple[str, int], *, ioloop: Any, settings: _Settings, hub: FtpsHub) -> None:
        self.settings = settings
        self.sessions: set[_ControlHandler] = set()
        self.parked: list[socket.socket] = []
        self.stalled = False
        self.closed = False
        self._hub = hub
        super().__init__(address, _ControlHandler, ioloop=ioloop, backlog=64)
        hub._attach(self)

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    @property
    def client_count(self) -> int:
        return len(self.sessions) + len(self.parked)

    def _accept_new_cons(self) -> bool:
        # pyftpdlib counts every socket of the (shared) loop; limits are per printer here.
        return True

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        if self.closed:
            sock.close()
            return
        if self.stalled:  # TCP is accepted; TLS and the greeting never come
            self.parked.append(sock)
            return
        if self.settings.max_clients and len(self.sessions) >= self.settings.max_clients:
            sock.close()
            return
        handler: _ControlHandler | None = None
        try:
            handler = _ControlHandler(sock, self, ioloop=self.ioloop)
            if not handler.connected:
                return
            self.sessions.add(handler)
            handler.handle()
        except Exception:
            _log.exception("FTPS %s: could not set up a session", self.settings.serial)
            if handler is not None:
                handler.abort()
            else:
                sock.close()

    def session_closed(self, handler: _ControlHandler) -> None:
        self.sessions.discard(handler)

    def apply_stall(self, stalled: bool) -> None:
        self.stalled = stalled
        for handler in list(self.sessions):
            handler.set_frozen(stalled)
        if not stalled:
            parked, self.parked = self.parked, []
            for sock in parked:
                self.handle_accepted(sock, None)

    def drop_all(self) -> None:
        for handler in list(self.sessions):
            handler.abort()
        parked, self.parked = self.parked, []
        for sock in parked:
            sock.close()

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self.close()  # the listener only: never close_all(), the loop is shared
        self.drop_all()
        self._hub._detach(self)


# --------------------------------------------------------------------------- the service


class FtpsService(Service):
    """A virtual printer's FTPS server (implicit TLS), like the printer's vsftpd on port 990.

    ``handle.storage`` is the FTP root; ``/cache``, ``/model``, ``/timelapse/thumbnail``,
    ``/image`` and ``/logger`` are created on start. Login is ``bblp`` with
    ``handle.access_code`` (read at each login). ``on_upload(relative_path)`` is called on the
    hub thread after each completed ``STOR``, before the ``226`` reply.

    Options beyond the printer's defaults: ``tls_max_version`` caps TLS (``ssl.TLSVersion``;
    TLS 1.2 is always the minimum), ``pasv_address`` is the address the ``227`` reply advertises
    (default: the address the client connected to), ``nlst_full_paths`` makes NLST return
    absolute paths (default: as the model does, X1 family only), ``login_fail_delay`` is how long
    a wrong password waits before its ``530`` (vsftpd: 1 s).
    """

    def __init__(
        self,
        handle: PrinterHandle,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hub: FtpsHub | None = None,
        tls_max_version: ssl.TLSVersion | None = None,
        on_upload: Callable[[str], None] | None = None,
        banner: str = DEFAULT_BANNER,
        idle_timeout: float = 300.0,
        data_timeout: float = 300.0,
        login_fail_delay: float = 1.0,
        max_login_attempts: int = 3,
        max_clients: int = 64,
        pasv_address: str | None = None,
        nlst_full_paths: bool | None = None,
        require_session_reuse: bool = True,
    ) -> None:
        if tls_max_version is not None and tls_max_version not in (*_TLS_VERSIONS, ssl.TLSVersion.MAXIMUM_SUPPORTED):
            raise ValueError(f"unsupported tls_max_version {tls_max_version!r} (use TLSv1_2 or TLSv1_3)")
        self._handle = handle
        self._host = host
        self._port = port
        self._hub = hub if hub is not None else FtpsHub.default()
        self._tls_max = tls_max_version
        self.on_upload = on_upload
        self._banner = banner
        self._idle_timeout = idle_timeout
        self._data_timeout = data_timeout
        self._login_fail_delay = login_fail_delay
        self._max_login_attempts = max_login_attempts
        self._max_clients = max_clients
        self._pasv_address = pasv_address
        self._nlst_full_paths = nlst_full_paths
        self._require_reuse = require_session_reuse
        self._stalled = False
        self._server: _PrinterServer | None = None
        self._ssl_ctx: SSL.Context | None = None
        self._lifecycle = asyncio.Lock()

    # -- state

    @property
    def hub(self) -> FtpsHub:
        return self._hub

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        server = self._server
        return server is not None and not server.closed

    @property
    def client_count(self) -> int:
        server = self._server
        return server.client_count if server is not None and not server.closed else 0

    @property
    def stalled(self) -> bool:
        """When True the server accepts TCP but never greets, and live sessions stop answering."""
        return self._stalled

    @stalled.setter
    def stalled(self, value: bool) -> None:
        self._stalled = bool(value)
        server = self._server
        if server is not None and not server.closed:
            server.stalled = self._stalled  # new connections see it at once
            self._hub.submit(functools.partial(_apply_stall, server, self._stalled))

    async def set_stalled(self, value: bool) -> None:
        """Like setting :attr:`stalled`, but return once every live session is frozen/thawed."""
        self._stalled = bool(value)
        server = self._server
        if server is not None and not server.closed:
            server.stalled = self._stalled
            await self._hub.run(functools.partial(_apply_stall, server, self._stalled))

    # -- lifecycle

    async def start(self) -> None:
        async with self._lifecycle:
            if self.running:
                return
            server = await self._hub.run(self._start_on_hub)
            self._server = server
            self._port = server.port

    async def stop(self) -> None:
        async with self._lifecycle:
            server, self._server = self._server, None
            if server is None or server.closed:
                return
            await self._hub.run(functools.partial(_shutdown, server))

    async def drop_clients(self) -> None:
        server = self._server
        if server is None or server.closed:
            return
        await self._hub.run(functools.partial(_drop, server))

    def _uploaded(self, relative: str) -> None:
        callback = self.on_upload
        if callback is None:
            return
        try:
            callback(relative)
        except Exception:
            _log.exception("FTPS %s: on_upload callback failed", self._handle.serial)

    def _start_on_hub(self, loop: Any) -> _PrinterServer:
        root = Path(self._handle.storage).resolve()
        for folder in LAYOUT:
            (root / folder).mkdir(parents=True, exist_ok=True)
        if self._ssl_ctx is None:
            with self._handle.tls.temporary_files() as (cert_file, key_file):
                self._ssl_ctx = _ssl_context(cert_file, key_file, self._tls_max)
        nlst_full = self._nlst_full_paths
        if nlst_full is None:
            nlst_full = self._handle.model.family is PrinterFamily.X1
        settings = _Settings(
            handle=self._handle,
            serial=self._handle.serial,
            root=str(root),
            ssl_context=self._ssl_ctx,
            banner=self._banner,
            idle_timeout=self._idle_timeout,
            data_timeout=self._data_timeout,
            login_fail_delay=self._login_fail_delay,
            max_login_attempts=self._max_login_attempts,
            max_clients=self._max_clients,
            pasv_address=self._pasv_address,
            nlst_full_paths=nlst_full,
            require_session_reuse=self._require_reuse,
            uploaded=self._uploaded,
        )
        server = _PrinterServer((self._host, self._port), ioloop=loop, settings=settings, hub=self._hub)
        server.stalled = self._stalled
        return server


def _apply_stall(server: _PrinterServer, stalled: bool, _loop: Any) -> None:
    if not server.closed:
        server.apply_stall(stalled)


def _shutdown(server: _PrinterServer, _loop: Any) -> None:
    server.shutdown()


def _drop(server: _PrinterServer, _loop: Any) -> None:
    if not server.closed:
        server.drop_all()
