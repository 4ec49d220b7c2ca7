"""The PostgreSQL server drops the gateway's connections: the store reconnects, the writer
retries, no job is lost or doubled."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psycopg
import pytest
from farmtools import until

from bambulab.farm.fleet import Fleet
from bambulab.farm.history import (
    HistoryConfig,
    HistoryError,
    HistoryService,
    HistoryStore,
    JobFilter,
    JobRecord,
    Sample,
)

T0 = 1_800_000_000.0


def drop_connections(url: str) -> int:
    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def test_a_store_that_cannot_reconnect_raises_a_clear_error(pg_url: str) -> None:
    store = HistoryStore.open(pg_url)
    store.close()
    with pytest.raises(HistoryError, match="closed"):
        store.write([JobRecord("a", "S1", T0)])


def test_store_reconnects_after_the_server_drops_it(pg_url: str) -> None:
    with HistoryStore.open(pg_url) as store:
        store.write([JobRecord("a", "S1", T0)])
        assert drop_connections(pg_url) == 2  # the writer and the reader
        store.write([JobRecord("b", "S1", T0 + 1)])  # finds the connection dead, reconnects, writes
        jobs, total = store.jobs()                   # the reader too
        assert total == 2 and {j.job_key for j in jobs} == {"a", "b"}


async def test_writer_retries_a_failed_batch(pg_url: str) -> None:
    store = HistoryStore.open(pg_url)
    fleet = Fleet()
    service = HistoryService(store, fleet, HistoryConfig(sample_interval=0))
    await service.start()
    try:
        service.submit([JobRecord("a", "S1", T0)])
        await service.flush()
        drop_connections(pg_url)
        service.submit([JobRecord("b", "S1", T0 + 1), JobRecord("b", "S1", T0 + 1, ended_at=T0 + 60,
                                                              result="finished")])
        await service.flush(timeout=10)
        assert service.pending == 0
        jobs, total = await asyncio.to_thread(store.jobs, JobFilter())
        assert total == 2 and {j.job_key: j.result for j in jobs} == {"a": "running", "b": "finished"}
    finally:
        await service.stop()
        await fleet.close()


async def test_writer_keeps_job_writes_through_an_outage(tmp_path: Path) -> None:
    """While the database refuses writes, job writes wait and are retried, then land once."""
    path = tmp_path / "h.sqlite3"
    store = HistoryStore.open(path)
    fleet = Fleet()
    service = HistoryService(store, fleet, HistoryConfig(sample_interval=0))
    await service.start()
    other = sqlite3.connect(path)
    try:
        other.execute("ALTER TABLE jobs RENAME TO jobs_away")  # the "outage": every job write fails
        other.commit()
        service.submit([JobRecord("a", "S1", T0), Sample("S1", T0)])
        await until(lambda: service.errors >= 2, within=10, what="failed attempts")
        other.execute("ALTER TABLE jobs_away RENAME TO jobs")
        other.commit()
        await service.flush(timeout=10)
        jobs, total = await asyncio.to_thread(store.jobs, JobFilter())
        assert total == 1 and jobs[0].job_key == "a"
    finally:
        other.close()
        await service.stop()
        await fleet.close()


async def test_the_service_applies_the_retention_at_start(tmp_path: Path) -> None:
    day = 86400.0
    now = 1_900_000_000.0
    store = HistoryStore.open(tmp_path / "h.sqlite3")
    store.write([JobRecord("old", "S1", now - 40 * day, ended_at=now - 40 * day + 60, result="finished"),
                 JobRecord("new", "S1", now - day, ended_at=now - day + 60, result="finished"),
                 Sample("S1", now - 10 * day), Sample("S1", now - 60)])
    fleet = Fleet()
    service = HistoryService(store, fleet, HistoryConfig(sample_interval=0, retention_days=30,
                                                         telemetry_retention_days=7), clock=lambda: now)
    await service.start()
    try:
        async def pruned() -> bool:
            _, total = await asyncio.to_thread(store.jobs, JobFilter())
            return total == 1
        await until(pruned, within=10, what="the retention")
        assert [s.t for s in await asyncio.to_thread(store.telemetry, "S1")] == [now - 60]
    finally:
        await service.stop()
        await fleet.close()
