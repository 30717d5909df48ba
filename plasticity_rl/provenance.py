"""What a run ran on: the code's git commit, the package versions, the JAX devices and the host.

`collect()` reads it (no side effects). A run writes it to WORKDIR/provenance.json (the latest process's:
config.json stays the config alone, so resuming compares configs only), as the "provenance" row of
metrics.jsonl at the frame the process started from (so every resume leaves its own), and into summary.json.
A resume under other versions, another commit or other devices logs one warning line naming what changed
(`compare`); the host may change freely (a requeued job).
"""

import importlib.metadata
import os
import platform
import socket
import subprocess
from typing import Any

from absl import logging

from plasticity_rl import workdir as workdir_lib

FILE = "provenance.json"
# Distributions whose versions are recorded (importlib.metadata names).
PACKAGES = ("jax", "jaxlib", "flax", "optax", "envpool", "orbax-checkpoint", "ml-collections", "numpy",
            "plasticity_rl")
_NOT_RESULTS = ("host",)  # Fields that do not change what a run computes: no resume warning.


def _version(distribution: str) -> str | None:
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None


def _git(*args: str) -> str | None:
  try:
    out = subprocess.run(["git", *args], cwd=os.path.dirname(os.path.abspath(__file__)), capture_output=True,
                         text=True, timeout=10, check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout


def git_state() -> tuple[str | None, bool | None]:
  """(commit, dirty) of the git checkout this package's files are tracked in; (None, None) outside one
  (an installed package, or a copy of the files)."""
  if _git("ls-files", "--error-unmatch", "__init__.py") is None:
    return None, None
  commit, status = _git("rev-parse", "HEAD"), _git("status", "--porcelain", "--untracked-files=no")
  if commit is None:
    return None, None
  return commit.strip(), None if status is None else bool(status.strip())


def collect() -> dict[str, Any]:
  """This process's provenance: {"git_commit", "git_dirty", "versions", "devices", "env_backend", "host"}.
  `env_backend` is "envpool", or "fake_envpool" in tests (envs/atari.py `backend`): a run on the fake says so."""
  import jax  # pylint: disable=g-import-not-at-top
  from plasticity_rl.envs import atari  # pylint: disable=g-import-not-at-top
  commit, dirty = git_state()
  devices = jax.devices()
  return {
      "git_commit": commit,
      "git_dirty": dirty,
      "versions": {"python": platform.python_version(), **{name: _version(name) for name in PACKAGES}},
      "devices": {"backend": jax.default_backend(), "kind": devices[0].device_kind, "count": len(devices)},
      "env_backend": atari.backend(),
      "host": socket.gethostname(),
  }


def _name(key: str) -> str:
  """'versions.jax' -> 'jax', 'devices.kind' -> 'device kind', 'git_commit' -> 'commit'."""
  if key.startswith("versions."):
    return key.removeprefix("versions.")
  return {"git_commit": "commit", "git_dirty": "dirty"}.get(key, key.replace("devices.", "device ").replace("_", " "))


def _shown(key: str, value: Any) -> str:
  return value[:12] if key == "git_commit" and isinstance(value, str) else str(value)


def compare(old: dict, new: dict) -> list[str]:
  """The fields in which `new` differs from `old`, each "name old -> new" (e.g. "jax 0.9.0 -> 0.10.0"). A field
  that `old` does not have (recorded before the field was) is no change."""
  a, b = (workdir_lib._flat(p or {}) for p in (old, new))  # pylint: disable=protected-access
  return [f"{_name(k)} {_shown(k, a.get(k))} -> {_shown(k, b.get(k))}"
          for k in sorted(a, key=lambda k: (not k.startswith("git"), k)) if a.get(k) != b.get(k)]


def _results(provenance: dict) -> dict:
  return {k: v for k, v in provenance.items() if k not in _NOT_RESULTS}


def read(workdir: str) -> dict | None:
  """The provenance.json of a workdir; None if it has none (a run from before it was recorded) or it is damaged."""
  path = os.path.join(workdir, FILE)
  if not os.path.exists(path):
    return None
  try:
    return workdir_lib.read_json(path)
  except workdir_lib.WorkdirError as e:
    logging.warning("%s; writing it again", e)
    return None


def start(workdirs: list[str], resumed: bool) -> dict[str, Any]:
  """Collects this process's provenance and writes it to each workdir's provenance.json; on a resume, first logs
  one warning naming what changed since the previous process of those workdirs."""
  new = collect()
  if resumed:
    changes = []
    for workdir in workdirs:
      old = read(workdir)
      changes += [c for c in (compare(_results(old), _results(new)) if old else []) if c not in changes]
    if changes:
      where = workdirs[0] if len(workdirs) == 1 else os.path.dirname(workdirs[0])
      logging.warning("resuming %s under a different setup: %s", where, ", ".join(changes))
  for workdir in workdirs:
    workdir_lib.write_json(os.path.join(workdir, FILE), new)
  return new
