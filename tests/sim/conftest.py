"""Fixtures for simulator tests: a simulator thread and paho clients (see simtools.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from simtools import Mqtt, SimThread

from bambulab.sim import VirtualPrinter


@pytest.fixture
def simthread() -> Iterator[SimThread]:
    st = SimThread(time_scale=1.0, seed=1234)
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def mqtt_clients() -> Iterator[list[Mqtt]]:
    clients: list[Mqtt] = []
    yield clients
    for c in clients:
        c.close()


@pytest.fixture
def connect(mqtt_clients: list[Mqtt]) -> Callable[..., Mqtt]:
    """Connect and subscribe a paho client to a virtual printer."""

    def _connect(printer: VirtualPrinter, *, subscribe: bool = True, **kwargs: Any) -> Mqtt:
        client = Mqtt(printer, **kwargs)
        mqtt_clients.append(client)
        rc = client.connect()
        assert rc == 0, f"connect refused: {rc}"
        if subscribe:
            client.subscribe_report()
        return client

    return _connect
