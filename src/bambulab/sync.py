"""Blocking facade for scripts, with the names users of the older ``bambulab`` package know.

Every class here is a thin shell over the async core (:class:`~bambulab.printer.Printer`,
:class:`~bambulab.files.PrinterFiles`, :class:`~bambulab.camera.Camera`): one background thread
runs an event loop shared by all sync objects of the process, and each method submits a
coroutine to it and waits for the result. Nothing here opens a socket itself.

```python
from bambulab import MQTTClient, LocalFTPClient, upload_and_print

with LocalFTPClient("192.168.1.50", "12345678", serial="01P00A123456789") as ftp:
    ftp.upload_file("benchy.gcode.3mf")
```
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import copy
import itertools
import os
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from bambulab.exceptions import BambuTimeoutError, NotConnectedError, UnsupportedError
from bambulab.protocol import commands as cmd
from bambulab.protocol.models import CameraKind, PrinterModel, model_by_code, model_for_serial

if TYPE_CHECKING:
    from bambulab.camera import Camera
    from bambulab.cloud.mqtt import CloudConnection
    from bambulab.files import PrinterFiles
    from bambulab.printer import Printer

__all__ = [
    "JPEGFrameStream",
    "LocalFTPClient",
    "LocalPrintClient",
    "MQTTClient",
    "RTSPStream",
    "get_video_stream",
    "upload_and_print",
]

T = TypeVar("T")


class _LoopThread:
    """One daemon thread running an event loop for every sync object in the process."""

    _lock = threading.Lock()
    _instance: _LoopThread | None = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bambulab-sync", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> _LoopThread:
        with cls._lock:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = cls()
                atexit.register(cls._instance.shutdown)
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a bambulab sync call cannot be made from the sync facade's own loop")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise BambuTimeoutError(f"no result within {timeout} s") from None

    def shutdown(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


def _run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    return _LoopThread.get().run(coro, timeout)


def _model(model: PrinterModel | str | None, serial: str | None = None) -> PrinterModel | None:
    if isinstance(model, PrinterModel):
        return model
    if model:
        return model_by_code(model)
    return model_for_serial(serial) if serial else None


class _Closing:
    """Context-manager plumbing shared by the sync classes."""

    def connect(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def disconnect(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Any:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disconnect()


# ----------------------------------------------------------------------------------- MQTT


class MQTTClient(_Closing):
    """Monitor and control one printer, on the LAN or through the Bambu cloud.

    On the LAN give ``host`` (the printer's address) and the access code as ``access_token``;
    ``username`` is ignored there (the printer's user is always ``bblp``)::

        client = MQTTClient("bblp", "12345678", "01P00A123456789", on_message=print, host="192.168.1.50")

    Without ``host`` it goes through Bambu's cloud broker (``region`` ``"global"`` or ``"china"``):
    ``username`` is the account's uid (``"u_1234567"`` or ``"1234567"``; an empty one is read from
    a JWT-shaped token) and ``access_token`` the cloud access token::

        client = MQTTClient("u_1234567", token, "01P00A123456789", on_message=print)

    ``broker_host``, ``port`` and ``ssl_context`` replace the cloud broker (tests use a fake one).
    ``on_message(device_id, data)`` is called (from a background thread) with every report, and
    :meth:`get_last_data` returns the merged state. Either way the same methods work.
    """

    def __init__(
        self,
        username: str,
        access_token: str,
        device_id: str,
        on_message: Callable[[str, dict[str, Any]], None] | None = None,
        *,
        host: str | None = None,
        port: int = 8883,
        ftps_port: int = 990,
        camera_port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        insecure: bool = False,
        timeout: float = 30.0,
        region: str = "global",
        broker_host: str | None = None,
    ) -> None:
        self.username = username
        self.ftps_port = ftps_port
        self.camera_port = camera_port
        self._secret = access_token
        self.device_id = device_id.upper()
        self.on_message = on_message
        self.host = host
        self.port = port
        self._ssl_context = ssl_context
        self._insecure = insecure
        self.timeout = timeout
        self.region = region
        self.broker_host = broker_host
        self._printer: Printer | None = None
        self._cloud: CloudConnection | None = None
        self._pump: concurrent.futures.Future[None] | None = None

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.host else f"cloud {self.broker_host or self.region}"
        return f"<MQTTClient {self.device_id} {where}{' connected' if self._printer else ''}>"

    @property
    def printer(self) -> Printer:
        """The async printer underneath (for the full API): a :class:`~bambulab.printer.Printer` on
        the LAN, a :class:`~bambulab.cloud.mqtt.CloudPrinter` through the cloud."""
        if self._printer is None:
            raise NotConnectedError("call connect() first")
        return self._printer

    def connect(self, blocking: bool = False) -> MQTTClient:
        """Connect, subscribe and fetch the full state. With ``blocking`` wait until interrupted."""
        if self._printer is None:
            printer = self._connect_lan() if self.host is not None else self._connect_cloud()
            self._printer = printer
            if self.on_message is not None:
                self._pump = asyncio.run_coroutine_threadsafe(self._deliver(printer), _LoopThread.get().loop)
        if blocking:
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
            self.disconnect()
        return self

    def _connect_lan(self) -> Printer:
        from bambulab.printer import Printer

        assert self.host is not None
        printer = Printer(self.host, self.device_id, self._secret, port=self.port,
                          ftps_port=self.ftps_port, camera_port=self.camera_port,
                          ssl_context=self._ssl_context, insecure=self._insecure)
        _run(printer.connect(), self.timeout)
        return printer

    def _connect_cloud(self) -> Printer:
        from bambulab.cloud.mqtt import CloudConnection, uid_from_token

        if self._insecure:
            raise ValueError("insecure=True is for a printer's own certificate; the cloud broker's is always verified")
        name = (self.username or "").strip()
        uid = name[2:] if name.startswith("u_") else name
        if uid and not uid.isdigit():
            raise ValueError(
                "for the cloud, username must be the account's uid ('u_1234567' or '1234567'), not "
                "a login name; pass host= to talk to the printer on the LAN"
            )
        if not uid and uid_from_token(self._secret) is None:
            raise ValueError("for the cloud, pass the account's uid as username ('u_1234567')")
        cloud = CloudConnection(self._secret, uid=uid or None, devices=[self.device_id], region=self.region,
                                host=self.broker_host, port=self.port, ssl_context=self._ssl_context)
        try:
            _run(cloud.connect(), self.timeout)
        except BaseException:
            _run(cloud.close(), self.timeout)
            raise
        self._cloud = cloud
        return cloud.printer(self.device_id)

    async def _deliver(self, printer: Printer) -> None:
        from bambulab.events import StateChanged

        callback = self.on_message
        async with printer.events() as stream:
            async for event in stream:
                if isinstance(event, StateChanged) and callback is not None:
                    await asyncio.to_thread(callback, self.device_id, printer.state)

    def disconnect(self) -> None:
        printer, self._printer = self._printer, None
        cloud, self._cloud = self._cloud, None
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        if printer is not None:
            _run(printer.close(), self.timeout)
        if cloud is not None:
            _run(cloud.close(), self.timeout)

    def publish(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send a command (``{"print": {...}}``) and return the printer's acknowledgement."""
        return _run(self.printer.command(command), self.timeout)

    publish_command = publish

    def request_full_status(self) -> dict[str, Any]:
        """Ask for a full report (pushall) and return the merged state."""
        _run(self.printer.refresh(), self.timeout)
        return self.get_last_data()

    def get_last_data(self) -> dict[str, Any]:
        """A copy of the merged state: ``{"print": {...}, "info": {...}}``.

        Deep, and made on the connection's thread where reports are merged: the merged state
        shares unchanged parts between reports, so a shallow copy handed to the caller's thread
        would let a change to it reach the printer's state.
        """
        printer = self.printer

        async def snapshot() -> dict[str, Any]:
            return copy.deepcopy(dict(printer.state))

        return _run(snapshot(), self.timeout)

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 60.0) -> Any:
        """Block until ``predicate(status)`` is true; returns the :class:`PrinterStatus`."""
        return _run(self.printer.wait_for(predicate, timeout), timeout + 5)

    def __getattr__(self, name: str) -> Any:
        # pause(), resume(), stop(), set_light(...), set_nozzle_temp(...), gcode(...): the
        # Printer's awaitable convenience methods, called synchronously.
        if name.startswith("_"):
            raise AttributeError(name)
        printer = self.__dict__.get("_printer")
        target = getattr(printer, name, None) if printer is not None else None
        if target is None or not callable(target):
            raise AttributeError(f"MQTTClient has no attribute {name!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            return _run(target(*args, **kwargs), self.timeout)

        return call


# ----------------------------------------------------------------------------------- files


class LocalFTPClient(_Closing):
    """Files on the printer's SD card over implicit FTPS (port 990, TLS session reuse)."""

    def __init__(
        self,
        printer_ip: str,
        access_code: str,
        port: int = 990,
        *,
        ssl_context: ssl.SSLContext | None = None,
        serial: str | None = None,
        tls12: bool = False,
        timeout: float = 60.0,
    ) -> None:
        self.printer_ip = printer_ip
        self._secret = access_code
        self.port = port
        self._ssl_context = ssl_context
        self._serial = serial
        self._tls12 = tls12
        self.timeout = timeout
        self._files: PrinterFiles | None = None

    def __repr__(self) -> str:
        return f"<LocalFTPClient {self.printer_ip}:{self.port}>"

    def connect(self) -> LocalFTPClient:
        if self._files is None:
            from bambulab.files import PrinterFiles

            async def open_files() -> PrinterFiles:
                return await PrinterFiles.connect(
                    self.printer_ip, self._secret, ssl_context=self._ssl_context, port=self.port,
                    tls12=self._tls12, serial=self._serial,
                )

            self._files = _run(open_files(), self.timeout)
        return self

    def disconnect(self) -> None:
        files, self._files = self._files, None
        if files is not None:
            _run(files.close(), self.timeout)

    @property
    def _f(self) -> PrinterFiles:
        if self._files is None:
            self.connect()
        assert self._files is not None
        return self._files

    def upload_file(
        self,
        file_path: str | os.PathLike[str],
        remote_path: str | None = None,
        progress: Callable[[int, int | None], object] | None = None,
    ) -> dict[str, Any]:
        """Upload and verify by size. Returns ``{"filename", "remote_path", "size"}``."""
        local = Path(file_path)
        remote = remote_path or f"/{local.name}"
        result = _run(self._f.upload(local, remote, progress=progress), None)
        return {"filename": result.name, "remote_path": result.path, "size": result.size}

    def list_files(self, path: str = "/") -> list[dict[str, Any]]:
        entries = _run(self._f.list(path), self.timeout)
        return [
            {"name": e.name, "path": e.path, "size": e.size, "is_dir": e.is_dir,
             "modified": e.modified.isoformat() if e.modified else None}
            for e in entries
        ]

    def download_file(self, remote_path: str, local_path: str | os.PathLike[str] | None = None) -> bytes | Path:
        """The file's bytes, or written to ``local_path`` (returned)."""
        if local_path is None:
            return _run(self._f.download(remote_path), None)
        _run(self._f.download(remote_path, Path(local_path)), None)
        return Path(local_path)

    def delete_file(self, remote_path: str) -> None:
        _run(self._f.delete(remote_path), self.timeout)


class LocalPrintClient:
    """Builds print commands for files already on the printer."""

    _counter = cmd.SequenceCounter()

    @staticmethod
    def create_print_command(
        file_path: str,
        *,
        plate: int = 1,
        use_ams: bool = True,
        ams_mapping: list[int] | None = None,
        bed_type: str = "auto",
        timelapse: bool = False,
        bed_leveling: bool = True,
        flow_cali: bool = False,
        vibration_cali: bool = True,
        model: PrinterModel | str | None = None,
    ) -> dict[str, Any]:
        """A ``project_file`` command for a 3MF on the printer's storage (publish it with MQTTClient)."""
        resolved = _model(model) or model_by_code("P1S")
        return cmd.project_file(
            LocalPrintClient._counter, file_path.lstrip("/"), model=resolved, plate=plate,
            use_ams=use_ams, ams_mapping=ams_mapping if use_ams else None, bed_type=bed_type,
            timelapse=timelapse, bed_leveling=bed_leveling, flow_cali=flow_cali, vibration_cali=vibration_cali,
        )


def upload_and_print(
    printer_ip: str,
    access_code: str,
    file_path: str | os.PathLike[str],
    mqtt_client: MQTTClient | None = None,
    *,
    serial: str | None = None,
    plate: int = 1,
    use_ams: bool | None = None,
    ams_mapping: str | list[int] | None = "auto",
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 300.0,
    **options: Any,
) -> dict[str, Any]:
    """Upload a 3MF, verify it, start printing and wait until the printer reports PREPARE or RUNNING.

    Uses ``mqtt_client``'s connection when given, else connects with ``serial``.
    Returns ``{"filename", "remote_path", "size", "gcode_state"}``.
    """
    own = mqtt_client is None
    if mqtt_client is None:
        if not serial:
            raise ValueError("upload_and_print needs serial= (or an mqtt_client)")
        mqtt_client = MQTTClient("bblp", access_code, serial, host=printer_ip, ssl_context=ssl_context)
        mqtt_client.connect()
    try:
        from bambulab.link import LanLink

        printer = mqtt_client.printer
        if not isinstance(printer.link, LanLink):
            raise UnsupportedError("upload_and_print needs a LAN MQTTClient (host=): files go to the printer over FTPS")
        job = _run(printer.print_file(Path(file_path), plate=plate, ams_mapping=ams_mapping, use_ams=use_ams,
                                      **options), timeout)
        remote = getattr(job, "remote_path", None) or f"/{Path(file_path).name}"
        return {
            "filename": Path(file_path).name,
            "remote_path": remote,
            "size": getattr(job, "size", None),
            "gcode_state": printer.status.job.state.value,
        }
    finally:
        if own:
            mqtt_client.disconnect()


# ----------------------------------------------------------------------------------- video


class JPEGFrameStream(_Closing):
    """The P1/A1 camera: one JPEG after another (port 6000, TLS)."""

    def __init__(
        self,
        printer_ip: str,
        access_code: str,
        port: int = 6000,
        *,
        serial: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.printer_ip = printer_ip
        self.port = port
        self._secret = access_code
        self._serial = serial
        self._ssl_context = ssl_context
        self.timeout = timeout
        self._camera: Camera | None = None
        self._frames: Any = None

    def __repr__(self) -> str:
        return f"<JPEGFrameStream {self.printer_ip}:{self.port}>"

    def connect(self) -> JPEGFrameStream:
        if self._camera is None:
            from bambulab.camera import Camera

            self._camera = Camera.connect(self.printer_ip, self._secret, model="P1S", serial=self._serial,
                                          port=self.port, ssl_context=self._ssl_context,
                                          frame_timeout=self.timeout)
            self._frames = self._camera.frames()
        return self

    def get_frame(self) -> bytes:
        """The next JPEG (bytes starting FF D8, ending FF D9)."""
        self.connect()

        async def next_frame() -> bytes:
            frame = await self._frames.__anext__()
            return bytes(frame.jpeg)

        return _run(next_frame(), self.timeout + 5)

    def stream_frames(self, max_frames: int | None = None) -> Iterator[bytes]:
        """Frames as they arrive; stops after ``max_frames`` when given."""
        for _ in itertools.count() if max_frames is None else range(max_frames):
            yield self.get_frame()

    def disconnect(self) -> None:
        camera, frames = self._camera, self._frames
        self._camera = self._frames = None
        if frames is not None:
            with contextlib.suppress(Exception):
                _run(frames.aclose(), self.timeout)
        if camera is not None:
            _run(camera.close(), self.timeout)


class RTSPStream:
    """The X1/H2 camera: an RTSPS URL for VLC, ffmpeg or OpenCV (LAN liveview must be on)."""

    def __init__(self, printer_ip: str, access_code: str, port: int = 322) -> None:
        self.printer_ip = printer_ip
        self.port = port
        self._secret = access_code

    def __repr__(self) -> str:
        return f"<RTSPStream {self.printer_ip}:{self.port}>"

    def get_stream_url(self, *, include_credentials: bool = True) -> str:
        """``rtsps://bblp:<code>@host:322/streaming/live/1``; the URL then holds the access code."""
        auth = f"bblp:{self._secret}@" if include_credentials else ""
        return f"rtsps://{auth}{self.printer_ip}:{self.port}/streaming/live/1"


def get_video_stream(
    printer_ip: str, access_code: str, model: PrinterModel | str, *, serial: str | None = None
) -> JPEGFrameStream | RTSPStream:
    """The right stream for the model: JPEG frames on P1/A1, RTSPS on X1/H2/P2S.

    ``serial`` makes the JPEG stream check that the certificate names that printer.
    """
    resolved = _model(model)
    if resolved is None:
        raise ValueError("model is required")
    if resolved.camera is CameraKind.JPEG:
        return JPEGFrameStream(printer_ip, access_code, serial=serial)
    if resolved.camera is CameraKind.RTSP:
        return RTSPStream(printer_ip, access_code)
    raise UnsupportedError(f"the {resolved.name} has no camera")
