"""The simulator: many virtual printers in one process, on one event loop.

One clock drives every printer: a heap of due times, so a farm of hundreds of printers costs one
task, not one per printer; pushes are spread over the interval so they do not all land at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from bambulab.exceptions import SimulatorError
from bambulab.protocol.models import model_by_code
from bambulab.sim.ca import SimCA
from bambulab.sim.config import PrinterConfig, Quirks
from bambulab.sim.printer import VirtualPrinter

__all__ = ["Simulator"]

log = logging.getLogger(__name__)


class Simulator:
    """Hosts virtual printers.

    ``time_scale`` is simulated seconds per real second (60 makes a one-hour print take a minute).
    ``ssdp_target`` (host, port) turns on SSDP NOTIFY announcements to that address;
    ``ssdp_listen`` (host, port) answers M-SEARCH there.
    """

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        ca: SimCA | None = None,
        host: str = "127.0.0.1",
        ssdp_target: tuple[str, int] | None = None,
        ssdp_listen: tuple[str, int] | None = None,
        ssdp_interval: float = 5.0,
        seed: int | None = None,
    ) -> None:
        if time_scale <= 0:
            raise SimulatorError("time_scale must be positive")
        self.time_scale = time_scale
        self.ca = ca or SimCA()
        self.host = host
        self._printers: dict[str, VirtualPrinter] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._counter = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random(seed)
        self._seed = seed
        self._ftps_hub: Any = None
        self._ssdp: Any = None
        self._ssdp_target = ssdp_target
        self._ssdp_listen = ssdp_listen
        self._ssdp_interval = ssdp_interval
        self.tick_errors = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._task is not None:
            return
        from bambulab.sim.ftps import FtpsHub

        self._ftps_hub = FtpsHub()
        if self._ssdp_target is not None or self._ssdp_listen is not None:
            from bambulab.sim.ssdp import SsdpService

            self._ssdp = SsdpService(
                announcements=self._announcements,
                target=self._ssdp_target,
                listen=self._ssdp_listen,
                interval=self._ssdp_interval,
            )
            await self._ssdp.start()
        self._task = asyncio.create_task(self._run(), name="bambu-sim-clock")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for printer in list(self._printers.values()):
            await printer.stop()
        self._printers.clear()
        if self._ssdp is not None:
            await self._ssdp.stop()
            self._ssdp = None
        if self._ftps_hub is not None:
            await asyncio.to_thread(self._ftps_hub.close)
            self._ftps_hub = None

    # ------------------------------------------------------------------ printers

    @property
    def printers(self) -> list[VirtualPrinter]:
        return list(self._printers.values())

    def printer(self, serial: str) -> VirtualPrinter:
        try:
            return self._printers[serial.upper()]
        except KeyError:
            raise SimulatorError(f"no virtual printer with serial {serial!r}") from None

    async def add_printer(self, config: PrinterConfig | None = None, **overrides: Any) -> VirtualPrinter:
        """Create and start a virtual printer; ``overrides`` set :class:`PrinterConfig` fields."""
        if self._task is None:
            raise SimulatorError("start the simulator first (async with Simulator() as sim)")
        if "quirks" in overrides and isinstance(overrides["quirks"], dict):
            overrides["quirks"] = Quirks.from_dict(overrides["quirks"])
        base = config or PrinterConfig(host=self.host)
        cfg = PrinterConfig.from_dict({**base.to_dict(include_secrets=True), **overrides})
        if cfg.seed is None and self._seed is not None:
            cfg.seed = self._rng.randrange(2**31)
        try:
            model_by_code(cfg.model)  # a clear error for an unknown model, before anything starts
        except KeyError as exc:
            raise SimulatorError(str(exc.args[0])) from None
        cfg = cfg.filled(len(self._printers))
        if cfg.serial in self._printers:
            raise SimulatorError(f"a virtual printer with serial {cfg.serial} already exists")
        printer = VirtualPrinter(cfg, ca=self.ca, time_scale=self.time_scale, ftps_hub=self._ftps_hub)
        try:
            await printer.start()
        except BaseException:
            await printer.stop()  # its temporary storage and key folder
            raise
        self._printers[cfg.serial] = printer
        interval = printer.engine.quirks.push_interval
        first = asyncio.get_running_loop().time() + self._rng.uniform(0, interval)
        heapq.heappush(self._heap, (first, next(self._counter), cfg.serial))
        self._wake.set()
        return printer

    async def add_printers(
        self, count: int, models: Iterable[str] = ("P1S",), **overrides: Any
    ) -> list[VirtualPrinter]:
        """Add ``count`` printers, cycling through ``models``."""
        cycle = itertools.cycle(list(models) or ["P1S"])
        return [await self.add_printer(model=next(cycle), **overrides) for _ in range(count)]

    async def remove_printer(self, serial: str) -> None:
        printer = self._printers.pop(serial.upper(), None)
        if printer is not None:
            await printer.stop()

    def write_ca(self, path: str | Path) -> Path:
        """Write the CA certificate that every virtual printer's TLS certificate chains to."""
        return self.ca.write_ca(path)

    def _announcements(self) -> list[Any]:
        from bambulab.protocol.ssdp import SsdpAnnouncement

        out = []
        for p in self._printers.values():
            if not p.online:
                continue
            out.append(
                SsdpAnnouncement(
                    serial=p.serial,
                    model_code=p.model.code,
                    name=p.name,
                    ip=p.engine.dyn.ip,
                    signal_dbm=p.engine.dyn.wifi_dbm,
                    connect="lan",
                    bind="free",
                    firmware=p.engine.dyn.firmware,
                )
            )
        return out

    # ------------------------------------------------------------------ the clock

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._heap and self._heap[0][0] <= now:
                due, _, serial = heapq.heappop(self._heap)
                printer = self._printers.get(serial)
                if printer is None:
                    continue
                try:
                    await printer.tick()
                except Exception:  # one broken printer must not stop the farm
                    self.tick_errors += 1
                    log.exception("virtual printer %s failed to tick", serial)
                interval = printer.engine.quirks.push_interval
                nxt = due + interval
                if nxt < now:  # fell behind (a stalled loop): skip, do not burst
                    nxt = now + interval
                heapq.heappush(self._heap, (nxt, next(self._counter), serial))
            self._wake.clear()
            delay = self._heap[0][0] - loop.time() if self._heap else 1.0
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the cancellation
            # that stop() sends when the event is set at the same moment, and stop() then hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(delay, 1.0))):
                    await self._wake.wait()
