"""The sweep's plan: its runs (`Run`: game × variant × seed, a workdir, a log, a command line), the processes
that run them (`Process`: one run, or consecutive seeds in one multi-seed process), and which runs are left.

- `expand` turns canonical games, variants and seeds (inputs.py) into runs: a workdir
  ROOT/<game>/<variant>/seed_<n>, a log ROOT/logs/<game>/<variant>/seed_<n>.log (not in the workdir: main.py
  refuses a non-empty workdir it did not make; not beside it: a glob ROOT/*/*/* of workdirs, as the analysis
  takes them, would catch it), and the `plasticity_rl.main` command line that runs it.
- `group` makes the unfinished runs into processes; `is_done` and `disk_status` say where a run stands.
"""

import dataclasses
import os
import sys
from typing import Any, Sequence

from plasticity_rl import workdir as workdir_lib
from plasticity_rl.sweep import inputs
from plasticity_rl.sweep import workdir_state
from plasticity_rl.sweep.errors import SweepError

LOGS = "logs"  # ROOT/logs/<game>/<variant>/seed_<n>.log, or seeds_<a>-<b>.log for a multi-seed process.


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


def expand(root: str, config: str, games: Sequence[str], variants: dict[str, dict[str, Any]], seeds: Sequence[int],
           overrides: Sequence[str] = ()) -> list[Run]:
  """Every (seed, game, variant), seed-major: all games and variants of seed 0 come first.

  `games` are canonical names (resolve_games), `variants` {name: overrides}
  (resolve_variants), `overrides` 'field=value' strings applied to every run.
  A field set by both an override and a variant is an error.
  """
  root = os.path.abspath(os.path.expanduser(root))
  spec = inputs.config_spec(config)
  global_args = []
  global_keys = {}
  for text in overrides:
    key, value = inputs.parse_override(text)
    global_keys[key] = text
    global_args.append(f"--config.{key}={value}")
  dirs = {}
  for variant in variants:
    d = inputs.safe_name(variant)
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
        name = f"{inputs.safe_name(game)}/{inputs.safe_name(variant)}/seed_{seed}"
        args = [f"--config={spec}", *global_args,
                *(f"--config.{k}={inputs.format_value(v)}" for k, v in variant_overrides.items()),
                f"--config.game={game}", f"--config.variant={variant}", f"--config.seed={seed}"]
        runs.append(Run(game=game, variant=variant, seed=seed, name=name, workdir=os.path.join(root, name),
                        log=os.path.join(root, LOGS, name) + ".log", config_args=tuple(args),
                        variant_overrides=tuple(variant_overrides.items()), cwd=os.getcwd()))
  return runs


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
      resume = workdir_state.last_checkpoint(run.workdir)
      if current and (len(current) == seeds_per_process or run.seed != current[-1].seed + 1
                      or resume != current_resume):
        processes.append(Process(tuple(current)))
        current = []
      current.append(run)
      current_resume = resume
    processes.append(Process(tuple(current)))
  order = {r.name: i for i, r in enumerate(todo)}
  return sorted(processes, key=lambda p: min(order[r.name] for r in p.runs))


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
