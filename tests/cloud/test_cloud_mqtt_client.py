"""Cloud MQTT (bambulab.cloud.mqtt) against the fake cloud and virtual printers, over real TLS sockets.

The async tests run the simulator and the :class:`FakeCloud` on the test's own event loop; the
blocking facade and the CLI tests run them on a loop in a background thread. Everything stays on
127.0.0.1. Fixtures are local to this file (``tests/cloud/conftest.py`` belongs to the HTTP tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bambulab import sync
from bambulab.cloud.mqtt import BROKERS, CloudConnection, CloudPrinter, uid_from_token
from bambulab.events import (
    ConnectionLost,
    ConnectionRestored,
    EventStream,
    PrinterEvent,
    PrintFinished,
    PrintPaused,
    PrintResumed,
    PrintStarted,
    StateChanged,
)
from bambulab.exceptions import (
    BambuTimeoutError,
    CloudError,
    NotConnectedError,
    TokenExpiredError,
)
from bambulab.protocol import commands
from bambulab.protocol.views import GcodeState
from bambulab.sim import Simulator, VirtualPrinter
from bambulab.sim.cloud import Account, FakeCloud
from bambulab.sim.demo import demo_project
from bambulab.transports import mqtt as mqtt_transport
from bambulab.transports.mqtt import MqttConnection

TIMEOUT = 8.0
BROKER_NAME = "us.mqtt.bambulab.com"  # the fake broker's certificate names the real one


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Env:
    sim: Simulator
    cloud: FakeCloud
    alice: Account
    printers: list[VirtualPrinter]
    token: str
    ctx: ssl.SSLContext
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def broker_clients(self) -> int:
        mqtt = self.cloud._mqtt
        assert mqtt is not None
        return mqtt.client_count

    def connection(self, devices: list[str] | None = None, **kwargs: Any) -> CloudConnection:
        kwargs.setdefault("uid", self.alice.uid)
        kwargs.setdefault("command_timeout", 3.0)
        kwargs.setdefault("connect_timeout", 3.0)
        kwargs.setdefault("backoff", (0.05, 0.3))
        kwargs.setdefault("pushall_interval", 0.0)
        token = kwargs.pop("token", self.token)
        return CloudConnection(
            token,
            devices=[p.serial for p in self.printers] if devices is None else devices,
            host="127.0.0.1",
            port=self.cloud.mqtt_port,
            ssl_context=self.ctx,
            server_hostname=BROKER_NAME,
            **kwargs,
        )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    """A fake cloud (fixed MQTT port, so it can restart), alice, and her P1S and X1C."""
    async with Simulator(time_scale=1.0, seed=21) as sim:
        cloud = FakeCloud(sim, seed=5, mqtt_port=_free_port())
        await cloud.start()
        try:
            p1s = await sim.add_printer(model="P1S", quirks={"push_interval": 0.2})
            x1c = await sim.add_printer(model="X1C", quirks={"push_interval": 0.2})
            alice = cloud.add_account("alice@example.com", "pw")
            cloud.bind(alice, p1s)
            cloud.bind(alice, x1c)
            # Real verification: the chain (the simulator's CA) and the host name (via server_hostname).
            ctx = ssl.create_default_context(cadata=cloud.ca_pem.decode())
            yield Env(sim, cloud, alice, [p1s, x1c], cloud.issue_token(alice), ctx)
        finally:
            await cloud.stop()


async def next_event(stream: EventStream, kind: type[PrinterEvent], limit: float = TIMEOUT) -> Any:
    async with asyncio.timeout(limit):
        while True:
            event = await stream.get()
            if isinstance(event, kind):
                return event


async def drain(stream: EventStream, into: list[PrinterEvent]) -> None:
    async for event in stream:
        into.append(event)


def no_cloud_tasks() -> bool:
    return not any(t.get_name() == "bambulab-cloud-mqtt" for t in asyncio.all_tasks())


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[MqttConnection]:
    """Every MQTT connection the client tries to open (to count retries and check they are closed)."""
    made: list[MqttConnection] = []
    connect = MqttConnection.connect

    async def spy(self: MqttConnection) -> None:
        made.append(self)
        await connect(self)

    monkeypatch.setattr(MqttConnection, "connect", spy)
    return made


def _record_published(vp: VirtualPrinter) -> list[dict[str, Any]]:
    """What the virtual printer publishes (the cloud relays exactly this)."""
    seen: list[dict[str, Any]] = []

    async def sink(message: dict[str, Any]) -> None:
        seen.append(message)

    vp.add_report_sink(sink)
    return seen


def _record_requests(vp: VirtualPrinter) -> list[dict[str, Any]]:
    """What reaches the virtual printer from the cloud broker (parsed)."""
    seen: list[dict[str, Any]] = []
    original = vp.handle_cloud_request

    async def spy(raw: bytes) -> None:
        seen.append(json.loads(raw))
        await original(raw)

    vp.handle_cloud_request = spy  # type: ignore[method-assign]
    return seen


# --------------------------------------------------------------------------- connect, state, status


async def test_two_printers_over_one_connection_with_state_status_and_deltas(env: Env) -> None:
    p1s, x1c = env.printers
    published = _record_published(p1s)
    async with env.connection() as cloud:
        assert cloud.connected and cloud.username == f"u_{env.alice.uid}"
        assert env.broker_clients == 1  # ONE TCP connection for both printers
        assert [p.serial for p in cloud.printers] == [p1s.serial, x1c.serial]
        a, b = cloud.printer(p1s.serial), cloud.printer(x1c.serial.lower())
        assert isinstance(a, CloudPrinter) and a.connected and b.connected
        assert a.model is not None and a.model.name == "P1S"
        assert b.model is not None and b.model.name.startswith("X1")
        for printer, vp in ((a, p1s), (b, x1c)):
            assert printer.status.job.state is GcodeState.IDLE
            assert printer.status.temperatures.nozzle is not None
            assert printer.state["info"]["module"], "the get_version reply came back through the cloud"
            assert printer.state["print"]["sequence_id"]  # a real report, not an echo of ours
            assert vp.serial in repr(printer) and "connected" in repr(printer)
        # A delta (the P1S reports only what changed) is merged into the full state.
        stream = a.events()
        published.clear()
        await p1s.inject_hms(0x03000100, 0x00010007)
        await a.wait_for(lambda s: any(m.code_id == "0300010000010007" for m in s.hms), TIMEOUT)
        deltas = [m["print"] for m in published if "hms" in m.get("print", {})]
        assert deltas and "nozzle_temper" not in deltas[0], "the sim sent a delta"
        assert "nozzle_temper" in a.state["print"] and "ams" in a.state["print"], "the delta was merged, not replaced"
        assert isinstance(await next_event(stream, StateChanged), StateChanged)
        assert a.messages >= 3 and b.messages >= 2 and cloud.unrouted == 0  # version, full report (+ delta)
    assert cloud.closed and "closed" in repr(cloud) and "closed" in repr(a)
    assert no_cloud_tasks()
    with pytest.raises(NotConnectedError):
        await a.set_light(True)


async def test_uid_from_a_jwt_token_and_default_broker(env: Env) -> None:
    env.cloud.set_switches(jwt_tokens=True)
    token = env.cloud.issue_token(env.alice)
    assert uid_from_token(token) == str(env.alice.uid)
    assert uid_from_token("opaque-token") is None and uid_from_token("a.b.c") is None
    async with env.connection(token=token, uid=None) as cloud:
        assert cloud.uid == str(env.alice.uid)
        assert all(p.connected for p in cloud.printers)
    # Without overrides: the real broker of the region, TLS verifying chain and host name.
    default = CloudConnection(token)
    assert (default.host, default.port, default.uid) == (BROKERS["global"], 8883, str(env.alice.uid))
    assert CloudConnection(token, region="china").host == "cn.mqtt.bambulab.com"
    assert default._ssl_context.check_hostname and default._ssl_context.verify_mode is ssl.CERT_REQUIRED
    with pytest.raises(ValueError, match="region"):
        CloudConnection(token, region="mars")
    with pytest.raises(ValueError, match="uid"):
        CloudConnection(token, uid="alice")


async def test_opaque_token_uid_and_device_list_come_from_the_http_api(env: Env) -> None:
    assert uid_from_token(env.token) is None  # the fake cloud issues opaque tokens by default
    cloud = env.connection(devices=None, uid=None, api_url=env.cloud.api_url)
    async with cloud:
        assert cloud.uid == str(env.alice.uid)
        assert sorted(cloud.serials) == sorted(p.serial for p in env.printers)
        assert all(p.connected for p in cloud.printers)


# --------------------------------------------------------------------------- commands and events


async def test_commands_through_the_cloud_reach_the_printer_and_acks_come_back(env: Env) -> None:
    p1s, _ = env.printers
    requests = _record_requests(p1s)
    async with env.connection() as cloud:
        printer = cloud.printer(p1s.serial)
        assert p1s.dynamic.lights["chamber_light"] == "on"
        ack = await printer.set_light(False)
        assert commands.ack_result(ack).success
        assert p1s.dynamic.lights["chamber_light"] == "off"
        ack = await printer.set_nozzle_temp(205)
        assert ack["print"]["command"] == "gcode_line" and commands.ack_result(ack).success
        assert p1s.dynamic.nozzles[0].target == 205
        await printer.wait_for(lambda s: s.temperatures.nozzle_target == 205, TIMEOUT)
        ack = await printer.command({"print": {"command": "print_speed", "param": "3"}})
        assert ack["print"]["sequence_id"] != "0" and p1s.dynamic.speed_level == 3
        status = await printer.refresh()
        assert status.job.state is GcodeState.IDLE
    light = next(r["system"] for r in requests if r.get("system", {}).get("command") == "ledctrl")
    gcode = next(r["print"] for r in requests if r.get("print", {}).get("command") == "gcode_line")
    assert "user_id" not in light
    assert gcode["user_id"] == str(env.alice.uid)  # as Studio sends gcode_line through the cloud
    ids = [body["sequence_id"] for r in requests for body in r.values() if isinstance(body, dict)]
    assert "0" not in ids and len(set(ids)) == len(ids), "our own unique ids, never the cloud's '0'"


async def test_events_for_a_print_started_at_the_printer(env: Env) -> None:
    vp = await env.sim.add_printer(model="P1S", time_scale=600, quirks={"push_interval": 0.1})
    vp.put_file("cache/benchy.gcode.3mf", demo_project(minutes=20, layers=40))
    env.cloud.bind(env.alice, vp)
    async with env.connection(devices=[vp.serial]) as cloud:
        printer = cloud.printer(vp.serial)
        stream = printer.events()
        await vp.start_print("cache/benchy.gcode.3mf")  # from the printer's screen, not through us
        started = await next_event(stream, PrintStarted)
        assert started.serial == vp.serial and started.status.job.is_active
        await printer.wait_for(lambda s: s.job.state is GcodeState.RUNNING, TIMEOUT)
        await printer.pause()
        assert (await next_event(stream, PrintPaused)).status.job.state is GcodeState.PAUSE
        await printer.resume()
        await next_event(stream, PrintResumed)
        finished = await next_event(stream, PrintFinished)
        assert finished.status.job.progress == 100


# --------------------------------------------------------------------------- refusals


async def test_expired_token_is_token_expired_error_without_the_token(
    env: Env, attempts: list[MqttConnection]
) -> None:
    env.cloud.expire_tokens(env.alice)
    cloud = env.connection()
    with pytest.raises(TokenExpiredError, match="log in again") as info:
        await cloud.__aenter__()
    assert env.token not in str(info.value) and env.token not in repr(cloud)
    assert "CONNACK 5" in str(info.value)
    assert cloud.closed and no_cloud_tasks()
    await asyncio.sleep(0.3)
    # No retry on a first connect, and the socket is gone. (The fake broker's client count keeps a
    # refused session for a while, so the client's side is what is checked.)
    assert len(attempts) == 1 and attempts[0].closed


async def test_device_not_bound_to_the_account_is_refused(env: Env) -> None:
    bob = env.cloud.add_account("bob@example.com", "pw")
    theirs = await env.sim.add_printer(model="A1")
    env.cloud.bind(bob, theirs)
    p1s, _ = env.printers
    with pytest.raises(CloudError, match="not bound") as info:
        await env.connection(devices=[p1s.serial, theirs.serial]).__aenter__()
    assert info.value.code == "not_bound" and theirs.serial in str(info.value)
    async with env.connection(devices=[p1s.serial]) as cloud:
        with pytest.raises(CloudError, match=theirs.serial):
            await cloud.add(theirs.serial)
        assert cloud.serials == [p1s.serial]
        assert cloud.connected and commands.ack_result(await cloud.printer(p1s.serial).set_light(True)).success
        with pytest.raises(KeyError, match="not on this cloud connection"):
            cloud.printer(theirs.serial)


async def test_device_unbound_meanwhile_stops_only_that_printer_on_reconnect(env: Env) -> None:
    p1s, x1c = env.printers
    async with env.connection() as cloud:
        a, b = cloud.printer(p1s.serial), cloud.printer(x1c.serial)
        gone, kept = b.events(), a.events()
        env.cloud.unbind(x1c)
        mqtt = env.cloud._mqtt
        assert mqtt is not None
        await mqtt.drop_clients()
        seen: list[PrinterEvent] = []
        with pytest.raises(CloudError, match="not bound"):
            await asyncio.wait_for(drain(gone, seen), TIMEOUT)  # the stream ends with the refusal
        lost = [e for e in seen if isinstance(e, ConnectionLost)]
        assert len(lost) == 1 and lost[0].reconnecting  # issue 12.12: one ConnectionLost per outage
        await next_event(kept, ConnectionRestored)
        assert a.connected and cloud.connected and not b.connected
        with pytest.raises(CloudError, match="not bound"):
            await b.set_light(False)
        assert commands.ack_result(await a.set_light(False)).success


async def test_one_subscribe_per_device_and_never_a_wildcard(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[list[tuple[str, int]]] = []
    encode = mqtt_transport.encode_subscribe

    def spy(packet_id: int, topics: list[tuple[str, int]]) -> bytes:
        sent.append(list(topics))
        return encode(packet_id, topics)

    monkeypatch.setattr(mqtt_transport, "encode_subscribe", spy)
    extra = await env.sim.add_printer(model="A1")
    env.cloud.bind(env.alice, extra)
    async with env.connection() as cloud:
        assert sorted(t for packet in sent for t, _ in packet) == sorted(
            f"device/{p.serial}/report" for p in env.printers
        )
        assert all(len(packet) == 1 for packet in sent)
        await cloud.add(extra.serial)
        assert cloud.printer(extra.serial).connected
    topics = [t for packet in sent for t, _ in packet]
    assert len(topics) == 3 and f"device/{extra.serial}/report" in topics
    assert not any("+" in t or "#" in t for t in topics)


# --------------------------------------------------------------------------- offline printers, reconnects


async def test_offline_printer_stays_empty_reports_it_and_commands_time_out(env: Env) -> None:
    p1s, x1c = env.printers
    await x1c.go_offline()
    cloud = env.connection(command_timeout=1.5, watchdog=1.5)
    offline = cloud.printer(x1c.serial)
    stream = offline.events()  # registered before connecting: sees the offline report
    async with cloud:
        assert cloud.printer(p1s.serial).connected
        assert not offline.connected and offline.state == {} and "offline" in repr(offline)
        lost = await next_event(stream, ConnectionLost)
        assert lost.reconnecting and "offline" in str(lost.error)
        with pytest.raises(BambuTimeoutError, match="has not reported through the cloud") as info:
            await offline.set_light(False)
        assert x1c.serial in str(info.value)
        await x1c.come_online()  # its reports reach the cloud again: a full report restores it
        restored = await next_event(stream, ConnectionRestored)
        assert restored.status.job.state is GcodeState.IDLE
        assert offline.connected and offline.state["print"]["nozzle_temper"] is not None
        # Silence (printer switched off while connected) is noticed by the watchdog ...
        await x1c.go_offline()
        silent = await next_event(stream, ConnectionLost)
        assert "no report" in str(silent.error) and not offline.connected
        await x1c.come_online()
        await next_event(stream, ConnectionRestored)
        # ... and the cloud's own "client.disconnected" event too.
        await env.cloud.inject_event(x1c.serial, "client.disconnected")
        await next_event(stream, ConnectionLost)
        assert cloud.connected and cloud.printer(p1s.serial).connected
        await next_event(stream, ConnectionRestored)  # the next periodic push brings it back


async def test_broker_restart_reconnects_and_resubscribes(env: Env) -> None:
    p1s, x1c = env.printers
    async with env.connection() as cloud:
        a = cloud.printer(p1s.serial)
        streams = {p.serial: p.events() for p in cloud.printers}
        await env.cloud.stop()
        for stream in streams.values():
            lost = await next_event(stream, ConnectionLost)
            assert lost.reconnecting
        assert not cloud.connected and not a.connected
        with pytest.raises(NotConnectedError):
            await a.set_light(False)
        await env.cloud.start()
        for stream in streams.values():
            await next_event(stream, ConnectionRestored)
        assert cloud.connections == 2 and env.broker_clients == 1
        assert commands.ack_result(await a.set_light(False)).success and p1s.dynamic.lights["chamber_light"] == "off"
        await cloud.printer(x1c.serial).refresh()


async def test_token_expired_on_reconnect_stops_for_good(env: Env, attempts: list[MqttConnection]) -> None:
    p1s, _ = env.printers
    async with env.connection() as cloud:
        a = cloud.printer(p1s.serial)
        stream = a.events()
        env.cloud.expire_tokens(env.alice)
        mqtt = env.cloud._mqtt
        assert mqtt is not None
        await mqtt.drop_clients()  # the network blips; the reconnect finds the token expired
        seen: list[PrinterEvent] = []
        with pytest.raises(TokenExpiredError, match="log in again"):
            await asyncio.wait_for(drain(stream, seen), TIMEOUT)  # the stream ends with the error
        lost = [e for e in seen if isinstance(e, ConnectionLost)]
        assert len(lost) == 1 and lost[0].reconnecting  # issue 12.12: one ConnectionLost per outage
        with pytest.raises(TokenExpiredError):
            await a.set_light(True)
        with pytest.raises(TokenExpiredError):
            await cloud.connect()
        assert "failed" in repr(cloud)
        await asyncio.sleep(0.5)
        assert len(attempts) == 2 and all(c.closed for c in attempts)  # nobody keeps knocking with a dead token


async def test_no_token_in_logs_reprs_or_errors(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    p1s, _ = env.printers
    async with env.connection() as cloud:
        texts = [repr(cloud), *map(repr, cloud.printers)]
        await cloud.printer(p1s.serial).set_light(False)
        mqtt = env.cloud._mqtt
        assert mqtt is not None
        stream = cloud.printer(p1s.serial).events()
        await mqtt.drop_clients()
        await next_event(stream, ConnectionRestored)
    env.cloud.expire_tokens(env.alice)
    with pytest.raises(TokenExpiredError) as info:
        await env.connection().__aenter__()
    texts += [str(info.value), repr(info.value)]
    assert "u_" in caplog.text and "connected to the Bambu cloud" in caplog.text  # the logs did run
    for text in [caplog.text, *texts]:
        assert env.token not in text


# --------------------------------------------------------------------------- blocking facade and CLI


class CloudLoop:
    """A simulator and a fake cloud on a loop in a background thread (for blocking clients)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim = Simulator(time_scale=1.0, seed=8)
        self.cloud = FakeCloud(self.sim, seed=6)
        self.call(self.sim.start())
        self.call(self.cloud.start())
        self.printers = [self.call(self.sim.add_printer(model=m, quirks={"push_interval": 0.2}))
                         for m in ("P1S", "X1C")]

        async def setup() -> tuple[Account, str]:
            alice = self.cloud.add_account("alice@example.com", "pw")
            for p in self.printers:
                self.cloud.bind(alice, p)
            return alice, self.cloud.issue_token(alice)

        self.alice, self.token = self.call(setup())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.call(self.cloud.stop())
        self.call(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def cloud_loop() -> Iterator[CloudLoop]:
    s = CloudLoop()
    yield s
    s.close()


def test_legacy_mqtt_client_cloud_path(cloud_loop: CloudLoop) -> None:
    p1s, _ = cloud_loop.printers
    seen: list[tuple[str, dict[str, Any]]] = []
    got = threading.Event()

    def on_message(device_id: str, data: dict[str, Any]) -> None:
        seen.append((device_id, data))
        got.set()

    ctx = cloud_loop.cloud.ca.client_context()
    for username in (f"u_{cloud_loop.alice.uid}", str(cloud_loop.alice.uid)):
        got.clear()
        client = sync.MQTTClient(username, cloud_loop.token, p1s.serial, on_message,
                                 broker_host="127.0.0.1", port=cloud_loop.cloud.mqtt_port, ssl_context=ctx)
        assert cloud_loop.token not in repr(client) and "cloud" in repr(client)
        with client:
            assert got.wait(5), "on_message was called with reports"
            assert seen[-1][0] == p1s.serial and "print" in seen[-1][1]
            data = client.request_full_status()
            assert data["print"]["gcode_state"] == "IDLE" and "nozzle_temper" in data["print"]
            ack = client.publish_command({"system": {"command": "ledctrl", "led_node": "chamber_light",
                                                     "led_mode": "off"}})
            assert ack["system"]["result"] == "success"
            assert p1s.dynamic.lights["chamber_light"] == "off"
            assert client.set_light(True)["system"]["led_mode"] == "on"  # a Printer method via __getattr__
            assert p1s.dynamic.lights["chamber_light"] == "on"
            assert client.get_last_data()["print"]["gcode_state"] == "IDLE"
            assert isinstance(client.printer, CloudPrinter)
            with pytest.raises(Exception, match="LAN MQTTClient"):
                sync.upload_and_print("127.0.0.1", "x", "missing.3mf", mqtt_client=client)
        with pytest.raises(NotConnectedError):
            client.get_last_data()
    with pytest.raises(ValueError, match="uid"):
        sync.MQTTClient("alice@example.com", cloud_loop.token, p1s.serial).connect()


def test_cli_monitor_cloud_json(cloud_loop: CloudLoop, tmp_path: Path) -> None:
    ca = tmp_path / "cloud-ca.pem"
    ca.write_bytes(cloud_loop.cloud.ca_pem)
    token_file = tmp_path / "token.json"
    token_file.write_text(json.dumps({"access_token": cloud_loop.token, "uid": cloud_loop.alice.uid}))
    token_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAMBU_")} | {
        "BAMBU_CONFIG": str(tmp_path / "config.toml"),
        "BAMBU_CLOUD_MQTT_HOST": "127.0.0.1",
        "BAMBU_CLOUD_MQTT_PORT": str(cloud_loop.cloud.mqtt_port),
        "BAMBU_CLOUD_CA_FILE": str(ca),
    }
    serials = [p.serial for p in cloud_loop.printers]
    base = [sys.executable, "-m", "bambulab.cli.main", "monitor", "--cloud", "--json", "--duration", "2.5"]
    devices = [arg for s in serials for arg in ("--device", s)]
    done = subprocess.run([*base, "--token-file", str(token_file), *devices],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["serial"] for r in rows} == set(serials)
    assert all(r["connected"] and r["job"]["state"] == "IDLE" for r in rows)
    assert len(rows) >= 4  # a row per printer per second
    # The token from the environment, the uid from the API; the device list from the API too.
    api_env = env | {"BAMBU_CLOUD_TOKEN": cloud_loop.token, "BAMBU_CLOUD_API_URL": cloud_loop.cloud.api_url}
    listed = subprocess.run(base, capture_output=True, text=True, env=api_env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert {json.loads(line)["serial"] for line in listed.stdout.splitlines()} == set(serials)
    # An expired token: one clean line that says what to do.
    cloud_loop.call(_expire(cloud_loop))
    expired = subprocess.run([*base, "--token-file", str(token_file), *devices],
                             capture_output=True, text=True, env=env, timeout=60)
    assert expired.returncode == 1 and "log in again" in expired.stderr
    for out in (done, listed, expired):
        assert cloud_loop.token not in out.stdout + out.stderr


async def _expire(cloud_loop: CloudLoop) -> None:
    cloud_loop.cloud.expire_tokens(cloud_loop.alice)
