"""The rest of the older surface: MQTTBridge, LocalPrintClient, bambulab.models, bambulab.utils."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from compattools import CloudThread

import bambulab
from bambulab import LocalPrintClient, MQTTBridge
from bambulab.exceptions import NotConnectedError, UnsupportedError
from bambulab.models import Device, PrinterStatus, Project
from bambulab.sim.demo import demo_project
from bambulab.utils import format_temperature, format_time_remaining, format_timestamp, parse_device_data


def test_mqtt_bridge_watches_and_controls_every_printer_over_one_connection(cloud: CloudThread) -> None:
    serials = [p.serial for p in cloud.printers]
    seen: dict[str, dict[str, Any]] = {}
    both = threading.Event()

    def on_message(device_id: str, data: dict[str, Any]) -> None:
        seen[device_id] = data
        if set(seen) == set(serials):
            both.set()

    broker = cloud.broker()
    bridge = MQTTBridge(f"u_{cloud.account.uid}", cloud.token(), serials, on_message, broker_host=broker["host"],
                        port=broker["port"], ssl_context=broker["ssl_context"],
                        server_hostname=broker["server_hostname"])
    assert bambulab.MQTTBridge is MQTTBridge and "u_" not in repr(bridge)
    with pytest.raises(NotConnectedError):
        bridge.publish(serials[0], {"print": {"command": "pause"}})
    before = cloud.do(lambda: cloud.cloud.mqtt_client_count)
    with bridge:
        assert cloud.do(lambda: cloud.cloud.mqtt_client_count) == before + 1  # one connection for both
        assert both.wait(10), "on_message was called for each printer"
        assert sorted(bridge.devices) == sorted(serials)
        state = bridge.request_full_status(serials[1])
        assert state["print"]["gcode_state"] == "IDLE"
        ack = bridge.publish(serials[0], {"system": {"command": "ledctrl", "led_node": "chamber_light",
                                                     "led_mode": "off"}})
        assert ack["system"]["result"] == "success"
        assert cloud.printers[0].dynamic.lights["chamber_light"] == "off"
        assert set(bridge.get_last_data()) == set(serials)
        assert bridge.get_status(serials[0]).job.state.value == "IDLE"
        bridge.remove_device(serials[1])
        assert bridge.devices == [serials[0]]
        bridge.add_device(serials[1])
        assert sorted(bridge.devices) == sorted(serials)
    assert not bridge.connected
    with pytest.raises(ValueError, match="uid"):
        MQTTBridge("alice@example.com", "t", serials)


def test_local_print_client_default_mapping_and_gcode_command() -> None:
    command = LocalPrintClient.create_print_command("/model.3mf", use_ams=True)
    assert command["print"]["use_ams"] is True and command["print"]["ams_mapping"] == [0]
    assert LocalPrintClient.create_print_command("/model.3mf", True, [2, 1])["print"]["ams_mapping"] == [2, 1]
    no_ams = LocalPrintClient.create_print_command("model.3mf", use_ams=False)["print"]
    assert no_ams["use_ams"] is False and "ams_mapping" not in no_ams
    gcode = LocalPrintClient.create_gcode_print_command("/part.gcode")["print"]
    assert gcode["command"] == "gcode_file" and gcode["param"] == "/sdcard/part.gcode"
    assert LocalPrintClient.create_gcode_print_command("/sdcard/x/y.gcode")["print"]["param"] == "/sdcard/x/y.gcode"
    with pytest.raises(UnsupportedError, match="serial"):
        LocalPrintClient("192.168.1.50", "12345678").start_print("/model.3mf")


def test_local_print_client_start_print_on_a_virtual_printer(cloud: CloudThread) -> None:
    printer = cloud.call(cloud.sim.add_printer(model="A1", name="lan", quirks={"push_interval": 0.2}))
    printer.put_file("cube.gcode.3mf", demo_project(minutes=5, layers=3))
    client = LocalPrintClient(printer.host, printer.access_code, serial=printer.serial, port=printer.mqtt.port,
                              ssl_context=cloud.sim.ca.client_context())
    assert printer.access_code not in repr(client)
    ack = client.start_print("/cube.gcode.3mf", use_ams=False)
    assert ack["print"]["result"] == "success"
    assert cloud.do(lambda: printer.dynamic.job.subtask_name) == "cube"


def test_models() -> None:
    device = Device.from_dict({"dev_id": "01P00A000000001", "name": "P1S 1", "online": True, "print_status": "ACTIVE",
                               "dev_model_name": "C12", "dev_product_name": "P1S", "dev_access_code": "12345678\n"})
    assert device.dev_access_code == "12345678" and "12345678" not in repr(device)
    assert "dev_access_code" not in device.to_dict() and device.to_dict(include_secrets=True)["dev_access_code"]
    status = PrinterStatus.from_dict({"print": {"gcode_state": "RUNNING", "mc_percent": "45", "nozzle_temper": 219.5,
                                                "mc_remaining_time": 12, "hms": [{"code": 1}]}}, "S")
    assert status.is_printing and status.mc_percent == 45 and status.nozzle_temper == 219.5
    assert status.bed_temper is None and status.hms == [{"code": 1}]
    project = Project.from_dict({"project_id": "164995388", "name": "cube", "status": "ACTIVE", "content": None})
    assert project.to_dict()["project_id"] == "164995388" and project.content is None


def test_utils() -> None:
    assert format_temperature(220) == "220.0°C" and format_temperature("bad") == "N/A"
    assert format_temperature(None) == "N/A" and format_temperature(35.25, "F", decimals=2) == "35.25°F"
    assert format_time_remaining(3900) == "1h 05m" and format_time_remaining(750) == "12m 30s"
    assert format_time_remaining(45) == "45s" and format_time_remaining(183_600) == "2d 3h"
    assert format_time_remaining(None) == "N/A" and format_time_remaining(-1) == "N/A"
    assert format_timestamp(0) == "1970-01-01 00:00:00"
    assert format_timestamp("2024-10-24T10:00:00Z") == "2024-10-24 10:00:00"
    assert format_timestamp(dt.datetime(2025, 1, 2, 3, 4, 5), "%H:%M") == "03:04"
    assert format_timestamp("yesterday") == "N/A" and format_timestamp(None) == "N/A"
    parsed = parse_device_data({"dev_id": "01P00A000000001", "online": 1, "dev_access_code": "1234\n",
                                "dev_model_name": "C12", "dev_product_name": "P1S"})
    assert parsed["online"] is True and parsed["dev_access_code"] == "1234" and parsed["product"] == "P1S"


def test_mqtt_client_older_spellings(cloud: CloudThread) -> None:
    printer = cloud.printers[0]
    got = threading.Event()
    seen: list[dict[str, Any]] = []

    def on_update(data: dict[str, Any]) -> None:  # the older one-argument callback
        seen.append(data)
        got.set()

    client = bambulab.MQTTClient("bblp", device_id=printer.serial, token=printer.access_code, host=printer.host,
                                 port=printer.mqtt.port, ssl_context=cloud.sim.ca.client_context())
    assert isinstance(client, bambulab.sync.MQTTClient)
    with client:
        client.subscribe_to_updates(on_update)  # after connect(): the reports start flowing
        assert got.wait(10) and "print" in seen[-1]
    with pytest.raises(ValueError, match="access_token"):
        bambulab.MQTTClient("bblp")
