"""Real-time printer data: one cloud MQTT connection per account, shared, isolated, idle-closed; also SSE."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest
from proxytools import Stack


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real-time path (cloud MQTT) on both loops: ``bambu proxy`` runs on uvloop when installed."""
    s = Stack(tmp_path_factory.mktemp("proxy-realtime"), loop=request.param)
    try:
        yield s
    finally:
        s.close()


START = "/v1/iot-service/api/user/device/realtime/start"
GET = "/v1/iot-service/api/user/device/realtime"
STREAM = "/v1/iot-service/api/user/device/realtime/stream"


def test_sessions_are_shared_per_account_isolated_and_closed_when_idle(stack: Stack, http: httpx2.Client) -> None:
    tokens = stack.tokens()
    dash = tokens.add(stack.alice_real, name="dash", scope="strict")
    phone = tokens.add(stack.alice_real, name="phone", scope="strict")
    bob = tokens.add(stack.bob_real, name="bob", scope="strict")
    app, url = stack.proxy(tokens, mode="strict", realtime_idle=1.5)
    p1s, x1c, a1 = (p.serial for p in stack.printers)
    before = stack.do(lambda: stack.cloud.mqtt_client_count)

    assert http.get(url + GET, params={"device_id": p1s}, headers={"Authorization": f"Bearer {dash}"}).json()[
        "error"] == "no_session"
    r = http.post(url + START, json={"device_id": p1s}, headers={"Authorization": f"Bearer {dash}"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "started" and r.json()["device_id"] == p1s
    r = http.post(url + START, json={"device_id": x1c.lower()}, headers={"Authorization": f"Bearer {phone}"})
    assert r.json()["status"] == "running"  # the other token of the same account shares the connection
    assert app.realtime.opened == 1 and stack.do(lambda: stack.cloud.mqtt_client_count) == before + 1

    deadline = time.monotonic() + 10
    while True:
        snap = http.get(url + GET, params={"device_id": p1s}, headers={"Authorization": f"Bearer {phone}"}).json()
        if snap.get("age_seconds") is not None and snap["state"].get("print"):
            break
        assert time.monotonic() < deadline, snap
        time.sleep(0.1)
    assert snap["device_id"] == p1s and snap["connected"] and 0 <= snap["age_seconds"] < 5
    assert "nozzle_temper" in snap["state"]["print"]

    # Bob's token sees neither Alice's printers nor her session; his own start opens his own connection.
    refused = http.get(url + GET, params={"device_id": p1s}, headers={"Authorization": f"Bearer {bob}"})
    assert refused.status_code == 404 and refused.json()["error"] == "no_session"
    refused = http.post(url + START, json={"device_id": p1s}, headers={"Authorization": f"Bearer {bob}"})
    assert refused.status_code == 404 and refused.json()["error"] == "unknown_device"
    with ThreadPoolExecutor(max_workers=4) as pool:  # concurrent starts share one connection attempt
        starts = list(pool.map(lambda _: httpx2.post(url + START, json={"device_id": a1}, timeout=20,
                                                     headers={"Authorization": f"Bearer {bob}"}), range(4)))
    assert all(r.status_code == 200 for r in starts), [r.text for r in starts]
    assert http.get(url + GET, params={"device_id": a1}, headers={"Authorization": f"Bearer {bob}"}).status_code == 200
    assert http.get(url + GET, params={"device_id": p1s}, headers={"Authorization": f"Bearer {bob}"}).status_code == 404
    assert app.realtime.opened == 2 and len(app.realtime) == 2
    assert http.post(url + START, json={}, headers={"Authorization": f"Bearer {dash}"}).status_code == 400

    # Nobody asks for 1.5 s: both sessions close, and their MQTT connections with them.
    deadline = time.monotonic() + 10
    while len(app.realtime) or stack.do(lambda: stack.cloud.mqtt_client_count) != before:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    gone = http.get(url + GET, params={"device_id": p1s}, headers={"Authorization": f"Bearer {dash}"})
    assert gone.json()["error"] == "no_session"


def test_server_sent_events(stack: Stack) -> None:
    tokens = stack.tokens()
    dash = tokens.add(stack.alice_real, name="dash")
    app, url = stack.proxy(tokens, mode="strict", realtime_idle=30)
    serial = stack.printers[0].serial
    auth = {"Authorization": f"Bearer {dash}"}
    with httpx2.Client(timeout=20.0) as http:
        assert http.post(url + START, json={"device_id": serial}, headers=auth).status_code == 200
        events: list[dict[str, object]] = []
        with http.stream("GET", url + STREAM, params={"device_id": serial}, headers=auth) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                if len(events) >= 3:
                    break
    assert all(e["device_id"] == serial for e in events)
    assert any(e["state"] for e in events)
    deadline = time.monotonic() + 5
    while app.realtime._sessions[app.tokens.lookup(dash, touch=False).account].subscribers:  # type: ignore[union-attr]
        assert time.monotonic() < deadline  # the closed stream is noticed
        time.sleep(0.05)
