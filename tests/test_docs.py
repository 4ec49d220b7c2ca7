"""The Python examples in the docs are executed, so the docs never lie."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _python_blocks(path: Path) -> list[tuple[int, str]]:
    text = path.read_text()
    blocks = []
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        line = text[: match.start()].count("\n") + 1
        blocks.append((line, match.group(1)))
    return blocks


EXAMPLES = [(p, line, code) for p in DOCS for line, code in _python_blocks(p)]


def test_docs_have_examples() -> None:
    assert any(p.name == "simulator.md" for p, _, _ in EXAMPLES)


@pytest.mark.parametrize(
    ("path", "line", "code"), EXAMPLES, ids=[f"{p.name}:{line}" for p, line, _ in EXAMPLES]
)
def test_example_runs(path: Path, line: int, code: str) -> None:
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code],
                          capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert done.returncode == 0, f"{path.name}:{line} failed:\n{done.stdout}\n{done.stderr}"
