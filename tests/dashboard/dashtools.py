"""Small real-socket HTTP helpers for the dashboard and camera tests (no HTTP client dependency)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass
class Served:
    server: uvicorn.Server
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[Served]:
    """Run ``app`` under uvicorn on 127.0.0.1 and a free port, on this event loop."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Served(server, port)
    finally:
        server.should_exit = True
        done, _ = await asyncio.wait({task}, timeout=3)
        if not done:  # a streaming response still open: do not wait for it
            server.force_exit = True
            await asyncio.wait({task}, timeout=5)
        if task.done() and not task.cancelled():
            task.result()


async def get(port: int, path: str, *, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 GET; the whole body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n".encode())
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if hdrs.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return status, hdrs, body


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


class MjpegViewer:
    """An MJPEG client reading parts off a real socket."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.status = 0
        self.content_type = ""

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-type":
                self.content_type = value.strip()
        self._chunked = b"transfer-encoding: chunked" in head.lower()
        self._buf = bytearray()

    async def _fill(self) -> None:
        assert self.reader is not None
        if self._chunked:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                raise EOFError
            self._buf += await self.reader.readexactly(size)
            await self.reader.readexactly(2)
        else:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise EOFError
            self._buf += chunk

    async def frame(self) -> bytes:
        """The next JPEG part."""
        while True:
            head_end = self._buf.find(b"\r\n\r\n")
            if head_end >= 0:
                head = bytes(self._buf[:head_end]).decode("latin-1")
                lines = head.split("\r\n")
                length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length"))
                end = head_end + 4 + length
                if len(self._buf) >= end + 2:
                    jpeg = bytes(self._buf[head_end + 4 : end])
                    del self._buf[: end + 2]
                    return jpeg
            await self._fill()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


class GatewayThread:
    """A real gateway over a demo farm of virtual printers, on its own event loop in a thread.

    For sync tests (Playwright's sync API): every helper runs its work on the gateway's loop.
    The demo's director is off, so nothing happens unless a test makes it happen.
    """

    def __init__(self, count: int = 4, *, time_scale: float = 30.0, token: str | None = None,
                 print_minutes: int = 240, history: str | None = None) -> None:
        self.history = history
        self.count = count
        self.time_scale = time_scale
        self.token = token
        self.print_minutes = print_minutes
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway-thread", daemon=True)
        self.url = ""
        self.farm: Any = None
        self.gw: Any = None
        self.server: Any = None

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> GatewayThread:
        self.thread.start()
        try:
            self.call(self._start(), timeout=60)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.call(self._stop(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        from bambulab.farm.config import ApiToken, GatewayConfig, hash_token
        from bambulab.farm.demo import DemoFarm
        from bambulab.servers.gateway import Gateway
        from bambulab.servers.gateway.app import create_app, start_server

        self.farm = DemoFarm(self.count, time_scale=self.time_scale, seed=11, director=False,
                             print_minutes=self.print_minutes)
        configs = await self.farm.start()
        tokens = [ApiToken("test", hash_token(self.token))] if self.token else []
        config = GatewayConfig(control=bool(self.token), tokens=tokens, printers=configs)
        if self.history is not None:  # a SQLite history store, sampling telemetry every second
            config.sections["history"] = {"path": self.history, "sample_interval": 1}
        self.gw = Gateway(config)
        app = create_app(self.gw)
        await self.gw.start()
        self.server = await start_server(self.gw, "127.0.0.1", 0, app=app)
        self.url = self.server.url
        async with asyncio.timeout(30):
            while not all(m.summary()["online"] and m.summary()["state"] for m in self.gw.fleet.members.values()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    async def _stop(self) -> None:
        if self.gw is not None:
            self.gw.fleet.end_subscriptions()
        if self.server is not None:
            await self.server.stop(timeout=1.0)
        if self.gw is not None:
            await self.gw.stop(timeout=3.0)
        if self.farm is not None:
            await self.farm.stop()
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ what tests read

    def _summaries(self) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            return [m.summary() for m in self.gw.fleet.members.values()]

        result: list[dict[str, Any]] = self.call(read())
        return result

    def names(self) -> dict[str, str]:
        return {s["serial"]: s["name"] for s in self._summaries()}

    def printing_serial(self, camera: str = "jpeg", within: float = 30.0) -> str:
        """A printer that is printing (past its preparation), with a camera of that kind."""
        deadline = time.monotonic() + within
        while True:
            found = [s["serial"] for s in self._summaries() if s["state"] == "RUNNING" and s["camera"] == camera]
            if found:
                return str(sorted(found)[0])
            if time.monotonic() > deadline:
                raise AssertionError(f"no printer with a {camera} camera is printing")
            time.sleep(0.1)

    def idle_serial(self) -> str:
        return str(next(s["serial"] for s in self._summaries() if s["state"] != "RUNNING"))

    def state(self, serial: str) -> str:
        return str(self.farm.sim.printer(serial).engine.dyn.job.gcode_state)

    def wait_state(self, serial: str, state: str, within: float = 15.0) -> None:
        async def wait() -> None:
            async with asyncio.timeout(within):
                while self.state(serial) != state:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

        self.call(wait(), timeout=within + 5)

    # ------------------------------------------------------------------ what tests do

    def inject_hms(self, serial: str, attr: int, code: int) -> str:
        """Raise an HMS alert on the virtual printer; returns its text once the gateway has it."""

        async def run() -> str:
            await self.farm.sim.printer(serial).inject_hms(attr, code)
            member = self.gw.fleet.members[serial]
            async with asyncio.timeout(15):
                while not member.summary()["hms"]:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            return str(member.summary()["hms"][0]["text"])

        result: str = self.call(run())
        return result

    def clear_hms(self, serial: str) -> None:
        self.call(self.farm.sim.printer(serial).clear_hms())

    def end_event_streams(self) -> None:
        """Close every SSE stream from the server's side (as a gateway restart does)."""

        async def end() -> None:
            self.gw.fleet.end_subscriptions()

        self.call(end())

    def go_offline(self, serial: str) -> None:
        self.call(self.farm.sim.printer(serial).go_offline())

    def come_online(self, serial: str) -> None:
        self.call(self.farm.sim.printer(serial).come_online())
