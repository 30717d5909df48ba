"""Sweeps: games × variants × seeds, one workdir per run, run by `plasticity_rl.main` processes.

The library behind plasticity-rl-sweep (plasticity_rl/launch_sweep.py):
- `expand` turns game names and sets (atari57, atari26, atari5), variant names
  (configs/variants.py) and seeds into `Run`s: a workdir ROOT/<game>/<variant>/seed_<n>,
  a log ROOT/logs/<game>/<variant>/seed_<n>.log (not in the workdir: main.py refuses a
  non-empty workdir it did not make; not beside it: a glob ROOT/*/*/* of workdirs, as
  the analysis takes them, would catch it), and the command line that runs it.
- `group` makes the unfinished runs into `Process`es: one per run (seeds_per_process=1),
  or up to K consecutive seeds of one game and variant in one multi-seed process
  (config.num_seeds, multi_seed.py): --workdir=ROOT/<game>/<variant>, --config.seed=<a>,
  --config.num_seeds=<b-a+1>, which trains each seed in ROOT/<game>/<variant>/seed_<n> as a
  single run would, and logs to ROOT/logs/<game>/<variant>/seeds_<a>-<b>.log. Only seeds that
  would resume from the same frame count share a process (see `group`).
- `check` parses every process's config exactly as main.py will (config_flags + validate),
  so that a bad override or variant fails before anything starts, and compares each run's
  config (a multi-seed process's: multi_seed.seed_config, seed n and num_seeds 1) with the
  config.json of a workdir that already exists.
- `Manifest` is ROOT/sweep.json: the base config, the overrides, and every run (seed) with
  its status and the command line and log of the process that runs it ("process": its
  name, --workdir and seeds when that is a multi-seed one). A root holds one base config
  and one set of overrides; games, variants and seeds may be added by later launches, and
  seeds_per_process may differ between launches.
- Runners: `run_local` (N concurrent processes, one GPU each when there are GPUs) and
  `submit` (submitit: a Slurm job array, one job per process, or submitit's local
  executor). Both re-run the same command on the same workdir(s), so an unfinished run
  resumes and a finished one (summary.json present) is skipped.
"""

import contextlib
import dataclasses
import datetime
import fcntl
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Iterable, Sequence, TextIO

import submitit

from plasticity_rl import atari_games
from plasticity_rl import cli
from plasticity_rl import workdir as workdir_lib

MANIFEST = "sweep.json"
LOGS = "logs"  # ROOT/logs/<game>/<variant>/seed_<n>.log, or seeds_<a>-<b>.log for a multi-seed process.
RESERVED_FIELDS = ("game", "variant", "seed", "num_seeds")  # The sweep sets these; overrides may not.
# Slurm states in which a submitted run is still queued or running (not to be submitted again).
ACTIVE_JOB_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED",
                     "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT")


class SweepError(ValueError):
  """Bad sweep input or state; the message names the game, variant, field or path."""


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- names


def resolve_games(names: Iterable[str]) -> list[str]:
  """Game names and set names (atari57, atari26, atari5) -> canonical names, in order, without repeats."""
  games = []
  for name in names:
    name = name.strip()
    if not name:
      continue
    if name.lower() in atari_games.GAME_SETS:
      found = list(atari_games.GAME_SETS[name.lower()])
    else:
      game = atari_games.canonical_game(name)
      if game is None:
        from plasticity_rl.envs import atari  # pylint: disable=g-import-not-at-top  (imports envpool)
        try:
          game = atari.resolve_game(name)
        except ValueError as e:
          raise SweepError(f"--games: {e}; or a set: {', '.join(atari_games.GAME_SETS)}") from None
      found = [game]
    games.extend(g for g in found if g not in games)
  if not games:
    raise SweepError(f"--games: no game given; name games or a set ({', '.join(atari_games.GAME_SETS)})")
  return games


def resolve_seeds(seeds: Sequence[int | str] | None = None, num_seeds: int | None = None) -> list[int]:
  """--seeds=0,1,2 or --num_seeds=3 (seeds 0..2); neither: [0]."""
  if seeds and num_seeds is not None:
    raise SweepError("give --seeds or --num_seeds, not both")
  if num_seeds is not None:
    if num_seeds < 1:
      raise SweepError(f"--num_seeds must be ≥ 1, got {num_seeds}")
    return list(range(num_seeds))
  if not seeds:
    return [0]
  out = []
  for s in seeds:
    try:
      seed = int(s)
    except ValueError:
      raise SweepError(f"--seeds: {s!r} is not an integer") from None
    if seed < 0:
      raise SweepError(f"--seeds: seeds must be ≥ 0, got {seed}")
    if seed not in out:
      out.append(seed)
  return out


def load_variants(path: str):
  """Imports a variants file (configs/variants.py): a module with get_variant(name) and allowed()."""
  if not os.path.isfile(path):
    raise SweepError(f"variants file {path} does not exist")
  spec = importlib.util.spec_from_file_location("plasticity_rl_sweep_variants", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def resolve_variants(names: Iterable[str], variants_module) -> dict[str, dict[str, Any]]:
  """Variant names -> {name: overrides}; an unknown name is a SweepError naming the allowed ones."""
  out = {}
  for name in names:
    name = name.strip()
    if not name or name in out:
      continue
    try:
      overrides = variants_module.get_variant(name)
    except ValueError as e:
      raise SweepError(f"--variants: {e}") from None
    bad = [k for k in overrides if k in RESERVED_FIELDS]
    if bad:
      raise SweepError(f"variant {name!r} sets {bad}: the sweep sets game, variant, seed and num_seeds itself")
    out[name] = overrides
  if not out:
    raise SweepError(f"--variants: no variant given; allowed: {variants_module.allowed()}")
  return out


def safe_name(name: str) -> str:
  """A path component: letters, digits and . _ - + @ = kept, anything else -> _."""
  safe = re.sub(r"[^A-Za-z0-9._+@=-]", "_", name)
  if not safe or safe.strip(".") == "" or safe.startswith("-"):
    safe = "_" + safe
  return safe


def format_value(value: Any) -> str:
  """A Python override value -> the text config_flags parses back to it."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (tuple, list)):
    return "(" + ",".join(repr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  if isinstance(value, str):
    return value
  return repr(value)


def parse_override(text: str) -> tuple[str, str]:
  """'learner.replay_ratio=0.5' or '--config.learner.replay_ratio=0.5' -> ('learner.replay_ratio', '0.5')."""
  m = re.fullmatch(r"(?:--?)?(?:config\.)?([A-Za-z_][A-Za-z0-9_.]*)=(.*)", text.strip(), re.DOTALL)
  if m is None:
    raise SweepError(f"override {text!r}: expected field=value, e.g. learner.replay_ratio=0.5 "
                     "(or --config.learner.replay_ratio=0.5)")
  key, value = m.groups()
  if key in RESERVED_FIELDS:
    use = "--seeds_per_process" if key == "num_seeds" else "--games, --variants, --seeds"
    raise SweepError(f"override {text!r}: the sweep sets config.{key} itself (use {use})")
  return key, value


# ----------------------------------------------------------------------------- runs


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of the sweep: a game, a variant, a seed, and how to run it."""
  game: str
  variant: str
  seed: int
  name: str  # "Pong/inject@50M/seed_0": the workdir relative to the sweep root.
  workdir: str
  log: str
  config_args: tuple[str, ...]  # --config=… and every --config.x=y, in order (no --workdir).
  variant_overrides: tuple[tuple[str, Any], ...]
  cwd: str

  @property
  def command(self) -> list[str]:
    return _command(self.config_args, self.workdir)


def _command(config_args: Sequence[str], workdir: str) -> list[str]:
  return [sys.executable, "-m", "plasticity_rl.main", config_args[0], f"--workdir={workdir}", *config_args[1:]]


def _without_seed(config_args: Sequence[str]) -> tuple[str, ...]:
  return tuple(a for a in config_args if not a.startswith("--config.seed="))


@dataclasses.dataclass(frozen=True)
class Process:
  """One `plasticity_rl.main` process: one run, or the runs of consecutive seeds of one game and variant.

  A single run's process is the run's own command and log. Seeds a…b together
  are one multi-seed process (--config.seed=a --config.num_seeds=b-a+1) whose
  --workdir is their parent ROOT/<game>/<variant>: each seed still trains in
  its own ROOT/<game>/<variant>/seed_<n>. Its log is
  ROOT/logs/<game>/<variant>/seeds_<a>-<b>.log.
  """
  runs: tuple[Run, ...]

  @property
  def multi(self) -> bool:
    return len(self.runs) > 1

  @property
  def seeds(self) -> list[int]:
    return [r.seed for r in self.runs]

  @property
  def _seed_range(self) -> str:
    return f"seeds_{self.runs[0].seed}-{self.runs[-1].seed}"

  @property
  def name(self) -> str:
    first = self.runs[0]
    return f"{os.path.dirname(first.name)}/{self._seed_range}" if self.multi else first.name

  @property
  def workdir(self) -> str:
    return os.path.dirname(self.runs[0].workdir) if self.multi else self.runs[0].workdir

  @property
  def log(self) -> str:
    first = self.runs[0]
    return os.path.join(os.path.dirname(first.log), f"{self._seed_range}.log") if self.multi else first.log

  @property
  def config_args(self) -> tuple[str, ...]:
    first = self.runs[0]
    if not self.multi:
      return first.config_args
    return (*_without_seed(first.config_args), f"--config.seed={first.seed}", f"--config.num_seeds={len(self.runs)}")

  @property
  def command(self) -> list[str]:
    return _command(self.config_args, self.workdir)

  def spec(self) -> dict[str, Any]:
    """What a submitted job needs (plain data, picklable); `workdirs`: the runs' (where summary.json goes)."""
    return {"name": self.name, "workdir": self.workdir, "workdirs": [r.workdir for r in self.runs], "log": self.log,
            "command": self.command, "cwd": self.runs[0].cwd}


def config_spec(config: str) -> str:
  """'configs/dqn.py:smoke' -> '/abs/configs/dqn.py:smoke' (cli.config_path: from any directory); SweepError
  when the file is missing."""
  path, sep, arg = config.partition(":")
  path = os.path.abspath(cli.config_path(path))
  if not os.path.isfile(path):
    raise SweepError(f"--config: {path} does not exist")
  return path + sep + arg


def same_config(a: str | None, b: str | None) -> bool:
  """Whether two config_specs name the same file and arg (configs/… and plasticity_rl/configs/… are one file)."""
  if a is None or b is None:
    return a == b
  (path_a, _, arg_a), (path_b, _, arg_b) = a.partition(":"), b.partition(":")
  return arg_a == arg_b and os.path.realpath(path_a) == os.path.realpath(path_b)


def expand(root: str, config: str, games: Sequence[str], variants: dict[str, dict[str, Any]], seeds: Sequence[int],
           overrides: Sequence[str] = ()) -> list[Run]:
  """Every (seed, game, variant), seed-major: all games and variants of seed 0 come first.

  `games` are canonical names (resolve_games), `variants` {name: overrides}
  (resolve_variants), `overrides` 'field=value' strings applied to every run.
  A field set by both an override and a variant is an error.
  """
  root = os.path.abspath(os.path.expanduser(root))
  spec = config_spec(config)
  global_args = []
  global_keys = {}
  for text in overrides:
    key, value = parse_override(text)
    global_keys[key] = text
    global_args.append(f"--config.{key}={value}")
  dirs = {}
  for variant in variants:
    d = safe_name(variant)
    if d in dirs:
      raise SweepError(f"variants {dirs[d]!r} and {variant!r} would share the directory {d!r}; rename one")
    dirs[d] = variant
  runs = []
  for seed in seeds:
    for game in games:
      for variant, variant_overrides in variants.items():
        both = [k for k in variant_overrides if k in global_keys]
        if both:
          raise SweepError(f"variant {variant!r} sets {both}, which the override(s) "
                           f"{[global_keys[k] for k in both]} also set: drop one")
        name = f"{safe_name(game)}/{safe_name(variant)}/seed_{seed}"
        args = [f"--config={spec}", *global_args,
                *(f"--config.{k}={format_value(v)}" for k, v in variant_overrides.items()),
                f"--config.game={game}", f"--config.variant={variant}", f"--config.seed={seed}"]
        runs.append(Run(game=game, variant=variant, seed=seed, name=name, workdir=os.path.join(root, name),
                        log=os.path.join(root, LOGS, name) + ".log", config_args=tuple(args),
                        variant_overrides=tuple(variant_overrides.items()), cwd=os.getcwd()))
  return runs


def last_checkpoint(workdir: str) -> int | None:
  """The frame count of the newest complete checkpoint in workdir/checkpoints (orbax's <step>/), or None."""
  directory = os.path.join(workdir, "checkpoints")
  try:
    names = os.listdir(directory)
  except OSError:
    return None
  return max((int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(directory, n))), default=None)


def check_seeds_per_process(seeds_per_process: int) -> None:
  if not isinstance(seeds_per_process, int) or seeds_per_process < 1:
    raise SweepError(f"--seeds_per_process must be an integer ≥ 1 (1: a process per run), got {seeds_per_process!r}")


def group(runs: Sequence[Run], seeds_per_process: int = 1) -> list[Process]:
  """The unfinished runs as processes of up to `seeds_per_process` seeds, ordered by their first run.

  Finished runs (summary.json) are left out: they are never started again. A
  multi-seed process takes runs of one game and variant (the same flags but
  the seed) whose seeds are consecutive integers and which would resume from
  the same frame count: the newest checkpoint of each, or none. Seeds at
  different frame counts go to different processes, because
  multi_seed.train_seeds resumes all its seeds from a checkpoint they have in
  common: it would set a seed back to an older one, or, with none in common,
  train every seed again from 0 frames on top of its own checkpoints.
  """
  check_seeds_per_process(seeds_per_process)
  todo = [r for r in runs if not is_done(r)]
  if seeds_per_process == 1:
    return [Process((r,)) for r in todo]
  buckets: dict[tuple, list[Run]] = {}
  for run in todo:
    key = (os.path.dirname(run.workdir), os.path.dirname(run.log), run.cwd, _without_seed(run.config_args))
    buckets.setdefault(key, []).append(run)
  processes = []
  for bucket in buckets.values():
    current, current_resume = [], None
    for run in sorted(bucket, key=lambda r: r.seed):
      resume = last_checkpoint(run.workdir)
      if current and (len(current) == seeds_per_process or run.seed != current[-1].seed + 1
                      or resume != current_resume):
        processes.append(Process(tuple(current)))
        current = []
      current.append(run)
      current_resume = resume
    processes.append(Process(tuple(current)))
  order = {r.name: i for i, r in enumerate(todo)}
  return sorted(processes, key=lambda p: min(order[r.name] for r in p.runs))


def parse_config(config_args: Sequence[str]):
  """The ConfigDict main.py would build from these flags (config_flags, then validate).

  Raises SweepError with the flag or field at fault.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from plasticity_rl import config as config_lib  # pylint: disable=g-import-not-at-top  (imports jax)
  argv = ["sweep", *config_args]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv)
  try:
    flag_values(argv)
    config = flag_values["config"].value
  except flags.Error as e:
    lines = [line for line in str(e).splitlines() if line.strip()]
    raise SweepError(f"{lines[0]} {lines[-1].strip()}" if len(lines) > 1 else str(e)) from None
  except (AttributeError, KeyError) as e:  # config_flags: --config.x=… for a field the config lacks.
    while e.args and isinstance(e.args[0], Exception):
      e = e.args[0]
    key = str(e.args[0] if e.args else e).splitlines()[0].strip("'\"")
    flag = next((a.split("=", 1)[0] for a in config_args if key in a.split("=", 1)[0].split(".")), None)
    raise SweepError(f"{flag or 'an override'}: the config has no field {key!r}") from None
  try:
    config_lib.validate(config)
  except config_lib.ConfigError as e:
    raise SweepError(str(e)) from None
  return config


def check(runs: Sequence[Run], processes: Sequence[Process] = ()) -> dict[str, str]:
  """Parses and validates every run's config; returns {name: problem} for workdirs main.py would refuse.

  A run in a multi-seed process of `processes` (group) is checked as that
  process will run it: the process's config is parsed and validated (with its
  num_seeds), and the run's workdir must hold, if anything, the config.json
  multi_seed.seed_config writes (its seed, num_seeds 1), which is the one a
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
    for run in process.runs:
      multi[run.name] = config
      if os.path.exists(parent_config):
        conflicts[run.name] = (f"{parent_config} exists: {process.workdir} holds a single run, and the multi-seed "
                               f"process of seeds {process.seeds} (--workdir={process.workdir}) would refuse it")
  if multi:
    from plasticity_rl import multi_seed  # pylint: disable=g-import-not-at-top  (imports jax, envpool)
  for run in runs:
    if run.name in conflicts:
      continue
    if run.name in multi:
      config = multi_seed.seed_config(multi[run.name], run.seed)
    else:
      try:
        config = parse_config(run.config_args)
      except SweepError as e:
        raise SweepError(f"run {run.name} (variant {run.variant!r}): {e}") from None
    path = os.path.join(run.workdir, "config.json")
    if os.path.exists(path):
      with open(path) as f:
        try:
          old = json.load(f)
        except json.JSONDecodeError:
          old = None
      from plasticity_rl import config as config_lib  # pylint: disable=g-import-not-at-top
      diff = "unreadable JSON" if old is None else workdir_lib.config_diff(
          old, json.loads(config.to_json_best_effort()), ignore=config_lib.inactive_paths(config))
      if diff:
        conflicts[run.name] = f"{path} holds another config ({diff})"
    elif os.path.isdir(run.workdir) and os.listdir(run.workdir):
      conflicts[run.name] = f"{run.workdir} is not empty and holds no config.json"
  return conflicts


def is_done(run: Run) -> bool:
  """A readable summary.json: a damaged one (torn by a crash before it was written atomically) is not done, so
  the run's process starts and main rewrites it from the final checkpoint."""
  path = os.path.join(run.workdir, "summary.json")
  if not os.path.exists(path):
    return False
  try:
    workdir_lib.read_json(path)
  except workdir_lib.WorkdirError:
    return False
  return True


def disk_status(run: Run) -> str:
  """done (summary.json), resume (started: config.json, no summary) or pending (no workdir yet)."""
  if is_done(run):
    return "done"
  if os.path.exists(os.path.join(run.workdir, "config.json")):
    return "resume"
  return "pending"


# ----------------------------------------------------------------------------- manifest


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
    overrides = ["{}={}".format(*parse_override(o)) for o in overrides]
    path = os.path.join(root, MANIFEST)
    if os.path.exists(path):
      with open(path) as f:
        try:
          data = json.load(f)
        except json.JSONDecodeError as e:
          raise SweepError(f"{path} is not valid JSON ({e}); fix or remove it") from None
      if not same_config(data.get("config"), config) or data.get("overrides") != overrides:
        raise SweepError(
            f"{root} holds a sweep of --config={data.get('config')} with overrides {data.get('overrides')}; "
            f"this launch has --config={config} with overrides {overrides}. Use another --root, or the same "
            "config and overrides (games, variants and seeds may differ from the earlier launches)")
      return cls(root, data)
    return cls(root, {"version": 1, "created": _now(), "updated": None, "root": root, "config": config,
                      "overrides": overrides, "launches": [], "counts": {}, "runs": []})

  def exists(self) -> bool:
    return os.path.exists(self.path)

  def get(self, name: str) -> dict[str, Any]:
    return self._runs.get(name, {})

  def add_launch(self, argv: Sequence[str], runner: str, runs: Sequence[Run],
                 processes: Sequence[Process] | None = None) -> None:
    """Records a launch and its runs. `processes` (default: group(runs)) are those it will start.

    A run in one of them gets that process's command line and log ("process":
    its name, --workdir and seeds when it runs several seeds); another one
    keeps what an earlier launch recorded (the process that finished it, or
    whose Slurm job still runs it).
    """
    processes = group(runs) if processes is None else processes
    launch = {"time": _now(), "host": socket.gethostname(), "runner": runner, "argv": list(argv), "runs": len(runs)}
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
        process = process or Process((run,))
        entry.update(log=process.log, command=process.command, command_line=shlex.join(process.command))
        if process.multi:
          entry["process"] = {"name": process.name, "workdir": process.workdir, "seeds": process.seeds}
        else:
          entry.pop("process", None)
      if is_done(run):
        entry["status"] = "done"

  def update(self, *names: str, **fields: Any) -> None:
    """Sets fields of the named runs' entries, then saves."""
    for name in names:
      self._runs[name].update(fields)
    self.save()

  def save(self) -> None:
    self.data["updated"] = _now()
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
    f.write(f"pid {os.getpid()} on {socket.gethostname()} since {_now()}")
    f.flush()
    yield
  finally:
    f.close()


def job_states(manifest: Manifest, runs: Sequence[Run]) -> dict[str, str]:
  """{name: Slurm state} for unfinished runs whose recorded Slurm job is still queued or running.

  Asks `squeue` (not sacct: it needs accounting). Without squeue here, {}.
  """
  recorded = {}
  for run in runs:
    entry = manifest.get(run.name)
    if entry.get("cluster") == "slurm" and entry.get("job_id") and not is_done(run):
      recorded[run.name] = entry["job_id"]
  if not recorded or shutil.which("squeue") is None:
    return {}
  base_ids = sorted({job_id.split("_")[0] for job_id in recorded.values()})
  try:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(base_ids)], capture_output=True,
                         text=True, timeout=60).stdout
  except (OSError, subprocess.SubprocessError):
    return {}
  queued = dict(line.strip().split("|", 1) for line in out.splitlines() if "|" in line)
  return {name: queued[job_id] for name, job_id in recorded.items()
          if job_id in queued and queued[job_id] in ACTIVE_JOB_STATES}


def statuses(runs: Sequence[Run], manifest: Manifest, conflicts: dict[str, str],
             active: dict[str, str]) -> dict[str, str]:
  """{name: status}: done, conflict, queued/running (a Slurm job), failed (last attempt), resume, pending."""
  out = {}
  for run in runs:
    status = disk_status(run)
    if status != "done":
      if run.name in conflicts:
        status = "conflict"
      elif run.name in active:
        status = f"slurm:{active[run.name].split()[0].lower()}"
      elif manifest.get(run.name).get("status") in ("failed", "interrupted"):
        status = manifest.get(run.name)["status"]
    out[run.name] = status
  return out


def print_plan(runs: Sequence[Run], status: dict[str, str], conflicts: dict[str, str], out: TextIO,
               processes: Sequence[Process] = ()) -> None:
  """The run list with statuses (and the multi-seed process of each run to go), then the counts."""
  width = max(len(s) for s in status.values()) if status else 7
  process_of = {r.name: p for p in processes if p.multi for r in p.runs}
  for run in runs:
    line = f"  {status[run.name]:<{width}}  {run.name}"
    if run.name in process_of:
      line += f"  [process {process_of[run.name].name}]"
    if run.name in conflicts:
      line += f"  ({conflicts[run.name]})"
    out.write(line + "\n")
  counts = {}
  for s in status.values():
    counts[s] = counts.get(s, 0) + 1
  out.write(f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "\n")
  if process_of:
    out.write(f"{sum(len(p.runs) for p in processes)} runs to go{_counts(processes)}\n")
  out.flush()


# ----------------------------------------------------------------------------- running one process


def _preexec() -> None:
  """In the child (with start_new_session: signals to the launcher's group do not reach it).

  SIGUSR2 ignored: Slurm's pre-emption warning may reach every process of the
  job; the submitit job handles it and stops the run itself (SIGTERM). And a
  SIGTERM when its parent dies, so that no run is left orphaned (Linux).
  """
  signal.signal(signal.SIGUSR2, signal.SIG_IGN)
  if sys.platform.startswith("linux"):
    try:
      import ctypes  # pylint: disable=g-import-not-at-top
      ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
      pass


def start_process(spec: dict[str, Any], env: dict[str, str], attempt: int, note: str = "") -> subprocess.Popen:
  """Starts a run's command, its stdout and stderr appended to its log (after a header line)."""
  os.makedirs(os.path.dirname(spec["log"]), exist_ok=True)
  with open(spec["log"], "a") as log:
    log.write(f"\n===== {_now()} attempt {attempt} on {socket.gethostname()}{note}\n"
              f"===== {shlex.join(spec['command'])}\n")
    log.flush()
    return subprocess.Popen(spec["command"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=spec["cwd"] if os.path.isdir(spec["cwd"]) else None, env=env,
                            start_new_session=True, preexec_fn=_preexec)


def stop_process(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
  """SIGTERM to the run's process group, SIGKILL after grace_s; returns when it has exited.

  Reaps with os.waitpid, not Popen.wait: this also runs in submitit's signal
  handler, which may interrupt a Popen.wait that holds the Popen's lock.
  """
  if proc.returncode is not None:
    return
  with contextlib.suppress(ProcessLookupError):
    os.killpg(proc.pid, signal.SIGTERM)
  deadline = time.time() + grace_s
  while True:
    try:
      pid, status = os.waitpid(proc.pid, 0 if deadline is None else os.WNOHANG)
    except ChildProcessError:  # Reaped already (by Popen).
      if proc.returncode is None:
        proc.returncode = -signal.SIGTERM
      return
    if pid:
      proc.returncode = os.waitstatus_to_exitcode(status)
      return
    if deadline is not None and time.time() > deadline:
      with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
      deadline = None
    time.sleep(0.1)


def wait_process(proc: subprocess.Popen, poll_s: float = 0.5) -> int:
  """proc's exit status, polling (a signal handler may stop it meanwhile)."""
  while proc.poll() is None:
    time.sleep(poll_s)
  return proc.returncode


def log_tail(path: str, lines: int = 5) -> str:
  try:
    with open(path, errors="replace") as f:
      text = f.read()[-20_000:]
  except OSError:
    return ""
  return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def outcome(spec: dict[str, Any], returncode: int) -> str | None:
  """None when the process finished (exit 0 and summary.json in every run's workdir); else why not."""
  workdirs = spec.get("workdirs", [spec["workdir"]])
  missing = [w for w in workdirs if not os.path.exists(os.path.join(w, "summary.json"))]
  if returncode == 0 and not missing:
    return None
  if returncode == 0:
    where = f" in {', '.join(os.path.basename(w) for w in missing)}" if len(workdirs) > 1 else ""
    return f"exited 0 without writing summary.json{where}"
  if returncode < 0:
    number = -returncode
    return f"killed by signal {signal.Signals(number).name if number in signal.valid_signals() else number}"
  if returncode > 128 and returncode - 128 in signal.valid_signals():
    return f"exit status {returncode} (stopped by {signal.Signals(returncode - 128).name})"
  return f"exit status {returncode}"


# ----------------------------------------------------------------------------- local runner


def detect_gpus() -> list[str]:
  """GPU ids to pin runs to: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`; [] means CPU."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None:
    ids = [g.strip() for g in visible.split(",") if g.strip()]
    return [] if ids in ([], ["-1"]) else ids
  if shutil.which("nvidia-smi") is None:
    return []
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return re.findall(r"^GPU (\d+):", out, re.MULTILINE)


class _Progress:
  """Prints one line per event and a status line every `every_s` seconds; counts runs (seeds), not processes."""

  def __init__(self, total: int, out: TextIO, every_s: float):
    self.total, self.out, self.every_s = total, out, every_s
    self.done = self.failed = 0
    self.start = self.last = time.time()

  def line(self, running: int, message: str) -> None:
    waiting = self.total - self.done - self.failed - running
    elapsed = datetime.timedelta(seconds=int(time.time() - self.start))
    self.out.write(f"[{elapsed} | {self.done}/{self.total} done, {running} running, {self.failed} failed, "
                   f"{waiting} waiting] {message}\n")
    self.out.flush()
    self.last = time.time()

  def tick(self, running: int, started: dict[str, float], workdirs: dict[str, str] | None = None) -> None:
    """`running` runs in the processes `started` ({name: start time}); `workdirs` ({name: a workdir of its
    runs}): where each one's frames and ETA are read (`run_progress`)."""
    if time.time() - self.last >= self.every_s:
      workdirs = workdirs or {}
      ages = []
      for name, t0 in list(started.items())[:4]:
        where = run_progress(workdirs[name]) if name in workdirs else None
        ages.append(f"{name} {datetime.timedelta(seconds=int(time.time() - t0))}" + (f" ({where})" if where else ""))
      self.line(running, f"running: {', '.join(ages)}" + (" …" if len(started) > 4 else ""))


def tail_rows(path: str, max_bytes: int = 65_536) -> list[dict[str, Any]]:
  """The whole JSON rows among the last `max_bytes` of a JSON-lines file (a row being written is skipped)."""
  try:
    with open(path, "rb") as f:
      size = f.seek(0, os.SEEK_END)
      f.seek(max(0, size - max_bytes))
      lines = f.read().split(b"\n")
  except OSError:
    return []
  rows = []
  for line in lines[1:] if size > max_bytes else lines:  # The first line read may be cut.
    try:
      row = json.loads(line)
    except ValueError:
      continue
    if isinstance(row, dict):
      rows.append(row)
  return rows


def run_progress(workdir: str) -> str | None:
  """'312,000/400,000 frames (78%), ETA 0:03:10' from a running run's metrics.jsonl tail and config.json: the
  newest row's frames, and the frames left at the fps of its newest train row; None before its first row."""
  rows = tail_rows(os.path.join(workdir, "metrics.jsonl"))
  if not rows:
    return None
  frames = int(rows[-1].get("frames", 0))
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      total = int(json.load(f)["total_frames"])
  except (OSError, ValueError, KeyError, TypeError):
    return f"{frames:,} frames"
  fps = next((r["fps"] for r in reversed(rows) if r.get("kind") == "train" and r.get("fps")), None)
  eta = f", ETA {datetime.timedelta(seconds=int(max(total - frames, 0) / fps))}" if fps else ""
  return f"{frames:,}/{total:,} frames ({100 * frames / max(total, 1):.0f}%){eta}"


def _counts(processes: Sequence[Process]) -> str:
  """' in 3 processes (up to 2 seeds each)' when some process runs several seeds; else ''."""
  if not any(p.multi for p in processes):
    return ""
  n = len(processes)
  return f" in {n} process{'es' if n != 1 else ''} (up to {max(len(p.runs) for p in processes)} seeds each)"


def run_local(runs: Sequence[Run], manifest: Manifest, parallel: int = 1, gpus: Sequence[str] = (),
              out: TextIO = sys.stdout, progress_every_s: float = 60.0, poll_s: float = 0.5,
              make_spec: Callable[[Process], dict[str, Any]] = Process.spec, seeds_per_process: int = 1,
              processes: Sequence[Process] | None = None) -> int:
  """Runs every unfinished run, `parallel` processes at a time; returns how many runs failed.

  The processes are `processes`, or group(runs, seeds_per_process). With
  GPUs, each process gets CUDA_VISIBLE_DEVICES=<one id>, the least-used one
  (round-robin); when several processes share a GPU, each gets an equal share
  of its memory (XLA_PYTHON_CLIENT_MEM_FRACTION) unless that is set already. A
  failed process is reported with its log (every run in it failed); the others
  go on. Ctrl-C stops every process (they resume on the next launch).
  """
  processes = group(runs, seeds_per_process) if processes is None else processes
  todo = [p for p in processes if not all(is_done(r) for r in p.runs)]
  skipped = sum(is_done(r) for r in runs)
  to_run = sum(len(p.runs) for p in todo)
  parallel = max(1, parallel)
  gpus = list(gpus)
  base_env = dict(os.environ)
  if gpus and parallel > len(gpus) and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in base_env:
    base_env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / math.ceil(parallel / len(gpus)):.2f}"
  out.write(f"{len(runs)} runs: {skipped} done already (skipped), {to_run} to run{_counts(todo)}, {parallel} at a "
            f"time on {'GPUs ' + ','.join(gpus) if gpus else 'CPU'}\n")
  out.flush()
  progress = _Progress(to_run, out, progress_every_s)
  running: dict[str, tuple[subprocess.Popen, float, str | None, Process]] = {}
  failures: list[tuple[Process, str]] = []
  queue = list(todo)
  runs_running = lambda: sum(len(p.runs) for _, _, _, p in running.values())
  try:
    while queue or running:
      while queue and len(running) < parallel:
        process = queue.pop(0)
        names = [r.name for r in process.runs]
        gpu = min(gpus, key=lambda g: sum(1 for _, _, x, _ in running.values() if x == g)) if gpus else None
        env = dict(base_env)
        if gpu is not None:
          env["CUDA_VISIBLE_DEVICES"] = gpu
        attempt = max(manifest.get(name).get("attempts", 0) for name in names) + 1
        resume = any(disk_status(r) == "resume" for r in process.runs)
        proc = start_process(make_spec(process), env, attempt, f", GPU {gpu}" if gpu is not None else "")
        running[process.name] = (proc, time.time(), gpu, process)
        manifest.update(*names, status="running", attempts=attempt, started=_now(), finished=None,
                        returncode=None, runner="local", gpu=gpu, pid=proc.pid, host=socket.gethostname())
        progress.line(runs_running(), f"start {process.name}{' (resuming)' if resume else ''}"
                      f"{f' on GPU {gpu}' if gpu is not None else ''}")
      time.sleep(poll_s)
      for name, (proc, t0, _, process) in list(running.items()):
        rc = proc.poll()
        if rc is None:
          continue
        del running[name]
        names = [r.name for r in process.runs]
        problem = outcome(make_spec(process), rc)
        took = datetime.timedelta(seconds=int(time.time() - t0))
        if problem is None:
          progress.done += len(names)
          manifest.update(*names, status="done", returncode=rc, finished=_now(), pid=None)
          progress.line(runs_running(), f"done  {name} ({took})")
        else:
          progress.failed += len(names)
          failures.append((process, problem))
          manifest.update(*names, status="failed", returncode=rc, finished=_now(), pid=None, error=problem)
          tail = log_tail(process.log)
          progress.line(runs_running(), f"FAILED {name} ({problem}, after {took}); log: {process.log}" +
                        ("\n    " + tail.replace("\n", "\n    ") if tail else ""))
      progress.tick(runs_running(), {name: t0 for name, (_, t0, _, _) in running.items()},
                    {name: process.runs[0].workdir for name, (_, _, _, process) in running.items()})
  except KeyboardInterrupt:
    out.write(f"\ninterrupted: stopping {len(running)} process(es); launch again with the same flags to resume\n")
    for proc, _, _, process in running.values():
      stop_process(proc, grace_s=30.0)
      manifest.update(*(r.name for r in process.runs), status="interrupted", returncode=proc.returncode,
                      finished=_now(), pid=None)
    out.flush()
    raise
  out.write(f"finished: {progress.done} done, {progress.failed} failed, {skipped} skipped (done before)"
            f" in {datetime.timedelta(seconds=int(time.time() - progress.start))}\n")
  for process, problem in failures:
    out.write(f"  FAILED {process.name}: {problem}; log: {process.log}\n")
  out.flush()
  return progress.failed


# ----------------------------------------------------------------------------- submitit runner


class RunFailed(RuntimeError):
  pass


class SubmittedRun(submitit.helpers.Checkpointable):
  """The callable a submitit job runs: one process's command, as a subprocess, its output to the process's log.

  Checkpointable: on pre-emption or timeout, submitit calls `checkpoint`, which
  stops the process (SIGTERM, then SIGKILL after `grace_s`) and requeues the
  same command — it resumes from the workdirs' last checkpoint. A requeued job
  whose runs have finished (summary.json in each) returns at once.
  """

  def __init__(self, grace_s: float = 150.0):
    self.grace_s = grace_s
    self._proc = None

  def __call__(self, spec: dict[str, Any]) -> dict[str, Any]:
    workdirs = spec.get("workdirs", [spec["workdir"]])
    if not all(os.path.exists(os.path.join(w, "summary.json")) for w in workdirs):
      attempt = 1
      with contextlib.suppress(OSError), open(spec["log"], errors="replace") as f:
        attempt += len(re.findall(r"^===== \S+ attempt \d+ on ", f.read(), re.MULTILINE))
      job = submitit.JobEnvironment().job_id if submitit.JobEnvironment().activated() else None
      self._proc = start_process(spec, dict(os.environ), attempt, f", job {job}" if job else "")
      try:
        returncode = wait_process(self._proc)
      finally:
        stop_process(self._proc, self.grace_s)  # SystemExit from a requeue, KeyboardInterrupt from a cancel.
      problem = outcome(spec, returncode)
      if problem is not None:
        tail = log_tail(spec["log"])
        raise RunFailed(f"{spec['name']}: {problem}; log: {spec['log']}" + (f"\n{tail}" if tail else ""))
    results = []
    for workdir in workdirs:
      with open(os.path.join(workdir, "summary.json")) as f:
        s = json.load(f)
      results.append({"name": spec["name"] if len(workdirs) == 1 else os.path.basename(workdir), "workdir": workdir,
                      **{k: s.get(k) for k in ("frames", "final_eval_return", "best_eval_return", "wall_seconds")}})
    return results[0] if len(results) == 1 else {"name": spec["name"], "workdir": spec["workdir"], "runs": results}

  def checkpoint(self, spec: dict[str, Any]):  # pylint: disable=arguments-differ
    if self._proc is not None and self._proc.poll() is None:
      stop_process(self._proc, self.grace_s)
      with contextlib.suppress(OSError), open(spec["log"], "a") as f:
        f.write(f"===== {_now()} pre-empted or timed out: stopped, requeued on the same workdir\n")
    return submitit.helpers.DelayedSubmission(SubmittedRun(self.grace_s), spec)

  def __getstate__(self):
    return {"grace_s": self.grace_s, "_proc": None}


def make_executor(root: str, cluster: str, parameters: dict[str, Any]):
  folder = os.path.join(root, ".submitit", "%j")
  executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
  executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
  return executor


def submit(runs: Sequence[Run], manifest: Manifest, cluster: str = "slurm", parameters: dict[str, Any] | None = None,
           out: TextIO = sys.stdout, grace_s: float = 150.0, skip: Iterable[str] = (), seeds_per_process: int = 1,
           processes: Sequence[Process] | None = None) -> list[tuple[Process, Any]]:
  """Submits every unfinished run, one job per process (one job array on Slurm); returns [(process, submitit job)].

  `parameters` go to submitit's AutoExecutor.update_parameters (timeout_min,
  gpus_per_node, slurm_partition, slurm_array_parallelism, …: per job, so per
  process); `cluster` is "slurm", or "local"/"debug" for submitit's executors
  on this machine. `skip`: runs whose job is still queued or running. The
  processes are `processes`, or group(the other runs, seeds_per_process).
  """
  skip = set(skip)
  if processes is None:
    processes = group([r for r in runs if r.name not in skip], seeds_per_process)
  todo = [p for p in processes if not all(is_done(r) for r in p.runs) and not any(r.name in skip for r in p.runs)]
  out.write(f"{len(runs)} runs: {sum(is_done(r) for r in runs)} done already (skipped), "
            + (f"{len(skip)} still queued or running (skipped), " if skip else "")
            + f"{sum(len(p.runs) for p in todo)} to submit{_counts(todo)} ({cluster})\n")
  out.flush()
  if not todo:
    return []
  executor = make_executor(manifest.root, cluster, parameters or {})
  jobs = executor.map_array(SubmittedRun(grace_s), [p.spec() for p in todo])
  folder = str(executor.folder)
  for process, job in zip(todo, jobs):
    names = [r.name for r in process.runs]
    attempts = max(manifest.get(name).get("attempts", 0) for name in names) + 1
    manifest.update(*names, status="submitted", runner="submitit", cluster=cluster, job_id=str(job.job_id),
                    submitit_folder=folder, submitted=_now(), attempts=attempts, returncode=None, finished=None,
                    error=None)
    out.write(f"  job {job.job_id}  {process.name}\n")
  logs = "seed_<n>.log" + (" or seeds_<a>-<b>.log" if any(p.multi for p in todo) else "")
  out.write(f"submitted {len(jobs)} job(s); submitit's logs: {os.path.dirname(folder)}/<job id>/, "
            f"each process's output: {os.path.join(manifest.root, LOGS)}/<game>/<variant>/{logs}\n")
  out.flush()
  return list(zip(todo, jobs))


def wait_jobs(submitted: Sequence[tuple[Process, Any]], manifest: Manifest, out: TextIO = sys.stdout,
              progress_every_s: float = 60.0, poll_s: float = 1.0) -> int:
  """Waits for submitted jobs (one per process), reporting each; returns how many runs failed."""
  progress = _Progress(sum(len(p.runs) for p, _ in submitted), out, progress_every_s)
  failures = []
  pending = {process.name: (process, job) for process, job in submitted}
  pending_runs = lambda: sum(len(p.runs) for p, _ in pending.values())
  while pending:
    time.sleep(poll_s)
    for name, (process, job) in list(pending.items()):
      if not job.done():
        continue
      del pending[name]
      names = [r.name for r in process.runs]
      error = job.exception()
      if error is None and all(is_done(r) for r in process.runs):
        progress.done += len(names)
        manifest.update(*names, status="done", finished=_now(), returncode=0)
        progress.line(pending_runs(), f"done  {name} (job {job.job_id})")
      else:
        progress.failed += len(names)
        lines = str(error or "no summary.json").strip().splitlines()
        failures.append((process, job))
        manifest.update(*names, status="failed", finished=_now(), error=lines[-1] if lines else "")
        progress.line(pending_runs(), f"FAILED {name} (job {job.job_id}); log: {process.log}; "
                      f"submitit log: {job.paths.stderr}")
    progress.tick(pending_runs(), {n: progress.start for n in pending},
                  {n: process.runs[0].workdir for n, (process, _) in pending.items()})
  out.write(f"finished: {progress.done} done, {progress.failed} failed\n")
  for process, job in failures:
    out.write(f"  FAILED {process.name}: log {process.log}; submitit log {job.paths.stderr}\n")
  out.flush()
  return progress.failed
