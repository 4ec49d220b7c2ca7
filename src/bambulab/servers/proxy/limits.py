"""Per-account budgets: token buckets per endpoint class, and backoff after upstream refusals.

Keys are account keys (:attr:`bambulab.cloud.tokens.TokenGrant.account`), never custom tokens: two
dashboards holding different custom tokens for one Bambu account share that account's budget,
because it is the account that Bambu's limits and Cloudflare's blocks apply to. Both tables are
bounded (least recently used accounts are forgotten first).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["Backoff", "RateLimiter"]

_MAX_KEYS = 10_000

#: Requests per minute that may go upstream, per account and endpoint class (cache hits are free).
DEFAULT_BUDGETS: dict[str, float] = {"devices": 120.0, "user": 60.0, "slicer": 30.0, "other": 60.0,
                                     "write": 30.0, "realtime": 60.0}


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets: ``per_minute`` refill with a burst of a quarter minute's worth (at least 5)."""

    def __init__(self, budgets: dict[str, float] | None = None, *, enabled: bool = True) -> None:
        self.budgets = dict(DEFAULT_BUDGETS if budgets is None else budgets)
        self.enabled = enabled
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        self.rejected = 0

    def _capacity(self, klass: str) -> tuple[float, float]:
        per_minute = self.budgets.get(klass, self.budgets.get("other", 60.0))
        return max(5.0, per_minute / 4), per_minute / 60.0

    def acquire(self, account: str, klass: str, *, now: float | None = None) -> float:
        """0 when the request may go; else the seconds until it could (the Retry-After)."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        capacity, rate = self._capacity(klass)
        key = (account, klass)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(capacity, now)
            if len(self._buckets) > _MAX_KEYS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        self.rejected += 1
        return (1.0 - bucket.tokens) / rate if rate > 0 else 60.0


@dataclass
class _Block:
    until: float
    failures: int
    reason: str


class Backoff:
    """After an upstream 429 or Cloudflare block, the account waits: Retry-After, else 2^n seconds (max 15 min)."""

    def __init__(self, *, base: float = 5.0, maximum: float = 900.0) -> None:
        self.base = base
        self.maximum = maximum
        self._blocks: OrderedDict[str, _Block] = OrderedDict()

    def blocked(self, account: str, *, now: float | None = None) -> tuple[float, str] | None:
        """(seconds left, reason) while the account waits, else None."""
        block = self._blocks.get(account)
        if block is None:
            return None
        now = time.monotonic() if now is None else now
        if now >= block.until:
            return None
        return block.until - now, block.reason

    def failed(self, account: str, reason: str, retry_after: float | None, *, now: float | None = None) -> float:
        """Record a refusal; returns the wait in seconds."""
        now = time.monotonic() if now is None else now
        block = self._blocks.get(account)
        failures = (block.failures if block is not None else 0) + 1
        wait = min(self.maximum, self.base * 2.0 ** min(failures - 1, 30))
        if retry_after is not None and math.isfinite(retry_after):
            wait = min(self.maximum, max(wait, retry_after))
        self._blocks[account] = _Block(now + wait, failures, reason)
        self._blocks.move_to_end(account)
        if len(self._blocks) > _MAX_KEYS:
            self._blocks.popitem(last=False)
        return wait

    def succeeded(self, account: str) -> None:
        self._blocks.pop(account, None)

    def __len__(self) -> int:
        return len(self._blocks)
