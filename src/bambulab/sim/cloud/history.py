"""Print history: tasks the cloud records as bound printers print, and the prints it starts (``/my/task``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bambulab.sim.cloud.files import FileUseCases
from bambulab.sim.cloud.model import ACTIVE_STATES, Account, TaskRecord, TaskStatus, iso_time
from bambulab.sim.cloud.state import Binding, as_int, forbidden

__all__ = ["HistoryUseCases"]


class HistoryUseCases(FileUseCases):
    """Use cases of :class:`~bambulab.sim.cloud.FakeCloud`, which composes them."""

    # ------------------------------------------------------------------ print history

    def _observe(self, binding: Binding) -> None:
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

    def _new_task(self, binding: Binding, *, title: str, mode: str) -> TaskRecord:
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
            return 403, forbidden()
        project = self._find_project(account, body)
        obj = self._object_for_url(project.print_url(as_int(body.get("plateIndex"), 1))) if project else None
        if obj is not None and obj.os_type and obj.os_type.lower() != os_type.lower():
            return 403, {"message": "no access rights to the content", "code": 8, "error": "Resource forbidden"}
        task = self._new_task(binding, title=str(body.get("title") or (project.name if project else "") or "Untitled"),
                              mode=str(body.get("mode") or "cloud_file"))
        task.model_id = str(body.get("modelId") or (project.model_id if project else ""))
        task.profile_id = as_int(body.get("profileId"), 0)
        task.project_id = project.project_id if project else str(body.get("projectId") or "")
        task.plate_index = as_int(body.get("plateIndex"), 1)
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

    async def _dispatch(self, binding: Binding, task: TaskRecord, url: str, body: dict[str, Any]) -> None:
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


    def _device_name(self, binding: Binding) -> str:
        return binding.name or binding.printer.name

