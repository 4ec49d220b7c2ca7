"""TLS for printer connections: the one place that decides how a printer's certificate is checked.

A Bambu Lab printer presents a leaf certificate whose common name is the printer's **serial
number**, with no IP subject alternative name, issued by Bambu's CA (old firmware: "BBL CA";
newer firmware: a per-model "BBL Device CA <model>-V2" under "BBL CA2 RSA/ECC"). So:

* the chain is verified (``CERT_REQUIRED``) against Bambu's **public** CA certificates, which ship
  with the package in ``bambulab/transports/certs/`` (certificates only, never a private key);
* the hostname check is off, because the host is an IP address the certificate cannot name;
  :func:`check_peer_serial` checks the common name against the expected serial instead;
* ``VERIFY_X509_STRICT`` is cleared: the old "BBL CA" has no KeyUsage extension and strict
  verification (the default from Python 3.13) rejects it;
* ``insecure=True`` turns verification off (``CERT_NONE``) and logs a warning each time such a
  context is made. Anyone on the network can then impersonate the printer.

MQTT, FTPS and the camera all take their context from :func:`printer_ssl_context`, so nothing
turns verification off by accident. ``default_printer_context()`` returns one shared context per
setting: a context holds the CA store, and a farm of 1,000 printers should not hold 1,000 copies.
Do not modify a shared context; build your own with :func:`printer_ssl_context` instead.
"""

from __future__ import annotations

import functools
import logging
import ssl
from importlib import resources
from typing import Any

from bambulab.exceptions import PrinterCertificateError

__all__ = [
    "PrinterCertificateError",
    "bundled_ca_pem",
    "check_peer_serial",
    "cloud_ssl_context",
    "default_printer_context",
    "is_verifying",
    "peer_common_name",
    "printer_ssl_context",
    "warn_serial_unchecked",
]

log = logging.getLogger(__name__)

_CERTS_PACKAGE = "bambulab.transports"
_CERTS_FOLDER = "certs"


@functools.cache
def bundled_ca_pem() -> str:
    """Bambu's public CA certificates that ship with the package, concatenated as PEM."""
    folder = resources.files(_CERTS_PACKAGE).joinpath(_CERTS_FOLDER)
    parts: list[str] = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".cert") and entry.is_file():
            text = entry.read_text(encoding="ascii")
            if "PRIVATE KEY" in text:  # never trust, never load: the folder holds public certificates only
                raise RuntimeError(f"{entry.name} contains a private key; refusing to load it")
            parts.append(text.strip() + "\n")
    if not parts:
        raise RuntimeError("the bundled Bambu CA certificates are missing from the package")
    return "".join(parts)


def printer_ssl_context(
    *,
    ca_file: str | None = None,
    cadata: str | bytes | None = None,
    insecure: bool = False,
    tls_max: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A client context for a printer's MQTT, FTPS or camera port.

    With neither ``ca_file`` nor ``cadata`` the bundled Bambu CA chain is trusted; with either (or
    both) only those certificates are (a custom CA, or a virtual printer's). TLS 1.2 is the
    minimum; ``tls_max`` caps the version (some printers speak only TLS 1.2). ``insecure=True``
    disables verification entirely and logs a warning.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls_max is not None:
        ctx.maximum_version = tls_max
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        log.warning(
            "TLS verification of the printer is OFF (insecure=True): anyone on the network can "
            "impersonate the printer and learn its access code"
        )
        return ctx
    ctx.check_hostname = False  # the certificate names the serial, not the IP address
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT  # the old "BBL CA" has no KeyUsage extension
    if ca_file is None and cadata is None:
        ctx.load_verify_locations(cadata=bundled_ca_pem())
    else:
        if ca_file is not None:
            ctx.load_verify_locations(cafile=ca_file)
        if cadata is not None:
            ctx.load_verify_locations(cadata=cadata.decode("ascii") if isinstance(cadata, bytes) else cadata)
    return ctx


@functools.cache
def default_printer_context(insecure: bool = False) -> ssl.SSLContext:
    """A shared :func:`printer_ssl_context` (bundled CA, or insecure). Do not modify it."""
    return printer_ssl_context(insecure=insecure)


def cloud_ssl_context(*, ca_file: str | None = None, ca_data: str | None = None) -> ssl.SSLContext:
    """A context for the Bambu cloud (MQTT broker, HTTP API): a public web certificate, so the chain
    *and* the host name are checked against the system's CA store, or against ``ca_file`` /
    ``ca_data`` (PEM text) only (a private broker, the fake cloud)."""
    return ssl.create_default_context(cafile=ca_file, cadata=ca_data)


_UNCHECKED_WARNED: set[str] = set()


def warn_serial_unchecked(service: str) -> None:
    """Log, once per service and process, that a connection without a serial checks only the chain.

    Every Bambu printer has a certificate from Bambu's CA, so without the serial any printer on the
    network could answer in place of the intended one (and receive its access code).
    """
    if service in _UNCHECKED_WARNED:
        return
    _UNCHECKED_WARNED.add(service)
    log.warning(
        "%s: no serial given, so only the certificate chain is checked, not that the certificate names "
        "the intended printer; pass serial= (the printer's serial number)",
        service,
    )


def is_verifying(ctx: ssl.SSLContext) -> bool:
    """Whether ``ctx`` checks the peer's certificate chain."""
    return ctx.verify_mode != ssl.CERT_NONE


def peer_common_name(peercert: dict[str, Any] | None) -> str | None:
    """The subject common name of a certificate as :meth:`ssl.SSLObject.getpeercert` decodes it.

    ``None`` when there is none (an unverified connection decodes to an empty dict).
    """
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for attribute in rdn:
            if len(attribute) == 2 and attribute[0] == "commonName" and isinstance(attribute[1], str):
                return attribute[1]
    return None


def check_peer_serial(ssl_object: ssl.SSLObject | ssl.SSLSocket, serial: str, *, where: str = "") -> None:
    """Check that a verified connection's certificate names ``serial`` (case-insensitively).

    Does nothing on an unverified connection (``CERT_NONE``: there is nothing trustworthy to check).
    Raises :class:`PrinterCertificateError` when the common name is missing or different.
    """
    if not is_verifying(ssl_object.context):
        return
    name = peer_common_name(ssl_object.getpeercert())
    expected = serial.strip().upper()
    if name is None or name.strip().upper() != expected:
        place = f" at {where}" if where else ""
        found = "no common name" if name is None else f"common name {name!r}"
        raise PrinterCertificateError(
            f"the printer{place} presented a certificate for {found}, but serial {expected!r} was "
            "expected: is the address right, or did it change to another device?"
        )
