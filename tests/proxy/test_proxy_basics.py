"""Authentication, scopes, strict filtering, the admin endpoints, /health, metrics and the access log."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
import pytest
from proxytools import ADMIN, Stack

BIND = "/v1/iot-service/api/user/bind"


def test_strict_forwards_the_device_list_without_access_codes(stack: Stack, http: httpx2.Client) -> None:
    tokens = stack.tokens()
    custom = tokens.add(stack.alice_real, name="dash")
    _, url = stack.proxy(tokens, mode="strict")
    stack.clear()
    r = http.get(url + BIND, headers={"Authorization": f"Bearer {custom}"})
    assert r.status_code == 200, r.text
    devices = r.json()["devices"]
    assert {d["dev_id"] for d in devices} == {stack.printers[0].serial, stack.printers[1].serial}
    assert all("dev_access_code" not in d for d in devices)
    assert stack.alice_real not in r.text and custom not in r.text
    assert r.headers["x-cache"] == "miss" and r.headers["age"] == "0"
    log = stack.requests()
    assert [(q.method, q.path, q.account) for q in log] == [("GET", BIND, "alice@example.com")]
    # The same through a full-mode proxy keeps the access code (faithful).
    _, full = stack.proxy(tokens, mode="full")
    r = http.get(full + BIND, headers={"Authorization": f"Bearer {custom}"})
    assert all(d["dev_access_code"] for d in r.json()["devices"])


def test_tokens_missing_wrong_expired_revoked_and_strict_scope(stack: Stack, http: httpx2.Client) -> None:
    tokens = stack.tokens()
    full = tokens.add(stack.alice_real, name="full", scope="full")
    viewer = tokens.add(stack.alice_real, name="viewer", scope="strict")
    soon = tokens.add(stack.alice_real, name="soon", expires=time.time() + 0.5)
    _, url = stack.proxy(tokens, mode="full")
    stack.clear()
    assert http.get(url + BIND).json()["error"] == "missing_token"
    assert http.get(url + BIND, headers={"Authorization": "Bearer nope-nope-nope-nope"}).status_code == 401
    assert http.get(url + BIND, headers={"Authorization": f"Basic {full}"}).status_code == 401
    assert http.get(url + BIND, headers={"Authorization": f"Bearer {soon}"}).status_code == 200
    # A strict-scoped token on a full proxy gets only the allowlist.
    r = http.get(url + "/v1/user-service/my/profile", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403 and r.json()["rule"] == "not-on-allowlist"
    r = http.get(url + "/v1/user-service/my/profile", headers={"Authorization": f"Bearer {full}"})
    assert r.status_code == 200 and r.json()["uid"] == stack.alice.uid
    time.sleep(0.6)
    assert http.get(url + BIND, headers={"Authorization": f"Bearer {soon}"}).json()["error"] == "invalid_token"
    tokens.remove("full")
    assert http.get(url + BIND, headers={"Authorization": f"Bearer {full}"}).status_code == 401
    paths = [q.path for q in stack.requests()]
    assert paths == [BIND, "/v1/user-service/my/profile"]  # refusals never reached the cloud


def test_admin_endpoints_need_their_token_and_are_off_without_one(stack: Stack, http: httpx2.Client) -> None:
    tokens = stack.tokens()
    custom = tokens.add(stack.alice_real, name="dash")
    _, off = stack.proxy(tokens)
    assert http.get(off + "/admin/tokens").status_code == 404
    assert http.get(off + "/admin/tokens", headers={"Authorization": f"Bearer {custom}"}).status_code == 404
    _, url = stack.proxy(tokens, admin_token=ADMIN)
    assert http.get(url + "/admin/tokens").status_code == 401
    assert http.get(url + "/admin/tokens", headers={"Authorization": f"Bearer {custom}"}).status_code == 401
    admin = {"Authorization": f"Bearer {ADMIN}"}
    listed = http.get(url + "/admin/tokens", headers=admin)
    assert listed.status_code == 200 and [t["name"] for t in listed.json()["tokens"]] == ["dash"]
    assert stack.alice_real not in listed.text and custom not in listed.text
    made = http.post(url + "/admin/tokens", headers=admin,
                     json={"same_account_as": "dash", "name": "kid", "scope": "strict", "expires_in": 3600})
    assert made.status_code == 201 and made.json()["scope"] == "strict" and stack.alice_real not in made.text
    new = made.json()["token"]
    assert http.get(url + BIND, headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert http.post(url + "/admin/tokens", headers=admin, json={"real_token": "x", "scope": "root"}).status_code == 400
    assert http.delete(url + "/admin/tokens/kid", headers=admin).status_code == 204
    assert http.get(url + BIND, headers={"Authorization": f"Bearer {new}"}).status_code == 401
    assert http.delete(url + "/admin/tokens/kid", headers=admin).status_code == 404
    stats = http.get(url + "/admin/stats", headers=admin).json()
    assert stats["tokens"] == 1 and stats["cache"]["upstream_calls"] >= 1


def test_health_metrics_and_access_log(stack: Stack, http: httpx2.Client) -> None:
    tokens = stack.tokens()
    custom = tokens.add(stack.alice_real, name="dash")
    app, url = stack.proxy(tokens)
    health = http.get(url + "/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "ok" and body["upstream"]["reachable"] and body["upstream"]["valid_accounts"] == 1
    assert stack.alice_real not in health.text
    auth = {"Authorization": f"Bearer {custom}"}
    serial = stack.printers[0].serial
    version = http.get(url + "/v1/iot-service/api/user/device/version", params={"dev_id": serial,
                                                                                 "access_token": "leak"}, headers=auth)
    assert version.status_code == 200
    firmware = version.json()["devices"][0]["firmware"][0]["version"]
    assert firmware.count(".") == 3 and firmware in version.text  # dotted versions intact
    http.get(url + BIND, headers=auth)
    http.get(url + BIND, headers=auth)
    http.get(url + "/v1/iot-service/api/slicer/setting", params={"version": "01.09.00.00", "password": "pw"},
             headers=auth)
    http.get(url + "/v1/user-service/my/profile", headers=auth)
    metrics = http.get(url + "/metrics").text
    assert 'bambu_proxy_requests_total{cache="hit",route="devices",status="200"} 1.0' in metrics
    assert 'route="not-on-allowlist"' not in metrics and "bambu_proxy_upstream_seconds_bucket" in metrics
    lines = stack.log_lines(app)
    text = "\n".join(map(str, lines))
    assert custom not in text and stack.alice_real not in text and "leak" not in text
    assert any(line["path"] == BIND and line["cache"] == "hit" and line["label"] == "dash" for line in lines)
    assert any(line["status"] == 403 for line in lines)
    slicer = next(line for line in lines if line["route"] == "slicer-settings")
    assert "01.09.00.00" in slicer["query"] and "pw" not in slicer["query"]  # versions intact, secrets not


def test_serves_tls_with_its_own_certificate(stack: Stack, tmp_path: Path) -> None:
    from bambulab.servers.proxy import ProxyApp, ProxyConfig, ProxyServer

    tokens = stack.tokens()
    custom = tokens.add(stack.alice_real, name="dash")
    cert, key = stack.cloud.ca.issue("bambu-proxy.local").write_files(tmp_path)

    async def start() -> ProxyServer:
        server = ProxyServer(ProxyApp(ProxyConfig(tokens, upstream=stack.cloud.api_url)), certfile=cert, keyfile=key)
        await server.start()
        return server

    server = stack.call(start())
    try:
        assert server.url.startswith("https://127.0.0.1:")
        ctx = stack.cloud.ca.client_context()  # trusts the simulator's CA (no host name to check here)
        with httpx2.Client(verify=ctx, timeout=20) as client:
            r = client.get(server.url + BIND, headers={"Authorization": f"Bearer {custom}"})
        assert r.status_code == 200 and r.json()["devices"]
        with httpx2.Client(timeout=20) as client, pytest.raises(httpx2.ConnectError):
            client.get(server.url + "/health")  # an unknown CA is refused by the client, as it should be
    finally:
        stack.call(server.stop())


def test_the_access_log_reaches_its_file_while_the_proxy_runs(stack: Stack, http: httpx2.Client,
                                                              tmp_path: Path) -> None:
    """Lines are flushed in batches (not one system call per request), yet appear within moments."""
    tokens = stack.tokens("flushed.json")
    custom = tokens.add(stack.alice_real, name="flushed")
    path = tmp_path / "access.log"
    with path.open("a", encoding="utf-8") as stream:
        _, url = stack.proxy(tokens, access_log=stream)
        for _ in range(3):
            assert http.get(url + BIND, headers={"Authorization": f"Bearer {custom}"}).status_code == 200
        deadline = time.monotonic() + 5
        while len(path.read_text().splitlines()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        lines = path.read_text().splitlines()
    assert len(lines) == 3 and all('"label":"flushed"' in line for line in lines)
    assert custom not in "".join(lines)
