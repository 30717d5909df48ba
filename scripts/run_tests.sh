#!/usr/bin/env bash
# The README's test command: set up, then the whole test suite (slow tests included) on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -c "import rliable.library, rliable.metrics"  # rliable's `arch` breaks on pandas 3.
exec .venv/bin/python -m pytest -q tests "$@"
