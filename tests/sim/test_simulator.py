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


@pytest.mark.parametrize("seed", range(20))
def test_default_printers_with_an_ams_have_pla_in_the_first_slot(seed: int) -> None:
    import random

    from bambulab.protocol.models import MODELS, AmsKind
    from bambulab.sim.payloads import default_dynamic

    for model in MODELS:
        dyn = default_dynamic(model, rng=random.Random(seed))
        if model.ams is AmsKind.NONE or not dyn.ams:
            continue
        first = dyn.ams[0].trays[0]
        assert first.loaded
        assert first.material == "PLA"
        # the rest stays varied across seeds and slots
    materials = {t.material for s in range(20) for u in default_dynamic(MODELS[0], rng=random.Random(s)).ams
                 for t in u.trays}
    assert len(materials) > 2
