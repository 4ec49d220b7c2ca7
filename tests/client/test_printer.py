"""The LAN client (bambulab.printer.Printer) against virtual printers, over real TLS MQTT sockets.

The simulator runs on the test's own event loop. Prints are made short with a per-printer
``time_scale``; faults are injected with the simulator's use cases (stall, disconnect, offline,
HMS, enforced signing, client limit, garbage publishes).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

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
    AuthenticationError,
    BambuConnectionError,
    BambuTimeoutError,
    CommandFailedError,
    NotConnectedError,
    SignatureRequiredError,
)
from bambulab.printer import Printer
from bambulab.protocol import commands
from bambulab.protocol.views import GcodeState, PrinterStatus
from bambulab.sim import Simulator, VirtualPrinter
from bambulab.sim.demo import demo_project

TIMEOUT = 8.0


def make_printer(vp: VirtualPrinter, ctx: ssl.SSLContext, **kwargs: Any) -> Printer:
    kwargs.setdefault("command_timeout", 3.0)
    kwargs.setdefault("backoff", (0.05, 0.3))
    kwargs.setdefault("pushall_interval", 0.0)
    kwargs.setdefault("connect_timeout", 3.0)
    code = kwargs.pop("access_code", vp.access_code)
    return Printer(vp.host, vp.serial, code, port=vp.mqtt.port, ssl_context=ctx, **kwargs)


@pytest.fixture
async def p1s(sim: Simulator) -> VirtualPrinter:
    return await sim.add_printer(model="P1S")


@pytest.fixture
async def printer(p1s: VirtualPrinter, sim_ctx: ssl.SSLContext) -> AsyncIterator[Printer]:
    async with make_printer(p1s, sim_ctx) as connected:
        yield connected


async def next_event(stream: EventStream, kind: type[PrinterEvent], limit: float = TIMEOUT) -> Any:
    """Skip events until one of ``kind`` arrives."""
    async with asyncio.timeout(limit):
        while True:
            event = await stream.get()
            if isinstance(event, kind):
                return event


def no_bambulab_tasks() -> bool:
    return not any(t.get_name().startswith("bambulab-printer") for t in asyncio.all_tasks())


# --------------------------------------------------------------------------- connecting


async def test_ready_after_connect_with_state_status_and_model(p1s: VirtualPrinter, sim_ctx: ssl.SSLContext) -> None:
    async with make_printer(p1s, sim_ctx, model=None) as printer:
        assert printer.connected
        assert printer.state["print"]["command"] == "push_status"
        assert printer.state["print"]["msg"] == 0  # the full report from pushall
        assert printer.state["info"]["command"] == "get_version"
        assert printer.model is not None and printer.model.name == "P1S"
        status = printer.status
        assert status is printer.status  # cached until the state changes
        assert status.job.state is GcodeState.IDLE
        assert status.temperatures.nozzle is not None
        assert printer.serial == p1s.serial and printer.host == p1s.host
        assert printer.ssl_context is sim_ctx
        assert printer.ftps_port == 990 and printer.camera_port is None
        assert printer.connections == 1
        assert p1s.serial in repr(printer) and "connected" in repr(printer)
    assert "closed" in repr(printer)
    assert no_bambulab_tasks()


async def test_wrong_access_code_raises_and_does_not_retry(p1s: VirtualPrinter, sim_ctx: ssl.SSLContext) -> None:
    printer = make_printer(p1s, sim_ctx, access_code="00000000")
    with pytest.raises(AuthenticationError, match="wrong access code"):
        await printer.__aenter__()
    assert no_bambulab_tasks()
    logins = p1s.mqtt.login_attempts
    await asyncio.sleep(0.5)
    assert p1s.mqtt.login_attempts == logins  # nobody keeps knocking
    assert p1s.mqtt.client_count == 0  # and the refused login left no session behind
    assert printer.connections == 0
    with pytest.raises(NotConnectedError):
        await printer.command(commands.pause(printer.sequence))


async def test_offline_printer_is_a_connection_error(sim_ctx: ssl.SSLContext, unused_tcp_port: int) -> None:
    printer = Printer("127.0.0.1", "01P00A000000001", "12345678", port=unused_tcp_port, ssl_context=sim_ctx)
    with pytest.raises(BambuConnectionError, match="cannot connect"):
        async with printer:
            pass
    assert no_bambulab_tasks()


async def test_client_limit_refusal_is_a_clear_error(sim: Simulator, sim_ctx: ssl.SSLContext) -> None:
    vp = await sim.add_printer(model="P1S", quirks={"max_clients": 1})
    async with make_printer(vp, sim_ctx):
        with pytest.raises(BambuConnectionError, match="too many clients"):
            async with make_printer(vp, sim_ctx):
                pass


async def test_verification_uses_the_bundled_chain_by_default(p1s: VirtualPrinter) -> None:
    printer = Printer(p1s.host, p1s.serial, p1s.access_code, port=p1s.mqtt.port, connect_timeout=3.0)
    with pytest.raises(AuthenticationError, match="did not verify"):  # the sim's CA is not Bambu's
        await printer.connect()
    await printer.close()


async def test_certificate_for_another_serial_is_refused(sim: Simulator, sim_ctx: ssl.SSLContext) -> None:
    vp = await sim.add_printer(model="P1S")
    printer = Printer(vp.host, "01P00A999999999", vp.access_code, port=vp.mqtt.port, ssl_context=sim_ctx)
    with pytest.raises(AuthenticationError, match="01P00A999999999"):
        await printer.connect()
    await printer.close()


# --------------------------------------------------------------------------- state


async def test_deltas_are_merged_into_the_full_state(printer: Printer, p1s: VirtualPrinter) -> None:
    assert "ams" in printer.state["print"]
    p1s.engine.apply_gcode("M140 S55")
    await p1s.push_now()  # a P1S sends only what changed
    status = await printer.wait_for(lambda s: s.temperatures.bed_target == 55, TIMEOUT)
    assert status.temperatures.bed_target == 55
    assert printer.state["print"]["msg"] == 1  # the last report was a delta ...
    assert "ams" in printer.state["print"]  # ... and what it left out is still there
    assert printer.state["print"]["gcode_state"] == "IDLE"


async def test_refresh_is_rate_limited_and_shared(p1s: VirtualPrinter, sim_ctx: ssl.SSLContext) -> None:
    async with make_printer(p1s, sim_ctx, pushall_interval=0.6) as printer:
        loop = asyncio.get_running_loop()
        before = p1s.engine.pushall_count
        start = loop.time()
        first, second = await asyncio.gather(printer.refresh(), printer.refresh())
        assert p1s.engine.pushall_count == before + 1  # one pushall served both callers
        assert first.job.state is GcodeState.IDLE and second.job.state is GcodeState.IDLE
        await printer.refresh()
        assert p1s.engine.pushall_count == before + 2
        assert loop.time() - start >= 0.6 * 2 - 0.05  # the connect's pushall, then two gated ones
        reply = await printer.command(commands.pushall(printer.sequence))  # no ack: behaves as refresh
        assert reply["print"]["msg"] == 0


async def test_wait_for_times_out_and_propagates_predicate_errors(printer: Printer) -> None:
    with pytest.raises(BambuTimeoutError):
        await printer.wait_for(lambda s: s.job.state is GcodeState.RUNNING, 0.3)

    def broken(status: PrinterStatus) -> bool:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await printer.wait_for(broken, 1.0)


# --------------------------------------------------------------------------- commands


def first_loaded_tray(vp: VirtualPrinter) -> int:
    for unit in vp.dynamic.ams:
        for tray in unit.trays:
            if tray.loaded:
                return int(unit.unit_id) * 4 + int(tray.slot)
    raise AssertionError("the virtual printer has no loaded tray")


async def test_every_convenience_command_is_acknowledged_and_reflected(printer: Printer, p1s: VirtualPrinter) -> None:
    async def check(ack: dict[str, Any], predicate: Callable[[PrinterStatus], bool] | None = None) -> None:
        assert commands.ack_result(ack).success, ack
        if predicate is not None:
            await printer.wait_for(predicate, TIMEOUT)

    await check(await printer.set_light(False), lambda s: s.lights.get("chamber_light") == "off")
    await check(await printer.set_light(True), lambda s: s.lights.get("chamber_light") == "on")
    await check(await printer.set_nozzle_temp(205), lambda s: s.temperatures.nozzle_target == 205)
    await check(await printer.set_bed_temp(61), lambda s: s.temperatures.bed_target == 61)
    await check(await printer.set_fan(commands.Fan.PART, 100), lambda s: s.fans.part_cooling == 100)
    await check(await printer.set_speed("sport"), lambda s: s.speed.level == 3)
    await check(await printer.gcode(["M104 S150"]), lambda s: s.temperatures.nozzle_target == 150)
    await check(await printer.home())
    assert p1s.dynamic.homed
    version = await printer.get_version()
    assert version["info"]["module"] and printer.state["info"] is version["info"]
    tray = first_loaded_tray(p1s)
    await check(await printer.ams_load(tray), lambda s: s.ams.tray_now == tray)
    await check(await printer.ams_unload(), lambda s: s.ams.tray_now == 255)
    await check(await printer.ams_control("resume"))
    await check(await printer.print_option("sound_enable", True))
    await check(await printer.set_xcam(commands.XcamModule.SPAGHETTI_DETECTOR, False))  # a P1S reports no xcam
    await check(await printer.set_camera_recording(False), lambda s: s.raw["ipcam"]["ipcam_record"] == "disable")
    await check(await printer.set_timelapse(True), lambda s: s.raw["ipcam"]["timelapse"] == "enable")
    await check(await printer.clean_print_error())
    # a failure ack is an exception with the printer's reason
    with pytest.raises(CommandFailedError, match="no print is running") as info:
        await printer.pause()
    assert info.value.command == "print.pause" and info.value.reason == "no print is running"


async def test_chamber_heater_and_xcam_on_an_x1e(sim: Simulator, sim_ctx: ssl.SSLContext) -> None:
    vp = await sim.add_printer(model="X1E")
    async with make_printer(vp, sim_ctx) as printer:
        await printer.set_chamber_temp(45)
        status = await printer.wait_for(lambda s: s.temperatures.chamber_target == 45, TIMEOUT)
        assert status.model is not None and status.model.name == "X1E"
        assert printer.state["print"]["xcam"]["buildplate_marker_detector"] is True
        await printer.set_xcam(commands.XcamModule.BUILDPLATE_MARKER_DETECTOR, False)
        await printer.wait_for(lambda s: s.raw["xcam"]["buildplate_marker_detector"] is False, TIMEOUT)


async def test_command_payloads_get_a_sequence_id_and_are_validated(printer: Printer) -> None:
    ack = await printer.command({"system": {"command": "ledctrl", "led_node": "chamber_light", "led_mode": "off"}})
    assert ack["system"]["sequence_id"]  # added in a copy, echoed by the printer
    with pytest.raises(ValueError, match="command"):
        await printer.command({"print": {"param": ""}})
    ids = {printer.sequence.next() for _ in range(3)}
    assert len(ids) == 3 and "0" not in ids


async def test_signature_required_explains_developer_mode(sim: Simulator, sim_ctx: ssl.SSLContext) -> None:
    vp = await sim.add_printer(model="P1S", quirks={"auth_mode": "enforced"})
    async with make_printer(vp, sim_ctx) as printer:
        with pytest.raises(SignatureRequiredError) as info:
            await printer.set_nozzle_temp(200)
        assert SignatureRequiredError.ADVICE in str(info.value)
        assert "Developer Mode" in str(info.value)
        assert info.value.code == commands.ERR_SIGNATURE_REQUIRED
        assert info.value.command == "print.gcode_line"
        await printer.set_light(False)  # system.* stays allowed unsigned


async def test_command_without_ack_times_out(p1s: VirtualPrinter, sim_ctx: ssl.SSLContext) -> None:
    async with make_printer(p1s, sim_ctx, command_timeout=0.5) as printer:
        p1s.stall(True)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(BambuTimeoutError, match="ledctrl"):
                await printer.set_light(False)
            assert 0.4 < loop.time() - start < 2.0
        finally:
            p1s.stall(False)


async def test_connection_dropped_during_a_command(p1s: VirtualPrinter, sim_ctx: ssl.SSLContext) -> None:
    async with make_printer(p1s, sim_ctx) as printer:
        stream = printer.events()
        p1s.stall(True)  # the command is never answered ...
        pending = asyncio.create_task(printer.set_light(False))
        await asyncio.sleep(0.2)
        await p1s.disconnect_clients()  # ... and the connection drops while it waits
        p1s.stall(False)
        with pytest.raises(BambuConnectionError, match="may or may not"):
            await asyncio.wait_for(pending, TIMEOUT)
        lost = await next_event(stream, ConnectionLost)
        assert lost.reconnecting and isinstance(lost.error, BambuConnectionError)
        with pytest.raises(NotConnectedError):  # while reconnecting
            await printer.set_light(True)
        restored = await next_event(stream, ConnectionRestored)
        assert restored.status.job.state is GcodeState.IDLE
        assert printer.connected and printer.connections == 2
        await printer.set_light(True)  # works again


async def test_watchdog_detects_a_stalled_connection(p1s: VirtualPrinter, sim_ctx: ssl.SSLContext) -> None:
    async with make_printer(p1s, sim_ctx, watchdog=1.0, command_timeout=1.0) as printer:
        stream = printer.events()
        p1s.stall(True)  # socket open, nothing sent, nothing read
        lost = await next_event(stream, ConnectionLost)
        assert isinstance(lost.error, BambuTimeoutError) and "watchdog" in str(lost.error)
        assert lost.reconnecting
        p1s.stall(False)
        await next_event(stream, ConnectionRestored)
        assert printer.connected


async def test_printer_offline_then_online_again(p1s: VirtualPrinter, sim_ctx: ssl.SSLContext) -> None:
    async with make_printer(p1s, sim_ctx) as printer:
        stream = printer.events()
        await p1s.go_offline()
        lost = await next_event(stream, ConnectionLost)
        assert lost.reconnecting
        assert "disconnected" in repr(printer)
        await asyncio.sleep(0.5)  # a few refused reconnects
        await p1s.come_online()
        restored = await next_event(stream, ConnectionRestored)
        assert restored.serial == p1s.serial
        assert printer.connected
        assert (await printer.refresh()).job.state is GcodeState.IDLE


async def test_rejected_reconnect_stops_and_surfaces_the_authentication_error(
    sim: Simulator, sim_ctx: ssl.SSLContext
) -> None:
    vp = await sim.add_printer(model="P1S")
    serial, port = vp.serial, vp.mqtt.port
    async with make_printer(vp, sim_ctx) as printer:
        stream = printer.events()
        waiting = asyncio.create_task(printer.wait_for(lambda s: s.job.state is GcodeState.RUNNING, 30))
        await sim.remove_printer(serial)
        # the same printer comes back with a new access code (LAN mode was toggled on its screen)
        await sim.add_printer(model="P1S", serial=serial, mqtt_port=port, access_code="87654321")
        first = await next_event(stream, ConnectionLost)
        assert first.reconnecting
        seen: list[PrinterEvent] = []

        async def drain() -> None:
            async for event in stream:
                seen.append(event)

        with pytest.raises(AuthenticationError):  # the stream ends with the error
            await asyncio.wait_for(drain(), TIMEOUT)
        # issue 12.12: the outage was announced once; the refusal ends the stream, no second ConnectionLost
        assert not [e for e in seen if isinstance(e, ConnectionLost)]
        with pytest.raises(AuthenticationError):
            await waiting
        with pytest.raises(AuthenticationError):
            await printer.set_light(False)
        with pytest.raises(AuthenticationError):
            printer.events()
        assert no_bambulab_tasks()  # no reconnect loop left running


async def test_reconnect_disabled(p1s: VirtualPrinter, sim_ctx: ssl.SSLContext) -> None:
    async with make_printer(p1s, sim_ctx, reconnect=False) as printer:
        stream = printer.events()
        await p1s.disconnect_clients()
        lost = await next_event(stream, ConnectionLost)
        assert not lost.reconnecting
        with pytest.raises(StopAsyncIteration):
            await stream.get(TIMEOUT)
        with pytest.raises(NotConnectedError):
            await printer.set_light(False)


# --------------------------------------------------------------------------- events


async def test_events_for_a_whole_print(sim: Simulator, sim_ctx: ssl.SSLContext) -> None:
    vp = await sim.add_printer(model="P1S", time_scale=600, quirks={"push_interval": 0.1})
    vp.put_file("cache/benchy.gcode.3mf", demo_project(minutes=20, layers=40))
    async with make_printer(vp, sim_ctx) as printer:
        stream = printer.events()
        other = printer.events()  # a second consumer gets the same events
        ack = await printer.command(commands.project_file(printer.sequence, "cache/benchy.gcode.3mf", model="P1S"))
        assert commands.ack_result(ack).success
        started = await next_event(stream, PrintStarted)
        assert started.status.job.is_active
        await printer.wait_for(lambda s: s.job.state is GcodeState.RUNNING, TIMEOUT)
        await printer.pause()
        paused = await next_event(stream, PrintPaused)
        assert paused.status.job.state is GcodeState.PAUSE
        await printer.skip_objects([202])
        await printer.resume()
        await next_event(stream, PrintResumed)
        finished = await next_event(stream, PrintFinished)
        assert finished.status.job.progress == 100
        kinds = []
        while len(other):
            kinds.append(type(await other.get()))
        assert [k for k in kinds if k is not StateChanged] == [PrintStarted, PrintPaused, PrintResumed, PrintFinished]
        assert StateChanged in kinds

        # a second print, cancelled: PrintFailed with the decoded "cancelled" error
        await printer.command(commands.project_file(printer.sequence, "cache/benchy.gcode.3mf", model="P1S"))
        await next_event(stream, PrintStarted)
        await printer.stop()
        failed = await next_event(stream, PrintFailed)
        assert failed.error is not None and failed.error.code == "0300400C"


async def test_hms_raised_and_cleared_per_entry(printer: Printer, p1s: VirtualPrinter) -> None:
    stream = printer.events()
    await p1s.inject_hms(0x03000100, 0x00010007)
    await p1s.inject_hms(0x07000200, 0x00020004)
    raised = {(await next_event(stream, HmsRaised)).message.code_id for _ in range(2)}
    assert raised == {"0300010000010007", "0700020000020004"}
    assert {m.code_id for m in printer.status.hms} == raised
    await p1s.clear_hms(0x03000100, 0x00010007)
    cleared = await next_event(stream, HmsCleared)
    assert cleared.message.code_id == "0300010000010007"
    assert [m.code_id for m in printer.status.hms] == ["0700020000020004"]


async def test_slow_consumer_gets_one_resync_event_with_the_current_status(
    printer: Printer, p1s: VirtualPrinter
) -> None:
    """Issue 12.7: the queue stays at maxsize; what a slow consumer missed becomes one EventsDropped."""
    stream = printer.events(maxsize=3)
    for target in range(40, 46):
        await p1s.publish({"print": {"command": "push_status", "msg": 1, "bed_target_temper": float(target)}})
    await printer.wait_for(lambda s: s.temperatures.bed_target == 45.0, TIMEOUT)
    assert len(stream) == 3 and stream.dropped >= 3
    got = [await stream.get(TIMEOUT) for _ in range(4)]
    resync = got[-1]
    assert isinstance(resync, EventsDropped) and resync.dropped == stream.dropped
    assert resync.status is not None and resync.status.temperatures.bed_target == 45.0


async def test_malformed_payloads_do_not_break_anything(printer: Printer, p1s: VirtualPrinter) -> None:
    stream = printer.events()
    before = printer.malformed
    garbage: list[Any] = [
        b"not json",
        b"\xff\xfe\x00",
        b"[1, 2, 3]",
        b"[" * 100_000,  # deeply nested: RecursionError in json
        {"print": "not an object"},
        {"print": {"command": "push_status", "gcode_state": 5, "hms": "bad", "mc_percent": {"x": 1}}},
        {"print": {"command": "push_status", "msg": 0}},  # a full report with nothing in it
        {"info": {"command": "get_version", "module": "nope"}},
    ]
    for payload in garbage:
        await p1s.publish(payload)
    await p1s.publish({"print": {"command": "push_status", "msg": 1, "bed_target_temper": 42.0}})
    await printer.wait_for(lambda s: s.temperatures.bed_target == 42.0, TIMEOUT)
    assert printer.malformed - before == 4
    assert printer.connected
    printer.status.to_dict()  # decodes whatever the state holds
    assert stream.dropped == 0
    await printer.refresh()  # a good full report replaces the odd one
    assert (await printer.set_light(False))["system"]["result"] == "success"


# --------------------------------------------------------------------------- lifecycle and secrets


async def test_use_after_close_raises_not_connected(p1s: VirtualPrinter, sim_ctx: ssl.SSLContext) -> None:
    printer = make_printer(p1s, sim_ctx)
    async with printer:
        stream = printer.events()
    assert "closed" in repr(printer)
    with pytest.raises(StopAsyncIteration):
        await stream.get(1.0)
    for call in (
        printer.command(commands.pause(printer.sequence)),
        printer.refresh(),
        printer.wait_for(lambda s: True, 1.0),
        printer.set_light(False),
    ):
        with pytest.raises(NotConnectedError):
            await call
    with pytest.raises(NotConnectedError):
        printer.events()
    with pytest.raises(NotConnectedError):
        await printer.connect()
    assert printer.status.job.state is GcodeState.IDLE  # the last known state stays readable


async def test_access_code_never_in_logs_reprs_or_errors(
    p1s: VirtualPrinter, sim_ctx: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    code = p1s.access_code
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        wrong = make_printer(p1s, sim_ctx, access_code=code[::-1] + "x")
        with pytest.raises(AuthenticationError) as info:
            await wrong.connect()
        texts += [str(info.value), repr(info.value), repr(wrong)]
        async with make_printer(p1s, sim_ctx, command_timeout=0.5) as printer:
            texts.append(repr(printer))
            stream = printer.events()
            reply = await printer.command(commands.get_access_code(printer.sequence))
            assert reply["system"]["access_code"] == code  # the caller asked for it; it is not logged
            await printer.set_light(False)
            not_json: Any = b"garbage"
            await p1s.publish(not_json)
            p1s.stall(True)
            with pytest.raises(BambuTimeoutError) as timeout_info:
                await printer.set_light(True)
            texts.append(str(timeout_info.value))
            await p1s.disconnect_clients()
            p1s.stall(False)
            await next_event(stream, ConnectionRestored)
            texts.append(repr(printer))
    ours = [r for r in caplog.records if r.name.startswith("bambulab.") and not r.name.startswith("bambulab.sim")]
    messages = [r.getMessage() for r in ours]
    assert any("connected to printer" in m for m in messages)  # the session was logged ...
    assert any("lost the connection" in m for m in messages)
    assert any("not JSON" in m for m in messages)  # ... down to DEBUG details
    for record in ours:
        text = record.getMessage() + (caplog.handler.format(record) if record.exc_info else "")
        assert code not in text, record.name
    for text in texts:
        assert code not in text and code[::-1] not in text
