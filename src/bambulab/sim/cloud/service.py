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
Behaviour switches (:class:`~bambulab.sim.cloud.model.CloudSwitches`) inject Cloudflare blocks,
rate limits, server errors, delays and token expiry; they are set through
:meth:`FakeCloud.set_switches` or, when enabled, a token-protected admin endpoint on 127.0.0.1.

Not thread-safe: call it from the event loop that runs it (like the simulator itself).
See ``docs/cloud-api.md`` for the endpoints and their shapes.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from bambulab.sim.ca import LeafCertificate
from bambulab.sim.cloud.devices import DeviceUseCases
from bambulab.sim.cloud.state import LoggedRequest

__all__ = ["FakeCloud"]


class FakeCloud(DeviceUseCases):
    """The fake cloud: state, use cases, and its HTTP and MQTT servers.

    ``simulator`` provides the CA and is where printers come from (``None`` works for tests that
    bind no printers). ``tls=True`` serves HTTPS with certificates for ``api.bambulab.com`` and
    ``bambulab.com`` issued by the simulator's CA; the cloud MQTT broker always uses TLS with a
    certificate for ``us.mqtt.bambulab.com``. ``admin=True`` starts the admin endpoint on
    127.0.0.1 (whatever ``host`` is), guarded by :attr:`admin_token`. Ports of 0 are free ports.
    """

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
        from bambulab.sim.cloud.http import HttpServer, build_admin_app, build_api_app, build_web_app
        from bambulab.sim.cloud.mqtt import CloudMqttService

        if self._storage_arg is not None:
            self._storage_arg.mkdir(parents=True, exist_ok=True)
            self._storage = self._storage_arg
        else:
            self._storage = Path(tempfile.mkdtemp(prefix="bambu-sim-cloud-"))
            self._temp_storage = True
        try:
            api_cert = self._issue("api.bambulab.com") if self.tls else None
            web_cert = self._issue("bambulab.com") if self.tls else None
            self._servers["api"] = HttpServer(build_api_app(self), self.host, self._ports["api"], api_cert)
            self._servers["web"] = HttpServer(build_web_app(self), self.host, self._ports["web"], web_cert)
            if self._admin_enabled:
                self._servers["admin"] = HttpServer(build_admin_app(self), "127.0.0.1", self._ports["admin"], None)
            for server in self._servers.values():
                await server.start()
            self._mqtt = CloudMqttService(self, self._issue("us.mqtt.bambulab.com"),
                                          host=self.host, port=self._ports["mqtt"])
            await self._mqtt.start()
        except BaseException:
            await self._shutdown()
            raise
        self._running = True
        for binding in self._bindings.values():
            self._attach(binding)

    def _issue(self, common_name: str) -> LeafCertificate:
        cert = self.ca.issue(common_name)
        self._certs.append(cert)
        return cert

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
        for cert in self._certs:  # their temporary folders hold private keys
            cert.remove_files()
        self._certs.clear()
        if self._temp_storage and self._storage is not None:
            shutil.rmtree(self._storage, ignore_errors=True)
            self._storage = None
            self._temp_storage = False

    # ------------------------------------------------------------------ request log (tests of proxies)

    def log_request(self, method: str, path: str, query: str, token: str | None) -> None:
        account = self.token_account(token) if token else None
        self._request_log.append(LoggedRequest(method, path, query, account.email if account else None))

    def request_log(self) -> list[LoggedRequest]:
        """The last 10,000 requests that reached the API host (the object store's included), oldest first."""
        return list(self._request_log)

    def clear_request_log(self) -> None:
        self._request_log.clear()
