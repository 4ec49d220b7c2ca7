"""``bambu gateway --demo``: a farm of virtual printers in the gateway's own process and loop.

The printers are :class:`bambulab.sim.Simulator` printers on 127.0.0.1; the gateway connects to
them exactly as to a real farm (MQTT over TLS, certificates checked against the simulator's CA).
A small director keeps it lively: prints start (the demo project, already on each printer's
storage), an HMS alert comes and goes now and then, and once in a while a filament runs out
(which pauses the print until the director "reloads" it and resumes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any, Final

from bambulab.farm.config import PrinterConfig
from bambulab.transports.tls import printer_ssl_context

__all__ = ["DEMO_MODELS", "DemoFarm"]

log = logging.getLogger(__name__)

DEMO_MODELS: Final = ("X1C", "P1S", "A1", "A1 mini", "H2D", "P1P", "X1E", "P2S")
DEMO_FILE: Final = "demo.gcode.3mf"
#: A harmless HMS entry for the demo: "the chamber temperature is too high" family (AMS/MC info).
_DEMO_HMS: Final = ((0x0300_0100, 0x0002_0002), (0x0C00_0100, 0x0001_0004), (0x0700_0100, 0x0003_0001))


class DemoFarm:
    """Virtual printers plus the director task. ``start()`` returns the gateway printer configs."""

    def __init__(self, count: int = 6, *, time_scale: float = 20.0, seed: int | None = None,
                 director: bool = True, print_minutes: int = 45) -> None:
        if count < 1:
            raise ValueError("a demo needs at least one printer")
        self.count = count
        self.time_scale = time_scale
        self.seed = seed
        self.director = director
        self.print_minutes = print_minutes
        self.sim: Any = None
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random(seed)

    async def start(self) -> list[PrinterConfig]:
        from bambulab.sim import Simulator
        from bambulab.sim.demo import demo_project

        self.sim = Simulator(time_scale=self.time_scale, seed=self.seed)
        await self.sim.start()
        ctx = printer_ssl_context(cadata=self.sim.ca.ca_pem)
        project = demo_project(minutes=self.print_minutes, layers=120)
        configs = []
        for i in range(self.count):
            vp = await self.sim.add_printer(model=DEMO_MODELS[i % len(DEMO_MODELS)])
            vp.put_file(DEMO_FILE, project)
            if i % 3 != 2:  # most of the farm is busy; a few printers idle
                await vp.start_print(DEMO_FILE)
            configs.append(PrinterConfig(
                serial=vp.serial, name=vp.name, host="127.0.0.1", access_code=vp.access_code,
                port=vp.mqtt.port, ftps_port=vp.ftps.port if vp.ftps is not None else 990,
                camera_port=vp.camera.port if vp.camera is not None else None,
                options={"ssl_context": ctx},
            ))
        if self.director:
            self._task = asyncio.create_task(self._direct(), name="bambulab-demo-director")
        return configs

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.sim is not None:
            sim, self.sim = self.sim, None
            await sim.stop()

    async def _direct(self) -> None:
        """Every few seconds, one thing happens somewhere in the farm."""
        rng = self._rng
        while True:
            await asyncio.sleep(rng.uniform(4.0, 9.0))
            try:
                await self._step(rng)
            except Exception:  # the demo must go on
                log.debug("demo step failed", exc_info=True)

    async def _step(self, rng: random.Random) -> None:
        printers = self.sim.printers
        if not printers:
            return
        vp = rng.choice(printers)
        state = vp.engine.dyn.job.gcode_state
        roll = rng.random()
        if vp.engine.dyn.hms:
            if state == "PAUSE":  # a runout: the operator reloads the spool and resumes
                vp.engine.handle_local("print", {"command": "resume", "sequence_id": "0"})
            await vp.clear_hms()
            return
        if state in ("IDLE", "FINISH", "FAILED"):
            if roll < 0.6:
                await vp.start_print(DEMO_FILE)
        elif state == "RUNNING":
            if roll < 0.25:
                attr, code = rng.choice(_DEMO_HMS)
                await vp.inject_hms(attr, code)
            elif roll < 0.35:
                await vp.filament_runout()
