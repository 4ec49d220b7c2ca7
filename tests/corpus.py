"""The captured-fixture corpus in ``tests/fixtures/``: one printer's replies per file.

Each ``<model>_<firmware>.json`` is what ``bambu dump`` wrote (docs/fixtures.md): the
``get_version`` reply, the first full ``pushall`` report and a few reports after it, redacted.
Tests parametrize over :data:`FIXTURES`; adding a file adds a case to every one of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
FIXTURES = sorted(FIXTURE_DIR.glob("*.json"))
IDS = [p.stem for p in FIXTURES]


@dataclass(frozen=True)
class Recorded:
    path: Path
    doc: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.doc["model"])

    @property
    def firmware(self) -> str:
        return str(self.doc["firmware"])

    @property
    def source(self) -> str:
        return str(self.doc["source"])

    @property
    def get_version(self) -> dict[str, Any]:
        return dict(self.doc["get_version"])

    @property
    def pushall(self) -> dict[str, Any]:
        return dict(self.doc["pushall"])

    @property
    def deltas(self) -> list[dict[str, Any]]:
        return list(self.doc["deltas"])


@cache
def load(path: Path) -> Recorded:
    return Recorded(path, json.loads(path.read_text(encoding="utf-8")))
