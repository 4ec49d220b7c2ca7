"""The virtual printer's MQTT broker and command handling, seen through plain paho-mqtt."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from simtools import Mqtt, SimThread, print_state, raw_connack

from bambulab.sim import AuthMode, MaxClientsMode, Quirks

Connect = Callable[..., Mqtt]


def push(key: str, value: Any = None) -> Callable[[dict[str, Any]], bool]:
    def pred(msg: dict[str, Any]) -> bool:
        body = print_state(msg)
        if key not in body:
            return False
        return value is None or body[key] == value

    return pred


# ---------------------------------------------------------------------- TLS and auth


def test_tls_certificate_cn_is_serial_without_ip_san(simthread: SimThread) -> None:
    printer = simthread.add(model="P1S")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=simthread.sim.ca.ca_pem.decode())
    ctx.check_hostname = False
    with socket.create_connection((printer.host, printer.mqtt.port), timeout=5) as raw, \
            ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
    cert = x509.load_der_x509_certificate(der)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == printer.serial
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    # And a hostname check against the IP fails, as with a real printer.
    strict = ssl.create_default_context(cadata=simthread.sim.ca.ca_pem.decode())
    with socket.create_connection((printer.host, printer.mqtt.port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        strict.wrap_socket(raw, server_hostname=printer.host)


@pytest.mark.parametrize("tls_max", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_connect_verified_against_sim_ca(simthread: SimThread, connect: Connect, tls_max: ssl.TLSVersion) -> None:
    printer = simthread.add(model="X1C")
    client = connect(printer, ca_pem=simthread.sim.ca.ca_pem, tls_max=tls_max)
    client.send({"pushing": {"sequence_id": "1", "command": "pushall"}})
    assert print_state(client.wait_for(push("msg", 0)))["gcode_state"] == "IDLE"


def test_wrong_access_code_is_not_authorised(simthread: SimThread, mqtt_clients: list[Mqtt]) -> None:
    printer = simthread.add(model="P1S")
    client = Mqtt(printer, code="00000000")
    mqtt_clients.append(client)
    rc = client.connect()
    assert rc.is_failure
    assert str(rc) == "Not authorized"
    # On the wire: CONNACK return code 5, for a wrong code and for a wrong user name alike.
    assert raw_connack(printer.host, printer.mqtt.port, "bblp", "00000000") == 5
    assert raw_connack(printer.host, printer.mqtt.port, "admin", printer.access_code) == 5
    assert raw_connack(printer.host, printer.mqtt.port, "bblp", printer.access_code) == 0


def test_nothing_is_sent_on_connect(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S", quirks={"push_interval": 30.0})
    client = connect(printer)
    assert client.drain(0.6) == []


# ---------------------------------------------------------------------- reports


def test_pushall_full_then_deltas_on_p1(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S", quirks={"push_interval": 0.2})
    client = connect(printer)
    client.send({"pushing": {"sequence_id": "0", "command": "pushall", "version": 1, "push_target": 1}})
    full = print_state(client.wait_for(push("msg", 0)))
    assert full["command"] == "push_status"
    for key in ("gcode_state", "nozzle_temper", "bed_temper", "ams", "lights_report", "wifi_signal",
                "cooling_fan_speed", "home_flag", "hms"):
        assert key in full, key
    assert isinstance(full["cooling_fan_speed"], str)
    assert isinstance(full["nozzle_temper"], float)
    client.send({"print": {"sequence_id": "5", "command": "gcode_line", "param": "M140 S60\n"}})
    delta = print_state(client.wait_for(push("bed_target_temper")))
    assert delta["msg"] == 1
    assert delta["bed_target_temper"] == 60
    assert "ams" not in delta and "lights_report" not in delta  # only changed keys
    assert len(delta) < len(full) // 3
    # Report sequence ids are the printer's own increasing counter.
    assert int(delta["sequence_id"]) > int(full["sequence_id"])


def test_x1_sends_full_pushes(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="X1C", quirks={"push_interval": 0.2})
    client = connect(printer)
    reports = [print_state(m) for m in client.drain(1.2) if print_state(m)]
    assert len(reports) >= 2
    assert all(r["msg"] == 0 for r in reports)
    assert all("ams" in r and "gcode_state" in r for r in reports)


def test_delta_mode_switch_makes_p1_send_full(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S", quirks={"push_interval": 0.2, "delta_mode": "full_always"})
    client = connect(printer)
    reports = [print_state(m) for m in client.drain(1.0) if print_state(m)]
    assert reports and all(r["msg"] == 0 and "nozzle_temper" in r for r in reports)


@pytest.mark.parametrize("model", ["P1S", "P1P", "X1C", "A1", "A1 mini", "H2D"])
def test_get_version_identifies_model(simthread: SimThread, connect: Connect, model: str) -> None:
    printer = simthread.add(model=model)
    client = connect(printer)
    client.send({"info": {"sequence_id": "77", "command": "get_version"}})
    reply = client.ack("info", "get_version")
    assert reply["sequence_id"] == "77"
    modules = reply["module"]
    ota = next(m for m in modules if m["name"] == "ota")
    assert ota["sw_ver"].count(".") == 3
    # Identify the model the way the widely used clients do (PROTOCOL.md §1.8), written out here.
    product_names = {m.get("product_name") for m in modules}
    ap = next((m for m in modules if str(m.get("hw_ver", "")).startswith("AP0")), None)
    expected = {"P1S": "Bambu Lab P1S", "P1P": "Bambu Lab P1P", "A1": "Bambu Lab A1",
                "A1 mini": "Bambu Lab A1 mini", "H2D": "Bambu Lab H2D"}
    if model in expected and expected[model] in product_names:
        return
    assert ap is not None, modules
    project = ap.get("project_name") or ""
    rule = {("AP04", "C11"): "P1P", ("AP04", "C12"): "P1S", ("AP05", "N2S"): "A1", ("AP05", ""): "X1C"}
    if project == "N1":
        assert model == "A1 mini"
    else:
        assert rule[(ap["hw_ver"], project)] == model


def test_configured_firmware_is_reported(simthread: SimThread, connect: Connect) -> None:
    """``PrinterConfig.firmware`` sets the version (and so the get_version style of older firmware)."""
    printer = simthread.add(model="P1P", firmware="01.06.01.00")
    client = connect(printer)
    client.send({"info": {"sequence_id": "1", "command": "get_version"}})
    modules = client.ack("info", "get_version")["module"]
    ota = next(m for m in modules if m["name"] == "ota")
    assert ota["sw_ver"] == "01.06.01.00"
    assert not ota.get("product_name") and ota.get("project_name") == "C11"  # the old style


@pytest.mark.parametrize("seq", ["12345", 42, None])
def test_sequence_id_echoed_as_sent(simthread: SimThread, connect: Connect, seq: Any) -> None:
    printer = simthread.add(model="P1S")
    client = connect(printer)
    body: dict[str, Any] = {"command": "ledctrl", "led_node": "chamber_light", "led_mode": "off"}
    if seq is not None:
        body["sequence_id"] = seq
    client.send({"system": body})
    ack = client.ack("system", "ledctrl")
    if seq is None:
        assert "sequence_id" not in ack
    else:
        assert ack["sequence_id"] == seq
        assert type(ack["sequence_id"]) is type(seq)
    assert ack["result"] == "success"


def test_result_casing_switch(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S", quirks={"result_upper": True})
    client = connect(printer)
    client.send({"system": {"sequence_id": "1", "command": "ledctrl", "led_node": "chamber_light",
                            "led_mode": "on"}})
    assert client.ack("system", "ledctrl")["result"] == "SUCCESS"


def test_several_sections_in_one_message(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S")
    client = connect(printer)
    client.send({"pushing": {"sequence_id": "0", "command": "pushall"},
                 "info": {"sequence_id": "1", "command": "get_version"}})
    seen: set[str] = set()
    while seen != {"version", "full"}:
        msg = client.wait_for(lambda m: "info" in m or print_state(m).get("msg") == 0)
        seen.add("version" if "info" in msg else "full")


# ---------------------------------------------------------------------- commands


def _sent(client: Mqtt, section: str, command: str, **params: Any) -> dict[str, Any]:
    client.send({section: {"sequence_id": str(int(time.monotonic() * 1000) % 100000), "command": command,
                           **params}})
    return client.ack(section, command)


def test_gcode_line_temperatures_fans_and_home(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="X1C")
    client = connect(printer)
    ack = _sent(client, "print", "gcode_line", param="M104 S210\nM140 S65\nM141 S40\nM106 P1 S255\n"
                                                    "M106 P2 S128\nM106 P3 S0\nG28\n")
    assert ack["result"] == "success"
    state = print_state(client.wait_for(push("nozzle_target_temper", 210)))
    assert state["bed_target_temper"] == 65
    assert state["cooling_fan_speed"] == "15"
    assert state["big_fan1_speed"] in ("8", "7")  # 128/255 of 15
    dyn = printer.dynamic
    assert dyn.fan_chamber == 0 and dyn.homed


def test_chamber_target_only_on_heated_chambers(simthread: SimThread, connect: Connect) -> None:
    h2d = simthread.add(model="H2D")
    client = connect(h2d)
    _sent(client, "print", "gcode_line", param="M141 S45\n")
    assert h2d.dynamic.chamber.target == 45
    p1s = simthread.add(model="P1S")
    client2 = connect(p1s)
    assert _sent(client2, "print", "gcode_line", param="M141 S45\n")["result"] == "success"
    assert p1s.dynamic.chamber.target == 0


def test_heaters_ramp_towards_target(connect: Connect) -> None:
    st = SimThread(time_scale=20.0)
    try:
        printer = st.add(model="P1S", quirks={"push_interval": 0.2})
        client = connect(printer)
        _sent(client, "print", "gcode_line", param="M104 S200\n")
        temps = []
        for m in client.drain(1.5):
            if "nozzle_temper" in print_state(m):
                temps.append(print_state(m)["nozzle_temper"])
        assert len(temps) >= 3
        assert temps == sorted(temps) and temps[-1] > temps[0]
        # P1 temperatures are multiples of 1/32.
        assert all((t * 32) == int(t * 32) for t in temps)
    finally:
        st.close()


def test_ledctrl_and_unknown_node(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="X1C")
    client = connect(printer)
    ack = _sent(client, "system", "ledctrl", led_node="chamber_light", led_mode="off",
                led_on_time=500, led_off_time=500, loop_times=0, interval_time=0)
    assert ack["result"] == "success" and ack["led_mode"] == "off"
    lights = print_state(client.wait_for(push("lights_report")))["lights_report"]
    assert {"node": "chamber_light", "mode": "off"} in lights
    bad = _sent(client, "system", "ledctrl", led_node="disco_ball", led_mode="on")
    assert bad["result"] == "fail" and "disco_ball" in bad["reason"]


def test_print_speed(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S")
    client = connect(printer)
    assert _sent(client, "print", "print_speed", param="3")["result"] == "success"
    assert print_state(client.wait_for(push("spd_lvl", 3)))["spd_lvl"] == 3
    assert _sent(client, "print", "print_speed", param="9")["result"] == "fail"


def test_xcam_and_camera_settings(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="X1C")
    client = connect(printer)
    ack = _sent(client, "xcam", "xcam_control_set", module_name="spaghetti_detector", control=False,
                print_halt=True, halt_print_sensitivity="high")
    assert ack["result"] == "success"
    assert printer.dynamic.xcam["spaghetti_detector"] is False
    assert printer.dynamic.xcam["halt_print_sensitivity"] == "high"
    assert _sent(client, "camera", "ipcam_record_set", control="disable")["result"] == "success"
    ipcam = print_state(client.wait_for(push("ipcam")))["ipcam"]
    assert ipcam["ipcam_record"] == "disable"
    assert _sent(client, "camera", "ipcam_record_set", control="maybe")["result"] == "fail"


def test_get_access_code(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S")
    client = connect(printer)
    assert _sent(client, "system", "get_access_code")["access_code"] == printer.access_code


def test_debug_logging_never_shows_the_access_code(simthread: SimThread, connect: Connect) -> None:
    """``bambu --debug sim``: every logger at DEBUG, yet no payload (and so no code) is logged."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(f"{record.name} {record.getMessage()}")

    root = logging.getLogger()
    handler, saved_level = Collect(logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        printer = simthread.add(model="P1S")
        client = connect(printer)
        assert _sent(client, "system", "get_access_code")["access_code"] == printer.access_code
        time.sleep(0.2)
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
    assert any(r.startswith("bambulab.sim") for r in records)  # DEBUG logging was on
    leaks = [r for r in records if printer.access_code in r or "get_access_code" in r]
    assert not leaks, leaks[:3]


def test_ams_change_and_filament_setting(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="X1C")
    client = connect(printer)
    loaded = next(u.unit_id * 4 + t.slot for u in printer.dynamic.ams for t in u.trays if t.loaded)
    ack = _sent(client, "print", "ams_change_filament", target=loaded, curr_temp=220, tar_temp=220)
    assert ack["result"] == "success"
    assert print_state(client.wait_for(push("ams")))["ams"]["tray_now"] == str(loaded)
    assert _sent(client, "print", "ams_change_filament", target=255, curr_temp=220,
                 tar_temp=220)["result"] == "success"
    assert printer.dynamic.tray_now == 255
    ack = _sent(client, "print", "ams_filament_setting", ams_id=0, tray_id=1, tray_info_idx="GFL99",
                tray_color="FF0000FF", nozzle_temp_min=190, nozzle_temp_max=230, tray_type="PETG")
    assert ack["result"] == "success"
    trays = print_state(client.wait_for(push("ams")))["ams"]["ams"][0]["tray"]
    tray = next(t for t in trays if t["id"] == "1")
    assert tray["tray_type"] == "PETG" and tray["tray_color"] == "FF0000FF"
    bad = _sent(client, "print", "ams_filament_setting", ams_id=9, tray_id=0, tray_color="FF0000FF")
    assert bad["result"] == "fail"


def test_unknown_and_malformed_commands_get_failure_acks(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S")
    client = connect(printer)
    assert _sent(client, "print", "self_destruct")["result"] == "fail"
    client.send(b"{not json")
    reply = client.wait_for(lambda m: any(isinstance(v, dict) and v.get("reason") == "malformed JSON"
                                          for v in m.values()))
    assert reply
    client.send(b"[1, 2, 3]")
    client.wait_for(lambda m: any(isinstance(v, dict) and v.get("result") == "fail" for v in m.values()))
    client.send({"print": "not an object"})
    client.send({"print": {"sequence_id": "9"}})
    assert client.ack("print", "")["result"] == "fail"
    assert _sent(client, "print", "print_speed", param={"nested": 1})["result"] == "fail"
    assert _sent(client, "print", "skip_objects", obj_list="1,2")["result"] == "fail"
    # The printer still works.
    client.send({"pushing": {"sequence_id": "0", "command": "pushall"}})
    assert print_state(client.wait_for(push("msg", 0)))["gcode_state"] == "IDLE"


# ---------------------------------------------------------------------- quirks


def test_max_clients_refuse(simthread: SimThread, connect: Connect, mqtt_clients: list[Mqtt]) -> None:
    printer = simthread.add(model="P1S", quirks={"max_clients": 2, "max_clients_mode": "refuse"})
    connect(printer)
    connect(printer)
    third = Mqtt(printer)
    mqtt_clients.append(third)
    assert str(third.connect()) == "Server unavailable"
    assert raw_connack(printer.host, printer.mqtt.port, "bblp", printer.access_code) == 3


def test_refused_logins_do_not_count_towards_the_limit(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S", quirks={"max_clients": 1, "max_clients_mode": "refuse"})
    for _ in range(3):
        assert raw_connack(printer.host, printer.mqtt.port, "bblp", "00000000") == 5
    time.sleep(0.2)
    assert printer.mqtt.client_count == 0
    connect(printer)  # the one allowed client still gets in
    assert printer.mqtt.client_count == 1


def test_max_clients_accept_silent(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S", quirks={"max_clients": 1, "max_clients_mode": "accept_silent",
                                                "push_interval": 0.2})
    first = connect(printer)
    silent = connect(printer)
    silent.send({"pushing": {"sequence_id": "0", "command": "pushall"}})
    first.wait_for(push("msg", 0))
    assert silent.drain(0.8) == []


def test_max_clients_drop_oldest(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="P1S", quirks={"max_clients": 1, "max_clients_mode": "drop_oldest"})
    oldest = connect(printer)
    newest = connect(printer)
    assert oldest.disconnected.wait(5)
    newest.send({"pushing": {"sequence_id": "0", "command": "pushall"}})
    newest.wait_for(push("msg", 0))
    assert not newest.disconnected.is_set()


def test_p1_drops_client_subscribing_to_request_topic(simthread: SimThread, connect: Connect) -> None:
    p1 = simthread.add(model="P1S")
    client = connect(p1)
    client.client.subscribe(f"device/{p1.serial}/request")
    assert client.disconnected.wait(5)


def test_x1_allows_request_subscription_and_wildcards(simthread: SimThread, connect: Connect) -> None:
    x1 = simthread.add(model="X1C", quirks={"push_interval": 30.0})
    client = connect(x1, subscribe=False)
    client.client.subscribe("device/+/report")
    client.client.subscribe(f"device/{x1.serial}/request")
    client.send({"pushing": {"sequence_id": "0", "command": "pushall"}})
    client.wait_for(push("msg", 0))
    assert not client.disconnected.is_set()


def test_printers_are_isolated(simthread: SimThread, connect: Connect) -> None:
    a = simthread.add(model="X1C", quirks={"push_interval": 30.0})
    b = simthread.add(model="X1C", quirks={"push_interval": 30.0})
    client_a = connect(a, subscribe=False)
    client_a.client.subscribe("#")
    client_b = connect(b)
    client_b.send({"pushing": {"sequence_id": "0", "command": "pushall"}})
    client_b.wait_for(push("msg", 0))
    assert client_a.drain(0.5) == []
    # Publishing to another printer's topic is refused.
    client_a.client.publish(f"device/{b.serial}/request", json.dumps(
        {"print": {"sequence_id": "1", "command": "stop"}}))
    assert b.engine.commands_handled == 1


def test_auth_enforced_rejects_unsigned_print_commands(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="X1C", quirks={"auth_mode": "enforced"})
    client = connect(printer)
    ack = _sent(client, "print", "gcode_line", param="M104 S200\n")
    assert ack["result"] == "failed"
    assert ack["err_code"] == 84033543
    assert ack["reason"] == "mqtt message verify failed"
    assert printer.dynamic.nozzles[0].target == 0
    # system, info, pushing, camera and xcam still work unsigned
    assert _sent(client, "system", "ledctrl", led_node="chamber_light", led_mode="off")["result"] == "success"
    assert _sent(client, "camera", "ipcam_record_set", control="enable")["result"] == "success"
    assert _sent(client, "xcam", "xcam_control_set", module_name="printing_monitor",
                 control=True)["result"] == "success"
    client.send({"info": {"sequence_id": "3", "command": "get_version"}})
    client.ack("info", "get_version")
    client.send({"pushing": {"sequence_id": "0", "command": "pushall"}})
    full = print_state(client.wait_for(push("msg", 0)))
    # fun bit 29 tells clients that signing is required
    assert int(full["fun"], 16) & 0x20000000
    # A message with a well-formed signature header is accepted; a replayed sequence id is not.
    header = {"sign_ver": "v1.0", "sign_alg": "RSA_SHA256", "sign_string": "AAAA", "cert_id": "x",
              "payload_len": 10}
    client.send({"print": {"sequence_id": "4242", "command": "gcode_line", "param": "M104 S200\n"},
                 "header": header})
    assert client.ack("print", "gcode_line")["result"] == "success"
    client.send({"print": {"sequence_id": "4242", "command": "gcode_line", "param": "M104 S200\n"},
                 "header": header})
    assert client.ack("print", "gcode_line")["err_code"] == 84033544


def test_developer_mode_clears_signing_bit(simthread: SimThread, connect: Connect) -> None:
    printer = simthread.add(model="X1C", quirks={"auth_mode": AuthMode.DEVELOPER.value})
    client = connect(printer)
    client.send({"pushing": {"sequence_id": "0", "command": "pushall"}})
    full = print_state(client.wait_for(push("msg", 0)))
    assert not int(full["fun"], 16) & 0x20000000
    assert _sent(client, "print", "gcode_line", param="M104 S200\n")["result"] == "success"


def test_quirks_round_trip() -> None:
    q = Quirks(max_clients=3, max_clients_mode=MaxClientsMode.DROP_OLDEST, auth_mode=AuthMode.ENFORCED)
    assert Quirks.from_dict(q.to_dict()) == q
    with pytest.raises(ValueError, match="unknown quirk"):
        Quirks.from_dict({"warp_drive": True})
