"""The proxy's upstream transport: keep-alive reuse, a server that drops idle connections, errors."""

from __future__ import annotations

import asyncio

import pytest

from bambulab.exceptions import BambuConnectionError, BambuTimeoutError
from bambulab.transports.passthrough import AsyncPassThrough


async def _server(close_after_each: bool, silent: bool = False) -> tuple[asyncio.Server, list[asyncio.StreamWriter]]:
    """A tiny HTTP/1.1 server echoing the target; it may drop each connection (like a keep-alive timeout)."""
    connections: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if silent:
                    await reader.read()  # never answers; ends when the client goes
                    writer.close()
                    return
                body = head.split(b" ", 2)[1]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Seen: %d\r\n\r\n%s"
                             % (len(body), len(connections), body))
                await writer.drain()
                if close_after_each:
                    await asyncio.sleep(0.05)
                    writer.close()  # no "Connection: close": the client learns only by trying
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, connections


async def _stop(server: asyncio.Server, connections: list[asyncio.StreamWriter]) -> None:
    server.close()
    for writer in connections:
        writer.close()
    await asyncio.sleep(0.05)  # let the handlers see their connections end
    await server.wait_closed()


async def test_connections_are_reused() -> None:
    server, connections = await _server(close_after_each=False)
    port = server.sockets[0].getsockname()[1]
    client = AsyncPassThrough()
    try:
        for i in range(5):
            async with await client.send("GET", f"http://127.0.0.1:{port}/p{i}", query="a=1&a=2") as stream:
                assert stream.status == 200 and await stream.read(100) == f"/p{i}?a=1&a=2".encode()
        assert len(connections) == 1
    finally:
        await client.aclose()
        await _stop(server, connections)


async def test_a_dropped_idle_connection_is_replaced() -> None:
    server, connections = await _server(close_after_each=True)
    port = server.sockets[0].getsockname()[1]
    client = AsyncPassThrough()
    try:
        for i in range(4):
            async with await client.send("GET", f"http://127.0.0.1:{port}/x{i}") as stream:
                assert await stream.read(100) == f"/x{i}".encode()
            await asyncio.sleep(0.1 if i % 2 else 0.0)  # sometimes the close has arrived, sometimes not yet
        assert len(connections) == 4
    finally:
        await client.aclose()
        await _stop(server, connections)


async def test_errors_are_mapped_without_the_query() -> None:
    client = AsyncPassThrough(timeout=0.3)
    server, connections = await _server(close_after_each=False, silent=True)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(BambuTimeoutError) as timeout:
            await client.send("GET", f"http://127.0.0.1:{port}/slow", query="signature=secret")
        assert "secret" not in str(timeout.value) and "/slow" in str(timeout.value)
        with pytest.raises(BambuConnectionError):
            await client.send("GET", "http://127.0.0.1:9/nothing")
        with pytest.raises(ValueError, match="invalid URL"):
            await client.send("GET", "ftp://127.0.0.1/x")
    finally:
        await client.aclose()
        await _stop(server, connections)


async def test_the_stream_repr_shows_no_header() -> None:
    server, connections = await _server(close_after_each=False)
    port = server.sockets[0].getsockname()[1]
    client = AsyncPassThrough()
    try:
        async with await client.send("GET", f"http://127.0.0.1:{port}/r", query="token=secret-value") as stream:
            assert stream.header("x-seen") == "1"
            assert "secret-value" not in repr(stream) and "x-seen" not in repr(stream).lower()
            assert repr(stream).startswith("HttpStream(status=200")
    finally:
        await client.aclose()
        await _stop(server, connections)
