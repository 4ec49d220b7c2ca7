"""``bambu dump``: record a printer's replies as a test fixture, with its secrets redacted.

Connects to a printer over the LAN (MQTT over TLS, as every LAN command does), asks for
``get_version`` and ``pushall``, keeps the first full report and a few of the reports that follow
(deltas on P1/A1, full pushes on X1/H2), and writes ``<model>_<firmware>.json`` for
``tests/fixtures/``: the corpus the views, merge and simulator tests run over
(see ``docs/fixtures.md``).

Redaction happens before anything is written or printed: the keys in :data:`REDACTED_KEYS` get
fixed stand-ins of the same type, and the serial, the access code and the printer's address are
replaced wherever they appear inside any string (URLs, file names).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from bambulab import __version__

__all__ = ["FIXTURE_FORMAT", "REDACTED_KEYS", "dump", "fixture_name", "redact"]

#: Version of the fixture file layout (bump on incompatible changes).
FIXTURE_FORMAT = 1

#: The address that replaces the printer's (TEST-NET-1, RFC 5737: never a real host).
REDACTED_IP = "192.0.2.10"

#: ``net.info[].ip`` is a little-endian packed IPv4 address.
_REDACTED_IP_INT = int.from_bytes(ipaddress.IPv4Address(REDACTED_IP).packed, "little")

#: Keys whose values are replaced wherever they occur, by a stand-in of the same type.
#: ``None`` means "the printer's redacted serial".
REDACTED_KEYS: Mapping[str, Any] = {
    "sn": None,  # get_version modules, upgrade_state, AMS units
    "serial": None,
    "dev_id": None,
    "access_code": "00000000",
    "password": "REDACTED",
    "ssid": "REDACTED",
    "wifi_ssid": "REDACTED",
    "bssid": "00:00:00:00:00:00",
    "mac": "00:00:00:00:00:00",
    "ip": _REDACTED_IP_INT,  # net.info[].ip
    "ip_address": REDACTED_IP,
    "tray_uuid": "0" * 32,
    "tag_uid": "0" * 16,
    "user_id": "0",
    "uid": "0",
}

_ZERO_IP = re.compile(r"^0+$")


def redacted_serial(serial: str) -> str:
    """A serial of the same length and prefix shape, all zeros after the three-character prefix."""
    text = serial.strip().upper()
    return (text[:3] + "0" * max(0, len(text) - 3)) if len(text) > 3 else "0" * 15


def redact(value: Any, *, serial: str, access_code: str = "", host: str = "") -> Any:
    """A deep copy of ``value`` with the printer's secrets replaced (see the module doc).

    Pure: no I/O. Keys from :data:`REDACTED_KEYS` keep their type (an int stays an int) and an
    empty value stays empty (``""`` and ``0`` carry no secret and tell a test something).
    """
    fake_serial = redacted_serial(serial)
    replacements = [(s, r) for s, r in ((serial, fake_serial), (serial.upper(), fake_serial),
                                         (access_code, "00000000"), (host, REDACTED_IP)) if len(s) >= 4]

    def text(s: str) -> str:
        for secret, stand_in in replacements:
            s = s.replace(secret, stand_in)
        return s

    def stand_in(key: str, old: Any) -> Any:
        new = REDACTED_KEYS[key]
        if new is None:
            new = fake_serial
        if old in ("", 0, None) or (isinstance(old, str) and _ZERO_IP.match(old)):
            return old
        if isinstance(old, bool):
            return old
        if isinstance(old, int):
            return new if isinstance(new, int) else 0
        if isinstance(old, str):
            return REDACTED_IP if isinstance(new, int) else str(new)  # an address written as text
        return walk(old)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: stand_in(k, v) if k in REDACTED_KEYS else walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            return text(node)
        return node

    return walk(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text.strip()).strip("-") or "unknown"


def fixture_name(model: str, firmware: str) -> str:
    """``<model>_<firmware>.json``, e.g. ``P1S_01.08.00.00.json`` or ``X1-Carbon_01.09.00.10.json``."""
    return f"{_slug(model)}_{_slug(firmware)}.json"


def _is_report(message: Mapping[str, Any]) -> bool:
    section = message.get("print")
    return isinstance(section, dict) and section.get("command") == "push_status"


def _is_full(message: Mapping[str, Any]) -> bool:
    section = message.get("print")
    return isinstance(section, dict) and section.get("msg") in (0, "0") and _is_report(message)


def _is_version(message: Mapping[str, Any]) -> bool:
    info = message.get("info")
    return isinstance(info, dict) and info.get("command") == "get_version" and isinstance(info.get("module"), list)


async def record(
    host: str,
    serial: str,
    access_code: str,
    *,
    port: int = 8883,
    ca_file: str | None = None,
    insecure: bool = False,
    deltas: int = 3,
    seconds: float = 10.0,
) -> dict[str, Any]:
    """Talk to the printer and return the raw (unredacted) ``get_version``, ``pushall`` and deltas.

    Raises :class:`~bambulab.exceptions.BambuTimeoutError` when the printer does not answer both
    requests within ``seconds``; fewer deltas than asked for are fine.
    """
    from bambulab.exceptions import BambuTimeoutError
    from bambulab.transports.mqtt import MqttConnection
    from bambulab.transports.tls import check_peer_serial, printer_ssl_context

    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)

    def on_message(topic: str, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if isinstance(message, dict):
            with contextlib.suppress(asyncio.QueueFull):  # a flood is dropped, never buffered
                inbox.put_nowait(message)

    conn = MqttConnection(
        host, port, on_message=on_message, username="bblp", password=access_code,
        ssl_context=printer_ssl_context(ca_file=ca_file, insecure=insecure),
        verify_peer=lambda ssl_object: check_peer_serial(ssl_object, serial, where=f"{host}:{port}"),
    )
    await conn.connect()
    try:
        await conn.subscribe(f"device/{serial}/report")
        request = f"device/{serial}/request"
        await conn.publish(request, json.dumps({"info": {"sequence_id": "0", "command": "get_version"}}).encode())
        await conn.publish(request, json.dumps(
            {"pushing": {"sequence_id": "1", "command": "pushall", "version": 1, "push_target": 1}}).encode())
        version: dict[str, Any] | None = None
        full: dict[str, Any] | None = None
        later: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0 and not (version and full and len(later) >= deltas):
            try:
                message = await asyncio.wait_for(inbox.get(), left)
            except TimeoutError:
                break
            if version is None and _is_version(message):
                version = message
            elif full is None and _is_full(message):
                full = message
            elif full is not None and _is_report(message) and len(later) < deltas:
                later.append(message)
        if version is None or full is None:
            missing = " and ".join(n for n, got in (("get_version", version), ("pushall", full)) if got is None)
            raise BambuTimeoutError(f"the printer at {host}:{port} did not answer {missing} within {seconds:g} s")
        return {"get_version": version, "pushall": full, "deltas": later}
    finally:
        await conn.close()


def build_fixture(raw: Mapping[str, Any], *, serial: str, access_code: str, host: str,
                  source: str, note: str = "") -> dict[str, Any]:
    """The fixture document: what was recorded, redacted, with the model and firmware named."""
    from bambulab.protocol.models import detect_model, firmware_version

    clean = redact(dict(raw), serial=serial, access_code=access_code, host=host)
    info = clean["get_version"]["info"]
    model = detect_model(info)
    doc: dict[str, Any] = {
        "format": FIXTURE_FORMAT,
        "model": model.name if model is not None else "unknown",
        "model_code": model.code if model is not None else None,
        "firmware": firmware_version(info) or "unknown",
        "source": source,
        "recorded_with": f"bambu dump {__version__}",
    }
    if note:
        doc["note"] = note
    doc.update(get_version=clean["get_version"], pushall=clean["pushall"], deltas=clean["deltas"])
    return doc


def _default_output() -> Path:
    here = Path("tests") / "fixtures"
    return here if here.is_dir() else Path()


@click.command()
@click.option("--printer", "-p", "profile", envvar="BAMBU_PRINTER", help="Profile name from the config file.")
@click.option("--host", help="Printer address (or BAMBU_HOST).")
@click.option("--serial", help="Printer serial (or BAMBU_SERIAL).")
@click.option("--port", type=int, help="MQTT port (default 8883).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="Trust this CA instead of Bambu's.")
@click.option("--insecure", is_flag=True, default=None, help="Do not verify the printer's certificate.")
@click.option("--access-code-stdin", is_flag=True, help="Read the access code from standard input.")
@click.option("--output", "-o", "output", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the fixture (default: tests/fixtures when it exists, else here).")
@click.option("--deltas", default=3, show_default=True, type=click.IntRange(0, 50),
              help="How many reports after the full one to keep.")
@click.option("--seconds", default=15.0, show_default=True, type=click.FloatRange(1, 600),
              help="How long to wait for them.")
@click.option("--source", default="real printer", show_default=True,
              help="Where the recording comes from (written into the fixture).")
@click.option("--note", default="", help="A line about the printer (AMS units, nozzles, ...).")
@click.option("--force", is_flag=True, help="Replace a fixture of the same name.")
@click.option("--json", "as_json", is_flag=True, help="Print the path, model and firmware as JSON.")
def dump(profile: str | None, host: str | None, serial: str | None, port: int | None, ca_file: str | None,
         insecure: bool | None, access_code_stdin: bool, output: Path | None, deltas: int, seconds: float,
         source: str, note: str, force: bool, as_json: bool) -> None:
    """Record a printer's get_version and pushall (and a few deltas) as a redacted test fixture.

    Writes <model>_<firmware>.json with the serial, access code, address, Wi-Fi names, tray UUIDs
    and tag UIDs replaced. Add it to tests/fixtures/ with a pull request: every view, merge and
    simulator test then runs over your printer's replies too (docs/fixtures.md).
    """
    from bambulab.config import resolve_profile

    code = sys.stdin.readline().strip() if access_code_stdin else None
    resolved = resolve_profile(profile, overrides={
        "host": host, "serial": serial, "port": port, "ca_file": ca_file, "insecure": insecure, "access_code": code,
    })
    raw = asyncio.run(record(
        resolved.host, resolved.serial, resolved.access_code, port=resolved.port, ca_file=resolved.ca_file,
        insecure=resolved.insecure, deltas=deltas, seconds=seconds,
    ))
    doc = build_fixture(raw, serial=resolved.serial, access_code=resolved.access_code, host=resolved.host,
                        source=source, note=note)
    folder = output if output is not None else _default_output()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / fixture_name(doc["model"], doc["firmware"])
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists (--force replaces it)")
    target.write_text(json.dumps(doc, indent=1, sort_keys=False, ensure_ascii=False) + "\n", encoding="utf-8")
    summary = {"path": str(target), "model": doc["model"], "firmware": doc["firmware"], "deltas": len(doc["deltas"])}
    if as_json:
        click.echo(json.dumps(summary, separators=(",", ":")))
    else:
        click.echo(f"wrote {target} ({doc['model']}, firmware {doc['firmware']}, {len(doc['deltas'])} deltas); "
                   "check it, then open a pull request that adds it")
