"""Bound printers: the device list, renames, versions, and the relay between the printers and the cloud broker."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bambulab.exceptions import SimulatorError
from bambulab.sim.cloud.history import HistoryUseCases
from bambulab.sim.cloud.model import ACTIVE_STATES, Account, iso_time
from bambulab.sim.cloud.state import Binding

if TYPE_CHECKING:
    from bambulab.sim.printer import VirtualPrinter

__all__ = ["DeviceUseCases"]


class DeviceUseCases(HistoryUseCases):
    """Use cases of :class:`~bambulab.sim.cloud.FakeCloud`, which composes them."""

    # ------------------------------------------------------------------ devices

    def bind(self, who: str | int | Account, printer: VirtualPrinter, *, name: str | None = None) -> None:
        """Bind a virtual printer to an account: it appears in the device list and on cloud MQTT."""
        account = self.account(who)
        existing = self._bindings.get(printer.serial)
        if existing is not None:
            if existing.uid == account.uid:
                return
            raise SimulatorError(f"{printer.serial} is bound to another account")

        binding: Binding

        async def sink(message: dict[str, Any]) -> None:
            await self._on_report(binding, message)

        binding = Binding(printer=printer, uid=account.uid, name=name, sink=sink)
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

    def _attach(self, binding: Binding) -> None:
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

    def _detach(self, binding: Binding) -> None:
        printer = binding.printer
        printer.remove_report_sink(binding.sink)
        if binding.resolver is not None and printer.engine.url_resolver is binding.resolver:
            printer.engine.url_resolver = binding.previous_resolver
        binding.resolver = binding.previous_resolver = None

    def binding(self, serial: str) -> Binding | None:
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

    async def _on_report(self, binding: Binding, message: dict[str, Any]) -> None:
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

