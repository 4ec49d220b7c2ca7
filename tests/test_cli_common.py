"""The CLI's shared module: the LAN and cloud commands share it instead of importing each other."""

from __future__ import annotations

import ast
from pathlib import Path

import bambulab.cli

CLI = Path(bambulab.cli.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_lan_and_cloud_commands_do_not_import_each_other() -> None:
    assert "bambulab.cli.cloud" not in _imports(CLI / "lan.py")
    assert "bambulab.cli.lan" not in _imports(CLI / "cloud.py")
    assert "bambulab.cli.common" in _imports(CLI / "lan.py") & _imports(CLI / "cloud.py")
