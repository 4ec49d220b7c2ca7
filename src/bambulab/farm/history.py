"""Print-job history and sampled telemetry for a farm: a job tracker, a store, a writer service.

Three parts, from pure to I/O:

* :class:`JobTracker` is a pure state machine. It is fed the printer's merged state (a plain
  ``{"print": {...}}`` dict or a :class:`~bambulab.protocol.views.PrinterStatus`) and the time,
  and returns what to write: :class:`JobRecord` snapshots (start, progress, end) and
  :class:`HmsChange` entries. No clock, no I/O, testable with dicts.
* :class:`HistoryStore` is the database: SQLite by default (stdlib :mod:`sqlite3`, WAL), or
  PostgreSQL (psycopg 3, :mod:`bambulab.farm.history_pg`) with the same schema, the same SQL and
  the same tests. Its schema is versioned (:data:`MIGRATIONS`); opening a store migrates it.
* :class:`HistoryService` runs in the gateway: it follows the fleet's events, feeds the tracker,
  samples telemetry every ``sample_interval`` seconds and hands every write to **one writer
  thread** through a bounded queue, so the event loop never waits for the disk.

**A job is recorded exactly once.** Its key is derived from the printer's own ids: the serial
plus the cloud ``subtask_id``/``task_id`` when the printer reports one (cloud prints), else the
serial, the file and the start time the tracker first saw. The table has ``UNIQUE(job_key)`` and
every write is an upsert that leaves a finished row alone (``... DO UPDATE ... WHERE
jobs.ended_at IS NULL``), so a duplicate finish report, a reconnect or a replayed write cannot
add a second row or change a finished one. Across gateway restarts the service reloads the open
(unfinished) rows into the tracker before it looks at any printer, so a print that was running
before the restart keeps its key and is closed, not duplicated, when it ends.

Results: ``running`` (open), ``finished``, ``failed``, ``cancelled`` (FAILED with the
"cancelled" print error 0300_400C) and ``interrupted`` (the printer went idle, or started
another job, without reporting an end).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from bambulab.config import ConfigError
from bambulab.exceptions import BambuError, HistoryError, StoreUnavailableError
from bambulab.farm.summary import CANCELLED_ERROR
from bambulab.protocol.views import GcodeState, PrinterStatus

__all__ = [
    "MIGRATIONS",
    "RESULTS",
    "HistoryConfig",
    "HistoryError",
    "HistoryService",
    "HistoryStore",
    "HmsChange",
    "JobFilter",
    "JobRecord",
    "JobTracker",
    "Sample",
    "StoreUnavailableError",
    "iso",
    "parse_time",
]

log = logging.getLogger(__name__)

Result = Literal["running", "finished", "failed", "cancelled", "interrupted"]
RESULTS: Final[tuple[str, ...]] = ("running", "finished", "failed", "cancelled", "interrupted")
ENDED_RESULTS: Final = frozenset(RESULTS) - {"running"}
_ACTIVE: Final = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE, GcodeState.SLICING})
_PLATE = re.compile(r"plate_(\d+)\.gcode", re.I)


# --------------------------------------------------------------------------- config


def _redact_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` → ``postgresql://user:***@host/db``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """The ``[history]`` table of the gateway config.

    ``path`` is the SQLite file; ``url`` a ``postgresql://`` URL (it may hold a password: it is
    redacted in the repr, and better given through ``url_env``, the name of an environment
    variable holding it). Retention is in days (``0`` keeps forever). ``sample_interval`` is
    the telemetry period in seconds (``0`` turns telemetry off). ``queue_size`` bounds the
    writer's queue of telemetry samples.
    """

    enabled: bool = True
    path: str = "bambu-history.sqlite3"
    url: str | None = field(default=None, repr=False)
    url_env: str | None = None
    retention_days: float = 0.0
    telemetry_retention_days: float = 7.0
    sample_interval: float = 60.0
    queue_size: int = 10_000

    def __repr__(self) -> str:
        url = _redact_url(self.url) if self.url else None
        return (
            f"HistoryConfig(enabled={self.enabled}, path={self.path!r}, url={url!r}, url_env={self.url_env!r}, "
            f"retention_days={self.retention_days}, telemetry_retention_days={self.telemetry_retention_days}, "
            f"sample_interval={self.sample_interval}, queue_size={self.queue_size})"
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise ConfigError(f"[history]: unknown setting(s) {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "enabled":
                if not isinstance(value, bool):
                    raise ConfigError("[history]: enabled must be true or false")
            elif key in ("path", "url", "url_env"):
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"[history]: {key} must be a non-empty string")
            elif key == "queue_size":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ConfigError("[history]: queue_size must be a positive integer")
            elif (
                not isinstance(value, int | float) or isinstance(value, bool) or value < 0 or not math.isfinite(value)
            ):
                raise ConfigError(f"[history]: {key} must be a number >= 0")
            values[key] = value
        return cls(**values)

    def target(self, environ: Mapping[str, str] | None = None) -> str:
        """The store to open: the PostgreSQL URL (from ``url`` or ``url_env``) or the SQLite path."""
        if self.url_env:
            import os

            env = os.environ if environ is None else environ
            value = env.get(self.url_env)
            if not value:
                raise ConfigError(f"[history]: environment variable {self.url_env} is not set")
            return value
        return self.url or self.path


# --------------------------------------------------------------------------- records


def iso(t: float | None) -> str | None:
    """Epoch seconds → ``2026-12-02T02:15:39Z`` (``None`` stays ``None``)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> float:
    """Epoch seconds or an ISO 8601 time (``Z`` or an offset; naive means UTC) → epoch seconds."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise HistoryError(f"not a time: {value!r}")
        return number
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise HistoryError(
            f"not a time: {value!r} (use epoch seconds or ISO 8601, e.g. 2026-12-01T00:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One print job as stored. ``filament`` maps ``"<unit>.<slot>"`` (``"ext"`` for the external
    spool) to what is known of that tray: material, colour, remaining percent at the first and
    last sight during the job and the difference (``used_percent``). ``hms`` lists the HMS codes
    seen while the job ran."""

    job_key: str
    serial: str
    started_at: float
    result: str = "running"
    ended_at: float | None = None
    printer: str | None = None
    file: str | None = None
    plate: int | None = None
    task_id: str | None = None
    layers: int | None = None
    total_layers: int | None = None
    progress: int | None = None
    print_error: int | None = None
    filament: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    hms: tuple[str, ...] = ()
    id: int | None = None

    @property
    def duration(self) -> float | None:
        return None if self.ended_at is None else max(0.0, self.ended_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        """The API/CLI shape (times in ISO 8601 UTC and epoch seconds)."""
        return {
            "id": self.id,
            "job_key": self.job_key,
            "serial": self.serial,
            "printer": self.printer,
            "file": self.file,
            "plate": self.plate,
            "task_id": self.task_id,
            "result": self.result,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "start_time": self.started_at,
            "end_time": self.ended_at,
            "duration_seconds": None if self.duration is None else round(self.duration, 1),
            "layers": self.layers,
            "total_layers": self.total_layers,
            "progress": self.progress,
            "print_error": self.print_error,
            "filament": {k: dict(v) for k, v in self.filament.items()},
            "hms": list(self.hms),
        }


@dataclass(frozen=True, slots=True)
class HmsChange:
    """An HMS entry appeared (``cleared=False``) or went away on a printer."""

    serial: str
    code: str  # "0300_0100_0001_0001"
    severity: str
    text: str | None
    at: float
    cleared: bool = False
    job_key: str | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """One telemetry sample (°C, percent); ``None`` where the printer does not report it."""

    serial: str
    t: float
    nozzle: float | None = None
    nozzle_target: float | None = None
    bed: float | None = None
    bed_target: float | None = None
    chamber: float | None = None
    progress: int | None = None
    layer: int | None = None
    state: str | None = None

    @classmethod
    def from_status(cls, serial: str, status: PrinterStatus, t: float) -> Sample:
        temps = status.temperatures
        job = status.job
        return cls(
            serial=serial,
            t=t,
            nozzle=temps.nozzle,
            nozzle_target=temps.nozzle_target,
            bed=temps.bed,
            bed_target=temps.bed_target,
            chamber=temps.chamber,
            progress=job.progress,
            layer=job.layer,
            state=job.state.value,
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        del data["serial"]
        data["time"] = iso(self.t)
        return data


@dataclass(frozen=True, slots=True)
class JobFilter:
    printer: str | None = None
    since: float | None = None
    until: float | None = None
    result: str | None = None
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        if self.result is not None and self.result not in RESULTS:
            raise HistoryError(f"unknown result {self.result!r}; one of {', '.join(RESULTS)}")
        if not 1 <= self.limit <= 10_000:
            raise HistoryError("limit must be 1..10000")
        if self.offset < 0:
            raise HistoryError("offset must be >= 0")


# --------------------------------------------------------------------------- the tracker


def _nonzero_id(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        text = value.strip()
        if text and text.strip("0"):
            return text
    return None


def _plate(p: Mapping[str, Any], file: str | None) -> int | None:
    for key in ("plate_idx", "plate_id"):
        value = p.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str) and value.isdigit() and int(value) > 0:
            return int(value)
    if file:
        match = _PLATE.search(file)
        if match:
            return int(match.group(1))
    return None


@dataclass(slots=True)
class _Open:
    record: JobRecord
    ident: str
    hms: list[str]
    filament: dict[str, dict[str, Any]]


class JobTracker:
    """Pure job state machine, one entry per printer.

    Feed it with :meth:`observe` after every state change (and when the printer comes back);
    it returns the records to upsert (:class:`JobRecord`) and the HMS changes to append
    (:class:`HmsChange`), in order. Call :meth:`restore` first with the store's open jobs.
    A printer that is offline or reports no recognisable ``gcode_state`` changes nothing.
    """

    def __init__(self) -> None:
        self._open: dict[str, _Open] = {}
        self._hms: dict[str, dict[str, HmsChange]] = {}

    def restore(self, records: Iterable[JobRecord], hms: Iterable[HmsChange] = ()) -> None:
        """Reload jobs and HMS alerts still open in the store (after a restart): a job keeps its
        row, and an alert that cleared while the gateway was down is closed on the first report."""
        for change in hms:
            self._hms.setdefault(change.serial, {})[change.code] = change
        for record in sorted(records, key=lambda r: r.started_at):
            ident = f"task:{record.task_id}" if record.task_id else f"file:{record.file or ''}"
            self._open[record.serial] = _Open(
                record, ident, list(record.hms), {k: dict(v) for k, v in record.filament.items()}
            )

    def open_job(self, serial: str) -> JobRecord | None:
        entry = self._open.get(serial)
        return entry.record if entry else None

    def forget(self, serial: str) -> None:
        """The printer left the fleet: stop tracking it (an open job stays open in the store)."""
        self._open.pop(serial, None)
        self._hms.pop(serial, None)

    def observe(
        self, serial: str, state: Mapping[str, Any] | PrinterStatus, now: float, *, printer: str | None = None
    ) -> list[JobRecord | HmsChange]:
        status = state if isinstance(state, PrinterStatus) else PrinterStatus(state)
        p = status.raw  # the merged "print" object
        job = status.job
        out: list[JobRecord | HmsChange] = []
        entry = self._open.get(serial)
        if job.state in _ACTIVE:
            task = _nonzero_id(p.get("subtask_id")) or _nonzero_id(p.get("task_id"))
            ident = f"task:{task}" if task else f"file:{job.file or ''}"
            if entry is not None and entry.ident != ident:
                out.append(self._close(serial, entry, "interrupted", now, None))
                entry = None
            if entry is None:
                key = f"{serial}:{ident}" if task else f"{serial}:{ident}:{int(now)}"
                record = JobRecord(
                    job_key=key,
                    serial=serial,
                    started_at=now,
                    printer=printer,
                    file=job.file,
                    plate=_plate(p, job.file),
                    task_id=task,
                )
                entry = self._open[serial] = _Open(record, ident, [], {})
                self._update(entry, status, job.layer, job.total_layers, job.progress)
                hms = self._hms_changes(serial, status, now)
                out.append(entry.record)
                out.extend(hms)
                return out
            changed = self._update(entry, status, job.layer, job.total_layers, job.progress)
            hms = self._hms_changes(serial, status, now)
            if changed or any(not h.cleared for h in hms):
                out.append(entry.record)
            out.extend(hms)
            return out
        hms = self._hms_changes(serial, status, now)
        if entry is not None:
            ended: str | None = None
            error = status.print_error.value if status.print_error is not None else None
            if job.state is GcodeState.FINISH:
                ended = "finished"
            elif job.state is GcodeState.FAILED:
                ended = "cancelled" if error == CANCELLED_ERROR else "failed"
            elif job.state is GcodeState.IDLE:
                ended = "interrupted"
            if ended is not None:
                self._update(entry, status, job.layer, job.total_layers, job.progress)
                out.append(self._close(serial, entry, ended, now, error))
        out.extend(hms)
        return out

    # -- internals

    def _close(self, serial: str, entry: _Open, result: str, now: float, error: int | None) -> JobRecord:
        del self._open[serial]
        return dataclasses.replace(entry.record, result=result, ended_at=now, print_error=error)

    def _update(
        self, entry: _Open, status: PrinterStatus, layer: int | None, total: int | None, progress: int | None
    ) -> bool:
        record = entry.record
        changes: dict[str, Any] = {}
        if layer is not None and layer != record.layers and (record.layers is None or layer > record.layers):
            changes["layers"] = layer
        if total is not None and total > 0 and total != record.total_layers:
            changes["total_layers"] = total
        if progress is not None and progress != record.progress:
            changes["progress"] = progress
        tray = status.active_tray
        if tray is not None and not tray.is_empty:
            name = "ext" if tray.unit_id is None else f"{tray.unit_id}.{tray.slot}"
            known = entry.filament.get(name)
            if known is None:
                known = entry.filament[name] = {
                    "material": tray.material,
                    "color": tray.color,
                    "remaining_start": tray.remaining,
                    "remaining_end": tray.remaining,
                    "used_percent": 0 if tray.remaining is not None else None,
                }
                changes["filament"] = True
            elif tray.remaining is not None and tray.remaining != known["remaining_end"]:
                known["remaining_end"] = tray.remaining
                start = known["remaining_start"]
                if start is None:
                    known["remaining_start"] = start = tray.remaining
                known["used_percent"] = max(0, start - tray.remaining)
                changes["filament"] = True
        if "filament" in changes:
            changes["filament"] = {k: dict(v) for k, v in entry.filament.items()}
        # progress alone changes every report: it is kept, but not worth a write of its own
        worth = bool(set(changes) - {"progress"})
        if changes:
            entry.record = dataclasses.replace(record, **changes)
        return worth

    def _hms_changes(self, serial: str, status: PrinterStatus, now: float) -> list[HmsChange]:
        current = {m.key.removeprefix("HMS_"): m for m in status.hms}
        known = self._hms.setdefault(serial, {})
        entry = self._open.get(serial)
        job_key = entry.record.job_key if entry else None
        out: list[HmsChange] = []
        for code, message in current.items():
            if code not in known:
                change = HmsChange(serial, code, message.severity.value, message.text, now, job_key=job_key)
                known[code] = change
                out.append(change)
            if entry is not None and code not in entry.hms:
                entry.hms.append(code)
                entry.record = dataclasses.replace(entry.record, hms=tuple(entry.hms))
        for code in [c for c in known if c not in current]:
            gone = known.pop(code)
            out.append(dataclasses.replace(gone, at=now, cleared=True, job_key=job_key))
        return out


# --------------------------------------------------------------------------- the store


class _Dialect(Protocol):
    name: str

    def connect(self, target: str, *, reader: bool) -> Any: ...
    def sql(self, statement: str) -> str: ...
    def ddl(self, statement: str) -> str: ...
    def broken(self, conn: Any) -> bool: ...
    @contextlib.contextmanager
    def transaction(self, conn: Any, *, lock: int | None = None) -> Iterator[Any]: ...


class _SQLite:
    name = "sqlite"

    def connect(self, target: str, *, reader: bool) -> Any:
        import sqlite3

        path = target.removeprefix("sqlite:///").removeprefix("sqlite://")
        if path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                path, timeout=10.0, isolation_level=None, check_same_thread=False, uri=path.startswith("file:")
            )
            if not reader:
                conn.execute("PRAGMA journal_mode=WAL")
            elif "mode=memory" in path:
                # a shared-cache memory database (the demo) locks tables, not files: a reader that
                # reads uncommitted rows never waits for the writer (busy_timeout does not apply)
                conn.execute("PRAGMA read_uncommitted=true")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open the history database {path}: {exc}") from exc
        return conn

    def sql(self, statement: str) -> str:
        return statement

    def ddl(self, statement: str) -> str:
        return statement.replace("{id}", "INTEGER PRIMARY KEY")

    def broken(self, conn: Any) -> bool:
        return False  # a file does not hang up

    @contextlib.contextmanager
    def transaction(self, conn: Any, *, lock: int | None = None) -> Iterator[Any]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _dialect(target: str) -> _Dialect:
    if target.startswith(("postgresql://", "postgres://")) or target.startswith("host=") or " dbname=" in target:
        from bambulab.farm.history_pg import PostgresDialect

        return PostgresDialect()
    return _SQLite()


# Each migration is a list of statements; {id} is the dialect's auto-increment primary key.
# Types are spelled so both SQLite (affinity) and PostgreSQL read them: DOUBLE PRECISION, BIGINT, TEXT.
MIGRATIONS: Final[tuple[tuple[int, str, tuple[str, ...]], ...]] = (
    (
        1,
        "jobs, telemetry and HMS tables",
        (
            """CREATE TABLE jobs (
                id {id},
                job_key TEXT NOT NULL UNIQUE,
                serial TEXT NOT NULL,
                printer TEXT,
                file TEXT,
                plate BIGINT,
                task_id TEXT,
                started_at DOUBLE PRECISION NOT NULL,
                ended_at DOUBLE PRECISION,
                result TEXT NOT NULL,
                duration DOUBLE PRECISION,
                layers BIGINT,
                total_layers BIGINT,
                progress BIGINT,
                print_error BIGINT,
                filament TEXT NOT NULL DEFAULT '{}',
                hms TEXT NOT NULL DEFAULT '[]'
            )""",
            """CREATE TABLE telemetry (
                serial TEXT NOT NULL,
                t DOUBLE PRECISION NOT NULL,
                nozzle DOUBLE PRECISION,
                nozzle_target DOUBLE PRECISION,
                bed DOUBLE PRECISION,
                bed_target DOUBLE PRECISION,
                chamber DOUBLE PRECISION,
                progress BIGINT,
                layer BIGINT,
                state TEXT,
                PRIMARY KEY (serial, t)
            )""",
            """CREATE TABLE hms_events (
                id {id},
                serial TEXT NOT NULL,
                code TEXT NOT NULL,
                severity TEXT NOT NULL,
                text TEXT,
                raised_at DOUBLE PRECISION NOT NULL,
                cleared_at DOUBLE PRECISION,
                job_key TEXT,
                UNIQUE (serial, code, raised_at)
            )""",
        ),
    ),
    (
        2,
        "indexes for the history queries",
        (
            "CREATE INDEX jobs_serial_started ON jobs (serial, started_at)",
            "CREATE INDEX jobs_started ON jobs (started_at)",
            "CREATE INDEX jobs_open ON jobs (serial) WHERE ended_at IS NULL",
            "CREATE INDEX hms_serial_raised ON hms_events (serial, raised_at)",
            "CREATE INDEX telemetry_t ON telemetry (t)",
        ),
    ),
)
SCHEMA_VERSION: Final = MIGRATIONS[-1][0]
_MIGRATION_LOCK: Final = 0x62616D62  # "bamb": the PostgreSQL advisory lock taken while migrating

_JOB_COLUMNS: Final = (
    "id, job_key, serial, printer, file, plate, task_id, started_at, ended_at, result, "
    "layers, total_layers, progress, print_error, filament, hms"
)


_UPSERT_JOB: Final = """INSERT INTO jobs (job_key, serial, printer, file, plate, task_id, started_at, ended_at, result,
        duration, layers, total_layers, progress, print_error, filament, hms)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (job_key) DO UPDATE SET
        printer = COALESCE(excluded.printer, jobs.printer),
        ended_at = excluded.ended_at, result = excluded.result, duration = excluded.duration,
        layers = COALESCE(excluded.layers, jobs.layers),
        total_layers = COALESCE(excluded.total_layers, jobs.total_layers),
        progress = COALESCE(excluded.progress, jobs.progress),
        print_error = excluded.print_error, filament = excluded.filament, hms = excluded.hms
    WHERE jobs.ended_at IS NULL"""  # a finished job never changes: duplicates and replays are no-ops
_INSERT_SAMPLE: Final = """INSERT INTO telemetry (serial, t, nozzle, nozzle_target, bed, bed_target, chamber, progress,
        layer, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (serial, t) DO NOTHING"""
_STATS_SQL: Final = (
    "SELECT serial, MAX(printer), "
    "SUM(CASE WHEN result = 'finished' THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN result NOT IN ('finished', 'running') THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN result = 'running' THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN result = 'cancelled' THEN 1 ELSE 0 END), "
    "COALESCE(SUM(duration), 0) FROM jobs{where} GROUP BY serial ORDER BY serial"
)


def _job_from_row(row: Sequence[Any]) -> JobRecord:
    return JobRecord(
        id=int(row[0]),
        job_key=row[1],
        serial=row[2],
        printer=row[3],
        file=row[4],
        plate=row[5],
        task_id=row[6],
        started_at=float(row[7]),
        ended_at=None if row[8] is None else float(row[8]),
        result=row[9],
        layers=row[10],
        total_layers=row[11],
        progress=row[12],
        print_error=row[13],
        filament=json.loads(row[14] or "{}"),
        hms=tuple(json.loads(row[15] or "[]")),
    )


class HistoryStore:
    """The history database: ``HistoryStore.open("history.sqlite3")`` or
    ``HistoryStore.open("postgresql://...")``. Synchronous and thread-safe: writes go through
    one connection, reads through another (SQLite in WAL mode lets them overlap), each behind its
    own lock. The gateway calls it from a writer thread and from executor threads, never from the
    event loop. Opening migrates the schema to :data:`SCHEMA_VERSION`.
    """

    def __init__(self, target: str, *, migrate_to: int | None = None) -> None:
        self._target = target
        self._dialect = _dialect(target)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer = self._dialect.connect(target, reader=False)
        self._closed = False
        try:
            self.migrate(migrate_to)
            self._reader = self._dialect.connect(target, reader=True)
        except BaseException:
            with contextlib.suppress(Exception):
                self._writer.close()
            raise

    @classmethod
    def open(cls, target: str | Path, *, migrate_to: int | None = None) -> HistoryStore:
        return cls(str(target), migrate_to=migrate_to)

    def __repr__(self) -> str:
        return f"<HistoryStore {self._dialect.name} {_redact_url(self._target)}>"

    @property
    def backend(self) -> str:
        return self._dialect.name

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in (self._writer, getattr(self, "_reader", None)):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    # -- schema

    def schema_version(self) -> int:
        with self._write_lock:
            return self._version(self._writer)

    def _version(self, conn: Any) -> int:
        d = self._dialect
        conn.execute(
            d.sql("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
                  "description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
        )
        row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def migrate(self, target: int | None = None) -> int:
        """Apply the migrations above the database's version (up to ``target``), each in its own
        transaction; returns the version reached. A database newer than this code is refused."""
        target = SCHEMA_VERSION if target is None else target
        d = self._dialect
        with self._write_lock:
            try:
                current = self._version(self._writer)
                if current > SCHEMA_VERSION:
                    raise HistoryError(
                        f"the history database has schema version {current}, newer than this bambulab "
                        f"({SCHEMA_VERSION}); upgrade bambulab"
                    )
                for version, description, statements in MIGRATIONS:
                    if version > target:
                        break
                    with d.transaction(self._writer, lock=_MIGRATION_LOCK) as conn:
                        if self._version(conn) >= version:  # another gateway got there first
                            continue
                        for statement in statements:
                            conn.execute(d.ddl(statement))
                        conn.execute(
                            d.sql("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)"),
                            (version, description, time.time()),
                        )
                    log.info("history store: schema migrated to version %d (%s)", version, description)
                return self._version(self._writer)
            except HistoryError:
                raise
            except Exception as exc:
                raise HistoryError(f"cannot migrate the history database: {exc}") from exc

    # -- writes (one transaction per batch)

    def write(self, items: Iterable[JobRecord | HmsChange | Sample]) -> None:
        """Write a batch in one transaction (all or nothing: a failed batch can be retried, every
        write being an idempotent upsert). A connection the server dropped is reopened first."""
        d = self._dialect
        batch = list(items)
        with self._write_lock:
            if self._closed:
                raise HistoryError("the history store is closed")
            for attempt in (1, 2):
                if d.broken(self._writer):
                    with contextlib.suppress(Exception):
                        self._writer.close()
                    self._writer = d.connect(self._target, reader=False)
                    log.warning("history store: reconnected to %s", _redact_url(self._target))
                try:
                    self._write(batch)
                    return
                except Exception as exc:
                    if attempt == 1 and d.broken(self._writer):
                        continue  # the server hung up: the transaction is gone, so once more at once
                    raise StoreUnavailableError(f"history write failed: {_redact_url(str(exc))}") from exc

    def _write(self, items: Iterable[JobRecord | HmsChange | Sample]) -> None:
        d = self._dialect
        with d.transaction(self._writer) as conn:
            cursor = conn.cursor()
            run: list[Any] = []  # consecutive rows of one kind go in one executemany (a pipeline on psycopg)
            kind: type | None = None
            for item in [*items, None]:
                if run and type(item) is not kind:
                    if kind is JobRecord:
                        cursor.executemany(d.sql(_UPSERT_JOB), [self._job_row(r) for r in run])
                    else:
                        cursor.executemany(d.sql(_INSERT_SAMPLE), [self._sample_row(s) for s in run])
                    run = []
                if isinstance(item, HmsChange):
                    self._hms(conn, item)
                elif item is not None:
                    kind = type(item)
                    run.append(item)

    @staticmethod
    def _job_row(r: JobRecord) -> tuple[Any, ...]:
        return (
            r.job_key, r.serial, r.printer, r.file, r.plate, r.task_id, r.started_at, r.ended_at, r.result,
            r.duration, r.layers, r.total_layers, r.progress, r.print_error,
            json.dumps(r.filament, sort_keys=True), json.dumps(list(r.hms)),
        )

    @staticmethod
    def _sample_row(s: Sample) -> tuple[Any, ...]:
        return (s.serial, s.t, s.nozzle, s.nozzle_target, s.bed, s.bed_target, s.chamber, s.progress, s.layer,
                s.state)

    def _hms(self, conn: Any, h: HmsChange) -> None:
        d = self._dialect
        if h.cleared:
            conn.execute(
                d.sql("UPDATE hms_events SET cleared_at = ? WHERE serial = ? AND code = ? AND cleared_at IS NULL"),
                (h.at, h.serial, h.code),
            )
            return
        # an alert still open (seen before a restart) is the same alert, not a new one
        row = conn.execute(
            d.sql("SELECT 1 FROM hms_events WHERE serial = ? AND code = ? AND cleared_at IS NULL"), (h.serial, h.code)
        ).fetchone()
        if row is None:
            conn.execute(
                d.sql(
                    """INSERT INTO hms_events (serial, code, severity, text, raised_at, job_key)
                       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (serial, code, raised_at) DO NOTHING"""
                ),
                (h.serial, h.code, h.severity, h.text, h.at, h.job_key),
            )

    def prune(self, now: float, *, retention_days: float, telemetry_retention_days: float) -> int:
        """Delete finished jobs, cleared HMS entries and samples older than their retention
        (``0`` days keeps them); returns the number of rows deleted."""
        try:
            return self._prune(now, retention_days, telemetry_retention_days)
        except HistoryError:
            raise
        except Exception as exc:
            raise StoreUnavailableError(f"history retention failed: {_redact_url(str(exc))}") from exc

    def _prune(self, now: float, retention_days: float, telemetry_retention_days: float) -> int:
        d = self._dialect
        deleted = 0
        with self._write_lock, d.transaction(self._writer) as conn:
            if telemetry_retention_days > 0:
                cutoff = now - telemetry_retention_days * 86400
                cur = conn.execute(d.sql("DELETE FROM telemetry WHERE t < ?"), (cutoff,))
                deleted += max(cur.rowcount, 0)
            if retention_days > 0:
                cutoff = now - retention_days * 86400
                cur = conn.execute(d.sql("DELETE FROM jobs WHERE ended_at IS NOT NULL AND ended_at < ?"), (cutoff,))
                deleted += max(cur.rowcount, 0)
                cur = conn.execute(
                    d.sql("DELETE FROM hms_events WHERE cleared_at IS NOT NULL AND cleared_at < ?"), (cutoff,)
                )
                deleted += max(cur.rowcount, 0)
        return deleted

    # -- reads

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        d = self._dialect
        with self._read_lock:
            for attempt in (1, 2):
                if d.broken(self._reader):
                    with contextlib.suppress(Exception):
                        self._reader.close()
                    self._reader = d.connect(self._target, reader=True)
                try:
                    return list(self._reader.execute(d.sql(statement), tuple(params)).fetchall())
                except Exception as exc:
                    if attempt == 1 and d.broken(self._reader):
                        continue
                    raise StoreUnavailableError(f"history query failed: {_redact_url(str(exc))}") from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _where(f: JobFilter) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if f.printer:
            clauses.append("(serial = ? OR printer = ?)")
            params += [f.printer, f.printer]
        if f.since is not None:
            clauses.append("started_at >= ?")
            params.append(f.since)
        if f.until is not None:
            clauses.append("started_at < ?")
            params.append(f.until)
        if f.result:
            clauses.append("result = ?")
            params.append(f.result)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def jobs(self, f: JobFilter | None = None) -> tuple[list[JobRecord], int]:
        """Jobs newest first, one page, and the total that matched."""
        f = f or JobFilter()
        where, params = self._where(f)
        total = self._query(f"SELECT COUNT(*) FROM jobs{where}", params)[0][0]  # noqa: S608 (only our own clauses)
        rows = self._query(
            f"SELECT {_JOB_COLUMNS} FROM jobs{where} ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?",  # noqa: S608
            [*params, f.limit, f.offset],
        )
        return [_job_from_row(r) for r in rows], int(total)

    def iter_jobs(self, f: JobFilter | None = None, *, page: int = 1000) -> Iterator[JobRecord]:
        """Every matching job, newest first, fetched a page at a time (for CSV export)."""
        base = f or JobFilter()
        offset = base.offset
        while True:
            batch, _ = self.jobs(dataclasses.replace(base, limit=page, offset=offset))
            yield from batch
            if len(batch) < page:
                return
            offset += page

    def job(self, job_key: str) -> JobRecord | None:
        rows = self._query(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_key = ?", [job_key])  # noqa: S608
        return _job_from_row(rows[0]) if rows else None

    def open_jobs(self) -> list[JobRecord]:
        rows = self._query(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE ended_at IS NULL")  # noqa: S608
        return [_job_from_row(r) for r in rows]

    def open_hms(self) -> list[HmsChange]:
        """HMS alerts raised and not cleared yet."""
        rows = self._query("SELECT serial, code, severity, text, raised_at, job_key FROM hms_events "
                           "WHERE cleared_at IS NULL")
        return [HmsChange(r[0], r[1], r[2], r[3], float(r[4]), job_key=r[5]) for r in rows]

    def stats(self, *, since: float | None = None, until: float | None = None) -> dict[str, dict[str, Any]]:
        """Per printer: jobs ended, succeeded, failed (every other end), running, success rate
        (``None`` with no ended job) and print hours (the ended jobs' durations)."""
        where, params = self._where(JobFilter(since=since, until=until))
        rows = self._query(_STATS_SQL.format(where=where), params)
        out: dict[str, dict[str, Any]] = {}
        for serial, name, ok, bad, running, cancelled, seconds in rows:
            ok, bad = int(ok or 0), int(bad or 0)
            ended = ok + bad
            out[serial] = {
                "printer": name,
                "jobs": ended,
                "succeeded": ok,
                "failed": bad,
                "cancelled": int(cancelled or 0),
                "running": int(running or 0),
                "success_rate": round(ok / ended, 4) if ended else None,
                "print_hours": round(float(seconds) / 3600, 3),
            }
        return out

    def telemetry(
        self, serial: str, *, since: float | None = None, until: float | None = None, limit: int = 10_000
    ) -> list[Sample]:
        """Samples oldest first (the newest ``limit`` of the window)."""
        clauses: list[str] = ["serial = ?"]
        params: list[Any] = [serial]
        if since is not None:
            clauses.append("t >= ?")
            params.append(since)
        if until is not None:
            clauses.append("t < ?")
            params.append(until)
        rows = self._query(
            "SELECT serial, t, nozzle, nozzle_target, bed, bed_target, chamber, progress, layer, state "  # noqa: S608
            f"FROM telemetry WHERE {' AND '.join(clauses)} ORDER BY t DESC LIMIT ?",
            [*params, limit],
        )
        return [Sample(r[0], float(r[1]), *r[2:]) for r in reversed(rows)]

    def hms_history(self, serial: str, *, since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """HMS entries newest first: code, severity, text, raised/cleared times, the job."""
        clauses: list[str] = ["serial = ?"]
        params: list[Any] = [serial]
        if since is not None:
            clauses.append("raised_at >= ?")
            params.append(since)
        rows = self._query(
            "SELECT code, severity, text, raised_at, cleared_at, job_key FROM hms_events "  # noqa: S608
            f"WHERE {' AND '.join(clauses)} ORDER BY raised_at DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return [
            {
                "code": r[0], "severity": r[1], "text": r[2],
                "raised_at": iso(r[3]), "cleared_at": iso(r[4]), "raised_time": r[3], "cleared_time": r[4],
                "active": r[4] is None, "job_key": r[5],
            }
            for r in rows
        ]


# --------------------------------------------------------------------------- the writer


Item = JobRecord | HmsChange | Sample


class _WriteQueue:
    """Bounded for telemetry samples (the oldest is dropped when full), never for job and HMS
    writes (a handful per print): the same rule as :class:`bambulab.events.EventStream`."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[Item] = deque()
        self._samples = 0
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.idle = threading.Event()
        self.idle.set()
        self._closing = threading.Event()

    def put(self, item: Item) -> None:
        with self._cond:
            self.idle.clear()
            if isinstance(item, Sample):
                if self._samples >= self.maxsize:
                    for i, old in enumerate(self._items):
                        if isinstance(old, Sample):
                            del self._items[i]
                            self._samples -= 1
                            self.dropped += 1
                            break
                self._samples += 1
            self._items.append(item)
            self._cond.notify()

    def take(self, limit: int) -> list[Item] | None:
        """Up to ``limit`` items, waiting for the first; ``None`` once closed and empty."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if not self._items:
                self.idle.set()
                return None
            batch: list[Item] = []
            while self._items and len(batch) < limit:
                item = self._items.popleft()
                if isinstance(item, Sample):
                    self._samples -= 1
                batch.append(item)
            return batch

    def done(self) -> None:
        """The writer finished a batch: mark idle if nothing else is queued."""
        with self._cond:
            if not self._items:
                self.idle.set()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._closing.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def wait_closed(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` s, less if the queue is closed meanwhile (then True)."""
        return self._closing.wait(timeout)

    def __len__(self) -> int:
        return len(self._items)


class _FleetLike(Protocol):
    @property
    def members(self) -> Mapping[str, Any]: ...
    def subscribe(self, serials: set[str] | None = ..., maxsize: int = ...) -> Any: ...


class HistoryService:
    """The gateway's history service (``async start()``/``async stop()``).

    One writer thread owns the store's writes; the event loop only appends to its bounded queue.
    ``stop()`` drains the queue (bounded by ``flush_timeout``) before closing the store.
    """

    def __init__(
        self,
        store: HistoryStore,
        fleet: _FleetLike,
        config: HistoryConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        batch: int = 500,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.config = config or HistoryConfig()
        self.tracker = JobTracker()
        self._clock = clock
        self._batch = batch
        self._queue = _WriteQueue(self.config.queue_size)
        self._thread: threading.Thread | None = None
        self._tasks: list[Any] = []
        self.written = 0
        self.errors = 0
        #: Jobs that ended since the gateway started, by (serial, printer name, result): the
        #: ``bambu_printer_jobs_total`` counter.
        self.ended: dict[tuple[str, str, str], int] = {}

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, items: Iterable[Item]) -> None:
        for item in items:
            self._queue.put(item)

    async def start(self) -> None:
        import asyncio

        jobs = await asyncio.to_thread(self.store.open_jobs)
        self.tracker.restore(jobs, await asyncio.to_thread(self.store.open_hms))
        self._thread = threading.Thread(target=self._run, name="bambu-history-writer", daemon=True)
        self._thread.start()
        for member in list(self.fleet.members.values()):
            self._observe(member)
        self._tasks = [asyncio.create_task(self._follow(), name="history-follow")]
        if self.config.retention_days > 0 or self.config.telemetry_retention_days > 0:
            self._tasks.append(asyncio.create_task(self._pruner(), name="history-retention"))
        if self.config.sample_interval > 0:
            self._tasks.append(asyncio.create_task(self._sampler(), name="history-sampler"))

    async def stop(self, flush_timeout: float = 4.0) -> None:
        import asyncio

        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._queue.close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, flush_timeout)
            if self._thread.is_alive():
                log.warning("history store: %d writes still queued at shutdown", len(self._queue))
            self._thread = None
        self.store.close()

    async def flush(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until everything queued so far is written (for tests and shutdown)."""
        import asyncio

        await asyncio.to_thread(self._queue.idle.wait, timeout)

    def _observe(self, member: Any) -> None:
        if not getattr(member, "online", True):
            return
        printer = getattr(member, "printer", None)
        if printer is None:
            return
        serial = member.serial
        try:
            items = self.tracker.observe(serial, printer.status, self._clock(), printer=getattr(member, "name", None))
        except Exception:  # a garbage report must not stop the history of the farm
            log.exception("history: cannot track %s", serial)
            return
        if items:
            for item in items:
                if isinstance(item, JobRecord) and item.ended_at is not None:
                    key = (serial, item.printer or serial, item.result)
                    self.ended[key] = self.ended.get(key, 0) + 1
            self.submit(items)

    async def _follow(self) -> None:
        async with self.fleet.subscribe() as events:
            async for event in events:
                kind = event.kind
                if kind == "resync":
                    for member in list(self.fleet.members.values()):
                        self._observe(member)
                    continue
                serial = event.serial
                if serial is None:
                    continue
                if kind == "removed":
                    self.tracker.forget(serial)
                    continue
                member = self.fleet.members.get(serial)
                if member is not None and kind in ("delta", "online", "added", "event"):
                    self._observe(member)

    async def _sampler(self) -> None:
        import asyncio

        interval = self.config.sample_interval
        while True:
            await asyncio.sleep(interval)
            now = self._clock()
            samples = []
            for member in list(self.fleet.members.values()):
                if getattr(member, "online", False) and getattr(member, "printer", None) is not None:
                    try:
                        samples.append(Sample.from_status(member.serial, member.printer.status, now))
                    except Exception:
                        log.exception("history: cannot sample %s", member.serial)
            self.submit(samples)

    async def _pruner(self, every: float = 3600.0) -> None:
        """Apply the retention at start and then hourly (a failure is logged, never fatal)."""
        import asyncio

        while True:
            try:
                deleted = await asyncio.to_thread(
                    self.store.prune,
                    self._clock(),
                    retention_days=self.config.retention_days,
                    telemetry_retention_days=self.config.telemetry_retention_days,
                )
                if deleted:
                    log.info("history store: %d rows past their retention deleted", deleted)
            except BambuError as exc:
                log.warning("history store: retention not applied: %s", exc)
            await asyncio.sleep(every)

    def _run(self) -> None:
        while True:
            batch = self._queue.take(self._batch)
            if batch is None:
                return
            delay = 0.5
            while True:
                try:
                    self.store.write(batch)
                    self.written += len(batch)
                    break
                except Exception as exc:
                    self.errors += 1
                    # job and HMS writes are kept and retried (they are idempotent upserts);
                    # telemetry samples of a failed batch are given up
                    batch = [item for item in batch if not isinstance(item, Sample)]
                    if not batch or self._queue.closed:
                        log.error("history store: %d writes lost: %s", len(batch), exc)
                        break
                    log.warning("history store: a write failed (%s); retrying in %.1f s", exc, delay)
                    if self._queue.wait_closed(delay):
                        continue  # shutting down: one last try at once
                    delay = min(delay * 2, 30.0)
            self._queue.done()
