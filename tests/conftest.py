"""Shared pytest configuration."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _no_simulator_temp_folders_left() -> Iterator[None]:
    """Every virtual printer and fake cloud removes its temporary folders when it stops.

    One of them holds a TLS private key, so a leak is a secret left on disk. The session gets a
    temporary directory of its own (other test runs on the machine share the system one), also
    for the ``bambu sim`` subprocesses (``TMPDIR``); at the end no ``bambu-sim-*`` may be left in it.
    """
    private = Path(tempfile.mkdtemp(prefix="bambu-tests-"))
    # Traversable, not listable: the PostgreSQL and mosquitto servers the tests start run as their
    # own unprivileged users and must reach the 0700 folders made for them inside.
    private.chmod(0o711)
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = str(private)
    os.environ["TMPDIR"] = str(private)
    try:
        yield
        left = sorted(p.name for p in private.glob("bambu-sim-*"))
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(private, ignore_errors=True)
    assert not left, f"temporary folders left behind by the simulator: {left}"
