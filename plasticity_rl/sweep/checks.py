"""The pre-launch check: every process's config parsed and validated exactly as main.py will, and every run's
workdir compared with the config it will get, before anything starts.

`parse_config` is main.py's parse (config_flags, then config.validate), so a bad override or variant is a
SweepError naming the run or process; `type_axes` types a sweep's --axis values by the same parse. `check`
returns the workdirs main.py would refuse (*conflicts*): one that holds another config.json, or is not empty
without one, and a multi-seed process's --workdir that holds a single run. The comparison and the refusal
are main's own (workdir.config_changes, workdir.check_parent_workdir); the configs are imported here, when a
check runs, not with the package.
"""

import os
import re
from typing import Sequence

from plasticity_rl import workdir as workdir_lib
from plasticity_rl.sweep import axes
from plasticity_rl.sweep import inputs
from plasticity_rl.sweep import plan
from plasticity_rl.sweep.errors import SweepError


def _flag_config(config_args: Sequence[str]):
  """The ConfigDict config_flags builds from these flags, as main.py's (not validated); SweepError naming the flag
  or field at fault."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  argv = ["sweep", *config_args]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv)
  try:
    flag_values(argv)
    return flag_values["config"].value
  except flags.Error as e:
    lines = [line for line in str(e).splitlines() if line.strip()]
    raise SweepError(f"{lines[0]} {lines[-1].strip()}" if len(lines) > 1 else str(e)) from None
  except (AttributeError, KeyError) as e:  # config_flags: --config.x=… for a field the config lacks.
    while e.args and isinstance(e.args[0], Exception):
      e = e.args[0]
    key = str(e.args[0] if e.args else e).splitlines()[0].strip("'\"")
    flag = next((a.split("=", 1)[0] for a in config_args if key in a.split("=", 1)[0].split(".")), None)
    raise SweepError(f"{flag or 'an override'}: the config has no field {key!r}") from None


def parse_config(config_args: Sequence[str]):
  """The ConfigDict main.py would build from these flags (config_flags, then validate).

  Raises SweepError with the flag or field at fault.
  """
  from plasticity_rl import config as config_lib  # pylint: disable=g-import-not-at-top  (imports jax)
  config = _flag_config(config_args)
  try:
    config_lib.validate(config)
  except config_lib.ConfigError as e:
    raise SweepError(str(e)) from None
  return config


def type_axes(config_args: Sequence[str], axes_in: Sequence[tuple[str, Sequence[str]]]) -> list[tuple[str, list]]:
  """Each axis (field, value texts: axes.parse_axis) with its values as the config's type, as main.py will parse
  them (config_flags on --config=… and the overrides, `config_args`), without repeats.

  A field the config lacks, a section, a field the sweep sets itself or an override sets too, and a value the
  field's type refuses are each a SweepError naming the --axis.
  """
  import ml_collections  # pylint: disable=g-import-not-at-top
  base = _flag_config(config_args)
  out = []
  for field, texts in axes_in:
    if field in inputs.RESERVED_FIELDS:
      raise SweepError(f"--axis {field}: the sweep sets config.{field} itself (use --games, --variants, --seeds)")
    if any(a.startswith(f"--config.{field}=") for a in config_args):
      raise SweepError(f"--axis {field}: an override sets config.{field} for every run too: drop one")
    value = base
    for name in field.split("."):
      if not isinstance(value, ml_collections.ConfigDict) or name not in value:
        raise SweepError(f"--axis {field}: the config has no field {field!r}")
      value = value[name]
    if isinstance(value, ml_collections.ConfigDict):
      raise SweepError(f"--axis {field}: a section, not a field; name one of its fields ({', '.join(value)})")
    typed = []
    for text in texts:
      try:
        config = _flag_config([*config_args, f"--config.{field}={text}"])
      except SweepError as e:
        raise SweepError(f"--axis {field}={text}: {re.sub(r'^flag [^ ]+: ', '', str(e))}") from None
      for name in field.split("."):
        config = config[name]
      if not any(axes.same(config, v) for v in typed):
        typed.append(config)
    out.append((field, typed))
  return out


def check(runs: Sequence[plan.Run], processes: Sequence[plan.Process] = ()) -> dict[str, str]:
  """Parses and validates every run's config; returns {name: problem} for workdirs main.py would refuse.

  A run in a multi-seed process of `processes` (group) is checked as that
  process will run it: the process's config is parsed and validated (with its
  num_seeds), and the run's workdir must hold, if anything, the config.json
  workdir.seed_config makes (its seed, num_seeds 1), which is the one a
  single run writes. A bad config (unknown field, impossible value) raises
  SweepError naming the run or process. A workdir that exists with another
  config.json, or non-empty without one, is a *conflict*: returned, for the
  caller to report.
  """
  conflicts, multi = {}, {}
  for process in processes:
    if not process.multi:
      continue
    try:
      config = parse_config(process.config_args)
    except SweepError as e:
      raise SweepError(f"process {process.name} (variant {process.runs[0].variant!r}, seeds {process.seeds} in one "
                       f"process; --seeds_per_process=1 runs each alone): {e}") from None
    parent_config = os.path.join(process.workdir, "config.json")
    try:  # main.py's own refusal of a multi-seed --workdir.
      workdir_lib.check_parent_workdir(process.workdir)
      refused = None
    except workdir_lib.WorkdirError:
      refused = (f"{parent_config} exists: {process.workdir} holds a single run, and the multi-seed "
                 f"process of seeds {process.seeds} (--workdir={process.workdir}) would refuse it")
    for run in process.runs:
      multi[run.name] = config
      if refused:
        conflicts[run.name] = refused
  for run in runs:
    if run.name in conflicts:
      continue
    if run.name in multi:
      config = workdir_lib.seed_config(multi[run.name], run.seed)
    else:
      try:
        config = parse_config(run.config_args)
      except SweepError as e:
        raise SweepError(f"run {run.name} (variant {run.variant!r}): {e}") from None
    path = os.path.join(run.workdir, "config.json")
    if os.path.exists(path):
      try:
        old = workdir_lib.read_json(path)
      except workdir_lib.WorkdirError:
        old = None
      diff = "unreadable JSON" if old is None else workdir_lib.config_changes(old, config)
      if diff:
        conflicts[run.name] = f"{path} holds another config ({diff})"
    elif os.path.isdir(run.workdir) and os.listdir(run.workdir):
      conflicts[run.name] = f"{run.workdir} is not empty and holds no config.json"
  return conflicts
