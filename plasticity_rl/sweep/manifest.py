"""A sweep root's own files: ROOT/sweep.json (`Manifest`) and ROOT/.sweep.lock (`root_lock`).

The manifest holds the base config, the overrides, every launch, and every run (seed) with its status and
the command line and log of the process that runs it ("process": its name, --workdir and seeds when that is
a multi-seed one). A root holds one base config and one set of overrides; games, variants and seeds may be
added by later launches, and seeds_per_process may differ between launches.
"""

import contextlib
import fcntl
import json
import os
import shlex
import socket
from typing import Any, Sequence

from plasticity_rl import workdir as workdir_lib
from plasticity_rl.sweep import inputs
from plasticity_rl.sweep import plan
from plasticity_rl.sweep.errors import SweepError

MANIFEST = "sweep.json"


class Manifest:
  """ROOT/sweep.json: base config, overrides, launches, and one entry per run (merged by name)."""

  def __init__(self, root: str, data: dict[str, Any]):
    self.root = root
    self.path = os.path.join(root, MANIFEST)
    self.data = data
    self._runs = {r["name"]: r for r in data["runs"]}

  @classmethod
  def open(cls, root: str, config: str, overrides: Sequence[str]) -> "Manifest":
    """The root's manifest (not written yet if new); SweepError when it holds another config or overrides."""
    root = os.path.abspath(os.path.expanduser(root))
    overrides = ["{}={}".format(*inputs.parse_override(o)) for o in overrides]
    path = os.path.join(root, MANIFEST)
    if os.path.exists(path):
      with open(path) as f:
        try:
          data = json.load(f)
        except json.JSONDecodeError as e:
          raise SweepError(f"{path} is not valid JSON ({e}); fix or remove it") from None
      if not inputs.same_config(data.get("config"), config) or data.get("overrides") != overrides:
        raise SweepError(
            f"{root} holds a sweep of --config={data.get('config')} with overrides {data.get('overrides')}; "
            f"this launch has --config={config} with overrides {overrides}. Use another --root, or the same "
            "config and overrides (games, variants and seeds may differ from the earlier launches)")
      return cls(root, data)
    return cls(root, {"version": 1, "created": workdir_lib.timestamp(), "updated": None, "root": root, "config": config,
                      "overrides": overrides, "launches": [], "counts": {}, "runs": []})

  def exists(self) -> bool:
    return os.path.exists(self.path)

  def get(self, name: str) -> dict[str, Any]:
    return self._runs.get(name, {})

  def variants(self) -> dict[str, dict[str, Any]]:
    """{label: overrides} of the variants this root's runs have (what axes.grid keeps for the same overrides)."""
    return {r["variant"]: r["variant_overrides"] for r in self.data["runs"] if "variant_overrides" in r}

  def add_launch(self, argv: Sequence[str], runner: str, runs: Sequence[plan.Run],
                 processes: Sequence[plan.Process] | None = None) -> None:
    """Records a launch and its runs. `processes` (default: group(runs)) are those it will start.

    A run in one of them gets that process's command line and log ("process":
    its name, --workdir and seeds when it runs several seeds); another one
    keeps what an earlier launch recorded (the process that finished it, or
    whose Slurm job still runs it).
    """
    processes = plan.group(runs) if processes is None else processes
    launch = {"time": workdir_lib.timestamp(), "host": socket.gethostname(), "runner": runner, "argv": list(argv),
              "runs": len(runs)}
    if any(p.multi for p in processes):
      launch.update(processes=len(processes), seeds_per_process=max(len(p.runs) for p in processes))
    self.data["launches"].append(launch)
    process_of = {r.name: p for p in processes for r in p.runs}
    for run in runs:
      entry = self._runs.get(run.name)
      if entry is None:
        entry = {"name": run.name, "status": "pending", "attempts": 0}
        self._runs[run.name] = entry
        self.data["runs"].append(entry)
      entry.update(game=run.game, variant=run.variant, seed=run.seed,
                   variant_overrides={k: list(v) if isinstance(v, tuple) else v for k, v in run.variant_overrides},
                   workdir=run.workdir, cwd=run.cwd)
      process = process_of.get(run.name)
      if process is not None or "command" not in entry:
        process = process or plan.Process((run,))
        entry.update(log=process.log, command=process.command, command_line=shlex.join(process.command))
        if process.multi:
          entry["process"] = {"name": process.name, "workdir": process.workdir, "seeds": process.seeds}
        else:
          entry.pop("process", None)
      if plan.is_done(run):
        entry["status"] = "done"

  def update(self, *names: str, **fields: Any) -> None:
    """Sets fields of the named runs' entries, then saves."""
    for name in names:
      self._runs[name].update(fields)
    self.save()

  def save(self) -> None:
    self.data["updated"] = workdir_lib.timestamp()
    counts = {}
    for entry in self.data["runs"]:
      counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    self.data["counts"] = counts
    os.makedirs(self.root, exist_ok=True)
    tmp = f"{self.path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
      json.dump(self.data, f, indent=1)
    os.replace(tmp, self.path)


@contextlib.contextmanager
def root_lock(root: str):
  """One launcher at a time per root (an flock on ROOT/.sweep.lock); SweepError if another holds it."""
  os.makedirs(root, exist_ok=True)
  path = os.path.join(root, ".sweep.lock")
  f = open(path, "a+")  # pylint: disable=consider-using-with
  try:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      raise SweepError(f"another launcher is working on {root} ({f.read().strip() or 'unknown'}); "
                       "wait for it or stop it first") from None
    f.seek(0)
    f.truncate()
    f.write(workdir_lib.lock_holder())
    f.flush()
    yield
  finally:
    f.close()
