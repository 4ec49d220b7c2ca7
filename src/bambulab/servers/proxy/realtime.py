"""Real-time printer data: one cloud MQTT connection per account, shared by all of its clients.

``POST .../device/realtime/start`` opens (or keeps open) the account's
:class:`~bambulab.cloud.mqtt.CloudConnection`, which subscribes to every device bound to that
account; ``GET .../device/realtime?device_id=`` answers the printer's merged state with its age,
and ``GET .../device/realtime/stream?device_id=`` sends it as server-sent events on every change.
Sessions are keyed by account, so a custom token only ever sees the devices of its own account
(another account's serial is "unknown" to it), and a session nobody asked about for
``idle_timeout`` seconds is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from bambulab.cloud.mqtt import CloudConnection
from bambulab.events import ConnectionLost, ConnectionRestored, StateChanged
from bambulab.exceptions import BambuError

__all__ = ["RealtimeSessions"]

log = logging.getLogger(__name__)


class _RealtimeRefusal(Exception):
    """A refusal with an HTTP status and a JSON reason."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error


@dataclass(eq=False)
class _Session:
    account: str
    connection: CloudConnection
    last_used: float
    updated: dict[str, float] = field(default_factory=dict)
    watchers: list[asyncio.Task[None]] = field(default_factory=list)
    subscribers: int = 0


class RealtimeSessions:
    """The account sessions; ``factory(real_token)`` builds an (unconnected) CloudConnection."""

    def __init__(
        self,
        factory: Callable[[str], CloudConnection],
        *,
        idle_timeout: float = 120.0,
        max_sessions: int = 100,
        connect_timeout: float = 20.0,
    ) -> None:
        self._factory = factory
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.connect_timeout = connect_timeout
        self._sessions: dict[str, _Session] = {}
        self._opening: dict[str, asyncio.Task[_Session]] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.opened = 0

    def __len__(self) -> int:
        return len(self._sessions)

    async def start(self, account: str, real_token: str, device_id: str) -> dict[str, Any]:
        existing = self._sessions.get(account)
        session = existing or await self._open(account, real_token)
        session.last_used = time.monotonic()
        serial = self._serial(session, device_id)
        printer = session.connection.printer(serial)
        return {"status": "running" if existing else "started", "device_id": serial,
                "connected": printer.connected, "idle_timeout": self.idle_timeout}

    def snapshot(self, account: str, device_id: str) -> dict[str, Any]:
        session = self._session(account)
        serial = self._serial(session, device_id)
        session.last_used = time.monotonic()
        return self._view(session, serial)

    async def stream(self, account: str, device_id: str, *, heartbeat: float = 15.0) -> AsyncGenerator[bytes, None]:
        """Server-sent events: the state now, then on every change; a comment line as heartbeat."""
        session = self._session(account)
        serial = self._serial(session, device_id)
        printer = session.connection.printer(serial)
        session.subscribers += 1
        try:
            async with printer.events(maxsize=16) as events:
                yield _sse("state", self._view(session, serial))
                while True:
                    session.last_used = time.monotonic()
                    try:
                        event = await events.get(timeout=heartbeat)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    except StopAsyncIteration:
                        yield _sse("end", {"device_id": serial})
                        return
                    if isinstance(event, StateChanged | ConnectionLost | ConnectionRestored):
                        yield _sse("state", self._view(session, serial))
        finally:
            session.subscribers -= 1
            session.last_used = time.monotonic()

    def _session(self, account: str) -> _Session:
        session = self._sessions.get(account)
        if session is None:
            raise _RealtimeRefusal(404, "no_session", "no real-time session: POST .../device/realtime/start first")
        return session

    @staticmethod
    def _serial(session: _Session, device_id: str) -> str:
        serial = device_id.strip().upper() if isinstance(device_id, str) else ""
        if serial not in session.connection.serials:
            raise _RealtimeRefusal(404, "unknown_device", "this account has no such device")
        return serial

    def _view(self, session: _Session, serial: str) -> dict[str, Any]:
        printer = session.connection.printer(serial)
        updated = session.updated.get(serial)
        age = round(time.monotonic() - updated, 3) if updated is not None else None
        return {"device_id": serial, "connected": printer.connected, "age_seconds": age,
                "state": printer.state}

    async def _open(self, account: str, real_token: str) -> _Session:
        task = self._opening.get(account)
        if task is None:  # concurrent starts for one account share one connection attempt
            if len(self._sessions) >= self.max_sessions:
                raise _RealtimeRefusal(503, "too_many_sessions", "the proxy has its maximum of real-time sessions")
            task = asyncio.ensure_future(self._connect(account, real_token))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._opening[account] = task
        return await asyncio.shield(task)

    async def _connect(self, account: str, real_token: str) -> _Session:
        connection = self._factory(real_token)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await connection.connect()
        except (BambuError, OSError, TimeoutError) as exc:
            await connection.close()
            raise _RealtimeRefusal(502, "mqtt_unavailable",
                                f"the cloud MQTT connection failed ({type(exc).__name__})") from exc
        finally:
            self._opening.pop(account, None)
        session = _Session(account, connection, time.monotonic())
        now = time.monotonic()
        for printer in connection.printers:
            if printer.state:
                session.updated[printer.serial] = now
            session.watchers.append(asyncio.create_task(self._watch(session, printer.serial),
                                                        name="bambulab-proxy-realtime"))
        self._sessions[account] = session
        self.opened += 1
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name="bambulab-proxy-realtime-reaper")
        return session

    async def _watch(self, session: _Session, serial: str) -> None:
        with contextlib.suppress(BambuError):
            async with session.connection.printer(serial).events(maxsize=64) as events:
                async for event in events:
                    if isinstance(event, StateChanged):
                        session.updated[serial] = time.monotonic()

    async def _reap(self) -> None:
        interval = max(0.05, min(5.0, self.idle_timeout / 4))
        while self._sessions:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for account, session in list(self._sessions.items()):
                if session.subscribers == 0 and now - session.last_used >= self.idle_timeout:
                    await self._close(account)

    async def _close(self, account: str) -> None:
        session = self._sessions.pop(account, None)
        if session is None:
            return
        for task in session.watchers:
            task.cancel()
        await session.connection.close()
        for task in session.watchers:
            with contextlib.suppress(asyncio.CancelledError, BambuError):
                await task
        log.debug("real-time session closed after %.0f s idle", self.idle_timeout)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for task in list(self._opening.values()):
            task.cancel()
        for account in list(self._sessions):
            await self._close(account)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
