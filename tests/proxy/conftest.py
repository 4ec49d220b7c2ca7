"""Fixtures of the proxy tests: the stack (simulator, fake cloud, echo upstream) once per module."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping

import httpx2
import pytest
from proxytools import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("proxy"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=20.0) as client:
        yield client


Factories = Mapping[str, Callable[[], asyncio.AbstractEventLoop]]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Factories:
    """The upstream transport's tests run twice: on asyncio's loop and on uvloop (``bambu proxy``'s)."""
    if "passthrough" in item.nodeid:
        import uvloop

        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
