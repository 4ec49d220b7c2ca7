#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, then runs it.
# Used by the README's second command and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
bash scripts/system-deps.sh
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test]"
"$PY" -m ruff check src tests bench
"$PY" -m mypy
"$PY" -m pytest -q -p no:cacheprovider "$@"
