"""The fake cloud's state, clock and addresses: what every use case builds on."""

from __future__ import annotations

import random
import secrets
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bambulab.exceptions import SimulatorError
from bambulab.sim.ca import LeafCertificate, SimCA
from bambulab.sim.cloud.model import Account, CloudObject, CloudSwitches, Project, TaskRecord
from bambulab.sim.cloud.state import Binding, LoggedRequest, Setting, TokenRecord, public_settings

if TYPE_CHECKING:
    from bambulab.sim.cloud.http import HttpServer
    from bambulab.sim.cloud.mqtt import CloudMqttService
    from bambulab.sim.simulator import Simulator

__all__ = ["CloudBase"]


class CloudBase:
    """The fake cloud's state (every record it keeps), its clock, and where its servers listen.

    The use cases build on it, one module each; :class:`~bambulab.sim.cloud.FakeCloud` composes
    them and adds the servers' lifecycle. The constructor's arguments are FakeCloud's.
    """

    def __init__(
        self,
        simulator: Simulator | None = None,
        *,
        ca: SimCA | None = None,
        host: str = "127.0.0.1",
        api_port: int = 0,
        web_port: int = 0,
        mqtt_port: int = 0,
        tls: bool = False,
        admin: bool = False,
        admin_port: int = 0,
        storage_dir: str | Path | None = None,
        switches: CloudSwitches | None = None,
        seed: int | None = None,
    ) -> None:
        self.simulator = simulator
        self.ca = ca or (simulator.ca if simulator is not None else SimCA())
        self.host = host
        self.tls = tls
        self.switches = switches or CloudSwitches()
        self._ports = {"api": api_port, "web": web_port, "mqtt": mqtt_port, "admin": admin_port}
        self._admin_enabled = admin
        self._admin_token = secrets.token_urlsafe(32)
        self._rng = random.Random(seed)
        self._secret = secrets.token_bytes(32)  # signs presigned URLs
        self._offset = 0.0  # advance(): seconds added to the wall clock
        self._accounts: dict[int, Account] = {}
        self._by_email: dict[str, int] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._codes: dict[str, tuple[str, float]] = {}
        self._tfa_keys: dict[str, tuple[int, float]] = {}
        self._csrf: set[str] = set()
        self._bindings: dict[str, Binding] = {}
        self._tasks: dict[int, TaskRecord] = {}
        self._task_ids = self._rng.randrange(40_000_000, 50_000_000)
        self._messages: dict[int, list[dict[str, Any]]] = {}
        self._message_ids = self._rng.randrange(10_000_000, 20_000_000)
        self._projects: dict[str, Project] = {}
        self._objects: dict[str, CloudObject] = {}
        self._tickets: dict[str, str] = {}  # upload_ticket -> object key
        self._settings: dict[str, Setting] = {s.setting_id: s for s in public_settings()}
        self._storage_arg = Path(storage_dir) if storage_dir is not None else None
        self._storage: Path | None = None
        self._temp_storage = False
        self._servers: dict[str, HttpServer] = {}
        self._certs: list[LeafCertificate] = []
        self._mqtt: CloudMqttService | None = None
        self._running = False
        self._request_log: deque[LoggedRequest] = deque(maxlen=10_000)


    # ------------------------------------------------------------------ where to connect

    def _url(self, name: str) -> str:
        server = self._servers.get(name)
        if server is None:
            raise SimulatorError(f"the fake cloud's {name} server is not running")
        scheme = "https" if server.tls else "http"
        host = server.host if ":" not in server.host else f"[{server.host}]"
        return f"{scheme}://{host}:{server.port}"

    @property
    def api_url(self) -> str:
        """Base URL standing in for ``https://api.bambulab.com`` (and ``.cn``)."""
        return self._url("api")

    @property
    def web_url(self) -> str:
        """Base URL standing in for ``https://bambulab.com`` (and ``.cn``): CSRF and TFA sign-in."""
        return self._url("web")

    @property
    def admin_url(self) -> str:
        """Base URL of the admin endpoint (only when started with ``admin=True``)."""
        return self._url("admin")

    @property
    def admin_token(self) -> str:
        """The bearer token the admin endpoint requires (random per cloud)."""
        return self._admin_token

    @property
    def mqtt_host(self) -> str:
        return self.host

    @property
    def mqtt_port(self) -> int:
        """TLS port of the cloud MQTT broker (stands in for ``us.mqtt.bambulab.com:8883``)."""
        if self._mqtt is None:
            raise SimulatorError("the fake cloud's MQTT broker is not running")
        return self._mqtt.port

    @property
    def mqtt_client_count(self) -> int:
        """How many clients are connected to the cloud MQTT broker now."""
        return self._mqtt.client_count if self._mqtt is not None else 0

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate the cloud's TLS certificates chain to (the simulator's CA)."""
        return self.ca.ca_pem

    def info(self, *, include_secrets: bool = False) -> dict[str, Any]:
        """Where the servers listen (and, with ``include_secrets``, the admin token)."""
        out: dict[str, Any] = {
            "api_url": self.api_url,
            "web_url": self.web_url,
            "mqtt_host": self.mqtt_host,
            "mqtt_port": self.mqtt_port,
            "admin_url": self.admin_url if "admin" in self._servers else None,
            "accounts": len(self._accounts),
            "devices": len(self._bindings),
        }
        if include_secrets and "admin" in self._servers:
            out["admin_token"] = self._admin_token
        return out

    # ------------------------------------------------------------------ clock and switches

    def now(self) -> float:
        """The cloud's clock: wall-clock seconds plus whatever :meth:`advance` added."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the cloud's clock forward: tokens, codes and presigned URLs expire without waiting."""
        if seconds < 0:
            raise SimulatorError("the cloud's clock only moves forward")
        self._offset += seconds

    def set_switches(self, **values: Any) -> CloudSwitches:
        """Change behaviour switches by name (see :class:`CloudSwitches`); returns them."""
        try:
            self.switches.update(values)
        except ValueError as exc:
            raise SimulatorError(str(exc)) from None
        return self.switches

