r"""Launches a sweep: games × variants × seeds, one workdir per run, one process per run or per K seeds.

  plasticity-rl-sweep --config=configs/dqn.py --root=runs/atari5 \
      --games=atari5 --variants=baseline,inject@50M --num_seeds=5 --parallel=4
  plasticity-rl-sweep --config=configs/dqn.py:cpu --root=runs/cpu --games=Pong,Breakout \
      --variants=baseline,inject@250k --seeds=0,1 --config.total_frames=500000 --dry_run
  plasticity-rl-sweep --config=configs/dqn.py --root=/scratch/runs/atari57 --games=atari57 \
      --variants=baseline,inject@50M --num_seeds=3 --runner=slurm --slurm_partition=gpu --timeout_min=2880
  plasticity-rl-sweep --config=configs/dqn.py --root=runs/atari5 --games=atari5 \
      --variants=baseline --num_seeds=8 --seeds_per_process=4 --parallel=2   # 2 processes of 4 seeds per game
  plasticity-rl-sweep --config=configs/dqn.py --root=runs/rr_lr --games=atari5 --num_seeds=3 \
      --variants=baseline,inject@50M --axis=learner.replay_ratio=0.25,0.5,1 --axis=lr=1e-4,6.25e-5   # 2 × 3 × 2

Each run is `python -m plasticity_rl.main --config=… --workdir=ROOT/<game>/<variant>/seed_<n>`
with config.game, config.variant and config.seed set, its output in ROOT/logs/<game>/<variant>/seed_<n>.log.
With --seeds_per_process=K > 1, up to K consecutive seeds of a game and variant train in one process
(config.num_seeds, plasticity_rl/multi_seed.py): --workdir=ROOT/<game>/<variant> --config.seed=<a>
--config.num_seeds=<b-a+1>, each seed still in ROOT/<game>/<variant>/seed_<n>, the output in
ROOT/logs/<game>/<variant>/seeds_<a>-<b>.log; --parallel and each Slurm job (and its --gpus_per_run,
--cpus_per_run, --mem_gb) count processes. Only unfinished seeds that would resume from the same
checkpoint are grouped, so K may change from one launch to the next.
ROOT/sweep.json is the manifest. Launching again skips finished runs (summary.json) and
resumes the others; --dry_run prints the runs and their status and changes nothing.
Overrides for every run: --config.x=y (as for main.py) or --override=x=y, repeatable
(not game, variant, seed or num_seeds: the sweep sets those).
Variants: configs/variants.py (baseline, inject@50M, inject@25M+75M, grow, …, and patterns inject@<F>[+<F>…],
grow@<F>[+<F>…] with frame counts like 2k or 50M for short runs).
Axes: --axis=field=v1,v2,… (repeatable; rr, lr, batch, width, hidden, n_step or any dotted config field, each
value typed and checked against the config before anything starts) cross every --variants entry with the
product of the axes. Each variant is labelled by its overrides (configs/variants.label), e.g. inject@50M+rr=0.5,
lr=1e-4+rr=0.25, so one experiment has one name: a variant typed in another form (inject@2000, or
learner.augment=random_shift for drq) gets its canonical one, equal ones are run once, and a root keeps the
name its earlier launches gave the same overrides.
"""

import os
import re
import shlex
import sys

from absl import flags

from plasticity_rl import cli
from plasticity_rl import sweep

_CONFIG = cli.flag(flags.DEFINE_string, "config", None, "Base config: a configs/*.py file with an optional :arg.")
_ROOT = cli.flag(flags.DEFINE_string, "root", None, "Sweep directory: workdirs, logs and sweep.json go here.")
_GAMES = cli.flag(flags.DEFINE_list, "games", None, "Games and/or sets: atari57, atari26, atari5 (e.g. atari5,Pong).")
_VARIANTS = cli.flag(flags.DEFINE_list, "variants", ["baseline"], "Variant names from --variants_file.")
_SEEDS = cli.flag(flags.DEFINE_list, "seeds", None, "Seeds, e.g. 0,1,2.")
_NUM_SEEDS = cli.flag(flags.DEFINE_integer, "num_seeds", None, "Seeds 0..N-1 (instead of --seeds).")
_SEEDS_PER_PROCESS = cli.flag(flags.DEFINE_integer, 
    "seeds_per_process", 1, "Train up to this many consecutive seeds of a game and variant in one process "
    "(config.num_seeds; each seed keeps its seed_<n> workdir). --parallel and Slurm jobs count processes.")
_OVERRIDE = cli.flag(flags.DEFINE_multi_string, "override", [], "field=value for every run (repeatable); "
                                      "the same as a --config.field=value argument.")
_AXIS = cli.flag(flags.DEFINE_multi_string, "axis", [], "field=v1,v2,… (repeatable): a hyperparameter axis; every "
                 "--variants entry runs with each combination of the axes' values (rr, lr, batch, width, hidden, "
                 "n_step or a dotted field, e.g. learner.replay_ratio=0.25,0.5,1).")
_VARIANTS_FILE = cli.flag(flags.DEFINE_string, "variants_file", os.path.join(cli.CONFIGS_DIR, "variants.py"),
                                     "Python file defining the variants (get_variant, allowed).")
_DRY_RUN = cli.flag(flags.DEFINE_bool, "dry_run", False, "Print the runs and their status; launch and write nothing.")
_RUNNER = cli.flag(flags.DEFINE_enum, "runner", "local", ["local", "slurm"], "local: subprocesses here; slurm: submitit.")
# local runner
_PARALLEL = cli.flag(flags.DEFINE_integer, "parallel", None, "local: concurrent processes (default: one per GPU, else 1).")
_GPUS = cli.flag(flags.DEFINE_list, "gpus", None, "local: GPU ids to pin processes to, round-robin (default: "
                          "CUDA_VISIBLE_DEVICES, else nvidia-smi -L; --gpus= for CPU only).")
_PROGRESS_S = cli.flag(flags.DEFINE_float, "progress_s", 60.0, "Print a status line at least this often (seconds) "
                                  "while runs are going.")
# slurm runner (submitit)
_CLUSTER = cli.flag(flags.DEFINE_enum, "submitit_cluster", "slurm", ["slurm", "local", "debug"],
                             "slurm: sbatch job array; local/debug: submitit's executors on this machine (tests).")
_TIMEOUT_MIN = cli.flag(flags.DEFINE_integer, "timeout_min", 24 * 60, "slurm: time limit per job (one process; minutes); "
                                    "a job that reaches it is requeued and resumes.")
_PARTITION = cli.flag(flags.DEFINE_string, "slurm_partition", None, "slurm: partition.")
_ACCOUNT = cli.flag(flags.DEFINE_string, "slurm_account", None, "slurm: account.")
_QOS = cli.flag(flags.DEFINE_string, "slurm_qos", None, "slurm: QOS.")
_CONSTRAINT = cli.flag(flags.DEFINE_string, "slurm_constraint", None, "slurm: node constraint, e.g. a100.")
_ARRAY_PARALLELISM = cli.flag(flags.DEFINE_integer, "slurm_array_parallelism", 256, "slurm: max jobs of the array at once.")
_GPUS_PER_RUN = cli.flag(flags.DEFINE_integer, "gpus_per_run", 1, "slurm: GPUs per job (one process: one run, or "
                                     "--seeds_per_process seeds, sharded over its GPUs).")
_CPUS_PER_RUN = cli.flag(flags.DEFINE_integer, "cpus_per_run", 8, "slurm: CPUs per job (one process; envpool uses them).")
_MEM_GB = cli.flag(flags.DEFINE_integer, "mem_gb", 64, "slurm: memory per job (one process; GB); 1M replay frames ≈ 7 GB "
                               "per seed, so scale it with --seeds_per_process.")
_SETUP = cli.flag(flags.DEFINE_multi_string, "slurm_setup", [], "slurm: shell lines run before each job (module load …).")
_EXTRA = cli.flag(flags.DEFINE_multi_string, "slurm_extra", [], "slurm: extra sbatch parameters as key=value (repeatable).")
_WAIT = cli.flag(flags.DEFINE_bool, "wait", False, "slurm: wait for the jobs and report them "
                          "(always on with --submitit_cluster=local).")
_SIGNAL_DELAY_S = cli.flag(flags.DEFINE_integer, "slurm_signal_delay_s", 180, "slurm: the job is warned (SIGUSR2) this long "
                                       "before its time limit, to checkpoint and requeue.")
_GRACE_S = cli.flag(flags.DEFINE_float, "grace_s", 150.0, "slurm: when warned, seconds the run gets to save a checkpoint and "
                              "stop (after SIGTERM) before SIGKILL; keep it below --slurm_signal_delay_s.")
cli.mark_required(["config", "root", "games"])

_CONFIG_ARGS: list[str] = []  # --config.x=y arguments, taken out before absl parses the rest.


def parse_flags(argv):
  """cli.parse_flags, with --config.field=value arguments set aside as overrides."""
  rest = []
  for arg in argv:
    if re.match(r"^--?config\.", arg):
      if "=" not in arg:
        cli.fail(f"{arg}: write overrides as --config.field=value")
      _CONFIG_ARGS.append(arg)
    else:
      rest.append(arg)
  return cli.parse_flags(rest, __name__)


def _key_values(items) -> dict[str, str]:
  out = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
      raise sweep.SweepError(f"--slurm_extra {item!r}: expected key=value, e.g. exclusive=true or gres=gpu:a100:1")
    out[key.strip()] = value
  return out


def main(argv):
  cli.no_arguments(argv)
  try:
    return launch(argv)
  except sweep.SweepError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


def launch(argv) -> int:
  sweep.check_seeds_per_process(_SEEDS_PER_PROCESS.value)
  overrides = ["{}={}".format(*sweep.parse_override(o)) for o in list(_OVERRIDE.value) + _CONFIG_ARGS]
  games = sweep.resolve_games(_GAMES.value)
  variants_module = sweep.load_variants(_VARIANTS_FILE.value)
  named = sweep.resolve_variants(_VARIANTS.value, variants_module)
  seeds = sweep.resolve_seeds(_SEEDS.value, _NUM_SEEDS.value)
  root = os.path.abspath(os.path.expanduser(_ROOT.value))
  config = sweep.config_spec(_CONFIG.value)
  manifest = sweep.Manifest.open(root, config, overrides)
  axes = [sweep.parse_axis(a) for a in _AXIS.value]
  if axes:  # Typed and checked against the config (imports it): before any run is planned.
    axes = sweep.type_axes([f"--config={config}", *(f"--config.{o}" for o in overrides)], axes)
  variants, notes = sweep.grid(named, axes, sweep.labeller(variants_module, named), keep=manifest.variants())
  runs = sweep.expand(root, _CONFIG.value, games, variants, seeds, overrides)
  active = sweep.job_states(manifest, runs)
  # The processes to start: the unfinished runs (on Slurm, but those a job still runs), by --seeds_per_process.
  pool = runs if _RUNNER.value == "local" else [r for r in runs if r.name not in active]
  processes = sweep.group(pool, _SEEDS_PER_PROCESS.value)
  conflicts = sweep.check(runs, processes)
  status = sweep.statuses(runs, manifest, conflicts, active)
  per_process = f", up to {_SEEDS_PER_PROCESS.value} seeds per process" if _SEEDS_PER_PROCESS.value > 1 else ""
  print(f"sweep {root}: {len(games)} game(s) × {len(variants)} variant(s) × {len(seeds)} seed(s){per_process}\n"
        f"config {config}" + (f", overrides {overrides}" if overrides else ""))
  if axes:
    print(f"variants: {', '.join(named)} × " + " × ".join(
        f"{field} ({', '.join(sweep.axes.format_value(v) for v in values)})" for field, values in axes))
  for note in notes:
    print(f"note: {note}")
  if _DRY_RUN.value:
    sweep.print_plan(runs, status, conflicts, sys.stdout, processes)
    todo = [p for p in processes if any(status[r.name] not in ("done", "conflict") and
                                        not status[r.name].startswith("slurm:") for r in p.runs)]
    if todo:
      print(f"command of {todo[0].name}:\n  {shlex.join(todo[0].command)}")
    print("dry run: nothing launched, nothing written")
    return 2 if conflicts else 0
  if conflicts:
    sweep.print_plan(runs, status, conflicts, sys.stderr, processes)
    raise sweep.SweepError(f"{len(conflicts)} workdir(s) hold another config (listed above): main.py would refuse "
                           "them. Use another --root, or move those workdirs away")
  full_argv = [sys.executable, *sys.argv]
  with sweep.root_lock(root):
    manifest.add_launch(full_argv, _RUNNER.value, runs, processes)
    manifest.save()
    if _RUNNER.value == "local":
      gpus = [g for g in _GPUS.value if g] if _GPUS.value is not None else sweep.detect_gpus()
      parallel = _PARALLEL.value or max(1, len(gpus))
      try:
        failed = sweep.run_local(runs, manifest, parallel=parallel, gpus=gpus, progress_every_s=_PROGRESS_S.value,
                                 processes=processes)
      except KeyboardInterrupt:
        return 130
    else:
      parameters = {
          "name": "plasticity_rl:" + os.path.basename(root), "timeout_min": _TIMEOUT_MIN.value,
          "gpus_per_node": _GPUS_PER_RUN.value, "cpus_per_task": _CPUS_PER_RUN.value, "mem_gb": _MEM_GB.value,
          "tasks_per_node": 1, "nodes": 1, "slurm_partition": _PARTITION.value, "slurm_account": _ACCOUNT.value,
          "slurm_qos": _QOS.value, "slurm_constraint": _CONSTRAINT.value,
          "slurm_array_parallelism": _ARRAY_PARALLELISM.value, "slurm_signal_delay_s": _SIGNAL_DELAY_S.value,
          "slurm_setup": list(_SETUP.value) or None, "slurm_additional_parameters": _key_values(_EXTRA.value) or None,
      }
      if _CLUSTER.value == "slurm" and _GRACE_S.value >= _SIGNAL_DELAY_S.value:
        raise sweep.SweepError(f"--grace_s ({_GRACE_S.value}) must be below --slurm_signal_delay_s "
                               f"({_SIGNAL_DELAY_S.value}): the run must stop before Slurm kills the job")
      if _CLUSTER.value != "slurm":
        parameters = {k: v for k, v in parameters.items() if not k.startswith("slurm_")}
      submitted = sweep.submit(runs, manifest, cluster=_CLUSTER.value, parameters=parameters, grace_s=_GRACE_S.value,
                               skip=active, processes=processes)
      # submitit's local executor runs the jobs as children of this process: wait for them.
      wait = _WAIT.value or _CLUSTER.value != "slurm"
      failed = sweep.wait_jobs(submitted, manifest, progress_every_s=_PROGRESS_S.value) if wait else 0
  return 1 if failed else 0


def run():
  cli.run(main, __name__, parse=parse_flags)


if __name__ == "__main__":
  run()
