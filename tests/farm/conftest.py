"""Fixtures for the farm data tests: a real PostgreSQL server (once per session), store targets
parametrized over SQLite and PostgreSQL, and helpers to start Debian's mosquitto and prometheus."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from farmtools import free_port, stop_process

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_user() -> dict[str, Any]:
    """PostgreSQL refuses to run as root: run it as ``nobody`` then (the tests run as root in CI).
    The child itself switches user (no ``runuser`` in between), so signals reach postgres."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1:<free port>; yields its base URL."""
    as_user = _as_user()
    base = Path(tempfile.mkdtemp(prefix="bambu-pg-"))
    try:
        if as_user:
            os.chown(base, as_user["user"], as_user["group"])
        data, sockets = base / "data", base / "sock"
        subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "bambu", "--no-sync", "-E", "UTF8",
             "--locale=C"],
            check=True, capture_output=True, timeout=120, cwd=base, **as_user,
        )
        subprocess.run(["mkdir", str(sockets)], check=True, timeout=10, **as_user)
        port = free_port()
        log = (base / "postgres.log").open("wb")
        proc = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(data), "-k", str(sockets), "-p", str(port),
             "-h", "127.0.0.1", "-F", "-c", "max_connections=50", "-c", "shared_buffers=16MB"],
            stdout=log, stderr=subprocess.STDOUT, cwd=base, **as_user,
        )
        url = f"postgresql://bambu@127.0.0.1:{port}/postgres"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    psycopg.connect(url, connect_timeout=2).close()
                    break
                except psycopg.OperationalError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.close()
                        raise RuntimeError("postgres did not start:\n" + (base / "postgres.log").read_text()) from None
                    time.sleep(0.1)
            yield url
        finally:
            stop_process(proc, 30.0, signal.SIGINT)  # "fast" shutdown: ends sessions, then exits
            log.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """A fresh database on the session's server, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same tests against both history backends."""
    if request.param == "sqlite":
        return str(tmp_path / "history.sqlite3")
    return str(request.getfixturevalue("pg_url"))
