"""The history store, the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bambulab.farm.history import (
    SCHEMA_VERSION,
    HistoryError,
    HistoryStore,
    HmsChange,
    JobFilter,
    JobRecord,
    JobTracker,
    Sample,
)

T0 = 1_800_000_000.0
SERIAL = "01P00A000000001"


def report(state: str, **extra: Any) -> dict[str, Any]:
    return {"print": {"gcode_state": state, "gcode_file": "benchy.gcode.3mf", "subtask_id": "0", **extra}}


def job(key: str, serial: str = SERIAL, start: float = T0, **kw: Any) -> JobRecord:
    return JobRecord(job_key=key, serial=serial, started_at=start, **kw)


@pytest.fixture
def store(store_target: str) -> Any:
    with HistoryStore.open(store_target) as s:
        yield s


def test_fresh_store_is_at_the_latest_schema(store: HistoryStore) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION  # idempotent


def test_migration_from_an_older_version_keeps_the_data(store_target: str) -> None:
    with HistoryStore.open(store_target, migrate_to=1) as old:
        assert old.schema_version() == 1
        old.write([job("a", ended_at=T0 + 60, result="finished")])
    with HistoryStore.open(store_target) as new:
        assert new.schema_version() == SCHEMA_VERSION
        jobs, total = new.jobs()
        assert total == 1 and jobs[0].result == "finished" and jobs[0].duration == 60


def test_a_newer_database_is_refused(store_target: str) -> None:
    with HistoryStore.open(store_target) as s:
        s.write([])
        with s._write_lock:  # a future bambulab wrote version 99
            s._writer.execute(s._dialect.sql(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)"), (99, "x", 0.0))
    with pytest.raises(HistoryError, match="newer than this bambulab"):
        HistoryStore.open(store_target)


def test_a_job_is_written_once_and_a_finished_job_never_changes(store: HistoryStore) -> None:
    store.write([job("k", layers=1)])
    store.write([job("k", layers=50, total_layers=100)])
    store.write([job("k", layers=100, total_layers=100, ended_at=T0 + 3600, result="finished")])
    # a duplicate finish report (later, different) and a replayed start change nothing
    store.write([job("k", layers=3, ended_at=T0 + 9999, result="failed"), job("k")])
    jobs, total = store.jobs()
    assert total == 1
    (j,) = jobs
    assert (j.result, j.ended_at, j.layers, j.total_layers) == ("finished", T0 + 3600, 100, 100)
    assert store.open_jobs() == []
    assert j.to_dict()["duration_seconds"] == 3600.0
    assert j.to_dict()["started_at"] == "2027-01-15T08:00:00Z"


def test_filters_paging_and_total(store: HistoryStore) -> None:
    records = [
        job(f"j{i}", serial=SERIAL if i % 2 else "OTHER", start=T0 + i * 100, ended_at=T0 + i * 100 + 50,
            result="finished" if i % 3 else "failed", printer="P1S-1" if i % 2 else "X1C")
        for i in range(10)
    ]
    store.write(records)
    page, total = store.jobs(JobFilter(limit=3))
    assert total == 10 and [j.job_key for j in page] == ["j9", "j8", "j7"]
    page, total = store.jobs(JobFilter(limit=3, offset=9))
    assert total == 10 and [j.job_key for j in page] == ["j0"]
    page, total = store.jobs(JobFilter(printer=SERIAL))
    assert total == 5 and {j.serial for j in page} == {SERIAL}
    page, total = store.jobs(JobFilter(printer="X1C"))  # by name too
    assert total == 5 and {j.serial for j in page} == {"OTHER"}
    page, total = store.jobs(JobFilter(result="failed"))
    assert sorted(j.job_key for j in page) == ["j0", "j3", "j6", "j9"]
    page, total = store.jobs(JobFilter(since=T0 + 200, until=T0 + 500))
    assert [j.job_key for j in page] == ["j4", "j3", "j2"]
    assert len(list(store.iter_jobs(page=3))) == 10


def test_bad_filters_are_clear_errors() -> None:
    with pytest.raises(HistoryError, match="unknown result"):
        JobFilter(result="exploded")
    with pytest.raises(HistoryError, match="limit"):
        JobFilter(limit=0)


def test_stats_per_printer(store: HistoryStore) -> None:
    store.write([
        job("a", ended_at=T0 + 3600, result="finished", printer="P1S-1"),
        job("b", start=T0 + 4000, ended_at=T0 + 5800, result="finished"),
        job("c", start=T0 + 6000, ended_at=T0 + 6900, result="cancelled"),
        job("d", start=T0 + 7000),
        job("e", serial="OTHER", ended_at=T0 + 10, result="failed"),
    ])
    stats = store.stats()
    mine = stats[SERIAL]
    assert (mine["jobs"], mine["succeeded"], mine["failed"], mine["cancelled"], mine["running"]) == (3, 2, 1, 1, 1)
    assert mine["success_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert mine["print_hours"] == pytest.approx(1.75, abs=1e-3)
    assert mine["printer"] == "P1S-1"
    assert stats["OTHER"]["success_rate"] == 0.0
    assert store.stats(since=T0 + 3999)[SERIAL]["jobs"] == 2


def test_telemetry_window_and_duplicates(store: HistoryStore) -> None:
    samples = [Sample(SERIAL, T0 + i * 60, nozzle=200.0 + i, bed=60.0, state="RUNNING") for i in range(5)]
    store.write(samples)
    store.write(samples[:2])  # a replay adds nothing
    got = store.telemetry(SERIAL, since=T0 + 60)
    assert [s.t for s in got] == [T0 + 60, T0 + 120, T0 + 180, T0 + 240]
    assert got[0].nozzle == 201.0 and got[0].chamber is None
    assert got[-1].to_dict()["time"] == "2027-01-15T08:04:00Z"
    assert [s.t for s in store.telemetry(SERIAL, limit=2)] == [T0 + 180, T0 + 240]
    assert store.telemetry("OTHER") == []


def test_hms_history_open_alert_is_not_duplicated(store: HistoryStore) -> None:
    raised = HmsChange(SERIAL, "0300_0100_0001_0001", "serious", "heatbed", T0, job_key="k")
    store.write([raised])
    store.write([dataclasses.replace(raised, at=T0 + 30)])  # seen again after a restart: the same alert
    (entry,) = store.hms_history(SERIAL)
    assert entry["active"] and entry["raised_time"] == T0 and entry["job_key"] == "k"
    store.write([dataclasses.replace(raised, at=T0 + 60, cleared=True)])
    store.write([dataclasses.replace(raised, at=T0 + 120)])  # raised again later: a new entry
    entries = store.hms_history(SERIAL)
    assert [(e["raised_time"], e["cleared_time"]) for e in entries] == [(T0 + 120, None), (T0, T0 + 60)]


def test_retention(store: HistoryStore) -> None:
    day = 86400.0
    store.write([
        job("old", ended_at=T0 + 10, result="finished"),
        job("open", start=T0),
        job("new", start=T0 + 20 * day, ended_at=T0 + 20 * day + 10, result="finished"),
        Sample(SERIAL, T0), Sample(SERIAL, T0 + 20 * day),
    ])
    deleted = store.prune(T0 + 21 * day, retention_days=10, telemetry_retention_days=2)
    assert deleted == 2
    assert sorted(j.job_key for j in store.jobs()[0]) == ["new", "open"]  # an open job is never pruned
    assert [s.t for s in store.telemetry(SERIAL)] == [T0 + 20 * day]
    assert store.prune(T0 + 100 * day, retention_days=0, telemetry_retention_days=0) == 0  # 0 keeps


def test_restart_mid_print_records_one_job(store: HistoryStore) -> None:
    """The gateway restarts while a LAN print runs; the reloaded tracker closes the same row."""
    first = JobTracker()
    store.write(first.observe(SERIAL, report("RUNNING", layer_num=5, total_layer_num=100), T0))
    store.write(first.observe(SERIAL, report("RUNNING", layer_num=40, total_layer_num=100), T0 + 600))
    # restart: a new tracker, restored from the store
    second = JobTracker()
    second.restore(store.open_jobs())
    store.write(second.observe(SERIAL, report("RUNNING", layer_num=60, total_layer_num=100), T0 + 900))
    store.write(second.observe(SERIAL, report("FINISH", layer_num=100, total_layer_num=100), T0 + 1800))
    # a third start while the printer still says FINISH (and a duplicate FINISH) records nothing
    third = JobTracker()
    third.restore(store.open_jobs())
    store.write(third.observe(SERIAL, report("FINISH", layer_num=100, total_layer_num=100), T0 + 1900))
    store.write(third.observe(SERIAL, report("FINISH", layer_num=100, total_layer_num=100), T0 + 1901))
    jobs, total = store.jobs()
    assert total == 1
    (j,) = jobs
    assert (j.result, j.started_at, j.ended_at, j.layers) == ("finished", T0, T0 + 1800, 100)


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with HistoryStore.open(path):
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()


def test_unreachable_postgres_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(HistoryError) as info:
        HistoryStore.open("postgresql://bambu:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in str(info.value) and "PostgreSQL" in str(info.value)


def test_the_write_queue_is_bounded_for_samples_only() -> None:
    from bambulab.farm.history import _WriteQueue

    q = _WriteQueue(maxsize=3)
    for i in range(5):
        q.put(Sample(SERIAL, T0 + i))
    q.put(job("j"))  # job writes are never dropped
    q.put(HmsChange(SERIAL, "0300_0100_0001_0001", "serious", None, T0))
    assert q.dropped == 2 and len(q) == 5
    batch = q.take(100)
    assert batch is not None
    assert [s.t for s in batch if isinstance(s, Sample)] == [T0 + 2, T0 + 3, T0 + 4]  # the oldest went first
    assert any(isinstance(i, JobRecord) for i in batch) and any(isinstance(i, HmsChange) for i in batch)
    q.close()
    assert q.take(100) is None


def test_an_alert_cleared_while_the_gateway_was_down_is_closed(store: HistoryStore) -> None:
    hms = [{"attr": 0x03000100, "code": 0x00020001}]
    first = JobTracker()
    store.write(first.observe(SERIAL, report("IDLE", hms=hms), T0))
    assert store.hms_history(SERIAL)[0]["active"]
    second = JobTracker()  # the gateway restarts; the alert is gone from the printer
    second.restore(store.open_jobs(), store.open_hms())
    store.write(second.observe(SERIAL, report("IDLE"), T0 + 60))
    (entry,) = store.hms_history(SERIAL)
    assert not entry["active"] and entry["cleared_time"] == T0 + 60
    third = JobTracker()  # still present after a restart: the same entry, not a new one
    third.restore(store.open_jobs(), store.open_hms())
    store.write(third.observe(SERIAL, report("IDLE"), T0 + 120))
    assert len(store.hms_history(SERIAL)) == 1
