"""The printer contract, written once and run against every link (pyatv's common functional tests).

Each test runs twice: against a LAN :class:`~bambulab.printer.Printer` talking to a virtual
printer, and against a :class:`~bambulab.cloud.mqtt.CloudPrinter` reaching the same kind of
virtual printer through the fake cloud's broker. Both over real TLS on 127.0.0.1. One simulator
and one fake cloud serve the whole module; every test gets a printer of its own.

The link's watchdog and reconnect backoff read a :class:`ManualClock` the tests advance, so
reconnects and watchdog expiry are driven step by step instead of waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from bambulab.cloud.mqtt import CloudConnection
from bambulab.events import (
    ConnectionLost,
    ConnectionRestored,
    EventsDropped,
    EventStream,
    HmsCleared,
    HmsRaised,
    PrinterEvent,
    PrintFailed,
    PrintFinished,
    PrintPaused,
    PrintResumed,
    PrintStarted,
    StateChanged,
)
from bambulab.exceptions import (
    BambuConnectionError,
    BambuTimeoutError,
    CommandFailedError,
    NotConnectedError,
    SignatureRequiredError,
)
from bambulab.printer import Printer
from bambulab.protocol import commands
from bambulab.protocol.views import GcodeState
from bambulab.sim import Simulator, VirtualPrinter
from bambulab.sim.cloud import Account, FakeCloud
from bambulab.sim.demo import demo_project
from bambulab.transports.tls import printer_ssl_context

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio(loop_scope="module")]

TIMEOUT = 8.0
BROKER_NAME = "us.mqtt.bambulab.com"  # the fake broker's certificate names the real one
WATCHDOG = 20.0  # in ManualClock seconds
BACKOFF = (1.0, 2.0)


class ManualClock:
    """A :class:`bambulab.link.Clock` that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.now + seconds, future)
        self._sleepers.append(entry)
        try:
            await future
        finally:
            with contextlib.suppress(ValueError):
                self._sleepers.remove(entry)

    async def wait(self, future: asyncio.Future[Any], seconds: float) -> None:
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        try:
            await asyncio.wait([future, sleeper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for due, future in list(self._sleepers):
            if due <= self.now and not future.done():
                future.set_result(None)


@dataclass
class World:
    sim: Simulator
    cloud: FakeCloud
    alice: Account
    lan_ctx: ssl.SSLContext
    cloud_ctx: ssl.SSLContext


@dataclass
class Rig:
    """One way of reaching a printer: ``lan`` or ``cloud``."""

    kind: str
    world: World
    clock: ManualClock = field(default_factory=ManualClock)
    _open: list[Printer | CloudConnection] = field(default_factory=list)

    async def device(self, **options: Any) -> VirtualPrinter:
        options.setdefault("quirks", {}).setdefault("push_interval", 0.2)
        vp = await self.world.sim.add_printer(model=options.pop("model", "P1S"), **options)
        if self.kind == "cloud":
            self.world.cloud.bind(self.world.alice, vp)
        return vp

    async def printer(self, vp: VirtualPrinter, **options: Any) -> Printer:
        options.setdefault("command_timeout", 3.0)
        options.setdefault("pushall_interval", 0.0)
        if self.kind == "lan":
            printer = Printer(
                vp.host, vp.serial, vp.access_code, port=vp.mqtt.port, ssl_context=self.world.lan_ctx,
                watchdog=WATCHDOG, backoff=BACKOFF, connect_timeout=3.0, clock=self.clock, **options,
            )
            self._open.append(printer)
            await printer.connect()
            return printer
        cloud = CloudConnection(
            self.world.cloud.issue_token(self.world.alice), uid=self.world.alice.uid, devices=[vp.serial],
            host="127.0.0.1", port=self.world.cloud.mqtt_port, ssl_context=self.world.cloud_ctx,
            server_hostname=BROKER_NAME, connect_timeout=3.0, watchdog=WATCHDOG, backoff=BACKOFF,
            clock=self.clock, **options,
        )
        self._open.append(cloud)
        await cloud.connect()
        return cloud.printer(vp.serial)

    async def drop(self, vp: VirtualPrinter) -> None:
        """Cut the connection under the printer (the far end closes it)."""
        if self.kind == "lan":
            await vp.disconnect_clients()
        else:
            broker = self.world.cloud._mqtt  # the fake cloud's broker (its only handle)
            assert broker is not None
            await broker.drop_clients()

    async def silence(self, vp: VirtualPrinter, silent: bool) -> None:
        """The printer stops (or starts again) reporting while the connection stays up."""
        if self.kind == "lan":
            vp.stall(silent)
        elif silent:
            await vp.go_offline()
        else:
            await vp.come_online()

    async def close(self) -> None:
        for item in reversed(self._open):
            await item.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world() -> AsyncIterator[World]:
    async with Simulator(time_scale=1.0, seed=11) as sim:
        cloud = FakeCloud(sim, seed=12)
        await cloud.start()
        try:
            alice = cloud.add_account("alice@example.com", "pw")
            lan_ctx = printer_ssl_context(cadata=sim.ca.ca_pem)
            cloud_ctx = ssl.create_default_context(cadata=cloud.ca_pem.decode())
            yield World(sim, cloud, alice, lan_ctx, cloud_ctx)
        finally:
            await cloud.stop()


@pytest_asyncio.fixture(loop_scope="module", params=["lan", "cloud"])
async def rig(request: pytest.FixtureRequest, world: World) -> AsyncIterator[Rig]:
    made = Rig(request.param, world)
    try:
        yield made
    finally:
        await made.close()


async def next_event(stream: EventStream, kind: type[PrinterEvent], limit: float = TIMEOUT) -> Any:
    async with asyncio.timeout(limit):
        while True:
            event = await stream.get()
            if isinstance(event, kind):
                return event


async def pump(rig: Rig, stream: EventStream, kind: type[PrinterEvent], step: float) -> Any:
    """Advance the link's clock by ``step`` until an event of ``kind`` arrives."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                return await next_event(stream, kind, limit=0.05)
            except TimeoutError:
                rig.clock.advance(step)


# ------------------------------------------------------------------------------------ the contract


async def test_ready_with_a_full_state_and_the_model(rig: Rig) -> None:
    vp = await rig.device()
    printer = await rig.printer(vp)
    assert printer.connected and printer.connections == 1
    assert printer.state["print"]["msg"] == 0  # the full report asked for when connecting
    assert printer.state["info"]["command"] == "get_version"
    assert printer.model is not None and printer.model.name == "P1S"
    assert printer.status.job.state is GcodeState.IDLE
    assert printer.serial in repr(printer) and "connected" in repr(printer)


async def test_status_follows_the_printer(rig: Rig) -> None:
    vp = await rig.device()
    printer = await rig.printer(vp)
    stream = printer.events()
    await vp.publish({"print": {"command": "push_status", "msg": 1, "bed_target_temper": 61.0}})
    status = await printer.wait_for(lambda s: s.temperatures.bed_target == 61.0, TIMEOUT)
    assert status is printer.status
    changed = await next_event(stream, StateChanged)
    assert changed.serial == vp.serial
    assert (await printer.refresh()).job.state is GcodeState.IDLE


async def test_every_lifecycle_and_hms_event(rig: Rig) -> None:
    vp = await rig.device(time_scale=600, quirks={"push_interval": 0.1})
    vp.put_file("cache/part.gcode.3mf", demo_project(minutes=20, layers=40))
    printer = await rig.printer(vp)
    stream = printer.events()
    ack = await printer.command(commands.project_file(printer.sequence, "cache/part.gcode.3mf", model="P1S"))
    assert commands.ack_result(ack).success
    assert (await next_event(stream, PrintStarted)).status.job.is_active
    await printer.wait_for(lambda s: s.job.state is GcodeState.RUNNING, TIMEOUT)
    await printer.pause()
    assert (await next_event(stream, PrintPaused)).status.job.state is GcodeState.PAUSE
    await printer.resume()
    await next_event(stream, PrintResumed)
    assert (await next_event(stream, PrintFinished)).status.job.progress == 100
    await printer.command(commands.project_file(printer.sequence, "cache/part.gcode.3mf", model="P1S"))
    await next_event(stream, PrintStarted)
    await printer.stop()
    failed = await next_event(stream, PrintFailed)
    assert failed.error is not None and failed.error.code == "0300400C"
    await vp.inject_hms(0x03000100, 0x00010007)
    assert (await next_event(stream, HmsRaised)).message.code_id == "0300010000010007"
    await vp.clear_hms(0x03000100, 0x00010007)
    assert (await next_event(stream, HmsCleared)).message.code_id == "0300010000010007"


async def test_commands_are_acknowledged_and_failures_raise(rig: Rig) -> None:
    vp = await rig.device()
    printer = await rig.printer(vp)
    ack = await printer.set_light(False)
    assert ack["system"]["result"] == "success" and vp.dynamic.lights["chamber_light"] == "off"
    with pytest.raises(CommandFailedError) as info:  # the sim refuses a print of a missing file
        await printer.command(commands.project_file(printer.sequence, "cache/missing.gcode.3mf", model="P1S"))
    assert info.value.command == "print.project_file"
    await rig.silence(vp, True)  # the printer stops answering
    try:
        with pytest.raises(BambuTimeoutError, match="ledctrl"):
            await printer.command(commands.ledctrl(printer.sequence, "chamber_light", "on"), timeout=0.5)
    finally:
        await rig.silence(vp, False)


async def test_signature_required_is_its_own_error(rig: Rig) -> None:
    vp = await rig.device(quirks={"auth_mode": "enforced"})
    printer = await rig.printer(vp)
    with pytest.raises(SignatureRequiredError, match="Developer Mode") as info:
        await printer.set_nozzle_temp(200)
    assert info.value.code == commands.PrinterErrorCode.SIGNATURE_REQUIRED
    await printer.set_light(False)  # system.* stays allowed unsigned


async def test_reconnect_after_the_connection_drops(rig: Rig) -> None:
    vp = await rig.device()
    printer = await rig.printer(vp)
    stream = printer.events()
    await rig.drop(vp)
    lost = await next_event(stream, ConnectionLost)
    assert lost.reconnecting and isinstance(lost.error, BambuConnectionError)
    with pytest.raises(NotConnectedError):  # while waiting for the backoff
        await printer.set_light(True)
    restored = await pump(rig, stream, ConnectionRestored, BACKOFF[1])
    assert restored.status.job.state is GcodeState.IDLE
    assert printer.connected and printer.connections == 2
    assert [type(e) for e in [lost, restored]] == [ConnectionLost, ConnectionRestored]
    await printer.set_light(True)


async def test_the_watchdog_nudges_then_gives_up_then_recovers(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bambulab")
    vp = await rig.device()
    printer = await rig.printer(vp)
    stream = printer.events()
    await rig.silence(vp, True)
    lost = await pump(rig, stream, ConnectionLost, WATCHDOG / 4)
    assert isinstance(lost.error, BambuTimeoutError) and lost.reconnecting
    assert "watchdog" in str(lost.error)
    assert "sending pushing.start" in caplog.text  # nudged half-way
    await rig.silence(vp, False)
    await pump(rig, stream, ConnectionRestored, BACKOFF[1])
    assert printer.connected


async def test_malformed_payloads_are_counted_and_harmless(rig: Rig) -> None:
    vp = await rig.device()
    printer = await rig.printer(vp)
    before = printer.malformed
    for garbage in (b"not json", b"[1, 2]", b"[" * 100_000, b"\xff\xfe"):
        await vp.publish(garbage)
    await vp.publish({"print": {"command": "push_status", "msg": 1, "bed_target_temper": 42.0}})
    await printer.wait_for(lambda s: s.temperatures.bed_target == 42.0, TIMEOUT)
    assert printer.malformed - before == 4 and printer.connected
    assert (await printer.set_light(False))["system"]["result"] == "success"


async def test_use_after_close_raises_not_connected(rig: Rig) -> None:
    vp = await rig.device()
    printer = await rig.printer(vp)
    stream = printer.events()
    await printer.close()
    assert "closed" in repr(printer) and not printer.connected
    with pytest.raises(NotConnectedError):
        await printer.set_light(True)
    with pytest.raises(NotConnectedError):
        printer.events()
    with pytest.raises(NotConnectedError):
        await printer.wait_for(lambda s: False, 1.0)
    async with asyncio.timeout(1.0):
        rest = [e async for e in stream]  # the stream ends after what was queued
    assert all(e.serial == vp.serial for e in rest)
    with pytest.raises(StopAsyncIteration):
        await stream.get(1.0)
    await printer.close()  # twice is fine


async def test_a_slow_consumer_gets_one_resync_and_blocks_nobody(rig: Rig) -> None:
    vp = await rig.device()
    printer = await rig.printer(vp)
    slow, fast = printer.events(maxsize=2), printer.events()
    for target in range(30, 40):
        await vp.publish({"print": {"command": "push_status", "msg": 1, "bed_target_temper": float(target)}})
    await printer.wait_for(lambda s: s.temperatures.bed_target == 39.0, TIMEOUT)
    assert len(slow) == 2 and slow.dropped > 0
    resync = (await slow.get(1.0), await slow.get(1.0), await slow.get(1.0))[-1]
    assert isinstance(resync, EventsDropped) and resync.dropped == slow.dropped
    assert resync.status is not None and resync.status.temperatures.bed_target == 39.0
    assert fast.dropped == 0 and len(fast) >= 10
