"""Fixtures for the LAN client tests: a virtual printer farm on the test's own event loop."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest

from bambulab.sim import Simulator
from bambulab.transports.tls import printer_ssl_context


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(time_scale=1.0, seed=7) as simulator:
        yield simulator


@pytest.fixture
def sim_ctx(sim: Simulator) -> ssl.SSLContext:
    """A printer context that trusts the simulator's CA (instead of Bambu's)."""
    return printer_ssl_context(cadata=sim.ca.ca_pem)
