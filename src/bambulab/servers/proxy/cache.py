"""The response cache and request coalescing, keyed per account.

A key is ``(account, method, canonical path, raw query)``; the account part means one account can
never be served another's data, whatever the path. Concurrent misses for one key share a single
upstream call (the first caller is the *leader*, the others wait for its result and are told
``coalesced``). Only complete 200 answers are stored, each for its rule's TTL. The cache is
bounded by entries and by bytes; the least recently used entries go first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["CachedResponse", "ResponseCache"]

Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class CachedResponse:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]  # ready for ASGI, without Age / X-Cache / length
    body: bytes
    stored: float  # time.monotonic() when it came from upstream
    cacheable: bool = True


class ResponseCache:
    def __init__(self, *, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, tuple[CachedResponse, float]] = OrderedDict()  # value, expiry
        self._bytes = 0
        self._inflight: dict[Key, asyncio.Future[CachedResponse]] = {}
        self.upstream_calls = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: Key, now: float | None = None) -> CachedResponse | None:
        item = self._entries.get(key)
        if item is None:
            return None
        if (time.monotonic() if now is None else now) >= item[1]:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return item[0]

    def _drop(self, key: Key) -> None:
        item = self._entries.pop(key, None)
        if item is not None:
            self._bytes -= len(item[0].body)

    def put(self, key: Key, value: CachedResponse, ttl: float) -> None:
        if ttl <= 0 or len(value.body) > self.max_bytes // 8:
            return
        self._drop(key)
        self._entries[key] = (value, value.stored + ttl)
        self._bytes += len(value.body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _key, (evicted, _expiry) = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)

    def clear(self, account: str | None = None) -> None:
        for key in [k for k in self._entries if account is None or k[0] == account]:
            self._drop(key)

    async def fetch(
        self, key: Key, ttl: float, call: Callable[[], Awaitable[CachedResponse]]
    ) -> tuple[CachedResponse, str]:
        """The cached answer ("hit"), the result of a call already under way ("coalesced"), or a new call ("miss").

        The upstream call runs as its own task, so a leader whose client goes away does not take
        the answer from the followers; it is stored when it completes with a 200.
        """
        found = self.get(key)
        if found is not None:
            return found, "hit"
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending), "coalesced"
        self.upstream_calls += 1
        task = asyncio.ensure_future(self._lead(key, ttl, call))
        task.add_done_callback(_retrieve)
        self._inflight[key] = task
        return await asyncio.shield(task), "miss"

    async def _lead(self, key: Key, ttl: float, call: Callable[[], Awaitable[CachedResponse]]) -> CachedResponse:
        try:
            value = await call()
        finally:
            self._inflight.pop(key, None)
        if value.status == 200 and value.cacheable:
            self.put(key, value, ttl)
        return value


def _retrieve(task: asyncio.Future[CachedResponse]) -> None:
    """Read the outcome of a leader nobody waits for any more (no "exception never retrieved")."""
    if not task.cancelled():
        task.exception()
