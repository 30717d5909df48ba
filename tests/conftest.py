"""Shared pytest setup: the `slow` marker (CI runs slow tests too; `-m "not slow"` skips them locally), run_env."""

import os

import pytest


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than ~20 s on 2 CPU cores (CI still runs it)")


@pytest.fixture(scope="session")
def run_env(tmp_path_factory):
  """Subprocess env: CPU, and a persistent compilation cache shared by this session's runs (~4× faster starts)."""
  cache = tmp_path_factory.mktemp("jax_cache")
  return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(cache),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
