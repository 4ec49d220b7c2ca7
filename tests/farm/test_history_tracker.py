"""The job tracker: a pure state machine over merged printer states (plain dicts)."""

from __future__ import annotations

from typing import Any

from bambulab.farm.history import HmsChange, JobRecord, JobTracker

S = "01P00A000000001"
T0 = 1_800_000_000.0
HMS = {"attr": 0x03000100, "code": 0x00020001}  # severity 2: serious


def state(gcode_state: str, file: str = "Metadata/plate_2.gcode", **extra: Any) -> dict[str, Any]:
    return {"print": {"gcode_state": gcode_state, "gcode_file": file, "task_id": "0", "subtask_id": "0", **extra}}


def ams(remain: int, tray_now: str = "1") -> dict[str, Any]:
    trays = [{"id": "0", "tray_type": "PETG", "remain": 50}, {"id": "1", "tray_type": "PLA", "tray_color": "FF0000FF",
                                                              "remain": remain}]
    return {"ams": {"ams": [{"id": "0", "humidity": "4", "temp": "24.0", "tray": trays}], "tray_now": tray_now}}


def records(items: list[Any]) -> list[JobRecord]:
    return [i for i in items if isinstance(i, JobRecord)]


def test_a_lan_print_from_start_to_finish() -> None:
    t = JobTracker()
    (start,) = t.observe(S, state("PREPARE"), T0, printer="P1S-1")
    assert isinstance(start, JobRecord)
    assert start.job_key == f"{S}:file:Metadata/plate_2.gcode:{int(T0)}"
    assert (start.result, start.plate, start.printer, start.task_id) == ("running", 2, "P1S-1", None)
    assert t.observe(S, state("RUNNING", mc_percent=10), T0 + 10) == []  # progress alone is not worth a write
    (mid,) = t.observe(S, state("RUNNING", layer_num=7, total_layer_num=90, mc_percent=11), T0 + 20)
    assert (mid.job_key, mid.layers, mid.total_layers, mid.progress) == (start.job_key, 7, 90, 11)
    (end,) = t.observe(S, state("FINISH", layer_num=90, total_layer_num=90, mc_percent=100), T0 + 3600)
    assert (end.job_key, end.result, end.ended_at, end.duration, end.layers) == (
        start.job_key, "finished", T0 + 3600, 3600, 90)
    # a duplicate finish report, and the printer lingering in FINISH, record nothing more
    assert t.observe(S, state("FINISH"), T0 + 3601) == []
    assert t.observe(S, state("FINISH"), T0 + 7200) == []
    assert t.open_job(S) is None


def test_cloud_jobs_are_keyed_by_the_printers_own_id() -> None:
    a, b = JobTracker(), JobTracker()
    (ra,) = a.observe(S, state("RUNNING", subtask_id="123456", task_id="99"), T0)
    (rb,) = b.observe(S, state("RUNNING", subtask_id="123456", task_id="99"), T0 + 500)  # another gateway, later
    assert ra.job_key == rb.job_key == f"{S}:task:123456"
    assert ra.task_id == "123456"


def test_failed_cancelled_and_interrupted() -> None:
    t = JobTracker()
    t.observe(S, state("RUNNING"), T0)
    (failed,) = t.observe(S, state("FAILED", print_error=0x07008011), T0 + 5)
    assert (failed.result, failed.print_error) == ("failed", 0x07008011)
    t.observe(S, state("RUNNING"), T0 + 10)
    (cancelled,) = t.observe(S, state("FAILED", print_error=50348044), T0 + 20)
    assert cancelled.result == "cancelled"
    t.observe(S, state("RUNNING"), T0 + 30)
    (idle,) = t.observe(S, state("IDLE"), T0 + 40)
    assert idle.result == "interrupted"


def test_another_file_ends_the_previous_job() -> None:
    t = JobTracker()
    (first,) = t.observe(S, state("RUNNING", file="a.3mf"), T0)
    out = records(t.observe(S, state("RUNNING", file="b.3mf"), T0 + 60))
    assert [(r.file, r.result) for r in out] == [("a.3mf", "interrupted"), ("b.3mf", "running")]
    assert out[0].job_key == first.job_key != out[1].job_key


def test_a_reconnect_or_a_partial_report_changes_nothing() -> None:
    t = JobTracker()
    (start,) = t.observe(S, state("RUNNING", layer_num=3), T0)
    assert t.observe(S, {}, T0 + 5) == []  # reconnecting: no state yet
    assert t.observe(S, {"print": {"gcode_state": "garbage"}}, T0 + 6) == []
    assert t.observe(S, {"print": "not a dict"}, T0 + 7) == []
    assert t.observe(S, state("RUNNING", layer_num=3), T0 + 8) == []  # back, same job: no new record
    assert t.open_job(S) is not None and t.open_job(S).job_key == start.job_key  # type: ignore[union-attr]


def test_hms_seen_during_the_job() -> None:
    t = JobTracker()
    t.observe(S, state("RUNNING"), T0)
    out = t.observe(S, state("RUNNING", hms=[HMS]), T0 + 10)
    (rec,) = records(out)
    (raised,) = [i for i in out if isinstance(i, HmsChange)]
    assert rec.hms == ("0300_0100_0002_0001",)
    assert (raised.code, raised.severity, raised.cleared, raised.job_key) == (
        "0300_0100_0002_0001", "serious", False, rec.job_key)
    out = t.observe(S, state("RUNNING"), T0 + 20)
    assert [(i.code, i.cleared, i.at) for i in out if isinstance(i, HmsChange)] == [("0300_0100_0002_0001", True,
                                                                                     T0 + 20)]
    (end,) = t.observe(S, state("FINISH"), T0 + 30)
    assert end.hms == ("0300_0100_0002_0001",)  # remembered after it cleared


def test_hms_outside_a_job_is_tracked_without_a_job() -> None:
    t = JobTracker()
    (raised,) = t.observe(S, state("IDLE", hms=[HMS]), T0)
    assert isinstance(raised, HmsChange) and raised.job_key is None
    assert t.observe(S, state("IDLE", hms=[HMS]), T0 + 1) == []


def test_filament_used_per_tray() -> None:
    t = JobTracker()
    (start,) = t.observe(S, {**state("RUNNING"), **{"print": {**state("RUNNING")["print"], **ams(80)}}}, T0)
    assert start.filament == {"0.1": {"material": "PLA", "color": "#FF0000", "remaining_start": 80,
                                      "remaining_end": 80, "used_percent": 0}}
    (mid,) = t.observe(S, {"print": {**state("RUNNING")["print"], **ams(72)}}, T0 + 600)
    assert mid.filament["0.1"]["used_percent"] == 8
    (end,) = t.observe(S, {"print": {**state("FINISH")["print"], **ams(70, tray_now="255")}}, T0 + 900)
    assert end.filament["0.1"]["remaining_end"] == 72 and end.result == "finished"


def test_restore_continues_the_open_job() -> None:
    first = JobTracker()
    (start,) = first.observe(S, state("RUNNING", layer_num=10), T0)
    second = JobTracker()
    second.restore([start])
    assert second.observe(S, state("RUNNING", layer_num=10), T0 + 100) == []
    (end,) = second.observe(S, state("FINISH"), T0 + 200)
    assert (end.job_key, end.started_at, end.result) == (start.job_key, T0, "finished")
    second.forget(S)
    assert second.open_job(S) is None
