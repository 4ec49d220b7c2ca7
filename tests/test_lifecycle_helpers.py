"""The shared backoff and async-resource helpers."""

from __future__ import annotations

import random

import pytest

from bambulab._lifecycle import AsyncResource, backoff_delay


def test_backoff_grows_jitters_and_caps() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        step = min(60.0, 1.0 * 2**attempt)
        delays = [backoff_delay(attempt, 1.0, 60.0, rng) for _ in range(200)]
        assert all(step * 0.5 <= d <= step for d in delays)
        assert max(delays) - min(delays) > step * 0.3  # really jittered
    assert backoff_delay(10_000, 1.0, 60.0, rng) <= 60.0  # huge attempt numbers do not overflow


async def test_async_resource_closes_after_a_failed_connect() -> None:
    calls: list[str] = []

    class Flaky(AsyncResource):
        async def connect(self) -> None:
            calls.append("connect")
            raise ConnectionError("nope")

        async def close(self) -> None:
            calls.append("close")

    with pytest.raises(ConnectionError):
        async with Flaky():
            pass
    assert calls == ["connect", "close"]
