"""Fixtures of the proxy tests: the stack (simulator, fake cloud, echo upstream) once per module."""

from __future__ import annotations

from collections.abc import Iterator

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
