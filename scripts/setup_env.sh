#!/usr/bin/env bash
# Creates .venv (if missing) and installs plasticity_rl with its test extras from this repo's files.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
.venv/bin/python -c "import rliable.library, rliable.metrics"  # rliable's `arch` breaks on pandas 3: fail here, not in a test.
