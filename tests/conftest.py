"""Shared pytest setup: the `slow` marker (CI runs slow tests too; `-m "not slow"` skips them locally), one
persistent XLA compilation cache for this process and its subprocesses, and the env fixtures: `run_env`
(subprocess env, real envpool), `fake_run_env` (the same with the fake envpool), `fake_envpool` (this process).

The fake envpool (plasticity_rl/envs/fake_envpool.py, selected by PLASTICITY_RL_FAKE_ENVPOOL=1) is for tests
whose point is not Atari: the loop, logs, checkpoints, resumes, the CLI. Tests of what Atari does, and one or
two runs per feature, keep real envpool (docs/testing.md).
"""

import os
import shutil
import tempfile

import pytest

from plasticity_rl.envs import atari

_CACHE_DIR = None
_OWN_CACHE = pytest.StashKey[bool]()


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than ~20 s on 2 CPU cores (CI still runs it)")
  global _CACHE_DIR
  # scripts/test.sh runs the suite in several processes that share one cache (and removes it at the end).
  shared = os.environ.get("PLASTICITY_RL_TEST_JAX_CACHE")
  _CACHE_DIR = shared or tempfile.mkdtemp(prefix="plasticity_rl_tests_jax_cache_")
  config.stash[_OWN_CACHE] = not shared
  # This process's compiles go to (and come from) the cache the subprocesses use: the many tests that build the
  # same agents again skip XLA. Set before any test compiles (collection imports, does not compile).
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
  if _CACHE_DIR and config.stash.get(_OWN_CACHE, True):
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def run_env():
  """Subprocess env: CPU, real envpool, and the persistent compilation cache of this session (~4× faster starts)."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": _CACHE_DIR,
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
  env.pop(atari.FAKE_ENVPOOL_ENV, None)
  return env


@pytest.fixture(scope="session")
def fake_run_env(run_env):
  """run_env with the fake envpool (PLASTICITY_RL_FAKE_ENVPOOL=1): no emulator, no envpool import."""
  return {**run_env, atari.FAKE_ENVPOOL_ENV: "1"}


@pytest.fixture
def fake_envpool(monkeypatch):
  """The fake envpool for envs made in this process during the test."""
  monkeypatch.setenv(atari.FAKE_ENVPOOL_ENV, "1")
