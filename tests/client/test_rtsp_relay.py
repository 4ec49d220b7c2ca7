"""Issue 12.1: the RTSPS camera verifies TLS (CA chain and CN = serial) and never offers Basic auth.

FFmpeg decodes through a loopback relay the transports layer owns; these tests run it against
the virtual printer's RTSPS server (live555-like, Digest) and against rogue servers that answer
``401 WWW-Authenticate: Basic``, and check what each server received.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from bambulab.camera import Camera
from bambulab.exceptions import AuthenticationError
from bambulab.sim import Simulator, VirtualPrinter
from bambulab.sim.ca import SimCA
from bambulab.transports.rtsp import is_basic_authorization
from bambulab.transports.tls import PrinterCertificateError, printer_ssl_context

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio(loop_scope="module")]

SERIAL = "00M00A000000042"
CODE = "31415926"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(seed=5) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def trust(sim: Simulator) -> ssl.SSLContext:
    return printer_ssl_context(cadata=sim.ca.ca_pem)


class BasicChallenger:
    """A rogue RTSPS server: answers every request with 401 and a Basic challenge, records all."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.received = bytearray()
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> BasicChallenger:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            while data := await reader.read(65536):
                self.received += data
                if b"\r\n\r\n" in data:
                    cseq = next((line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
                                 if line.lower().startswith(b"cseq:")), b"1")
                    writer.write(b"RTSP/1.0 401 Unauthorized\r\nCSeq: " + cseq
                                 + b'\r\nWWW-Authenticate: Basic realm="rogue"\r\n\r\n')
                    await writer.drain()
        writer.close()

    def saw_the_code(self) -> bool:
        basic = base64.b64encode(f"bblp:{CODE}".encode())
        return CODE.encode() in self.received or basic in self.received


def camera(port: int, trust: ssl.SSLContext, serial: str = SERIAL) -> Camera:
    return Camera.connect("127.0.0.1", CODE, model="X1C", serial=serial, port=port, ssl_context=trust,
                          frame_timeout=5.0, connect_timeout=5.0)


async def test_a_self_signed_server_asking_for_basic_never_receives_the_code(trust: ssl.SSLContext) -> None:
    pytest.importorskip("av")
    rogue_ca = SimCA()  # not the CA the client trusts
    async with BasicChallenger(rogue_ca.issue(SERIAL).server_context()) as server:
        cam = camera(server.port, trust)
        with pytest.raises(PrinterCertificateError, match="did not verify"):
            await cam.snapshot()
        await cam.close()
    assert not server.saw_the_code() and server.received == b""


async def test_a_trusted_server_asking_for_basic_gets_no_credentials(sim: Simulator, trust: ssl.SSLContext) -> None:
    pytest.importorskip("av")
    async with BasicChallenger(sim.ca.issue(SERIAL).server_context()) as server:
        cam = camera(server.port, trust)
        with pytest.raises(AuthenticationError, match="Basic") as info:
            await cam.snapshot()
        assert CODE not in str(info.value)
        await cam.close()
    assert server.received.startswith(b"OPTIONS ")  # FFmpeg reached it through the relay ...
    assert not server.saw_the_code()  # ... but the Basic answer was never forwarded


async def test_the_camera_certificate_must_name_the_serial(sim: Simulator, trust: ssl.SSLContext) -> None:
    pytest.importorskip("av")
    vp: VirtualPrinter = await sim.add_printer(model="X1C")
    assert vp.camera is not None
    wrong = camera(vp.camera.port, trust, serial="00M00A000000000")
    with pytest.raises(PrinterCertificateError, match="00M00A000000000"):
        await wrong.snapshot()
    await wrong.close()
    right = Camera.connect(vp.host, vp.access_code, model="X1C", serial=vp.serial, port=vp.camera.port,
                           ssl_context=trust, frame_timeout=8.0)
    assert (await right.snapshot()).startswith(b"\xff\xd8")  # verified TLS, Digest, decoded
    await right.close()


async def test_basic_authorization_is_recognised() -> None:
    assert is_basic_authorization(b"DESCRIBE rtsp://x RTSP/1.0\r\nCSeq: 2\r\nAuthorization: Basic YmJscDox\r\n\r\n")
    assert is_basic_authorization(b"SETUP x RTSP/1.0\r\nauthorization:basic abc\r\n\r\n")
    assert not is_basic_authorization(b'DESCRIBE x RTSP/1.0\r\nAuthorization: Digest username="bblp"\r\n\r\n')
    assert not is_basic_authorization(b"OPTIONS x RTSP/1.0\r\nCSeq: 1\r\n\r\n")
