"""The demo farm: five models or more, prints, HMS alerts that come and go, a filament runout."""

from __future__ import annotations

import asyncio

from bambulab.farm.demo import DemoFarm
from bambulab.farm.fleet import Fleet


async def test_the_demo_director_makes_things_happen_and_the_fleet_sees_them() -> None:
    demo = DemoFarm(6, time_scale=60.0, seed=5, director_interval=(0.02, 0.05), print_minutes=5)
    configs = await demo.start()
    try:
        async with Fleet(coalesce=0.05) as fleet:
            with fleet.subscribe(maxsize=10_000) as sub:
                for cfg in configs:
                    await fleet.add(cfg)
                seen: set[str] = set()
                states: set[str] = set()
                async with asyncio.timeout(30):
                    while not {"HmsRaised", "HmsCleared", "PrintPaused"} <= seen:
                        event = await sub.get()
                        if event.kind == "event":
                            seen.add(event.data["type"])
                        elif event.kind == "delta" and event.data["changes"].get("state"):
                            states.add(event.data["changes"]["state"])
                models = {m.model for m in fleet.members.values()}
        assert len(models) >= 5
        assert demo.happenings.get("hms", 0) >= 1 and demo.happenings.get("runout", 0) >= 1
        assert "PAUSE" in states  # the runout paused a print
    finally:
        await demo.stop()
