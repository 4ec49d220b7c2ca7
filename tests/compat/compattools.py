"""A simulator and a fake cloud on an event loop in a background thread, for blocking legacy clients."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from bambulab.sim import Simulator, VirtualPrinter
from bambulab.sim.cloud import Account, FakeCloud

T = TypeVar("T")

EMAIL = "alice@example.com"
PASSWORD = "correct horse battery"


class CloudThread:
    """The fake cloud is not thread-safe: touch it through :meth:`do` / :meth:`call`."""

    def __init__(self, models: tuple[str, ...] = ("P1S", "X1C"), **cloud_kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="compat-cloud", daemon=True)
        self._thread.start()
        self.sim = Simulator(seed=1234)
        self.cloud = FakeCloud(self.sim, seed=99, **cloud_kwargs)
        try:
            self.call(self.sim.start())
            self.call(self.cloud.start())
            self.account: Account = self.do(lambda: self.cloud.add_account(EMAIL, PASSWORD, name="Alice"))
            self.printers: list[VirtualPrinter] = []
            for i, model in enumerate(models):
                printer = self.call(self.sim.add_printer(model=model, name=f"{model}-{i + 1}",
                                                         quirks={"push_interval": 0.2}))
                self.do(lambda p=printer: self.cloud.bind(self.account, p))
                self.printers.append(printer)
        except BaseException:
            self.close()
            raise

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def do(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return self.call(run())

    def token(self) -> str:
        return self.do(lambda: self.cloud.issue_token(self.account))

    @property
    def api_url(self) -> str:
        return self.cloud.api_url

    def broker(self) -> dict[str, Any]:
        """Keyword arguments that point a client at the fake cloud's MQTT broker."""
        return {"host": "127.0.0.1", "port": self.cloud.mqtt_port, "server_hostname": "us.mqtt.bambulab.com",
                "ssl_context": ssl.create_default_context(cadata=self.cloud.ca_pem.decode())}

    def close(self) -> None:
        try:
            self.call(self.cloud.stop())
            self.call(self.sim.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
