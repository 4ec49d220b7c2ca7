"""A farm of virtual printers behind a real gateway on 127.0.0.1 (uvicorn on port 0), shared per module.

The printers are :class:`bambulab.sim.Simulator` printers reached over real TLS; the HTTP client is
httpx2 over a real socket. Every response body and every log record of the module is kept, so a
test at the end can check that no access code or token ever left the gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2

from bambulab.farm.config import ApiToken, GatewayConfig, hash_token
from bambulab.farm.demo import DemoFarm
from bambulab.servers.gateway import Gateway
from bambulab.servers.gateway.app import RunningServer, create_app, start_server

TOKEN = "test-token-5f1c0e9a7b2d4c6e8f00112233445566"
TIMEOUT = 10.0


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.lines.append(str(record.msg))


@dataclass
class Farm:
    demo: DemoFarm
    gateway: Gateway
    server: RunningServer
    client: httpx2.AsyncClient
    logs: _Keep
    bodies: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def sim(self) -> Any:
        return self.demo.sim

    def auth(self, token: str = TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def get_json(self, path: str, status: int = 200, **kw: Any) -> Any:
        r = await self.client.get(path, **kw)
        assert r.status_code == status, (path, r.status_code, r.text[:500])
        return r.json() if r.status_code != 304 else None

    async def wait(self, predicate: Callable[[], bool], limit: float = TIMEOUT) -> None:
        async with asyncio.timeout(limit):
            while not predicate():  # noqa: ASYNC110 (polling a plain predicate)
                await asyncio.sleep(0.05)

    def secrets(self) -> list[str]:
        codes = [p.access_code for p in self.sim.printers] if self.sim is not None else []
        return [*codes, TOKEN]


@asynccontextmanager
async def running_farm(count: int = 5, *, control: bool = True, **demo: Any) -> AsyncIterator[Farm]:
    keep = _Keep()
    keep.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    ours = logging.getLogger("bambulab")
    old_level = ours.level
    root.addHandler(keep)
    ours.setLevel(logging.DEBUG)
    farm_demo = DemoFarm(count, time_scale=demo.pop("time_scale", 30.0), seed=demo.pop("seed", 11),
                         director=demo.pop("director", False), **demo)
    cfg = GatewayConfig(control=control, coalesce_ms=50, tokens=[ApiToken("tests", hash_token(TOKEN))])
    gateway = Gateway(cfg)
    server = None
    client = None
    try:
        cfg.printers.extend(await farm_demo.start())
        gateway.extras["demo"] = farm_demo
        app = create_app(gateway)
        await gateway.start()
        server = await start_server(gateway, "127.0.0.1", 0, app=app)
        bodies: list[bytes] = []

        async def keep_body(response: httpx2.Response) -> None:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                bodies.append(await response.aread())

        client = httpx2.AsyncClient(base_url=server.url, timeout=TIMEOUT,
                                    event_hooks={"response": [keep_body]})
        farm = Farm(farm_demo, gateway, server, client, keep, bodies)
        await farm.wait(lambda: len(gateway.fleet.members) == count
                        and all(m.fresh and m.summary()["state"] for m in gateway.fleet.members.values()), 20)
        yield farm
    finally:
        if client is not None:
            await client.aclose()
        gateway.fleet.end_subscriptions()
        if server is not None:
            await server.stop(timeout=1.0)
        await gateway.stop(timeout=5.0)
        root.removeHandler(keep)
        ours.setLevel(old_level)


async def sse_events(response: httpx2.Response) -> AsyncIterator[tuple[str, str | None, Any]]:
    """(event, id, data) from a text/event-stream response."""
    event, ident, data = "message", None, []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, ident, json.loads("\n".join(data))
            event, ident, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                event = value
            elif key == "id":
                ident = value
            elif key == "data":
                data.append(value)
