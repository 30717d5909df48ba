"""Shared pytest setup: the `slow` marker (CI runs slow tests too; `-m "not slow"` skips them locally)."""


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than ~20 s on 2 CPU cores (CI still runs it)")
