"""The virtual printer's cameras.

Two services, one per camera kind (``PrinterModel.camera``):

:class:`JpegCameraService` (P1/A1 class, real port 6000)
    TLS with the printer's certificate. The client sends one 80-byte auth packet
    (``<IIII`` 0x40, 0x3000, 0, 0; user "bblp" and the access code, each NUL-padded to 32 bytes).
    A wrong user or code, a malformed packet, or no packet within ``auth_timeout`` closes the
    connection without sending anything. After that, for every frame: a 16-byte header
    (``<IIII`` JPEG length, 0, 1, 0) written as its own TLS record, then the JPEG bytes.
    Frames are drawn live from ``handle.dynamic`` by :mod:`bambulab.sim.render`; one frame is
    rendered per tick (in a worker thread) and shared by every viewer of the printer, and no
    frame is rendered while nobody watches.

:class:`RtspService` (X1/H2/P2S class, real port 322)
    An RTSPS server that answers like the printers' live555: ``OPTIONS`` without
    authentication; ``DESCRIBE`` and ``SETUP`` only with RTSP Digest authentication
    (realm "LIVE555 Streaming Media", one nonce per connection, user ``bblp``, password = access
    code) or with the credentials in the request URL's user-info; an SDP with one H.264 video
    track; ``SETUP`` with interleaved RTP over TCP; ``PLAY``, ``PAUSE``, ``TEARDOWN``,
    ``GET_PARAMETER``, ``SET_PARAMETER``. With ``media=True`` (the default) ``PLAY`` streams real
    H.264 over the interleaved channel; see :class:`RtspService` for how. It listens only while
    ``handle.dynamic.lan_liveview`` is on: with the switch off the port is closed, as on a real
    printer.

Both take part in fault injection (:class:`Service`): ``stalled`` keeps sockets open and sends
nothing, ``drop_clients()`` aborts every connection, ``stop()``/``start()`` reuse the port.
Access codes are never logged.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import hashlib
import hmac
import logging
import re
import secrets
import socket
import ssl
import struct
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from PIL import Image

from bambulab.sim import render
from bambulab.sim.service import Service

if TYPE_CHECKING:
    from bambulab.sim.service import PrinterHandle

__all__ = [
    "AUTH_PACKET_SIZE",
    "FRAME_HEADER",
    "RTSP_PATH",
    "RTSP_REALM",
    "RTSP_SERVER",
    "JpegCameraService",
    "RtspService",
    "h264_parameter_sets",
]

log = logging.getLogger(__name__)

AUTH_PACKET_SIZE = 80
_AUTH_HEAD = struct.Struct("<IIII")
_AUTH_LENGTH = 0x40
_AUTH_TYPE = 0x3000
_USERNAME = b"bblp"
#: the 16-byte header before each JPEG: length, itrack 0, flags 1, reserved 0 (little-endian)
FRAME_HEADER = struct.Struct("<IIII")

RTSP_PATH = "/streaming/live/1"
RTSP_REALM = "LIVE555 Streaming Media"
RTSP_SERVER = "LIVE555 Streaming Media v2021.08.04"
_RTSP_PUBLIC = "OPTIONS, DESCRIBE, SETUP, TEARDOWN, PLAY, PAUSE, GET_PARAMETER, SET_PARAMETER"
_MAX_REQUEST = 16 * 1024


def _local_now() -> datetime:
    return datetime.now()


# --------------------------------------------------------------------------- shared server


@dataclass(eq=False)
class _Conn:
    """One accepted connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    nonce: str = field(default_factory=lambda: secrets.token_hex(16))
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def abort(self) -> None:
        self.writer.transport.abort()


class _TlsServer(Service, abc.ABC):
    """An asyncio TLS (or plain) server with tracked connections and tasks.

    Subclasses implement :meth:`_serve`. Handler tasks end quietly when cancelled, so stopping
    leaves no "Task was destroyed" or ``CancelledError`` noise behind.
    """

    _kind = "camera"

    def __init__(
        self,
        handle: PrinterHandle,
        *,
        port: int = 0,
        host: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        tls: bool = True,
    ) -> None:
        self._handle = handle
        self._host = host if host is not None else handle.host
        self._port = port
        self._ssl_context = ssl_context
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stalled = False
        self._unstalled = asyncio.Event()
        self._unstalled.set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- Service API

    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        return self._host

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def client_count(self) -> int:
        return len(self._conns)

    async def start(self) -> None:
        if self._server is not None:
            return
        await self._listen()

    async def stop(self) -> None:
        await self._close_listener()

    async def drop_clients(self) -> None:
        conns = list(self._conns)
        for conn in conns:
            conn.abort()
        # Give the handlers a moment to notice, so client_count is 0 when this returns.
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    # -- helpers for subclasses

    def _context(self) -> ssl.SSLContext | None:
        if not self._tls:
            return None
        if self._ssl_context is None:
            self._ssl_context = self._handle.tls.server_context()
        return self._ssl_context

    async def _listen(self) -> None:
        # asyncio primitives bind to the loop that first waits on them: make fresh ones, so a
        # service can be started again under another event loop.
        self._loop = asyncio.get_running_loop()
        self._unstalled = asyncio.Event()
        if not self._stalled:
            self._unstalled.set()
        self._server = await asyncio.start_server(
            self._on_client,
            host=self._host,
            port=self._port,
            ssl=self._context(),
            reuse_address=True,
            limit=_MAX_REQUEST * 4,
        )
        sockets = self._server.sockets
        if sockets:
            self._port = sockets[0].getsockname()[1]
        log.debug("%s %s listening on %s:%d", self._kind, self._handle.serial, self._host, self._port)

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self._conns):
            conn.abort()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def stalled(self) -> bool:
        """Fault injection: while True, connections stay open but nothing is sent.

        New connections still complete the TLS handshake; then nothing more is answered (a
        JPEG viewer gets no frames, a bad login is not closed, RTSP requests get no reply) until
        the stall ends. Safe to set from any thread.
        """
        return self._stalled

    @stalled.setter
    def stalled(self, value: bool) -> None:
        self._stalled = bool(value)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:  # set from another thread: wake waiters on the service's loop
                loop.call_soon_threadsafe(self._sync_stall)
                return
        self._sync_stall()

    def _sync_stall(self) -> None:
        if self._stalled:
            self._unstalled.clear()
        else:
            self._unstalled.set()

    async def _wait_unstalled(self) -> None:
        await self._unstalled.wait()

    async def _close_quietly(self, conn: _Conn, grace: float = 0.25) -> None:
        """Close: TLS close_notify, then the TCP connection (without waiting long for the peer)."""
        conn.writer.close()
        try:
            await asyncio.wait_for(conn.writer.wait_closed(), grace)
        except (TimeoutError, OSError, ssl.SSLError):
            conn.abort()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._server is None:  # accepted just before stop()
            writer.transport.abort()
            return
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        conn = _Conn(reader, writer, f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer))
        self._conns.add(conn)
        try:
            await self._serve(conn)
        except asyncio.CancelledError:
            # stop(): end normally. asyncio.streams would report a cancelled callback task as
            # an error, so the cancellation is not re-raised from this top-level handler.
            pass
        except (OSError, EOFError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._conns.discard(conn)
            if not writer.is_closing():
                writer.transport.abort()
            if task is not None:
                self._tasks.discard(task)

    @abc.abstractmethod
    async def _serve(self, conn: _Conn) -> None:
        """Talk to one client until it leaves."""


# --------------------------------------------------------------------------- port 6000 JPEG


def _parse_auth(packet: bytes, access_code: str) -> bool:
    """True if ``packet`` is a well-formed 80-byte auth packet with user bblp and this code."""
    if len(packet) != AUTH_PACKET_SIZE:
        return False
    length, ptype, _, _ = _AUTH_HEAD.unpack_from(packet)
    if length != _AUTH_LENGTH or ptype != _AUTH_TYPE:
        return False
    user = packet[16:48].split(b"\0", 1)[0]
    code = packet[48:80].split(b"\0", 1)[0]
    user_ok = hmac.compare_digest(user, _USERNAME)
    code_ok = hmac.compare_digest(code, access_code.encode())
    return user_ok and code_ok


class JpegCameraService(_TlsServer):
    """The P1/A1 "chamber image" stream: TLS, 80-byte auth, then 16-byte header + JPEG per frame.

    ``fps`` (frames per second, float, default 1.0 like the printers) may be changed while
    running. ``width``/``height``/``quality`` set the frames (1280x720 like a P1; smaller sizes
    save CPU in farms). ``render_in_thread`` renders off the event loop (default). ``clock``
    gives the time shown in the frames (local time by default).

    One frame per tick is rendered and shared by every viewer; when the printer's state and the
    clock have not changed since the previous tick, the previous JPEG is sent again without
    re-rendering. A viewer that reads too slowly skips frames rather than queueing them.
    """

    _kind = "jpeg camera"

    def __init__(
        self,
        handle: PrinterHandle,
        *,
        port: int = 0,
        host: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        fps: float = 1.0,
        width: int = 1280,
        height: int = 720,
        quality: int = render.DEFAULT_QUALITY,
        auth_timeout: float = 10.0,
        render_in_thread: bool = True,
        clock: Callable[[], datetime] = _local_now,
    ) -> None:
        super().__init__(handle, port=port, host=host, ssl_context=ssl_context)
        self.fps = fps
        self.width = width
        self.height = height
        self.quality = quality
        self.auth_timeout = auth_timeout
        self.render_in_thread = render_in_thread
        self._clock = clock
        self._viewers = 0
        self._ticker: asyncio.Task[None] | None = None
        self._tick = asyncio.Event()
        self._frame: bytes | None = None
        self._frame_seq = 0
        self._last_info: render.FrameInfo | None = None
        #: how many frames were drawn (not counting re-sent unchanged frames)
        self.frames_rendered = 0
        #: how many frames were sent, summed over all viewers
        self.frames_sent = 0

    @property
    def fps(self) -> float:
        return self._fps

    @fps.setter
    def fps(self, value: float) -> None:
        if not value > 0:
            raise ValueError("fps must be positive")
        self._fps = float(value)

    @property
    def viewer_count(self) -> int:
        """Clients that passed authentication and receive frames."""
        return self._viewers

    @property
    def latest_frame(self) -> bytes | None:
        """The last frame rendered for viewers (None before the first viewer)."""
        return self._frame

    def snapshot(self) -> render.FrameInfo:
        h = self._handle
        return render.snapshot(
            name=h.name, serial=h.serial, model_name=h.model.name, dyn=h.dynamic, now=self._clock(),
            width=self.width, height=self.height, quality=self.quality,
        )

    async def _render(self) -> bytes:
        info = self.snapshot()
        if info == self._last_info and self._frame is not None:
            return self._frame
        if self.render_in_thread:
            frame = await asyncio.to_thread(render.render_info, info)
        else:
            frame = render.render_info(info)
        self._last_info = info
        self.frames_rendered += 1
        return frame

    async def _stop_ticker(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)

    async def stop(self) -> None:
        await super().stop()
        await self._stop_ticker()
        self._viewers = 0
        self._frame = None
        self._last_info = None

    async def _run_ticker(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        try:
            while self._viewers > 0:
                if not self.stalled:
                    try:
                        self._frame = await self._render()
                        self._frame_seq += 1
                    except Exception:  # a drawing bug must not freeze every viewer
                        log.exception("camera %s: rendering a frame failed", self._handle.serial)
                tick, self._tick = self._tick, asyncio.Event()
                tick.set()
                due += 1.0 / self._fps
                now = loop.time()
                if due < now:  # fell behind (slow render or a long stall): do not burst
                    due = now
                await asyncio.sleep(due - now)
        finally:
            if self._ticker is asyncio.current_task():
                self._ticker = None

    def _viewer_joined(self) -> None:
        self._viewers += 1
        if self._ticker is None or self._ticker.done():
            self._tick = asyncio.Event()  # nobody waits on the old one: no ticker, no viewers
            self._ticker = self._spawn(self._run_ticker(), f"camera-ticker-{self._handle.serial}")

    async def _send_frames(self, conn: _Conn) -> None:
        sent_seq = -1
        writer = conn.writer
        while True:
            tick = self._tick
            frame = self._frame
            if self.stalled or frame is None or self._frame_seq == sent_seq:
                await tick.wait()
                continue
            sent_seq = self._frame_seq
            # The header goes out as its own TLS record: clients read exactly 16 bytes first.
            writer.write(FRAME_HEADER.pack(len(frame), 0, 1, 0))
            await writer.drain()
            writer.write(frame)
            await writer.drain()
            self.frames_sent += 1

    async def _serve(self, conn: _Conn) -> None:
        try:
            packet = await asyncio.wait_for(conn.reader.readexactly(AUTH_PACKET_SIZE), self.auth_timeout)
        except (TimeoutError, asyncio.IncompleteReadError):
            packet = b""
        if not _parse_auth(packet, self._handle.access_code):
            log.info("camera %s: rejected a client from %s", self._handle.serial, conn.peer)
            await self._wait_unstalled()
            await self._close_quietly(conn)
            return
        self._viewer_joined()
        sender = self._spawn(self._send_frames(conn), f"camera-viewer-{conn.peer}")
        watcher = self._spawn(self._until_eof(conn), f"camera-eof-{conn.peer}")
        try:
            # Ends when the client leaves (EOF or reset) or a write fails.
            await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._viewers -= 1
            for task in (sender, watcher):
                task.cancel()
            await asyncio.gather(sender, watcher, return_exceptions=True)

    @staticmethod
    async def _until_eof(conn: _Conn) -> None:
        """Read and ignore whatever the client sends after the auth packet, until EOF."""
        while await conn.reader.read(4096):
            pass


# --------------------------------------------------------------------------- H.264 helpers


class _BitWriter:
    def __init__(self) -> None:
        self._bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self._bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def ue(self, value: int) -> None:
        v = value + 1
        n = v.bit_length()
        self.u(n - 1, 0)
        self.u(n, v)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def aligned(self) -> bytes:
        """The bits so far, padded with zero bits to a whole byte."""
        while len(self._bits) % 8:
            self._bits.append(0)
        out = bytearray()
        for i in range(0, len(self._bits), 8):
            byte = 0
            for b in self._bits[i : i + 8]:
                byte = (byte << 1) | b
            out.append(byte)
        return bytes(out)

    def trailing(self) -> bytes:
        """The bits so far with rbsp_trailing_bits (a one bit, then zero bits to a byte)."""
        self._bits.append(1)
        return self.aligned()


_EPB = re.compile(b"\x00\x00(?=[\x00-\x03])")


def _escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes (00 00 0x -> 00 00 03 0x)."""
    return _EPB.sub(b"\x00\x00\x03", rbsp)


def h264_parameter_sets(width: int, height: int) -> tuple[bytes, bytes]:
    """SPS and PPS NAL units (no start codes) for a Constrained Baseline stream of this size."""
    mbs_w, mbs_h = (width + 15) // 16, (height + 15) // 16
    level = 31 if mbs_w * mbs_h <= 3600 else 40 if mbs_w * mbs_h <= 8192 else 51
    sps = _BitWriter()
    sps.u(8, 66)  # profile_idc: Baseline
    sps.u(8, 0xC0)  # constraint_set0 + set1: Constrained Baseline
    sps.u(8, level)
    sps.ue(0)  # seq_parameter_set_id
    sps.ue(0)  # log2_max_frame_num_minus4
    sps.ue(2)  # pic_order_cnt_type
    sps.ue(1)  # max_num_ref_frames
    sps.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    sps.ue(mbs_w - 1)
    sps.ue(mbs_h - 1)
    sps.u(1, 1)  # frame_mbs_only_flag
    sps.u(1, 1)  # direct_8x8_inference_flag
    crop_r, crop_b = (mbs_w * 16 - width) // 2, (mbs_h * 16 - height) // 2
    if crop_r or crop_b:
        sps.u(1, 1)
        sps.ue(0)
        sps.ue(crop_r)
        sps.ue(0)
        sps.ue(crop_b)
    else:
        sps.u(1, 0)
    sps.u(1, 0)  # vui_parameters_present_flag
    pps = _BitWriter()
    pps.ue(0)  # pic_parameter_set_id
    pps.ue(0)  # seq_parameter_set_id
    pps.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    pps.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    pps.ue(0)  # num_slice_groups_minus1
    pps.ue(0)  # num_ref_idx_l0_default_active_minus1
    pps.ue(0)  # num_ref_idx_l1_default_active_minus1
    pps.u(1, 0)  # weighted_pred_flag
    pps.u(2, 0)  # weighted_bipred_idc
    pps.se(0)  # pic_init_qp_minus26
    pps.se(0)  # pic_init_qs_minus26
    pps.se(0)  # chroma_qp_index_offset
    pps.u(1, 1)  # deblocking_filter_control_present_flag
    pps.u(1, 0)  # constrained_intra_pred_flag
    pps.u(1, 0)  # redundant_pic_cnt_present_flag
    return b"\x67" + _escape(sps.trailing()), b"\x68" + _escape(pps.trailing())


def _pcm_idr_slice(img: Image.Image, width: int, height: int, idr_id: int) -> bytes:
    """One IDR picture (NAL unit, no start code) as a single slice of I_PCM macroblocks.

    I_PCM carries raw samples with no prediction or transform: bulky (1.5 bytes per pixel) but
    exact, and it needs nothing beyond Pillow. Every H.264 decoder can show it.
    """
    mbs_w, mbs_h = (width + 15) // 16, (height + 15) // 16
    pw, ph = mbs_w * 16, mbs_h * 16
    img = img.convert("RGB")
    if img.size != (width, height):
        img = img.resize((width, height))
    if (pw, ph) != (width, height):
        padded = Image.new("RGB", (pw, ph))
        padded.paste(img, (0, 0))
        img = padded
    y_plane, cb_plane, cr_plane = img.convert("YCbCr").split()
    y = y_plane.tobytes()
    cw = pw // 2
    cb = cb_plane.resize((cw, ph // 2), Image.Resampling.BOX).tobytes()
    cr = cr_plane.resize((cw, ph // 2), Image.Resampling.BOX).tobytes()

    head = _BitWriter()
    head.u(8, 0x65)  # NAL header: nal_ref_idc 3, nal_unit_type 5 (IDR slice)
    head.ue(0)  # first_mb_in_slice
    head.ue(7)  # slice_type: I, and every slice of the picture is I
    head.ue(0)  # pic_parameter_set_id
    head.u(4, 0)  # frame_num (log2_max_frame_num = 4)
    head.ue(idr_id & 0xFFFF)  # idr_pic_id
    head.u(1, 0)  # no_output_of_prior_pics_flag
    head.u(1, 0)  # long_term_reference_flag
    head.se(0)  # slice_qp_delta
    head.ue(1)  # disable_deblocking_filter_idc: off
    head.ue(25)  # the first macroblock's mb_type: I_PCM
    first_prefix = head.aligned()  # pcm_alignment_zero_bits up to the byte boundary
    mb = _BitWriter()
    mb.ue(25)
    prefix = mb.aligned()  # later macroblocks start byte-aligned: mb_type, then alignment

    parts: list[bytes] = []
    for my in range(mbs_h):
        for mx in range(mbs_w):
            parts.append(first_prefix if my == 0 and mx == 0 else prefix)
            base = my * 16 * pw + mx * 16
            parts.extend(y[base + row * pw : base + row * pw + 16] for row in range(16))
            cbase = my * 8 * cw + mx * 8
            parts.extend(cb[cbase + row * cw : cbase + row * cw + 8] for row in range(8))
            parts.extend(cr[cbase + row * cw : cbase + row * cw + 8] for row in range(8))
    parts.append(b"\x80")  # rbsp_slice_trailing_bits
    return _escape(b"".join(parts))


# --------------------------------------------------------------------------- RTSP(S)


@dataclass
class _Request:
    method: str
    url: str
    version: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def cseq(self) -> str | None:
        return self.headers.get("cseq")


def _parse_params(text: str) -> dict[str, str]:
    """Parse ``k="v", k2=v2`` (an Authorization header's parameters)."""
    out: dict[str, str] = {}
    for m in re.finditer(r'([A-Za-z0-9_-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)', text):
        key = m.group(1).lower()
        out[key] = m.group(3) if m.group(3) is not None else m.group(2)
    return out


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _rtsp_date() -> str:
    # live555's format: "Date: Thu, Jan 02 2025 03:04:05 GMT"
    return datetime.now(UTC).strftime("%a, %b %d %Y %H:%M:%S GMT")


@dataclass(eq=False)
class _RtspSession:
    session_id: str
    channel: int = 0
    playing: bool = False
    seq: int = field(default_factory=lambda: secrets.randbelow(0x10000))
    timestamp: int = field(default_factory=lambda: secrets.randbelow(0x100000000))
    ssrc: int = field(default_factory=lambda: secrets.randbelow(0x100000000))
    streamer: asyncio.Task[None] | None = None


class RtspService(_TlsServer):
    """An RTSPS server like the X1/H2/P2S printers' live555, for ``/streaming/live/1``.

    It listens only while the printer's LAN-liveview switch is on: at ``start()`` it reads
    ``handle.dynamic.lan_liveview``, and a watcher (every ``watch_interval`` seconds, None to
    turn off) opens or closes the port when the switch changes. :meth:`set_enabled` forces it
    the same way (until the switch next changes); :meth:`refresh` re-reads the switch now.
    The port stays reserved while closed, so clients get "connection refused" and later find
    the stream on the same port.

    Media: ``SETUP`` accepts only interleaved RTP over TCP (``RTP/AVP/TCP``), as ffmpeg uses
    with ``-rtsp_transport tcp``; UDP gets ``461 Unsupported Transport``. With ``media=True``
    ``PLAY`` sends real H.264 (RFC 6184, FU-A fragmentation) at ``fps``: each picture is an IDR
    frame of I_PCM macroblocks (uncompressed samples; about 1.4 MB per 1280x720 frame, so keep
    ``fps`` modest) drawn by :mod:`bambulab.sim.render`. No codec library is needed. With
    ``media=False`` ``PLAY`` answers 200 and no media follows.
    """

    _kind = "rtsp camera"

    def __init__(
        self,
        handle: PrinterHandle,
        *,
        port: int = 0,
        host: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        tls: bool = True,
        fps: float = 2.0,
        width: int = 1280,
        height: int = 720,
        media: bool = True,
        watch_interval: float | None = 0.5,
        clock: Callable[[], datetime] = _local_now,
    ) -> None:
        super().__init__(handle, port=port, host=host, ssl_context=ssl_context, tls=tls)
        if not fps > 0:
            raise ValueError("fps must be positive")
        self.fps = fps
        self.width = width
        self.height = height
        self.media = media
        self.watch_interval = watch_interval
        self._clock = clock
        self._wanted = False
        self._enabled = True
        self._seen_switch: bool | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._session_version = int(time.time())
        self._sps, self._pps = h264_parameter_sets(width, height)
        self._lock = asyncio.Lock()

    # -- listening, gated by the LAN-liveview switch

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def url(self) -> str:
        scheme = "rtsps" if self._tls else "rtsp"
        return f"{scheme}://{self._host}:{self._port}{RTSP_PATH}"

    async def start(self) -> None:
        self._wanted = True
        if self._port == 0:
            self._port = self._reserve_port()
        self._seen_switch = bool(self._handle.dynamic.lan_liveview)
        self._enabled = self._seen_switch
        await self._apply()
        if self.watch_interval is not None and (self._watcher is None or self._watcher.done()):
            self._watcher = self._spawn(self._watch(self.watch_interval), f"rtsp-watch-{self._handle.serial}")

    async def stop(self) -> None:
        self._wanted = False
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        async with self._lock:
            await self._close_listener()

    async def set_enabled(self, enabled: bool) -> None:
        """Open (True) or close (False) the port, as the printer's LAN-liveview switch does."""
        self._enabled = enabled
        await self._apply()

    async def refresh(self) -> None:
        """Follow ``handle.dynamic.lan_liveview`` if it changed since last seen."""
        switch = bool(self._handle.dynamic.lan_liveview)
        if switch != self._seen_switch:
            self._seen_switch = switch
            self._enabled = switch
        await self._apply()

    async def _apply(self) -> None:
        async with self._lock:
            want = self._wanted and self._enabled
            if want and self._server is None:
                await self._listen()
            elif not want and self._server is not None:
                await self._close_listener()

    def _reserve_port(self) -> int:
        """Pick a free port now, so the port is known even while the switch is off."""
        with socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET) as s:
            s.bind((self._host, 0))
            port: int = s.getsockname()[1]
        return port

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.refresh()

    # -- protocol

    async def _read_request(self, conn: _Conn) -> _Request | None:
        """Read one request, skipping interleaved ``$`` packets (RTCP from the client)."""
        while True:
            first = await conn.reader.readexactly(1)
            if first == b"$":
                _, length = struct.unpack("!BH", await conn.reader.readexactly(3))
                await conn.reader.readexactly(length)
                continue
            if first in (b"\r", b"\n"):
                continue
            break
        head = first + await conn.reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_REQUEST:
            return None
        lines = head.decode("utf-8", "replace").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("RTSP/"):
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        body = b""
        length = headers.get("content-length", "0")
        if length.isdigit() and 0 < int(length) <= _MAX_REQUEST:
            body = await conn.reader.readexactly(int(length))
        return _Request(parts[0].upper(), parts[1], parts[2], headers, body)

    async def _respond(
        self,
        conn: _Conn,
        req: _Request | None,
        status: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        lines = [f"RTSP/1.0 {status}"]
        if req is not None and req.cseq is not None:
            lines.append(f"CSeq: {req.cseq}")
        lines.append(f"Date: {_rtsp_date()}")
        lines.append(f"Server: {RTSP_SERVER}")
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        if body:
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        await self._wait_unstalled()
        async with conn.write_lock:
            conn.writer.write(data)
            await conn.writer.drain()

    def _authorized(self, conn: _Conn, req: _Request) -> bool:
        code = self._handle.access_code
        split = urlsplit(req.url)
        if split.username is not None:
            user_ok = hmac.compare_digest(unquote(split.username).encode(), _USERNAME)
            pass_ok = hmac.compare_digest(unquote(split.password or "").encode(), code.encode())
            if user_ok and pass_ok:
                return True
        auth = req.headers.get("authorization", "")
        scheme, _, rest = auth.partition(" ")
        if scheme.lower() != "digest":
            return False
        p = _parse_params(rest)
        username, realm, nonce = p.get("username", ""), p.get("realm", ""), p.get("nonce", "")
        uri, response = p.get("uri", ""), p.get("response", "")
        if username != "bblp" or realm != RTSP_REALM or not uri:
            return False
        if not hmac.compare_digest(nonce.encode(), conn.nonce.encode()):
            return False
        ha1 = _md5(f"{username}:{realm}:{code}")
        ha2 = _md5(f"{req.method}:{uri}")
        qop = p.get("qop")
        if qop:
            expected = _md5(f"{ha1}:{nonce}:{p.get('nc', '')}:{p.get('cnonce', '')}:{qop}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{nonce}:{ha2}")
        return hmac.compare_digest(response.lower().encode(), expected.encode())

    async def _challenge(self, conn: _Conn, req: _Request) -> None:
        log.info("rtsp %s: %s from %s not authorised", self._handle.serial, req.method, conn.peer)
        await self._respond(
            conn, req, "401 Unauthorized",
            {"WWW-Authenticate": f'Digest realm="{RTSP_REALM}", nonce="{conn.nonce}"'},
        )

    def _path_of(self, url: str) -> str:
        split = urlsplit(url)
        return split.path if split.scheme else url

    def _base_url(self, req: _Request) -> str:
        split = urlsplit(req.url)
        host = split.hostname or self._host
        if ":" in host:
            host = f"[{host}]"
        port = f":{split.port}" if split.port else ""
        return f"{split.scheme or 'rtsps'}://{host}{port}{RTSP_PATH}/"

    def _sdp(self, req: _Request) -> bytes:
        origin = f"IN IP6 {self._host}" if ":" in self._host else f"IN IP4 {self._host}"
        sprop = ",".join(base64.b64encode(n).decode() for n in (self._sps, self._pps))
        profile = self._sps[1:4].hex().upper()
        lines = [
            "v=0",
            f"o=- {self._session_version} 1 {origin}",
            "s=Bambu Streaming Media",
            "i=streaming/live/1",
            "t=0 0",
            f"a=tool:{RTSP_SERVER}",
            "a=type:broadcast",
            "a=control:*",
            "a=range:npt=0-",
            "a=x-qt-text-nam:Bambu Streaming Media",
            "a=x-qt-text-inf:streaming/live/1",
            "m=video 0 RTP/AVP 96",
            "c=IN IP4 0.0.0.0",
            "b=AS:12000",
            "a=rtpmap:96 H264/90000",
            f"a=fmtp:96 packetization-mode=1;profile-level-id={profile};sprop-parameter-sets={sprop}",
            f"a=framerate:{self.fps:g}",
            f"a=x-dimensions:{self.width},{self.height}",
            "a=control:track1",
        ]
        return ("\r\n".join(lines) + "\r\n").encode()

    async def _serve(self, conn: _Conn) -> None:
        sessions: dict[str, _RtspSession] = {}
        try:
            while True:
                try:
                    req = await self._read_request(conn)
                except asyncio.LimitOverrunError:
                    req = None
                if req is None:
                    await self._respond(conn, None, "400 Bad Request")
                    await self._close_quietly(conn)
                    return
                await self._handle_request(conn, req, sessions)
        finally:
            for session in sessions.values():
                await self._stop_stream(session)

    async def _handle_request(self, conn: _Conn, req: _Request, sessions: dict[str, _RtspSession]) -> None:
        method = req.method
        if method == "OPTIONS":
            await self._respond(conn, req, "200 OK", {"Public": _RTSP_PUBLIC})
            return
        if method not in ("DESCRIBE", "SETUP", "PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER", "SET_PARAMETER"):
            await self._respond(conn, req, "405 Method Not Allowed", {"Allow": _RTSP_PUBLIC})
            return
        path = self._path_of(req.url).rstrip("/")
        if method in ("DESCRIBE", "SETUP"):
            if not path.startswith(RTSP_PATH) or path not in (RTSP_PATH, f"{RTSP_PATH}/track1"):
                await self._respond(conn, req, "404 Stream Not Found")
                return
            if not self._authorized(conn, req):
                await self._challenge(conn, req)
                return
        if method == "DESCRIBE":
            await self._respond(
                conn, req, "200 OK",
                {"Content-Base": self._base_url(req), "Content-Type": "application/sdp"},
                self._sdp(req),
            )
            return
        if method == "SETUP":
            await self._setup(conn, req, sessions)
            return
        session_id = req.headers.get("session", "").split(";", 1)[0].strip()
        session = sessions.get(session_id)
        if session is None:
            if method in ("GET_PARAMETER", "SET_PARAMETER") and not session_id:
                await self._respond(conn, req, "200 OK")
            else:
                await self._respond(conn, req, "454 Session Not Found")
            return
        session_hdr = {"Session": f"{session.session_id};timeout=65"}
        if method == "PLAY":
            rtp_info = f"url={self._base_url(req)}track1;seq={session.seq};rtptime={session.timestamp}"
            await self._respond(
                conn, req, "200 OK", {"Range": "npt=0.000-", **session_hdr, "RTP-Info": rtp_info}
            )
            session.playing = True
            if self.media and (session.streamer is None or session.streamer.done()):
                session.streamer = self._spawn(self._stream(conn, session), f"rtsp-stream-{conn.peer}")
        elif method == "PAUSE":
            await self._stop_stream(session)
            await self._respond(conn, req, "200 OK", session_hdr)
        elif method == "TEARDOWN":
            await self._stop_stream(session)
            del sessions[session.session_id]
            await self._respond(conn, req, "200 OK")
        else:  # GET_PARAMETER / SET_PARAMETER: keep-alives
            await self._respond(conn, req, "200 OK", session_hdr)

    async def _setup(self, conn: _Conn, req: _Request, sessions: dict[str, _RtspSession]) -> None:
        transport = req.headers.get("transport", "")
        if "RTP/AVP/TCP" not in transport.upper():
            await self._respond(conn, req, "461 Unsupported Transport")
            return
        m = re.search(r"interleaved=(\d+)(?:-(\d+))?", transport)
        channel = int(m.group(1)) if m else 0
        requested = req.headers.get("session", "").split(";", 1)[0].strip()
        session = sessions.get(requested)
        if session is None:
            session = _RtspSession(session_id=secrets.token_hex(4).upper())
            sessions[session.session_id] = session
        session.channel = channel
        await self._respond(
            conn, req, "200 OK",
            {
                "Transport": f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}",
                "Session": f"{session.session_id};timeout=65",
            },
        )

    async def _stop_stream(self, session: _RtspSession) -> None:
        session.playing = False
        streamer, session.streamer = session.streamer, None
        if streamer is not None and streamer is not asyncio.current_task():
            streamer.cancel()
            await asyncio.gather(streamer, return_exceptions=True)

    def _encode_picture(self, idr_id: int) -> list[bytes]:
        """SPS, PPS and one IDR picture of the printer as it is now (runs in a worker thread)."""
        h = self._handle
        info = render.snapshot(
            name=h.name, serial=h.serial, model_name=h.model.name, dyn=h.dynamic, now=self._clock(),
            width=self.width, height=self.height,
        )
        picture = _pcm_idr_slice(render.render_image(info), self.width, self.height, idr_id)
        return [self._sps, self._pps, picture]

    async def _stream(self, conn: _Conn, session: _RtspSession) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        idr_id = 0
        start = loop.time()
        while session.playing:
            if not self.stalled:
                nals = await asyncio.to_thread(self._encode_picture, idr_id)
                idr_id += 1
                ts = (session.timestamp + int((loop.time() - start) * 90000)) & 0xFFFFFFFF
                packets = _rtp_packets(nals, session, ts)
                async with conn.write_lock:
                    for packet in packets:
                        conn.writer.write(b"$" + struct.pack("!BH", session.channel, len(packet)) + packet)
                    await conn.writer.drain()
            due += 1.0 / self.fps
            now = loop.time()
            if due < now:
                due = now
            await asyncio.sleep(due - now)


_RTP_MAX = 1400


def _rtp_packets(nals: list[bytes], session: _RtspSession, timestamp: int) -> list[bytes]:
    """RFC 6184 packets: single NAL units, or FU-A fragments for big ones; marker on the last."""
    payloads: list[bytes] = []
    for nal in nals:
        if len(nal) <= _RTP_MAX:
            payloads.append(nal)
            continue
        header = nal[0]
        fu_indicator = (header & 0xE0) | 28
        nal_type = header & 0x1F
        data = memoryview(nal)[1:]
        for offset in range(0, len(data), _RTP_MAX):
            chunk = data[offset : offset + _RTP_MAX]
            start = offset == 0
            end = offset + _RTP_MAX >= len(data)
            fu_header = (0x80 if start else 0) | (0x40 if end else 0) | nal_type
            payloads.append(bytes((fu_indicator, fu_header)) + chunk)
    packets: list[bytes] = []
    for i, payload in enumerate(payloads):
        marker = 0x80 if i == len(payloads) - 1 else 0
        packets.append(
            struct.pack("!BBHII", 0x80, marker | 96, session.seq, timestamp, session.ssrc) + payload
        )
        session.seq = (session.seq + 1) & 0xFFFF
    return packets

