"""The camera hub: one upstream connection per printer, shared by every viewer, over real sockets.

A counting TCP relay sits between the hub and the virtual printer's camera service, so the test
counts the connections the printer really accepts (TLS passes through it untouched).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dashtools import MjpegViewer, get, serve
from PIL import Image
from starlette.applications import Starlette

from bambulab.camera import Camera
from bambulab.exceptions import BambuConnectionError
from bambulab.servers.gateway.camera import CameraHub, routes_for
from bambulab.sim import Simulator
from bambulab.transports.tls import printer_ssl_context

LINGER = 0.6


class Relay:
    """A TCP relay on 127.0.0.1 that counts accepted connections and pipes bytes both ways."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(OSError):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            writer.close()
            self._tasks.discard(task)


@pytest.fixture
async def rig() -> AsyncIterator[dict[str, Any]]:
    async with Simulator(time_scale=1.0, seed=3) as sim:
        printer = await sim.add_printer(model="P1S", camera_fps=10.0)
        service: Any = printer.camera
        service.width, service.height = 320, 180  # cheap frames
        relay = Relay(service.port)
        await relay.start()
        trust = printer_ssl_context(cadata=sim.ca.ca_pem)
        camera = Camera.connect(
            printer.host, printer.access_code, model="P1S", serial=printer.serial, port=relay.port,
            ssl_context=trust, frame_timeout=5.0,
        )
        cameras = {printer.serial: camera}
        hub = CameraHub(lambda serial: cameras[serial], linger=LINGER, frame_timeout=8.0)

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            await hub.start()
            yield
            await hub.stop()

        app = Starlette(routes=routes_for(hub), lifespan=lifespan)
        async with serve(app) as served:
            yield {"sim": sim, "printer": printer, "service": service, "relay": relay, "hub": hub,
                   "port": served.port, "serial": printer.serial}
        await camera.close()
        await relay.stop()
        await asyncio.sleep(0.05)


def size_of(jpeg: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.size


async def wait_for(predicate: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polls counters of other components
            await asyncio.sleep(0.02)


async def test_twenty_viewers_share_one_upstream_connection(rig: dict[str, Any]) -> None:
    relay: Relay = rig["relay"]
    service: Any = rig["service"]
    hub: CameraHub = rig["hub"]
    path = f"/api/v1/printers/{rig['serial']}/camera/stream.mjpeg"
    peak_viewers = 0

    async def sample() -> None:
        nonlocal peak_viewers
        while True:
            peak_viewers = max(peak_viewers, service.viewer_count)
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    viewers = [MjpegViewer(rig["port"], path) for _ in range(20)]
    await asyncio.gather(*(v.open() for v in viewers))
    assert {v.status for v in viewers} == {200}
    assert all(v.content_type.startswith("multipart/x-mixed-replace") for v in viewers)
    frames = await asyncio.gather(*(v.frame() for v in viewers), *(v.frame() for v in viewers))
    assert all(f.startswith(b"\xff\xd8") and f.endswith(b"\xff\xd9") for f in frames)
    assert size_of(frames[0]) == (320, 180)
    assert hub.viewers(rig["serial"]) == 20
    assert relay.accepted == 1
    assert service.viewer_count == 1

    for viewer in viewers:
        await viewer.close()
    await wait_for(lambda: hub.viewers(rig["serial"]) == 0)
    assert hub.is_open(rig["serial"])  # lingers a moment: a reload does not reconnect
    await wait_for(lambda: not hub.is_open(rig["serial"]) and service.viewer_count == 0, within=LINGER + 5)
    await wait_for(lambda: relay.open == 0)
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    assert relay.accepted == 1
    assert relay.max_open == 1
    assert peak_viewers == 1
    assert hub.stats_for(rig["serial"]).connections_opened == 1


async def test_snapshot_comes_from_the_open_stream_and_the_camera_opens_on_demand(rig: dict[str, Any]) -> None:
    relay: Relay = rig["relay"]
    hub: CameraHub = rig["hub"]
    snap = f"/api/v1/printers/{rig['serial']}/camera/snapshot.jpg"
    assert relay.accepted == 0 and not hub.is_open(rig["serial"])  # nothing until someone looks

    status, headers, body = await get(rig["port"], snap)
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert size_of(body) == (320, 180)
    assert relay.accepted == 1
    # Within the linger time, more snapshots and a stream reuse the same connection.
    for _ in range(3):
        status, _, body = await get(rig["port"], snap)
        assert status == 200 and body.startswith(b"\xff\xd8")
    viewer = MjpegViewer(rig["port"], f"/api/v1/printers/{rig['serial']}/camera/stream.mjpeg")
    await viewer.open()
    await viewer.frame()
    status, _, body = await get(rig["port"], snap)
    assert status == 200
    await viewer.close()
    assert relay.accepted == 1
    await wait_for(lambda: not hub.is_open(rig["serial"]), within=LINGER + 5)


async def test_a_slow_viewer_skips_frames_and_does_not_hold_back_the_others(rig: dict[str, Any]) -> None:
    hub: CameraHub = rig["hub"]
    serial = rig["serial"]
    slow = hub.frames(serial)
    await anext(slow)
    before = hub.latest_seq(serial)
    fast = MjpegViewer(rig["port"], f"/api/v1/printers/{serial}/camera/stream.mjpeg")
    await fast.open()
    got = [await fast.frame() for _ in range(12)]  # while the slow viewer takes nothing
    assert len(got) == 12 and len(set(got)) >= 2  # the picture moves (the clock in the frame)
    # The slow viewer's next frame is the newest one, not the oldest it missed: it skipped.
    newest = hub.latest_seq(serial)
    assert newest >= before + 10
    await anext(slow)
    assert hub.latest_seq(serial) - newest <= 1
    await slow.aclose()
    await fast.close()


async def test_unknown_printer_and_a_camera_that_cannot_connect(rig: dict[str, Any]) -> None:
    status, _, body = await get(rig["port"], "/api/v1/printers/NOPE/camera/snapshot.jpg")
    assert status == 404 and b'"not_found"' in body
    status, _, body = await get(rig["port"], "/api/v1/printers/NOPE/camera/stream.mjpeg")
    assert status == 404
    await rig["relay"].stop()  # now the camera port refuses connections
    rig["relay"]._server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    rig["hub"].frame_timeout = 1.0
    status, _, body = await get(rig["port"], f"/api/v1/printers/{rig['serial']}/camera/snapshot.jpg")
    assert status in (503, 504) and b"camera_" in body
    assert b"access_code" not in body and rig["printer"].access_code.encode() not in body


async def test_rtsp_printer_is_decoded_and_served_as_jpeg() -> None:
    async with Simulator(time_scale=1.0, seed=5) as sim:
        printer = await sim.add_printer(model="X1C")
        await asyncio.sleep(0)
        trust: ssl.SSLContext = printer_ssl_context(cadata=sim.ca.ca_pem)
        camera = Camera.connect(
            printer.host, printer.access_code, model="X1C", serial=printer.serial,
            report={"print": printer.engine.current_report()}, ssl_context=trust, frame_timeout=8.0,
        )
        hub = CameraHub(lambda serial: camera, linger=0.2, rtsp_fps=4.0, frame_timeout=10.0)
        await hub.start()
        try:
            jpeg = await hub.snapshot(printer.serial)
            assert size_of(jpeg) == (1280, 720)
            frames = hub.frames(printer.serial)
            second = await anext(frames)
            await frames.aclose()
            assert second.startswith(b"\xff\xd8")
            assert hub.stats_for(printer.serial).connections_opened == 1
        finally:
            await hub.stop()
            await camera.close()
        await asyncio.sleep(0.05)


async def test_streams_end_when_the_gateway_stops(rig: dict[str, Any]) -> None:
    """MJPEG viewers are long-lived: the hub ends them when the gateway's stopping event fires."""
    stopping = asyncio.Event()
    hub = CameraHub(rig["hub"].lookup, stopping=stopping, linger=LINGER, frame_timeout=8.0)
    await hub.start()
    frames = hub.frames(rig["serial"])
    assert (await anext(frames)).startswith(b"\xff\xd8")
    stopping.set()
    async with asyncio.timeout(2):  # at once, not after the 8 s frame timeout
        with contextlib.suppress(BambuConnectionError):
            while True:
                await anext(frames)
    assert not hub.is_open(rig["serial"])
    with pytest.raises(BambuConnectionError, match="stopped"):
        await hub.snapshot(rig["serial"])
    await frames.aclose()
    await hub.stop()


def test_camera_settings_from_the_config_file() -> None:
    from bambulab.config import ConfigError
    from bambulab.farm.config import GatewayConfig
    from bambulab.servers.gateway import Gateway
    from bambulab.servers.gateway.app import create_app
    from bambulab.servers.gateway.camera import hub_settings

    gw = Gateway(GatewayConfig(sections={"camera": {"linger": 20, "max_viewers": 4, "rtsp_fps": 1.5}}))
    create_app(gw)
    hub = gw.camera_hub  # type: ignore[attr-defined]
    assert (hub.linger, hub.max_viewers, hub.rtsp_fps) == (20.0, 4, 1.5)
    assert hub in gw.services
    for bad, message in (({"lingr": 1}, "no setting 'lingr'"), ({"linger": "5"}, "must be a number"),
                         ({"max_viewers": 2.5}, "must be a number"), ({"rtsp_fps": 0}, "out of range"),
                         ({"jpeg_quality": 101}, "out of range"), ({"linger": True}, "must be a number")):
        with pytest.raises(ConfigError, match=message):
            hub_settings(bad)
    with pytest.raises(ConfigError, match="must be a table"):
        hub_settings([1])
