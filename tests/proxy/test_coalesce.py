"""The coalescing transport: one send per event-loop step, bounded, flushed before a close."""

from __future__ import annotations

import asyncio

from bambulab.transports.coalesce import CoalescingTransport


class _Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _CountingTransport:
    """Counts the writes that reach a real transport."""

    def __init__(self, real: asyncio.WriteTransport) -> None:
        self.real = real
        self.writes: list[int] = []

    def write(self, data: bytes) -> None:
        self.writes.append(len(data))
        self.real.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


async def test_writes_of_one_step_leave_as_one_and_a_close_flushes_first() -> None:
    loop = asyncio.get_running_loop()
    received: list[_Recorder] = []

    def factory() -> _Recorder:
        received.append(_Recorder())
        return received[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        counting = _CountingTransport(transport)  # type: ignore[arg-type]
        wrapped = CoalescingTransport(counting, loop, limit=1000)  # type: ignore[arg-type]
        wrapped.write(b"HTTP/1.1 200 OK\r\n\r\n")
        wrapped.write(b"")
        wrapped.write(b"body")
        assert counting.writes == [] and wrapped.get_write_buffer_size() >= 23
        await asyncio.sleep(0)  # the end of the step
        assert counting.writes == [23]
        wrapped.write(b"x" * 600)
        wrapped.write(b"y" * 600)  # past the limit: out at once, no waiting for the step's end
        assert counting.writes == [23, 1200]
        wrapped.write(b"last")
        assert wrapped.get_extra_info("peername")[1] == port  # everything else is the real transport's
        wrapped.close()  # flushes what is pending, then closes
        assert counting.writes == [23, 1200, 4]
        await asyncio.wait_for(received[0].closed, 5)
        assert b"".join(received[0].chunks) == b"HTTP/1.1 200 OK\r\n\r\nbody" + b"x" * 600 + b"y" * 600 + b"last"
    finally:
        server.close()
        await server.wait_closed()
