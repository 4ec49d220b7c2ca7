"""A real Prometheus (Debian's binary) scrapes the gateway and answers a query about a printer."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx2
from farmtools import free_port, running, until
from prometheus_client.parser import text_string_to_metric_families

from bambulab.farm.config import GatewayConfig
from bambulab.farm.demo import DemoFarm
from bambulab.servers.gateway import Gateway
from bambulab.servers.gateway.app import create_app, start_server

PROMETHEUS = "/usr/bin/prometheus"


async def test_prometheus_scrapes_the_gateway(tmp_path: Path) -> None:
    farm = DemoFarm(1, time_scale=5.0, director=False, seed=3)
    configs = await farm.start()
    cfg = GatewayConfig()
    cfg.printers.extend(configs)
    gw = Gateway(cfg)
    app = create_app(gw)  # routes register their services before the gateway starts, as `bambu gateway` does
    await gw.start()
    server = await start_server(gw, "127.0.0.1", 0, app=app)
    serial = configs[0].serial
    try:
        async with httpx2.AsyncClient(timeout=10) as http:
            async def online() -> bool:
                r = await http.get(f"{server.url}/api/v1/printers/{serial}")
                return r.status_code == 200 and r.json()["online"] is True
            await until(online, what="the printer online")
            await http.get(f"{server.url}/api/v1/printers")  # one request for the latency histogram
            before = gw.fleet.members[serial].summary()["state"]
            text = (await http.get(f"{server.url}/metrics")).text
            after = gw.fleet.members[serial].summary()["state"]  # a printing printer may move on meanwhile
            samples = {(s.name, s.labels.get("serial"), s.labels.get("state"), s.labels.get("route")): s.value
                       for f in text_string_to_metric_families(text) for s in f.samples}
            assert samples[("bambu_printer_up", serial, None, None)] == 1
            states = {k[2]: v for k, v in samples.items() if k[0] == "bambu_printer_state"}
            assert sum(states.values()) == 1
            assert any(states.get(state) == 1 for state in {before, after}), (before, after, states)
            assert states.keys() >= {"IDLE", "RUNNING", "FINISH", "FAILED", "PAUSE", "PREPARE"}
            assert samples[("bambu_gateway_printers", None, None, None)] == 1
            assert any(k[0] == "bambu_gateway_request_duration_seconds_count" and k[3] == "/api/v1/printers"
                       for k in samples)

            port = free_port()
            (tmp_path / "prometheus.yml").write_text(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: bambu\n"
                f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
            )
            cmd = [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                   f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                   "--log.level=warn"]
            with running(cmd, cwd=tmp_path, log_name="prometheus.log") as proc:
                query = f"http://127.0.0.1:{port}/api/v1/query"
                found: dict[str, object] = {}

                async def answered() -> bool:
                    assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
                    try:
                        r = await http.get(query, params={"query": f'bambu_printer_up{{serial="{serial}"}}'})
                    except httpx2.TransportError:
                        return False
                    if r.status_code != 200:  # "Service Unavailable" (plain text) until its storage is ready
                        return False
                    result = r.json().get("data", {}).get("result", [])
                    if result:
                        found.update(result[0])
                    return bool(result)
                await until(answered, within=60, what="Prometheus to scrape the gateway")
                assert found["value"][1] == "1"  # type: ignore[index]
                assert found["metric"]["job"] == "bambu"  # type: ignore[index]
            shutil.rmtree(tmp_path / "data")  # Prometheus has stopped: its TSDB goes too
            assert proc.returncode is not None
    finally:
        await server.stop()
        await gw.stop()
        await farm.stop()
