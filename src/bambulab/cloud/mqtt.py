"""Cloud MQTT: one TLS connection to the Bambu cloud broker for all of an account's printers.

```python
from bambulab.cloud.mqtt import CloudConnection

async with CloudConnection(token, devices=["01P00A123456789"]) as cloud:
    printer = cloud.printer("01P00A123456789")
    print(printer.status.job.state)
    await printer.set_light(False)
```

* **Broker**: ``us.mqtt.bambulab.com:8883`` (``region="global"``) or ``cn.mqtt.bambulab.com:8883``
  (``"china"``). Its certificate is public (a web CA), so the default context verifies the chain
  *and* the host name with the system's CA store. ``host``, ``port``, ``ssl_context`` and
  ``server_hostname`` override this (tests point them at :class:`~bambulab.sim.cloud.FakeCloud`).
* **Login**: username ``u_{uid}``, password the access token (PROTOCOL.md §5). The uid comes from
  ``uid=``, else from a token object's ``uid`` (:class:`bambulab.cloud.Token`), else from a
  JWT-shaped token's ``username: "u_<uid>"`` claim (signature not checked), else from the
  preference endpoint of the HTTP API (:class:`bambulab.cloud.AsyncBambuClient`).
  CONNACK 4 or 5 (expired, revoked or wrong token) raises
  :class:`~bambulab.exceptions.TokenExpiredError`: log in again.
* **Devices**: ``devices=[serial, ...]``, or ``None`` for every device bound to the account
  (listed through the HTTP API when connecting). Each gets **one SUBSCRIBE** to its
  ``device/{serial}/report`` topic; wildcards are never sent (the broker refuses them). A device
  the broker refuses (not bound to this account) raises :class:`~bambulab.exceptions.CloudError`
  (``code="not_bound"``) from :meth:`CloudConnection.connect` or :meth:`CloudConnection.add`; if
  it happens on a reconnect (the device was unbound meanwhile), only that printer stops for good.
* **Printers**: :class:`CloudPrinter` is a :class:`~bambulab.printer.Printer` whose link is its
  share of this connection (:class:`CloudLink`), so ``state``, ``status``, ``events()``,
  ``command()``, ``wait_for()``, ``refresh()`` and the convenience commands (``pause()``,
  ``set_light()``, ``gcode()`` ...) behave as on the LAN. Commands are published to
  ``device/{serial}/request``; the broker relays them unchanged and the printer's
  acknowledgement comes back on the report topic. FTPS and the camera are LAN services: a cloud
  printer has neither (``endpoint``, ``files``, ``camera`` raise
  :class:`~bambulab.exceptions.UnsupportedError`).
* **Sequence ids**: our own increasing ids, not the ``"0"`` that commands originated *by the
  cloud service* carry (PROTOCOL.md §1.6, §5). The broker relays ids untouched, and every client
  of the account (the phone app, Studio) sees every acknowledgement, so a unique id is the only
  way to tell our ack from theirs; authorization-control firmware also rejects reused ids.
* **user_id**: Bambu Studio adds the account's ``user_id`` to ``gcode_line`` commands it sends
  through the cloud (PROTOCOL.md §3.2), and some firmware expects it there; a
  :class:`CloudPrinter` adds ``"user_id": "<uid>"`` to every ``print.gcode_line`` (so also to
  ``set_nozzle_temp``, ``set_fan``, ``home`` ..., which are G-code). Other commands go unchanged.
* **Offline printers**: the broker accepts a bound printer's topics whether or not the printer is
  online. A printer that does not answer ``get_version``/``pushall`` within ``command_timeout``
  of connecting is *offline*: its state stays as it was (empty at first), ``connected`` is False,
  its event streams get :class:`~bambulab.events.ConnectionLost` (``reconnecting=True``), and
  commands are still sent but time out with a message saying the printer has not reported through
  the cloud. A printer also goes offline when it is silent for ``watchdog`` seconds (half-way it
  is nudged with ``pushing.start``) or when the cloud injects ``event: client.disconnected``.
  When it reports again a pushall fetches a full report, and
  :class:`~bambulab.events.ConnectionRestored` follows.
* **Reconnect**: a lost connection (network, broker restart) is retried with jittered exponential
  backoff (``backoff``, 1 s doubling to 60 s); every device is subscribed and greeted again.
  TokenExpiredError on a reconnect stops everything for good: the printers' event streams end
  with it and later calls raise it.
* **Secrets**: the token is never in a repr, a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from bambulab._lifecycle import AsyncResource
from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    CloudError,
    NotConnectedError,
    TokenExpiredError,
)
from bambulab.link import Clock, LinkClient, LoopClock, Session, Supervisor, Watchdog, WatchdogVerdict, dumps
from bambulab.printer import Printer
from bambulab.protocol import commands as cmd
from bambulab.protocol.models import PrinterModel, model_by_code
from bambulab.protocol.state import is_full_report, is_status_report
from bambulab.transports.mqtt import MqttConnection, SubscriptionRefusedError
from bambulab.transports.tls import PrinterCertificateError, cloud_ssl_context

__all__ = ["BROKERS", "CloudConnection", "CloudLink", "CloudPrinter", "uid_from_token"]

log = logging.getLogger(__name__)

#: The cloud MQTT broker of each region (PROTOCOL.md §5).
BROKERS: Final[Mapping[str, str]] = {"global": "us.mqtt.bambulab.com", "china": "cn.mqtt.bambulab.com"}
_REGION_ALIASES: Final = {"global": "global", "us": "global", "china": "china", "cn": "china"}
_PORT: Final = 8883
_LOGIN_AGAIN: Final = "log in again (bambu login) and retry with the new token"


class _TokenLike(Protocol):
    """A token object such as :class:`bambulab.cloud.Token` (only these attributes are read)."""

    @property
    def access_token(self) -> str: ...


def uid_from_token(token: str) -> str | None:
    """The uid in a JWT-shaped token's ``username: "u_<uid>"`` claim (the signature is not checked).

    ``None`` for an opaque token (newer accounts): ask the HTTP API's preference endpoint instead.
    """
    import base64
    import binascii
    import json

    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    username = claims.get("username") if isinstance(claims, dict) else None
    if isinstance(username, str) and username.startswith("u_") and username[2:].isdigit():
        return username[2:]
    return None


def _normalize_uid(uid: int | str) -> str:
    text = str(uid).strip()
    text = text[2:] if text.startswith("u_") else text
    if not text.isdigit():
        raise ValueError("uid must be the account's numeric user id (with or without the 'u_' prefix)")
    return text


def _token_refused(code: int) -> BambuError:
    """CONNACK refusals of the cloud broker (never mention the token itself)."""
    if code in (4, 5):
        return TokenExpiredError(
            f"the Bambu cloud broker refused the login (CONNACK {code}): the access token has expired, was "
            f"revoked, or does not belong to this uid; {_LOGIN_AGAIN}"
        )
    if code == 3:
        return BambuConnectionError("the Bambu cloud broker is unavailable (CONNACK 3); retry later")
    return BambuConnectionError(f"the Bambu cloud broker refused the connection (CONNACK {code})")


def _region(region: str) -> str:
    try:
        return _REGION_ALIASES[region.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown region {region!r}: use 'global' or 'china'") from None


class CloudPrinter(Printer):
    """One printer reached through an account's :class:`CloudConnection` (see the module docstring).

    A :class:`~bambulab.printer.Printer` whose link is its share of the account connection
    (:class:`CloudLink`). Made by :meth:`CloudConnection.add` or the ``devices`` argument;
    :meth:`close` removes just this printer from the connection.
    """

    def __init__(
        self,
        cloud: CloudConnection,
        serial: str,
        *,
        model: PrinterModel | str | None = None,
        command_timeout: float = 10.0,
        pushall_interval: float = 3.0,
    ) -> None:
        self._cloud_link = CloudLink(cloud, serial)
        self._setup(
            serial, self._cloud_link, model=model, command_timeout=command_timeout, pushall_interval=pushall_interval
        )

    @property
    def cloud(self) -> CloudConnection:
        """The account connection this printer goes through."""
        return self._cloud_link.connection

    @property
    def link(self) -> CloudLink:
        """This printer's share of the account connection."""
        return self._cloud_link

    @property
    def online(self) -> bool:
        """Whether the printer reports through the cloud (False while offline or disconnected)."""
        return self.connected


class CloudLink:
    """One printer's share of a :class:`CloudConnection` (a :class:`~bambulab.link.PrinterLink`).

    The connection runs the MQTT session and its reconnects for every printer; the link tracks
    whether this printer reports through it (offline after ``command_timeout`` without an answer
    to the greeting, after ``watchdog`` of silence, or when the cloud says it disconnected).
    """

    name: Final = "the Bambu cloud"

    def __init__(self, connection: CloudConnection, serial: str) -> None:
        self.connection = connection
        self._key = serial.strip().upper()
        self.report_topic = f"device/{self._key}/report"
        self._client: LinkClient | None = None
        self._offline = False  # known silent: the next report triggers a pushall, the full report restores
        self._offline_since: float | None = None  # loop time
        self._greeting = False
        self._watchdog = Watchdog(connection.watchdog)

    def __repr__(self) -> str:
        return f"<CloudLink {self._key} {self.where}>"

    @property
    def printer(self) -> LinkClient:
        if self._client is None:
            raise RuntimeError("the link is not attached to a printer")
        return self._client

    @property
    def where(self) -> str:
        return f"via {self.connection.host}:{self.connection.port}"

    @property
    def connected(self) -> bool:
        return self.connection.connected

    @property
    def offline(self) -> bool:
        return self._offline

    def attach(self, client: LinkClient) -> None:
        self._client = client

    async def connect(self) -> None:
        """Connect the account's connection if it is not connected yet (it serves every printer)."""
        await self.connection.connect()

    async def close(self) -> None:
        self.connection._forget(self)

    def usable(self) -> bool:
        # Unlike the LAN, a printer that is offline still gets the command: the cloud cannot tell
        # reliably, and the printer may be back. The timeout then says why (``silence_hint``).
        return self.connection.connected

    def send(self, payload: Mapping[str, Any]) -> None:
        conn = self.connection._conn
        if conn is None:
            raise NotConnectedError("not connected to the Bambu cloud")
        conn.send(self.printer.request_topic, dumps(self._outgoing(payload)))

    def _outgoing(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        body = request.get("print")
        uid = self.connection.uid
        if isinstance(body, Mapping) and body.get("command") == "gcode_line" and "user_id" not in body and uid:
            return {**request, "print": {**body, "user_id": uid}}
        return request

    def silence_hint(self) -> str:
        printer = self.printer
        if printer.ready:
            return ""
        if self._offline_since is not None:
            silent = asyncio.get_running_loop().time() - self._offline_since
            since = f"for {silent:.0f} s"
        else:
            since = "since the connection was made"
        return (
            f"; printer {printer.serial} has not reported through the cloud {since}: it is probably offline "
            "(switched off, or not connected to the internet)"
        )

    # ------------------------------------------------------------------ driven by the connection

    async def greet(self) -> None:
        """After (re)subscribing: ask for the version and a full report; no answer means offline."""
        printer = self.printer
        self._greeting = True
        try:
            got_full, got_version = await printer.greet()
        except BambuError:
            return  # the connection went down meanwhile: the supervisor takes over
        finally:
            self._greeting = False
        if not printer.active or not self.connection.connected:
            return
        self._watchdog.reset(printer.messages, self.connection.clock.time())
        if got_full:
            if not got_version:
                log.info("printer %s did not answer get_version through the cloud", printer.serial)
            self._came_online()
        else:
            self._went_offline(
                BambuTimeoutError(
                    f"printer {printer.serial} sent no report through the cloud within {printer.command_timeout:g} s: "
                    "it is probably offline"
                )
            )

    def receive(self, payload: bytes) -> None:
        printer = self.printer
        message = printer.decode(payload)
        if message is None:
            return
        event = message.get("event")
        if isinstance(event, dict):
            self._cloud_event(event)
        printer.handle(message)
        if not self._offline or self._greeting or not printer.active:
            return
        section = message.get("print")
        if is_full_report(section):
            self._came_online()
        elif is_status_report(section) or message.get("info") is not None:
            printer.request_full()

    def tick(self, now: float, conn: MqttConnection) -> None:
        """The connection's watchdog, once per interval for every printer."""
        printer = self.printer
        verdict = self._watchdog.check(printer.messages, now, armed=printer.ready and not self._greeting)
        if verdict is WatchdogVerdict.EXPIRED:
            silence, limit = self._watchdog.silence, self._watchdog.limit
            self._went_offline(
                BambuTimeoutError(
                    f"no report from printer {printer.serial} through the cloud for {silence:.0f} s "
                    f"(watchdog {limit:g} s): it is probably offline"
                )
            )
        elif verdict is WatchdogVerdict.NUDGE:
            log.debug(
                "printer %s silent for %.1f s: sending pushing.start through the cloud",
                printer.serial, self._watchdog.silence,
            )
            with contextlib.suppress(BambuError):
                conn.send(printer.request_topic, dumps(cmd.start_pushing(printer.sequence)))

    def _came_online(self) -> None:
        was_offline = self._offline
        self._offline = False
        self._offline_since = None
        self._watchdog.reset(self.printer.messages, self.connection.clock.time())
        if was_offline:
            log.info("printer %s reports through the cloud again", self.printer.serial)
        self.printer.up()

    def _went_offline(self, error: BambuError) -> None:
        if self._offline:
            return
        self._offline = True
        self._offline_since = asyncio.get_running_loop().time()
        log.info("printer %s is offline: %s", self.printer.serial, error)
        self.printer.lost(error, True)

    def _cloud_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "client.disconnected" and self.printer.ready:
            self._went_offline(
                BambuConnectionError(f"the cloud reports that printer {self.printer.serial} disconnected from it")
            )
        elif kind == "client.connected" and self._offline:
            self.printer.request_full()


class CloudConnection(AsyncResource):
    """One MQTT connection to the Bambu cloud broker for an account's printers (module docstring).

    ``token`` is the access token (a ``str``, or an object with ``access_token`` and optionally
    ``uid`` and ``region``, such as :class:`bambulab.cloud.Token`). ``devices`` are serials, or
    ``None`` to list the account's bound devices through the HTTP API (``api_url`` overrides its
    host). ``command_timeout``, ``pushall_interval`` apply to each printer; ``watchdog`` is the
    silence after which a printer counts as offline.
    """

    def __init__(
        self,
        token: str | _TokenLike,
        *,
        uid: int | str | None = None,
        devices: Iterable[str] | None = (),
        region: str | None = None,
        host: str | None = None,
        port: int = _PORT,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        api_url: str | None = None,
        command_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        keepalive: int = 60,
        watchdog: float = 60.0,
        pushall_interval: float = 3.0,
        reconnect: bool = True,
        backoff: tuple[float, float] = (1.0, 60.0),
        clock: Clock | None = None,
    ) -> None:
        access = token if isinstance(token, str) else getattr(token, "access_token", None)
        if not isinstance(access, str) or not access.strip():
            raise ValueError("an access token is required (log in first: bambu login, or BambuAuthenticator)")
        if command_timeout <= 0 or watchdog <= 0 or connect_timeout <= 0 or pushall_interval < 0:
            raise ValueError("timeouts and the watchdog must be positive")
        if backoff[0] <= 0 or backoff[1] < backoff[0]:
            raise ValueError("backoff must be (initial > 0, maximum >= initial)")
        self._token = access.strip()
        token_uid = None if isinstance(token, str) else getattr(token, "uid", None)
        token_region = None if isinstance(token, str) else getattr(token, "region", None)
        self._region = _region(region or (token_region if isinstance(token_region, str) else None) or "global")
        given = uid if uid is not None else token_uid
        self._uid: str | None = _normalize_uid(given) if given is not None else uid_from_token(self._token)
        self._host = host or BROKERS[self._region]
        self._port = port
        self._ssl_context = ssl_context or cloud_ssl_context()
        self._server_hostname = server_hostname
        self._api_url = api_url
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._watchdog = watchdog
        self._pushall_interval = pushall_interval
        self._clock: Clock = clock or LoopClock()
        self._supervisor = Supervisor(
            name="the Bambu cloud",
            open=lambda: self._open(first=False),
            tick=self._tick,
            on_lost=self._on_lost,
            on_stop=self._stop_all,
            watchdog=watchdog,
            reconnect=reconnect,
            backoff=backoff,
            clock=self._clock,
        )
        self._list_devices = devices is None
        self._printers: dict[str, CloudPrinter] = {}
        self._routes: dict[str, CloudLink] = {}
        self._conn: MqttConnection | None = None
        self._connecting: asyncio.Lock | None = None
        self._closed = False
        self._fatal: BaseException | None = None
        #: Connections made (1 after the first connect; more after reconnects).
        self.connections = 0
        #: Messages on topics no printer here listens to (a closed printer's, say).
        self.unrouted = 0
        for serial in devices or ():
            self._register(serial)

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        elif self._fatal is not None:
            state = "failed"
        else:
            state = "connected" if self.connected else "disconnected"
        who = f"u_{self._uid}" if self._uid else "uid unknown"
        return f"<CloudConnection {who} {self._host}:{self._port} {len(self._printers)} printers {state}>"

    # ------------------------------------------------------------------ properties

    @property
    def uid(self) -> str | None:
        """The account's numeric uid (a string), once known."""
        return self._uid

    @property
    def username(self) -> str | None:
        """The MQTT user name, ``u_{uid}``."""
        return f"u_{self._uid}" if self._uid else None

    @property
    def region(self) -> str:
        return self._region

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def watchdog(self) -> float:
        """Seconds of silence after which a printer counts as offline."""
        return self._watchdog

    @property
    def clock(self) -> Clock:
        """Where the watchdog and the backoff read the time."""
        return self._clock

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.connected

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def printers(self) -> list[CloudPrinter]:
        """The printers on this connection, in the order they were added."""
        return list(self._printers.values())

    @property
    def serials(self) -> list[str]:
        return list(self._printers)

    def printer(self, serial: str) -> CloudPrinter:
        """The printer with this serial (added through ``devices`` or :meth:`add`)."""
        found = self._printers.get(serial.strip().upper())
        if found is None:
            raise KeyError(f"printer {serial.strip().upper()} is not on this cloud connection; add it first")
        return found

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Connect, subscribe every device and greet it. Failures raise at once (no retry).

        Raises :class:`~bambulab.exceptions.TokenExpiredError` (log in again),
        :class:`~bambulab.exceptions.CloudError` (a device not bound to the account),
        :class:`~bambulab.exceptions.BambuConnectionError` or ``BambuTimeoutError``. Offline
        printers do not make it fail (see the module docstring).
        """
        self._check_open()
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            self._check_open()
            if self._supervisor.running:
                return
            await self._prepare()
            session = await self._open(first=True)
            self._supervisor.start(session, task_name="bambulab-cloud-mqtt")

    async def close(self) -> None:
        """Disconnect for good and close every printer."""
        if self._closed:
            return
        self._closed = True
        await self._supervisor.stop()
        for printer in list(self._printers.values()):
            await printer.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        log.debug("cloud connection for %s closed", self.username or "an unknown uid")

    async def add(self, serial: str, *, model: PrinterModel | str | None = None) -> CloudPrinter:
        """Add a device. While connected it is subscribed and greeted at once (a refusal raises
        :class:`~bambulab.exceptions.CloudError`); otherwise at :meth:`connect`."""
        self._check_open()
        key = serial.strip().upper()
        existing = self._printers.get(key)
        if existing is not None:
            return existing
        printer = self._register(key, model)
        conn = self._conn
        if conn is not None and conn.connected:
            link = self._routes[f"device/{key}/report"]
            refused = await self._subscribe([link], conn)
            if refused:
                await printer.close()
                raise refused[0][1]
            await link.greet()
        return printer

    async def remove(self, serial: str) -> None:
        """Close one printer and stop routing its reports (the broker subscription stays until reconnect)."""
        found = self._printers.get(serial.strip().upper())
        if found is not None:
            await found.close()

    # ------------------------------------------------------------------ internals

    def _register(self, serial: str, model: PrinterModel | str | None = None) -> CloudPrinter:
        printer = CloudPrinter(
            self, serial, model=model, command_timeout=self._command_timeout, pushall_interval=self._pushall_interval
        )
        self._printers[printer.serial] = printer
        self._routes[printer.link.report_topic] = printer.link
        return printer

    def _links(self) -> list[CloudLink]:
        return [printer.link for printer in self._printers.values()]

    def _forget(self, link: CloudLink) -> None:
        serial = link.printer.serial
        found = self._printers.get(serial)
        if found is not None and found.link is link:
            del self._printers[serial]
        if self._routes.get(link.report_topic) is link:
            del self._routes[link.report_topic]

    def _check_open(self) -> None:
        if self._closed:
            raise NotConnectedError("the cloud connection is closed")
        if self._fatal is not None:
            raise self._fatal

    async def _prepare(self) -> None:
        """Find what the first connect needs: the uid and, with ``devices=None``, the device list."""
        if self._uid is not None and not self._list_devices:
            return
        try:
            from bambulab.cloud.client import AsyncBambuClient
        except ImportError as exc:  # the HTTP client's dependency is not installed
            what = "the account's uid (or pass uid=)" if self._uid is None else "the devices (or pass devices=[...])"
            raise ValueError(f"the cloud HTTP client (httpx2) is needed to find {what}") from exc
        async with AsyncBambuClient(self._token, region=self._region, api_url=self._api_url) as api:
            if self._uid is None:
                self._uid = _normalize_uid(await api.uid())
            if self._list_devices:
                self._list_devices = False
                for device in await api.devices():
                    model: PrinterModel | None = None
                    for code in (device.model_name, device.model_code):
                        with contextlib.suppress(KeyError, AttributeError):
                            model = model_by_code(code)
                            break
                    if device.dev_id and device.dev_id.upper() not in self._printers:
                        self._register(device.dev_id, model)

    async def _open(self, *, first: bool) -> Session:
        """Connect, subscribe every device (one SUBSCRIBE each), greet them all."""
        if self._uid is None:  # pragma: no cover - _prepare() found it
            raise ValueError("the account's uid is unknown: pass uid=")
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[BaseException | None] = loop.create_future()
        where = f"{self._host}:{self._port}"
        conn = MqttConnection(
            self._host,
            self._port,
            on_message=self._on_message,
            on_close=functools.partial(self._on_close, lost),
            username=f"u_{self._uid}",
            password=self._token,
            ssl_context=self._ssl_context,
            server_hostname=self._server_hostname,
            keepalive=self._keepalive,
            connect_timeout=self._connect_timeout,
            peer="the Bambu cloud broker",
            refusal=_token_refused,
        )
        try:
            try:
                await conn.connect()
            except PrinterCertificateError as exc:
                raise AuthenticationError(
                    f"the TLS certificate of the cloud broker at {where} did not verify; pass ssl_context= "
                    "if you connect to another broker on purpose"
                ) from exc
            self._conn = conn
            # Printers stopped for good (unbound meanwhile) are neither subscribed nor greeted again.
            links = [link for link in self._links() if link.printer.active]
            refused = await self._subscribe(links, conn)
            if refused and first:
                raise refused[0][1]
            for link, error in refused:
                log.error("%s", error)
                link.printer.stop(error)
            self.connections += 1
            await asyncio.gather(*(link.greet() for link in self._links() if link.printer.active))
            if lost.done():
                raise BambuConnectionError("the Bambu cloud broker closed the connection while it was being set up")
        except BaseException:
            if self._conn is conn:
                self._conn = None
            conn.abort()
            raise
        online = sum(1 for p in self._printers.values() if p.connected)
        log.info(
            "connected to the Bambu cloud at %s as u_%s: %d printers, %d online",
            where, self._uid, len(self._printers), online,
        )
        return conn, lost

    async def _subscribe(self, links: list[CloudLink], conn: MqttConnection) -> list[tuple[CloudLink, CloudError]]:
        """One SUBSCRIBE per report topic (concurrently); the printers the broker refused."""
        results = await asyncio.gather(
            *(conn.subscribe(link.report_topic, timeout=self._command_timeout) for link in links),
            return_exceptions=True,
        )
        refused: list[tuple[CloudLink, CloudError]] = []
        for link, result in zip(links, results, strict=True):
            if isinstance(result, SubscriptionRefusedError):
                refused.append((link, CloudError(
                    f"the Bambu cloud refused the reports of printer {link.printer.serial}: it is not bound to account "
                    f"u_{self._uid} (check the serial, or bind the printer in Bambu Handy or Studio)",
                    code="not_bound",
                )))
            elif isinstance(result, BaseException):
                raise result
        return refused

    def _on_message(self, topic: str, payload: bytes) -> None:
        link = self._routes.get(topic)
        if link is None:
            self.unrouted += 1
            return
        link.receive(payload)

    def _on_close(self, lost: asyncio.Future[BaseException | None], reason: BaseException | None) -> None:
        """The transport's close callback: fail what waits on this connection, wake the supervisor."""
        for link in self._links():
            link.printer.down(reason)
        if not lost.done():
            lost.set_result(reason)

    def _tick(self, now: float, conn: MqttConnection) -> None:
        for link in self._links():
            link.tick(now, conn)

    def _on_lost(self, reason: BaseException | None, reconnecting: bool) -> None:
        self._conn = None
        for link in self._links():
            link.printer.lost(reason, reconnecting)

    def _stop_all(self, error: BaseException) -> None:
        self._conn = None
        self._fatal = error
        for link in self._links():
            link.printer.stop(error)
