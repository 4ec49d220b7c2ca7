"""The upstream transport against scripted servers: the HTTP/1.1 cases a parser can get wrong.

Each server answers from a script (bytes written as they are), so these tests pin the framing the
transport must understand: HEAD with a length, 1xx before the answer, a body ended by the close,
chunked bodies, oversized heads, garbage, an answer nobody asked for, and slow readers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bambulab.exceptions import BambuConnectionError, BambuTimeoutError
from bambulab.transports import passthrough
from bambulab.transports.passthrough import AsyncPassThrough

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Scripted:
    """A loopback server: each connection runs ``handler``; requests' heads are recorded."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.heads: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Scripted:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            self.writers.append(writer)
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        return head

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await asyncio.sleep(0.02)
        await self.server.wait_closed()


async def _client() -> AsyncIterator[AsyncPassThrough]:
    client = AsyncPassThrough(timeout=2.0)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def client() -> AsyncIterator[AsyncPassThrough]:
    async for c in _client():
        yield c


async def test_head_with_a_length_has_no_body_and_keeps_the_connection(client: AsyncPassThrough) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await server.head(reader)
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with Scripted(handler) as server:
        async with await client.send("HEAD", server.url + "/file") as stream:
            assert stream.status == 200 and stream.header("content-length") == "1234"
            assert await stream.read(10_000) == b""
        async with await client.send("GET", server.url + "/after") as stream:
            assert await stream.read(10) == b"ok"
        assert server.connections == 1


async def test_informational_answers_are_skipped(client: AsyncPassThrough) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                     b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nX-Final: yes\r\n\r\ndone")
        await writer.drain()
        await reader.read()

    async with Scripted(handler) as server:
        async with await client.send("POST", server.url + "/make", content=b"{}") as stream:
            assert stream.status == 201
            assert stream.header("x-final") == "yes" and stream.header("link") is None
            assert await stream.read(10) == b"done"


async def test_a_body_ended_by_the_close_and_a_chunked_body(client: AsyncPassThrough) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await server.head(reader)
        if b"/close" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the ")
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(b"end")
            await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n"
                     b"5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with Scripted(handler) as server:
        async with await client.send("GET", server.url + "/close") as stream:
            assert await stream.read(100) == b"until the end"
        async with await client.send("GET", server.url + "/chunked") as stream:
            assert await stream.read(100) == b"hello world"
            assert stream.header("transfer-encoding") == "chunked"


async def test_a_truncated_body_is_an_error_not_a_short_answer(client: AsyncPassThrough) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    async with Scripted(handler) as server:
        async with await client.send("GET", server.url + "/cut", query="token=secret") as stream:
            with pytest.raises(BambuConnectionError, match="broke off") as err:
                await stream.read(1000)
            assert "secret" not in str(err.value)


async def test_an_endless_head_and_garbage_are_refused_within_bounds(client: AsyncPassThrough) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await server.head(reader)
        if b"/garbage" in head:
            writer.write(b"SMTP ready\r\n\r\n")
            await writer.drain()
            await reader.read()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nX-Long: ")
        for _ in range(40):  # 2.5 MB of one header value, unless the client hangs up first
            writer.write(b"a" * 65536)
            await writer.drain()

    async with Scripted(handler) as server:
        with pytest.raises(BambuConnectionError, match="more than 65536 bytes of headers"):
            await client.send("GET", server.url + "/long")
        with pytest.raises(BambuConnectionError, match="broke the HTTP protocol"):
            await client.send("GET", server.url + "/garbage")


async def test_an_answer_nobody_asked_for_retires_the_connection(client: AsyncPassThrough) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra")
            await writer.drain()

    async with Scripted(handler) as server:
        for _ in range(2):
            async with await client.send("GET", server.url + "/x") as stream:
                assert await stream.read(10) == b"ok"
        assert server.connections == 2  # the first connection, left with "extra", was not reused


async def test_a_slow_reader_holds_a_bounded_read_ahead(client: AsyncPassThrough) -> None:
    size = 8 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"x" * 65536
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()
        await reader.read()

    async with Scripted(handler) as server:
        async with await client.send("GET", server.url + "/big") as stream:
            conn = stream._conn
            assert conn is not None
            first = await stream._next()
            assert first
            await asyncio.sleep(0.3)  # the server writes as fast as it may; nobody reads
            assert conn._buffered <= passthrough._READ_AHEAD + 256 * 1024
            received = len(first)
            async for chunk in stream.iter_bytes():
                received += len(chunk)
            assert received == size


async def test_requests_that_cannot_be_sent_are_refused_before_the_socket(client: AsyncPassThrough) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)

    async with Scripted(handler) as server:
        for kwargs in ({"headers": [("x-bad", "a\r\nInjected: 1")]}, {"headers": [("bad name", "v")]},
                       {"query": "a b"}):
            with pytest.raises(ValueError, match=r"cannot be sent as HTTP/1\.1"):
                await client.send("GET", server.url + "/x", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="cannot be sent"):
            await client.send("G T", server.url + "/x")
        assert server.heads == []


async def test_an_upload_longer_than_its_length_is_stopped(client: AsyncPassThrough) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        await reader.read()

    async def body() -> AsyncIterator[bytes]:
        yield b"12345"
        yield b"67890"

    async with Scripted(handler) as server:
        with pytest.raises(BambuConnectionError, match="does not match its length"):
            await client.send("PUT", server.url + "/up", headers=[("content-length", "6")], content=body())


async def test_a_chunked_upload_arrives_whole(client: AsyncPassThrough) -> None:
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await server.head(reader)
        assert b"transfer-encoding: chunked" in head.lower()
        data = await reader.readuntil(b"0\r\n\r\n")
        received.append(data)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def body() -> AsyncIterator[bytes]:
        for part in (b"abc", b"", b"defg"):
            yield part

    async with Scripted(handler) as server:
        async with await client.send("POST", server.url + "/up", content=body()) as stream:
            assert stream.status == 204 and await stream.read(10) == b""
    assert received == [b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"]


async def test_silence_after_the_head_times_out(client: AsyncPassThrough) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await reader.read()

    async with Scripted(handler) as server:
        quick = AsyncPassThrough(timeout=0.2)
        try:
            async with await quick.send("GET", server.url + "/stall") as stream:
                with pytest.raises(BambuTimeoutError, match="stalled"):
                    await stream.read(100)
        finally:
            await quick.aclose()


async def test_over_tls_verified_reused_and_flow_controlled() -> None:
    """The real upstream is HTTPS: verified by the policy of transports/tls, kept alive, large bodies."""
    import ssl

    from bambulab.sim.ca import SimCA
    from bambulab.transports.tls import cloud_ssl_context

    ca = SimCA()
    leaf = ca.issue("localhost")
    body = bytes(range(256)) * 4096  # 1 MiB
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                payload = body if b"/big" in head else b"small"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=leaf.server_context())
    port = server.sockets[0].getsockname()[1]
    trusted = AsyncPassThrough(timeout=5, ssl_context=cloud_ssl_context(ca_data=ca.ca_pem.decode()))
    untrusted = AsyncPassThrough(timeout=5)  # the default policy: Bambu's CA chain, which did not sign this
    try:
        for _ in range(3):
            async with await trusted.send("GET", f"https://localhost:{port}/small") as stream:
                assert await stream.read(100) == b"small"
        async with await trusted.send("GET", f"https://localhost:{port}/big") as stream:
            assert await stream.read(2 * len(body)) == body
        assert connections == 1
        with pytest.raises(BambuConnectionError, match="cannot reach the server"):
            await untrusted.send("GET", f"https://localhost:{port}/small")
    finally:
        await trusted.aclose()
        await untrusted.aclose()
        server.close()
        await server.wait_closed()
