"""The print-URL policy lives in one place: ``commands.start_url`` (issue 7, point 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

import bambulab.printing
from bambulab.protocol import commands
from bambulab.protocol.models import model_by_code


@pytest.mark.parametrize(("model", "project", "gcode"), [
    ("X1C", "file:///sdcard/a/b.3mf", "/sdcard/a/b.3mf"),
    ("P1S", "file:///sdcard/a/b.3mf", "/sdcard/a/b.3mf"),
    ("A1", "file:///sdcard/a/b.3mf", "/sdcard/a/b.3mf"),
    ("H2D", "ftp:///a/b.3mf", "ftp:///a/b.3mf"),
    ("P2S", "ftp:///a/b.3mf", "ftp:///a/b.3mf"),
    (None, "file:///sdcard/a/b.3mf", "/sdcard/a/b.3mf"),
])
def test_start_url_per_family_and_without_a_model(model: str | None, project: str, gcode: str) -> None:
    resolved = model_by_code(model) if model else None
    assert commands.start_url("/a/b.3mf", resolved) == project
    assert commands.start_url("a/b.3mf", resolved, gcode=True) == gcode
    if model:
        assert commands.start_url("a/b.3mf", model) == project  # a model code works too
        assert commands.start_url("a/b.3mf", model) == commands.project_url("a/b.3mf", model)


def test_print_file_decides_no_url_of_its_own() -> None:
    source = Path(bambulab.printing.__file__).read_text()
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("#", "``")))
    assert "sdcard" not in code.split('"""', 2)[-1]  # only the module docstring may describe the forms
    assert "ftp:///" not in code.split('"""', 2)[-1]
