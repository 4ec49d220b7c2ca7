"""Fixtures for the compatibility layer: one fake cloud with two bound printers per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from compattools import CloudThread


@pytest.fixture(scope="module")
def cloud() -> Iterator[CloudThread]:
    thread = CloudThread()
    try:
        yield thread
    finally:
        thread.close()
