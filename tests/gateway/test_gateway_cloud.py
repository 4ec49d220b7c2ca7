"""Cloud printers in the gateway: every printer of an account over the fake cloud's one MQTT connection."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from bambulab.farm.config import CloudConfig, GatewayConfig
from bambulab.servers.gateway import Gateway
from bambulab.servers.gateway.app import create_app, start_server
from bambulab.sim import Simulator
from bambulab.sim.cloud import FakeCloud

BROKER_NAME = "us.mqtt.bambulab.com"  # the fake broker's certificate names the real one


async def wait(predicate: Any, limit: float = 15.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@pytest.fixture
async def cloud_env() -> AsyncIterator[tuple[Simulator, FakeCloud, Any, list[Any], str]]:
    async with Simulator(time_scale=10.0, seed=31) as sim:
        cloud = FakeCloud(sim, seed=4)
        await cloud.start()
        try:
            printers = [await sim.add_printer(model=m, quirks={"push_interval": 0.3}) for m in ("P1S", "X1C", "A1")]
            alice = cloud.add_account("alice@example.com", "pw")
            for vp in printers:
                cloud.bind(alice, vp)
            yield sim, cloud, alice, printers, cloud.issue_token(alice)
        finally:
            await cloud.stop()


async def test_every_printer_of_an_account_over_one_connection(cloud_env: Any) -> None:
    _sim, cloud, alice, printers, token = cloud_env
    ctx = ssl.create_default_context(cadata=cloud.ca_pem.decode())
    account = CloudConfig(name="alice", token=token, devices=None, host="127.0.0.1", port=cloud.mqtt_port,
                          api_url=cloud.api_url, server_hostname=BROKER_NAME, watchdog=2.0,
                          options={"ssl_context": ctx, "uid": alice.uid, "backoff": (0.1, 0.5),
                                   "pushall_interval": 0.0})
    gateway = Gateway(GatewayConfig(coalesce_ms=50, clouds=[account]))
    app = create_app(gateway)
    await gateway.start()
    server = await start_server(gateway, "127.0.0.1", 0, app=app)
    try:
        fleet = gateway.fleet
        await wait(lambda: len(fleet.members) == 3 and all(m.fresh for m in fleet.members.values()))
        connection = fleet.accounts["alice"].connection
        assert connection.connections == 1  # one MQTT connection for the three printers
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as client:
            body = (await client.get("/api/v1/printers")).json()
            assert {p["serial"] for p in body["printers"]} == {vp.serial for vp in printers}
            assert all(p["source"] == "cloud" and p["online"] and p["state"] for p in body["printers"])
            legacy = (await client.get("/api/v1/print", params={"device_id": printers[0].serial})).json()
            assert "gcode_state" in legacy["print"]
            texts = [r.text for r in [await client.get("/api/v1/devices"),
                                      await client.get(f"/api/v1/printers/{printers[1].serial}")]]
        assert all(token not in t and printers[0].access_code not in t for t in texts)
        # One printer leaves the account's list in the gateway; the others keep reporting.
        await fleet.remove(printers[2].serial)
        assert printers[2].serial not in fleet.members
        messages = {s: m.messages for s, m in fleet.members.items()}
        await wait(lambda: all(m.messages > messages[s] for s, m in fleet.members.items()))
        assert connection.connections == 1
        # A printer that goes offline is marked so; the account connection stays up.
        await printers[0].go_offline()
        member = fleet.members[printers[0].serial]
        await wait(lambda: not member.online, 20)
        assert member.summary()["online"] is False and connection.connected
    finally:
        gateway.fleet.end_subscriptions()
        await server.stop()
        await gateway.stop()
