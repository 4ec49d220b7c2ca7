"""The FTPS client against hostile and strict servers (a small stdlib-ssl FTPS server on 127.0.0.1).

* A server that never ends its ``220-`` greeting, or a ``LIST``, must cost bounded memory and
  time and give a clear error (issue 12, point 9).
* A server with stock OpenSSL 3 behaviour (no ``OP_IGNORE_UNEXPECTED_EOF``) treats an upload that
  ends without TLS ``close_notify`` as cut short; the client sends one, and does not wait for the
  server's answer to it (issue 12, point 10).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from bambulab.exceptions import BambuConnectionError, BambuTimeoutError
from bambulab.sim.ca import SimCA
from bambulab.transports.ftps import MAX_REPLY_LINES, FtpsClient

SERIAL = "01S00C000000042"
CODE = "12345678"


class HostileFtps:
    """Implicit FTPS on 127.0.0.1, one thread per connection, behaving as ``mode`` says.

    ``greeting``: an endless multi-line 220 greeting. ``list``: an endless LIST. ``slowlist``: a
    LIST that trickles forever. ``retr``: a RETR that sends more than SIZE said. ``strict``: STOR
    stores only when the upload ends with close_notify (else 426), and never answers it.
    """

    def __init__(self, context: ssl.SSLContext, mode: str) -> None:
        self.context, self.mode = context, mode
        self.stored: dict[str, bytes] = {}
        self.sent = 0
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._session, args=(raw,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _session(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError), contextlib.ExitStack() as stack:
            stack.enter_context(raw)
            raw.settimeout(10)
            tls = stack.enter_context(self.context.wrap_socket(raw, server_side=True))
            if self.mode == "greeting":
                line = b"220-" + b"welcome " * 9 + b"\r\n"
                while not self._stop.is_set():
                    tls.sendall(line * 20)
                    self.sent += len(line) * 20
            tls.sendall(b"220 ready\r\n")
            reader = stack.enter_context(tls.makefile("rb"))
            listener: socket.socket | None = None
            while not self._stop.is_set():
                line = reader.readline(1024)
                if not line:
                    return
                verb, _, arg = line.decode().strip().partition(" ")
                verb = verb.upper()
                if verb == "USER":
                    tls.sendall(b"331 password\r\n")
                elif verb == "PASS":
                    tls.sendall(b"230 in\r\n")
                elif verb in {"PBSZ", "PROT", "TYPE", "NOOP"}:
                    tls.sendall(b"200 ok\r\n")
                elif verb == "PASV":
                    listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
                    listener.settimeout(10)
                    port = listener.getsockname()[1]
                    tls.sendall(f"227 passive (127,0,0,1,{port >> 8},{port & 255})\r\n".encode())
                elif verb == "SIZE":
                    if self.mode == "retr":
                        tls.sendall(b"213 10\r\n")
                    elif arg in self.stored:
                        tls.sendall(f"213 {len(self.stored[arg])}\r\n".encode())
                    else:
                        tls.sendall(b"550 no such file\r\n")
                elif verb in {"LIST", "RETR", "STOR"} and listener is not None:
                    tls.sendall(b"150 here it comes\r\n")
                    conn, _ = listener.accept()
                    listener.close()
                    with conn:
                        # suppress_ragged_eofs=False: a FIN without close_notify raises, as in vsftpd on OpenSSL 3
                        data = self.context.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
                        self._data(verb, arg, data, tls)
                else:
                    tls.sendall(b"502 no\r\n")

    def _data(self, verb: str, arg: str, data: ssl.SSLSocket, control: ssl.SSLSocket) -> None:
        with data:
            if verb in {"LIST", "RETR"}:
                block = b"-rw-r--r-- 1 root root 12345 Jan 01 00:00 model.3mf\r\n" * 200
                while not self._stop.is_set():
                    if self.mode == "slowlist":
                        data.sendall(block[:200])
                        time.sleep(0.01)
                    else:
                        data.sendall(block)
                    self.sent += len(block)
                return
            received = bytearray()
            try:
                while chunk := data.recv(65536):  # b"" only after close_notify
                    received += chunk
            except ssl.SSLEOFError:  # a FIN without close_notify: OpenSSL 3 calls it truncation
                control.sendall(b"426 Failure reading network stream.\r\n")
                return
            self.stored[arg] = bytes(received)
            control.sendall(b"226 Transfer complete.\r\n")
            # Never answers the close_notify, and keeps the data connection open until the client closes.
            with contextlib.suppress(OSError):
                data.settimeout(10)
                data.recv(1)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for thread in self._threads:
            thread.join(10)


@pytest.fixture(scope="module")
def ca() -> SimCA:
    return SimCA()


@pytest.fixture(scope="module")
def server_context(ca: SimCA, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    cert, key = ca.issue(SERIAL).write_files(Path(tmp_path_factory.mktemp("cert")))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)  # stock OpenSSL 3: EOF is truncation
    return ctx


@contextlib.contextmanager
def hostile(server_context: ssl.SSLContext, mode: str) -> Iterator[HostileFtps]:
    server = HostileFtps(server_context, mode)
    try:
        yield server
    finally:
        server.close()


def client(ca: SimCA, server: HostileFtps, **kwargs: float) -> FtpsClient:
    return FtpsClient("127.0.0.1", CODE, ssl_context=ca.client_context(), port=server.port, serial=SERIAL,
                      timeout=5, **kwargs)


async def measured(coro: object) -> tuple[BaseException | None, float, int]:
    """Run ``coro``; return what it raised, the seconds it took and the peak of new allocations."""
    tracemalloc.start()
    started = time.monotonic()
    error: BaseException | None = None
    try:
        await coro  # type: ignore[misc]
    except Exception as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, time.monotonic() - started, peak


async def test_an_endless_greeting_is_refused_with_bounded_memory(
    ca: SimCA, server_context: ssl.SSLContext
) -> None:
    with hostile(server_context, "greeting") as server:
        ftps = client(ca, server)
        error, seconds, peak = await measured(ftps.connect())
        await ftps.close()
    assert isinstance(error, BambuConnectionError) and "too much" in str(error)
    assert f"{MAX_REPLY_LINES} lines" in str(error) and CODE not in str(error)
    assert seconds < 5 and peak < 4 * 1024 * 1024


async def test_an_endless_listing_is_refused_with_bounded_memory(ca: SimCA, server_context: ssl.SSLContext) -> None:
    with hostile(server_context, "list") as server:
        async with client(ca, server) as ftps:
            error, seconds, peak = await measured(ftps.list_lines("/"))
    assert isinstance(error, BambuConnectionError) and "listing of more than" in str(error)
    assert seconds < 20 and peak < 48 * 1024 * 1024
    assert server.sent > 16 * 1024 * 1024  # the server really was sending more


async def test_a_listing_that_trickles_forever_hits_the_overall_deadline(
    ca: SimCA, server_context: ssl.SSLContext
) -> None:
    with hostile(server_context, "slowlist") as server:
        async with client(ca, server, deadline=1.0) as ftps:
            error, seconds, _ = await measured(ftps.list_lines("/"))
    assert isinstance(error, BambuTimeoutError) and "longer than 1 s" in str(error)
    assert 0.9 < seconds < 5


async def test_a_download_longer_than_its_size_is_refused(ca: SimCA, server_context: ssl.SSLContext) -> None:
    with hostile(server_context, "retr") as server:
        async with client(ca, server) as ftps:
            got = bytearray()
            error, seconds, _ = await measured(ftps.download("/model.3mf", got.extend))
    assert isinstance(error, BambuConnectionError) and "more than the 10 bytes SIZE announced" in str(error)
    assert len(got) <= 10 and seconds < 5


async def test_upload_ends_with_close_notify_for_a_strict_server_that_never_answers_it(
    ca: SimCA, server_context: ssl.SSLContext
) -> None:
    payload = bytes(range(256)) * 400  # 100 KiB
    with hostile(server_context, "strict") as server:
        async with client(ca, server) as ftps:
            started = time.monotonic()
            sent = await ftps.upload(payload, "/model.3mf")
            seconds = time.monotonic() - started
            assert await ftps.size("/model.3mf") == len(payload)  # the connection is still good
    assert sent == len(payload)
    assert server.stored["/model.3mf"] == payload
    assert seconds < 4  # the unanswered close_notify is not waited for
