"""Shared fixtures for the cloud tests: a running fake cloud with one account and two bound printers.

The simulator and the :class:`~bambulab.sim.cloud.FakeCloud` run on their own event loop in a
background thread, so blocking clients (and the CLI) as well as async clients on the test's own
loop reach them over real sockets on 127.0.0.1. The fake cloud is not thread-safe: touch it
through :meth:`CloudThread.do` (runs a function on its loop) or :meth:`CloudThread.call`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from bambulab.sim import Simulator, VirtualPrinter
from bambulab.sim.cloud import Account, FakeCloud

T = TypeVar("T")

EMAIL = "alice@example.com"
PASSWORD = "correct horse battery"


class CloudThread:
    """A :class:`Simulator` and a :class:`FakeCloud` on an event loop in a background thread."""

    def __init__(self, *, time_scale: float = 1.0, **cloud_kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-cloud", daemon=True)
        self._thread.start()
        self.sim = Simulator(time_scale=time_scale, seed=1234)
        self.cloud = FakeCloud(self.sim, seed=99, **cloud_kwargs)
        try:
            self.call(self.sim.start())
            self.call(self.cloud.start())
        except BaseException:
            self.close()
            raise

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def do(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the cloud's loop (the fake cloud is not thread-safe)."""

        async def run() -> T:
            return fn()

        return self.call(run())

    def add_printer(self, **config: Any) -> VirtualPrinter:
        return self.call(self.sim.add_printer(**config))

    def close(self) -> None:
        try:
            self.call(self.cloud.stop())
            self.call(self.sim.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@dataclass
class CloudEnv:
    """A running fake cloud, its account (``EMAIL``/``PASSWORD``, token login) and two bound printers."""

    thread: CloudThread
    account: Account
    printers: list[VirtualPrinter] = field(default_factory=list)
    email: str = EMAIL
    password: str = PASSWORD

    @property
    def cloud(self) -> FakeCloud:
        return self.thread.cloud

    @property
    def api_url(self) -> str:
        return self.cloud.api_url

    @property
    def web_url(self) -> str:
        return self.cloud.web_url

    def do(self, fn: Callable[[], T]) -> T:
        return self.thread.do(fn)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return self.thread.call(coro, timeout)

    def token(self, account: Account | None = None) -> str:
        """A fresh access token for the account (as a login would give)."""
        return self.do(lambda: self.cloud.issue_token(account or self.account))

    def switches(self, **values: Any) -> None:
        self.do(lambda: self.cloud.set_switches(**values))

    def add_account(self, email: str, password: str = PASSWORD, **kwargs: Any) -> Account:
        return self.do(lambda: self.cloud.add_account(email, password, **kwargs))


@pytest.fixture
def cloud_thread() -> Iterator[CloudThread]:
    """A running simulator and fake cloud (no accounts yet)."""
    thread = CloudThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture
def cloud_env(cloud_thread: CloudThread) -> CloudEnv:
    """The fake cloud with one account and two bound virtual printers (a P1S and an X1C)."""
    account = cloud_thread.do(lambda: cloud_thread.cloud.add_account(EMAIL, PASSWORD, name="Alice"))
    printers = [
        cloud_thread.add_printer(model="P1S", name="Workshop"),
        cloud_thread.add_printer(model="X1C", name="Studio"),
    ]
    for printer in printers:
        cloud_thread.do(lambda p=printer: cloud_thread.cloud.bind(account, p))
    return CloudEnv(cloud_thread, account, printers)
