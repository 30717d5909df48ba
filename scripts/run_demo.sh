#!/usr/bin/env bash
# The README's main command: set up, then a real ~5-minute Double-DQN run on CPU (Breakout, 400k
# frames) with one plasticity injection half-way; prints a summary and writes runs/demo/learning_curve.png.
# Extra arguments go to plasticity_rl.main (e.g. --config.game=Pong or --workdir=elsewhere).
# Running it again with the same workdir resumes (or reports the finished run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m plasticity_rl.main --config=configs/dqn.py:demo --workdir=runs/demo "$@"
