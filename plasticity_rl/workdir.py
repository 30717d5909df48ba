"""A run's workdir: made once with its config.json, only ever reused with the same config (to resume), and
written by one process at a time.

A multi-seed run (config.num_seeds > 1) makes one such workdir per seed, WORKDIR/seed_<n>.

One writer: `lock_workdir` takes an advisory lock (fcntl.flock on WORKDIR/.run.lock, which holds the
holder's pid) for as long as the run lasts; the kernel drops it when the process ends, however it ends,
so a killed run never leaves a stale lock. A second process on the same workdir gets a WorkdirError
naming the holder.

The bookkeeping JSON files (config.json, summary.json) are written atomically (`write_json`: a temporary
file renamed over the old one), so a kill leaves the old file or the new one, never a torn one.
"""

import datetime
import errno
import fcntl
import json
import os
import shutil
import socket
from typing import Any

from absl import logging

LOCK_FILE = ".run.lock"


class WorkdirError(ValueError):
  pass


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
  return out


def config_diff(old: dict, new: dict, ignore=()) -> str | None:
  """The fields in which config `new` departs from a workdir's `old` config.json ("a: x -> y, …"), or None.

  A field that `old` lacks is a field added to the schema after that run started: its default keeps the
  behaviour the run had (fields are added so), so it is not a difference and the run can still resume. Fields
  in `ignore` (config.inactive_paths: options of parts that are off, e.g. a default changed since) compute
  nothing in this run, so they do not count either.
  """
  a, b = _flat(old), _flat(new)
  diff = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
          if k in a and k not in ignore and a.get(k) != b.get(k)]
  return ", ".join(diff) or None


def config_json(config) -> dict:
  """A ConfigDict as the plain data of its config.json."""
  return json.loads(config.to_json_best_effort())


def config_changes(old: dict, config) -> str | None:
  """config_diff of a workdir's `old` config.json and the ConfigDict `config`, its inactive fields ignored
  (config.inactive_paths): how main.py (`check_workdir`) and the sweep's pre-launch check compare them."""
  from plasticity_rl import config as config_lib  # pylint: disable=g-import-not-at-top  (imports jax)
  return config_diff(old, config_json(config), ignore=config_lib.inactive_paths(config))


# -- files ------------------------------------------------------------------------------------------------------


def free_space(path: str) -> str:
  """'12.3 MB free' on the filesystem of `path` (or of its nearest existing parent)."""
  while path and not os.path.exists(path):
    path = os.path.dirname(path)
  try:
    return f"{shutil.disk_usage(path or '.').free / 1e6:,.1f} MB free"
  except OSError:
    return "free space unknown"


def is_disk_full(error: BaseException) -> bool:
  """An OSError ENOSPC/EDQUOT, or a wrapped one (orbax/TensorStore report it as text)."""
  while error is not None:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


def write_json(path: str, data: Any) -> None:
  """Writes `data` as JSON to `path` atomically (a temporary file beside it, flushed, renamed over it)."""
  tmp = f"{path}.tmp"
  try:
    with open(tmp, "w") as f:
      json.dump(data, f, indent=1)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    try:
      os.remove(tmp)
    except OSError:
      pass
    raise


def read_json(path: str) -> Any:
  """The JSON in `path`; WorkdirError naming the file, line and column if it is not valid JSON."""
  with open(path) as f:
    text = f.read()
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise WorkdirError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


# -- the config ---------------------------------------------------------------------------------------------------


def _saved_config(workdir: str) -> tuple[str | None, dict | None]:
  """The config in the newest checkpoint's meta (plain JSON: checkpoints/<frames>/meta/metadata), or Nones."""
  directory = os.path.join(workdir, "checkpoints")
  steps = sorted((int(n) for n in os.listdir(directory) if n.isdigit()), reverse=True) if os.path.isdir(
      directory) else []
  for step in steps:
    path = os.path.join(directory, str(step), "meta", "metadata")
    try:
      with open(path) as f:
        return os.path.join(directory, str(step)), json.load(f)["config"]
    except (OSError, ValueError, KeyError, TypeError):
      continue
  return (os.path.join(directory, str(steps[0])) if steps else None), None


def _old_config(workdir: str, new: dict) -> dict | None:
  """The workdir's config.json (None if there is none). A damaged one is rebuilt from the newest checkpoint
  when that checkpoint was made with `new` (or when there is no checkpoint: the run restarts anyway)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  try:
    return read_json(path)
  except WorkdirError as e:
    source, saved = _saved_config(workdir)
    if source is None:  # Killed before its first checkpoint: it starts again from 0 frames.
      logging.warning("%s; no checkpoint yet, so the run starts again with this command's config", e)
      return new
    if saved is not None and not config_diff(saved, new):
      logging.warning("%s; this command's config is the one saved in %s: resuming with it", e, source)
      return new
    why = f"the checkpoint {source} holds another config ({config_diff(saved, new)})" if saved is not None else (
        f"no checkpoint says which config it ran ({source} is unreadable)")
    raise WorkdirError(f"{e}; {why}: restore the file, or use a new --workdir") from None


def check_workdir(workdir: str, config) -> None:
  """Refuses (WorkdirError) a workdir made with another config, or a non-empty one that is not a run's.

  Writes nothing.
  """
  new = config_json(config)
  old = _old_config(workdir, new)
  if old is not None:
    diff = config_changes(old, config)
    if diff:
      raise WorkdirError(f"workdir {workdir} holds a run made with another config ({diff}); "
                         "use a new --workdir, or the same config to resume")
  elif os.path.isdir(workdir) and set(os.listdir(workdir)) - {LOCK_FILE}:
    raise WorkdirError(f"workdir {workdir} is not empty and holds no config.json: use a new or empty --workdir")


def prepare_workdir(workdir: str, config) -> None:
  """Creates the workdir and writes config.json; refuses one made with another config (`check_workdir`).

  A workdir made with the same config is resumed: train() continues from its
  newest readable checkpoint (or returns the summary of a finished run). Fields
  added to the schema since the run started are written into its config.json.
  """
  check_workdir(workdir, config)
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, "config.json"), config_json(config))


def check_parent_workdir(workdir: str) -> None:
  """A multi-seed run's --workdir holds seed_<n>/ workdirs (which may come from several processes), not a run."""
  if os.path.exists(os.path.join(workdir, "config.json")):
    raise WorkdirError(f"workdir {workdir} holds a single-seed run (config.json): with num_seeds > 1 the "
                       "workdir is the parent of the seeds' workdirs (seed_<n>/); use another --workdir")


def seed_config(config, seed: int):
  """The single-seed config of one seed (its workdir's config.json)."""
  single = config.copy_and_resolve_references()
  with single.unlocked():
    single.seed, single.num_seeds = seed, 1
  return single


# -- one writer ---------------------------------------------------------------------------------------------------


def timestamp() -> str:
  """Now, local time with its UTC offset, to the second ('2026-12-01T18:40:31+00:00')."""
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def lock_holder() -> str:
  """'pid N on HOST since T': what a lock file holds (a workdir's, a sweep root's), named to a refused process."""
  return f"pid {os.getpid()} on {socket.gethostname()} since {timestamp()}"


class WorkdirLock:
  """The lock `lock_workdir` took; `close()` (or the end of the process) releases it."""

  def __init__(self, workdir: str, fd: int, created: bool):
    self.workdir, self._fd, self._created = workdir, fd, created

  def close(self) -> None:
    """Releases the lock; removes the lock file, and the workdir if this lock made it and it is still empty."""
    if self._fd is None:
      return
    try:
      os.remove(os.path.join(self.workdir, LOCK_FILE))  # While still holding it (see lock_workdir).
    except OSError:
      pass
    os.close(self._fd)
    self._fd = None
    if self._created:
      try:
        os.rmdir(self.workdir)  # Only if empty: nothing was written (e.g. a reincarnation source was refused).
      except OSError:
        pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def lock_workdir(workdir: str) -> WorkdirLock:
  """Makes `workdir` if needed and locks it for this process; WorkdirError naming the holder if another has it."""
  created = not os.path.isdir(workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
      os.close(fd)
      raise WorkdirError(f"workdir {workdir} is in use by {holder}: one process per workdir; wait for it to "
                         "end or stop it (kill -TERM saves and stops), then run the same command") from None
    try:  # A holder that was releasing may have removed the file we opened: lock the file at `path`.
      same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
      same = False
    if same:
      break
    os.close(fd)
  os.ftruncate(fd, 0)
  os.pwrite(fd, f"{lock_holder()}\n".encode(), 0)
  return WorkdirLock(workdir, fd, created)


def claim_workdir(workdir: str, config) -> WorkdirLock:
  """check_workdir, then lock_workdir, then prepare_workdir (checked again, under the lock); returns the lock."""
  check_workdir(workdir, config)  # Nothing is made for a workdir that would be refused.
  lock = lock_workdir(workdir)
  try:
    prepare_workdir(workdir, config)
  except BaseException:
    lock.close()
    raise
  return lock
