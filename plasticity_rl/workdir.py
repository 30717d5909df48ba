"""A run's workdir: made once with its config.json, and only ever reused with the same config (to resume).

A multi-seed run (config.num_seeds > 1) makes one such workdir per seed, WORKDIR/seed_<n>.
"""

import json
import os


class WorkdirError(ValueError):
  pass


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
  return out


def config_diff(old: dict, new: dict) -> str | None:
  """The fields in which config `new` departs from a workdir's `old` config.json ("a: x -> y, …"), or None.

  A field that `old` lacks is a field added to the schema after that run started: its default keeps the
  behaviour the run had (fields are added so), so it is not a difference and the run can still resume.
  """
  a, b = _flat(old), _flat(new)
  diff = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if k in a and a.get(k) != b.get(k)]
  return ", ".join(diff) or None


def prepare_workdir(workdir: str, config) -> None:
  """Creates the workdir and writes config.json; refuses one made with another config.

  A workdir made with the same config is resumed: train() continues from its
  newest readable checkpoint (or returns the summary of a finished run). Fields
  added to the schema since the run started are written into its config.json.
  """
  path = os.path.join(workdir, "config.json")
  new = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    diff = config_diff(old, new)
    if diff:
      raise WorkdirError(f"workdir {workdir} holds a run made with another config ({diff}); "
                         "use a new --workdir, or the same config to resume")
  elif os.path.isdir(workdir) and os.listdir(workdir):
    raise WorkdirError(f"workdir {workdir} is not empty and holds no config.json: use a new or empty --workdir")
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(new, f, indent=1)


def check_parent_workdir(workdir: str) -> None:
  """A multi-seed run's --workdir holds seed_<n>/ workdirs (which may come from several processes), not a run."""
  if os.path.exists(os.path.join(workdir, "config.json")):
    raise WorkdirError(f"workdir {workdir} holds a single-seed run (config.json): with num_seeds > 1 the "
                       "workdir is the parent of the seeds' workdirs (seed_<n>/); use another --workdir")
