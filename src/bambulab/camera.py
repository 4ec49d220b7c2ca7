"""A printer's camera: JPEG frames (P1/A1), RTSPS URLs and optional decoding (X1/H2/P2S).

::

    async with Printer(host, serial, access_code) as printer:
        async for frame in printer.camera.frames():     # P1/A1: port 6000, one JPEG per frame
            handle(frame.jpeg)
        jpeg = await printer.camera.snapshot()           # any model (X1/H2 need PyAV)

    camera = Camera.connect("192.168.1.50", access_code, serial=serial)   # without a Printer

Two kinds of camera exist (:class:`~bambulab.protocol.models.CameraKind`):

* ``JPEG`` (P1P, P1S, A1, A1 mini): :meth:`Camera.frames` streams :class:`Frame` objects from
  TLS port 6000; :meth:`Camera.snapshot` returns the next one's bytes.
* ``RTSP`` (X1, X1E, H2, P2S, X2D): H.264 over RTSPS on port 322, only while "LAN Mode Liveview"
  (X1) / "LAN Only Liveview" (H2) is on. :meth:`Camera.rtsp_url` gives the URL for a player
  (credentials only when asked: the access code is a secret). With the optional PyAV package
  (``pip install "bambulab[camera]"``) :meth:`Camera.rtsp_frames` decodes the stream and
  :meth:`Camera.snapshot` returns a JPEG of the current picture.

A :class:`Camera` reads the printer's host, access code, TLS context, model, camera port and
last report afresh on every call, so it follows a :class:`~bambulab.printer.Printer` whose
model becomes known after connecting. Access codes never appear in ``repr``, logs or errors.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import ipaddress
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from fractions import Fraction
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import SplitResult, quote, urlsplit

from bambulab.endpoint import PrinterEndpoint
from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    NotConnectedError,
    UnsupportedError,
)
from bambulab.protocol.models import CameraKind, PrinterModel, model_by_code, model_for_serial
from bambulab.transports.camera import DEFAULT_JPEG_PORT, Frame, JpegStreamClient
from bambulab.transports.rtsp import RtspRelay

if TYPE_CHECKING:
    import ssl

    from bambulab.printer import Printer

__all__ = [
    "DEFAULT_RTSP_PORT",
    "RTSP_PATH",
    "Camera",
    "Frame",
    "pyav_available",
]

log = logging.getLogger(__name__)

DEFAULT_RTSP_PORT = 322
RTSP_PATH = "/streaming/live/1"
_RTSP_USER = "bblp"
_INSTALL_HINT = 'install bambulab[camera] (pip install "bambulab[camera]", which adds PyAV) to decode RTSP video'
_LIVEVIEW_DISABLED = (
    "LAN liveview is disabled on this printer, so its RTSP camera is closed: turn on "
    '"LAN Mode Liveview" (X1) or "LAN Only Liveview" (H2, P2S) in the printer\'s network settings'
)


def pyav_available() -> bool:
    """Whether PyAV (the ``camera`` extra) can be imported, for RTSP decoding."""
    try:
        _import_av()
    except UnsupportedError:
        return False
    return True


def _import_av() -> Any:
    try:
        return importlib.import_module("av")
    except ImportError:
        raise UnsupportedError(_INSTALL_HINT) from None


def _reported_rtsp_url(report: Mapping[str, Any] | None) -> str | None:
    """``print.ipcam.rtsp_url`` (or ``ipcam.rtsp_url`` at the top level), stripped."""
    if report is None:
        return None
    for section in (report.get("print"), report):
        if isinstance(section, Mapping):
            ipcam = section.get("ipcam")
            if isinstance(ipcam, Mapping):
                url = ipcam.get("rtsp_url")
                if isinstance(url, str) and url.strip():
                    return url.strip()
    return None


def _host_for_url(host: str) -> str:
    try:
        if isinstance(ipaddress.ip_address(host.strip("[]")), ipaddress.IPv6Address):
            return f"[{host.strip('[]')}]"
    except ValueError:
        pass
    return host


# ----------------------------------------------------------------------------------- RTSP reader


_END = object()


class _RtspReader:
    """Runs PyAV's demuxer and decoder in a worker thread; hands results to the event loop.

    ``encode_jpeg`` turns each picture into JPEG bytes in the thread (PyAV's MJPEG encoder).
    At most ``max_queued`` results wait; older ones are dropped for a slow reader.
    """

    def __init__(
        self,
        av: Any,
        url: str,
        where: str,
        *,
        timeout: float,
        max_queued: int,
        encode_jpeg: bool = False,
        limit: int | None = None,
        relay: RtspRelay | None = None,
    ) -> None:
        self._av = av
        self._url = url
        self._relay = relay
        self._where = where
        self._timeout = timeout
        self._encode_jpeg = encode_jpeg
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self._items: collections.deque[Any] = collections.deque()
        self._max_queued = max_queued
        self._error: BambuError | None = None
        self._ended = False
        self._event = asyncio.Event()
        self._stop = threading.Event()
        self._done = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name=f"bambulab-rtsp-{where}", daemon=True)
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    # -- worker thread

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(callback, *args)

    def _run(self) -> None:
        av = self._av
        # Plain RTSP to the loopback relay, which holds the verified TLS connection to the camera.
        options = {
            "rtsp_transport": "tcp",
            "analyzeduration": "1000000",
            "probesize": "1000000",
        }
        progress = time.monotonic()
        try:
            container = av.open(self._url, options=options, timeout=(self._timeout, self._timeout))
            try:
                if not container.streams.video:
                    raise BambuConnectionError(f"RTSP camera at {self._where}: the stream has no video track")
                stream = container.streams.video[0]
                for count, picture in enumerate(container.decode(stream), start=1):
                    progress = time.monotonic()
                    if self._stop.is_set():
                        break
                    item = _encode_jpeg(av, picture) if self._encode_jpeg else picture
                    self._post(self._on_item, item)
                    if self._limit is not None and count >= self._limit:
                        break
            finally:
                container.close()
        except BaseException as exc:  # mapped and re-raised in the event loop
            if not self._stop.is_set():
                refused = self._relay.error if self._relay is not None else None
                stalled = time.monotonic() - progress >= self._timeout - 0.05
                error = refused or _map_av_error(av, exc, self._where, self._timeout, stalled)
                self._post(self._on_error, error)
        finally:
            self._post(self._on_end)

    # -- event loop

    def _on_item(self, item: Any) -> None:
        if len(self._items) >= self._max_queued:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._event.set()

    def _on_error(self, error: BambuError) -> None:
        self._error = error
        self._event.set()

    def _on_end(self) -> None:
        self._ended = True
        self._event.set()
        if not self._done.done():
            self._done.set_result(None)

    async def get(self) -> Any:
        """The next result; raises the stream's error, or ``StopAsyncIteration`` at its end."""
        while not self._items:
            if self._error is not None:
                raise self._error
            if self._ended:
                raise StopAsyncIteration
            self._event.clear()
            await self._event.wait()
        return self._items.popleft()

    async def close(self) -> None:
        """Ask the worker to stop; wait (bounded by the read timeout) for it to finish."""
        self._stop.set()
        if not self._done.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._done), self._timeout + 1.0)
        if self._relay is not None:
            await self._relay.close()


def _encode_jpeg(av: Any, picture: Any) -> bytes:
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width = picture.width
    encoder.height = picture.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    packets = list(encoder.encode(picture.reformat(format="yuvj420p")))
    packets.extend(encoder.encode(None))
    return b"".join(bytes(p) for p in packets)


def _map_av_error(av: Any, exc: BaseException, where: str, timeout: float, stalled: bool) -> BambuError:
    """A BambuError for what PyAV raised. Never uses ``str(exc)``: FFmpeg puts the URL (with the
    access code) in it; only the error text (``strerror``) is kept."""
    if isinstance(exc, BambuError):
        return exc
    errors = av.error
    if isinstance(exc, errors.HTTPUnauthorizedError | errors.HTTPForbiddenError):
        return AuthenticationError(f"the RTSP camera at {where} refused the access code")
    if isinstance(exc, ConnectionRefusedError):
        return BambuConnectionError(
            f"the RTSP camera at {where} refused the connection: is LAN liveview on?"
        )
    if isinstance(exc, TimeoutError | errors.ExitError) or stalled:
        return BambuTimeoutError(f"the RTSP camera at {where} sent nothing for {timeout:g} s")
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    return BambuConnectionError(f"the RTSP camera at {where} failed: {reason}")


# ---------------------------------------------------------------------------------------- Camera


class Camera:
    """The camera of one printer. Build it from a printer, or with :meth:`connect`.

    ``Camera(printer)`` follows a :class:`~bambulab.printer.Printer` (its model and last report;
    ``printer.camera`` is one); ``Camera(endpoint, model=..., report=...)`` takes a
    :class:`~bambulab.endpoint.PrinterEndpoint` and what is known of the printer. Each :meth:`frames`
    iteration and each :meth:`snapshot` opens its own connection; :meth:`close` (or leaving
    ``async with``) ends every one still open, and the camera cannot be used afterwards.

    ``frame_timeout`` bounds the wait for each frame/picture (default 15 s: P1/A1 printers send
    one every 1-2 s); ``connect_timeout`` the TCP connect and TLS handshake.
    """

    def __init__(
        self,
        printer: Printer | PrinterEndpoint,
        *,
        model: PrinterModel | None = None,
        report: Mapping[str, Any] | None = None,
        connect_timeout: float = 10.0,
        frame_timeout: float = 15.0,
        plaintext_rtsp: bool = False,
    ) -> None:
        self._plaintext_rtsp = plaintext_rtsp
        if isinstance(printer, PrinterEndpoint):
            self._endpoint = printer
            self._printer: Printer | None = None
        else:
            self._endpoint = printer.endpoint
            self._printer = printer
        self._model = model
        self._report = report
        self.connect_timeout = connect_timeout
        self.frame_timeout = frame_timeout
        self._clients: set[JpegStreamClient] = set()
        self._readers: set[_RtspReader] = set()
        self._closed = False

    @classmethod
    def connect(
        cls,
        host: str,
        access_code: str,
        *,
        model: PrinterModel | str | None = None,
        serial: str | None = None,
        port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        report: Mapping[str, Any] | None = None,
        connect_timeout: float = 10.0,
        frame_timeout: float = 15.0,
        plaintext_rtsp: bool = False,
    ) -> Camera:
        """A camera without a :class:`~bambulab.printer.Printer`.

        ``model`` is a :class:`PrinterModel` or a name/code (``"P1S"``, ``"C12"``); without it the
        model is guessed from ``serial``, and an unknown model is treated as a JPEG camera.
        ``port`` overrides 6000/322. ``ssl_context`` defaults to the bundled Bambu CA
        (:func:`~bambulab.transports.tls.default_printer_context`); with ``serial`` the
        certificate must name it (RTSPS too: the library terminates TLS itself and feeds FFmpeg
        through a loopback relay). ``report`` is a printer report holding ``print.ipcam.rtsp_url``,
        if you have one; a plaintext ``rtsp://`` URL there is refused unless ``plaintext_rtsp``.
        Nothing connects until :meth:`frames`, :meth:`snapshot` or :meth:`rtsp_frames`.
        """
        if isinstance(model, str):
            try:
                model = model_by_code(model)
            except KeyError as exc:
                raise ValueError(str(exc.args[0])) from None
        if model is None and serial:
            model = model_for_serial(serial)
        endpoint = PrinterEndpoint.create(host, serial, access_code, ssl_context=ssl_context, camera_port=port)
        return cls(
            endpoint, model=model, report=report, connect_timeout=connect_timeout, frame_timeout=frame_timeout,
            plaintext_rtsp=plaintext_rtsp,
        )

    # ------------------------------------------------------------------------------ properties

    @property
    def model(self) -> PrinterModel | None:
        return self._printer.model if self._printer is not None else self._model

    @property
    def endpoint(self) -> PrinterEndpoint:
        return self._endpoint

    def _last_report(self) -> Mapping[str, Any] | None:
        return self._printer.state if self._printer is not None else self._report

    @property
    def kind(self) -> CameraKind:
        """The camera kind of the printer's model; ``JPEG`` while the model is unknown."""
        model = self.model
        return model.camera if model is not None else CameraKind.JPEG

    @property
    def host(self) -> str:
        return self._endpoint.host

    @property
    def port(self) -> int:
        """The camera port: the configured one, else 6000 (JPEG) or 322 / the reported one (RTSP)."""
        configured = self._endpoint.camera_port
        if configured:
            return configured
        if self.kind is CameraKind.RTSP:
            reported = self._reported_rtsp(strict=False)
            if reported is not None and reported.port:
                return reported.port
            return DEFAULT_RTSP_PORT
        return DEFAULT_JPEG_PORT

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        model = self.model
        name = model.name if model is not None else "unknown model"
        state = " closed" if self._closed else ""
        return f"<Camera {name} {self.kind.value} {self.host}:{self.port}{state}>"

    # ------------------------------------------------------------------------------- lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise NotConnectedError("this camera was closed")

    async def close(self) -> None:
        """Close every stream still open. The camera cannot be used afterwards."""
        self._closed = True
        clients, self._clients = list(self._clients), set()
        readers, self._readers = list(self._readers), set()
        await asyncio.gather(*(c.close() for c in clients), *(r.close() for r in readers))

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---------------------------------------------------------------------------------- JPEG

    def _require_jpeg(self, what: str) -> None:
        kind = self.kind
        if kind is CameraKind.RTSP:
            model = self.model
            name = model.name if model is not None else "this printer"
            raise UnsupportedError(
                f"{what} reads the port-6000 JPEG stream of P1/A1 printers; the {name} streams "
                "H.264 over RTSPS: use rtsp_url(), rtsp_frames() or snapshot()"
            )
        if kind is not CameraKind.JPEG:
            raise UnsupportedError("this printer has no camera that can be reached on the LAN")

    def _jpeg_client(self, timeout: float | None, max_queued: int) -> JpegStreamClient:
        endpoint = self._endpoint
        return JpegStreamClient(
            endpoint.host,
            endpoint.access_code,
            port=self.port,
            serial=endpoint.serial,
            ssl_context=endpoint.ssl_context,
            connect_timeout=self.connect_timeout,
            frame_timeout=self.frame_timeout if timeout is None else timeout,
            max_queued=max_queued,
        )

    async def frames(self, *, frame_timeout: float | None = None, max_queued: int = 2) -> AsyncGenerator[Frame, None]:
        """JPEG frames from a P1/A1 camera, as they arrive, until you stop iterating.

        ``frame_timeout`` (default: the camera's) bounds the wait for each frame. A reader slower
        than the camera gets the newest frames: at most ``max_queued`` wait, and a gap in
        :attr:`Frame.index` shows how many were dropped. Frames without JPEG start/end markers
        are skipped. Raises :class:`AuthenticationError` (the printer closed the connection right
        after login: wrong access code), :class:`BambuConnectionError` (refused, unreachable,
        closed), :class:`BambuTimeoutError`, or :class:`UnsupportedError` on RTSP printers.
        For prompt clean-up after ``break`` wrap it: ``async with contextlib.aclosing(...)``.
        """
        self._check_open()
        self._require_jpeg("frames()")
        client = self._jpeg_client(frame_timeout, max_queued)
        self._clients.add(client)
        try:
            await client.connect()
            while True:
                yield await client.read_frame()
        finally:
            self._clients.discard(client)
            await client.close()

    async def snapshot(self, *, frame_timeout: float | None = None) -> bytes:
        """One JPEG of what the camera sees now.

        P1/A1: the next frame of the JPEG stream. X1/H2/P2S: the next decoded RTSP picture,
        encoded as JPEG (needs PyAV: :class:`UnsupportedError` without it).
        """
        self._check_open()
        if self.kind is CameraKind.RTSP:
            pictures = await self._rtsp_reader(frame_timeout, encode_jpeg=True, limit=1)
            try:
                jpeg: bytes = await pictures.get()
            except StopAsyncIteration:
                raise BambuConnectionError(
                    f"the RTSP camera at {self.host}:{self.port} ended the stream before a picture"
                ) from None
            finally:
                self._readers.discard(pictures)
                await pictures.close()
            return jpeg
        self._require_jpeg("snapshot()")
        client = self._jpeg_client(frame_timeout, 1)
        self._clients.add(client)
        try:
            await client.connect()
            frame = await client.read_frame()
        finally:
            self._clients.discard(client)
            await client.close()
        return frame.jpeg

    # ---------------------------------------------------------------------------------- RTSP

    def _reported_rtsp(self, *, strict: bool = True) -> SplitResult | None:
        """The report's ``ipcam.rtsp_url`` split; ``None`` when absent; raises when disabled."""
        url = _reported_rtsp_url(self._last_report())
        if url is None:
            return None
        if url.lower() == "disable":
            if not strict:
                return None
            raise UnsupportedError(_LIVEVIEW_DISABLED)
        split = urlsplit(url)
        if split.scheme.lower() not in ("rtsp", "rtsps"):
            return None
        try:
            split.port  # noqa: B018 - validates the port
        except ValueError:
            return None
        return split

    def rtsp_url(self, include_credentials: bool = False) -> str:
        """The RTSP(S) URL of an X1/H2/P2S camera, for a player such as ffmpeg or VLC.

        Built from the printer's last report (``ipcam.rtsp_url``: scheme, port, path) with the
        host this camera connects to; ``rtsps://{host}:322/streaming/live/1`` before any report.
        A configured camera port wins over the reported one. With ``include_credentials`` the
        URL carries ``bblp:<access code>@``: treat it as a secret (never log it).

        Raises :class:`UnsupportedError` when the report says LAN liveview is off
        (``rtsp_url == "disable"``) and for P1/A1 printers, which have no RTSP stream.
        """
        self._check_open()
        model = self.model
        if model is not None and model.camera is not CameraKind.RTSP:
            raise UnsupportedError(
                f"the {model.name} has no RTSP camera: it sends JPEG frames on port 6000 (use frames())"
            )
        reported = self._reported_rtsp()
        scheme = reported.scheme.lower() if reported is not None else "rtsps"
        if scheme == "rtsp" and not self._plaintext_rtsp:
            raise UnsupportedError(
                f"the printer at {self._endpoint.host} reports a plaintext rtsp:// camera URL: the video and the "
                "access code's Digest would cross the network unencrypted (an 8-digit code is then easy to "
                "guess offline); pass plaintext_rtsp=True to use it anyway"
            )
        path = reported.path if reported is not None and reported.path else RTSP_PATH
        port = self._endpoint.camera_port or (reported.port if reported is not None else None) or DEFAULT_RTSP_PORT
        credentials = ""
        if include_credentials:
            credentials = f"{_RTSP_USER}:{quote(self._endpoint.access_code, safe='')}@"
        return f"{scheme}://{credentials}{_host_for_url(self._endpoint.host)}:{port}{path}"

    async def _rtsp_reader(
        self,
        timeout: float | None,  # noqa: ASYNC109 (the worker's read timeout, not this call's)
        *,
        encode_jpeg: bool = False,
        limit: int | None = None,
        max_queued: int = 2,
    ) -> _RtspReader:
        av = _import_av()
        reported = urlsplit(self.rtsp_url())  # raises for liveview off, P1/A1, refused plaintext
        endpoint = self._endpoint
        relay = RtspRelay(
            endpoint.host,
            reported.port or self.port,
            ssl_context=endpoint.ssl_context if reported.scheme == "rtsps" else None,
            serial=endpoint.serial,
            connect_timeout=min(self.connect_timeout, self.frame_timeout if timeout is None else timeout),
        )
        await relay.start()
        credentials = f"{_RTSP_USER}:{quote(endpoint.access_code, safe='')}"
        url = f"rtsp://{credentials}@127.0.0.1:{relay.port}{reported.path or RTSP_PATH}"
        reader = _RtspReader(
            av, url, f"{self.host}:{self.port}",
            timeout=self.frame_timeout if timeout is None else timeout,
            max_queued=max_queued, encode_jpeg=encode_jpeg, limit=limit, relay=relay,
        )
        self._readers.add(reader)
        reader.start()
        return reader

    async def rtsp_frames(
        self, *, frame_timeout: float | None = None, max_queued: int = 2
    ) -> AsyncGenerator[Any, None]:
        """Decoded pictures (PyAV ``av.VideoFrame``) of an X1/H2/P2S camera, until you stop.

        Needs PyAV (``pip install "bambulab[camera]"``; :class:`UnsupportedError` without it).
        FFmpeg reads the RTSPS stream over TCP and decodes it in a worker thread; use
        ``picture.to_image()`` (Pillow) or ``picture.to_ndarray()`` (NumPy). At most
        ``max_queued`` pictures wait for a slow reader; older ones are dropped. Errors:
        :class:`AuthenticationError`, :class:`BambuConnectionError` (refused: LAN liveview
        off?), :class:`BambuTimeoutError` (nothing for ``frame_timeout`` seconds).
        """
        self._check_open()
        reader = await self._rtsp_reader(frame_timeout, max_queued=max_queued)
        try:
            while True:
                try:
                    picture = await reader.get()
                except StopAsyncIteration:
                    return
                yield picture
        finally:
            self._readers.discard(reader)
            await reader.close()
