"""A certificate authority for virtual printers.

Real printers present a leaf whose CN is the printer's serial, with no IP subject alternative
name, issued by Bambu's CA. The simulator cannot hold Bambu's keys, so it generates its own CA
and issues leaves of the same shape. Clients under test trust :attr:`SimCA.ca_pem` (or run
unverified, as many third-party clients do).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["LeafCertificate", "SimCA"]

_ORG = "BBL Technologies Co., Ltd (virtual)"


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256 keeps key generation fast for farms of hundreds of virtual printers.
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class LeafCertificate:
    """A printer's TLS identity: PEM certificate chain (leaf first) and PEM private key."""

    common_name: str
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    _files: list[Path] = field(default_factory=list, repr=False, compare=False)

    def server_context(self, *, minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> ssl.SSLContext:
        """An :class:`ssl.SSLContext` for a server presenting this certificate (TLS 1.2 and 1.3)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = minimum
        with self.temporary_files() as (cert_file, key_file):
            ctx.load_cert_chain(cert_file, key_file)
        return ctx

    @contextlib.contextmanager
    def temporary_files(self) -> Iterator[tuple[str, str]]:
        """The chain and key in a private temporary folder that is removed on exit.

        For libraries that load a certificate from files once (``ssl``, pyOpenSSL): the key
        does not outlive the loading.
        """
        folder = Path(tempfile.mkdtemp(prefix="bambu-sim-cert-"))
        try:
            yield self.write_files(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def write_files(self, directory: Path | None = None) -> tuple[str, str]:
        """Write the chain and key to files (key mode 0600) and return their paths.

        ``ssl`` and pyftpdlib load certificates only from files. Without ``directory`` the
        files go to a private temporary folder and are reused on later calls.
        """
        if self._files and directory is None:
            return str(self._files[0]), str(self._files[1])
        folder = directory or Path(tempfile.mkdtemp(prefix="bambu-sim-cert-"))
        cert_path = folder / f"{self.common_name}.crt"
        key_path = folder / f"{self.common_name}.key"
        cert_path.write_bytes(self.cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.key_pem)
        if directory is None:
            self._files.extend([cert_path, key_path])
        return str(cert_path), str(key_path)

    def remove_files(self) -> None:
        """Remove the private temporary folder :meth:`write_files` made (it holds the key).

        Called when the printer (or fake cloud) that uses this certificate stops; a later
        :meth:`write_files` writes a fresh folder.
        """
        files, self._files[:] = list(self._files), []
        for folder in {f.parent for f in files}:
            shutil.rmtree(folder, ignore_errors=True)


class SimCA:
    """Generates a CA and issues printer leaves with CN = serial and no IP SAN.

    ``key_usage=False`` leaves the KeyUsage extension off the CA certificate, as on Bambu's old
    "BBL CA": Python 3.13's default ``VERIFY_X509_STRICT`` then rejects the chain, which lets
    clients test that they clear that flag.
    """

    def __init__(self, *, common_name: str = "BBL CA (virtual)", key_usage: bool = True) -> None:
        self._key = _key()
        now = _dt.datetime.now(_dt.UTC)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))
            .not_valid_after(now + _dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
        )
        if key_usage:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
        self._cert = builder.sign(self._key, hashes.SHA256())
        self._name = name

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate in PEM, for clients to trust."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def write_ca(self, path: str | os.PathLike[str]) -> Path:
        """Write the CA certificate (public, no key) to ``path``."""
        target = Path(path)
        target.write_bytes(self.ca_pem)
        return target

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA, with the hostname check off (CN is a serial)."""
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        ctx.check_hostname = False
        return ctx

    def issue(self, common_name: str, *, days: int = 3650) -> LeafCertificate:
        """Issue a server certificate with CN = ``common_name`` and no subject alternative names."""
        key = _key()
        now = _dt.datetime.now(_dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                    ]
                )
            )
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))
            .not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM)
        return LeafCertificate(common_name=common_name, cert_pem=chain, key_pem=_pem_key(key))
