"""The simulator host: lifecycle edge cases."""

from __future__ import annotations

import asyncio
import time

import pytest

from bambulab.exceptions import SimulatorError
from bambulab.sim import Simulator


async def test_stop_right_after_add_printer_returns() -> None:
    # Regression: stop() used to hang when called with no await between add_printer and stop.
    for _ in range(5):
        sim = Simulator()
        await sim.start()
        await sim.add_printer(model="P1S")
        started = time.monotonic()
        async with asyncio.timeout(30):  # never hang the suite
            await sim.stop()
        assert time.monotonic() - started < 3.0  # the bug made it take 5-10 s, or forever
        assert sim.printers == []


async def test_add_before_start_and_duplicates_are_clear_errors() -> None:
    sim = Simulator()
    with pytest.raises(SimulatorError, match="start the simulator first"):
        await sim.add_printer()
    async with sim:
        printer = await sim.add_printer(model="A1", serial="039ABCDEF012345")
        with pytest.raises(SimulatorError, match="already exists"):
            await sim.add_printer(model="A1", serial="039abcdef012345")
        with pytest.raises(SimulatorError, match="unknown printer model"):
            await sim.add_printer(model="Z9")
        assert sim.printer("039abcdef012345") is printer
        await sim.remove_printer(printer.serial)
        with pytest.raises(SimulatorError, match="no virtual printer"):
            sim.printer(printer.serial)
    with pytest.raises(SimulatorError, match="time_scale"):
        Simulator(time_scale=0)
