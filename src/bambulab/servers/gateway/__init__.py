"""The farm gateway: one :class:`Gateway` (fleet + config + services) behind an ASGI app.

The :class:`Gateway` object needs no web framework; :mod:`bambulab.servers.gateway.app` builds the
Starlette app over it (``pip install "bambulab[server]"``). Other parts plug in through two seams:

* ``routes(gateway) -> list[BaseRoute]`` in their module, one line in ``app.py``'s list;
* :meth:`Gateway.add_service` for anything with ``async start()`` / ``async stop()`` (the history
  writer, the MQTT publisher, the camera hub). Services start after the fleet and stop before it,
  in reverse order, each within the shutdown budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bambulab._version import __version__
from bambulab.exceptions import BambuError
from bambulab.farm.config import GatewayConfig, PrinterConfig
from bambulab.farm.fleet import Fleet

__all__ = ["Gateway", "Service"]

log = logging.getLogger(__name__)


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Gateway:
    """Everything the routes read: the fleet, the configuration and the registered services."""

    def __init__(self, config: GatewayConfig | None = None, *, fleet: Fleet | None = None) -> None:
        self.config = config or GatewayConfig()
        self.fleet = fleet or Fleet(coalesce=self.config.coalesce_ms / 1000, stale_after=self.config.stale_after)
        #: Set by the history service (farm.history) when history is enabled.
        self.history: Any = None
        #: Set by the dashboard: serves ``/`` to browsers (``Accept: text/html``).
        self.html_index: Callable[[Any], Awaitable[Any]] | None = None
        self.services: list[Service] = []
        #: ASGI middleware (class, kwargs) added with :meth:`add_middleware`, outermost first.
        self.middleware: list[tuple[Any, dict[str, Any]]] = []
        #: ``observe(scope, status, seconds)`` callables run for every HTTP request (the metrics).
        self.request_observers: list[Callable[[Any, int, float], None]] = []
        self.version = __version__
        self.started_at = time.time()
        self.sse_clients = 0
        #: Recent control calls (who, what, printer, result), newest last; never secrets.
        self.control_log: deque[dict[str, Any]] = deque(maxlen=500)
        self.stopping = asyncio.Event()
        self._started = False
        self._service_tasks: set[asyncio.Task[None]] = set()
        #: Extra objects a demo or test keeps alive with the gateway (the simulator, ...).
        self.extras: dict[str, Any] = {}

    @property
    def id(self) -> str:
        """This gateway's name (``[gateway] id``, default the host name): distinct per shard."""
        return self.config.id

    def add_middleware(self, cls: Any, **kwargs: Any) -> None:
        """Wrap the app in an ASGI middleware (call from ``routes(gateway)``, before the app is built)."""
        self.middleware.append((cls, kwargs))

    async def control(self, serial: str, action: str, body: dict[str, Any] | None = None, *,
                      who: str) -> dict[str, Any]:
        """Run a control action as the HTTP route does after its token check (see
        :func:`bambulab.servers.gateway.control.run_control`)."""
        from bambulab.servers.gateway.control import run_control

        return await run_control(self, serial, action, body or {}, who=who)

    @property
    def control_enabled(self) -> bool:
        """Control routes work only when enabled in the config and at least one token exists."""
        return self.config.control and bool(self.config.tokens)

    def add_service(self, service: Service) -> None:
        """Register something with ``async start()`` / ``async stop()``; started with the gateway
        (at once if it is already running) and stopped before the fleet closes."""
        self.services.append(service)
        if self._started:
            task = asyncio.get_running_loop().create_task(self._start_service(service))
            self._service_tasks.add(task)
            task.add_done_callback(self._service_tasks.discard)

    async def _start_service(self, service: Service) -> None:
        try:
            await service.start()
        except Exception:
            log.exception("service %s failed to start", type(service).__name__)

    async def start(self) -> None:
        """Start the fleet, add the configured printers and accounts (without waiting for them to
        connect), then start the services."""
        if self._started:
            return
        self._started = True
        await self.fleet.start()
        for cloud in self.config.clouds:
            await self.fleet.add_cloud(cloud)
        for printer in self.config.printers:
            await self.fleet.add(printer)
        for service in list(self.services):
            await self._start_service(service)

    def begin_shutdown(self) -> None:
        """The first step of a shutdown, before the HTTP server stops: long-lived responses (event
        streams, camera streams) see :attr:`stopping` set and their subscriptions end."""
        self.stopping.set()
        self.fleet.end_subscriptions()

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Stop services (newest first), then close every connection; bounded by ``timeout``."""
        self.stopping.set()
        deadline = asyncio.get_running_loop().time() + timeout
        for service in reversed(self.services):
            left = max(0.1, deadline - asyncio.get_running_loop().time() - 1.0)
            try:
                async with asyncio.timeout(left):
                    await service.stop()
            except Exception:
                log.exception("service %s failed to stop", type(service).__name__)
        left = max(0.5, deadline - asyncio.get_running_loop().time())
        try:
            async with asyncio.timeout(left):
                await self.fleet.close()
        except TimeoutError:
            log.warning("closing the printer connections took more than %.1f s", left)
        for extra in list(self.extras.values()):
            stop = getattr(extra, "stop", None)
            if stop is not None:
                with contextlib.suppress(Exception):
                    await stop()
        self._started = False

    async def add_printer(self, cfg: PrinterConfig) -> Any:
        member = await self.fleet.add(cfg)
        self.config.printers.append(cfg)
        return member

    async def remove_printer(self, serial: str) -> bool:
        serial = serial.strip().upper()
        if self.fleet.get(serial) is None:
            return False
        await self.fleet.remove(serial)
        self.config.printers = [p for p in self.config.printers if p.serial != serial]
        return True

    async def reload(self, new: GatewayConfig) -> dict[str, list[str]]:
        """Apply a new configuration: add, remove or replace only the printers and accounts that
        changed; the others keep their connection. Tokens and control follow the new file."""
        old = self.config
        result: dict[str, list[str]] = {"added": [], "removed": [], "replaced": []}
        old_lan = {p.serial: p for p in old.printers}
        new_lan = {p.serial: p for p in new.printers}
        for serial in old_lan:
            if serial not in new_lan:
                await self.fleet.remove(serial)
                result["removed"].append(serial)
        for serial, cfg in new_lan.items():
            before = old_lan.get(serial)
            if before is None or before != cfg:
                if before is not None:
                    await self.fleet.remove(serial)
                    result["replaced"].append(serial)
                else:
                    result["added"].append(serial)
                try:
                    await self.fleet.add(cfg)
                except BambuError as exc:
                    log.error("reload: cannot add printer %s: %s", serial, exc)
        old_clouds = {c.name: c for c in old.clouds}
        new_clouds = {c.name: c for c in new.clouds}
        for name, ccfg in old_clouds.items():
            if name not in new_clouds or new_clouds[name] != ccfg:
                await self.fleet.remove_cloud(name)
                result["removed"].append(f"cloud:{name}")
        for name, ccfg in new_clouds.items():
            if name not in self.fleet.accounts:
                await self.fleet.add_cloud(ccfg)
                result["added"].append(f"cloud:{name}")
        new.sections = new.sections or old.sections
        self.config = new
        log.warning("configuration reloaded: %s", {k: v for k, v in result.items() if v} or "no printer changed")
        return result
