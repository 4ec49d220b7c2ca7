"""Small real-socket HTTP helpers for the dashboard and camera tests (no HTTP client dependency)."""

from __future__ import annotations

import asyncio
import contextlib
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
