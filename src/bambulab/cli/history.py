"""``bambu history``: print jobs, stats and CSV from the gateway's history store.

It reads the store itself (the SQLite file, or the PostgreSQL database) rather than asking a
running gateway's HTTP API: it works when the gateway is stopped, needs no API token, and on
SQLite in WAL mode reading never blocks the gateway's writer. The store is the one named by the
``[history]`` table of ``--config farm.toml``, or ``--db`` (a path or a ``postgresql://`` URL;
also ``BAMBU_HISTORY_DB``).
"""

from __future__ import annotations

import csv
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from bambulab.config import ConfigError
from bambulab.farm.history import RESULTS, HistoryConfig, HistoryError, HistoryStore, JobFilter, parse_time

__all__ = ["history"]

_CSV = ("id", "serial", "printer", "file", "plate", "result", "started_at", "ended_at", "duration_seconds",
        "layers", "total_layers", "print_error", "hms", "job_key")


def _target(config: Path | None, db: str | None) -> str:
    if db:
        return db
    if config is None:
        raise click.UsageError("give --db history.sqlite3 (or a postgresql:// URL), or --config farm.toml")
    try:
        data = tomllib.loads(config.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{config}: {exc}") from None
    section = data.get("history")
    if not isinstance(section, dict):
        raise ConfigError(f"{config}: no [history] table, so the gateway keeps no history")
    cfg = HistoryConfig.from_dict(section)
    target = cfg.target()
    if cfg.url or cfg.url_env:
        return target
    path = Path(target).expanduser()
    return str(path if path.is_absolute() else config.parent / path)


def _open(target: str) -> HistoryStore:
    if "://" not in target and not target.startswith(("file:", "host=")) and not Path(target).exists():
        raise HistoryError(f"no history store at {target}")
    return HistoryStore.open(target)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}"


@click.command("history")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), envvar="BAMBU_GATEWAY_CONFIG",
              help="The gateway's farm.toml: its [history] table names the store.")
@click.option("--db", envvar="BAMBU_HISTORY_DB", help="The store: a SQLite file or a postgresql:// URL.")
@click.option("--printer", help="Only this printer (serial or name).")
@click.option("--since", help="Jobs started at or after (ISO 8601 or epoch seconds).")
@click.option("--until", help="Jobs started before (ISO 8601 or epoch seconds).")
@click.option("--result", type=click.Choice(RESULTS), help="Only jobs with this result.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--stats", "show_stats", is_flag=True, help="Per-printer totals instead of jobs.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV of every matching job (no paging).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job (or per printer with --stats).")
def history(config: Path | None, db: str | None, printer: str | None, since: str | None, until: str | None,
            result: str | None, limit: int, offset: int, show_stats: bool, as_csv: bool, as_json: bool) -> None:
    """Print jobs recorded by the gateway: newest first, filterable, with totals."""
    f = JobFilter(printer=printer, since=parse_time(since) if since else None,
                  until=parse_time(until) if until else None, result=result, limit=limit, offset=offset)
    with _open(_target(config, db)) as store:
        if show_stats:
            per = store.stats(since=f.since, until=f.until)
            if printer:
                per = {k: v for k, v in per.items() if printer in (k, v.get("printer"))}
            if as_json:
                for serial, figures in per.items():
                    click.echo(json.dumps({"serial": serial, **figures}, separators=(",", ":")))
                return
            _stats_table(per)
            return
        if as_csv:
            writer = csv.writer(sys.stdout)
            writer.writerow(_CSV)
            for record in store.iter_jobs(JobFilter(printer=f.printer, since=f.since, until=f.until,
                                                    result=f.result)):
                row = record.to_dict()
                writer.writerow(["" if row.get(c) is None else (" ".join(row[c]) if c == "hms" else row[c])
                                 for c in _CSV])
            return
        jobs, total = store.jobs(f)
        if as_json:
            for record in jobs:
                click.echo(json.dumps(record.to_dict(), separators=(",", ":")))
            return
        _jobs_table([r.to_dict() for r in jobs], total, f)


def _jobs_table(jobs: list[dict[str, Any]], total: int, f: JobFilter) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(jobs)} of {total} jobs" if total > len(jobs) else f"{total} jobs")
    for column in ("started", "printer", "file", "plate", "result", "duration", "layers", "HMS"):
        table.add_column(column)
    colours = {"finished": "green", "failed": "red", "cancelled": "yellow", "interrupted": "yellow",
               "running": "cyan"}
    for job in jobs:
        layers = f"{job['layers']}/{job['total_layers']}" if job["total_layers"] else (str(job["layers"] or "-"))
        table.add_row(
            (job["started_at"] or "").replace("T", " ").removesuffix("Z"), job["printer"] or job["serial"],
            job["file"] or "-", str(job["plate"] or "-"),
            f"[{colours.get(job['result'], 'white')}]{job['result']}[/]", _duration(job["duration_seconds"]),
            layers, str(len(job["hms"])) if job["hms"] else "",
        )
    Console().print(table)


def _stats_table(per: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="print history per printer")
    for column in ("printer", "serial", "jobs", "succeeded", "failed", "success", "print hours", "running"):
        table.add_column(column, justify="right" if column not in ("printer", "serial") else "left")
    for serial, s in per.items():
        rate = "-" if s["success_rate"] is None else f"{s['success_rate'] * 100:.0f} %"
        table.add_row(s["printer"] or "", serial, str(s["jobs"]), str(s["succeeded"]), str(s["failed"]), rate,
                      f"{s['print_hours']:.1f}", str(s["running"]))
    Console().print(table)
