"""Fixtures for the farm data tests: a real PostgreSQL server (once per session), store targets
parametrized over SQLite and PostgreSQL, and helpers to start Debian's mosquitto and prometheus."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> tuple[list[str], int | None]:
    """PostgreSQL refuses to run as root: run it as ``nobody`` then (the tests run as root in CI)."""
    if os.geteuid() != 0:
        return [], None
    return ["runuser", "-u", "nobody", "--"], pwd.getpwnam("nobody").pw_uid


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1:<free port>; yields its base URL."""
    prefix, uid = _as_user()
    base = Path(tempfile.mkdtemp(prefix="bambu-pg-"))
    try:
        if uid is not None:
            os.chown(base, uid, -1)
        data, sockets = base / "data", base / "sock"
        subprocess.run(
            [*prefix, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "bambu",
             "--no-sync", "-E", "UTF8", "--locale=C"],
            check=True, capture_output=True, timeout=120, cwd=base,
        )
        subprocess.run([*prefix, "mkdir", str(sockets)], check=True, timeout=10)
        port = free_port()
        log = (base / "postgres.log").open("wb")
        proc = subprocess.Popen(
            [*prefix, str(PG_BIN / "postgres"), "-D", str(data), "-k", str(sockets), "-p", str(port),
             "-h", "127.0.0.1", "-F", "-c", "max_connections=50", "-c", "shared_buffers=16MB"],
            stdout=log, stderr=subprocess.STDOUT, cwd=base,
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
            stop_process(proc)
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


@contextlib.contextmanager
def running(cmd: list[str], *, cwd: Path, log_name: str) -> Iterator[subprocess.Popen[bytes]]:
    """A child process whose output goes to a log file in ``cwd``; stopped on exit."""
    log = (cwd / log_name).open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        yield proc
    finally:
        stop_process(proc)
        log.close()
