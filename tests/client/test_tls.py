"""TLS contexts for printers: the bundled Bambu CA chain, verification rules, and the CN = serial check.

Handshakes run over real loopback sockets against servers presenting certificates from the
simulator's CA (leaf CN = serial, no IP SAN), exactly the shape a real printer presents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path

import pytest

from bambulab.exceptions import AuthenticationError
from bambulab.sim.ca import SimCA
from bambulab.transports import tls
from bambulab.transports.tls import (
    PrinterCertificateError,
    bundled_ca_pem,
    check_peer_serial,
    default_printer_context,
    peer_common_name,
    printer_ssl_context,
)

SERIAL = "01P00A123456789"


def _subjects(ctx: ssl.SSLContext) -> set[str]:
    names = set()
    for cert in ctx.get_ca_certs():
        name = peer_common_name(cert)
        if name is not None:
            names.add(name)
    return names


# --------------------------------------------------------------------------- the bundled chain


def test_bundled_chain_ships_public_certificates_only() -> None:
    folder = resources.files("bambulab.transports").joinpath("certs")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".cert"))
    assert names == ["bambu.cert", "bambu_h2c_251122.cert", "bambu_p2s_250626.cert", "bambu_x2c_260425.cert"]
    pem = bundled_ca_pem()
    assert pem.count("-----BEGIN CERTIFICATE-----") == 8
    assert "PRIVATE KEY" not in pem
    for entry in folder.iterdir():
        assert b"PRIVATE" not in entry.read_bytes(), entry.name


def test_default_context_verifies_against_bambu_roots_without_hostname_or_strict_checks() -> None:
    ctx = printer_ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is False
    assert not ctx.verify_flags & ssl.VERIFY_X509_STRICT
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    subjects = _subjects(ctx)
    assert {"BBL CA", "BBL CA2 RSA", "BBL CA2 ECC"} <= subjects
    assert {"BBL Device CA N7-V2", "BBL Device CA O1C2-V2", "BBL Device CA N6-V2"} <= subjects
    assert tls.is_verifying(ctx)


def test_default_printer_context_is_shared_per_setting() -> None:
    assert default_printer_context() is default_printer_context()
    assert default_printer_context(True) is not default_printer_context()
    assert default_printer_context(True).verify_mode == ssl.CERT_NONE


def test_custom_ca_replaces_the_bundled_chain(tmp_path: Path) -> None:
    ca = SimCA()
    ctx = printer_ssl_context(cadata=ca.ca_pem)
    assert _subjects(ctx) == {"BBL CA (virtual)"}
    path = ca.write_ca(tmp_path / "ca.pem")
    from_file = printer_ssl_context(ca_file=str(path))
    assert _subjects(from_file) == {"BBL CA (virtual)"}


def test_insecure_turns_verification_off_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bambulab.transports.tls"):
        ctx = printer_ssl_context(insecure=True)
    assert ctx.verify_mode == ssl.CERT_NONE
    assert not tls.is_verifying(ctx)
    assert any("verification of the printer is OFF" in r.getMessage() for r in caplog.records)


def test_tls_max_caps_the_version() -> None:
    ctx = printer_ssl_context(tls_max=ssl.TLSVersion.TLSv1_2)
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_2


def test_peer_common_name_reads_decoded_certificates() -> None:
    cert = {"subject": ((("countryName", "CN"),), (("commonName", SERIAL),))}
    assert peer_common_name(cert) == SERIAL
    assert peer_common_name({}) is None
    assert peer_common_name(None) is None
    assert peer_common_name({"subject": ((("organizationName", "x"),),)}) is None


# --------------------------------------------------------------------------- real handshakes

StartServer = Callable[[SimCA, str], Awaitable[int]]


@pytest.fixture
async def tls_server() -> AsyncIterator[StartServer]:
    """Start TLS servers presenting a leaf with CN = the given serial; returns their ports."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await reader.read(1)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def start(ca: SimCA, serial: str) -> int:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ca.issue(serial).server_context())
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


async def _handshake(port: int, ctx: ssl.SSLContext) -> ssl.SSLObject:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    ssl_object = writer.get_extra_info("ssl_object")
    assert isinstance(ssl_object, ssl.SSLObject)
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()
    return ssl_object


async def test_verified_handshake_and_serial_check(tls_server: StartServer) -> None:
    ca = SimCA()
    port = await tls_server(ca, SERIAL)
    ssl_object = await _handshake(port, printer_ssl_context(cadata=ca.ca_pem))
    check_peer_serial(ssl_object, SERIAL)  # no exception
    check_peer_serial(ssl_object, SERIAL.lower())  # case-insensitive
    with pytest.raises(PrinterCertificateError) as info:
        check_peer_serial(ssl_object, "00M09A999999999", where=f"127.0.0.1:{port}")
    message = str(info.value)
    assert "00M09A999999999" in message and SERIAL in message and f"127.0.0.1:{port}" in message
    assert isinstance(info.value, AuthenticationError)


async def test_unverified_connection_skips_the_serial_check(tls_server: StartServer) -> None:
    port = await tls_server(SimCA(), SERIAL)
    ssl_object = await _handshake(port, printer_ssl_context(insecure=True))
    check_peer_serial(ssl_object, "SOMETHING ELSE")  # nothing trustworthy to compare: no error


async def test_bundled_chain_rejects_a_certificate_bambu_did_not_issue(
    tls_server: StartServer,
) -> None:
    port = await tls_server(SimCA(), SERIAL)
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(port, printer_ssl_context())


async def test_ca_without_key_usage_verifies_only_because_strict_is_cleared(
    tls_server: StartServer,
) -> None:
    old_style = SimCA(common_name="BBL CA (old style)", key_usage=False)  # like Bambu's 2022 "BBL CA"
    port = await tls_server(old_style, SERIAL)
    ssl_object = await _handshake(port, printer_ssl_context(cadata=old_style.ca_pem))
    check_peer_serial(ssl_object, SERIAL)
    strict = printer_ssl_context(cadata=old_style.ca_pem)
    strict.verify_flags |= ssl.VERIFY_X509_STRICT  # what Python 3.13 turns on by default
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(port, strict)
