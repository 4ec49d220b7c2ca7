"""PrinterFiles and the FTPS transport, over real sockets against the virtual printer's FTPS server."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import bambulab.files as files_module
from bambulab.endpoint import PrinterEndpoint
from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuTimeoutError,
    FileTransferError,
    NotConnectedError,
    SessionReuseError,
)
from bambulab.files import PrinterFiles, RemoteFile, nlst_names, parse_list_line, parse_listing, remote_path
from bambulab.sim import Simulator, VirtualPrinter
from bambulab.transports.ftps import FtpsClient, ImplicitFTPS

pytestmark = pytest.mark.timeout(20)

TIMEOUT = 3.0


# --------------------------------------------------------------------------- fixtures (local to this file)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(seed=7) as simulator:
        yield simulator


@pytest.fixture
async def vp(sim: Simulator) -> VirtualPrinter:
    return await sim.add_printer(model="P1S")


@pytest.fixture
def ctx(sim: Simulator) -> ssl.SSLContext:
    return sim.ca.client_context()


def connect(vp: VirtualPrinter, ctx: ssl.SSLContext, **kwargs: Any) -> Any:
    assert vp.ftps is not None
    kwargs.setdefault("timeout", TIMEOUT)
    return PrinterFiles.connect(vp.host, vp.access_code, ssl_context=ctx, port=vp.ftps.port, **kwargs)


def local_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


# --------------------------------------------------------------------------- uploads


async def test_upload_bytes_with_progress_and_size_verification(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    calls: list[tuple[int, int | None]] = []
    async with connect(vp, ctx) as files:
        result = await files.upload(payload, "/cache/plate.gcode.3mf", progress=lambda s, t: calls.append((s, t)))
        assert result == RemoteFile("plate.gcode.3mf", "/cache/plate.gcode.3mf", len(payload), False, None)
        assert await files.size("cache/plate.gcode.3mf") == len(payload)
        assert files.client.data_reused and all(files.client.data_reused)
    assert (vp.storage / "cache" / "plate.gcode.3mf").read_bytes() == payload
    assert len(calls) >= 2
    assert calls[-1] == (len(payload), len(payload))
    assert [s for s, _ in calls] == sorted(s for s, _ in calls)


async def test_upload_local_file_into_a_folder_and_file_objects(
    vp: VirtualPrinter, ctx: ssl.SSLContext, tmp_path: Path
) -> None:
    local = tmp_path / "benchy.gcode.3mf"
    local.write_bytes(b"x" * 300_000)
    seen: list[tuple[int, int | None]] = []
    async with connect(vp, ctx) as files:
        result = await files.upload(local, "/", progress=lambda s, t: seen.append((s, t)))
        assert result.path == "/benchy.gcode.3mf"
        assert result.size == 300_000
        with local.open("rb") as fh:
            assert (await files.upload(fh, "/model/copy.bin")).size == 300_000
        with pytest.raises(ValueError, match="name a file"):
            await files.upload(b"abc", "/cache/")
    assert seen[-1] == (300_000, 300_000)
    assert (vp.storage / "benchy.gcode.3mf").read_bytes() == local.read_bytes()
    assert (vp.storage / "model" / "copy.bin").stat().st_size == 300_000


async def test_local_file_errors_stay_local_errors(vp: VirtualPrinter, ctx: ssl.SSLContext, tmp_path: Path) -> None:
    async with connect(vp, ctx) as files:
        with pytest.raises(FileNotFoundError):
            await files.upload(tmp_path / "missing.3mf", "/cache/missing.3mf")
        await files.upload(b"abc", "/cache/abc.bin")

        def full_disk(_: bytes) -> None:
            raise OSError(28, "No space left on device")

        with pytest.raises(OSError, match="No space left") as info:
            await files.client.download("/cache/abc.bin", full_disk)
        assert not isinstance(info.value, BambuConnectionError)
        assert await files.download("/cache/abc.bin") == b"abc"  # and the printer side is fine


async def test_upload_size_mismatch_is_a_file_transfer_error(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    assert vp.ftps is not None
    # The printer's storage changes the file between the upload and SIZE (a full card, say).
    def shrink(rel: str) -> None:
        (vp.storage / rel).write_bytes(b"short")

    vp.ftps.on_upload = shrink
    async with connect(vp, ctx) as files:
        with pytest.raises(FileTransferError, match="did not verify"):
            await files.upload(b"y" * 10_000, "/cache/x.bin")
        assert (await files.upload(b"z" * 10_000, "/cache/y.bin", verify=False)).size == 10_000


async def test_concurrent_operations_share_one_connection_in_turn(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    blobs = {f"/cache/f{i}.bin": os.urandom(200_000 + i) for i in range(6)}
    async with connect(vp, ctx) as files:
        await asyncio.gather(*(files.upload(data, path) for path, data in blobs.items()))
        sizes = await asyncio.gather(*(files.size(path) for path in blobs))
        contents = await asyncio.gather(*(files.download(path) for path in blobs))
    assert sizes == [len(d) for d in blobs.values()]
    assert contents == list(blobs.values())


# --------------------------------------------------------------------------- listings


@pytest.mark.parametrize(("model", "full_paths"), [("P1S", False), ("X1C", True)])
async def test_list_and_nlst_on_p1_and_x1(sim: Simulator, ctx: ssl.SSLContext, model: str, full_paths: bool) -> None:
    vp = await sim.add_printer(model=model)
    vp.put_file("model/a.gcode.3mf", b"a" * 1234)
    vp.put_file("model/with space.3mf", b"b" * 10)
    (vp.storage / "model" / "sub").mkdir()
    async with connect(vp, ctx) as files:
        raw = await files.client.nlst("/model")
        assert any(n.startswith("/model/") for n in raw) is full_paths  # the two printers differ ...
        assert sorted(await files.names("/model")) == ["a.gcode.3mf", "sub", "with space.3mf"]  # ... we don't
        entries = {e.name: e for e in await files.list("/model/")}
    assert set(entries) == {"a.gcode.3mf", "with space.3mf", "sub"}
    a = entries["a.gcode.3mf"]
    assert (a.path, a.size, a.is_dir) == ("/model/a.gcode.3mf", 1234, False)
    assert a.modified is not None and abs((a.modified - datetime.now(UTC)).total_seconds()) < 2 * 86400
    assert entries["with space.3mf"].size == 10
    assert entries["sub"].is_dir and entries["sub"].path == "/model/sub"


async def test_list_falls_back_to_nlst_and_size(
    vp: VirtualPrinter, ctx: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    vp.put_file("model/a.bin", b"a" * 77)
    (vp.storage / "model" / "folder").mkdir()
    monkeypatch.setattr(files_module, "parse_list_line", lambda *a, **k: None)  # a LIST format we can't read
    async with connect(vp, ctx) as files:
        entries = {e.name: e for e in await files.list("/model")}
    assert entries == {
        "a.bin": RemoteFile("a.bin", "/model/a.bin", 77, False, None),
        "folder": RemoteFile("folder", "/model/folder", None, True, None),
    }


async def test_listing_a_missing_folder(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    async with connect(vp, ctx) as files:
        with pytest.raises(FileTransferError, match="no such file"):
            await files.list("/nope")
        assert not await files.exists("/nope")
        assert await files.exists("/timelapse")
        assert await files.exists("/")


def test_parse_list_lines() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    f = parse_list_line("-rw-r--r--    1 1000     1000      1632221 Jun 17  2024 name with  spaces.3mf", "/", now=now)
    assert f == RemoteFile("name with  spaces.3mf", "/name with  spaces.3mf", 1632221, False,
                           datetime(2024, 6, 17, tzinfo=UTC))
    d = parse_list_line("drwxr-xr-x    2 1000     1000         4096 Feb 28 09:05 cache", "/", now=now)
    assert d is not None and d.is_dir and d.modified == datetime(2025, 2, 28, 9, 5, tzinfo=UTC)
    # a recent-format date after "now" is last year's
    late = parse_list_line("-rw-r--r-- 1 0 0 5 Dec 31 23:59 old.txt", "/x", now=now)
    assert late is not None and late.path == "/x/old.txt"
    assert late.modified == datetime(2024, 12, 31, 23, 59, tzinfo=UTC)
    link = parse_list_line("lrwxrwxrwx 1 0 0 9 Jan 02 10:00 usb -> /mnt/usb0", "/", now=now)
    assert link is not None and link.name == "usb"
    nogroup = parse_list_line("-rw-r--r-- 1 owner 12 Jan 02 10:00 f", "/", now=now)
    assert nogroup is not None and nogroup.size == 12
    dos = parse_list_line("06-17-25  01:30PM       <DIR>          timelapse", "/", now=now)
    assert dos == RemoteFile("timelapse", "/timelapse", None, True, datetime(2025, 6, 17, 13, 30, tzinfo=UTC))
    dos_file = parse_list_line("06-17-2025  12:05AM  42 a.gcode", "/", now=now)
    assert dos_file is not None and dos_file.size == 42
    assert dos_file.modified == datetime(2025, 6, 17, 0, 5, tzinfo=UTC)
    for junk in ("total 12", "", "drwxr-xr-x 2 0 0 4096 Jan 01 10:00 .", "garbage line",
                 "-rw-r--r-- 1 0 0 x Jan 1 1:00 a", "-rw-r--r-- 1 0 0 5 Foo 31 23:59 bad-month",
                 "-rw-r--r-- 1 0 0 5 Feb 31 2024 bad-day"):
        entry = parse_list_line(junk, "/", now=now)
        assert entry is None or entry.modified is None, junk
    entries, unread = parse_listing(["total 8", "garbage", "drwxr-xr-x 2 0 0 1 Jan 01 2020 ..",
                                     "-rw-r--r-- 1 0 0 5 Jan 01 2020 a"], "/", now=now)
    assert [e.name for e in entries] == ["a"]
    assert unread == ["garbage"]
    names = nlst_names(["/timelapse/a.mp4", "b.avi", "/timelapse/", ".", "..", "b.avi"])
    assert names == ["a.mp4", "b.avi", "timelapse"]


def test_remote_paths_are_checked() -> None:
    assert remote_path("a.3mf") == "/a.3mf"
    assert remote_path("\\cache\\\\b.3mf") == "/cache/b.3mf"
    assert remote_path("./model/./c/") == "/model/c"
    for bad in ("a\r\nDELE x", "x\0", "../etc/passwd", "/cache/../../x"):
        with pytest.raises(ValueError, match="remote path"):
            remote_path(bad)
    with pytest.raises(ValueError, match="name a file"):
        remote_path("/", folder_ok=False)


# --------------------------------------------------------------------------- downloads and deletes


async def test_download_round_trip(vp: VirtualPrinter, ctx: ssl.SSLContext, tmp_path: Path) -> None:
    payload = os.urandom(1_500_000)
    seen: list[tuple[int, int | None]] = []
    async with connect(vp, ctx) as files:
        await files.upload(payload, "/model/blob.bin")
        assert await files.download("/model/blob.bin", progress=lambda s, t: seen.append((s, t))) == payload
        into_folder = await files.download("model/blob.bin", tmp_path)
        into_file = await files.download("/model/blob.bin", tmp_path / "sub" / "renamed.bin")
    assert seen[-1] == (len(payload), len(payload))
    assert into_folder == tmp_path / "blob.bin" and into_folder.read_bytes() == payload
    assert into_file.read_bytes() == payload
    assert local_names(tmp_path) == ["blob.bin", "renamed.bin", "sub"]  # no .part file left behind


async def test_missing_files_are_file_transfer_errors(
    vp: VirtualPrinter, ctx: ssl.SSLContext, tmp_path: Path
) -> None:
    async with connect(vp, ctx) as files:
        for call in (
            files.download("/nope.3mf"),
            files.download("/nope.3mf", tmp_path / "x.3mf"),
            files.size("/nope.3mf"),
            files.delete("/nope.3mf"),
        ):
            with pytest.raises(FileTransferError, match="no such file") as info:
                await call
            assert "/nope.3mf" in str(info.value)
        assert not await files.exists("/nope.3mf")
        await files.upload(b"still fine", "/ok.txt")  # the connection survived the refusals
    assert local_names(tmp_path) == []


async def test_delete_and_exists(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    vp.put_file("cache/old.gcode.3mf", b"old")
    async with connect(vp, ctx) as files:
        assert await files.exists("/cache/old.gcode.3mf")
        await files.delete("/cache/old.gcode.3mf")
        assert not await files.exists("/cache/old.gcode.3mf")
        await files.mkdir("/cache/newdir")
        assert await files.exists("/cache/newdir")
    assert not (vp.storage / "cache" / "old.gcode.3mf").exists()


# --------------------------------------------------------------------------- timelapses


async def test_timelapses(vp: VirtualPrinter, ctx: ssl.SSLContext, tmp_path: Path) -> None:
    vp.put_file("timelapse/video_2025-01-01_10-00-00.mp4", b"mp4" * 1000)
    vp.put_file("timelapse/video_2025-01-02_10-00-00.avi", b"avi" * 10)
    vp.put_file("timelapse/notes.txt", b"not a video")
    vp.put_file("timelapse/thumbnail/video_2025-01-01_10-00-00.jpg", b"\xff\xd8jpeg")
    old = time.time() - 3600
    os.utime(vp.storage / "timelapse" / "video_2025-01-01_10-00-00.mp4", (old, old))
    async with connect(vp, ctx) as files:
        videos = await files.timelapses()
        assert [v.name for v in videos] == ["video_2025-01-02_10-00-00.avi", "video_2025-01-01_10-00-00.mp4"]
        assert videos[1].thumbnail == "/timelapse/thumbnail/video_2025-01-01_10-00-00.jpg"
        assert videos[0].thumbnail is None
        assert videos[1].size == 3000 and videos[1].path == "/timelapse/video_2025-01-01_10-00-00.mp4"
        saved = await files.download_timelapse("video_2025-01-01_10-00-00.mp4", tmp_path)
        assert saved.read_bytes() == b"mp4" * 1000
        thumb = videos[1].thumbnail
        assert thumb is not None
        assert await files.download(thumb) == b"\xff\xd8jpeg"


async def test_no_timelapse_folder_means_no_timelapses(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    for p in sorted((vp.storage / "timelapse").rglob("*"), reverse=True):
        p.rmdir()
    (vp.storage / "timelapse").rmdir()
    async with connect(vp, ctx) as files:
        assert await files.timelapses() == []


# --------------------------------------------------------------------------- errors


async def test_wrong_access_code_is_an_authentication_error_without_the_code(
    vp: VirtualPrinter, ctx: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    assert vp.ftps is not None
    wrong = "W0ng9876"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationError) as info:
        async with PrinterFiles.connect(vp.host, wrong, ssl_context=ctx, port=vp.ftps.port, timeout=TIMEOUT):
            pass
    for text in (str(info.value), repr(info.value), str(info.value.__cause__), caplog.text):
        assert wrong not in text
    async with connect(vp, ctx) as files:
        assert vp.access_code not in repr(files) + repr(files.client)
        await files.list("/")
    assert vp.access_code not in caplog.text


async def test_offline_printer_is_a_connection_error(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    await vp.go_offline()
    with pytest.raises(BambuConnectionError):
        await connect(vp, ctx)


async def test_untrusted_certificate_is_a_connection_error(vp: VirtualPrinter) -> None:
    strict = ssl.create_default_context()  # the system CAs do not know the simulator's CA
    strict.check_hostname = False
    with pytest.raises(BambuConnectionError, match="not trusted"):
        await connect(vp, strict)


async def test_certificate_must_name_the_serial(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    async with connect(vp, ctx, serial=vp.serial.lower()) as files:  # the right printer
        await files.list("/")
    with pytest.raises(AuthenticationError, match="serial") as info:
        await connect(vp, ctx, serial="01P00A000000000")
    assert vp.access_code not in str(info.value)


async def test_data_connection_without_session_reuse_is_refused_with_522(
    vp: VirtualPrinter, ctx: ssl.SSLContext
) -> None:
    assert vp.ftps is not None
    client = FtpsClient(vp.host, vp.access_code, ssl_context=ctx, port=vp.ftps.port, timeout=TIMEOUT,
                        reuse_session=False)
    async with PrinterFiles(client) as files:
        with pytest.raises(SessionReuseError, match="resume"):
            await files.upload(b"data", "/cache/refused.bin")
        with pytest.raises(SessionReuseError):
            await files.list("/")
        assert client.data_reused == [False, False]
        await files.client.noop()  # the control connection lives on
    assert not (vp.storage / "cache" / "refused.bin").exists()


@pytest.mark.parametrize("tls12", [False, True])
async def test_tls_12_cap(vp: VirtualPrinter, ctx: ssl.SSLContext, tls12: bool) -> None:
    before = ctx.maximum_version
    async with connect(vp, ctx, tls12=tls12) as files:
        await files.upload(b"capped" * 1000, "/cache/capped.bin")
        assert await files.download("/cache/capped.bin") == b"capped" * 1000
        assert files.client.tls_version == ("TLSv1.2" if tls12 else "TLSv1.3")
        assert files.client.data_reused == [True, True]
    assert ctx.maximum_version == before  # the caller's (shared) context is left alone


async def test_stalled_printer_times_out_within_the_timeout(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    vp.stall(True)
    started = time.monotonic()
    with pytest.raises(BambuTimeoutError):
        await connect(vp, ctx, timeout=0.5)
    assert time.monotonic() - started < 2.0
    vp.stall(False)


async def test_stall_during_a_session_then_recovery(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    async with connect(vp, ctx, timeout=0.5) as files:
        await files.list("/")
        assert vp.ftps is not None
        await vp.ftps.set_stalled(True)
        started = time.monotonic()
        with pytest.raises(BambuTimeoutError):
            await files.size("/cache")
        assert time.monotonic() - started < 2.0
        await vp.ftps.set_stalled(False)
        assert {e.name for e in await files.list("/")} >= {"cache", "timelapse"}  # a new connection


async def test_cancelling_an_operation_aborts_it_and_the_next_one_reconnects(
    vp: VirtualPrinter, ctx: ssl.SSLContext
) -> None:
    assert vp.ftps is not None
    async with connect(vp, ctx, timeout=10.0) as files:
        await files.list("/")
        await vp.ftps.set_stalled(True)
        task = asyncio.create_task(files.list("/"))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await vp.ftps.set_stalled(False)
        assert await files.names("/cache") == []
        assert time.monotonic() - started < 3.0  # not the 10 s timeout


async def test_dropped_connection_is_reopened(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    async with connect(vp, ctx) as files:
        await files.upload(b"1", "/cache/one.bin")
        await vp.disconnect_clients()
        await asyncio.sleep(0.1)
        assert await files.size("/cache/one.bin") == 1


# --------------------------------------------------------------------------- lifecycle


async def test_printer_bound_files_reopen_after_close(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    assert vp.ftps is not None
    endpoint = PrinterEndpoint(vp.host, vp.serial, vp.access_code, ctx, ftps_port=vp.ftps.port)
    files = PrinterFiles(endpoint, timeout=TIMEOUT)
    assert vp.access_code not in repr(files)
    async with files:
        await files.upload(b"abc", "/a.txt")
    assert not files.client.connected
    assert await files.size("/a.txt") == 3  # opened again on use
    await files.close()
    with pytest.raises(TypeError, match=r"needs a printer with \.host"):
        PrinterFiles(object())  # type: ignore[arg-type]


async def test_standalone_files_cannot_be_used_after_close(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    files = await connect(vp, ctx)
    assert files.client.connected
    await files.close()
    await files.close()  # idempotent
    with pytest.raises(NotConnectedError):
        await files.list("/")
    assert "closed" in repr(files)


# --------------------------------------------------------------------------- the benign 426


class ResettingFTPS(ImplicitFTPS):
    """Ends each upload with a TCP reset once the server has read everything: vsftpd says 426."""

    send_fraction = 1.0

    def _send(self, conn: socket.socket, source: Any, total: int | None, progress: Any) -> int:
        data = bytes(source)
        part = data[: int(len(data) * self.send_fraction)]
        super()._send(conn, part, total, progress)
        return len(data)  # claims everything went out

    def _drain_after_upload(self, conn: socket.socket) -> None:
        time.sleep(0.2)  # the server reads what was sent ...
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # ... then a reset


@pytest.mark.parametrize("fraction", [1.0, 0.5])
async def test_426_after_a_complete_upload_counts_only_when_size_matches(
    vp: VirtualPrinter, ctx: ssl.SSLContext, fraction: float, caplog: pytest.LogCaptureFixture
) -> None:
    assert vp.ftps is not None
    caplog.set_level(logging.DEBUG, logger="bambulab.transports.ftps")
    client = FtpsClient(vp.host, vp.access_code, ssl_context=ctx, port=vp.ftps.port, timeout=TIMEOUT)
    client.ftps_class = type("Resetting", (ResettingFTPS,), {"send_fraction": fraction})
    payload = os.urandom(100_000)
    async with PrinterFiles(client) as files:
        if fraction == 1.0:
            assert (await files.upload(payload, "/cache/reset.bin")).size == len(payload)
            assert "426 after a complete STOR" in caplog.text
        else:
            with pytest.raises(FileTransferError, match="kept 50000 of 100000 bytes"):
                await files.upload(payload, "/cache/reset.bin")
        await files.client.noop()
