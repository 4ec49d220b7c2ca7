"""History routes: jobs (JSON and CSV), stats, telemetry and HMS history; and the history service.

``routes(gateway)`` opens the store named by the ``[history]`` table (SQLite file by default,
relative to the config file; or PostgreSQL), registers the :class:`~bambulab.farm.history.HistoryService`
with the gateway and sets ``gateway.history`` to the store. Without a ``[history]`` table history
is off, except under ``--demo``, which keeps it in a shared in-memory SQLite database. Every
query runs in a worker thread; the event loop never waits for the database.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import logging
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from bambulab.exceptions import BambuError
from bambulab.farm.history import (
    RESULTS,
    HistoryConfig,
    HistoryError,
    HistoryService,
    HistoryStore,
    JobFilter,
    parse_time,
)
from bambulab.servers.gateway._http import error, json_response

if TYPE_CHECKING:
    from bambulab.servers.gateway import Gateway

__all__ = ["CSV_COLUMNS", "history_config", "openapi_paths", "routes"]

log = logging.getLogger("bambulab.gateway.history")

CSV_COLUMNS = (
    "id", "serial", "printer", "file", "plate", "result", "started_at", "ended_at", "duration_seconds",
    "layers", "total_layers", "progress", "print_error", "filament", "hms", "task_id", "job_key",
)
_DEMO_DB = "file:bambu-demo-history-{}?mode=memory&cache=shared"


def history_config(gateway: Gateway) -> HistoryConfig | None:
    """The gateway's history settings, or ``None`` when history is off."""
    section = gateway.config.sections.get("history")
    if section is None:
        if "demo" in gateway.extras:
            return HistoryConfig(path=_DEMO_DB.format(id(gateway)), sample_interval=10.0)
        return None
    if not isinstance(section, dict):
        raise HistoryError("[history] must be a table")
    cfg = HistoryConfig.from_dict(section)
    if not cfg.enabled:
        return None
    if not cfg.url and not cfg.url_env and not cfg.path.startswith("file:"):
        path = Path(cfg.path).expanduser()
        base = gateway.config.path.parent if gateway.config.path is not None else Path.cwd()
        cfg = HistoryConfig(**{**_fields(cfg), "path": str(path if path.is_absolute() else base / path)})
    return cfg


def _fields(cfg: HistoryConfig) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in cfg.__dataclass_fields__}


class _Service:
    """Opens the store at start (in a thread) and runs the history service."""

    def __init__(self, gateway: Gateway, cfg: HistoryConfig) -> None:
        self.gateway = gateway
        self.cfg = cfg
        self.service: HistoryService | None = None
        self.keepalive: Any = None

    async def start(self) -> None:
        target = self.cfg.target()
        if target.startswith("file:") and "mode=memory" in target:
            import sqlite3

            # a shared in-memory database lives while one connection holds it
            self.keepalive = sqlite3.connect(target, uri=True, check_same_thread=False)
        store = await asyncio.to_thread(HistoryStore.open, target)
        self.service = HistoryService(store, self.gateway.fleet, self.cfg)
        await self.service.start()
        self.gateway.history = store
        log.info("history: %r", store)

    async def stop(self) -> None:
        service, self.service = self.service, None
        if service is not None:
            await service.stop()
        if self.keepalive is not None:
            self.keepalive.close()
            self.keepalive = None


_services: weakref.WeakKeyDictionary[Gateway, _Service] = weakref.WeakKeyDictionary()


def service_of(gateway: Gateway) -> HistoryService | None:
    """The running history service of ``gateway`` (for the metrics), if any."""
    holder = _services.get(gateway)
    return holder.service if holder is not None else None


def _filter(request: Request, *, paged: bool = True) -> JobFilter:
    q = request.query_params
    try:
        limit = int(q.get("limit", "100")) if paged else 10_000
        offset = int(q.get("offset", "0")) if paged else 0
    except ValueError:
        raise HistoryError("limit and offset must be whole numbers") from None
    result = q.get("result") or None
    if result is not None and result not in RESULTS:
        raise HistoryError(f"unknown result {result!r}; one of {', '.join(RESULTS)}")
    return JobFilter(
        printer=(q.get("printer") or "").strip() or None,
        since=parse_time(q["since"]) if q.get("since") else None,
        until=parse_time(q["until"]) if q.get("until") else None,
        result=result,
        limit=limit,
        offset=offset,
    )


def _csv_row(job: dict[str, Any]) -> list[Any]:
    row = []
    for column in CSV_COLUMNS:
        value = job.get(column)
        if column == "filament":
            parts = []
            for tray, info in sorted((value or {}).items()):
                used = info.get("used_percent")
                parts.append(f"{tray}:{info.get('material') or ''}:{'' if used is None else used}")
            value = ";".join(parts)
        elif column == "hms":
            value = " ".join(value or [])
        row.append("" if value is None else value)
    return row


def routes(gateway: Gateway) -> list[BaseRoute]:
    cfg = history_config(gateway)
    if cfg is not None:
        holder = _Service(gateway, cfg)
        _services[gateway] = holder
        gateway.add_service(holder)

    def store() -> HistoryStore | Response:
        current = gateway.history
        if current is None:
            return error(503, "history_disabled",
                         "history is off: add a [history] table to the gateway config (see docs/history.md)")
        assert isinstance(current, HistoryStore)
        return current

    async def jobs(request: Request) -> Response:
        found = store()
        if isinstance(found, Response):
            return found
        try:
            f = _filter(request)
            records, total = await asyncio.to_thread(found.jobs, f)
        except BambuError as exc:
            return error(400, "bad_request", str(exc))
        return json_response({"jobs": [r.to_dict() for r in records], "total": total, "limit": f.limit,
                              "offset": f.offset})

    async def jobs_csv(request: Request) -> Response:
        found = store()
        if isinstance(found, Response):
            return found
        try:
            f = _filter(request, paged=False)
        except BambuError as exc:
            return error(400, "bad_request", str(exc))

        async def body() -> AsyncIterator[bytes]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(CSV_COLUMNS)
            offset = 0
            while True:
                page, _ = await asyncio.to_thread(found.jobs, dataclasses.replace(f, limit=500, offset=offset))
                for record in page:
                    writer.writerow(_csv_row(record.to_dict()))
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
                if len(page) < 500:
                    return
                offset += 500

        return StreamingResponse(body(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="bambu-jobs.csv"'})

    async def stats(request: Request) -> Response:
        found = store()
        if isinstance(found, Response):
            return found
        q = request.query_params
        try:
            since = parse_time(q["since"]) if q.get("since") else None
            until = parse_time(q["until"]) if q.get("until") else None
            per = await asyncio.to_thread(found.stats, since=since, until=until)
        except BambuError as exc:
            return error(400, "bad_request", str(exc))
        return json_response({"printers": per, "farm": farm_totals(per)})

    def _serial(request: Request) -> str:
        return str(request.path_params["serial"]).strip().upper()

    async def telemetry(request: Request) -> Response:
        found = store()
        if isinstance(found, Response):
            return found
        q = request.query_params
        try:
            since = parse_time(q["since"]) if q.get("since") else None
            until = parse_time(q["until"]) if q.get("until") else None
            limit = int(q.get("limit", "10000"))
            if not 1 <= limit <= 100_000:
                raise HistoryError("limit must be 1..100000")
            samples = await asyncio.to_thread(found.telemetry, _serial(request), since=since, until=until,
                                              limit=limit)
        except ValueError:
            return error(400, "bad_request", "limit must be a whole number")
        except BambuError as exc:
            return error(400, "bad_request", str(exc))
        return json_response({"serial": _serial(request), "samples": [s.to_dict() for s in samples]})

    async def hms_history(request: Request) -> Response:
        found = store()
        if isinstance(found, Response):
            return found
        q = request.query_params
        try:
            since = parse_time(q["since"]) if q.get("since") else None
            entries = await asyncio.to_thread(found.hms_history, _serial(request), since=since)
        except BambuError as exc:
            return error(400, "bad_request", str(exc))
        return json_response({"serial": _serial(request), "hms": entries})

    return [
        Route("/api/v1/history/jobs", jobs, methods=["GET"]),
        Route("/api/v1/history/jobs.csv", jobs_csv, methods=["GET"]),
        Route("/api/v1/history/stats", stats, methods=["GET"]),
        Route("/api/v1/printers/{serial}/telemetry", telemetry, methods=["GET"]),
        Route("/api/v1/printers/{serial}/hms/history", hms_history, methods=["GET"]),
    ]


def farm_totals(per: dict[str, dict[str, Any]]) -> dict[str, Any]:
    jobs = sum(p["jobs"] for p in per.values())
    ok = sum(p["succeeded"] for p in per.values())
    return {
        "jobs": jobs,
        "succeeded": ok,
        "failed": sum(p["failed"] for p in per.values()),
        "running": sum(p["running"] for p in per.values()),
        "success_rate": round(ok / jobs, 4) if jobs else None,
        "print_hours": round(sum(p["print_hours"] for p in per.values()), 3),
    }


def openapi_paths() -> dict[str, Any]:
    """The history routes for the gateway's OpenAPI description."""
    page = [
        {"name": "printer", "in": "query", "schema": {"type": "string"}, "description": "serial or name"},
        {"name": "since", "in": "query", "schema": {"type": "string"}, "description": "ISO 8601 or epoch seconds"},
        {"name": "until", "in": "query", "schema": {"type": "string"}},
        {"name": "result", "in": "query", "schema": {"type": "string", "enum": list(RESULTS)}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    ]
    serial = [{"name": "serial", "in": "path", "required": True, "schema": {"type": "string"}}]

    def get(summary: str, params: list[Any], media: str = "application/json") -> dict[str, Any]:
        return {"get": {"tags": ["history"], "summary": summary, "parameters": params, "responses": {
            "200": {"description": "OK", "content": {media: {}}},
            "400": {"description": "A bad filter"},
            "503": {"description": "History is off (no [history] table)"}}}}

    return {
        "/api/v1/history/jobs": get("Print jobs, newest first, one page and the total", page),
        "/api/v1/history/jobs.csv": get("The same jobs as CSV (every page)", page[:4], "text/csv"),
        "/api/v1/history/stats": get("Per printer: jobs, succeeded, failed, success rate, print hours", page[1:3]),
        "/api/v1/printers/{serial}/telemetry": get("Sampled temperatures and progress", [*serial, *page[1:3]]),
        "/api/v1/printers/{serial}/hms/history": get("HMS alerts raised and cleared", [*serial, page[1]]),
    }
