"""Small pieces every long-lived connection shares: the async context protocol and the backoff."""

from __future__ import annotations

import random
from types import TracebackType
from typing import Self

__all__ = ["AsyncResource", "backoff_delay"]


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Jittered exponential backoff: 50-100 % of ``min(maximum, initial * 2**attempt)`` seconds.

    The jitter keeps a farm's connections from reconnecting in lock-step after a network blip.
    """
    step = min(maximum, initial * float(2 ** min(attempt, 30)))
    return step * rng.uniform(0.5, 1.0)


class AsyncResource:
    """``async with`` for classes with ``connect()`` and ``close()``; a failed connect is cleaned up."""

    async def connect(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
