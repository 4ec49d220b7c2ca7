"""A stream transport whose writes within one event-loop step leave the process as one send.

Why: uvicorn writes a response's status line and headers, then its body, as two
``transport.write`` calls, and each is a ``send`` system call. On loopback and in virtual
machines a send is not cheap (it runs the receiver's TCP input and wakes it): measured on the
2-core VM of ``bench/proxy_load.py``, a small write costs tens of microseconds, the same order
as all the proxy's Python work for a cached answer. Handing the writes of one step to the real
transport together, at the end of the step, halves the sends of a small response and adds no
latency worth the name (the flush runs before the loop next waits for I/O).

Bounded: once ``limit`` bytes are pending they go out at once, so a writer that never yields
meets the real transport's flow control (``pause_writing``) as it would without this layer.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["CoalescingTransport"]


class CoalescingTransport:
    """Wraps a stream transport; every other attribute is the wrapped transport's."""

    def __init__(self, transport: asyncio.WriteTransport, loop: asyncio.AbstractEventLoop, *,
                 limit: int = 65536) -> None:
        self._transport = transport
        self._loop = loop
        self._limit = limit
        self._pending: list[bytes] = []
        self._size = 0
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size >= self._limit:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_soon)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Hand what is pending to the real transport now."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._size = 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def __repr__(self) -> str:
        return f"<CoalescingTransport pending={self._size} of {self._transport!r}>"
