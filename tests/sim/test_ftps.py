"""The virtual printer's FTPS server, driven only by independent clients (stdlib ftplib, ssl, socket).

Every client here is written in this file, the way third-party scripts talk to a real printer:
implicit TLS on connect, ``PROT P``, and data connections that resume the control connection's
TLS session. Nothing imports bambulab's own client code.
"""

from __future__ import annotations

import asyncio
import ftplib
import io
import logging
import os
import re
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from simtools import ImplicitFTPS

from bambulab.protocol.models import PrinterModel, model_by_code
from bambulab.sim.ca import LeafCertificate, SimCA
from bambulab.sim.ftps import (
    REUSE_REQUIRED_REPLY,
    FtpsHub,
    FtpsService,
    session_reuse_check_available,
)
from bambulab.sim.state import Dynamic

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 5.0
HUB_NAME = "test-ftps-hub"


# --------------------------------------------------------------------------- an independent client


def client_context(
    ca: SimCA, *, maximum: ssl.TLSVersion | None = None, minimum: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = ca.client_context()  # trusts the simulator's CA; the CN is the serial, not the host
    if maximum is not None:
        ctx.maximum_version = maximum
    if minimum is not None:
        ctx.minimum_version = minimum
    return ctx


def open_ftp(
    port: int, ctx: ssl.SSLContext, *, code: str | None = None, reuse_session: bool = True
) -> ImplicitFTPS:
    ftp = ImplicitFTPS(ctx, reuse_session=reuse_session)
    try:
        ftp.connect("127.0.0.1", port)
        if code is not None:
            ftp.login("bblp", code)
            ftp.prot_p()
    except BaseException:
        ftp.close()
        raise
    return ftp


def store(ftp: ftplib.FTP, path: str, data: bytes) -> str:
    return ftp.storbinary(f"STOR {path}", io.BytesIO(data))


def fetch(ftp: ftplib.FTP, path: str) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {path}", out.write)
    return out.getvalue()


def listing(ftp: ftplib.FTP, path: str = "") -> list[str]:
    lines: list[str] = []
    ftp.retrlines(f"LIST {path}".strip(), lines.append)
    return lines


def reply_code(call: Callable[[], object]) -> str:
    """The three-digit reply code of a command expected to fail."""
    with pytest.raises(ftplib.Error) as info:
        call()
    return str(info.value)[:3]


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def part_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".bambu-upload-")]


# --------------------------------------------------------------------------- fixtures


@dataclass
class FakePrinter:
    """A stand-in for the virtual printer: just what the FTPS service reads."""

    serial: str
    access_code: str
    tls: LeafCertificate
    storage: Path
    name: str = "Virtual P1S"
    model: PrinterModel = field(default_factory=lambda: model_by_code("P1S"))
    host: str = "127.0.0.1"
    dynamic: Dynamic = field(default_factory=Dynamic)


@pytest.fixture(scope="module")
def ca() -> SimCA:
    return SimCA()


@pytest.fixture
def hub() -> Iterator[FtpsHub]:
    h = FtpsHub(name=HUB_NAME)
    yield h
    h.close()


@pytest.fixture
def printer(tmp_path: Path, ca: SimCA) -> FakePrinter:
    serial = "01P00A000000001"
    return FakePrinter(serial=serial, access_code="12345678", tls=ca.issue(serial), storage=tmp_path / "sd")


@pytest.fixture
async def service(printer: FakePrinter, hub: FtpsHub) -> AsyncIterator[FtpsService]:
    svc = FtpsService(printer, hub=hub, login_fail_delay=0.05)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
def ctx(ca: SimCA) -> ssl.SSLContext:
    return client_context(ca)


# --------------------------------------------------------------------------- login and TLS


async def test_implicit_tls_greeting_and_login(
    service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext
) -> None:
    def body() -> None:
        ftp = open_ftp(service.port, ctx)
        try:
            assert (ftp.welcome or "").startswith("220 ")
            cert = ftp.tls.getpeercert()
            assert cert is not None
            assert (("commonName", printer.serial),) in cert["subject"]
            assert ftp.login("bblp", printer.access_code).startswith("230")
            assert ftp.sendcmd("PBSZ 0").startswith("200")
            assert ftp.sendcmd("PROT P").startswith("200")
            assert ftp.pwd() == "/"
            assert ftp.sendcmd("NOOP").startswith("200")
            assert ftp.sendcmd("TYPE I").startswith("200")
            assert ftp.quit().startswith("221")
        finally:
            ftp.close()

    await asyncio.to_thread(body)


async def test_wrong_access_code_is_530_and_three_failures_disconnect(
    service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext
) -> None:
    def body() -> None:
        ftp = open_ftp(service.port, ctx)
        try:
            assert reply_code(lambda: ftp.login("bblp", "87654321")) == "530"
            assert reply_code(lambda: ftp.login("root", printer.access_code)) == "530"
            assert ftp.login("bblp", printer.access_code).startswith("230")  # third try is fine
        finally:
            ftp.close()
        ftp = open_ftp(service.port, ctx)
        try:
            for _ in range(3):
                assert reply_code(lambda: ftp.login("bblp", "nope")) == "530"
            with pytest.raises((EOFError, OSError, ftplib.Error)):
                ftp.sendcmd("NOOP")  # the server hung up after the third failure
        finally:
            ftp.close()

    await asyncio.to_thread(body)


async def test_commands_need_login_and_pasv_needs_prot_p(
    service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext
) -> None:
    def body() -> None:
        ftp = open_ftp(service.port, ctx)
        try:
            assert reply_code(ftp.pwd) == "530"
            assert reply_code(lambda: ftp.sendcmd("PASV")) == "530"
            ftp.login("bblp", printer.access_code)
            assert reply_code(lambda: ftp.sendcmd("PASV")) == "522"  # no PROT P yet
            ftp.prot_p()
            reply = ftp.sendcmd("PASV")
            host, port = ftplib.parse227(reply)  # noqa: S321 - parsing a reply
            assert host == "127.0.0.1"  # the control connection's host
            assert 0 < port < 65536
        finally:
            ftp.close()

    await asyncio.to_thread(body)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls12", "tls13"])
async def test_tls_versions_with_session_reuse(
    service: FtpsService, printer: FakePrinter, ca: SimCA, version: ssl.TLSVersion
) -> None:
    ctx = client_context(ca, maximum=version, minimum=version)
    payload = os.urandom(200_000)

    def body() -> None:
        ftp = open_ftp(service.port, ctx, code=printer.access_code)
        try:
            assert ftp.tls.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
            assert store(ftp, "v.bin", payload).startswith("226")
            assert fetch(ftp, "v.bin") == payload
            assert ftp.nlst("/") != []
            assert ftp.data_reused == [True, True, True]
        finally:
            ftp.close()

    await asyncio.to_thread(body)


async def test_server_tls_cap(printer: FakePrinter, hub: FtpsHub, ca: SimCA) -> None:
    svc = FtpsService(printer, hub=hub, tls_max_version=ssl.TLSVersion.TLSv1_2)
    await svc.start()
    try:

        def body() -> None:
            ftp = open_ftp(svc.port, client_context(ca), code=printer.access_code)
            try:
                assert ftp.tls.version() == "TLSv1.2"
                assert store(ftp, "capped.bin", b"abc").startswith("226")
                assert ftp.data_reused == [True]
            finally:
                ftp.close()
            only13 = client_context(ca, minimum=ssl.TLSVersion.TLSv1_3)
            with pytest.raises(ssl.SSLError):
                open_ftp(svc.port, only13)

        await asyncio.to_thread(body)
    finally:
        await svc.stop()


# --------------------------------------------------------------------------- session reuse


def test_session_reuse_can_be_checked() -> None:
    assert session_reuse_check_available()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls12", "tls13"])
async def test_data_connection_without_session_reuse_gets_522(
    service: FtpsService, printer: FakePrinter, ca: SimCA, version: ssl.TLSVersion
) -> None:
    root = printer.storage
    ctx = client_context(ca, maximum=version)

    def body() -> None:
        (root / "keep.3mf").write_bytes(b"original")
        ftp = open_ftp(service.port, ctx, code=printer.access_code, reuse_session=False)
        try:
            for command in ("STOR keep.3mf", "STOR new.3mf", "RETR keep.3mf", "LIST"):
                conn = ftp.transfercmd(command)  # 150, then a TLS handshake without the session
                try:
                    with pytest.raises(ftplib.error_perm) as info:
                        ftp.getresp()
                    assert str(info.value) == REUSE_REQUIRED_REPLY
                finally:
                    conn.close()
            assert ftp.data_reused == [False] * 4
            assert ftp.sendcmd("NOOP").startswith("200")  # the control connection lives on
            assert ftp.size("keep.3mf") == len(b"original")
        finally:
            ftp.close()
        # A refused upload neither truncates the old file nor leaves a new or partial one.
        assert (root / "keep.3mf").read_bytes() == b"original"
        assert not (root / "new.3mf").exists()
        assert part_files(root) == []

    await asyncio.to_thread(body)


# --------------------------------------------------------------------------- commands


async def test_layout_exists_after_start(service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext) -> None:
    for folder in ("cache", "model", "timelapse", "timelapse/thumbnail", "image", "logger"):
        assert (printer.storage / folder).is_dir(), folder

    def body() -> None:
        ftp = open_ftp(service.port, ctx, code=printer.access_code)
        try:
            dirs = {line.split()[-1] for line in listing(ftp, "/") if line.startswith("d")}
            assert {"cache", "model", "timelapse", "image", "logger"} <= dirs
            assert ftp.nlst("/timelapse") == ["thumbnail"]
        finally:
            ftp.close()

    await asyncio.to_thread(body)


LIST_LINE = re.compile(
    r"^(?P<mode>[-dl][-rwxsStT]{9}) +(?P<links>\d+) (?P<owner>\S+) +(?P<group>\S+) +(?P<size>\d+) "
    r"(?P<month>[A-Z][a-z]{2}) (?P<day>\d{2}) (?P<when>\d{2}:\d{2}| \d{4}) (?P<name>.+)$"
)


async def test_list_is_unix_ls_l(service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext) -> None:
    old = printer.storage / "old.3mf"
    old.write_bytes(b"12345")
    old.chmod(0o644)
    stamp = 1592352000  # 2020-06-17 00:00:00 UTC
    os.utime(old, (stamp, stamp))
    (printer.storage / "cache" / "new.gcode").write_bytes(b"x" * 1632221)
    (printer.storage / ".hidden").write_bytes(b"dot files are not listed")

    def body() -> None:
        ftp = open_ftp(service.port, ctx, code=printer.access_code)
        try:
            root = listing(ftp)
            assert "-rw-r--r--    1 1000     1000            5 Jun 17  2020 old.3mf" in root
            for line in root:
                assert LIST_LINE.match(line), line
            assert not any(".hidden" in line for line in root)
            names = [line.split()[-1] for line in root]
            assert names == sorted(names)
            (line,) = listing(ftp, "/cache")
            m = LIST_LINE.match(line)
            assert m is not None
            assert m["mode"].startswith("-")
            assert (m["size"], m["name"], m["owner"], m["group"]) == ("1632221", "new.gcode", "1000", "1000")
            assert ":" in m["when"]  # recent files show the time, not the year
            assert LIST_LINE.match(listing(ftp, "/old.3mf")[0])  # LIST of a single file
            assert reply_code(lambda: listing(ftp, "/missing")) == "550"
        finally:
            ftp.close()

    await asyncio.to_thread(body)


async def test_nlst_bare_names_on_p1(service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext) -> None:
    (printer.storage / "a.3mf").write_bytes(b"a")
    (printer.storage / "cache" / "b.gcode.3mf").write_bytes(b"b")
    (printer.storage / ".secret").write_bytes(b"s")

    def body() -> None:
        ftp = open_ftp(service.port, ctx, code=printer.access_code)
        try:
            assert ftp.nlst() == ["a.3mf", "cache", "image", "logger", "model", "timelapse"]
            assert ftp.nlst("/cache") == ["b.gcode.3mf"]
            assert ftp.nlst("/cache/b.gcode.3mf") == ["b.gcode.3mf"]
        finally:
            ftp.close()

    await asyncio.to_thread(body)


async def test_nlst_full_paths_on_x1(tmp_path: Path, ca: SimCA, hub: FtpsHub) -> None:
    serial = "00M00A000000001"
    x1 = FakePrinter(serial=serial, access_code="87654321", tls=ca.issue(serial), storage=tmp_path / "x1",
                     model=model_by_code("X1C"))
    svc = FtpsService(x1, hub=hub)
    await svc.start()
    try:
        (x1.storage / "cache" / "b.gcode.3mf").write_bytes(b"b")

        def body() -> None:
            ftp = open_ftp(svc.port, client_context(ca), code=x1.access_code)
            try:
                assert ftp.nlst("/cache") == ["/cache/b.gcode.3mf"]
            finally:
                ftp.close()

        await asyncio.to_thread(body)
    finally:
        await svc.stop()


async def test_stor_size_retr_round_trip(service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)

    def body() -> None:
        ftp = open_ftp(service.port, ctx, code=printer.access_code)
        try:
            assert store(ftp, "/cache/part.gcode.3mf", payload).startswith("226")
            assert ftp.size("/cache/part.gcode.3mf") == len(payload)
            assert fetch(ftp, "/cache/part.gcode.3mf") == payload
            assert store(ftp, "/cache/part.gcode.3mf", b"short").startswith("226")  # overwrite
            assert ftp.size("/cache/part.gcode.3mf") == 5
            assert re.fullmatch(r"213 \d{14}", ftp.sendcmd("MDTM /cache/part.gcode.3mf"))
        finally:
            ftp.close()

    await asyncio.to_thread(body)
    assert (printer.storage / "cache" / "part.gcode.3mf").read_bytes() == b"short"
    assert part_files(printer.storage) == []


async def test_type_a_does_not_rewrite_bytes(service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext) -> None:
    def body() -> None:
        ftp = open_ftp(service.port, ctx, code=printer.access_code)
        try:
            assert ftp.sendcmd("TYPE A").startswith("200")
            assert reply_code(lambda: ftp.size("/cache")) == "550"
            ftp.storlines("STOR lines.gcode", io.BytesIO(b"G28\nG1 X1\n"))  # sent as CRLF lines
            assert ftp.size("lines.gcode") == len(b"G28\r\nG1 X1\r\n")  # SIZE works in TYPE A
        finally:
            ftp.close()

    await asyncio.to_thread(body)
    assert (printer.storage / "lines.gcode").read_bytes() == b"G28\r\nG1 X1\r\n"


async def test_dele_mkd_rmd_cwd_cdup_pwd(service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext) -> None:
    root = printer.storage

    def body() -> None:
        ftp = open_ftp(service.port, ctx, code=printer.access_code)
        try:
            assert ftp.mkd("jobs") == "/jobs"
            assert (root / "jobs").is_dir()
            assert reply_code(lambda: ftp.mkd("jobs")) == "550"  # exists already
            assert ftp.cwd("jobs").startswith("250")
            assert ftp.pwd() == "/jobs"
            assert store(ftp, "one.3mf", b"1").startswith("226")  # relative to the cwd
            assert (root / "jobs" / "one.3mf").read_bytes() == b"1"
            assert reply_code(lambda: ftp.rmd("/jobs")) == "550"  # not empty
            assert ftp.sendcmd("CDUP").startswith("250")
            assert ftp.pwd() == "/"
            assert ftp.delete("jobs/one.3mf").startswith("250")
            assert not (root / "jobs" / "one.3mf").exists()
            assert reply_code(lambda: ftp.delete("jobs")) == "550"  # DELE does not remove folders
            assert ftp.rmd("jobs").startswith("250")
            assert not (root / "jobs").exists()
            assert reply_code(lambda: ftp.cwd("jobs")) == "550"
            assert reply_code(lambda: ftp.rmd("/")) == "550"
            assert root.is_dir()
        finally:
            ftp.close()

    await asyncio.to_thread(body)
    assert Path.cwd().exists()  # CWD never touches the process's working directory


async def test_missing_files_are_550(service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext) -> None:
    def body() -> None:
        ftp = open_ftp(service.port, ctx, code=printer.access_code)
        try:
            assert reply_code(lambda: fetch(ftp, "nope.3mf")) == "550"
            assert reply_code(lambda: ftp.size("nope.3mf")) == "550"
            assert reply_code(lambda: ftp.delete("nope.3mf")) == "550"
            assert reply_code(lambda: ftp.sendcmd("MDTM nope.3mf")) == "550"
            assert reply_code(lambda: store(ftp, "/no/such/dir/x.3mf", b"x")) == "553"
        finally:
            ftp.close()

    await asyncio.to_thread(body)


async def test_mlsd_rest_appe_epsv_port_refused(
    service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext
) -> None:
    (printer.storage / "a.3mf").write_bytes(b"abc")

    def body() -> None:
        ftp = open_ftp(service.port, ctx, code=printer.access_code)
        try:
            assert reply_code(lambda: list(ftp.mlsd("/"))) in ("500", "502")
            assert reply_code(lambda: ftp.sendcmd("MLST a.3mf")) in ("500", "502")
            assert reply_code(lambda: ftp.sendcmd("REST 1")) in ("500", "502")
            assert reply_code(lambda: ftp.sendcmd("APPE a.3mf")) in ("500", "502")
            assert reply_code(lambda: ftp.sendcmd("EPSV")) in ("500", "502")
            assert reply_code(lambda: ftp.sendcmd("PORT 127,0,0,1,200,10")) in ("500", "502")
            assert fetch(ftp, "a.3mf") == b"abc"  # RETR still sends the whole file
            features = ftp.sendcmd("FEAT")
            assert "MLST" not in features and "REST" not in features and "EPSV" not in features
            assert "SIZE" in features
        finally:
            ftp.close()

    await asyncio.to_thread(body)


async def test_paths_cannot_escape_the_root(
    service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (printer.storage / "link").symlink_to(outside, target_is_directory=True)

    def body() -> None:
        ftp = open_ftp(service.port, ctx, code=printer.access_code)
        try:
            assert ftp.cwd("../..").startswith("250")  # clamps at the root, like a chroot
            assert ftp.pwd() == "/"
            assert reply_code(lambda: fetch(ftp, "../outside/secret.txt")) == "550"
            assert reply_code(lambda: fetch(ftp, "/link/secret.txt")) == "550"
            assert reply_code(lambda: listing(ftp, "/link")) == "550"
            assert reply_code(lambda: ftp.cwd("/link")) == "550"
            assert reply_code(lambda: ftp.size("/link/secret.txt")) == "550"
            assert reply_code(lambda: ftp.delete("/link/secret.txt")) == "550"
            assert reply_code(lambda: store(ftp, "/link/dropped.txt", b"x")) == "550"
            assert store(ftp, "../../escaped.txt", b"x").startswith("226")  # lands in the root
        finally:
            ftp.close()

    await asyncio.to_thread(body)
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert not (outside / "dropped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert (printer.storage / "escaped.txt").read_bytes() == b"x"


async def test_upload_closed_without_tls_shutdown(service: FtpsService, printer: FakePrinter, ca: SimCA) -> None:
    """Clients told not to ``unwrap()`` after STOR (the A1 hangs on it) just close the socket.

    With TLS 1.2 that is a clean end of file. With TLS 1.3 the client leaves the server's session
    ticket unread, so its kernel may send a reset: then the server says 426 like real printers
    do ("benign" when all the data had arrived), and keeps whatever arrived.
    """
    payload = os.urandom(50_000)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_context(ca, maximum=version, minimum=version)

        def body(name: str, ctx: ssl.SSLContext) -> str:
            ftp = open_ftp(service.port, ctx, code=printer.access_code)
            try:
                conn = ftp.transfercmd(f"STOR {name}")
                conn.sendall(payload)
                conn.close()  # no close_notify
                try:
                    return ftp.voidresp()
                except ftplib.error_temp as exc:
                    return str(exc)
            finally:
                ftp.close()

        name = f"no-unwrap-{version.name}.bin"
        reply = await asyncio.to_thread(body, name, ctx)
        stored = (printer.storage / name).read_bytes()
        if version is ssl.TLSVersion.TLSv1_2:
            assert reply.startswith("226")
        if reply.startswith("226"):
            assert stored == payload
        else:
            assert reply == "426 Failure reading network stream."
            assert payload.startswith(stored)


async def test_reset_during_upload_is_426(printer: FakePrinter, hub: FtpsHub, ctx: ssl.SSLContext) -> None:
    uploads: list[str] = []
    svc = FtpsService(printer, hub=hub, on_upload=uploads.append)
    await svc.start()
    payload = os.urandom(100_000)
    try:

        def body() -> str:
            ftp = open_ftp(svc.port, ctx, code=printer.access_code)
            try:
                conn = ftp.transfercmd("STOR reset.bin")
                conn.sendall(payload)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # a reset, not a FIN
                with pytest.raises(ftplib.error_temp) as info:
                    ftp.voidresp()
                assert ftp.sendcmd("NOOP").startswith("200")
                return str(info.value)
            finally:
                ftp.close()

        assert await asyncio.to_thread(body) == "426 Failure reading network stream."
    finally:
        await svc.stop()
    assert payload.startswith((printer.storage / "reset.bin").read_bytes())  # vsftpd keeps the part
    assert uploads == []  # a failed upload is not announced to the printer
    assert part_files(printer.storage) == []


async def test_pasv_address_can_be_zero(printer: FakePrinter, hub: FtpsHub, ctx: ssl.SSLContext) -> None:
    svc = FtpsService(printer, hub=hub, pasv_address="0.0.0.0")  # noqa: S104 - only advertised
    await svc.start()
    try:

        def body() -> None:
            ftp = open_ftp(svc.port, ctx, code=printer.access_code)
            try:
                assert ftp.sendcmd("PASV").split("(")[1].startswith("0,0,0,0,")
                assert store(ftp, "z.3mf", b"z").startswith("226")  # ftplib uses the control host
            finally:
                ftp.close()

        await asyncio.to_thread(body)
    finally:
        await svc.stop()


# --------------------------------------------------------------------------- hooks and logging


async def test_on_upload_called_from_the_hub_after_the_file_is_in_place(
    printer: FakePrinter, hub: FtpsHub, ctx: ssl.SSLContext
) -> None:
    seen: list[tuple[str, str, bytes]] = []

    def on_upload(relative: str) -> None:
        seen.append((relative, threading.current_thread().name, (printer.storage / relative).read_bytes()))
        if relative.endswith("boom.3mf"):
            raise RuntimeError("a broken hook must not break the server")

    svc = FtpsService(printer, hub=hub, on_upload=on_upload)
    await svc.start()
    try:

        def body() -> None:
            ftp = open_ftp(svc.port, ctx, code=printer.access_code)
            try:
                assert store(ftp, "/cache/plate.gcode.3mf", b"plate").startswith("226")
                assert store(ftp, "boom.3mf", b"boom").startswith("226")
                assert fetch(ftp, "boom.3mf") == b"boom"  # no hook call for downloads
            finally:
                ftp.close()

        await asyncio.to_thread(body)
    finally:
        await svc.stop()
    assert seen == [("cache/plate.gcode.3mf", HUB_NAME, b"plate"), ("boom.3mf", HUB_NAME, b"boom")]


async def test_access_code_never_logged(
    service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="pyftpdlib")
    caplog.set_level(logging.DEBUG, logger="bambulab.sim.ftps")

    def body() -> None:
        ftp = open_ftp(service.port, ctx)
        try:
            assert reply_code(lambda: ftp.login("bblp", printer.access_code[::-1])) == "530"
            ftp.login("bblp", printer.access_code)
            ftp.prot_p()
            store(ftp, "x.3mf", b"x")
        finally:
            ftp.close()

    await asyncio.to_thread(body)
    assert any(r.name == "bambulab.sim.ftps" and "logged in" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert printer.access_code not in record.getMessage()
        assert printer.access_code[::-1] not in record.getMessage()


async def test_access_code_is_read_at_each_login(
    service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext
) -> None:
    old_code = printer.access_code
    printer.access_code = "99990000"  # changed on the printer's screen
    assert reply_code(lambda: open_ftp(service.port, ctx, code=old_code)) == "530"
    ftp = await asyncio.to_thread(open_ftp, service.port, ctx, code="99990000")
    try:
        assert await asyncio.to_thread(ftp.pwd) == "/"
    finally:
        ftp.close()


# --------------------------------------------------------------------------- faults and lifecycle


async def test_idle_control_connection_is_dropped(printer: FakePrinter, hub: FtpsHub, ctx: ssl.SSLContext) -> None:
    svc = FtpsService(printer, hub=hub, idle_timeout=0.3)
    await svc.start()
    try:
        ftp = await asyncio.to_thread(open_ftp, svc.port, ctx, code=printer.access_code)
        try:
            with pytest.raises(ftplib.error_temp, match=r"^421 Timeout"):
                await asyncio.to_thread(ftp.getresp)  # arrives unasked after 0.3 s idle
            assert await asyncio.to_thread(wait_until, lambda: svc.client_count == 0)
        finally:
            ftp.close()
    finally:
        await svc.stop()


async def test_client_limit_per_printer(printer: FakePrinter, hub: FtpsHub, ctx: ssl.SSLContext) -> None:
    svc = FtpsService(printer, hub=hub, max_clients=1)
    await svc.start()
    try:
        first = await asyncio.to_thread(open_ftp, svc.port, ctx, code=printer.access_code)
        try:
            with pytest.raises((OSError, EOFError)):
                await asyncio.to_thread(open_ftp, svc.port, ctx)  # closed before TLS
            assert await asyncio.to_thread(first.pwd) == "/"
        finally:
            first.close()
    finally:
        await svc.stop()


async def test_drop_clients_closes_live_sessions(
    service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext
) -> None:
    ftp = await asyncio.to_thread(open_ftp, service.port, ctx, code=printer.access_code)
    try:
        assert service.client_count == 1
        await service.drop_clients()
        assert service.client_count == 0
        with pytest.raises((EOFError, OSError, ftplib.Error)):
            await asyncio.to_thread(ftp.sendcmd, "NOOP")
    finally:
        ftp.close()

    def again() -> str:
        ftp2 = open_ftp(service.port, ctx, code=printer.access_code)
        try:
            return ftp2.pwd()
        finally:
            ftp2.close()

    assert await asyncio.to_thread(again) == "/"  # still listening


async def test_dropped_upload_leaves_no_partial_file(
    service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext
) -> None:
    (printer.storage / "big.bin").write_bytes(b"previous")
    ftp = await asyncio.to_thread(open_ftp, service.port, ctx, code=printer.access_code)
    try:
        conn = await asyncio.to_thread(ftp.transfercmd, "STOR big.bin")
        await asyncio.to_thread(conn.sendall, b"x" * 100_000)
        assert await asyncio.to_thread(wait_until, lambda: bool(part_files(printer.storage)))
        await service.drop_clients()
        conn.close()
    finally:
        ftp.close()
    assert await asyncio.to_thread(wait_until, lambda: not part_files(printer.storage))
    assert (printer.storage / "big.bin").read_bytes() == b"previous"


async def test_stalled_server_never_greets(service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext) -> None:
    service.stalled = True  # the plain setter, as the printer's fault injection uses it
    assert service.stalled

    def no_greeting() -> None:
        raw = socket.create_connection(("127.0.0.1", service.port), timeout=TIMEOUT)  # TCP works
        try:
            raw.settimeout(0.5)
            with pytest.raises(TimeoutError):
                ctx.wrap_socket(raw, server_hostname="printer")  # TLS (and so the 220) never comes
        finally:
            raw.close()

    sock = socket.create_connection(("127.0.0.1", service.port), timeout=TIMEOUT)
    try:
        await asyncio.to_thread(no_greeting)
        assert await asyncio.to_thread(wait_until, lambda: service.client_count >= 1)  # held, not refused
        await service.drop_clients()  # drops held connections too
        assert service.client_count == 0
        assert await asyncio.to_thread(sock.recv, 1) == b""
    finally:
        sock.close()
    await service.set_stalled(False)

    def login() -> str:
        ftp = open_ftp(service.port, ctx, code=printer.access_code)
        try:
            return ftp.pwd()
        finally:
            ftp.close()

    assert await asyncio.to_thread(login) == "/"


async def test_stall_freezes_a_live_session(service: FtpsService, printer: FakePrinter, ctx: ssl.SSLContext) -> None:
    ftp = await asyncio.to_thread(open_ftp, service.port, ctx, code=printer.access_code)
    try:
        await service.set_stalled(True)
        ftp.putcmd("NOOP")
        readable, _, _ = await asyncio.to_thread(select.select, [ftp.tls], [], [], 0.5)
        assert readable == []  # no answer while stalled, and the socket stays open
        assert ftp.tls.pending() == 0
        await service.set_stalled(False)
        assert (await asyncio.to_thread(ftp.getresp)).startswith("200")  # answered once thawed
        assert await asyncio.to_thread(ftp.pwd) == "/"
    finally:
        ftp.close()


async def test_stop_then_start_on_the_same_port(
    service: FtpsService, printer: FakePrinter, hub: FtpsHub, ctx: ssl.SSLContext
) -> None:
    port = service.port
    ftp = await asyncio.to_thread(open_ftp, port, ctx, code=printer.access_code)
    await service.stop()
    assert not service.running
    assert service.client_count == 0
    with pytest.raises((EOFError, OSError, ftplib.Error)):
        await asyncio.to_thread(ftp.sendcmd, "NOOP")  # stop() closed the session too
    ftp.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    assert await asyncio.to_thread(wait_until, lambda: not hub.running)  # last server gone: no thread

    await service.start()
    assert service.port == port
    assert hub.running

    def login() -> bytes:
        ftp2 = open_ftp(port, ctx, code=printer.access_code)
        try:
            store(ftp2, "again.3mf", b"again")
            return fetch(ftp2, "again.3mf")
        finally:
            ftp2.close()

    assert await asyncio.to_thread(login) == b"again"


async def test_two_printers_on_one_hub_are_isolated(tmp_path: Path, ca: SimCA, hub: FtpsHub) -> None:
    printers = [
        FakePrinter(serial=s, access_code=code, tls=ca.issue(s), storage=tmp_path / s)
        for s, code in (("01P00A000000011", "11111111"), ("01P00A000000022", "22222222"))
    ]
    services = [FtpsService(p, hub=hub, login_fail_delay=0.05) for p in printers]
    for svc in services:
        await svc.start()
    try:
        assert hub.server_count == 2
        assert [t.name for t in threading.enumerate()].count(HUB_NAME) == 1
        a, b = printers
        sa, sb = services

        def body() -> None:
            ctx = client_context(ca)
            assert reply_code(lambda: open_ftp(sa.port, ctx, code=b.access_code)) == "530"
            fa = open_ftp(sa.port, ctx, code=a.access_code)
            fb = open_ftp(sb.port, ctx, code=b.access_code)
            try:
                assert fa.tls.getpeercert() != fb.tls.getpeercert()
                store(fa, "only-a.3mf", b"a")
                store(fb, "only-b.3mf", b"b")
                assert "only-a.3mf" in fa.nlst() and "only-b.3mf" not in fa.nlst()
                assert "only-b.3mf" in fb.nlst() and "only-a.3mf" not in fb.nlst()
            finally:
                fa.close()
                fb.close()

        await asyncio.to_thread(body)
        assert (a.storage / "only-a.3mf").exists() and not (b.storage / "only-a.3mf").exists()
        assert (b.storage / "only-b.3mf").exists() and not (a.storage / "only-b.3mf").exists()
        await sa.stop()
        assert hub.server_count == 1 and hub.running  # the other printer keeps its server
    finally:
        for svc in services:
            await svc.stop()


async def test_service_calls_do_not_block_the_event_loop(service: FtpsService, hub: FtpsHub) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        hub.submit(lambda _loop: time.sleep(0.3))  # keep the hub thread busy
        await service.drop_clients()  # queued behind it: must await, not block
        assert ticks >= 10
    finally:
        task.cancel()


async def test_hub_close_stops_its_servers(printer: FakePrinter, hub: FtpsHub, ctx: ssl.SSLContext) -> None:
    svc = FtpsService(printer, hub=hub)
    await svc.start()
    port = svc.port
    await asyncio.to_thread(hub.close)
    assert not hub.running
    assert not svc.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    await svc.stop()  # harmless afterwards
    await svc.start()  # and the hub comes back on demand
    assert svc.port == port
    assert hub.server_count == 1
    await svc.stop()


def test_rejects_unknown_tls_cap(printer: FakePrinter, hub: FtpsHub) -> None:
    with pytest.raises(ValueError, match="tls_max_version"):
        FtpsService(printer, hub=hub, tls_max_version=ssl.TLSVersion.TLSv1_1)


# --------------------------------------------------------------------------- TLS cap of whole printers


def test_printers_cap_ftps_at_tls12_by_default_on_every_model() -> None:
    """Real printers' vsftpd negotiates TLS 1.2; a client offering 1.3 gets 1.2 from every model.

    ``tls_max_version`` is the quirk switch back to 1.3 (``--quirk tls_max_version=1.3`` on the CLI).
    """
    from simtools import SimThread

    from bambulab.protocol.models import MODELS
    from bambulab.sim import Quirks

    st = SimThread(seed=7)
    try:
        ctx = st.sim.ca.client_context()  # offers TLS 1.2 and 1.3
        payload = os.urandom(100_000)

        def negotiated(host: str, port: int, code: str) -> str:
            ftp = ImplicitFTPS(ctx)
            ftp.connect(host, port)
            try:
                version = ftp.tls.version()
                ftp.login("bblp", code)
                ftp.prot_p()
                ftp.storbinary("STOR big.bin", io.BytesIO(payload))
                assert ftp.size("big.bin") == len(payload)
                return str(version)
            finally:
                ftp.close()

        for model in MODELS:
            p = st.add(model=model.name)
            assert p.ftps is not None
            assert negotiated(p.host, p.ftps.port, p.access_code) == "TLSv1.2", model.name
        p13 = st.add(model="P1S", quirks={"tls_max_version": 1.3})  # what --quirk tls_max_version=1.3 gives
        p13b = st.add(model="X1C", quirks=Quirks(tls_max_version=ssl.TLSVersion.TLSv1_3))
        for p in (p13, p13b):
            assert p.ftps is not None
            assert negotiated(p.host, p.ftps.port, p.access_code) == "TLSv1.3"
        with pytest.raises(ValueError, match="tls_max_version"):
            Quirks(tls_max_version="1.1")
    finally:
        st.close()
