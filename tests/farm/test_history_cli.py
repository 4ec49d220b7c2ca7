"""`bambu history` reads the store directly (SQLite file or PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from bambulab.cli.main import cli
from bambulab.farm.history import HistoryStore, JobRecord

T0 = 1_800_000_000.0


def fill(target: str) -> None:
    with HistoryStore.open(target) as store:
        store.write([
            JobRecord("a", "S1", T0, result="finished", ended_at=T0 + 5400, printer="P1S-1", file="benchy.3mf",
                      plate=1, layers=100, total_layers=100),
            JobRecord("b", "S1", T0 + 6000, result="cancelled", ended_at=T0 + 6600, printer="P1S-1", file="cube.3mf"),
            JobRecord("c", "S2", T0 + 7000, printer="X1C", file="vase.3mf", hms=("0300_0100_0001_0001",)),
        ])


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, ["history", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_jobs_json_filters_and_stats(store_target: str) -> None:
    fill(store_target)
    jobs = [json.loads(line) for line in run("--db", store_target, "--json").splitlines()]
    assert [j["job_key"] for j in jobs] == ["c", "b", "a"]
    assert jobs[2]["duration_seconds"] == 5400 and jobs[0]["result"] == "running"
    only = [json.loads(x) for x in run("--db", store_target, "--json", "--printer", "X1C").splitlines()]
    assert [j["serial"] for j in only] == ["S2"]
    done = run("--db", store_target, "--json", "--result", "finished", "--since", "2027-01-15T00:00:00Z")
    assert [json.loads(x)["job_key"] for x in done.splitlines()] == ["a"]
    stats = {s["serial"]: s for s in map(json.loads, run("--db", store_target, "--stats", "--json").splitlines())}
    assert stats["S1"]["jobs"] == 2 and stats["S1"]["success_rate"] == 0.5 and stats["S1"]["print_hours"] == 1.667
    table = run("--db", store_target)
    assert "benchy.3mf" in table and "1h30" in table and "3 jobs" in table
    rows = list(csv.DictReader(io.StringIO(run("--db", store_target, "--csv"))))
    assert [r["job_key"] for r in rows] == ["c", "b", "a"] and rows[0]["hms"] == "0300_0100_0001_0001"


def test_store_from_the_gateway_config(tmp_path: Path) -> None:
    (tmp_path / "farm.toml").write_text('[history]\npath = "data/h.sqlite3"\n')
    (tmp_path / "data").mkdir()
    fill(str(tmp_path / "data" / "h.sqlite3"))
    out = run("--config", str(tmp_path / "farm.toml"), "--json", "--limit", "1")
    assert json.loads(out)["job_key"] == "c"


def test_clear_errors(tmp_path: Path) -> None:
    missing = CliRunner().invoke(cli, ["history", "--db", str(tmp_path / "nope.sqlite3")])
    assert missing.exit_code == 1 and "no history store" in missing.output
    assert not (tmp_path / "nope.sqlite3").exists()
    (tmp_path / "farm.toml").write_text("[gateway]\n")
    off = CliRunner().invoke(cli, ["history", "--config", str(tmp_path / "farm.toml")])
    assert off.exit_code == 1 and "no [history] table" in off.output
    bad = CliRunner().invoke(cli, ["history", "--db", str(tmp_path / "x"), "--since", "soon"])
    assert bad.exit_code == 1 and "not a time" in bad.output
    none = CliRunner().invoke(cli, ["history"])
    assert none.exit_code == 2 and "--db" in none.output
