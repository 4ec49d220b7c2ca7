"""The camera client against the virtual printer's camera servers, over real loopback sockets.

P1/A1: the port-6000-style JPEG stream (TLS, 80-byte login, 16-byte headers). X1: RTSPS URLs from
the printer's report, and real H.264 decoding through PyAV when it is installed. A few tests use
a tiny TLS server of their own to send what the simulator never sends (broken frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import ssl
import struct
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
from PIL import Image

from bambulab.camera import Camera, Frame
from bambulab.endpoint import PrinterEndpoint
from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuTimeoutError,
    NotConnectedError,
    UnsupportedError,
)
from bambulab.protocol.models import model_by_code
from bambulab.sim import Simulator, VirtualPrinter
from bambulab.transports.camera import JpegStreamClient, build_auth_packet
from bambulab.transports.tls import PrinterCertificateError, printer_ssl_context

pytestmark = pytest.mark.timeout(15)

WIDTH, HEIGHT = 320, 180


# ---------------------------------------------------------------------------- local fixtures




@pytest.fixture
async def farm() -> AsyncIterator[Simulator]:
    async with Simulator(time_scale=1.0, seed=42) as simulator:
        yield simulator
        # Let the simulator's clock run once before stopping it (its stop() can miss the
        # cancellation when it is called right after add_printer on Python 3.11).
        await asyncio.sleep(0.05)


@pytest.fixture
def trust(farm: Simulator) -> ssl.SSLContext:
    """Verifies the virtual printers' certificates (the simulator's CA instead of Bambu's)."""
    return printer_ssl_context(cadata=farm.ca.ca_pem)


async def jpeg_printer(farm: Simulator, model: str = "P1S", fps: float = 20.0) -> VirtualPrinter:
    printer = await farm.add_printer(model=model, camera_fps=fps)
    camera: Any = printer.camera
    camera.width, camera.height = WIDTH, HEIGHT  # small frames: cheap to render
    return printer


def camera_of(
    printer: VirtualPrinter,
    trust: ssl.SSLContext,
    *,
    report: bool = True,
    access_code: str | None = None,
    camera_port: int | None = None,
    frame_timeout: float = 15.0,
) -> Camera:
    """A Camera over the virtual printer's endpoint, with the report a Printer would hold."""
    assert printer.camera is not None
    if camera_port is None and printer.model.camera.value == "jpeg":
        camera_port = printer.camera.port
    endpoint = PrinterEndpoint(
        printer.host, printer.serial, access_code or printer.access_code, trust, camera_port=camera_port
    )
    state = {"print": printer.engine.current_report()} if report else {}
    return Camera(endpoint, model=printer.model, report=state, frame_timeout=frame_timeout)


async def take(stream: AsyncGenerator[Any, None], count: int, on_each: Any = None) -> list[Any]:
    """Up to ``count`` items of ``stream`` (closed afterwards); ``on_each`` is awaited after each."""
    items: list[Any] = []
    async with contextlib.aclosing(stream):
        async for item in stream:
            items.append(item)
            if on_each is not None:
                await on_each(item)
            if len(items) == count:
                break
    return items


def decode(jpeg: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG"
        image.load()
        return image.size


# ------------------------------------------------------------------------------- JPEG stream


@pytest.mark.parametrize("model", ["P1S", "A1"])
async def test_frames_are_valid_jpegs_in_order(farm: Simulator, trust: ssl.SSLContext, model: str) -> None:
    printer = await jpeg_printer(farm, model)
    camera = camera_of(printer, trust)
    frames: list[Frame] = await take(camera.frames(), 4)
    assert len(frames) == 4
    for frame in frames:
        assert frame.jpeg[:2] == b"\xff\xd8" and frame.jpeg[-2:] == b"\xff\xd9"
        assert frame.size == len(frame.jpeg) > 100
        assert decode(frame.jpeg) == (WIDTH, HEIGHT)
    indexes = [f.index for f in frames]
    assert indexes == sorted(set(indexes)) and indexes[0] == 0
    times = [f.received for f in frames]
    assert times == sorted(times) and times[-1] <= time.monotonic()
    assert "jpeg" not in repr(frames[0])  # the bytes stay out of the repr
    camera_service: Any = printer.camera
    for _ in range(50):  # the stream was closed: the printer sees its viewer leave
        if camera_service.viewer_count == 0:
            break
        await asyncio.sleep(0.02)
    assert camera_service.viewer_count == 0


async def test_snapshot_is_one_jpeg(farm: Simulator, trust: ssl.SSLContext) -> None:
    printer = await jpeg_printer(farm, "A1")
    camera = camera_of(printer, trust)
    jpeg = await camera.snapshot()
    assert decode(jpeg) == (WIDTH, HEIGHT)
    assert printer.camera is not None and printer.camera.client_count in (0, 1)


async def test_standalone_camera_connect(farm: Simulator, trust: ssl.SSLContext) -> None:
    printer = await jpeg_printer(farm, "P1S")
    assert printer.camera is not None
    async with Camera.connect(
        printer.host, printer.access_code, serial=printer.serial, port=printer.camera.port, ssl_context=trust
    ) as camera:
        assert camera.model is not None and camera.model.name == "P1S"  # guessed from the serial
        assert decode(await camera.snapshot()) == (WIDTH, HEIGHT)
        assert printer.access_code not in repr(camera)
    with pytest.raises(NotConnectedError):
        await camera.snapshot()


async def test_slow_reader_gets_recent_frames(farm: Simulator, trust: ssl.SSLContext) -> None:
    printer = await jpeg_printer(farm, "P1S", fps=30.0)
    assert printer.camera is not None
    async with JpegStreamClient(
        printer.host, printer.access_code, port=printer.camera.port, ssl_context=trust, max_queued=1
    ) as client:
        first = await client.read_frame()
        await asyncio.sleep(0.5)  # about 15 frames arrive meanwhile; only the newest is kept
        later = await client.read_frame()
        assert later.index > first.index + 3
        assert client.dropped > 0
        assert time.monotonic() - later.received < 0.3


async def test_wrong_access_code_is_an_authentication_error(
    farm: Simulator, trust: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    printer = await jpeg_printer(farm, "P1S")
    wrong = "87654321" if printer.access_code != "87654321" else "12345678"
    camera = camera_of(printer, trust, access_code=wrong)
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match="wrong access code") as info:
        await camera.snapshot(frame_timeout=5.0)
    assert time.monotonic() - started < 3.0  # the close is noticed, not waited out
    assert wrong not in str(info.value) and printer.access_code not in str(info.value)
    assert wrong not in caplog.text and printer.access_code not in caplog.text


async def test_offline_printer_is_a_connection_error(farm: Simulator, trust: ssl.SSLContext) -> None:
    printer = await jpeg_printer(farm, "P1S")
    camera = camera_of(printer, trust)
    await printer.go_offline()
    with pytest.raises(BambuConnectionError, match="cannot connect") as info:
        await camera.snapshot()
    assert not isinstance(info.value, AuthenticationError)
    await printer.come_online()
    assert decode(await camera.snapshot()) == (WIDTH, HEIGHT)


async def test_stalled_camera_times_out(farm: Simulator, trust: ssl.SSLContext) -> None:
    printer = await jpeg_printer(farm, "P1S")
    camera = camera_of(printer, trust)
    printer.stall(True)
    try:
        started = time.monotonic()
        with pytest.raises(BambuTimeoutError, match=r"no frame within 0\.5 s"):
            await take(camera.frames(frame_timeout=0.5), 1)
        assert 0.4 < time.monotonic() - started < 3.0
    finally:
        printer.stall(False)


async def test_stream_dropped_midway_is_a_connection_error(farm: Simulator, trust: ssl.SSLContext) -> None:
    printer = await jpeg_printer(farm, "P1S")
    camera = camera_of(printer, trust)
    got: list[Frame] = []

    async def drop_after_first(frame: Frame) -> None:
        got.append(frame)
        if len(got) == 1:
            await printer.disconnect_clients()

    with pytest.raises(BambuConnectionError, match="closed the connection") as info:
        await take(camera.frames(), 100, drop_after_first)
    assert len(got) >= 1
    assert not isinstance(info.value, AuthenticationError)  # frames came first: not a login problem


async def test_certificate_must_name_the_serial_and_chain_to_the_trusted_ca(
    farm: Simulator, trust: ssl.SSLContext
) -> None:
    printer = await jpeg_printer(farm, "P1S")
    assert printer.camera is not None
    other = JpegStreamClient(
        printer.host, printer.access_code, port=printer.camera.port, serial="01P00A000000000", ssl_context=trust
    )
    with pytest.raises(PrinterCertificateError, match="01P00A000000000"):
        await other.connect()
    await other.close()
    bambu_ca = JpegStreamClient(printer.host, printer.access_code, port=printer.camera.port)  # bundled CA only
    with pytest.raises(PrinterCertificateError, match="did not verify"):
        await bambu_ca.connect()
    await bambu_ca.close()


async def test_close_ends_open_streams(farm: Simulator, trust: ssl.SSLContext) -> None:
    printer = await jpeg_printer(farm, "P1S")
    camera = camera_of(printer, trust)
    stream = camera.frames()
    first = await anext(stream)
    assert first.index == 0
    await camera.close()
    with pytest.raises(BambuConnectionError):  # at most the queued frames, then the closed connection
        await take(stream, 100)
    with pytest.raises(NotConnectedError):
        await anext(camera.frames())


async def test_jpeg_stream_is_refused_on_rtsp_models() -> None:
    camera = Camera.connect("127.0.0.1", "12345678", model="X1C")
    assert camera.kind.value == "rtsp"
    with pytest.raises(UnsupportedError, match="RTSPS"):
        await anext(camera.frames())


# --------------------------------------------------- a server of our own: what the sim never sends


class OneShotCamera:
    """A TLS camera that checks the login and then sends a scripted list of raw chunks."""

    def __init__(self, context: ssl.SSLContext, code: str, chunks: list[bytes]) -> None:
        self._context = context
        self._code = code
        self._chunks = chunks
        self.logins: list[bytes] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> OneShotCamera:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            login = await reader.readexactly(80)
            self.logins.append(login)
            for chunk in self._chunks:
                writer.write(chunk)
                await writer.drain()
            await reader.read()  # until the client leaves
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()


def frame_bytes(payload: bytes, *, size: int | None = None) -> bytes:
    return struct.pack("<IIII", len(payload) if size is None else size, 0, 1, 0) + payload


JPEG_A = b"\xff\xd8\xff\xe0" + b"A" * 300 + b"\xff\xd9"
JPEG_B = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 300 + b"\xff\xd9"
JPEG_HUGE = b"\xff\xd8\xff\xe0" + bytes(range(255, -1, -1)) * 2400 + b"\xff\xd9"


async def test_frames_without_jpeg_markers_are_skipped(farm: Simulator, trust: ssl.SSLContext) -> None:
    cert = farm.ca.issue("01P00A111111111")
    chunks = [
        frame_bytes(b"\x00\x01not a jpeg\xff\xd9"),  # no SOI
        frame_bytes(JPEG_A),
        frame_bytes(JPEG_A[:-2] + b"\x00\x00"),  # truncated: no EOI
        frame_bytes(JPEG_B),
        frame_bytes(JPEG_HUGE),  # bigger than the client's first buffer: it grows
        b"".join(frame_bytes(JPEG_B) for _ in range(30)),  # many frames in a row: the buffer wraps
    ]
    async with OneShotCamera(cert.server_context(), "12345678", chunks) as server:
        async with JpegStreamClient(
            "127.0.0.1", "12345678", port=server.port, serial="01P00A111111111", ssl_context=trust,
            frame_timeout=3.0, max_queued=64,
        ) as client:
            frames = [await client.read_frame() for _ in range(33)]
            assert [f.jpeg for f in frames] == [JPEG_A, JPEG_B, JPEG_HUGE] + [JPEG_B] * 30
            assert [f.index for f in frames] == list(range(33))
            assert client.bad_frames == 2 and client.dropped == 0
        assert server.logins == [build_auth_packet("12345678")]
    login = server.logins[0]
    assert struct.unpack_from("<IIII", login) == (0x40, 0x3000, 0, 0)
    assert login[16:48] == b"bblp".ljust(32, b"\0") and login[48:80] == b"12345678".ljust(32, b"\0")


async def test_absurd_frame_size_is_a_connection_error(farm: Simulator, trust: ssl.SSLContext) -> None:
    cert = farm.ca.issue("01P00A222222222")
    chunks = [frame_bytes(JPEG_A), frame_bytes(b"", size=0x7FFFFFFF)]
    async with OneShotCamera(cert.server_context(), "12345678", chunks) as server:
        async with JpegStreamClient(
            "127.0.0.1", "12345678", port=server.port, ssl_context=trust, frame_timeout=3.0
        ) as client:
            assert (await client.read_frame()).jpeg == JPEG_A
            with pytest.raises(BambuConnectionError, match="out of sync"):
                await client.read_frame()


def test_auth_packet_layout_and_limits() -> None:
    packet = build_auth_packet("abc")
    assert len(packet) == 80 and packet[48:51] == b"abc" and packet[51:80] == b"\0" * 29
    with pytest.raises(ValueError, match="32 bytes"):
        build_auth_packet("x" * 33)
    with pytest.raises(ValueError, match="ASCII"):
        build_auth_packet("c\u00f6de")


# ------------------------------------------------------------------------------------- RTSP URLs


async def x1_printer(farm: Simulator, **quirks: Any) -> VirtualPrinter:
    printer = await farm.add_printer(model="X1C", quirks=quirks)
    await asyncio.sleep(0)
    return printer


async def test_rtsp_url_comes_from_the_report(
    farm: Simulator, trust: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    printer = await x1_printer(farm)
    assert printer.camera is not None
    port = printer.camera.port
    reported = printer.engine.current_report()["ipcam"]["rtsp_url"]
    assert reported == f"rtsps://127.0.0.1:{port}/streaming/live/1"
    camera = camera_of(printer, trust)
    assert camera.port == port
    assert camera.rtsp_url() == f"rtsps://127.0.0.1:{port}/streaming/live/1"
    secret = camera.rtsp_url(include_credentials=True)
    assert secret == f"rtsps://bblp:{printer.access_code}@127.0.0.1:{port}/streaming/live/1"
    assert printer.access_code not in repr(camera)
    assert printer.access_code not in caplog.text


def test_rtsp_url_defaults_and_overrides() -> None:
    x1 = model_by_code("X1C")
    endpoint = PrinterEndpoint.create("192.168.1.50", "00M00A000000000", "1234/@:x")
    camera = Camera(endpoint, model=x1, report={})
    assert camera.rtsp_url() == "rtsps://192.168.1.50:322/streaming/live/1"  # no report yet
    # credentials are percent-encoded, so an access code cannot break the URL
    assert camera.rtsp_url(include_credentials=True) == "rtsps://bblp:1234%2F%40%3Ax@192.168.1.50:322/streaming/live/1"
    reported = {"print": {"ipcam": {"rtsp_url": "rtsps://10.0.0.9/streaming/live/1"}}}  # no port
    camera = Camera(endpoint, model=x1, report=reported)
    assert camera.rtsp_url() == "rtsps://192.168.1.50:322/streaming/live/1"  # our host, default port
    reported = {"print": {"ipcam": {"rtsp_url": "rtsp://192.168.1.50:554/streaming/live/1"}}}
    with pytest.raises(UnsupportedError, match="plaintext"):  # issue 12.1: no plaintext without opting in
        Camera(endpoint, model=x1, report=reported).rtsp_url()
    camera = Camera(endpoint, model=x1, report=reported, plaintext_rtsp=True)
    assert camera.rtsp_url() == "rtsp://192.168.1.50:554/streaming/live/1"
    camera = Camera(endpoint.with_ports(camera_port=8322), model=x1, report=reported, plaintext_rtsp=True)
    assert camera.rtsp_url() == "rtsp://192.168.1.50:8322/streaming/live/1"
    ipv6 = Camera.connect("fe80::1", "12345678", model="H2D")
    assert ipv6.rtsp_url() == "rtsps://[fe80::1]:322/streaming/live/1"
    with pytest.raises(UnsupportedError, match="port 6000"):
        Camera.connect("192.168.1.51", "12345678", model="P1S").rtsp_url()


async def test_lan_liveview_off_is_unsupported(farm: Simulator, trust: ssl.SSLContext) -> None:
    printer = await x1_printer(farm, lan_liveview=False)
    assert printer.engine.current_report()["ipcam"]["rtsp_url"] == "disable"
    camera = camera_of(printer, trust)
    for call in (camera.rtsp_url, lambda: camera.rtsp_url(include_credentials=True)):
        with pytest.raises(UnsupportedError, match="LAN liveview is disabled") as info:
            call()
        assert printer.access_code not in str(info.value)
    with pytest.raises(UnsupportedError, match="LAN liveview"):
        await camera.snapshot()
    with pytest.raises(UnsupportedError, match="LAN liveview"):
        await anext(camera.rtsp_frames())
    assert "X1 Carbon" in repr(camera)  # repr works with liveview off


async def test_without_pyav_decoding_is_unsupported(
    farm: Simulator, trust: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av now fails
    printer = await x1_printer(farm)
    camera = camera_of(printer, trust)
    with pytest.raises(UnsupportedError, match=r"bambulab\[camera\]"):
        await anext(camera.rtsp_frames())
    with pytest.raises(UnsupportedError, match=r"bambulab\[camera\]"):
        await camera.snapshot()
    assert camera.rtsp_url().startswith("rtsps://")  # the URL needs no PyAV


# ------------------------------------------------------------------------- RTSP decoding (PyAV)


async def test_rtsp_frames_decode_the_h264_stream(farm: Simulator, trust: ssl.SSLContext) -> None:
    pytest.importorskip("av")
    printer = await x1_printer(farm)
    camera = camera_of(printer, trust, frame_timeout=8.0)
    pictures = await take(camera.rtsp_frames(), 2)
    assert [(p.width, p.height) for p in pictures] == [(1280, 720), (1280, 720)]
    jpeg = await camera.snapshot()
    assert decode(jpeg) == (1280, 720)
    await camera.close()


async def test_rtsp_wrong_access_code_is_an_authentication_error(farm: Simulator, trust: ssl.SSLContext) -> None:
    pytest.importorskip("av")
    printer = await x1_printer(farm)
    camera = camera_of(printer, trust, access_code="99999999", frame_timeout=5.0)
    with pytest.raises(AuthenticationError, match="refused the access code") as info:
        await camera.snapshot()
    assert "99999999" not in str(info.value) and "bblp" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None  # FFmpeg's text (with the URL) is gone


async def test_rtsp_closed_port_is_a_connection_error(farm: Simulator, trust: ssl.SSLContext) -> None:
    pytest.importorskip("av")
    printer = await x1_printer(farm)
    assert printer.camera is not None
    await printer.camera.set_enabled(False)  # port closed, report not refreshed
    camera = camera_of(printer, trust, report=False, camera_port=printer.camera.port, frame_timeout=5.0)
    with pytest.raises(BambuConnectionError, match="refused the connection") as info:
        await anext(camera.rtsp_frames())
    assert printer.access_code not in str(info.value)


async def test_rtsp_stalled_stream_times_out(farm: Simulator, trust: ssl.SSLContext) -> None:
    pytest.importorskip("av")
    printer = await x1_printer(farm)
    camera = camera_of(printer, trust, frame_timeout=1.0)
    printer.stall(True)
    try:
        started = time.monotonic()
        with pytest.raises(BambuTimeoutError, match="sent nothing"):
            await camera.snapshot()
        assert time.monotonic() - started < 5.0
    finally:
        printer.stall(False)


# ------------------------------------------------------------------------------ with a Printer


async def test_printer_camera_follows_the_printers_report(farm: Simulator, trust: ssl.SSLContext) -> None:
    printer_module: Any = pytest.importorskip("bambulab.printer")  # written alongside this camera
    Printer = printer_module.Printer

    printer = await x1_printer(farm)
    assert printer.camera is not None
    async with Printer(
        printer.host, printer.serial, printer.access_code, port=printer.mqtt.port, ssl_context=trust
    ) as client:
        camera = client.camera
        assert isinstance(camera, Camera)
        assert camera.rtsp_url() == f"rtsps://127.0.0.1:{printer.camera.port}/streaming/live/1"
        assert printer.access_code not in repr(camera)
