"""A fake Bambu cloud with virtual printers, for trying older blocking scripts without an account.

```python
from bambulab.compat.demo import LegacyDemo

demo = LegacyDemo()                 # starts in a background thread; stopped when the script exits
print(demo.token, demo.api_url, [p.serial for p in demo.printers])
```

The migration guide (``docs/migrating.md``) runs the older package's examples against it: the
only changes to them are the connection details (``api_url=demo.api_url``, the broker and
certificates of :attr:`LegacyDemo.broker`, a printer's address and ports).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ssl
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from bambulab.sim import Simulator, VirtualPrinter
from bambulab.sim.cloud import FakeCloud
from bambulab.sim.demo import demo_project
from bambulab.transports.tls import cloud_ssl_context

__all__ = ["LegacyDemo"]

T = TypeVar("T")


class LegacyDemo:
    """A simulator and a :class:`~bambulab.sim.cloud.FakeCloud` running on their own thread.

    One account (``email``/``password``; logins ask for an emailed code when
    ``login_mode="verifyCode"``) with a P1S and an X1C bound to it (``models=``). Each printer
    has ``benchy.gcode.3mf`` on its storage. Call :meth:`close` when done (it also runs when the
    script ends, as a fallback).
    """

    def __init__(
        self,
        models: tuple[str, ...] = ("P1S", "X1C"),
        *,
        email: str = "me@example.com",
        password: str = "my password",  # noqa: S107 - the fake cloud's demo account
        login_mode: str = "token",
    ) -> None:
        self.email = email
        self.password = password
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="legacy-demo", daemon=True)
        self._thread.start()
        self._closed = False
        self.sim = Simulator()
        self.cloud = FakeCloud(self.sim)
        try:
            self.call(self.sim.start())
            self.call(self.cloud.start())
            self.account = self.do(lambda: self.cloud.add_account(email, password, login_mode=login_mode))
            self.printers: list[VirtualPrinter] = []
            for model in models:
                printer = self.call(self.sim.add_printer(model=model, quirks={"push_interval": 0.3}))
                printer.put_file("benchy.gcode.3mf", demo_project(minutes=20, layers=10))
                self.printers.append(printer)
            self.do(self._bind_all)
        except BaseException:
            self.close()
            raise
        atexit.register(self.close)

    def _bind_all(self) -> None:
        for printer in self.printers:
            self.cloud.bind(self.account, printer)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the demo's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def do(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the demo's loop (the fake cloud is not thread-safe)."""

        async def run() -> T:
            return fn()

        return self.call(run())

    @property
    def token(self) -> str:
        """A fresh access token for the account, as a login gives."""
        return self.do(lambda: self.cloud.issue_token(self.account))

    @property
    def uid(self) -> int:
        return self.account.uid

    @property
    def api_url(self) -> str:
        return self.cloud.api_url

    @property
    def broker(self) -> dict[str, Any]:
        """``host``, ``port``, ``ssl_context``, ``server_hostname`` of the fake cloud's MQTT broker."""
        return {"host": "127.0.0.1", "port": self.cloud.mqtt_port, "server_hostname": "us.mqtt.bambulab.com",
                "ssl_context": cloud_ssl_context(ca_data=self.cloud.ca_pem.decode())}

    @property
    def mqtt_client_options(self) -> dict[str, Any]:
        """``broker_host``, ``port``, ``ssl_context`` for :class:`bambulab.MQTTClient` through the fake broker."""
        return {"broker_host": "127.0.0.1", "port": self.cloud.mqtt_port, "ssl_context": self.cloud.ca.client_context()}

    def printer_context(self) -> ssl.SSLContext:
        """A TLS context trusting the virtual printers' certificates (real ones use Bambu's CA)."""
        return self.sim.ca.client_context()

    def last_code(self) -> str:
        """The login code the fake cloud last "emailed" to the account."""
        return self.do(lambda: self.cloud.last_code(self.email)) or ""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._loop.is_running():
                with contextlib.suppress(RuntimeError):  # at interpreter exit, thread pools are gone
                    self.call(self.cloud.stop())
                    self.call(self.sim.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
