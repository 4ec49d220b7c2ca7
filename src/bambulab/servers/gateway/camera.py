"""The shared camera hub: one upstream camera connection per printer, any number of viewers.

A P1S serves about two camera streams; three browsers and Home Assistant already fight over it.
The hub opens a printer's camera when the first viewer (an MJPEG stream or a snapshot) asks,
shares every frame with all viewers, and closes the camera ``linger`` seconds after the last
one leaves. Snapshots come from the latest frame while the camera is open.

Each viewer holds no queue: it remembers the sequence number of the last frame it sent and,
when it is ready for more, takes whatever frame is newest. A slow viewer skips frames; memory
per viewer is constant. P1/A1 cameras give JPEG frames as they are; X1/H2/P2S cameras (RTSPS,
H.264) are decoded with PyAV (the ``camera`` extra) and re-encoded as JPEG at ``rtsp_fps``.

Routes::

    GET /api/v1/printers/{serial}/camera/snapshot.jpg[?fallback=1]
    GET /api/v1/printers/{serial}/camera/stream.mjpeg

Errors are the gateway's JSON errors (404 unknown printer, 501 no camera reachable on the LAN,
502 camera login refused, 503 unavailable, 504 no frame in time); with ``?fallback=1`` (for
``<img>`` tags) a snapshot that fails is a 200 "camera unavailable" picture with the error code
in the ``X-Camera-Error`` header instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    UnknownCameraError,
    UnsupportedError,
)
from bambulab.protocol.models import CameraKind

__all__ = ["CameraHub", "CameraStats", "UnknownCameraError", "openapi_paths", "routes", "routes_for"]

log = logging.getLogger(__name__)

BOUNDARY = "bambuframe"
#: Give up on a stream that has not produced its first frame within this many seconds.
_FIRST_FRAME_TIMEOUT = 20.0
#: Wait between reconnect attempts while viewers still watch a failed camera.
_RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0)


CameraLookup = Callable[[str], Any]
"""serial -> the printer's camera (:class:`bambulab.camera.Camera` or alike); raises KeyError."""


class CameraStats:
    """Counters of one printer's upstream camera (exposed for tests, the benchmark and /metrics)."""

    __slots__ = ("connections_opened", "errors", "frames_in", "frames_out")

    def __init__(self) -> None:
        self.connections_opened = 0
        self.frames_in = 0
        self.frames_out = 0
        self.errors = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class _Upstream:
    """One printer's camera: the reader task, the latest frame, and who is watching."""

    def __init__(self, hub: CameraHub, serial: str) -> None:
        self.hub = hub
        self.serial = serial
        self.viewers = 0
        self.frame: bytes | None = None
        self.frame_at = 0.0
        self.seq = 0
        self.error: BambuError | None = None
        self.closed = False
        self.stats = hub.stats_for(serial)
        self._tick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def join(self) -> None:
        self.viewers += 1
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self.running:
            self.error = None
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"bambulab-camera-hub-{self.serial}"
            )

    def leave(self) -> None:
        self.viewers -= 1
        if self.viewers <= 0:
            self.viewers = 0
            if self._linger is not None:
                self._linger.cancel()
            self._linger = asyncio.get_running_loop().call_later(self.hub.linger, self._expire)

    def _expire(self) -> None:
        self._linger = None
        if self.viewers == 0:
            self.hub._forget(self)
            self.cancel()

    def cancel(self) -> None:
        """Stop reading the camera and end every viewer's stream (they get ``error``)."""
        self.closed = True
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._task is not None:
            self._task.cancel()
        self.frame = None
        self.error = BambuConnectionError("the camera hub is closing")
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait_closed(self) -> None:
        task = self._task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _publish(self, jpeg: bytes) -> None:
        self.frame = jpeg
        self.frame_at = time.monotonic()
        self.seq += 1
        self.error = None
        self.stats.frames_in += 1
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def _fail(self, error: BambuError) -> None:
        self.error = error
        self.stats.errors += 1
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def next_frame(self, after: int, within: float) -> tuple[int, bytes]:
        """The newest frame with a sequence number above ``after`` (waits up to ``within`` s)."""
        async with asyncio.timeout(within):
            while True:
                if self.frame is not None and self.seq > after:
                    return self.seq, self.frame
                if self.error is not None and (self.frame is None or self.closed):
                    raise self.error
                await self._tick.wait()

    async def _run(self) -> None:
        attempt = 0
        while self.viewers > 0 or self._linger is not None:
            try:
                camera = self.hub.lookup(self.serial)
                self.stats.connections_opened += 1
                async for jpeg in self.hub._frames_of(camera):
                    attempt = 0
                    self._publish(jpeg)
            except asyncio.CancelledError:
                raise
            except UnsupportedError as exc:
                self._fail(exc)
                return  # will not get better by retrying
            except KeyError:
                self._fail(UnknownCameraError(f"no printer {self.serial} in the fleet"))
                return
            except BambuError as exc:
                log.info("camera %s: %s", self.serial, exc)
                self._fail(exc)
            except Exception as exc:  # a decoder bug must not kill the hub
                log.exception("camera %s: reading frames failed", self.serial)
                self._fail(BambuConnectionError(f"the camera of {self.serial} failed: {type(exc).__name__}"))
            self.frame = None
            await asyncio.sleep(_RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)])
            attempt += 1


class CameraHub:
    """Shares each printer's camera among all its viewers. A gateway service (start/stop).

    ``lookup(serial)`` returns the printer's camera (``member.printer.camera``) or raises
    ``KeyError``. ``linger`` is how long a camera stays open after its last viewer leaves (a
    camera wall refreshing snapshots keeps one connection instead of opening one per refresh).
    ``max_viewers`` bounds the MJPEG viewers per printer. ``rtsp_fps`` caps the JPEG rate made
    from an H.264 stream; ``fresh`` is how old a frame may be to serve as a snapshot.
    """

    def __init__(
        self,
        lookup: CameraLookup,
        *,
        stopping: asyncio.Event | None = None,
        linger: float = 5.0,
        max_viewers: int = 32,
        rtsp_fps: float = 2.0,
        jpeg_quality: int = 75,
        fresh: float = 5.0,
        frame_timeout: float = _FIRST_FRAME_TIMEOUT,
    ) -> None:
        self.lookup = lookup
        self.stopping = stopping
        self.linger = linger
        self.max_viewers = max_viewers
        self.rtsp_fps = rtsp_fps
        self.jpeg_quality = jpeg_quality
        self.fresh = fresh
        self.frame_timeout = frame_timeout
        self._upstreams: dict[str, _Upstream] = {}
        self._stats: dict[str, CameraStats] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._watcher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ service

    async def start(self) -> None:
        self._stopped = False
        if self.stopping is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_stopping())

    async def _watch_stopping(self) -> None:
        """MJPEG streams live as long as their viewers: end them as soon as the gateway stops."""
        assert self.stopping is not None
        await self.stopping.wait()
        self._close_all()

    def _close_all(self) -> None:
        self._stopped = True
        upstreams, self._upstreams = list(self._upstreams.values()), {}
        for upstream in upstreams:
            upstream.cancel()
            task = asyncio.get_running_loop().create_task(upstream.wait_closed())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def stop(self) -> None:
        self._close_all()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
        await asyncio.gather(*self._closing, *([watcher] if watcher else []), return_exceptions=True)

    # ------------------------------------------------------------------ introspection

    def stats_for(self, serial: str) -> CameraStats:
        stats = self._stats.get(serial)
        if stats is None:
            if len(self._stats) > 4096:  # printers come and go: keep the table bounded
                self._stats.clear()
            stats = self._stats[serial] = CameraStats()
        return stats

    def viewers(self, serial: str) -> int:
        upstream = self._upstreams.get(serial)
        return upstream.viewers if upstream is not None else 0

    def latest_seq(self, serial: str) -> int:
        """The sequence number of ``serial``'s newest frame (0 before the first)."""
        upstream = self._upstreams.get(serial)
        return upstream.seq if upstream is not None else 0

    def is_open(self, serial: str) -> bool:
        """Whether the upstream camera connection of ``serial`` is open (or opening) now."""
        upstream = self._upstreams.get(serial)
        return upstream is not None and upstream.running

    # ------------------------------------------------------------------ viewers

    def _upstream(self, serial: str) -> _Upstream:
        if self._stopped:
            raise BambuConnectionError("the camera hub is stopped")
        self.lookup(serial)  # KeyError for an unknown printer, before anything opens
        upstream = self._upstreams.get(serial)
        if upstream is None:
            upstream = self._upstreams[serial] = _Upstream(self, serial)
        return upstream

    def _forget(self, upstream: _Upstream) -> None:
        if self._upstreams.get(upstream.serial) is upstream:
            del self._upstreams[upstream.serial]
        task = asyncio.get_running_loop().create_task(upstream.wait_closed())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @contextlib.asynccontextmanager
    async def watch(self, serial: str) -> AsyncIterator[_Upstream]:
        """Be a viewer of ``serial``'s camera while inside (opens it if needed)."""
        upstream = self._upstream(serial)
        upstream.join()
        try:
            yield upstream
        finally:
            upstream.leave()

    async def frames(self, serial: str) -> AsyncGenerator[bytes, None]:
        """JPEG frames of ``serial`` for one viewer, newest first-come; skips what it cannot keep up with."""
        upstream = self._upstream(serial)
        if upstream.viewers >= self.max_viewers:
            raise BambuConnectionError(f"too many camera viewers of {serial} (at most {self.max_viewers})")
        async with self.watch(serial) as upstream:
            seq = 0
            while True:
                seq, jpeg = await upstream.next_frame(seq, self.frame_timeout)
                upstream.stats.frames_out += 1
                yield jpeg

    async def snapshot(self, serial: str) -> bytes:
        """The latest frame if it is fresh, else the next one (the camera opens on demand)."""
        upstream = self._upstream(serial)
        if upstream.frame is not None and time.monotonic() - upstream.frame_at <= self.fresh:
            upstream.stats.frames_out += 1
            return upstream.frame
        async with self.watch(serial) as upstream:
            _, jpeg = await upstream.next_frame(0, self.frame_timeout)
            upstream.stats.frames_out += 1
            return jpeg

    # ------------------------------------------------------------------ upstream readers

    async def _frames_of(self, camera: Any) -> AsyncGenerator[bytes, None]:
        kind = getattr(camera, "kind", CameraKind.JPEG)
        if kind is CameraKind.RTSP:
            async for jpeg in self._rtsp_jpegs(camera):
                yield jpeg
            return
        if kind is not CameraKind.JPEG:
            raise UnsupportedError("this printer has no camera that can be reached on the LAN")
        async with contextlib.aclosing(camera.frames(max_queued=1)) as frames:
            async for frame in frames:
                yield frame.jpeg

    async def _rtsp_jpegs(self, camera: Any) -> AsyncIterator[bytes]:
        """Decode H.264 with PyAV (through the camera's API) and encode JPEG at most at ``rtsp_fps``."""
        interval = 1.0 / self.rtsp_fps if self.rtsp_fps > 0 else 0.0
        last = 0.0
        async with contextlib.aclosing(camera.rtsp_frames(max_queued=1)) as pictures:
            async for picture in pictures:
                now = time.monotonic()
                if now - last < interval:
                    continue
                last = now
                yield await asyncio.to_thread(_encode_jpeg, picture, self.jpeg_quality)


def _encode_jpeg(picture: Any, quality: int) -> bytes:
    """A PyAV picture as JPEG with FFmpeg's MJPEG encoder (no Pillow needed).

    ``quality`` is on Pillow's 1-95 scale, mapped onto FFmpeg's qscale (31 worst .. 2 best)."""
    import av  # present: rtsp_frames() needs it

    qscale = max(2, min(31, round(2 + (95 - quality) * 29 / 94)))
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width = picture.width
    encoder.height = picture.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"qmin": str(qscale), "qmax": str(qscale)}
    packets = list(encoder.encode(picture.reformat(format="yuvj420p")))
    packets.extend(encoder.encode(None))
    return b"".join(bytes(p) for p in packets)


# ---------------------------------------------------------------------------------- routes


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, "printer_code": None}, status_code=status)


def _map_error(exc: BaseException, serial: str) -> JSONResponse:
    if isinstance(exc, KeyError):
        return _error(404, "not_found", f"no printer {serial} in the fleet")
    if isinstance(exc, UnsupportedError):
        return _error(501, "unsupported", str(exc))
    if isinstance(exc, AuthenticationError):
        return _error(502, "camera_auth", "the printer refused the camera login (access code?)")
    if isinstance(exc, (TimeoutError, BambuTimeoutError)):
        return _error(504, "camera_timeout", f"no camera frame from {serial} in time")
    return _error(503, "camera_unavailable", str(exc) or "the camera is not available")


_PLACEHOLDER = Path(__file__).with_name("static") / "camera-unavailable.jpg"


@functools.cache
def _placeholder() -> bytes:
    return _PLACEHOLDER.read_bytes()


def routes_for(hub: CameraHub) -> list[BaseRoute]:
    """The snapshot and MJPEG routes served from ``hub``."""

    async def snapshot(request: Request) -> Response:
        serial = request.path_params["serial"].upper()
        try:
            jpeg = await hub.snapshot(serial)
        except (KeyError, BambuError, TimeoutError) as exc:
            failed = _map_error(exc, serial)
            if request.query_params.get("fallback") and failed.status_code != 404:
                # For <img> tags (the dashboard): a picture saying so, and the reason in a header.
                code = json.loads(bytes(failed.body))["error"]
                return Response(
                    _placeholder(), media_type="image/jpeg",
                    headers={"Cache-Control": "no-store", "X-Camera-Error": code},
                )
            return failed
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def stream(request: Request) -> Response:
        serial = request.path_params["serial"].upper()
        frames = hub.frames(serial)
        try:
            first = await anext(frames)
        except (KeyError, BambuError, TimeoutError) as exc:
            await frames.aclose()
            return _map_error(exc, serial)

        async def body() -> AsyncIterator[bytes]:
            try:
                jpeg: bytes | None = first
                while jpeg is not None:
                    yield (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    ).encode() + jpeg + b"\r\n"
                    try:
                        jpeg = await anext(frames)
                    except (BambuError, TimeoutError):
                        jpeg = None  # the camera went away: end this stream; the page reconnects
            finally:
                await frames.aclose()

        return StreamingResponse(
            body(),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return [
        Route("/api/v1/printers/{serial}/camera/snapshot.jpg", snapshot, methods=["GET"]),
        Route("/api/v1/printers/{serial}/camera/stream.mjpeg", stream, methods=["GET"]),
    ]


def openapi_paths() -> dict[str, Any]:
    """The camera routes for the gateway's OpenAPI description."""
    serial = {"name": "serial", "in": "path", "required": True, "schema": {"type": "string"}}
    errors = {
        "404": {"description": "No such printer"},
        "501": {"description": "No camera reachable on the LAN (cloud printer, no PyAV, liveview off)"},
        "502": {"description": "The printer refused the camera login"},
        "503": {"description": "The camera is unavailable"},
        "504": {"description": "No frame in time"},
    }
    mjpeg = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    fallback = {"name": "fallback", "in": "query", "schema": {"type": "string"},
                "description": "any value: a 'camera unavailable' JPEG instead of an error (X-Camera-Error header)"}
    return {
        "/api/v1/printers/{serial}/camera/snapshot.jpg": {"get": {
            "tags": ["camera"], "summary": "The latest camera frame (JPEG), from the shared connection",
            "parameters": [serial, fallback],
            "responses": {"200": {"description": "OK", "content": {"image/jpeg": {}}}, **errors}}},
        "/api/v1/printers/{serial}/camera/stream.mjpeg": {"get": {
            "tags": ["camera"], "summary": "Live MJPEG; every viewer shares one camera connection",
            "parameters": [serial],
            "responses": {"200": {"description": "OK", "content": {mjpeg: {}}}, **errors}}},
    }


def fleet_lookup(fleet: Any) -> CameraLookup:
    """``lookup`` for a gateway's fleet: ``fleet.members[serial].printer.camera``."""

    def lookup(serial: str) -> Any:
        member = fleet.members[serial]
        camera = getattr(getattr(member, "printer", None), "camera", None)
        if camera is None:
            raise UnsupportedError(f"the gateway has no camera connection for {serial} (a cloud printer?)")
        return camera

    return lookup


#: ``[camera]`` settings of the gateway's config file and their types.
_SETTINGS: dict[str, type] = {"linger": float, "max_viewers": int, "rtsp_fps": float, "jpeg_quality": int}


def hub_settings(section: Any) -> dict[str, Any]:
    """The hub's keyword arguments from a ``[camera]`` table; a clear error for a bad value."""
    from bambulab.config import ConfigError

    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError("[camera] must be a table")
    out: dict[str, Any] = {}
    for key, value in section.items():
        kind = _SETTINGS.get(key)
        if kind is None:
            raise ConfigError(f"[camera] has no setting {key!r} (known: {', '.join(sorted(_SETTINGS))})")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (kind is int and not isinstance(value, int)):
            raise ConfigError(f"[camera] {key} must be a number")
        if value < 0 or (key != "linger" and value == 0) or (key == "jpeg_quality" and value > 95):
            raise ConfigError(f"[camera] {key} is out of range: {value}")
        out[key] = kind(value)
    return out


def routes(gateway: Any) -> list[BaseRoute]:
    """Build the gateway's camera hub, register it as a service, and return its routes.

    The config file's ``[camera]`` table may set ``linger`` (seconds), ``max_viewers`` (per
    printer), ``rtsp_fps`` and ``jpeg_quality`` (X1/H2 re-encoding)."""
    sections = getattr(getattr(gateway, "config", None), "sections", None) or {}
    hub = CameraHub(
        fleet_lookup(gateway.fleet), stopping=getattr(gateway, "stopping", None), **hub_settings(sections.get("camera"))
    )
    gateway.add_service(hub)
    gateway.camera_hub = hub
    return routes_for(hub)
