"""SSDP messages in the format Bambu Lab printers use: build them and parse them.

Pure: no sockets, no clock, no globals. The virtual printer builds its datagrams here and the
client's discovery parses what it receives here, so both speak exactly one format.

Bambu printers broadcast a ``NOTIFY`` about every 5 s from UDP port 2021 to
``255.255.255.255:2021`` (the ``Host:`` header says ``239.255.255.250:1990``, but that is only
text) and answer an ``M-SEARCH`` for :data:`SEARCH_TARGET` with an ``HTTP/1.1 200 OK`` reply. Both
carry the printer's identity in ``Location`` (bare IPv4), ``USN`` (serial) and ``Dev*.bambu.com``
headers::

    NOTIFY * HTTP/1.1
    Host: 239.255.255.250:1990
    Server: UPnP/1.0
    Location: 192.168.1.50
    NT: urn:bambulab-com:device:3dprinter:1
    NTS: ssdp:alive
    USN: 01P00A123456789
    Cache-Control: max-age=1800
    DevModel.bambu.com: C12
    DevName.bambu.com: My P1S
    DevSignal.bambu.com: -44
    DevConnect.bambu.com: lan
    DevBind.bambu.com: free
    Devseclink.bambu.com: secure
    DevInf.bambu.com: wlan0
    DevVersion.bambu.com: 01.07.00.00
    DevCap.bambu.com: 1

Parsing never raises on any input: :func:`parse`, :func:`parse_announcement` and
:func:`parse_search` return ``None`` for anything that is not a well-formed message of the kind
asked for (garbage, truncated datagrams, other vendors' SSDP, ``ssdp:byebye``). Header names are
matched case-insensitively, bare ``LF`` line ends are accepted as well as ``CRLF``, and bytes that
are not UTF-8 are decoded with U+FFFD replacement characters.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from types import MappingProxyType

from bambulab.protocol.models import PrinterModel, model_by_code, model_for_serial

__all__ = [
    "BROADCAST_ADDRESS",
    "DEFAULT_MAX_AGE",
    "DEFAULT_SERVER",
    "HOST_HEADER",
    "SEARCH_ALL",
    "SEARCH_TARGET",
    "SSDP_PORT",
    "SsdpAnnouncement",
    "SsdpKind",
    "SsdpSearch",
    "build_notify",
    "build_search",
    "build_search_response",
    "is_bambu_search",
    "normalize_model_code",
    "parse",
    "parse_announcement",
    "parse_search",
    "parse_signal",
]

#: The ``NT`` of a printer's NOTIFY and the ``ST`` a client searches for.
SEARCH_TARGET = "urn:bambulab-com:device:3dprinter:1"
#: The ``ST`` that asks every device to answer.
SEARCH_ALL = "ssdp:all"
#: What printers write in ``Host:`` (text only; the datagrams go to port 2021).
HOST_HEADER = "239.255.255.250:1990"
#: The UDP port printers send NOTIFYs from and to, and answer M-SEARCH on.
SSDP_PORT = 2021
#: Where real printers send their NOTIFYs.
BROADCAST_ADDRESS = "255.255.255.255"

DEFAULT_SERVER = "UPnP/1.0"
DEFAULT_MAX_AGE = 1800

_NOTIFY_LINE = "NOTIFY * HTTP/1.1"
_SEARCH_LINE = "M-SEARCH * HTTP/1.1"
_RESPONSE_LINE = "HTTP/1.1 200 OK"
_SERIAL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_SIGNAL_RE = re.compile(r"([+-]?\d{1,4})(?:\s*dbm)?", re.IGNORECASE | re.ASCII)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")
_MAX_DATAGRAM = 65_535


class SsdpKind(enum.StrEnum):
    """Which of the three messages a datagram is."""

    NOTIFY = "notify"  # unsolicited "NOTIFY * HTTP/1.1", NTS ssdp:alive
    RESPONSE = "response"  # "HTTP/1.1 200 OK", a printer's answer to an M-SEARCH
    SEARCH = "search"  # "M-SEARCH * HTTP/1.1", a client looking for printers


@dataclass(frozen=True, slots=True)
class SsdpAnnouncement:
    """One printer as it announces itself, in a NOTIFY or an M-SEARCH reply.

    Field values are the header values, stripped. ``model_code`` is the model code
    (``DevModel.bambu.com``); the parser maps legacy X1 strings and model names to the code
    (``"3DPrinter-X1-Carbon"`` becomes ``"BL-P001"``) and keeps unknown codes as sent. ``connect``
    is ``"lan"`` (LAN-only mode) or ``"cloud"``; ``bind`` is ``"free"`` or ``"occupied"``; the
    parser lower-cases both and keeps values it does not know. A header missing from a received
    datagram parses as ``""`` (``signal_dbm`` as ``None``, also when it is not a number).

    ``kind`` and ``headers`` describe the datagram rather than the printer: they do not take part
    in equality, and the builders ignore them. ``headers`` holds every header as received, under
    its name as spelled on the wire; use :meth:`header` for a case-insensitive lookup.
    """

    serial: str
    model_code: str
    name: str
    ip: str
    signal_dbm: int | None = None
    connect: str = "lan"
    bind: str = "free"
    firmware: str = ""
    seclink: str = "secure"
    interface: str = "wlan0"
    cap: str = "1"
    kind: SsdpKind = field(default=SsdpKind.NOTIFY, compare=False)
    headers: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def lan_only(self) -> bool:
        """True when the printer is in LAN-only mode (``DevConnect.bambu.com: lan``)."""
        return self.connect == "lan"

    @property
    def bound(self) -> bool:
        """True when the printer is bound to a cloud account (``DevBind.bambu.com: occupied``)."""
        return self.bind == "occupied"

    @property
    def printer_model(self) -> PrinterModel | None:
        """The model from the table: by ``model_code``, else guessed from the serial's prefix."""
        if self.model_code:
            try:
                return model_by_code(self.model_code)
            except KeyError:
                pass
        return model_for_serial(self.serial)

    def header(self, name: str) -> str | None:
        """A received header's value, looked up case-insensitively."""
        return _lookup(self.headers, name)


@dataclass(frozen=True, slots=True)
class SsdpSearch:
    """An ``M-SEARCH`` request. ``man`` is the ``MAN`` value without its quotes."""

    st: str
    man: str = "ssdp:discover"
    mx: int | None = None
    host: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def header(self, name: str) -> str | None:
        """A received header's value, looked up case-insensitively."""
        return _lookup(self.headers, name)


# --------------------------------------------------------------------------------------- helpers


def _lookup(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _clean(value: object) -> str:
    """A header value safe to put on one line: control characters (CR, LF, ...) become spaces."""
    return _CONTROL_RE.sub(" ", str(value)).strip()


def _format_signal(signal: int | None, dbm_suffix: bool) -> str | None:
    if signal is None:
        return None
    return f"{int(signal)}dBm" if dbm_suffix else str(int(signal))


def _format_date(date: datetime | str) -> str:
    if isinstance(date, str):
        return _clean(date)
    aware = date if date.tzinfo is not None else date.replace(tzinfo=UTC)
    return format_datetime(aware.astimezone(UTC), usegmt=True)


def _encode(start_line: str, headers: Iterator[tuple[str, str | None]]) -> bytes:
    lines = [start_line]
    lines.extend(f"{name}: {_clean(value)}".rstrip() for name, value in headers if value is not None)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _device_headers(
    a: SsdpAnnouncement, *, dbm_suffix: bool
) -> Iterator[tuple[str, str | None]]:
    yield "DevModel.bambu.com", a.model_code
    yield "DevName.bambu.com", a.name
    yield "DevSignal.bambu.com", _format_signal(a.signal_dbm, dbm_suffix)
    yield "DevConnect.bambu.com", a.connect
    yield "DevBind.bambu.com", a.bind
    yield "Devseclink.bambu.com", a.seclink
    yield "DevInf.bambu.com", a.interface
    yield "DevVersion.bambu.com", a.firmware
    yield "DevCap.bambu.com", a.cap


# -------------------------------------------------------------------------------------- builders


def build_notify(
    announcement: SsdpAnnouncement,
    *,
    server: str = DEFAULT_SERVER,
    host: str = HOST_HEADER,
    max_age: int = DEFAULT_MAX_AGE,
    dbm_suffix: bool = False,
) -> bytes:
    """The ``NOTIFY * HTTP/1.1`` datagram a printer broadcasts (CRLF line ends, blank line last).

    ``DevSignal.bambu.com`` is left out when ``signal_dbm`` is ``None`` (wired printers, some models);
    ``dbm_suffix`` writes it as ``-44dBm`` as some firmware does. Control characters in values
    (a CR or LF in a user-chosen printer name) become spaces so a value cannot add a header.
    """

    def headers() -> Iterator[tuple[str, str | None]]:
        yield "Host", host
        yield "Server", server
        yield "Location", announcement.ip
        yield "NT", SEARCH_TARGET
        yield "NTS", "ssdp:alive"
        yield "USN", announcement.serial
        yield "Cache-Control", f"max-age={int(max_age)}"
        yield from _device_headers(announcement, dbm_suffix=dbm_suffix)

    return _encode(_NOTIFY_LINE, headers())


def build_search_response(
    announcement: SsdpAnnouncement,
    *,
    date: datetime | str | None = None,
    st: str = SEARCH_TARGET,
    server: str = DEFAULT_SERVER,
    max_age: int = DEFAULT_MAX_AGE,
    dbm_suffix: bool = False,
) -> bytes:
    """The ``HTTP/1.1 200 OK`` reply a printer sends to an M-SEARCH.

    It carries ``ST`` and an empty ``EXT`` instead of ``NT``/``NTS``. ``date`` is written as an
    RFC 1123 ``Date:`` header (a naive datetime is taken as UTC; a string is used as is); the
    header is left out when ``date`` is ``None``, since this module does not read the clock.
    """

    def headers() -> Iterator[tuple[str, str | None]]:
        yield "Server", server
        yield "Date", None if date is None else _format_date(date)
        yield "Location", announcement.ip
        yield "ST", st
        yield "EXT", ""
        yield "USN", announcement.serial
        yield "Cache-Control", f"max-age={int(max_age)}"
        yield from _device_headers(announcement, dbm_suffix=dbm_suffix)

    return _encode(_RESPONSE_LINE, headers())


def build_search(st: str = SEARCH_TARGET, *, mx: int = 3, host: str = HOST_HEADER) -> bytes:
    """An ``M-SEARCH * HTTP/1.1`` request for ``st`` (``MAN: "ssdp:discover"``)."""

    def headers() -> Iterator[tuple[str, str | None]]:
        yield "HOST", host
        yield "MAN", '"ssdp:discover"'
        yield "MX", str(int(mx))
        yield "ST", st

    return _encode(_SEARCH_LINE, headers())


# --------------------------------------------------------------------------------------- parsers


def parse_signal(value: str | None) -> int | None:
    """Wi-Fi signal in dBm from ``"-44"``, ``"-44dBm"`` or ``"-44 dBm"``; ``None`` otherwise."""
    if value is None:
        return None
    match = _SIGNAL_RE.fullmatch(value.strip())
    return int(match.group(1)) if match else None


def normalize_model_code(value: str) -> str:
    """The model code for a ``DevModel.bambu.com`` value.

    Known codes, names and aliases map to the table's code (``"3DPrinter-X1-Carbon"`` ->
    ``"BL-P001"``, ``"3DPrinter-X1"`` -> ``"BL-P002"``); anything else is returned stripped.
    """
    text = value.strip()
    if not text:
        return ""
    try:
        return model_by_code(text).code
    except KeyError:
        return text


def _split(data: bytes | bytearray | memoryview | str) -> tuple[str, dict[str, str]] | None:
    """The start line and headers (first occurrence wins) of an HTTP-over-UDP message."""
    if isinstance(data, str):
        text = data
    else:
        raw = bytes(data)
        if len(raw) > _MAX_DATAGRAM:
            return None
        text = raw.decode("utf-8", errors="replace")
    if len(text) > _MAX_DATAGRAM:
        return None
    lines = text.split("\n")
    start = lines[0].strip()
    if not start:
        return None
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for line in lines[1:]:
        line = line.rstrip("\r")
        if not line.strip():
            break  # the blank line ends the headers
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or any(ch.isspace() for ch in name):
            continue  # not a header line: skip it rather than give up on the message
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        headers[name] = value.strip()
    return start, headers


def _kind(start: str) -> SsdpKind | None:
    parts = start.split()
    if len(parts) == 3 and parts[0].upper() == "NOTIFY" and parts[1] == "*":
        return SsdpKind.NOTIFY if parts[2].upper().startswith("HTTP/1.") else None
    if len(parts) == 3 and parts[0].upper() == "M-SEARCH" and parts[1] == "*":
        return SsdpKind.SEARCH if parts[2].upper().startswith("HTTP/1.") else None
    if len(parts) >= 2 and parts[0].upper().startswith("HTTP/1.") and parts[1] == "200":
        return SsdpKind.RESPONSE
    return None


def _ipv4(location: str) -> str | None:
    """The IPv4 address in ``Location``: bare (as Bambu sends it) or inside a URL."""
    text = location.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0].split(":", 1)[0]
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def _announcement(
    kind: SsdpKind, headers: dict[str, str], source: str | None
) -> SsdpAnnouncement | None:
    lower = {k.lower(): v for k, v in headers.items()}
    target = lower.get("nt") if kind is SsdpKind.NOTIFY else lower.get("st")
    is_bambu = (target or "").lower() == SEARCH_TARGET or "devmodel.bambu.com" in lower
    if not is_bambu:
        return None
    if kind is SsdpKind.NOTIFY and lower.get("nts", "ssdp:alive").lower() != "ssdp:alive":
        return None
    serial = lower.get("usn", "")
    if not _SERIAL_RE.fullmatch(serial):
        return None
    ip = _ipv4(lower.get("location", ""))
    if ip is None and source is not None:
        ip = _ipv4(source)
    if ip is None:
        return None
    return SsdpAnnouncement(
        serial=serial,
        model_code=normalize_model_code(lower.get("devmodel.bambu.com", "")),
        name=lower.get("devname.bambu.com", ""),
        ip=ip,
        signal_dbm=parse_signal(lower.get("devsignal.bambu.com")),
        connect=lower.get("devconnect.bambu.com", "").lower(),
        bind=lower.get("devbind.bambu.com", "").lower(),
        firmware=lower.get("devversion.bambu.com", ""),
        seclink=lower.get("devseclink.bambu.com", ""),
        interface=lower.get("devinf.bambu.com", ""),
        cap=lower.get("devcap.bambu.com", ""),
        kind=kind,
        headers=MappingProxyType(headers),
    )


def _search(headers: dict[str, str]) -> SsdpSearch | None:
    lower = {k.lower(): v for k, v in headers.items()}
    st = lower.get("st")
    if not st:
        return None
    mx_text = lower.get("mx", "").strip()
    mx = int(mx_text) if mx_text.isascii() and mx_text.isdigit() and len(mx_text) <= 6 else None
    return SsdpSearch(
        st=st,
        man=lower.get("man", "").strip().strip('"').strip(),
        mx=mx,
        host=lower.get("host", ""),
        headers=MappingProxyType(headers),
    )


def parse(
    data: bytes | bytearray | memoryview | str, *, source: str | None = None
) -> SsdpAnnouncement | SsdpSearch | None:
    """Parse any SSDP datagram. Never raises.

    Returns an :class:`SsdpAnnouncement` for a Bambu printer's NOTIFY (``ssdp:alive``) or M-SEARCH
    reply, an :class:`SsdpSearch` for any M-SEARCH with an ``ST``, and ``None`` for everything else
    (garbage, other devices' NOTIFYs, ``ssdp:byebye``). An announcement needs ``NT``/``ST`` equal
    to :data:`SEARCH_TARGET` (or a ``DevModel.bambu.com`` header), a ``USN`` and an IPv4 address;
    ``source``, the sender's address, stands in when ``Location`` is missing or not an IPv4.
    """
    split = _split(data)
    if split is None:
        return None
    start, headers = split
    kind = _kind(start)
    if kind is None:
        return None
    if kind is SsdpKind.SEARCH:
        return _search(headers)
    return _announcement(kind, headers, source)


def parse_announcement(
    data: bytes | bytearray | memoryview | str, *, source: str | None = None
) -> SsdpAnnouncement | None:
    """A Bambu printer's NOTIFY or M-SEARCH reply, or ``None``. Never raises. See :func:`parse`."""
    result = parse(data, source=source)
    return result if isinstance(result, SsdpAnnouncement) else None


def parse_search(data: bytes | bytearray | memoryview | str) -> SsdpSearch | None:
    """An M-SEARCH request, or ``None``. Never raises. See :func:`parse`."""
    result = parse(data)
    return result if isinstance(result, SsdpSearch) else None


def is_bambu_search(search: SsdpSearch) -> bool:
    """Whether a printer answers this M-SEARCH: ``MAN`` is ``ssdp:discover`` and ``ST`` is
    :data:`SEARCH_TARGET` or ``ssdp:all`` (both compared case-insensitively)."""
    return search.man.lower() == "ssdp:discover" and search.st.strip().lower() in (
        SEARCH_TARGET,
        SEARCH_ALL,
    )
