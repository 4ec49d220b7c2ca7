"""The read API, legacy routes, OpenAPI, SSE and control, against one farm of virtual printers."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bambulab.farm.summary import SUMMARY_KEYS
from bambulab.servers.gateway import sse
from bambulab.servers.gateway.app import create_app
from bambulab.servers.gateway.openapi import openapi_spec, render_markdown

from .conftest import TIMEOUT, TOKEN, Farm, running_farm, sse_events

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def farm() -> AsyncIterator[Farm]:
    async with running_farm(5) as f:
        yield f


def _by_model(farm: Farm, name: str) -> Any:
    return next(m for m in farm.gateway.fleet.members.values() if m.model == name)


# ------------------------------------------------------------------------------------------ read


async def test_printers_list_has_every_printer_with_the_contract_shape(farm: Farm) -> None:
    body = await farm.get_json("/api/v1/printers")
    printers = body["printers"]
    assert len(printers) == 5
    assert len({p["model"] for p in printers}) == 5  # five different models
    for p in printers:
        assert list(p) == list(SUMMARY_KEYS)
        assert p["online"] is True and p["source"] == "lan"
        assert p["last_seen"].endswith("Z") and 0 <= p["age_seconds"] < 5
        assert p["temperatures"]["nozzle"] is not None
        assert p["state"] in {"RUNNING", "PREPARE", "IDLE"}
    busy = [p for p in printers if p["state"] in ("RUNNING", "PREPARE")]
    assert len(busy) == 4
    assert all(p["file"] and p["total_layers"] == 120 for p in busy)
    idle = next(p for p in printers if p["state"] == "IDLE")
    assert idle["finish_at"] is None and idle["model"] == "A1"
    x1c = next(p for p in printers if p["model"] == "X1 Carbon")
    assert x1c["camera"] == "rtsp" and x1c["ams"]["units"] and x1c["ams"]["units"][0]["trays"]


async def test_one_printer_and_its_parts(farm: Farm) -> None:
    member = _by_model(farm, "X1 Carbon")
    full = await farm.get_json(f"/api/v1/printers/{member.serial.lower()}")
    assert full["serial"] == member.serial and full["online"] is True
    assert full["state_raw"]["print"]["gcode_state"] in ("RUNNING", "PREPARE")
    assert "reconnects" in full and full["error"] is None
    ams = await farm.get_json(f"/api/v1/printers/{member.serial}/ams")
    assert ams["units"][0]["trays"][0]["material"] and "humidity_level" in ams["units"][0]
    job = await farm.get_json(f"/api/v1/printers/{member.serial}/job")
    assert job["total_layers"] == 120 and job["gcode_file"]
    fw = await farm.get_json(f"/api/v1/printers/{member.serial}/firmware")
    assert fw["firmware"] and any(m.get("name") == "ota" for m in fw["modules"])
    hms = await farm.get_json(f"/api/v1/printers/{member.serial}/hms")
    assert hms["hms"] == [] and hms["online"] is True


async def test_hms_is_decoded(farm: Farm) -> None:
    member = _by_model(farm, "P1S")
    vp = farm.sim.printer(member.serial)
    await vp.inject_hms(0x0300_0100, 0x0001_0001)
    try:
        await farm.wait(lambda: bool(member.summary()["hms"]))
        hms = await farm.get_json(f"/api/v1/printers/{member.serial}/hms")
        entry = hms["hms"][0]
        assert entry["code"] == "0300_0100_0001_0001"
        assert entry["severity"] in ("fatal", "serious", "common", "info")
        assert entry["text"] and entry["url"].startswith("https://")
    finally:
        await vp.clear_hms()
    await farm.wait(lambda: not member.summary()["hms"])


async def test_unknown_printer_is_a_json_404(farm: Farm) -> None:
    for path in ("/api/v1/printers/NOPE", "/api/v1/printers/NOPE/ams", "/api/v1/printers/NOPE/job"):
        body = await farm.get_json(path, 404)
        assert body["error"] == "unknown_printer" and body["printer_code"] is None
    body = await farm.get_json("/api/v1/nothing-here", 404)
    assert body["error"] == "not_found"


async def test_etag_gives_304_until_the_state_changes(farm: Farm) -> None:
    member = _by_model(farm, "X1 Carbon")
    path = f"/api/v1/printers/{member.serial}/job"
    for _ in range(20):  # a printing printer changes often: ask again right away until it held still
        first = await farm.client.get(path)
        etag = first.headers["etag"]
        again = await farm.client.get(path, headers={"If-None-Match": etag})
        if again.status_code == 304:
            break
    assert first.headers["last-modified"].endswith("GMT")
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    revision = member.revision
    await farm.wait(lambda: member.revision != revision)  # printing: the layer/progress moves on
    changed = await farm.client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    listing = await farm.client.get("/api/v1/printers")
    assert (await farm.client.get("/api/v1/printers", headers={"If-None-Match": listing.headers["etag"]})
            ).status_code in (200, 304)


async def test_gateway_info(farm: Farm) -> None:
    info = await farm.get_json("/api/v1/gateway")
    assert info["printers"] == 5 and info["control_enabled"] is True
    assert info["history"] is True  # the demo keeps history in memory


# ---------------------------------------------------------------------------------------- legacy


async def test_legacy_routes_serve_real_data(farm: Farm) -> None:
    member = _by_model(farm, "X1 Carbon")
    index = await farm.get_json("/")
    assert "/api/v1/status?device_id=" in index["endpoints"]
    health = await farm.get_json("/health")
    assert health["status"] == "ok" and health["online"] == 5
    assert (await farm.get_json("/api/version"))["version"] == farm.gateway.version
    status = await farm.get_json("/api/v1/status", params={"device_id": member.serial})
    assert status["device_id"] == member.serial and status["online"] is True
    report = await farm.get_json("/api/v1/print", params={"device_id": member.serial})
    # What a Home Assistant REST sensor reads: value_json.print.mc_percent
    assert isinstance(report["print"]["mc_percent"], int)
    assert report["print"]["mc_percent"] == member.printer.state["print"]["mc_percent"]
    assert report["print"]["gcode_state"] == member.summary()["state"]
    devices = (await farm.get_json("/api/v1/devices"))["devices"]
    assert {d["dev_id"] for d in devices} == set(farm.gateway.fleet.members)
    assert all("dev_access_code" not in d and d["online"] for d in devices)


async def test_legacy_unknown_or_missing_device(farm: Farm) -> None:
    for path in ("/api/v1/status", "/api/v1/print"):
        body = await farm.get_json(path, 404, params={"device_id": "00000000000000X"})
        assert body["error"] == "unknown_device"
        body = await farm.get_json(path, 400)
        assert body["error"] == "device_id_required"


async def test_root_gives_browsers_the_dashboard_when_there_is_one(farm: Farm) -> None:
    from starlette.responses import HTMLResponse

    async def page(request: Any) -> HTMLResponse:
        return HTMLResponse("<html>dashboard</html>")

    farm.gateway.html_index = page
    try:
        html = await farm.client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
        assert html.text == "<html>dashboard</html>"
        assert (await farm.client.get("/", headers={"Accept": "application/json"})).json()["name"]
    finally:
        farm.gateway.html_index = None


# --------------------------------------------------------------------------------------- openapi


async def test_openapi_describes_every_route(farm: Farm) -> None:
    spec = await farm.get_json("/openapi.json")
    assert spec["openapi"].startswith("3.1")
    app = create_app(farm.gateway)
    served = {(getattr(r, "path", ""), m.lower()) for r in app.routes for m in (getattr(r, "methods", None) or ())
              if m != "HEAD"}
    described = {(p, m) for p, item in spec["paths"].items() for m in item}
    assert {s for s in served if s[0] in {p for p, _ in described} or s[0].startswith("/api/v1")} <= described
    assert served >= {(p, m) for p, m in described if not p.startswith("/api/v1/history")}


async def test_checked_in_api_reference_matches_the_generator() -> None:
    from bambulab import __version__

    text = (ROOT / "docs" / "gateway-api.md").read_text()
    assert text == render_markdown(openapi_spec(__version__)), (
        "docs/gateway-api.md is stale: PYTHONPATH=src python3 -m bambulab.servers.gateway.openapi > docs/gateway-api.md"
    )


# ------------------------------------------------------------------------------------------- SSE


async def test_sse_snapshot_then_deltas_filtered_by_printer(farm: Farm) -> None:
    member = _by_model(farm, "X1 Carbon")
    async with farm.client.stream("GET", "/api/v1/events", params={"printer": member.serial}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
        kind, ident, data = await anext(events)
        assert kind == "snapshot" and [p["serial"] for p in data["printers"]] == [member.serial]
        assert ident is not None
        async with asyncio.timeout(TIMEOUT):
            kind, ident, data = await anext(events)
            while kind != "delta":
                kind, ident, data = await anext(events)
        assert data["serial"] == member.serial and data["changes"] and ident is not None and int(ident) > 0
        assert set(data["changes"]) <= set(SUMMARY_KEYS)
    assert farm.gateway.sse_clients == 0 or await _eventually_zero(farm)


async def _eventually_zero(farm: Farm) -> bool:
    await farm.wait(lambda: farm.gateway.sse_clients == 0)
    return True


async def test_sse_resume_with_last_event_id_starts_with_a_snapshot(farm: Farm) -> None:
    headers = {"Last-Event-ID": str(farm.gateway.fleet.seq)}
    async with farm.client.stream("GET", "/api/v1/events", headers=headers) as r:
        kind, _, data = await anext(sse_events(r))
        assert kind == "snapshot" and len(data["printers"]) == 5


async def test_sse_printer_events_and_unknown_filter(farm: Farm) -> None:
    body = await farm.get_json("/api/v1/events", 404, params={"printer": "NOPE"})
    assert body["error"] == "unknown_printer"
    member = _by_model(farm, "H2D")
    vp = farm.sim.printer(member.serial)
    async with farm.client.stream("GET", "/api/v1/events", params={"printer": member.serial}) as r:
        events = sse_events(r)
        assert (await anext(events))[0] == "snapshot"
        await vp.inject_hms(0x0700_0100, 0x0003_0001)
        data: Any = None
        async with asyncio.timeout(TIMEOUT):
            async for kind, _, payload in events:
                if kind == "printer_event":
                    data = payload
                    break
        assert data["type"] == "HmsRaised" and data["serial"] == member.serial
        assert data["hms"]["code"] == "0700_0100_0003_0001"
    await vp.clear_hms()


async def test_websocket_gives_the_same_stream(farm: Farm) -> None:
    from websockets.asyncio.client import connect

    member = _by_model(farm, "X1 Carbon")
    async with connect(f"ws://127.0.0.1:{farm.server.port}/api/v1/ws?printer={member.serial}") as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert first["event"] == "snapshot" and [p["serial"] for p in first["data"]["printers"]] == [member.serial]
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = json.loads(await ws.recv())
                if message["event"] == "delta":
                    break
        assert message["data"]["serial"] == member.serial and message["id"] > first["id"] - 1
    await farm.wait(lambda: farm.gateway.sse_clients == 0)


async def test_sse_client_that_stops_reading_is_bounded_then_resynced(farm: Farm,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "QUEUE", 2)
    # Small buffers on both ends (the accepted socket inherits the listener's SO_SNDBUF), so a few
    # kilobytes unread are enough to block the gateway's writes to this client.
    fleet = farm.gateway.fleet
    others = set(fleet.subscriptions)  # the history, metrics ... services subscribe too
    listener = farm.server.socket
    default_sndbuf = listener.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", farm.server.port))
    finally:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, default_sndbuf)
    await loop.sock_sendall(sock, b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    printers = list(farm.sim.printers)[:5]

    async def chatter() -> None:  # every printer changes every few ms: several deltas per fleet tick
        n = 0
        while True:
            n += 1
            for vp in printers:
                await vp.publish({"print": {"command": "push_status", "msg": 1, "nozzle_temper": 200.0 + n % 40}})
            await asyncio.sleep(0.01)

    spam = asyncio.create_task(chatter())
    try:
        await farm.wait(lambda: set(fleet.subscriptions) - others)
        sub = next(iter(set(fleet.subscriptions) - others))
        # The client reads nothing: once the socket buffers are full the stream's writer is stuck,
        # so the subscription stops being consumed (no new resync) while events keep being dropped.
        blocked = False
        async with asyncio.timeout(20):
            while not blocked:
                resyncs, dropped = sub.resyncs, sub.dropped
                await asyncio.sleep(0.5)
                blocked = sub.resyncs == resyncs and sub.dropped > dropped
                assert len(sub) <= 2  # bounded: dropped, not queued
        received = b""
        async with asyncio.timeout(TIMEOUT):
            while sub.resyncs == resyncs or b"event: snapshot" not in received[-200_000:]:
                chunk = await loop.sock_recv(sock, 65536)
                assert chunk
                received += chunk
        spam.cancel()
        assert received.startswith(b"HTTP/1.1 200") and b"event: snapshot" in received
    finally:
        spam.cancel()
        sock.close()
    await farm.wait(lambda: not set(fleet.subscriptions) - others)


# --------------------------------------------------------------------------------------- control


async def test_control_needs_a_token_and_the_switch(farm: Farm) -> None:
    member = _by_model(farm, "A1")
    path = f"/api/v1/printers/{member.serial}/control/light"
    r = await farm.client.post(path, json={"on": True})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = await farm.client.post(path, json={"on": True}, headers=farm.auth("wrong-token"))
    assert r.status_code == 401
    farm.gateway.config.control = False
    try:
        r = await farm.client.post(path, json={"on": True}, headers=farm.auth())
        assert r.status_code == 403 and r.json()["error"] == "control_disabled"
    finally:
        farm.gateway.config.control = True
    r = await farm.client.post(path, json={"on": False}, headers=farm.auth())
    assert r.status_code == 200 and r.json()["ok"] is True
    r = await farm.client.post(path, json={"on": "yes"}, headers=farm.auth())
    assert r.status_code == 400
    r = await farm.client.post(f"/api/v1/printers/{member.serial}/control/explode", headers=farm.auth())
    assert r.status_code == 404 and r.json()["error"] == "unknown_action"
    entry = farm.gateway.control_log[-1]
    assert entry["who"] == "tests" and entry["action"] == "light" and entry["result"] == "bad_request"


async def test_pause_resume_speed_on_a_printing_printer(farm: Farm) -> None:
    member = _by_model(farm, "P1S")
    base = f"/api/v1/printers/{member.serial}/control"
    r = await farm.client.post(f"{base}/pause", headers=farm.auth())
    assert r.status_code == 200, r.text
    await farm.wait(lambda: member.summary()["state"] == "PAUSE")
    r = await farm.client.post(f"{base}/resume", headers=farm.auth())
    assert r.status_code == 200
    await farm.wait(lambda: member.summary()["state"] in ("RUNNING", "PREPARE"))
    r = await farm.client.post(f"{base}/speed", json={"level": 3}, headers=farm.auth())
    assert r.status_code == 200
    await farm.wait(lambda: member.summary()["speed_level"] == 3)
    assert (await farm.client.post(f"{base}/speed", json={"level": 9}, headers=farm.auth())).status_code == 400
    r = await farm.client.post(f"{base}/print", json={"file": "demo.gcode.3mf"}, headers=farm.auth())
    assert r.status_code == 409 and r.json()["error"] == "busy" and r.json()["printer_code"]
    logged = [e for e in farm.gateway.control_log if e["printer"] == member.serial]
    assert [e["action"] for e in logged][:3] == ["pause", "resume", "speed"]
    assert any("control: tests pause" in line for line in farm.logs.lines)


async def test_control_from_python_with_the_same_checks_and_log(farm: Farm) -> None:
    from bambulab.servers.gateway.control import ControlError

    member = _by_model(farm, "A1")
    result = await farm.gateway.control(member.serial, "light", {"on": True}, who="mqtt:test")
    assert result["ok"] is True and result["ack"] == "success"
    assert farm.gateway.control_log[-1]["who"] == "mqtt:test"
    with pytest.raises(ControlError) as info:
        await farm.gateway.control("NOPE", "pause", who="mqtt:test")
    assert info.value.status == 404 and info.value.code == "unknown_printer"
    farm.gateway.config.control = False
    try:
        with pytest.raises(ControlError, match="control is disabled"):
            await farm.gateway.control(member.serial, "pause", who="mqtt:test")
    finally:
        farm.gateway.config.control = True


async def test_print_a_stored_file_then_stop_and_clear(farm: Farm) -> None:
    member = _by_model(farm, "A1")
    base = f"/api/v1/printers/{member.serial}/control"
    assert member.summary()["state"] == "IDLE"
    r = await farm.client.post(f"{base}/print", json={"file": "demo.gcode.3mf", "plate": 1}, headers=farm.auth())
    assert r.status_code == 200, r.text
    await farm.wait(lambda: member.summary()["state"] in ("PREPARE", "RUNNING"))
    r = await farm.client.post(f"{base}/stop", headers=farm.auth())
    assert r.status_code == 200
    await farm.wait(lambda: member.summary()["state"] == "FAILED")
    assert member.summary()["ended"] == "cancelled"  # FAILED on the printer, but a cancellation
    await farm.wait(lambda: member.summary()["print_error"] is None)  # the printer clears the code...
    assert member.summary()["ended"] == "cancelled"  # ...and the gateway still knows
    r = await farm.client.post(f"{base}/clear_hms", headers=farm.auth())
    assert r.status_code == 200
    r = await farm.client.post(f"{base}/stop", headers=farm.auth())  # nothing left to stop: the printer says no
    assert r.status_code == 502 and r.json()["error"] == "command_failed"


async def test_control_errors_timeout_and_signature(farm: Farm) -> None:
    vp = await farm.sim.add_printer(model="P1S", quirks={"auth_mode": "enforced"})
    from bambulab.farm.config import PrinterConfig
    from bambulab.transports.tls import printer_ssl_context

    ctx = printer_ssl_context(cadata=farm.sim.ca.ca_pem)
    cfg = PrinterConfig(serial=vp.serial, name="signed", host="127.0.0.1", access_code=vp.access_code,
                        port=vp.mqtt.port, options={"ssl_context": ctx, "command_timeout": 1.0})
    member = await farm.gateway.add_printer(cfg)
    try:
        await farm.wait(lambda: member.fresh)
        base = f"/api/v1/printers/{member.serial}/control"
        r = await farm.client.post(f"{base}/pause", headers=farm.auth())
        body = r.json()
        assert r.status_code == 403 and body["error"] == "signature_required", body
        assert "Developer Mode" in body["message"] and body["printer_code"]
        vp.stall(True)
        r = await farm.client.post(f"{base}/light", json={"on": True}, headers=farm.auth())
        assert r.status_code == 504 and r.json()["error"] == "timeout"
        vp.stall(False)
    finally:
        await farm.gateway.remove_printer(member.serial)
        await farm.sim.remove_printer(vp.serial)


# ------------------------------------------------------------------------------- admin (runtime)


async def test_add_and_remove_a_printer_at_runtime_without_touching_the_others(farm: Farm) -> None:
    fleet = farm.gateway.fleet
    before = {s: (m.printer.connections, m.reconnects) for s, m in fleet.members.items()}
    vp = await farm.sim.add_printer(model="P1P")
    ca = farm.sim.write_ca(Path(farm.demo.sim.printers[0].storage).parent / "gateway-test-ca.pem")
    body = {"serial": vp.serial, "host": "127.0.0.1", "port": vp.mqtt.port, "access_code": vp.access_code,
            "name": "added", "ca_file": str(ca)}
    r = await farm.client.post("/api/v1/printers", json=body)
    assert r.status_code == 401
    r = await farm.client.post("/api/v1/printers", json=body, headers=farm.auth())
    assert r.status_code == 201, r.text
    assert r.json()["serial"] == vp.serial and vp.access_code not in r.text
    r = await farm.client.post("/api/v1/printers", json=body, headers=farm.auth())
    assert r.status_code == 409
    member = fleet.members[vp.serial]
    await farm.wait(lambda: member.fresh)
    assert (await farm.get_json(f"/api/v1/printers/{vp.serial}"))["name"] == "added"
    r = await farm.client.post("/api/v1/printers", json={"serial": "X", "host": "h"}, headers=farm.auth())
    assert r.status_code == 400 and "access code" in r.json()["message"]
    r = await farm.client.delete(f"/api/v1/printers/{vp.serial}", headers=farm.auth())
    assert r.status_code == 200
    assert vp.serial not in fleet.members
    assert (await farm.client.delete(f"/api/v1/printers/{vp.serial}", headers=farm.auth())).status_code == 404
    await farm.sim.remove_printer(vp.serial)
    ca.unlink()
    after = {s: (m.printer.connections, m.reconnects) for s, m in fleet.members.items()}
    assert after == before


# ----------------------------------------------------------------------------------------- last


async def test_no_secret_in_any_response_or_log(farm: Farm) -> None:
    # A get_access_code reply lands in the printer's state: it must still never be served.
    member = _by_model(farm, "X1 Carbon")
    from bambulab.protocol import commands

    await member.printer.command(commands.get_access_code(member.printer.sequence))
    for path in (f"/api/v1/printers/{member.serial}", f"/api/v1/print?device_id={member.serial}",
                 f"/api/v1/status?device_id={member.serial}", "/api/v1/printers", "/api/v1/devices"):
        await farm.client.get(path)
    async with farm.client.stream("GET", "/api/v1/events") as r:
        sse_body = b""
        async for chunk in r.aiter_bytes():
            sse_body += chunk
            if sse_body.count(b"\n\n") > 5:
                break
    blobs = [*farm.bodies, sse_body]
    texts = farm.logs.lines
    assert len(blobs) > 30 and len(texts) > 10
    for secret in farm.secrets():
        assert len(secret) >= 8
        for blob in blobs:
            assert secret.encode() not in blob
        for line in texts:
            assert secret not in line
    assert json.dumps(farm.gateway.control_log.__class__.__name__)  # the log is plain data
    assert TOKEN not in repr(farm.gateway.config)
