#!/usr/bin/env bash
# Every test (the README's test command; CI runs it): pytest over tests/, in TEST_GROUPS processes of consecutive
# test files (default 3), one after another, sharing one XLA compilation cache; exit 1 if any group fails.
#
# Why not one process: XLA:CPU maps the code of every program it compiles into the process, and the whole
# suite in one process passed the kernel's limit on memory maps (vm.max_map_count, 65,530 by default) at ~63 %:
# the next compile aborted the process (a fresh clone, 2026-12-02). Extra arguments go to every pytest call
# (e.g. `bash scripts/test.sh -m "not slow"`).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
GROUPS_N="${TEST_GROUPS:-3}"
((GROUPS_N >= 1)) || { echo "TEST_GROUPS must be >= 1" >&2; exit 2; }
files=(tests/test_*.py)
n=${#files[@]}
PLASTICITY_RL_TEST_JAX_CACHE="$(mktemp -d -t plasticity_rl_tests_jax_cache_XXXXXX)"
export PLASTICITY_RL_TEST_JAX_CACHE
trap 'rm -rf "$PLASTICITY_RL_TEST_JAX_CACHE"' EXIT
status=0
for ((g = 0; g < GROUPS_N; g++)); do
  start=$((g * n / GROUPS_N))
  end=$(((g + 1) * n / GROUPS_N))
  group=("${files[@]:start:end-start}")
  ((${#group[@]})) || continue
  echo "== tests, group $((g + 1))/$GROUPS_N: ${group[0]} … ${group[-1]} (${#group[@]} files)"
  "$PY" -m pytest -q "$@" "${group[@]}" || status=1
done
exit $status
