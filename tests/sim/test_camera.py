"""The virtual printer's cameras, checked with independent clients (raw ``ssl`` sockets).

The servers run on the test's event loop; every client runs in a worker thread with plain
blocking sockets and socket timeouts, so nothing here shares code with the project's clients.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import itertools
import re
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image, ImageStat

from bambulab.protocol.models import PrinterModel, model_by_code
from bambulab.sim.ca import LeafCertificate, SimCA
from bambulab.sim.camera import JpegCameraService, RtspService
from bambulab.sim.render import render_frame
from bambulab.sim.state import Dynamic, Heater, Job

CODE = "12345678"
TIMEOUT = 5.0
FIXED = datetime(2025, 3, 4, 5, 6, 7)
T = TypeVar("T")


@dataclass
class Handle:
    """A stand-in for a virtual printer: just what services read."""

    serial: str
    tls: LeafCertificate
    storage: Path
    model: PrinterModel = field(default_factory=lambda: model_by_code("P1S"))
    name: str = "Virtual P1S 1"
    access_code: str = CODE
    host: str = "127.0.0.1"
    dynamic: Dynamic = field(default_factory=Dynamic)


@pytest.fixture(scope="module")
def ca() -> SimCA:
    return SimCA()


@pytest.fixture(scope="module")
def leaf(ca: SimCA) -> LeafCertificate:
    return ca.issue("01P00A123456789")


@pytest.fixture
def handle(leaf: LeafCertificate, tmp_path: Path) -> Handle:
    dyn = Dynamic()
    dyn.job = Job(gcode_state="RUNNING", percent=10, layer=5, total_layers=50, remaining_minutes=30)
    dyn.nozzles = [Heater(219.7, 220.0)]
    dyn.bed = Heater(54.9, 55.0)
    return Handle(serial=leaf.common_name, tls=leaf, storage=tmp_path)


@pytest.fixture
async def jpeg(handle: Handle) -> AsyncIterator[JpegCameraService]:
    svc = JpegCameraService(handle, fps=10.0, width=320, height=180, clock=lambda: FIXED)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


# --------------------------------------------------------------------------- client helpers


def _insecure() -> ssl.SSLContext:
    # What HA and bambulabs_api do: no verification (the printer's CN is its serial).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(port: int, ctx: ssl.SSLContext | None = None) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        return (ctx or _insecure()).wrap_socket(raw)
    except BaseException:
        raw.close()
        raise


def auth_packet(code: str = CODE, user: str = "bblp") -> bytes:
    return (
        struct.pack("<IIII", 0x40, 0x3000, 0, 0)
        + user.encode().ljust(32, b"\0")
        + code.encode().ljust(32, b"\0")
    )


def recv_exact(sock: ssl.SSLSocket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_frame(sock: ssl.SSLSocket) -> tuple[tuple[int, int, int, int], bytes]:
    header = struct.unpack("<IIII", recv_exact(sock, 16))
    return header, recv_exact(sock, header[0])


def viewer(port: int) -> ssl.SSLSocket:
    sock = connect(port)
    sock.sendall(auth_packet())
    return sock


def closed_without_data(sock: ssl.SSLSocket) -> bool:
    """True if the server closes the connection without sending a byte."""
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLEOFError):
        return True


def check_jpeg(data: bytes, size: tuple[int, int]) -> Image.Image:
    assert data[:4] == b"\xff\xd8\xff\xe0", data[:4].hex()
    assert data[6:11] == b"JFIF\0"
    assert data[-2:] == b"\xff\xd9"
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.format == "JPEG"
    assert img.size == size
    return img


async def in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.wait_for(asyncio.to_thread(fn), TIMEOUT + 1)


async def until(cond: Callable[[], bool], within: float = TIMEOUT) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


# --------------------------------------------------------------------------- render


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (640, 360), (160, 90)])
def test_render_frame_is_a_jfif_jpeg_of_the_asked_size(handle: Handle, width: int, height: int) -> None:
    data = render_frame(
        name="Farm 7", serial=handle.serial, model_name="P1S", dyn=handle.dynamic, now=FIXED,
        width=width, height=height,
    )
    img = check_jpeg(data, (width, height))
    assert img.mode == "RGB"


def test_render_frame_follows_the_printer_state(handle: Handle) -> None:
    def frame() -> Image.Image:
        data = render_frame(
            name="P", serial=handle.serial, model_name="P1S", dyn=handle.dynamic, now=FIXED, width=320, height=180
        )
        return Image.open(io.BytesIO(data)).convert("L")

    dyn = handle.dynamic
    first = frame()
    assert frame().tobytes() == first.tobytes()  # a pure function of its inputs
    dyn.job.percent, dyn.job.layer = 80, 40
    grown = frame()
    assert grown.tobytes() != first.tobytes()
    dyn.lights["chamber_light"] = "off"
    dark = frame()
    assert ImageStat.Stat(dark).mean[0] < ImageStat.Stat(grown).mean[0] * 0.8


def test_render_frame_rejects_absurd_sizes(handle: Handle) -> None:
    with pytest.raises(ValueError, match="frame size"):
        render_frame(name="P", serial="S", model_name="P1S", dyn=handle.dynamic, now=FIXED, width=8, height=8)


# --------------------------------------------------------------------------- port-6000 JPEG stream


async def test_auth_then_frames_with_valid_headers(handle: Handle, sockets: list[socket.socket]) -> None:
    svc = JpegCameraService(handle, fps=20.0)  # full 1280x720 frames, as a P1 sends
    await svc.start()
    try:
        def run() -> list[tuple[tuple[int, int, int, int], bytes]]:
            sock = viewer(svc.port)
            sockets.append(sock)
            return [read_frame(sock) for _ in range(3)]

        frames = await in_thread(run)
    finally:
        await svc.stop()
    for (length, itrack, flags, reserved), jpeg in frames:
        assert (itrack, flags, reserved) == (0, 1, 0)
        assert length == len(jpeg) > 1000
        check_jpeg(jpeg, (1280, 720))


async def test_server_presents_the_printer_certificate(
    jpeg: JpegCameraService, ca: SimCA, handle: Handle, sockets: list[socket.socket]
) -> None:
    def run() -> str:
        sock = connect(jpeg.port, ca.client_context())  # verifies the chain against the sim CA
        sockets.append(sock)
        cert = sock.getpeercert()
        assert cert is not None
        subject: Any = cert["subject"]  # ((("commonName", "..."),), ...)
        names = [value for rdn in subject for key, value in rdn if key == "commonName"]
        return str(names[0])

    assert await in_thread(run) == handle.serial


async def test_header_is_its_own_tls_record(jpeg: JpegCameraService, sockets: list[socket.socket]) -> None:
    def run() -> list[int]:
        sock = viewer(jpeg.port)
        sockets.append(sock)
        firsts = []
        for _ in range(3):
            # Like HA: ask for more than 16 bytes; a TLS read returns one record at most.
            head = sock.recv(4096)
            firsts.append(len(head))
            (length, _, _, _) = struct.unpack("<IIII", head[:16])
            recv_exact(sock, length - (len(head) - 16))
        return firsts

    assert await in_thread(run) == [16, 16, 16]


async def test_frames_change_when_the_printer_state_changes(
    jpeg: JpegCameraService, handle: Handle, sockets: list[socket.socket]
) -> None:
    sock = await in_thread(lambda: viewer(jpeg.port))
    sockets.append(sock)
    _, a = await in_thread(lambda: read_frame(sock))
    _, b = await in_thread(lambda: read_frame(sock))
    assert a == b  # same state, same (fixed) clock: the same JPEG, rendered once
    assert jpeg.frames_rendered == 1
    handle.dynamic.job.percent = 95
    handle.dynamic.job.layer = 48

    def next_different() -> bytes:
        for _ in range(20):
            _, c = read_frame(sock)
            if c != a:
                return c
        raise AssertionError("the frame never changed")

    c = await in_thread(next_different)
    img_a = check_jpeg(a, (320, 180)).convert("L")
    img_c = check_jpeg(c, (320, 180)).convert("L")
    assert img_a.tobytes() != img_c.tobytes()


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(auth_packet(code="87654321"), id="wrong-code"),
        pytest.param(auth_packet(user="admin"), id="wrong-user"),
        pytest.param(auth_packet(code=""), id="empty-code"),
        pytest.param(auth_packet(code=CODE + "9"), id="code-with-extra-digit"),
        pytest.param(struct.pack("<IIII", 0x41, 0x3000, 0, 0) + auth_packet()[16:], id="bad-length-word"),
        pytest.param(struct.pack("<IIII", 0x40, 0x3001, 0, 0) + auth_packet()[16:], id="bad-type-word"),
        pytest.param(bytes(range(80)), id="garbage"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: printer\r\n\r\n".ljust(80, b"x"), id="http"),
    ],
)
async def test_bad_auth_closes_without_data(
    jpeg: JpegCameraService, packet: bytes, sockets: list[socket.socket]
) -> None:
    assert len(packet) == 80

    def run() -> bool:
        sock = connect(jpeg.port)
        sockets.append(sock)
        sock.sendall(packet)
        return closed_without_data(sock)

    assert await in_thread(run)
    await until(lambda: jpeg.client_count == 0)
    assert jpeg.frames_sent == 0


async def test_truncated_auth_is_closed(handle: Handle, sockets: list[socket.socket]) -> None:
    svc = JpegCameraService(handle, fps=10.0, width=160, height=90, auth_timeout=0.5)
    await svc.start()
    try:
        def run() -> tuple[bool, float]:
            sock = connect(svc.port)
            sockets.append(sock)
            sock.sendall(auth_packet()[:40])  # and then nothing
            t0 = time.monotonic()
            return closed_without_data(sock), time.monotonic() - t0

        closed, waited = await in_thread(run)

        def half_close() -> list[int]:
            tls12 = _insecure()
            tls12.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.3 hides record types
            sock = connect(svc.port, tls12)
            sockets.append(sock)
            sock.sendall(auth_packet()[:79])
            # EOF before the 80th byte. SSLSocket.shutdown() drops TLS, so what follows on this
            # socket is raw TLS records: the server may send alerts (close_notify), never data.
            sock.shutdown(socket.SHUT_WR)
            raw = b""
            while chunk := sock.recv(4096):
                raw += chunk
            types = []
            while raw:
                types.append(raw[0])
                raw = raw[5 + int.from_bytes(raw[3:5], "big") :]
            return types

        record_types = await in_thread(half_close)
        assert 0x17 not in record_types  # no application data
        await until(lambda: svc.client_count == 0, within=1.0)
    finally:
        await svc.stop()
    assert closed
    assert waited < 3.0
    assert svc.frames_sent == 0


async def test_fps_is_roughly_respected(handle: Handle, sockets: list[socket.socket]) -> None:
    svc = JpegCameraService(handle, fps=20.0, width=160, height=90)
    await svc.start()
    try:
        def run() -> int:
            sock = viewer(svc.port)
            sockets.append(sock)
            read_frame(sock)
            count, end = 0, time.monotonic() + 1.0
            while time.monotonic() < end:
                read_frame(sock)
                count += 1
            return count

        count = await in_thread(run)
    finally:
        await svc.stop()
    # 20 fps for one second; the bound is loose on purpose (slow CI), but frames are not unthrottled.
    assert 1 <= count <= 45


async def test_slow_fps_sends_first_frame_promptly(handle: Handle, sockets: list[socket.socket]) -> None:
    svc = JpegCameraService(handle, fps=0.2, width=160, height=90)
    await svc.start()
    try:
        def run() -> tuple[float, bool]:
            sock = viewer(svc.port)
            sockets.append(sock)
            t0 = time.monotonic()
            read_frame(sock)
            first = time.monotonic() - t0
            sock.settimeout(1.0)
            try:
                sock.recv(1)
                second_early = True
            except TimeoutError:
                second_early = False
            return first, second_early

        first, second_early = await in_thread(run)
    finally:
        await svc.stop()
    assert first < 3.0
    assert not second_early  # 0.2 fps: nothing more within a second


async def test_stalled_sends_nothing_but_keeps_the_connection(
    jpeg: JpegCameraService, sockets: list[socket.socket]
) -> None:
    jpeg.stalled = True
    sock = await in_thread(lambda: viewer(jpeg.port))
    sockets.append(sock)

    def nothing_for(seconds: float) -> bool:
        sock.settimeout(seconds)
        try:
            sock.recv(1)
        except TimeoutError:
            return True
        return False

    assert await in_thread(lambda: nothing_for(0.6))
    assert jpeg.client_count == 1
    assert jpeg.frames_sent == 0
    jpeg.stalled = False

    def frame() -> bytes:
        sock.settimeout(TIMEOUT)
        return read_frame(sock)[1]

    check_jpeg(await in_thread(frame), (320, 180))


async def test_stalled_holds_a_bad_login_open(jpeg: JpegCameraService, sockets: list[socket.socket]) -> None:
    jpeg.stalled = True
    sock = await in_thread(lambda: connect(jpeg.port))
    sockets.append(sock)
    await in_thread(lambda: sock.sendall(auth_packet(code="00000000")))

    def still_open() -> bool:
        sock.settimeout(0.5)
        try:
            sock.recv(1)
        except TimeoutError:
            return True
        return False

    assert await in_thread(still_open)
    await asyncio.to_thread(setattr, jpeg, "stalled", False)  # from another thread, as a harness may
    sock.settimeout(TIMEOUT)
    assert await in_thread(lambda: closed_without_data(sock))


async def test_drop_clients_closes_viewers_and_keeps_listening(
    jpeg: JpegCameraService, sockets: list[socket.socket]
) -> None:
    socks = [await in_thread(lambda: viewer(jpeg.port)) for _ in range(2)]
    sockets.extend(socks)
    for s in socks:
        await in_thread(lambda s=s: read_frame(s))  # type: ignore[misc]
    assert jpeg.client_count == 2
    assert jpeg.viewer_count == 2
    await jpeg.drop_clients()
    assert jpeg.client_count == 0

    def gone(sock: ssl.SSLSocket) -> bool:
        try:
            while sock.recv(65536):
                pass  # frames already in flight
        except (ConnectionResetError, ssl.SSLError):
            pass
        return True

    for s in socks:
        assert await in_thread(lambda s=s: gone(s))  # type: ignore[misc]
    again = await in_thread(lambda: viewer(jpeg.port))
    sockets.append(again)
    _, data = await in_thread(lambda: read_frame(again))
    check_jpeg(data, (320, 180))


async def test_stop_then_start_on_the_same_port(handle: Handle, sockets: list[socket.socket]) -> None:
    svc = JpegCameraService(handle, fps=10.0, width=160, height=90)
    await svc.start()
    try:
        port = svc.port
        sock = await in_thread(lambda: viewer(port))
        sockets.append(sock)
        await in_thread(lambda: read_frame(sock))
        await svc.stop()
        assert svc.client_count == 0

        def eof() -> bool:
            try:
                while sock.recv(65536):
                    pass
            except (ConnectionResetError, ssl.SSLError):
                pass
            return True

        assert await in_thread(eof)
        with pytest.raises(ConnectionRefusedError):
            await in_thread(lambda: connect(port))
        await svc.start()
        assert svc.port == port
        again = await in_thread(lambda: viewer(port))
        sockets.append(again)
        _, data = await in_thread(lambda: read_frame(again))
        check_jpeg(data, (160, 90))
    finally:
        await svc.stop()


async def test_two_viewers_share_rendered_frames(handle: Handle, sockets: list[socket.socket]) -> None:
    ticks = iter(range(10**6))
    # A clock that moves one second per tick: every tick needs a new render.
    svc = JpegCameraService(
        handle, fps=10.0, width=160, height=90,
        clock=lambda: datetime.fromtimestamp(FIXED.timestamp() + next(ticks)),
    )
    await svc.start()
    try:
        a = await in_thread(lambda: viewer(svc.port))
        b = await in_thread(lambda: viewer(svc.port))
        sockets.extend([a, b])
        await until(lambda: svc.viewer_count == 2)

        def frames(sock: ssl.SSLSocket) -> list[bytes]:
            return [read_frame(sock)[1] for _ in range(6)]

        fa, fb = await asyncio.gather(in_thread(lambda: frames(a)), in_thread(lambda: frames(b)))
    finally:
        await svc.stop()
    assert set(fa) & set(fb), "the viewers never got the same frame"
    assert svc.frames_sent >= 12
    assert svc.frames_rendered < svc.frames_sent


async def test_nothing_is_rendered_without_viewers(jpeg: JpegCameraService) -> None:
    await asyncio.sleep(0.3)
    assert jpeg.frames_rendered == 0
    assert jpeg.latest_frame is None


# --------------------------------------------------------------------------- RTSPS


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def rtsp(sock: ssl.SSLSocket, method: str, url: str, cseq: int, headers: dict[str, str] | None = None) -> Response:
    lines = [f"{method} {url} RTSP/1.0", f"CSeq: {cseq}", "User-Agent: test-client/1.0"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    head = buf.decode().split("\r\n")
    version, status, *_ = head[0].split(" ")
    assert version == "RTSP/1.0"
    out: dict[str, str] = {}
    for line in head[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip().lower()] = v.strip()
    assert out.get("cseq") == str(cseq)
    body = recv_exact(sock, int(out.get("content-length", "0")))
    return Response(int(status), out, body)


def digest(method: str, uri: str, challenge: str, password: str = CODE, user: str = "bblp") -> str:
    """An RFC 2617 Digest Authorization header (no qop, as live555 asks), computed here."""
    realm = re.search(r'realm="([^"]*)"', challenge)
    nonce = re.search(r'nonce="([^"]*)"', challenge)
    assert realm and nonce
    ha1 = hashlib.md5(f"{user}:{realm[1]}:{password}".encode(), usedforsecurity=False).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode(), usedforsecurity=False).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce[1]}:{ha2}".encode(), usedforsecurity=False).hexdigest()
    return f'Digest username="{user}", realm="{realm[1]}", nonce="{nonce[1]}", uri="{uri}", response="{response}"'


@pytest.fixture
def x1(handle: Handle) -> Handle:
    handle.model = model_by_code("X1C")
    handle.name = "Virtual X1C 1"
    return handle


@pytest.fixture
async def rtsps(x1: Handle) -> AsyncIterator[RtspService]:
    svc = RtspService(x1, fps=5.0, width=320, height=180, watch_interval=None)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


def _url(svc: RtspService) -> str:
    return f"rtsps://127.0.0.1:{svc.port}/streaming/live/1"


async def test_rtsp_options_needs_no_auth(rtsps: RtspService, sockets: list[socket.socket]) -> None:
    def run() -> Response:
        sock = connect(rtsps.port)
        sockets.append(sock)
        return rtsp(sock, "OPTIONS", _url(rtsps), 1)

    r = await in_thread(run)
    assert r.status == 200
    assert "DESCRIBE" in r.headers["public"]
    assert "PLAY" in r.headers["public"]
    assert r.headers["server"].startswith("LIVE555 Streaming Media v")


async def test_rtsp_describe_without_auth_gets_a_digest_challenge(
    rtsps: RtspService, sockets: list[socket.socket]
) -> None:
    def run() -> list[Response]:
        out = []
        for _ in range(2):
            sock = connect(rtsps.port)
            sockets.append(sock)
            out.append(rtsp(sock, "DESCRIBE", _url(rtsps), 2, {"Accept": "application/sdp"}))
        return out

    first, second = await in_thread(run)
    for r in (first, second):
        assert r.status == 401
        challenge = r.headers["www-authenticate"]
        assert challenge.startswith("Digest ")
        assert 'realm="LIVE555 Streaming Media"' in challenge
        assert re.search(r'nonce="[0-9a-f]{16,}"', challenge)
        assert not r.body
    assert first.headers["www-authenticate"] != second.headers["www-authenticate"]  # nonce per connection


async def test_rtsp_describe_with_digest_returns_h264_sdp(
    rtsps: RtspService, sockets: list[socket.socket]
) -> None:
    url = _url(rtsps)

    def run() -> Response:
        sock = connect(rtsps.port)
        sockets.append(sock)
        challenge = rtsp(sock, "DESCRIBE", url, 2).headers["www-authenticate"]
        return rtsp(sock, "DESCRIBE", url, 3, {"Authorization": digest("DESCRIBE", url, challenge)})

    r = await in_thread(run)
    assert r.status == 200
    assert r.headers["content-type"] == "application/sdp"
    assert r.headers["content-base"].endswith("/streaming/live/1/")
    sdp = r.body.decode()
    assert sdp.startswith("v=0\r\n")
    assert "m=video 0 RTP/AVP 96" in sdp
    assert "a=rtpmap:96 H264/90000" in sdp
    sprop = re.search(r"sprop-parameter-sets=([A-Za-z0-9+/=]+),([A-Za-z0-9+/=]+)", sdp)
    assert sprop
    sps, pps = base64.b64decode(sprop[1]), base64.b64decode(sprop[2])
    assert sps[0] & 0x1F == 7
    assert pps[0] & 0x1F == 8
    assert "a=control:track1" in sdp


@pytest.mark.parametrize(
    "make_auth",
    [
        pytest.param(lambda url, ch: digest("DESCRIBE", url, ch, password="87654321"), id="wrong-password"),
        pytest.param(lambda url, ch: digest("DESCRIBE", url, ch, user="admin"), id="wrong-user"),
        pytest.param(lambda url, ch: digest("SETUP", url, ch), id="wrong-method"),
        pytest.param(
            lambda url, ch: digest("DESCRIBE", url, ch.replace('nonce="', 'nonce="0')), id="stale-nonce"
        ),
        pytest.param(
            lambda url, ch: "Basic " + base64.b64encode(f"bblp:{CODE}".encode()).decode(), id="basic"
        ),
    ],
)
async def test_rtsp_bad_credentials_get_401(
    rtsps: RtspService, sockets: list[socket.socket], make_auth: Callable[[str, str], str]
) -> None:
    url = _url(rtsps)

    def run() -> Response:
        sock = connect(rtsps.port)
        sockets.append(sock)
        challenge = rtsp(sock, "DESCRIBE", url, 1).headers["www-authenticate"]
        return rtsp(sock, "DESCRIBE", url, 2, {"Authorization": make_auth(url, challenge)})

    r = await in_thread(run)
    assert r.status == 401
    assert "www-authenticate" in r.headers


async def test_rtsp_nonce_of_another_connection_is_refused(
    rtsps: RtspService, sockets: list[socket.socket]
) -> None:
    url = _url(rtsps)

    def run() -> Response:
        a, b = connect(rtsps.port), connect(rtsps.port)
        sockets.extend([a, b])
        challenge = rtsp(a, "DESCRIBE", url, 1).headers["www-authenticate"]
        rtsp(b, "DESCRIBE", url, 1)
        return rtsp(b, "DESCRIBE", url, 2, {"Authorization": digest("DESCRIBE", url, challenge)})

    assert (await in_thread(run)).status == 401


async def test_rtsp_accepts_credentials_in_the_url(rtsps: RtspService, sockets: list[socket.socket]) -> None:
    def run() -> tuple[Response, Response]:
        sock = connect(rtsps.port)
        sockets.append(sock)
        good = rtsp(sock, "DESCRIBE", f"rtsps://bblp:{CODE}@127.0.0.1:{rtsps.port}/streaming/live/1", 1)
        bad = rtsp(sock, "DESCRIBE", f"rtsps://bblp:nope@127.0.0.1:{rtsps.port}/streaming/live/1", 2)
        return good, bad

    good, bad = await in_thread(run)
    assert good.status == 200
    assert b"H264" in good.body
    assert bad.status == 401


async def test_rtsp_unknown_stream_and_method(rtsps: RtspService, sockets: list[socket.socket]) -> None:
    def run() -> tuple[Response, Response]:
        sock = connect(rtsps.port)
        sockets.append(sock)
        missing = rtsp(sock, "DESCRIBE", f"rtsps://127.0.0.1:{rtsps.port}/streaming/live/2", 1)
        record = rtsp(sock, "RECORD", _url(rtsps), 2)
        return missing, record

    missing, record = await in_thread(run)
    assert missing.status == 404
    assert record.status == 405


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


async def test_rtsp_setup_play_streams_h264_over_interleaved_rtp(
    rtsps: RtspService, sockets: list[socket.socket]
) -> None:
    url = _url(rtsps)

    def run() -> tuple[Response, Response, list[bytes]]:
        sock = connect(rtsps.port)
        sockets.append(sock)
        ch = rtsp(sock, "DESCRIBE", url, 1).headers["www-authenticate"]
        rtsp(sock, "DESCRIBE", url, 2, {"Authorization": digest("DESCRIBE", url, ch)})
        track = url + "/track1"
        udp = rtsp(
            sock, "SETUP", track, 3,
            {"Transport": "RTP/AVP;unicast;client_port=5000-5001", "Authorization": digest("SETUP", track, ch)},
        )
        assert udp.status == 461
        setup = rtsp(
            sock, "SETUP", track, 4,
            {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1", "Authorization": digest("SETUP", track, ch)},
        )
        session = setup.headers["session"].split(";")[0]
        play = rtsp(sock, "PLAY", url + "/", 5, {"Session": session, "Range": "npt=0.000-"})
        # Collect RTP packets until one picture (marker bit) is complete.
        nals: list[bytes] = []
        fu = bytearray()
        seqs = []
        while True:
            magic, channel, length = struct.unpack("!cBH", recv_exact(sock, 4))
            assert magic == b"$"
            assert channel == 0
            packet = recv_exact(sock, length)
            first, second, seq = struct.unpack("!BBH", packet[:4])
            assert first >> 6 == 2  # RTP version 2
            assert second & 0x7F == 96
            seqs.append(seq)
            payload = packet[12:]
            kind = payload[0] & 0x1F
            if kind == 28:  # FU-A
                if payload[1] & 0x80:
                    fu = bytearray([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
                fu += payload[2:]
                if payload[1] & 0x40:
                    nals.append(bytes(fu))
            else:
                nals.append(payload)
            if second & 0x80:
                break
        assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
        return setup, play, nals

    setup, play, nals = await in_thread(run)
    assert setup.status == 200
    assert "interleaved=0-1" in setup.headers["transport"]
    assert play.status == 200
    assert [n[0] & 0x1F for n in nals] == [7, 8, 5]  # SPS, PPS, IDR slice
    idr = _unescape(nals[2])
    mbs = (320 // 16) * ((180 + 15) // 16)
    # every macroblock: 2-byte prefix (mb_type I_PCM + alignment) and 384 samples
    assert len(idr) == pytest.approx(mbs * 386, abs=16)


async def test_rtsp_port_closed_while_lan_liveview_is_off(x1: Handle, sockets: list[socket.socket]) -> None:
    x1.dynamic.lan_liveview = False
    svc = RtspService(x1, width=160, height=90, watch_interval=0.05)
    await svc.start()
    try:
        port = svc.port
        assert port > 0
        assert not svc.listening
        with pytest.raises(ConnectionRefusedError):
            await in_thread(lambda: connect(port))
        x1.dynamic.lan_liveview = True  # the switch flips; the watcher opens the port
        await until(lambda: svc.listening)
        assert svc.port == port

        def options() -> int:
            sock = connect(port)
            sockets.append(sock)
            return rtsp(sock, "OPTIONS", _url(svc), 1).status

        assert await in_thread(options) == 200
        await svc.set_enabled(False)
        with pytest.raises(ConnectionRefusedError):
            await in_thread(lambda: connect(port))
    finally:
        await svc.stop()


async def test_rtsp_stalled_answers_nothing_until_released(
    rtsps: RtspService, sockets: list[socket.socket]
) -> None:
    sock = await in_thread(lambda: connect(rtsps.port))
    sockets.append(sock)
    rtsps.stalled = True

    def silent() -> bool:
        sock.sendall(f"OPTIONS {_url(rtsps)} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        sock.settimeout(0.5)
        try:
            sock.recv(1)
        except TimeoutError:
            return True
        return False

    assert await in_thread(silent)
    rtsps.stalled = False

    def answer() -> bytes:
        sock.settimeout(TIMEOUT)
        return sock.recv(4096)

    assert (await in_thread(answer)).startswith(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n")


async def test_rtsp_drop_and_restart(rtsps: RtspService, sockets: list[socket.socket]) -> None:
    port = rtsps.port
    sock = await in_thread(lambda: connect(port))
    sockets.append(sock)
    await in_thread(lambda: rtsp(sock, "OPTIONS", _url(rtsps), 1))
    assert rtsps.client_count == 1
    await rtsps.drop_clients()
    assert rtsps.client_count == 0
    assert await in_thread(lambda: closed_without_data(sock))
    await rtsps.stop()
    with pytest.raises(ConnectionRefusedError):
        await in_thread(lambda: connect(port))
    await rtsps.start()
    assert rtsps.port == port

    def options() -> int:
        s = connect(port)
        sockets.append(s)
        return rtsp(s, "OPTIONS", _url(rtsps), 1).status

    assert await in_thread(options) == 200


async def test_rtsp_stream_decodes_with_ffmpeg_if_pyav_is_installed(rtsps: RtspService) -> None:
    """PyAV (FFmpeg) is not a dependency; when it is there, let a real player decode the stream."""
    av: Any = pytest.importorskip("av")
    rtsps.fps = 10.0
    url = f"rtsps://bblp:{CODE}@127.0.0.1:{rtsps.port}/streaming/live/1"  # FFmpeg turns these into Digest

    def play() -> list[tuple[int, int]]:
        options = {"rtsp_transport": "tcp", "tls_verify": "0", "analyzeduration": "300000", "probesize": "65536"}
        with av.open(url, options=options, timeout=TIMEOUT) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            sizes = []
            for frame in container.decode(stream):
                sizes.append((frame.width, frame.height))
                if len(sizes) == 2:
                    break
            return sizes

    assert await in_thread(play) == [(320, 180), (320, 180)]
