"""Issue 12.3: the certificate must name the serial, for every helper that sends the access code.

A Printer passes its serial to FTPS and the camera; standalone helpers take one and refuse a
certificate that names another printer; without one they warn (once) that only the chain is
checked. Real TLS on loopback against a virtual printer whose certificate names its own serial.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bambulab.camera import Camera
from bambulab.files import PrinterFiles
from bambulab.printer import Printer
from bambulab.sim import Simulator, VirtualPrinter
from bambulab.transports import tls
from bambulab.transports.camera import JpegStreamClient
from bambulab.transports.ftps import FtpsClient
from bambulab.transports.tls import PrinterCertificateError, printer_ssl_context

pytestmark = [pytest.mark.timeout(20), pytest.mark.asyncio(loop_scope="module")]

OTHER = "01P00A000000000"  # a serial the virtual printer's certificate does not name


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(seed=3) as simulator:
        yield simulator


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vp(sim: Simulator) -> VirtualPrinter:
    return await sim.add_printer(model="P1S", camera_fps=10.0)


@pytest.fixture(scope="module")
def ctx(sim: Simulator) -> ssl.SSLContext:
    return printer_ssl_context(cadata=sim.ca.ca_pem)


def other_printer(vp: VirtualPrinter, ctx: ssl.SSLContext) -> Printer:
    assert vp.ftps is not None and vp.camera is not None
    return Printer(
        vp.host, OTHER, vp.access_code, ssl_context=ctx, ftps_port=vp.ftps.port, camera_port=vp.camera.port
    )


async def test_a_printer_passes_its_serial_to_ftps_and_the_camera(vp: VirtualPrinter, ctx: ssl.SSLContext) -> None:
    printer = other_printer(vp, ctx)  # never connected: the helpers connect on their own
    with pytest.raises(PrinterCertificateError, match=OTHER):
        await printer.files.list("/")
    with pytest.raises(PrinterCertificateError, match=OTHER):
        await printer.camera.snapshot(frame_timeout=5.0)
    await printer.close()


async def test_standalone_helpers_refuse_a_certificate_naming_another_serial(
    vp: VirtualPrinter, ctx: ssl.SSLContext
) -> None:
    assert vp.ftps is not None and vp.camera is not None
    with pytest.raises(PrinterCertificateError, match=OTHER):
        await PrinterFiles.connect(vp.host, vp.access_code, ssl_context=ctx, port=vp.ftps.port, serial=OTHER)
    camera = Camera.connect(vp.host, vp.access_code, serial=OTHER, port=vp.camera.port, ssl_context=ctx, model="P1S")
    with pytest.raises(PrinterCertificateError, match=OTHER):
        await camera.snapshot(frame_timeout=5.0)
    await camera.close()
    async with PrinterFiles(FtpsClient(vp.host, vp.access_code, ssl_context=ctx, port=vp.ftps.port,
                                       serial=vp.serial)) as files:
        assert await files.list("/") is not None  # the right serial connects


async def test_without_a_serial_a_warning_says_once_that_only_the_chain_is_checked(
    vp: VirtualPrinter, ctx: ssl.SSLContext, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert vp.ftps is not None and vp.camera is not None
    monkeypatch.setattr(tls, "_UNCHECKED_WARNED", set())
    caplog.set_level(logging.WARNING, logger="bambulab.transports.tls")
    for _ in range(2):
        async with PrinterFiles.connect(vp.host, vp.access_code, ssl_context=ctx, port=vp.ftps.port) as files:
            await files.list("/")
        async with JpegStreamClient(vp.host, vp.access_code, port=vp.camera.port, ssl_context=ctx) as client:
            await client.read_frame()
    warnings = [r.getMessage() for r in caplog.records if "only the certificate chain" in r.getMessage()]
    assert len(warnings) == 2 and any("FTPS" in w for w in warnings) and any("camera" in w for w in warnings)
    assert vp.access_code not in caplog.text
