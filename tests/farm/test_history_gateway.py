"""History end to end: virtual printers print, the gateway records the jobs (exactly once across a
reconnect and a gateway restart) in a real SQLite file, and the HTTP routes serve them."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import httpx2
from farmtools import until

from bambulab.farm.config import GatewayConfig
from bambulab.farm.demo import DEMO_FILE, DemoFarm
from bambulab.farm.history import HistoryStore
from bambulab.servers.gateway import Gateway
from bambulab.servers.gateway.app import create_app, start_server


async def run_gateway(farm: DemoFarm, configs: list[Any], db: str) -> tuple[Gateway, Any]:
    cfg = GatewayConfig()
    cfg.printers.extend(configs)
    where = {"url": db} if "://" in db else {"path": db}
    cfg.sections = {"history": {**where, "sample_interval": 0.2}}
    gw = Gateway(cfg)
    app = create_app(gw)  # routes register their services before the gateway starts, as `bambu gateway` does
    await gw.start()
    server = await start_server(gw, "127.0.0.1", 0, app=app)
    return gw, server


async def test_jobs_recorded_once_across_reconnect_and_restart(store_target: str) -> None:
    db = store_target
    farm = DemoFarm(2, time_scale=60.0, director=False, print_minutes=2, seed=7)
    configs = await farm.start()  # printers 0 and 1 start printing at once
    try:
        gw, server = await run_gateway(farm, configs, db)
        serials = [c.serial for c in configs]
        try:
            async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
                async def running() -> bool:
                    body = (await http.get("/api/v1/history/jobs")).json()
                    assert "jobs" in body, body
                    jobs = body["jobs"]
                    return len(jobs) == 2
                await until(running, what="two running jobs")
                # the printer drops every client mid-print: the gateway reconnects, same job
                await farm.sim.printers[0].disconnect_clients()
                await asyncio.sleep(0.5)
        finally:
            await server.stop()
            await gw.stop()
        # the gateway restarts while both are still printing
        gw, server = await run_gateway(farm, configs, db)
        try:
            async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
                async def finished() -> bool:
                    body = (await http.get("/api/v1/history/jobs", params={"result": "finished"})).json()
                    return body["total"] == 2
                await until(finished, within=60, what="two finished jobs")
                body = (await http.get("/api/v1/history/jobs")).json()
                assert body["total"] == 2, body
                job = body["jobs"][0]
                assert job["serial"] in serials and job["result"] == "finished"
                assert job["file"] and job["plate"] == 1 and job["duration_seconds"] > 0
                assert job["layers"] == job["total_layers"] == 120

                page = (await http.get("/api/v1/history/jobs", params={"limit": 1, "offset": 1})).json()
                assert page["total"] == 2 and len(page["jobs"]) == 1 and page["jobs"][0]["id"] != job["id"]
                one = (await http.get("/api/v1/history/jobs", params={"printer": serials[1]})).json()
                assert one["total"] == 1 and one["jobs"][0]["serial"] == serials[1]

                text = (await http.get("/api/v1/history/jobs.csv")).text
                rows = list(csv.DictReader(io.StringIO(text)))
                assert len(rows) == 2 and {r["result"] for r in rows} == {"finished"}

                stats = (await http.get("/api/v1/history/stats")).json()
                assert stats["farm"]["jobs"] == 2 and stats["farm"]["success_rate"] == 1.0
                assert stats["printers"][serials[0]]["print_hours"] > 0

                samples = (await http.get(f"/api/v1/printers/{serials[0]}/telemetry")).json()["samples"]
                assert samples and samples[-1]["nozzle"] is not None and samples[-1]["time"].endswith("Z")

                # HMS raised and cleared on a printer shows in its history
                vp = farm.sim.printers[1]
                await vp.inject_hms(0x0300_0100, 0x0002_0002)

                async def hms_seen() -> bool:
                    got = (await http.get(f"/api/v1/printers/{serials[1]}/hms/history")).json()["hms"]
                    return bool(got) and got[0]["active"]
                await until(hms_seen, what="HMS raised")
                await vp.clear_hms()

                async def hms_cleared() -> bool:
                    got = (await http.get(f"/api/v1/printers/{serials[1]}/hms/history")).json()["hms"]
                    return len(got) == 1 and not got[0]["active"]
                await until(hms_cleared, what="HMS cleared")

                bad = await http.get("/api/v1/history/jobs", params={"result": "exploded"})
                assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
                bad = await http.get("/api/v1/history/jobs", params={"since": "yesterday"})
                assert bad.status_code == 400

                # a new print of the same file is a new job
                await farm.sim.printers[0].start_print(DEMO_FILE)

                async def third() -> bool:
                    return (await http.get("/api/v1/history/jobs")).json()["total"] == 3
                await until(third, what="a third job")
        finally:
            await server.stop()
            await gw.stop()
    finally:
        await farm.stop()
    with HistoryStore.open(db) as store:
        jobs, total = store.jobs()
        assert total == 3
        assert len({j.job_key for j in jobs}) == 3


async def test_history_off_without_a_history_table() -> None:
    gw = Gateway(GatewayConfig())
    await gw.start()
    server = await start_server(gw, "127.0.0.1", 0)
    try:
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
            r = await http.get("/api/v1/history/jobs")
            assert r.status_code == 503 and r.json()["error"] == "history_disabled"
    finally:
        await server.stop()
        await gw.stop()
