"""The peer the benchmarks compare against: bambulabs-api 2.6.6, in its own virtual environment.

It is installed on first use into ``bench/.venvs/bambulabs-api`` (git-ignored), so it never mixes
with bambulab's own dependencies, and runs in a subprocess with that environment's python.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
THIRD_PARTY_VENV = BENCH_DIR / ".venvs" / "bambulabs-api"
THIRD_PARTY_REQUIREMENT = "bambulabs-api==2.6.6"


def third_party_python(check_module: str = "bambulabs_api") -> Path | None:
    """The venv's python with bambulabs-api installed, creating it on first use; None if impossible."""
    python = THIRD_PARTY_VENV / "bin" / "python"
    if python.exists():
        check = subprocess.run([str(python), "-c", f"import {check_module}"], capture_output=True)
        if check.returncode == 0:
            return python
    print(f"setting up {THIRD_PARTY_VENV} with {THIRD_PARTY_REQUIREMENT} ...", file=sys.stderr)
    try:
        if not python.exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(THIRD_PARTY_VENV)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", THIRD_PARTY_REQUIREMENT],
            check=True, timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"cannot install {THIRD_PARTY_REQUIREMENT}: {exc}", file=sys.stderr)
        return None
    return python
