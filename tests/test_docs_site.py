"""The documentation site builds with ``mkdocs build --strict``: no broken link, no missing docstring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import mkdocs_hooks  # noqa: E402


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index.html", "gcode/index.html", "migrating/index.html", "cloud-api/index.html",
                 "reference/cloud/index.html", "reference/compat/index.html"):
        assert (site / page).is_file(), page
    reference = (site / "reference" / "compat" / "index.html").read_text()
    assert "get_ams_filaments" in reference and "LegacyClientMixin" in reference  # from the docstrings
    every_page = {p.stem for p in (ROOT / "docs").glob("*.md")}
    built = {p.parent.name for p in site.glob("*/index.html")}
    assert every_page - {"index"} <= built  # no nav list to forget a page in


def test_a_missing_docstring_is_reported(tmp_path: Path) -> None:
    package = tmp_path / "pkg_without_docs"
    package.mkdir()
    (package / "__init__.py").write_text('"""A package."""\n')
    (package / "mod.py").write_text('"""A module."""\n__all__ = ["Documented", "Bare", "bare"]\n\n'
                                    'class Documented:\n    """Yes."""\n\n'
                                    'class Bare:\n    pass\n\n'
                                    'def bare() -> None:\n    pass\n')
    missing = mkdocs_hooks.missing_docstrings("pkg_without_docs.mod", (str(tmp_path),))
    assert missing == ["pkg_without_docs.mod.Bare", "pkg_without_docs.mod.bare"]
