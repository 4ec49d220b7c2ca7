"""Print lifecycle and fault injection of virtual printers, seen through paho-mqtt and ftplib."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from simtools import ImplicitFTPS, Mqtt, SimThread

from bambulab.sim.demo import demo_project

Connect = Callable[..., Mqtt]

CANCELLED = 0x0300400C
BUSY = 0x05004004
FILE_MISSING = 0x0300800E


@pytest.fixture
def fast() -> Iterator[SimThread]:
    # 200 simulated seconds per real second: a 10-minute print takes about 3 s.
    st = SimThread(time_scale=200.0, seed=99)
    try:
        yield st
    finally:
        st.close()


def _project_file(client: Mqtt, url: str, seq: str = "20001", **extra: Any) -> dict[str, Any]:
    client.send({"print": {
        "sequence_id": seq, "command": "project_file", "param": "Metadata/plate_1.gcode", "url": url,
        "subtask_name": "demo", "md5": "from_sd_card", "bed_type": "auto", "timelapse": False,
        "bed_leveling": True, "flow_cali": False, "vibration_cali": False, "layer_inspect": False,
        "use_ams": True, "ams_mapping": [0], "project_id": "0", "profile_id": "0", "task_id": "0",
        "subtask_id": "0", **extra,
    }})
    return client.ack("print", "project_file")


def test_full_print_lifecycle_uses_3mf_metadata(fast: SimThread, connect: Connect) -> None:
    printer = fast.add(model="X1C", quirks={"push_interval": 0.1})
    printer.put_file("benchy.gcode.3mf", demo_project(minutes=10, layers=20))
    client = connect(printer)
    ack = _project_file(client, "file:///sdcard/benchy.gcode.3mf")
    assert ack["result"] == "success"
    assert ack["sequence_id"] == "20001"
    prepare = client.wait_state(lambda s: s.get("gcode_state") == "PREPARE")
    assert prepare["stg"][:2] == [2, 13]
    seen_prepare = client.wait_state(lambda s: s.get("gcode_state") == "PREPARE"
                                     and 0 < int(s["gcode_file_prepare_percent"]) < 100)
    assert seen_prepare["stg_cur"] in seen_prepare["stg"]
    running = client.wait_state(lambda s: s.get("gcode_state") == "RUNNING" and s.get("mc_percent", 0) > 5)
    assert running["total_layer_num"] == 20
    assert running["stg_cur"] == 0
    assert 0 < running["mc_remaining_time"] <= 10
    assert running["subtask_name"] == "demo"
    assert running["nozzle_target_temper"] > 150
    done = client.wait_state(lambda s: s.get("gcode_state") == "FINISH", timeout=15)
    assert done["mc_percent"] == 100
    assert done["layer_num"] == 20
    assert done["mc_remaining_time"] == 0
    assert done["nozzle_target_temper"] == 0


@pytest.mark.parametrize(
    "url",
    [
        "file:///sdcard/{name}",
        "file:///mnt/sdcard/{name}",
        "ftp:///{name}",
        "ftp://{name}",
        "file:///media/usb0/{name}",
        "brtc://emmc/{name}",
    ],
)
def test_project_file_url_forms(simthread: SimThread, connect: Connect, url: str) -> None:
    printer = simthread.add(model="P1S")
    printer.put_file("part.3mf", demo_project())
    client = connect(printer)
    ack = _project_file(client, url.format(name="part.3mf"))
    assert ack["result"] == "success", ack
    assert printer.dynamic.job.gcode_state == "PREPARE"


def test_project_file_missing_file_fails(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S")
    client = connect(printer)
    ack = _project_file(client, "file:///sdcard/nope.3mf")
    assert ack["result"] == "fail"
    state = client.wait_state(lambda s: s.get("gcode_state") == "FAILED")
    assert state["print_error"] == FILE_MISSING
    # A path that tries to leave the storage is a missing file too.
    assert _project_file(client, "file:///sdcard/../../etc/passwd", seq="2")["result"] == "fail"


def test_project_file_while_busy(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S")
    printer.put_file("a.3mf", demo_project())
    client = connect(printer)
    assert _project_file(client, "ftp:///a.3mf")["result"] == "success"
    busy = _project_file(client, "ftp:///a.3mf", seq="20002")
    assert busy["result"] == "fail"
    assert busy["err_code"] == BUSY
    assert client.wait_state(lambda s: s.get("print_error") == BUSY)


def test_pause_resume_stop(fast: SimThread, connect: Connect) -> None:
    printer = fast.add(model="P1S", quirks={"push_interval": 0.1, "stop_error_seconds": 400.0})
    printer.put_file("a.3mf", demo_project(minutes=60))
    client = connect(printer)
    client.send({"pushing": {"sequence_id": "0", "command": "pushall"}})
    _project_file(client, "file:///sdcard/a.3mf")
    client.wait_state(lambda s: s.get("gcode_state") == "RUNNING")
    client.send({"print": {"sequence_id": "1", "command": "pause", "param": ""}})
    assert client.ack("print", "pause")["result"] == "success"
    paused = client.wait_state(lambda s: s.get("gcode_state") == "PAUSE")
    assert paused["stg_cur"] == 16
    client.send({"print": {"sequence_id": "2", "command": "resume"}})  # HA sends no param
    assert client.ack("print", "resume")["result"] == "success"
    client.wait_state(lambda s: s.get("gcode_state") == "RUNNING" and s.get("stg_cur") == 0)
    client.send({"print": {"sequence_id": "3", "command": "skip_objects", "obj_list": [101]}})
    assert client.ack("print", "skip_objects")["result"] == "success"
    assert client.wait_state(lambda s: s.get("s_obj") == [101])
    client.send({"print": {"sequence_id": "4", "command": "stop", "param": ""}})
    assert client.ack("print", "stop")["result"] == "success"
    stopped = client.wait_state(lambda s: s.get("gcode_state") == "FAILED")
    assert stopped["print_error"] == CANCELLED
    # The error clears by itself a few (simulated) seconds later; the state stays FAILED.
    cleared = client.wait_state(lambda s: s.get("print_error") == 0, timeout=10)
    assert cleared["gcode_state"] == "FAILED"
    # Nothing left to pause or stop.
    client.send({"print": {"sequence_id": "5", "command": "pause"}})
    assert client.ack("print", "pause")["result"] == "fail"


def test_gcode_file_and_calibration(fast: SimThread, connect: Connect) -> None:
    printer = fast.add(model="X1C", quirks={"push_interval": 0.1})
    printer.put_file("cube.gcode", b"; HEADER_BLOCK_START\n; total layer number: 7\n; HEADER_BLOCK_END\nG28\n")
    client = connect(printer)
    client.send({"print": {"sequence_id": "1", "command": "gcode_file", "param": "cube.gcode"}})
    assert client.ack("print", "gcode_file")["result"] == "success"
    assert client.wait_state(lambda s: s.get("gcode_state") == "RUNNING")["total_layer_num"] == 7
    client.send({"print": {"sequence_id": "2", "command": "stop"}})
    client.wait_state(lambda s: s.get("gcode_state") == "FAILED")
    client.send({"print": {"sequence_id": "3", "command": "calibration", "option": 2 | 4}})
    assert client.ack("print", "calibration")["result"] == "success"
    calibrating = client.wait_state(lambda s: s.get("stg_cur") in (1, 3))
    assert calibrating["stg"] == [1, 3]
    assert client.wait_state(lambda s: s.get("gcode_state") == "IDLE", timeout=10)


def test_upload_over_ftps_then_print(fast: SimThread, connect: Connect) -> None:
    printer = fast.add(model="A1", quirks={"push_interval": 0.1})
    ftp = ImplicitFTPS(fast.sim.ca.client_context())
    ftp.connect(printer.host, printer.ftps.port)  # type: ignore[union-attr]
    ftp.login("bblp", printer.access_code)
    ftp.prot_p()
    data = demo_project(minutes=5, layers=12)
    ftp.storbinary("STOR job.gcode.3mf", io.BytesIO(data))
    assert ftp.size("job.gcode.3mf") == len(data)
    ftp.quit()
    client = connect(printer)
    assert _project_file(client, "ftp:///job.gcode.3mf")["result"] == "success"
    assert client.wait_state(lambda s: s.get("gcode_state") == "RUNNING")["total_layer_num"] == 12


# ---------------------------------------------------------------------- fault injection


def test_hms_raise_and_clear(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="X1C")
    client = connect(printer)
    simthread.call(printer.inject_hms(0x03000100, 0x00010007))
    state = client.wait_state(lambda s: bool(s.get("hms")))
    assert {"attr": 0x03000100, "code": 0x00010007} in [
        {"attr": h["attr"], "code": h["code"]} for h in state["hms"]
    ]
    simthread.call(printer.clear_hms())
    assert client.wait_state(lambda s: s.get("hms") == [])


def test_filament_runout_pauses_the_print(fast: SimThread, connect: Connect) -> None:
    printer = fast.add(model="P1P", quirks={"push_interval": 0.1})
    printer.put_file("a.3mf", demo_project(minutes=60))
    client = connect(printer)
    client.send({"pushing": {"sequence_id": "0", "command": "pushall"}})
    _project_file(client, "ftp:///a.3mf", use_ams=False)
    client.wait_state(lambda s: s.get("gcode_state") == "RUNNING")
    fast.call(printer.filament_runout())
    state = client.wait_state(lambda s: s.get("gcode_state") == "PAUSE")
    assert state["stg_cur"] == 6
    assert state["hw_switch_state"] == 0
    assert state["hms"]


def test_disconnect_clients(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S")
    client = connect(printer)
    simthread.call(printer.disconnect_clients())
    assert client.disconnected.wait(5)
    # The printer keeps listening.
    again = connect(printer)
    again.send({"pushing": {"sequence_id": "0", "command": "pushall"}})
    again.wait_for(lambda m: m.get("print", {}).get("msg") == 0)


def test_stall_keeps_socket_open_but_silent(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="X1C", quirks={"push_interval": 0.1})
    client = connect(printer)
    client.wait_for(lambda m: "print" in m)
    printer.stall(True)
    time.sleep(0.3)
    client.drain(0.2)
    assert client.drain(1.0) == []
    assert not client.disconnected.is_set()
    printer.stall(False)
    client.wait_for(lambda m: "print" in m)


def test_go_offline_and_come_back_on_the_same_ports(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S")
    ports = (printer.mqtt.port, printer.ftps.port, printer.camera.port)  # type: ignore[union-attr]
    client = connect(printer)
    simthread.call(printer.go_offline())
    assert client.disconnected.wait(5)
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((printer.host, port), timeout=2).close()
    simthread.call(printer.come_online())
    assert (printer.mqtt.port, printer.ftps.port, printer.camera.port) == ports  # type: ignore[union-attr]
    back = connect(printer)
    back.send({"pushing": {"sequence_id": "0", "command": "pushall"}})
    back.wait_for(lambda m: m.get("print", {}).get("msg") == 0)


def test_malformed_flood_never_crashes(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S")
    client = connect(printer)
    junk: list[bytes] = [b"", b"\x00\xff", b"null", b"1", b'"x"', b"{}", b'{"print": null}',
                         b'{"print": {"command": 5}}', b'{"print": {"command": "project_file", "url": 3}}',
                         b'{"print": {"command": "gcode_line", "param": ["M104"]}}',
                         b'{"system": {"command": "ledctrl", "led_node": ["x"]}}',
                         b'{"print": {"command": "ams_change_filament", "target": "abc"}}',
                         b'{"print": {"command": "calibration", "option": "all"}}',
                         b'{"info": {"command": "get_version", "sequence_id": {"a": 1}}}']
    for payload in junk:
        client.send(payload)
    client.send({"pushing": {"sequence_id": "0", "command": "pushall"}})
    client.wait_for(lambda m: m.get("print", {}).get("msg") == 0)
    # Every message reaches the engine (each is handled in its own broker task, so wait a moment).
    deadline = time.monotonic() + 5
    while printer.engine.commands_handled < len(junk) + 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert printer.engine.commands_handled == len(junk) + 1
    assert simthread.sim.tick_errors == 0


def test_stopped_printer_leaves_no_key_folder(simthread: SimThread) -> None:
    """The temporary folder with the printer's TLS private key goes when the printer stops."""
    import tempfile
    from pathlib import Path

    printer = simthread.add(model="P1S")
    cert_files = list(printer.tls._files)
    assert cert_files and cert_files[1].name.endswith(".key")  # amqtt wants them on disk while running
    folder = cert_files[0].parent
    assert folder.is_dir() and folder.name.startswith("bambu-sim-cert-")
    simthread.call(simthread.sim.remove_printer(printer.serial))
    assert not folder.exists()
    assert not list(Path(tempfile.gettempdir()).glob(f"bambu-sim-{printer.serial}-*"))
