"""The pure SSDP codec: Bambu NOTIFY, M-SEARCH and M-SEARCH replies, built and parsed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bambulab.protocol.ssdp import (
    SEARCH_TARGET,
    SsdpAnnouncement,
    SsdpKind,
    SsdpSearch,
    build_notify,
    build_search,
    build_search_response,
    is_bambu_search,
    normalize_model_code,
    parse,
    parse_announcement,
    parse_search,
    parse_signal,
)

P1S = SsdpAnnouncement(
    serial="01P00A123456789",
    model_code="C12",
    name="Werkstatt P1S — links",
    ip="192.168.1.50",
    signal_dbm=-44,
    connect="lan",
    bind="free",
    firmware="01.07.00.00",
    seclink="secure",
    interface="wlan0",
    cap="1",
)


def _crlf(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


# A P1S NOTIFY as the firmware sends it, written out by hand (not with the builder).
REAL_NOTIFY = _crlf(
    "NOTIFY * HTTP/1.1",
    "Host: 239.255.255.250:1990",
    "Server: UPnP/1.0",
    "Location: 192.168.1.50",
    "NT: urn:bambulab-com:device:3dprinter:1",
    "NTS: ssdp:alive",
    "USN: 01P00A123456789",
    "Cache-Control: max-age=1800",
    "DevModel.bambu.com: C12",
    "DevName.bambu.com: Werkstatt P1S — links",
    "DevSignal.bambu.com: -44dBm",
    "DevConnect.bambu.com: cloud",
    "DevBind.bambu.com: occupied",
    "Devseclink.bambu.com: secure",
    "DevInf.bambu.com: wlan0",
    "DevVersion.bambu.com: 01.07.00.00",
    "DevCap.bambu.com: 1",
)

# An old X1 Carbon: legacy DevModel, buildroot Server string, wired, no DevSignal, lowercase names.
LEGACY_X1C_NOTIFY = (
    b"NOTIFY * HTTP/1.1\r\n"
    b"host: 239.255.255.250:1990\r\n"
    b"server: Buildroot/2018.02-rc3 UPnP/1.0 ssdpd/1.8\r\n"
    b"location: 10.0.0.7\r\n"
    b"nt: urn:bambulab-com:device:3dprinter:1\r\n"
    b"nts: ssdp:alive\r\n"
    b"usn: 00M09A350100123\r\n"
    b"cache-control: max-age=1800\r\n"
    b"devmodel.bambu.com: 3DPrinter-X1-Carbon\r\n"
    b"devname.bambu.com: X1C-1\r\n"
    b"devconnect.bambu.com: LAN\r\n"
    b"devbind.bambu.com: free\r\n"
    b"devinf.bambu.com: eth0\r\n"
    b"devversion.bambu.com: 01.05.01.00\r\n"
    b"\r\n"
)

REAL_REPLY = _crlf(
    "HTTP/1.1 200 OK",
    "Server: Buildroot/2018.02-rc3 UPnP/1.0 ssdpd/1.8",
    "Date: Thu, 02 Jan 2025 03:04:05 GMT",
    "Location: 192.168.1.61",
    "ST: urn:bambulab-com:device:3dprinter:1",
    "EXT:",
    "USN: 03919A3B0100254",
    "Cache-Control: max-age=1800",
    "DevModel.bambu.com: N2S",
    "DevName.bambu.com: A1 kitchen",
    "DevSignal.bambu.com: -61",
    "DevConnect.bambu.com: lan",
    "DevBind.bambu.com: free",
)

UPNP_ROUTER_NOTIFY = _crlf(
    "NOTIFY * HTTP/1.1",
    "HOST: 239.255.255.250:1900",
    "CACHE-CONTROL: max-age=120",
    "LOCATION: http://192.168.1.1:1900/rootDesc.xml",
    "NT: urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "NTS: ssdp:alive",
    "SERVER: OpenWRT/OpenWrt UPnP/1.1 MiniUPnPd/2.2.1",
    "USN: uuid:2a5e1f3c-0000-0000-0000-000000000000::urn:schemas-upnp-org:device:InternetGatewayDevice:1",
)


# ------------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize("build", [build_notify, build_search_response])
def test_round_trip_every_field(build: Callable[[SsdpAnnouncement], bytes]) -> None:
    data = build(P1S)
    parsed = parse_announcement(data)
    assert parsed is not None
    for f in dataclasses.fields(SsdpAnnouncement):
        if f.compare:
            assert getattr(parsed, f.name) == getattr(P1S, f.name), f.name
    assert parsed == P1S


def test_round_trip_kind_and_headers() -> None:
    notify = parse_announcement(build_notify(P1S))
    reply = parse_announcement(build_search_response(P1S))
    assert notify is not None
    assert reply is not None
    assert notify.kind is SsdpKind.NOTIFY
    assert reply.kind is SsdpKind.RESPONSE
    assert notify.headers["NTS"] == "ssdp:alive"
    assert reply.header("st") == SEARCH_TARGET
    assert reply.header("EXT") == ""
    assert "NT" not in reply.headers


@pytest.mark.parametrize(
    "changes",
    [
        {"signal_dbm": None},
        {"signal_dbm": -90, "connect": "cloud", "bind": "occupied"},
        {"model_code": "O1D", "name": "H2D 双喷头", "interface": "eth0", "cap": "3"},
        {"model_code": "N8", "firmware": ""},  # a code our table does not know stays as sent
        {"name": ""},
    ],
)
def test_round_trip_variants(changes: dict[str, object]) -> None:
    original = dataclasses.replace(P1S, **changes)  # type: ignore[arg-type]
    assert parse_announcement(build_notify(original)) == original
    assert parse_announcement(build_search_response(original)) == original


# ---------------------------------------------------------------------------------- exact format


def test_notify_wire_format() -> None:
    data = build_notify(P1S)
    assert data.endswith(b"\r\n\r\n")
    text = data.decode("utf-8")
    assert "\n" not in text.replace("\r\n", "")  # no bare LF anywhere
    lines = text.split("\r\n")
    assert lines[-2:] == ["", ""]
    assert lines[:-2] == [
        "NOTIFY * HTTP/1.1",
        "Host: 239.255.255.250:1990",
        "Server: UPnP/1.0",
        "Location: 192.168.1.50",
        "NT: urn:bambulab-com:device:3dprinter:1",
        "NTS: ssdp:alive",
        "USN: 01P00A123456789",
        "Cache-Control: max-age=1800",
        "DevModel.bambu.com: C12",
        "DevName.bambu.com: Werkstatt P1S — links",
        "DevSignal.bambu.com: -44",
        "DevConnect.bambu.com: lan",
        "DevBind.bambu.com: free",
        "Devseclink.bambu.com: secure",
        "DevInf.bambu.com: wlan0",
        "DevVersion.bambu.com: 01.07.00.00",
        "DevCap.bambu.com: 1",
    ]


def test_notify_options() -> None:
    text = build_notify(
        dataclasses.replace(P1S, signal_dbm=None), server="Buildroot/2018.02-rc3 UPnP/1.0 ssdpd/1.8", max_age=60
    ).decode()
    assert "DevSignal" not in text
    assert "\r\nServer: Buildroot/2018.02-rc3 UPnP/1.0 ssdpd/1.8\r\n" in text
    assert "\r\nCache-Control: max-age=60\r\n" in text
    assert "\r\nDevSignal.bambu.com: -44dBm\r\n" in build_notify(P1S, dbm_suffix=True).decode()


def test_response_wire_format() -> None:
    when = datetime(2025, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    lines = build_search_response(P1S, date=when).decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Date: Thu, 02 Jan 2025 03:04:05 GMT" in lines
    assert "ST: urn:bambulab-com:device:3dprinter:1" in lines
    assert "EXT:" in lines
    assert not any(line.startswith(("NT:", "NTS:")) for line in lines)
    assert lines[-2:] == ["", ""]
    # No date given: no Date header (the codec never reads the clock).
    assert b"Date:" not in build_search_response(P1S)
    naive = build_search_response(P1S, date=datetime(2025, 1, 2, 3, 4, 5)).decode()
    assert "\r\nDate: Thu, 02 Jan 2025 03:04:05 GMT\r\n" in naive


def test_search_wire_format() -> None:
    data = build_search()
    assert data == (
        b"M-SEARCH * HTTP/1.1\r\n"
        b"HOST: 239.255.255.250:1990\r\n"
        b'MAN: "ssdp:discover"\r\n'
        b"MX: 3\r\n"
        b"ST: urn:bambulab-com:device:3dprinter:1\r\n"
        b"\r\n"
    )
    search = parse_search(data)
    assert search == SsdpSearch(st=SEARCH_TARGET, man="ssdp:discover", mx=3, host="239.255.255.250:1990")
    assert is_bambu_search(search)
    assert parse_announcement(data) is None


def test_header_injection_is_neutralised() -> None:
    evil = dataclasses.replace(P1S, name="pwn\r\nUSN: 00000000000000X\r\n\r\nextra")
    data = build_notify(evil)
    assert data.count(b"\r\n\r\n") == 1
    parsed = parse_announcement(data)
    assert parsed is not None
    assert parsed.serial == P1S.serial
    assert parsed.name == "pwn USN: 00000000000000X extra"


# --------------------------------------------------------------------------------- real samples


def test_parse_real_notify_with_dbm_suffix() -> None:
    a = parse_announcement(REAL_NOTIFY)
    assert a is not None
    assert a.kind is SsdpKind.NOTIFY
    assert (a.serial, a.model_code, a.ip, a.signal_dbm) == ("01P00A123456789", "C12", "192.168.1.50", -44)
    assert a.name == "Werkstatt P1S — links"
    assert (a.connect, a.bind, a.lan_only, a.bound) == ("cloud", "occupied", False, True)
    assert (a.firmware, a.seclink, a.interface, a.cap) == ("01.07.00.00", "secure", "wlan0", "1")
    assert a.printer_model is not None
    assert a.printer_model.name == "P1S"
    assert a.headers["DevSignal.bambu.com"] == "-44dBm"


def test_parse_legacy_x1_lowercase_no_signal() -> None:
    a = parse_announcement(LEGACY_X1C_NOTIFY)
    assert a is not None
    assert a.model_code == "BL-P001"
    assert a.header("DevModel.bambu.com") == "3DPrinter-X1-Carbon"
    assert a.header("DEVMODEL.BAMBU.COM") == "3DPrinter-X1-Carbon"
    assert a.signal_dbm is None
    assert (a.serial, a.ip, a.name) == ("00M09A350100123", "10.0.0.7", "X1C-1")
    assert a.connect == "lan"
    assert a.lan_only
    assert a.interface == "eth0"
    assert (a.seclink, a.cap) == ("", "")  # absent headers parse as empty strings
    assert a.printer_model is not None
    assert a.printer_model.name == "X1 Carbon"


def test_parse_legacy_x1_plain() -> None:
    data = LEGACY_X1C_NOTIFY.replace(b"3DPrinter-X1-Carbon", b"3DPrinter-X1")
    a = parse_announcement(data)
    assert a is not None
    assert a.model_code == "BL-P002"


def test_parse_real_reply() -> None:
    a = parse(REAL_REPLY)
    assert isinstance(a, SsdpAnnouncement)
    assert a.kind is SsdpKind.RESPONSE
    assert (a.serial, a.model_code, a.ip, a.signal_dbm, a.name) == (
        "03919A3B0100254", "N2S", "192.168.1.61", -61, "A1 kitchen"
    )
    assert a.header("date") == "Thu, 02 Jan 2025 03:04:05 GMT"


def test_parse_accepts_bare_lf() -> None:
    a = parse_announcement(REAL_NOTIFY.replace(b"\r\n", b"\n"))
    assert a is not None
    assert a.serial == "01P00A123456789"
    assert a.name == "Werkstatt P1S — links"


def test_parse_location_url_and_source_fallback() -> None:
    with_url = REAL_NOTIFY.replace(b"Location: 192.168.1.50", b"Location: http://192.168.1.77:80/desc")
    a = parse_announcement(with_url)
    assert a is not None
    assert a.ip == "192.168.1.77"
    no_location = REAL_NOTIFY.replace(b"Location: 192.168.1.50\r\n", b"")
    assert parse_announcement(no_location) is None
    b = parse_announcement(no_location, source="192.168.1.99")
    assert b is not None
    assert b.ip == "192.168.1.99"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-44", -44),
        ("-44dBm", -44),
        ("-44 dBm", -44),
        ("-44DBM", -44),
        (" -7 ", -7),
        ("0", 0),
        ("", None),
        ("strong", None),
        ("-44.5", None),
        ("--44", None),
        ("-٤٤", None),  # non-ASCII digits are not a signal
        (None, None),
    ],
)
def test_parse_signal(value: str | None, expected: int | None) -> None:
    assert parse_signal(value) == expected


def test_unparseable_signal_is_none() -> None:
    a = parse_announcement(REAL_NOTIFY.replace(b"-44dBm", b"excellent"))
    assert a is not None
    assert a.signal_dbm is None


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("3DPrinter-X1-Carbon", "BL-P001"),
        ("3DPrinter-X1", "BL-P002"),
        ("BL-P001", "BL-P001"),
        ("c12", "C12"),
        (" N2S ", "N2S"),
        ("N8", "N8"),
        ("", ""),
    ],
)
def test_normalize_model_code(raw: str, code: str) -> None:
    assert normalize_model_code(raw) == code


# ------------------------------------------------------------------------------- rejected input


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"\x00\xff\xfe garbage \x80\x81",
        b"NOTIFY",
        b"NOTIFY * HTTP/1.1",
        b"NOTIFY * HTTP/1.1\r\nHost: 239.255.255.250:1990\r\nServer: UPnP/1.0\r\nLoca",  # truncated
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nST: urn:bambulab-com:device:3dprinter:1\r\n\r\n",
        UPNP_ROUTER_NOTIFY,
        REAL_NOTIFY.replace(b"ssdp:alive", b"ssdp:byebye"),
        REAL_NOTIFY.replace(b"USN: 01P00A123456789", b"USN: "),
        REAL_NOTIFY.replace(b"USN: 01P00A123456789", b"USN: has spaces in it"),
        REAL_NOTIFY.replace(b"Location: 192.168.1.50", b"Location: printer.local"),
        REAL_NOTIFY.replace(b"Location: 192.168.1.50", b"Location: 999.1.1.1"),
        "\u2028NOTIFY * HTTP/1.1".encode(),
    ],
)
def test_parse_rejects_without_raising(data: bytes) -> None:
    assert parse_announcement(data) is None
    assert parse_search(data) is None


def test_non_utf8_name_is_replaced_not_fatal() -> None:
    data = REAL_NOTIFY.replace("Werkstatt P1S — links".encode(), b"P1S \xff\xfe caf\xe9")
    a = parse_announcement(data)
    assert a is not None
    assert a.name == "P1S \ufffd\ufffd caf\ufffd"
    assert a.serial == "01P00A123456789"


def test_search_variants() -> None:
    lower = (
        b'm-search * HTTP/1.1\r\nhost: 239.255.255.250:1990\r\nman: "ssdp:discover"\r\nst: ssdp:all\r\n\r\n'
    )
    search = parse_search(lower)
    assert search is not None
    assert search.mx is None
    assert is_bambu_search(search)
    assert not is_bambu_search(SsdpSearch(st="upnp:rootdevice"))
    assert not is_bambu_search(SsdpSearch(st=SEARCH_TARGET, man="ssdp:update"))
    assert not is_bambu_search(SsdpSearch(st=SEARCH_TARGET, man=""))
    assert parse_search(b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\n\r\n") is None  # no ST
    assert parse_search(build_search(mx=3).replace(b"MX: 3", b"MX: \xc2\xb2")) is not None  # odd MX


# -------------------------------------------------------------------------------------- property


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_parse_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    result = parse(data)
    assert result is None or isinstance(result, SsdpAnnouncement | SsdpSearch)


_LINE_PARTS = st.sampled_from(
    [
        b"NOTIFY * HTTP/1.1", b"HTTP/1.1 200 OK", b"M-SEARCH * HTTP/1.1", b"NT: " + SEARCH_TARGET.encode(),
        b"ST: " + SEARCH_TARGET.encode(), b"NTS: ssdp:alive", b"USN: 01P00A123456789", b"Location: 10.0.0.1",
        b"DevModel.bambu.com: C12", b"DevSignal.bambu.com: -44dBm", b"MAN: \"ssdp:discover\"", b"MX: 3",
        b"", b":", b"\xff", b"\r", b"Location: ::1",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(_LINE_PARTS, st.binary(max_size=40)), max_size=20),
    st.sampled_from([b"\r\n", b"\n"]),
)
def test_parse_never_raises_on_plausible_datagrams(parts: list[bytes], eol: bytes) -> None:
    result = parse(eol.join(parts))
    if isinstance(result, SsdpAnnouncement):
        assert result.serial
        assert result.ip.count(".") == 3


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30
).map(str.strip)
_TOKEN = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(
    serial=st.from_regex(r"[A-Z0-9]{15}", fullmatch=True),
    model_code=st.sampled_from(["BL-P001", "BL-P002", "C11", "C12", "C13", "N1", "N2S", "N7", "O1D", "N8"]),
    name=_TEXT,
    ip=st.ip_addresses(v=4).map(str),
    signal_dbm=st.one_of(st.none(), st.integers(-120, 0)),
    connect=st.sampled_from(["lan", "cloud"]),
    bind=st.sampled_from(["free", "occupied"]),
    firmware=_TOKEN,
    seclink=_TOKEN.map(str.lower),
    interface=_TOKEN,
    cap=_TOKEN,
    dbm_suffix=st.booleans(),
)
def test_round_trip_property(dbm_suffix: bool, **fields: object) -> None:
    original = SsdpAnnouncement(**fields)  # type: ignore[arg-type]
    assert parse_announcement(build_notify(original, dbm_suffix=dbm_suffix)) == original
    reply = build_search_response(original, date=datetime(2025, 1, 1, tzinfo=UTC), dbm_suffix=dbm_suffix)
    assert parse_announcement(reply) == original
