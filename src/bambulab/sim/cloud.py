"""A fake Bambu cloud: the HTTP API, the web host's two-factor sign-in and the cloud MQTT broker.

Accounts log in the ways real ones do (token straight away, emailed code, authenticator code on
the web host) and own devices that are *virtual printers*: the device list, the live print
status and the print history come from the printers' live state, and the cloud broker relays
commands to the printers' engines and their reports back, exactly as the real cloud does
between an app and a printer.

```python
async with Simulator(time_scale=60) as sim, FakeCloud(sim) as cloud:
    printer = await sim.add_printer(model="P1S")
    alice = cloud.add_account("alice@example.com", "secret")
    cloud.bind(alice, printer)
    print(cloud.api_url, cloud.web_url, cloud.mqtt_port)
```

Nothing is emailed: :meth:`FakeCloud.last_code` returns the last code "sent" to an address.
Behaviour switches (:class:`~bambulab.sim.cloud_model.CloudSwitches`) inject Cloudflare blocks,
rate limits, server errors, delays and token expiry; they are set through
:meth:`FakeCloud.set_switches` or, when enabled, a token-protected admin endpoint on 127.0.0.1.

Not thread-safe: call it from the event loop that runs it (like the simulator itself).
See ``docs/cloud-api.md`` for the endpoints and their shapes.
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from bambulab.exceptions import SimulatorError
from bambulab.sim.ca import SimCA
from bambulab.sim.cloud_model import (
    ACTIVE_STATES,
    Account,
    CloudObject,
    CloudSwitches,
    LoginMode,
    Project,
    TaskRecord,
    TaskStatus,
    iso_time,
    jwt_token,
    opaque_token,
    presign,
    totp,
)

if TYPE_CHECKING:
    from bambulab.sim.cloud_http import HttpServer
    from bambulab.sim.cloud_mqtt import CloudMqttService
    from bambulab.sim.printer import VirtualPrinter
    from bambulab.sim.simulator import Simulator

__all__ = ["Account", "CloudSwitches", "FakeCloud", "LoggedRequest", "LoginMode", "TaskStatus"]

log = logging.getLogger(__name__)

#: The object store's bucket in presigned URLs (served by the API server under ``/s3/``).
BUCKET = "bbl-sim-uploads"
_ACCESS_KEY_ID = "AKIAVIRTUALBAMBUSIM0"  # a placeholder, like the real URLs' AWSAccessKeyId
_URL_LIFETIME = 3600  # seconds a presigned URL stays valid
_TFA_KEY_LIFETIME = 600.0


@dataclass(frozen=True)
class LoggedRequest:
    """One request that reached the API host (see :meth:`FakeCloud.request_log`): no headers, no body."""

    method: str
    path: str
    query: str
    account: str | None  # the email of the bearer token's account, if it had a valid one


@dataclass
class _Token:
    uid: int
    issued: float
    expires: float


@dataclass
class _Binding:
    """One virtual printer bound to one account, and what the cloud tracks about it."""

    printer: VirtualPrinter
    uid: int
    name: str | None  # a name set through the API; None = the printer's own
    sink: Callable[[dict[str, Any]], Any]
    job: Any = None  # the Job object last seen (identity tells a new print from the same one)
    task: TaskRecord | None = None  # the history entry of the job in progress
    resolver: Callable[[str], Path | None] | None = None  # ours, installed on the printer's engine
    previous_resolver: Callable[[str], Path | None] | None = None


@dataclass
class _Setting:
    setting_id: str
    kind: str  # print / printer / filament
    name: str
    version: str
    public: bool
    uid: int | None
    filament_id: str | None = None
    setting: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "setting_id": self.setting_id,
            "version": self.version,
            "name": self.name,
            "update_time": "2024-01-01 00:00:00",
            "nickname": None,
            "filament_id": self.filament_id,
        }
        if self.kind == "filament" and not self.public:
            out["filament_type"] = self.setting.get("filament_type", "PLA")
            out["nozzle_temperature"] = self.setting.get("nozzle_temperature", [190, 230])
        return out


def _public_settings() -> list[_Setting]:
    """A small built-in catalogue of public presets (names in the style Studio uses)."""
    version = "02.00.00.00"
    out: list[_Setting] = []
    for i, (height, label) in enumerate([("0.12", "Fine"), ("0.20", "Standard"), ("0.28", "Extra Draft")]):
        for j, printer in enumerate(["X1C", "P1S", "A1"]):
            out.append(_Setting(
                f"GP{100 + i * 10 + j:03d}", "print", f"{height}mm {label} @BBL {printer}", version, True, None,
                setting={"layer_height": height, "inherits": f"fdm_process_bbl_{height}", "from": "system",
                         "type": "process"},
            ))
    for j, (model, printer) in enumerate([("BL-P001", "X1 Carbon"), ("C12", "P1S"), ("N2S", "A1")]):
        out.append(_Setting(
            f"GM{100 + j:03d}", "printer", f"Bambu Lab {printer} 0.4 nozzle", version, True, None,
            setting={"printer_model": printer, "nozzle_diameter": ["0.4"], "model_id": [model], "from": "system",
                     "type": "machine"},
        ))
    for j, (fid, name, kind, temps) in enumerate([
        ("GFA00", "Bambu PLA Basic", "PLA", [190, 230]),
        ("GFG99", "Generic PETG", "PETG", [220, 260]),
        ("GFB99", "Generic ABS", "ABS", [240, 270]),
    ]):
        out.append(_Setting(
            f"GFS{fid[2:]}_{j:02d}", "filament", name, version, True, None, filament_id=fid,
            setting={"filament_type": [kind], "nozzle_temperature_range_low": [str(temps[0])],
                     "nozzle_temperature_range_high": [str(temps[1])], "from": "system", "type": "filament"},
        ))
    return out


class FakeCloud:
    """The fake cloud: state, use cases, and its HTTP and MQTT servers.

    ``simulator`` provides the CA and is where printers come from (``None`` works for tests that
    bind no printers). ``tls=True`` serves HTTPS with certificates for ``api.bambulab.com`` and
    ``bambulab.com`` issued by the simulator's CA; the cloud MQTT broker always uses TLS with a
    certificate for ``us.mqtt.bambulab.com``. ``admin=True`` starts the admin endpoint on
    127.0.0.1 (whatever ``host`` is), guarded by :attr:`admin_token`. Ports of 0 are free ports.
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
        self._tokens: dict[str, _Token] = {}
        self._codes: dict[str, tuple[str, float]] = {}
        self._tfa_keys: dict[str, tuple[int, float]] = {}
        self._csrf: set[str] = set()
        self._bindings: dict[str, _Binding] = {}
        self._tasks: dict[int, TaskRecord] = {}
        self._task_ids = self._rng.randrange(40_000_000, 50_000_000)
        self._messages: dict[int, list[dict[str, Any]]] = {}
        self._message_ids = self._rng.randrange(10_000_000, 20_000_000)
        self._projects: dict[str, Project] = {}
        self._objects: dict[str, CloudObject] = {}
        self._tickets: dict[str, str] = {}  # upload_ticket -> object key
        self._settings: dict[str, _Setting] = {s.setting_id: s for s in _public_settings()}
        self._storage_arg = Path(storage_dir) if storage_dir is not None else None
        self._storage: Path | None = None
        self._temp_storage = False
        self._servers: dict[str, HttpServer] = {}
        self._mqtt: CloudMqttService | None = None
        self._running = False
        self._request_log: deque[LoggedRequest] = deque(maxlen=10_000)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeCloud:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the API, web, cloud MQTT (and admin) servers."""
        if self._running:
            return
        from bambulab.sim.cloud_http import HttpServer, build_admin_app, build_api_app, build_web_app
        from bambulab.sim.cloud_mqtt import CloudMqttService

        if self._storage_arg is not None:
            self._storage_arg.mkdir(parents=True, exist_ok=True)
            self._storage = self._storage_arg
        else:
            self._storage = Path(tempfile.mkdtemp(prefix="bambu-sim-cloud-"))
            self._temp_storage = True
        try:
            api_cert = self.ca.issue("api.bambulab.com") if self.tls else None
            web_cert = self.ca.issue("bambulab.com") if self.tls else None
            self._servers["api"] = HttpServer(build_api_app(self), self.host, self._ports["api"], api_cert)
            self._servers["web"] = HttpServer(build_web_app(self), self.host, self._ports["web"], web_cert)
            if self._admin_enabled:
                self._servers["admin"] = HttpServer(build_admin_app(self), "127.0.0.1", self._ports["admin"], None)
            for server in self._servers.values():
                await server.start()
            self._mqtt = CloudMqttService(self, self.ca.issue("us.mqtt.bambulab.com"),
                                          host=self.host, port=self._ports["mqtt"])
            await self._mqtt.start()
        except BaseException:
            await self._shutdown()
            raise
        self._running = True
        for binding in self._bindings.values():
            self._attach(binding)

    async def stop(self) -> None:
        """Stop every server, detach from the printers and remove the temporary storage."""
        self._running = False
        for binding in self._bindings.values():
            self._detach(binding)
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._mqtt is not None:
            with contextlib.suppress(Exception):
                await self._mqtt.stop()
            self._mqtt = None
        for name, server in list(self._servers.items()):
            with contextlib.suppress(Exception):
                await server.stop()
            self._ports[name] = server.port or self._ports[name]
        self._servers.clear()
        if self._temp_storage and self._storage is not None:
            shutil.rmtree(self._storage, ignore_errors=True)
            self._storage = None
            self._temp_storage = False

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

    # ------------------------------------------------------------------ accounts

    def add_account(
        self,
        email: str,
        password: str,
        *,
        uid: int | None = None,
        name: str | None = None,
        login_mode: LoginMode | str = LoginMode.TOKEN,
        tfa_secret: str | None = None,
        fixed_code: str | None = None,
    ) -> Account:
        """Create an account. ``login_mode`` is ``token``, ``verifyCode`` or ``tfa``.

        A ``tfa`` account needs ``tfa_secret`` (base32, checked as RFC 6238 TOTP) or
        ``fixed_code``; ``fixed_code`` is also accepted as an emailed code.
        """
        key = email.strip().lower()
        if not key or key in self._by_email:
            raise SimulatorError(f"an account for {email!r} already exists" if key else "email is empty")
        mode = LoginMode(login_mode)
        if mode is LoginMode.TFA and not (tfa_secret or fixed_code):
            raise SimulatorError("a tfa account needs tfa_secret or fixed_code")
        if tfa_secret is not None:
            totp(tfa_secret, 0)  # fails early on a secret that is not base32
        if uid is None:
            uid = self._rng.randrange(1_000_000_000, 4_000_000_000)
            while uid in self._accounts:
                uid = self._rng.randrange(1_000_000_000, 4_000_000_000)
        elif uid in self._accounts:
            raise SimulatorError(f"uid {uid} is taken")
        local = key.split("@", 1)[0]
        account = Account(
            email=email.strip(), password=password, uid=uid, name=name or local, login_mode=mode,
            tfa_secret=tfa_secret, fixed_code=fixed_code, handle=f"@{local}",
            avatar=f"https://public-cdn.bambulab.invalid/avatar/{uid}.png",
        )
        self._accounts[uid] = account
        self._by_email[key] = uid
        return account

    def account(self, who: str | int | Account) -> Account:
        """An account by email, uid or itself."""
        if isinstance(who, Account):
            return who
        uid = who if isinstance(who, int) else self._by_email.get(who.strip().lower())
        account = self._accounts.get(uid) if uid is not None else None
        if account is None:
            raise SimulatorError(f"no cloud account {who!r}")
        return account

    def find_account(self, email: str) -> Account | None:
        uid = self._by_email.get(email.strip().lower())
        return self._accounts.get(uid) if uid is not None else None

    @property
    def accounts(self) -> list[Account]:
        return list(self._accounts.values())

    # ------------------------------------------------------------------ tokens

    def issue_token(self, who: str | int | Account, *, lifetime: float | None = None) -> str:
        """A fresh access token for an account, as a successful login gives (for tests and demos)."""
        account = self.account(who)
        now = self.now()
        expires = now + (self.switches.token_lifetime if lifetime is None else lifetime)
        token = jwt_token(account.uid, now, expires) if self.switches.jwt_tokens else opaque_token()
        self._tokens[token] = _Token(uid=account.uid, issued=now, expires=expires)
        return token

    def token_account(self, token: str) -> Account | None:
        """The account a token belongs to, if it is known and not expired."""
        record = self._tokens.get(token)
        if record is None or record.expires <= self.now():
            return None
        return self._accounts.get(record.uid)

    def token_expires_in(self, token: str) -> int:
        """Seconds a token has left (its full lifetime right after it was issued)."""
        record = self._tokens.get(token)
        return max(0, round(record.expires - max(self.now(), record.issued))) if record else 0

    def expire_tokens(self, who: str | int | Account | None = None) -> int:
        """Expire every token now (of one account, or all); returns how many were valid."""
        uid = self.account(who).uid if who is not None else None
        now = self.now()
        count = 0
        for record in self._tokens.values():
            if (uid is None or record.uid == uid) and record.expires > now:
                record.expires = now
                count += 1
        return count

    def token_response(self, account: Account) -> dict[str, Any]:
        """The login body with a token (``loginType`` empty); the refresh token is the same string."""
        token = self.issue_token(account)
        lifetime = self.token_expires_in(token)
        return {
            "accessToken": token, "refreshToken": token, "loginType": "", "tfaKey": "",
            "expiresIn": lifetime, "refreshExpiresIn": lifetime,
        }

    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        """A new token pair for a valid refresh token, or None."""
        account = self.token_account(refresh_token)
        if account is None:
            return None
        body = self.token_response(account)
        body.pop("loginType")
        body.pop("tfaKey")
        return body

    # ------------------------------------------------------------------ codes and two-factor

    def send_code(self, email: str) -> bool:
        """"Email" a fresh 6-digit login code; False (and nothing stored) for an unknown address."""
        account = self.find_account(email)
        if account is None:
            return False
        code = f"{secrets.randbelow(1_000_000):06d}"
        self._codes[account.email.lower()] = (code, self.now() + self.switches.code_ttl)
        return True

    def last_code(self, email: str) -> str | None:
        """The last code sent to ``email`` (nothing is really emailed), even if it has expired."""
        entry = self._codes.get(email.strip().lower())
        return entry[0] if entry else None

    def check_code(self, email: str, code: str) -> tuple[Account | None, int]:
        """Check an emailed code: (account, 0) on success; (None, 1) expired/none; (None, 2) wrong."""
        account = self.find_account(email)
        if account is None:
            return None, 2
        if account.fixed_code is not None and secrets.compare_digest(code.encode(), account.fixed_code.encode()):
            return account, 0
        entry = self._codes.get(account.email.lower())
        if entry is None or entry[1] <= self.now():
            return None, 1
        if not secrets.compare_digest(code.encode(), entry[0].encode()):
            return None, 2
        del self._codes[account.email.lower()]  # one use
        return account, 0

    def new_tfa_key(self, account: Account) -> str:
        key = secrets.token_urlsafe(24)
        self._tfa_keys[key] = (account.uid, self.now() + _TFA_KEY_LIFETIME)
        return key

    def check_tfa(self, tfa_key: str, code: str) -> tuple[Account | None, str]:
        """Check an authenticator code for a pending TFA login: (account, "") or (None, why)."""
        entry = self._tfa_keys.get(tfa_key)
        if entry is None or entry[1] <= self.now():
            return None, "tfaKey expired or unknown"
        account = self._accounts.get(entry[0])
        if account is None:
            return None, "tfaKey expired or unknown"
        given = code.encode()
        ok = account.fixed_code is not None and secrets.compare_digest(given, account.fixed_code.encode())
        if not ok and account.tfa_secret:
            now = self.now()
            ok = any(secrets.compare_digest(given, totp(account.tfa_secret, now + d).encode()) for d in (-30, 0, 30))
        if not ok:
            return None, "incorrect code"
        del self._tfa_keys[tfa_key]
        return account, ""

    def new_csrf(self) -> str:
        token = secrets.token_urlsafe(24)
        self._csrf.add(token)
        return token

    def csrf_known(self, token: str) -> bool:
        return token in self._csrf

    # ------------------------------------------------------------------ devices

    def bind(self, who: str | int | Account, printer: VirtualPrinter, *, name: str | None = None) -> None:
        """Bind a virtual printer to an account: it appears in the device list and on cloud MQTT."""
        account = self.account(who)
        existing = self._bindings.get(printer.serial)
        if existing is not None:
            if existing.uid == account.uid:
                return
            raise SimulatorError(f"{printer.serial} is bound to another account")

        binding: _Binding

        async def sink(message: dict[str, Any]) -> None:
            await self._on_report(binding, message)

        binding = _Binding(printer=printer, uid=account.uid, name=name, sink=sink)
        binding.job = printer.dynamic.job
        if binding.job.gcode_state in ACTIVE_STATES:
            binding.job = None  # a print already running at bind time becomes a task too
        self._bindings[printer.serial] = binding
        account.devices.append(printer.serial)
        if self._running:
            self._attach(binding)
        self._observe(binding)

    def unbind(self, printer: VirtualPrinter | str) -> None:
        serial = printer if isinstance(printer, str) else printer.serial
        binding = self._bindings.pop(serial.upper(), None)
        if binding is None:
            return
        self._detach(binding)
        account = self._accounts.get(binding.uid)
        if account is not None and binding.printer.serial in account.devices:
            account.devices.remove(binding.printer.serial)

    def _attach(self, binding: _Binding) -> None:
        """Receive the printer's reports, and let it download files from the cloud's object store."""
        printer = binding.printer
        printer.remove_report_sink(binding.sink)
        printer.add_report_sink(binding.sink)
        if binding.resolver is not None and printer.engine.url_resolver is binding.resolver:
            return
        previous = printer.engine.url_resolver

        def resolve(url: str) -> Path | None:
            found = self._resolve_object_url(url)
            if found is None and previous is not None:
                return previous(url)
            return found

        binding.previous_resolver = previous
        binding.resolver = resolve
        printer.engine.url_resolver = resolve

    def _detach(self, binding: _Binding) -> None:
        printer = binding.printer
        printer.remove_report_sink(binding.sink)
        if binding.resolver is not None and printer.engine.url_resolver is binding.resolver:
            printer.engine.url_resolver = binding.previous_resolver
        binding.resolver = binding.previous_resolver = None

    def binding(self, serial: str) -> _Binding | None:
        return self._bindings.get(serial.upper())

    def owns(self, account: Account, serial: str) -> bool:
        binding = self._bindings.get(serial.upper())
        return binding is not None and binding.uid == account.uid

    def bound_printers(self, who: str | int | Account) -> list[VirtualPrinter]:
        account = self.account(who)
        return [self._bindings[s].printer for s in account.devices if s in self._bindings]

    def rename_device(self, account: Account, serial: str, name: str) -> bool:
        binding = self._bindings.get(serial.upper())
        if binding is None or binding.uid != account.uid:
            return False
        binding.name = name
        return True

    def _device_name(self, binding: _Binding) -> str:
        return binding.name or binding.printer.name

    def _access_code(self, printer: VirtualPrinter) -> str:
        return printer.access_code + ("\n" if self.switches.access_code_newline else "")

    @staticmethod
    def _model_names(printer: VirtualPrinter) -> tuple[str, str]:
        model = printer.model
        # Newer models carry the marketing name in both fields.
        return (model.code if model.is_legacy_protocol else model.name), model.name

    @staticmethod
    def _print_status(gcode_state: str) -> str:
        return {
            "FINISH": "SUCCESS", "FAILED": "FAILED", "PAUSE": "PAUSE", "IDLE": "IDLE",
            "RUNNING": "RUNNING", "PREPARE": "RUNNING", "SLICING": "RUNNING",
        }.get(gcode_state, gcode_state or "IDLE")

    def bind_devices(self, account: Account) -> list[dict[str, Any]]:
        """The ``devices`` of ``GET /iot-service/api/user/bind``."""
        out = []
        for serial in account.devices:
            binding = self._bindings.get(serial)
            if binding is None:
                continue
            self._observe(binding)
            printer = binding.printer
            model_name, product_name = self._model_names(printer)
            out.append({
                "dev_id": printer.serial,
                "name": self._device_name(binding),
                "online": printer.online,
                "print_status": self._print_status(printer.dynamic.job.gcode_state),
                "dev_model_name": model_name,
                "dev_product_name": product_name,
                "dev_access_code": self._access_code(printer),
                "nozzle_diameter": printer.dynamic.nozzle_diameter,
                "dev_structure": printer.model.structure,
                "print_job": binding.task.id if binding.task is not None else 0,
            })
        return out

    def print_devices(self, account: Account) -> list[dict[str, Any]]:
        """The ``devices`` of ``GET /iot-service/api/user/print``: live job state per device."""
        out = []
        for serial in account.devices:
            binding = self._bindings.get(serial)
            if binding is None:
                continue
            self._observe(binding)
            printer = binding.printer
            job = printer.dynamic.job
            model_name, product_name = self._model_names(printer)
            entry: dict[str, Any] = {
                "dev_id": printer.serial,
                "dev_name": self._device_name(binding),
                "dev_model_name": model_name,
                "dev_product_name": product_name,
                "dev_online": printer.online,
                "dev_access_code": self._access_code(printer),
                "task_id": None, "task_name": None, "task_status": None, "model_id": None,
                "project_id": None, "profile_id": None, "start_time": None, "prediction": None,
                "progress": None, "thumbnail": None,
            }
            task = binding.task
            if task is not None and job.gcode_state in ACTIVE_STATES:
                entry.update({
                    "task_id": str(task.id),
                    "task_name": task.title,
                    "task_status": job.gcode_state,
                    "model_id": task.model_id or None,
                    "project_id": task.project_id or None,
                    "profile_id": str(task.profile_id) if task.profile_id else None,
                    "start_time": iso_time(task.start),
                    "prediction": int(job.duration_s),
                    "progress": job.percent,
                })
            out.append(entry)
        return out

    def device_version(self, account: Account, serial: str) -> dict[str, Any] | None:
        binding = self._bindings.get(serial.upper())
        if binding is None or binding.uid != account.uid:
            return None
        printer = binding.printer
        firmware = printer.dynamic.firmware
        model_name, _ = self._model_names(printer)
        return {
            "dev_id": printer.serial,
            "version": firmware,
            "firmware": [{
                "version": firmware,
                "force_update": False,
                "url": f"https://upgrade-file.bambulab.invalid/device/{model_name}/{firmware}/product/ota.json.sig",
                "description": f"Virtual printer firmware {firmware}.",
            }],
            "ams": [],
        }

    def ttcode(self, account: Account, serial: str) -> dict[str, Any] | None:
        if not self.owns(account, serial):
            return None
        return {
            "ttcode": secrets.token_hex(10).upper(),
            "passwd": secrets.token_hex(4),
            "authkey": secrets.token_hex(8),
            "region": "us",
            "type": "tutk",
        }

    async def inject_event(self, serial: str, event: str = "client.connected") -> None:
        """Publish a cloud event (``client.connected``/``client.disconnected``) on a device's report topic."""
        if self._mqtt is not None:
            payload = {"event": {"event": event, "disconnect_reason": "", "timestamp": int(self.now() * 1000)}}
            await self._mqtt.publish(serial.upper(), payload)

    # ------------------------------------------------------------------ printers <-> cloud MQTT

    async def _on_report(self, binding: _Binding, message: dict[str, Any]) -> None:
        self._observe(binding)
        if self._mqtt is not None:
            await self._mqtt.publish(binding.printer.serial, message)

    async def relay_request(self, serial: str, data: bytes) -> None:
        """A client published to ``device/{serial}/request`` on the cloud broker: hand it to the printer."""
        binding = self._bindings.get(serial.upper())
        if binding is not None:
            await binding.printer.handle_cloud_request(data)

    def mqtt_authenticate(self, username: str, password: str) -> bool:
        if not username.startswith("u_"):
            return False
        account = self.token_account(password)
        return account is not None and username == account.mqtt_username

    def mqtt_may_access(self, username: str, serial: str) -> bool:
        if not username.startswith("u_") or not username[2:].isdigit():
            return False
        account = self._accounts.get(int(username[2:]))
        return account is not None and self.owns(account, serial)

    # ------------------------------------------------------------------ print history

    def _observe(self, binding: _Binding) -> None:
        """Fold the printer's live job state into the print history."""
        job = binding.printer.dynamic.job
        if binding.job is not job:
            binding.job = job
            binding.task = None
            if job.gcode_state not in ACTIVE_STATES or job.print_type == "system":
                return
            task = None
            if job.task_id.isdigit():
                candidate = self._tasks.get(int(job.task_id))
                if candidate is not None and candidate.device_id == binding.printer.serial:
                    task = candidate
            if task is None:
                if not self.switches.record_local_prints:
                    return
                task = self._new_task(binding, title=job.subtask_name or Path(job.gcode_file).stem, mode="local")
                task.plate_index = max(1, job.plate_index)
            binding.task = task
        task = binding.task
        if task is None or task.terminal:
            return
        if job.gcode_state == "FINISH":
            self._end_task(task, TaskStatus.FINISHED, job)
        elif job.gcode_state in ("FAILED", "IDLE"):
            self._end_task(task, TaskStatus.FAILED, job)

    def _new_task(self, binding: _Binding, *, title: str, mode: str) -> TaskRecord:
        self._task_ids += self._rng.randrange(1, 50)
        printer = binding.printer
        task = TaskRecord(
            id=self._task_ids, uid=binding.uid, device_id=printer.serial, device_name=self._device_name(binding),
            device_model=printer.model.name, title=title, start=self.now(), mode=mode,
        )
        self._tasks[task.id] = task
        return task

    def _end_task(self, task: TaskRecord, status: TaskStatus, job: Any) -> None:
        task.status = status
        task.cost_time = int(job.prepare_elapsed_s + job.elapsed_s)
        self._message_ids += 1
        account = self._accounts.get(task.uid)
        self._messages.setdefault(task.uid, []).append({
            "id": self._message_ids,
            "type": 6,
            "design": None,
            "comment": None,
            "taskMessage": {
                "id": task.id, "title": task.title, "cover": task.cover, "status": int(status),
                "deviceId": task.device_id,
            },
            "from": {
                "uid": task.uid, "name": account.name if account else "", "avatar": account.avatar if account else "",
                "fanCount": 0, "followCount": 0, "likeCount": 0, "isFollowed": False,
            },
            "createTime": iso_time(self.now()),
        })

    def tasks(self, who: str | int | Account, device_id: str | None = None) -> list[TaskRecord]:
        """An account's print history, newest first."""
        account = self.account(who)
        for serial in account.devices:
            binding = self._bindings.get(serial)
            if binding is not None:
                self._observe(binding)
        out = [t for t in self._tasks.values() if t.uid == account.uid
               and (not device_id or t.device_id == device_id.upper())]
        return sorted(out, key=lambda t: t.id, reverse=True)

    def task_page(self, account: Account, device_id: str | None, after: int | None, limit: int) -> dict[str, Any]:
        """``GET /my/tasks``: ``total`` matches the filter; ``hits`` are the page after id ``after``."""
        tasks = self.tasks(account, device_id)
        page = [t for t in tasks if after is None or t.id < after][:limit]
        return {"total": len(tasks), "hits": [t.to_hit() for t in page]}

    def messages(self, account: Account, after: int | None, limit: int) -> list[dict[str, Any]]:
        self.tasks(account)  # fold in printers' latest state first
        items = sorted(self._messages.get(account.uid, []), key=lambda m: m["id"], reverse=True)
        return [m for m in items if after is None or m["id"] < after][:limit]

    async def create_task(self, account: Account, body: dict[str, Any], os_type: str) -> tuple[int, dict[str, Any]]:
        """``POST /my/task``: record the task and dispatch the print to the device when a file is known."""
        serial = str(body.get("deviceId") or "").upper()
        binding = self._bindings.get(serial)
        if binding is None or binding.uid != account.uid:
            return 403, _forbidden()
        project = self._find_project(account, body)
        obj = self._object_for_url(project.print_url(_int(body.get("plateIndex"), 1))) if project else None
        if obj is not None and obj.os_type and obj.os_type.lower() != os_type.lower():
            return 403, {"message": "no access rights to the content", "code": 8, "error": "Resource forbidden"}
        task = self._new_task(binding, title=str(body.get("title") or (project.name if project else "") or "Untitled"),
                              mode=str(body.get("mode") or "cloud_file"))
        task.model_id = str(body.get("modelId") or (project.model_id if project else ""))
        task.profile_id = _int(body.get("profileId"), 0)
        task.project_id = project.project_id if project else str(body.get("projectId") or "")
        task.plate_index = _int(body.get("plateIndex"), 1)
        task.bed_type = str(body.get("bedType") or task.bed_type)
        task.cover = str(body.get("cover") or "")
        mapping = body.get("amsDetailMapping")
        if isinstance(mapping, list):
            task.ams_detail_mapping = [m for m in mapping if isinstance(m, dict)]
        url = project.print_url(task.plate_index) if project else None
        if url is not None:
            if not binding.printer.online:
                task.status = TaskStatus.FAILED
            else:
                await self._dispatch(binding, task, url, body)
        return 200, {"id": task.id}

    async def _dispatch(self, binding: _Binding, task: TaskRecord, url: str, body: dict[str, Any]) -> None:
        obj = self._object_for_url(url)
        if obj is not None:
            url = self.presigned_url("GET", obj.key)
        mapping = body.get("amsMapping")
        ams_mapping = [m for m in mapping if isinstance(m, int)] if isinstance(mapping, list) else []
        use_ams = bool(body.get("useAms", bool(binding.printer.dynamic.ams)))
        command = {"print": {
            "sequence_id": "0", "command": "project_file",
            "param": f"Metadata/plate_{task.plate_index}.gcode",
            "project_id": task.project_id or "0", "profile_id": str(task.profile_id), "task_id": str(task.id),
            "subtask_id": "0", "subtask_name": task.title, "file": "", "url": url, "md5": "",
            "timelapse": False, "bed_type": "auto", "bed_levelling": True, "flow_cali": False,
            "vibration_cali": False, "layer_inspect": False, "use_ams": use_ams,
            "ams_mapping": ams_mapping or ([0] if use_ams else []),
        }}
        await binding.printer.handle_cloud_command(command)
        if binding.printer.dynamic.job.task_id != str(task.id):  # refused (busy, file missing ...)
            self._end_task(task, TaskStatus.FAILED, binding.printer.dynamic.job)
            task.cost_time = 0

    # ------------------------------------------------------------------ projects and uploads

    def add_project(self, who: str | int | Account, name: str) -> Project:
        """Create a cloud project (what ``POST /iot-service/api/user/project`` does)."""
        account = self.account(who)
        now = self.now()
        project = Project(
            project_id=str(self._rng.randrange(100_000_000, 999_999_999)),
            uid=account.uid,
            model_id="US" + "".join(self._rng.choice("0123456789abcdef") for _ in range(14)),
            profile_id=str(self._rng.randrange(100_000_000, 999_999_999)),
            name=name, created=now, updated=now,
        )
        self._projects[project.project_id] = project
        return project

    def projects(self, account: Account) -> list[Project]:
        return [p for p in self._projects.values() if p.uid == account.uid]

    def project(self, account: Account, project_id: str) -> Project | None:
        project = self._projects.get(project_id)
        return project if project is not None and project.uid == account.uid else None

    def _find_project(self, account: Account, body: dict[str, Any]) -> Project | None:
        wanted_project = str(body.get("projectId") or "")
        wanted_model = str(body.get("modelId") or "")
        for project in self.projects(account):
            if project.project_id == wanted_project or (wanted_model and project.model_id == wanted_model):
                return project
        return None

    def new_upload(self, account: Account, filename: str, size: int | None, os_type: str) -> CloudObject:
        """Reserve an object key for an upload; the PUT to its presigned URL stores the data."""
        safe = Path(filename.replace("\\", "/")).name or "upload.3mf"
        key = f"{account.uid}/{secrets.token_hex(8)}/{safe}"
        assert self._storage is not None, "start the cloud first"
        obj = CloudObject(key=key, uid=account.uid, filename=safe, path=self._storage / key.replace("/", "_"),
                          size=0, declared_size=size, os_type=os_type)
        self._objects[key] = obj
        return obj

    def presigned_url(self, method: str, key: str, *, content_type: str = "") -> str:
        expires = int(self.now()) + _URL_LIFETIME
        resource = f"/{BUCKET}/{key}"
        signature = presign(self._secret, method, content_type, expires, resource)
        return (f"{self.api_url}/s3/{BUCKET}/{quote(key)}?AWSAccessKeyId={_ACCESS_KEY_ID}"
                f"&Expires={expires}&Signature={quote(signature, safe='')}")

    def check_signature(self, method: str, key: str, content_type: str, expires: str, signature: str) -> str:
        """"" if a presigned request is valid, else the S3 error code."""
        if not expires.isdigit():
            return "AccessDenied"
        expected = presign(self._secret, method, content_type, int(expires), f"/{BUCKET}/{key}")
        if not secrets.compare_digest(expected.encode(), signature.encode()):
            return "SignatureDoesNotMatch"
        if int(expires) < self.now():
            return "AccessDenied"
        return ""

    def upload_object(self, key: str) -> CloudObject | None:
        return self._objects.get(key)

    def store_object(self, obj: CloudObject, data: bytes) -> None:
        obj.path.write_bytes(data)
        obj.size = len(data)

    def uploads(self, who: str | int | Account | None = None) -> list[CloudObject]:
        """Files stored through presigned URLs (of one account, or all)."""
        uid = self.account(who).uid if who is not None else None
        return [o for o in self._objects.values() if o.path.exists() and (uid is None or o.uid == uid)]

    def new_ticket(self, key: str) -> str:
        ticket = secrets.token_hex(12)
        self._tickets[ticket] = key
        return ticket

    def ticket_done(self, ticket: str) -> bool | None:
        key = self._tickets.get(ticket)
        if key is None:
            return None
        obj = self._objects.get(key)
        return obj is not None and obj.path.exists()

    def _object_for_url(self, url: str | None) -> CloudObject | None:
        if not url:
            return None
        path = unquote(urlsplit(url).path)
        prefix = f"/s3/{BUCKET}/"
        if not path.startswith(prefix):
            return None
        obj = self._objects.get(path[len(prefix):])
        return obj if obj is not None and obj.path.exists() else None

    def _resolve_object_url(self, url: str) -> Path | None:
        obj = self._object_for_url(url)
        return obj.path if obj is not None else None

    # ------------------------------------------------------------------ slicer settings

    def add_setting(
        self, who: str | int | Account, kind: str, name: str, setting: dict[str, Any] | None = None,
        *, filament_id: str | None = None,
    ) -> str:
        """Add a private preset (``kind`` print/printer/filament) to an account; returns its id."""
        if kind not in ("print", "printer", "filament"):
            raise SimulatorError("kind must be print, printer or filament")
        account = self.account(who)
        prefix = {"print": "PPUS", "printer": "PMUS", "filament": "PFUS"}[kind]
        setting_id = prefix + "".join(self._rng.choice("0123456789abcdef") for _ in range(14))
        self._settings[setting_id] = _Setting(setting_id, kind, name, "1.0.0.0", False, account.uid,
                                              filament_id=filament_id, setting=dict(setting or {}))
        return setting_id

    def settings_list(self, account: Account) -> dict[str, Any]:
        out: dict[str, Any] = {k: {"public": [], "private": []} for k in ("print", "printer", "filament")}
        for s in self._settings.values():
            if s.public:
                out[s.kind]["public"].append(s.summary())
            elif s.uid == account.uid:
                out[s.kind]["private"].append(s.summary())
        return out

    def setting_detail(self, account: Account, setting_id: str) -> dict[str, Any] | None:
        s = self._settings.get(setting_id)
        if s is None or (not s.public and s.uid != account.uid):
            return None
        return {
            "public": s.public, "version": s.version, "type": s.kind, "name": s.name, "nickname": None,
            "base_id": None, "setting": {"name": s.name, **s.setting}, "filament_id": s.filament_id,
        }

    def delete_setting(self, account: Account, setting_id: str) -> bool:
        s = self._settings.get(setting_id)
        if s is None or s.public or s.uid != account.uid:
            return False
        del self._settings[setting_id]
        return True

    # ------------------------------------------------------------------ request log (tests of proxies)

    def log_request(self, method: str, path: str, query: str, token: str | None) -> None:
        account = self.token_account(token) if token else None
        self._request_log.append(LoggedRequest(method, path, query, account.email if account else None))

    def request_log(self) -> list[LoggedRequest]:
        """The last 10,000 requests that reached the API host (the object store's included), oldest first."""
        return list(self._request_log)

    def clear_request_log(self) -> None:
        self._request_log.clear()


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _forbidden() -> dict[str, Any]:
    return {"message": "permission denied", "code": 8, "error": "Resource forbidden"}
