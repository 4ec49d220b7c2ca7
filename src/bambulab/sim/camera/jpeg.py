"""The port-6000 JPEG camera of P1/A1-class printers (see :mod:`bambulab.sim.camera`)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
import struct
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from bambulab.sim import render

if TYPE_CHECKING:
    from bambulab.sim.service import PrinterHandle
from bambulab.sim.camera.server import USERNAME, Connection, TlsCameraServer, local_now

__all__ = ["AUTH_PACKET_SIZE", "FRAME_HEADER", "JpegCameraService"]

log = logging.getLogger("bambulab.sim.camera")


AUTH_PACKET_SIZE = 80
_AUTH_HEAD = struct.Struct("<IIII")
_AUTH_LENGTH = 0x40
_AUTH_TYPE = 0x3000
#: the 16-byte header before each JPEG: length, itrack 0, flags 1, reserved 0 (little-endian)
FRAME_HEADER = struct.Struct("<IIII")


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
    user_ok = hmac.compare_digest(user, USERNAME)
    code_ok = hmac.compare_digest(code, access_code.encode())
    return user_ok and code_ok


class JpegCameraService(TlsCameraServer):
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
        clock: Callable[[], datetime] = local_now,
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

    async def _send_frames(self, conn: Connection) -> None:
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

    async def _serve(self, conn: Connection) -> None:
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
    async def _until_eof(conn: Connection) -> None:
        """Read and ignore whatever the client sends after the auth packet, until EOF."""
        while await conn.reader.read(4096):
            pass
