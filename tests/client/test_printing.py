"""print_file end to end: a real Printer (TLS MQTT) and real FTPS against virtual printers.

Faults the simulator has no use case for (a start that fails after a good acknowledgement, a
file that vanishes before the start, a printer that never starts) are injected by replacing one
method of the virtual printer's engine for the duration of a test; everything still goes over
the wire.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bambulab.exceptions import BambuError, BambuTimeoutError, CommandFailedError
from bambulab.printer import Printer
from bambulab.printing import AmsMappingError, PrinterBusyError, PrintJob, PrintSetupError, print_file
from bambulab.protocol import threemf
from bambulab.protocol.threemf import Filament, PlateSpec, build_project
from bambulab.protocol.views import GcodeState, PrinterStatus
from bambulab.sim import Simulator, Tray, VirtualPrinter

pytestmark = pytest.mark.timeout(20)

START_TIMEOUT = 5.0

WHITE_PLA = Filament(1, "PLA", "#FFFFFF", used_g=3.0)
BLACK_PETG = Filament(2, "PETG", "#101010", used_g=2.0)


# --------------------------------------------------------------------------- fixtures (local to this file)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(time_scale=1.0, seed=11) as simulator:
        yield simulator


@pytest.fixture
def ctx(sim: Simulator) -> ssl.SSLContext:
    return sim.ca.client_context()


def make_printer(vp: VirtualPrinter, ctx: ssl.SSLContext) -> Printer:
    assert vp.ftps is not None
    return Printer(
        vp.host, vp.serial, vp.access_code, port=vp.mqtt.port, ftps_port=vp.ftps.port, ssl_context=ctx,
        command_timeout=3.0, connect_timeout=3.0, pushall_interval=0.0, backoff=(0.05, 0.3),
    )


async def load_trays(vp: VirtualPrinter, printer: Printer, trays: list[tuple[str, str] | None]) -> None:
    """Put these spools (material, RRGGBBAA) in the first AMS unit and wait until the client sees them."""
    vp.dynamic.ams[0].trays = [
        Tray(slot=i, material=spec[0], color=spec[1]) if spec else Tray(slot=i, loaded=False)
        for i, spec in enumerate(trays)
    ]
    await vp.push_now()
    want = [spec[0] if spec else None for spec in trays]

    def shown(status: PrinterStatus) -> bool:
        unit = status.ams.unit(0)
        return unit is not None and [None if t.is_empty else t.material for t in unit.trays] == want

    await printer.wait_for(shown, timeout=5.0)


def project(*plates: tuple[Filament, ...], model_id: str = "C12") -> bytes:
    specs = [PlateSpec(index=i, filaments=f, layers=5, prediction_s=600) for i, f in enumerate(plates, start=1)]
    return build_project(specs, printer_model_id=model_id)


async def wait_until(predicate: Callable[[], bool]) -> None:
    for _ in range(250):  # up to 5 s
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def stored(vp: VirtualPrinter, rel: str) -> bytes | None:
    path = vp.storage / rel
    return path.read_bytes() if path.exists() else None


# --------------------------------------------------------------------------- success


async def test_auto_mapping_uploads_and_starts(sim: Simulator, ctx: ssl.SSLContext, tmp_path: Any) -> None:
    vp = await sim.add_printer(model="P1S")
    data = project((WHITE_PLA, BLACK_PETG), (WHITE_PLA,))
    local = tmp_path / "benchy.gcode.3mf"
    local.write_bytes(data)
    sent: list[tuple[int, int | None]] = []
    async with make_printer(vp, ctx) as printer:
        await load_trays(vp, printer, [("PLA", "FF0000FF"), ("PLA", "F8F8F8FF"), ("PETG", "000000FF"), None])
        job = await printer.print_file(local, progress=lambda s, t: sent.append((s, t)),
                                       start_timeout=START_TIMEOUT)
        assert isinstance(job, PrintJob)
        assert job.ams_mapping == (1, 2)  # white PLA -> slot 1 (not the red one), PETG -> slot 2
        assert job.use_ams and job.plate == 1
        assert job.remote_path == "/benchy.gcode.3mf"
        assert job.url == "file:///sdcard/benchy.gcode.3mf"
        assert job.subtask_name == "benchy"
        assert job.status.job.state in (GcodeState.PREPARE, GcodeState.RUNNING)
        assert job.ack["print"]["result"] == "success"
        assert vp.ftps is not None
        await wait_until(lambda: vp.ftps is not None and vp.ftps.client_count == 0)  # print_file closed FTPS
    assert stored(vp, "benchy.gcode.3mf") == data
    assert sent[-1] == (len(data), len(data))
    assert vp.dynamic.job.gcode_state in ("PREPARE", "RUNNING")
    assert vp.dynamic.job.gcode_file == "Metadata/plate_1.gcode"
    assert vp.dynamic.tray_now == 1  # the simulator loads mapping[0]
    assert vp.access_code not in repr(job)


async def test_second_plate_explicit_mapping_and_a_folder(sim: Simulator, ctx: ssl.SSLContext) -> None:
    vp = await sim.add_printer(model="P1S")
    data = project((WHITE_PLA,), (WHITE_PLA, BLACK_PETG))
    async with make_printer(vp, ctx) as printer:
        job = await print_file(printer, data, remote_name="cache/two.gcode.3mf", plate=2, ams_mapping=[3, 0],
                               start_timeout=START_TIMEOUT)
    assert job.ams_mapping == (3, 0) and job.use_ams and job.plate == 2
    assert job.url == "file:///sdcard/cache/two.gcode.3mf"
    assert stored(vp, "cache/two.gcode.3mf") == data
    assert vp.dynamic.job.gcode_file == "Metadata/plate_2.gcode"
    assert vp.dynamic.tray_now == 3


@pytest.mark.parametrize(("model", "url_prefix"), [("X1C", "file:///sdcard/"), ("H2D", "ftp:///")])
async def test_url_form_follows_the_model(sim: Simulator, ctx: ssl.SSLContext, model: str, url_prefix: str) -> None:
    vp = await sim.add_printer(model=model)
    data = project((WHITE_PLA,), model_id=vp.model.code)
    async with make_printer(vp, ctx) as printer:
        await load_trays(vp, printer, [("PLA", "FFFFFFFF"), None, None, None])
        job = await print_file(printer, data, remote_name="m.gcode.3mf", start_timeout=START_TIMEOUT)
    assert job.url == f"{url_prefix}m.gcode.3mf"
    assert job.ams_mapping == (0,)
    assert vp.dynamic.job.gcode_state in ("PREPARE", "RUNNING")


async def test_printer_without_ams_prints_from_the_external_spool(sim: Simulator, ctx: ssl.SSLContext) -> None:
    vp = await sim.add_printer(model="P1P")  # ships without an AMS
    async with make_printer(vp, ctx) as printer:
        assert printer.status.ams.units == ()
        job = await print_file(printer, project((WHITE_PLA, BLACK_PETG)), remote_name="ext.gcode.3mf",
                               start_timeout=START_TIMEOUT)
    assert job.use_ams is False and job.ams_mapping is None
    assert vp.dynamic.tray_now == 254


async def test_use_ams_false_on_a_printer_with_an_ams(sim: Simulator, ctx: ssl.SSLContext) -> None:
    vp = await sim.add_printer(model="P1S")
    async with make_printer(vp, ctx) as printer:
        # PETG is loaded nowhere: with use_ams=False nothing is matched, so nothing can fail
        await load_trays(vp, printer, [("PLA", "FFFFFFFF"), None, None, None])
        job = await print_file(printer, project((BLACK_PETG,)), remote_name="spool.gcode.3mf", use_ams=False,
                               start_timeout=START_TIMEOUT)
    assert job.use_ams is False and job.ams_mapping is None
    assert vp.dynamic.tray_now == 254


async def test_plain_gcode_uses_gcode_file(sim: Simulator, ctx: ssl.SSLContext, tmp_path: Any) -> None:
    vp = await sim.add_printer(model="A1")
    local = tmp_path / "cube.gcode"
    local.write_text("; total layer number: 7\n; total estimated time: 10m 0s\nG28\nG1 X10 Y10\n")
    async with make_printer(vp, ctx) as printer:
        job = await print_file(printer, local, start_timeout=START_TIMEOUT)
    assert job.url is None and job.plate is None and job.ams_mapping is None
    assert job.remote_path == "/cube.gcode"
    assert stored(vp, "cube.gcode") == local.read_bytes()
    assert vp.dynamic.job.gcode_file == "/sdcard/cube.gcode"
    assert vp.dynamic.job.gcode_state in ("PREPARE", "RUNNING")


# --------------------------------------------------------------------------- refusals before anything is sent


async def test_no_tray_for_a_filament_is_a_clear_mapping_error(sim: Simulator, ctx: ssl.SSLContext) -> None:
    vp = await sim.add_printer(model="P1S")
    cf = Filament(2, "PLA-CF", "#222222")
    async with make_printer(vp, ctx) as printer:
        await load_trays(vp, printer, [("PLA", "FFFFFFFF"), ("PETG", "000000FF"), None, None])
        with pytest.raises(AmsMappingError) as info:
            await print_file(printer, project((WHITE_PLA, cf)), remote_name="cf.gcode.3mf",
                             start_timeout=START_TIMEOUT)
    message = str(info.value)
    assert "filament 2 (PLA-CF #222222)" in message
    assert "loaded: PETG, PLA" in message and "use_ams=False" in message
    assert isinstance(info.value, BambuError) and isinstance(info.value, threemf.AmsMappingError)
    assert stored(vp, "cf.gcode.3mf") is None  # nothing uploaded
    assert vp.dynamic.job.gcode_state == "IDLE"


async def test_missing_plate_lists_the_plates(sim: Simulator, ctx: ssl.SSLContext) -> None:
    vp = await sim.add_printer(model="P1S")
    async with make_printer(vp, ctx) as printer:
        with pytest.raises(PrintSetupError, match=r"has no plate 3; its plates: 1, 2"):
            await print_file(printer, project((WHITE_PLA,), (WHITE_PLA,)), remote_name="p.gcode.3mf", plate=3)
        with pytest.raises(PrintSetupError, match="cannot be printed"):
            await print_file(printer, b"PK\x03\x04 not really a zip", remote_name="broken.3mf")
        with pytest.raises(ValueError, match="remote_name"):
            await print_file(printer, b"data")
    assert stored(vp, "p.gcode.3mf") is None and stored(vp, "broken.3mf") is None


async def test_busy_printer_is_refused_before_the_upload(sim: Simulator, ctx: ssl.SSLContext) -> None:
    vp = await sim.add_printer(model="P1S")
    vp.put_file("running.gcode.3mf", project((WHITE_PLA,)))
    async with make_printer(vp, ctx) as printer:
        await vp.start_print("running.gcode.3mf")
        await printer.wait_for(lambda s: s.job.state is GcodeState.PREPARE, timeout=5.0)
        with pytest.raises(PrinterBusyError, match="busy") as info:
            await print_file(printer, project((WHITE_PLA,)), remote_name="next.gcode.3mf", ams_mapping=[0])
    assert info.value.code == 0x05004004
    assert stored(vp, "next.gcode.3mf") is None
    assert vp.dynamic.job.subtask_name == "running"


# --------------------------------------------------------------------------- failures the printer reports


async def test_printer_reports_failed_after_the_ack(
    sim: Simulator, ctx: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    vp = await sim.add_printer(model="P1S")

    def fail_instead(**_: Any) -> None:  # the job fails at once, with an AMS error
        vp.dynamic.job.gcode_state = "FAILED"
        vp.dynamic.job.print_error = 0x07008011

    monkeypatch.setattr(vp.engine, "start_job", fail_instead)
    async with make_printer(vp, ctx) as printer:
        await load_trays(vp, printer, [("PLA", "FFFFFFFF"), None, None, None])
        with pytest.raises(CommandFailedError) as info:
            await print_file(printer, project((WHITE_PLA,)), remote_name="f.gcode.3mf", start_timeout=START_TIMEOUT)
    error = info.value
    assert "failed to start f.gcode.3mf" in str(error)
    assert "AMS slot has run out of filament" in str(error) and "0700_8011" in str(error)
    assert error.code == 0x07008011


async def test_refused_start_decodes_the_error_code(
    sim: Simulator, ctx: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    vp = await sim.add_printer(model="P1S")
    monkeypatch.setattr(vp.engine, "resolve_url", lambda url: None)  # the file is gone when the start comes
    async with make_printer(vp, ctx) as printer:
        with pytest.raises(CommandFailedError) as info:
            await print_file(printer, project((WHITE_PLA,)), remote_name="gone.gcode.3mf", ams_mapping=[0],
                             start_timeout=START_TIMEOUT)
    assert "no longer available" in str(info.value) and "0300_800E" in str(info.value)
    assert info.value.code == 0x0300800E
    assert not isinstance(info.value, PrinterBusyError)


async def test_a_start_that_never_comes_times_out(
    sim: Simulator, ctx: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    vp = await sim.add_printer(model="P1S")
    monkeypatch.setattr(vp.engine, "start_job", lambda **_: None)  # acknowledged, then nothing happens
    async with make_printer(vp, ctx) as printer:
        started = time.monotonic()
        with pytest.raises(BambuTimeoutError, match=r"did not start it within 0\.5 s"):
            await print_file(printer, project((WHITE_PLA,)), remote_name="slow.gcode.3mf", ams_mapping=[0],
                             start_timeout=0.5)
        assert time.monotonic() - started < 5.0
