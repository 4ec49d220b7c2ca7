"""The blocking facade (older package's names) against virtual printers over real sockets."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bambulab import sync
from bambulab.exceptions import AuthenticationError
from bambulab.sim import Simulator, VirtualPrinter
from bambulab.sim.demo import demo_project


class SimLoop:
    """A simulator on its own loop thread, so the blocking facade can be used from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim = Simulator(time_scale=200.0, seed=5)
        self.call(self.sim.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def add(self, **kw: Any) -> VirtualPrinter:
        return self.call(self.sim.add_printer(**kw))

    def close(self) -> None:
        self.call(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def simloop() -> Iterator[SimLoop]:
    s = SimLoop()
    yield s
    s.close()


def _mqtt(s: SimLoop, printer: VirtualPrinter, **kw: Any) -> sync.MQTTClient:
    return sync.MQTTClient("bblp", printer.access_code, printer.serial, host=printer.host,
                           port=printer.mqtt.port, ssl_context=s.sim.ca.client_context(), **kw)


def test_mqtt_client_monitor_and_control(simloop: SimLoop) -> None:
    printer = simloop.add(model="P1S", quirks={"push_interval": 0.1})
    seen: list[tuple[str, dict[str, Any]]] = []
    client = _mqtt(simloop, printer, on_message=lambda dev, data: seen.append((dev, data)))
    assert printer.access_code not in repr(client)
    with client:
        data = client.request_full_status()
        assert data["print"]["gcode_state"] == "IDLE"
        ack = client.publish({"system": {"sequence_id": "7", "command": "ledctrl", "led_node": "chamber_light",
                                         "led_mode": "off", "led_on_time": 500, "led_off_time": 500,
                                         "loop_times": 0, "interval_time": 0}})
        assert ack["system"]["result"] == "success"
        client.set_nozzle_temp(210)  # the Printer's convenience methods, called synchronously
        status = client.wait_for(lambda s: s.temperatures.nozzle_target == 210, timeout=10)
        assert status.temperatures.nozzle_target == 210
        assert client.get_last_data()["print"]["nozzle_target_temper"] == 210
        mine = client.get_last_data()
        mine["print"]["nozzle_target_temper"] = -1  # the caller's copy: the printer's state is untouched
        assert client.get_last_data()["print"]["nozzle_target_temper"] == 210
    assert seen
    assert all(dev == printer.serial for dev, _ in seen)


def test_mqtt_client_wrong_code_and_cloud_without_host(simloop: SimLoop) -> None:
    printer = simloop.add(model="P1S")
    bad = sync.MQTTClient("bblp", "00000000", printer.serial, host=printer.host, port=printer.mqtt.port,
                          ssl_context=simloop.sim.ca.client_context())
    with pytest.raises(AuthenticationError) as info:
        bad.connect()
    assert "00000000" not in str(info.value)
    # Without host= it is the cloud path, which needs the account's uid (checked before any network use).
    with pytest.raises(ValueError, match="uid"):
        sync.MQTTClient("bblp", "token", printer.serial).connect()


def test_local_ftp_client(simloop: SimLoop, tmp_path: Path) -> None:
    printer = simloop.add(model="A1")
    local = tmp_path / "part.gcode.3mf"
    local.write_bytes(demo_project())
    progress: list[tuple[int, int]] = []
    with sync.LocalFTPClient(printer.host, printer.access_code, port=printer.ftps.port,  # type: ignore[union-attr]
                             ssl_context=simloop.sim.ca.client_context()) as ftp:
        result = ftp.upload_file(local, progress=lambda sent, total: progress.append((sent, total)))
        assert result == {"filename": "part.gcode.3mf", "remote_path": "/part.gcode.3mf", "size": local.stat().st_size}
        assert progress[-1] == (local.stat().st_size, local.stat().st_size)
        names = {f["name"] for f in ftp.list_files("/")}
        assert {"part.gcode.3mf", "cache", "timelapse"} <= names
        assert ftp.download_file("/part.gcode.3mf") == local.read_bytes()
        ftp.delete_file("/part.gcode.3mf")
        assert "part.gcode.3mf" not in {f["name"] for f in ftp.list_files("/")}
    assert (printer.storage / "part.gcode.3mf").exists() is False


def test_create_print_command_and_upload_and_print(simloop: SimLoop, tmp_path: Path) -> None:
    command = sync.LocalPrintClient.create_print_command("/model.3mf", plate=2, use_ams=False, model="X1C")
    body = command["print"]
    assert body["command"] == "project_file"
    assert body["param"] == "Metadata/plate_2.gcode"
    assert body["url"] == "file:///sdcard/model.3mf"
    assert body["use_ams"] is False
    printer = simloop.add(model="X1C", quirks={"push_interval": 0.1})
    local = tmp_path / "job.gcode.3mf"
    local.write_bytes(demo_project(minutes=30))
    ctx = simloop.sim.ca.client_context()
    client = _mqtt(simloop, printer, ftps_port=printer.ftps.port).connect()  # type: ignore[union-attr]
    try:
        result = sync.upload_and_print(printer.host, printer.access_code, local, client, ssl_context=ctx)
        assert result["gcode_state"] in ("PREPARE", "RUNNING")
        assert (printer.storage / "job.gcode.3mf").read_bytes() == local.read_bytes()
    finally:
        client.disconnect()


def test_jpeg_frame_stream_and_video_helpers(simloop: SimLoop) -> None:
    printer = simloop.add(model="P1S", camera_fps=20.0)
    with sync.JPEGFrameStream(printer.host, printer.access_code, port=printer.camera.port,  # type: ignore[union-attr]
                              ssl_context=simloop.sim.ca.client_context()) as stream:
        frame = stream.get_frame()
        assert frame[:2] == b"\xff\xd8"
        assert frame[-2:] == b"\xff\xd9"
        frames = list(stream.stream_frames(max_frames=3))
        assert len(frames) == 3
    from PIL import Image

    assert Image.open(io.BytesIO(frame)).size[0] > 0
    video = sync.get_video_stream("10.0.0.5", "12345678", "X1C")
    assert isinstance(video, sync.RTSPStream)
    assert video.get_stream_url() == "rtsps://bblp:12345678@10.0.0.5:322/streaming/live/1"
    assert "12345678" not in video.get_stream_url(include_credentials=False)
    assert "12345678" not in repr(video)
    assert isinstance(sync.get_video_stream("10.0.0.5", "1", "A1 mini"), sync.JPEGFrameStream)


def test_no_secret_in_logs(simloop: SimLoop, caplog: pytest.LogCaptureFixture) -> None:
    printer = simloop.add(model="P1S")
    caplog.set_level(logging.DEBUG)
    with _mqtt(simloop, printer) as client:
        client.request_full_status()
    assert printer.access_code not in caplog.text


async def test_printer_close_releases_files_and_camera() -> None:
    from bambulab.printer import Printer

    async with Simulator() as sim:
        vp = await sim.add_printer(model="P1S", camera_fps=20.0)
        printer = Printer(vp.host, vp.serial, vp.access_code, port=vp.mqtt.port, ftps_port=vp.ftps.port,  # type: ignore[union-attr]
                          camera_port=vp.camera.port, ssl_context=sim.ca.client_context())  # type: ignore[union-attr]
        await printer.connect()
        assert await printer.files.names("/")
        assert (await printer.camera.snapshot())[:2] == b"\xff\xd8"
        camera = printer.camera
        await printer.close()
        assert camera.closed
        deadline = asyncio.get_running_loop().time() + 5
        while vp.ftps.client_count and asyncio.get_running_loop().time() < deadline:  # type: ignore[union-attr]  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert vp.ftps.client_count == 0  # type: ignore[union-attr]
