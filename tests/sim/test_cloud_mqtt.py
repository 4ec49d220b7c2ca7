"""The fake cloud's MQTT broker and its bridge to virtual printers, seen through paho-mqtt."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from simtools import Mqtt, raw_connack
from test_cloud_support import CloudEnv, CloudMqtt


def _client(env: CloudEnv, username: str, password: str) -> CloudMqtt:
    return CloudMqtt(env, username, password)


def _setup(env: CloudEnv, **printer: Any) -> tuple[Any, Any, str]:
    p = env.add(**({"model": "X1C"} | printer))
    alice = env.account()
    env.bind(alice, p)
    return p, alice, env.token(alice)


def _ack(section: str, command: str, seq: str | None = None) -> Any:
    def pred(topic: str, msg: dict[str, Any]) -> bool:
        body = msg.get(section)
        return (isinstance(body, dict) and body.get("command") == command
                and (seq is None or body.get("sequence_id") == seq))

    return pred


def test_tls_certificate_names_the_cloud_broker() -> None:
    with CloudEnv() as env:
        ctx = ssl.create_default_context(cadata=env.cloud.ca_pem.decode())
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", env.cloud.mqtt_port), timeout=5) as raw, \
                ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "us.mqtt.bambulab.com"


def test_login_with_uid_and_token_and_refusals_are_connack_5() -> None:
    with CloudEnv() as env:
        _, alice, token = _setup(env)
        bob = env.account("bob@example.com", "pw")
        bob_token = env.token(bob)
        port = env.cloud.mqtt_port
        assert raw_connack("127.0.0.1", port, f"u_{alice.uid}", token) == 0
        assert raw_connack("127.0.0.1", port, f"u_{alice.uid}", "not-a-token") == 5
        assert raw_connack("127.0.0.1", port, f"u_{alice.uid}", bob_token) == 5, "another account's token"
        assert raw_connack("127.0.0.1", port, "bblp", token) == 5
        assert raw_connack("127.0.0.1", port, f"u_{alice.uid}", "") == 5
        env.do(lambda: env.cloud.expire_tokens(alice))
        assert raw_connack("127.0.0.1", port, f"u_{alice.uid}", token) == 5, "expired token"
        fresh = env.token(alice)
        client = _client(env, f"u_{alice.uid}", fresh)
        try:
            assert client.connect() == 0
        finally:
            client.close()


def test_token_expired_by_the_clock_is_refused() -> None:
    with CloudEnv() as env:
        _, alice, _ = _setup(env)
        short = env.do(lambda: env.cloud.issue_token(alice, lifetime=60))
        assert raw_connack("127.0.0.1", env.cloud.mqtt_port, f"u_{alice.uid}", short) == 0
        env.do(lambda: env.cloud.advance(61))
        assert raw_connack("127.0.0.1", env.cloud.mqtt_port, f"u_{alice.uid}", short) == 5


def test_only_bound_devices_and_no_wildcards() -> None:
    with CloudEnv() as env:
        mine, alice, token = _setup(env)
        theirs = env.add(model="P1S")
        env.bind(env.account("bob@example.com", "pw"), theirs)
        client = _client(env, f"u_{alice.uid}", token)
        try:
            assert client.connect() == 0
            assert client.subscribe(f"device/{mine.serial}/report") == [0]
            assert client.subscribe(f"device/{theirs.serial}/report") == [0x80]
            assert client.subscribe("device/00M000000000000/report") == [0x80]
            for wildcard in ("device/+/report", f"device/{mine.serial}/#", "#", "device/#", "+/+/+"):
                assert client.subscribe(wildcard) == [0x80], wildcard
            assert client.subscribe("$SYS/broker/uptime") == [0x80]
            assert client.subscribe(f"device/{mine.serial}/other") == [0x80]
            assert not client.disconnected.is_set()
        finally:
            client.close()


def test_request_topic_subscription_is_granted_but_silent() -> None:
    with CloudEnv() as env:
        printer, alice, token = _setup(env)
        listener = _client(env, f"u_{alice.uid}", token)
        sender = _client(env, f"u_{alice.uid}", env.token(alice))
        try:
            assert listener.connect() == 0 and sender.connect() == 0
            assert listener.subscribe(f"device/{printer.serial}/request") == [0]
            assert sender.subscribe(f"device/{printer.serial}/report") == [0]
            sender.publish(printer.serial, {"system": {"sequence_id": "77", "command": "ledctrl",
                                                       "led_node": "chamber_light", "led_mode": "off"}})
            sender.wait_for(_ack("system", "ledctrl", "77"))
            assert [t for t, _ in listener.drain(0.5) if t.endswith("/request")] == []
        finally:
            listener.close()
            sender.close()


def test_publishing_to_someone_elses_printer_is_dropped() -> None:
    with CloudEnv() as env:
        _, alice, token = _setup(env)
        theirs = env.add(model="P1S")
        env.bind(env.account("bob@example.com", "pw"), theirs)
        before = theirs.engine.commands_handled
        client = _client(env, f"u_{alice.uid}", token)
        try:
            assert client.connect() == 0
            client.publish(theirs.serial, {"print": {"sequence_id": "1", "command": "stop", "param": ""}})
            client.client.publish(f"device/{theirs.serial}/report", b'{"print":{"command":"push_status"}}')
            time.sleep(0.5)
            assert theirs.engine.commands_handled == before
            assert not client.disconnected.is_set()
        finally:
            client.close()


def test_command_through_the_cloud_reaches_the_printer_and_the_report_comes_back() -> None:
    with CloudEnv() as env:
        printer, alice, token = _setup(env, quirks={"push_interval": 0.2})
        lan = Mqtt(printer)
        cloud = _client(env, f"u_{alice.uid}", token)
        try:
            assert lan.connect() == 0
            lan.subscribe_report()
            assert cloud.connect() == 0
            assert cloud.subscribe(f"device/{printer.serial}/report") == [0]
            cloud.publish(printer.serial, {"pushing": {"sequence_id": "0", "command": "pushall",
                                                       "version": 1, "push_target": 1}})
            topic, full = cloud.wait_for(lambda t, m: m.get("print", {}).get("msg") == 0)
            assert topic == f"device/{printer.serial}/report"
            assert full["print"]["gcode_state"] == "IDLE"
            assert "nozzle_temper" in full["print"]
            cloud.publish(printer.serial, {"print": {"sequence_id": "4242", "command": "print_speed", "param": "3"}})
            _, ack = cloud.wait_for(_ack("print", "print_speed", "4242"))
            assert ack["print"]["result"] == "success"
            assert printer.dynamic.speed_level == 3
            # The LAN broker saw the same acknowledgement: the printer reports to both.
            lan_ack = lan.ack("print", "print_speed")
            assert lan_ack["sequence_id"] == "4242"
            # Periodic pushes reach the cloud too.
            cloud.wait_for(lambda t, m: m.get("print", {}).get("command") == "push_status", timeout=3)
            # A LAN command's reply is also seen on the cloud.
            lan.send({"system": {"sequence_id": "9", "command": "ledctrl", "led_node": "chamber_light",
                                 "led_mode": "off"}})
            cloud.wait_for(_ack("system", "ledctrl", "9"))
        finally:
            cloud.close()
            lan.close()


def test_offline_printer_misses_cloud_commands_and_unbound_printer_stops_relaying() -> None:
    with CloudEnv() as env:
        printer, alice, token = _setup(env)
        client = _client(env, f"u_{alice.uid}", token)
        try:
            assert client.connect() == 0
            assert client.subscribe(f"device/{printer.serial}/report") == [0]
            env.st.call(printer.go_offline())
            client.publish(printer.serial, {"print": {"sequence_id": "5", "command": "print_speed", "param": "4"}})
            assert [m for _, m in client.drain(0.5) if "print" in m] == []
            assert printer.dynamic.speed_level != 4
            env.st.call(printer.come_online())
            client.publish(printer.serial, {"print": {"sequence_id": "6", "command": "print_speed", "param": "4"}})
            client.wait_for(_ack("print", "print_speed", "6"))
            env.do(lambda: env.cloud.unbind(printer))
            client.drain(0.3)  # whatever was already on its way before the unbind
            client.publish(printer.serial, {"print": {"sequence_id": "7", "command": "print_speed", "param": "1"}})
            env.st.call(printer.push_now())
            assert client.drain(0.5) == []
            assert printer.dynamic.speed_level == 4
            assert client.subscribe(f"device/{printer.serial}/report") == [0x80]
        finally:
            client.close()


def test_cloud_event_injection() -> None:
    with CloudEnv() as env:
        printer, alice, token = _setup(env)
        client = _client(env, f"u_{alice.uid}", token)
        try:
            assert client.connect() == 0
            client.subscribe(f"device/{printer.serial}/report")
            env.st.call(env.cloud.inject_event(printer.serial, "client.disconnected"))
            _, msg = client.wait_for(lambda t, m: "event" in m)
            assert msg["event"]["event"] == "client.disconnected"
        finally:
            client.close()


def test_relayed_commands_are_checked_like_lan_commands() -> None:
    with CloudEnv() as env:
        printer, alice, token = _setup(env, quirks={"auth_mode": "enforced"})
        client = _client(env, f"u_{alice.uid}", token)
        try:
            assert client.connect() == 0
            client.subscribe(f"device/{printer.serial}/report")
            client.publish(printer.serial, {"print": {"sequence_id": "31", "command": "print_speed", "param": "4"}})
            _, ack = client.wait_for(_ack("print", "print_speed", "31"))
            assert ack["print"]["result"] == "failed"
            assert ack["print"]["err_code"] == 84033543
            assert printer.dynamic.speed_level != 4
        finally:
            client.close()



def test_refused_cloud_logins_leave_no_session() -> None:
    with CloudEnv() as env:
        _, alice, token = _setup(env)
        port = env.cloud.mqtt_port
        for _ in range(3):
            assert raw_connack("127.0.0.1", port, f"u_{alice.uid}", "not-a-token") == 5
        deadline = time.monotonic() + 3
        while env.cloud.mqtt_client_count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert env.cloud.mqtt_client_count == 0
        client = _client(env, f"u_{alice.uid}", token)
        try:
            assert client.connect() == 0
            assert env.cloud.mqtt_client_count == 1
        finally:
            client.close()
