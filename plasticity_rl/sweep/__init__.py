"""Sweeps: games × variants × seeds, one workdir per run, run by `plasticity_rl.main` processes.

The library behind plasticity-rl-sweep (plasticity_rl/launch_sweep.py), one module a step:
- inputs.py: game names and sets (atari57, atari26, atari5), seeds, variant names (configs/variants.py),
  overrides and the --config spec, made canonical (`resolve_games`, `resolve_variants`, `parse_override`, …).
- axes.py: variant labels derived from overrides (`derive_label`; configs/variants.label), --axis
  field=value,… (`parse_axis`), and the sweep's variants: each named one × the product of the axes (`grid`),
  equal overrides listed once under one label.
- plan.py: `expand` turns them into `Run`s: a workdir ROOT/<game>/<variant>/seed_<n>, a log
  ROOT/logs/<game>/<variant>/seed_<n>.log, and the command line that runs it. `group` makes the unfinished
  runs into `Process`es: one per run (seeds_per_process=1), or up to K consecutive seeds of one game and
  variant in one multi-seed process (config.num_seeds, multi_seed.py): --workdir=ROOT/<game>/<variant>,
  --config.seed=<a>, --config.num_seeds=<b-a+1>, which trains each seed in ROOT/<game>/<variant>/seed_<n> as
  a single run would, and logs to ROOT/logs/<game>/<variant>/seeds_<a>-<b>.log. Only seeds that would
  resume from the same frame count share a process (see `group`). `is_done`, `disk_status`: where a run is.
- workdir_state.py: what a run's workdir shows meanwhile (its newest checkpoint, frames so far, ETA).
- checks.py: `check` parses every process's config exactly as main.py will (config_flags + validate), so
  that a bad override or variant fails before anything starts (`type_axes`: each --axis value, the same way), and compares each run's config (a
  multi-seed process's: workdir.seed_config, seed n and num_seeds 1) with the config.json of a workdir
  that already exists, as main.py does (workdir.config_changes).
- manifest.py: `Manifest` is ROOT/sweep.json: the base config, the overrides, and every run (seed) with its
  status and the command line and log of the process that runs it ("process": its name, --workdir and
  seeds when that is a multi-seed one); `root_lock`, one launcher per root. A root holds one base config
  and one set of overrides; games, variants and seeds may be added by later launches, and
  seeds_per_process may differ between launches.
- status.py: each run's status, the printed plan, the status line while runs go.
- processes.py: one process started with its log, stopped, waited for, its outcome judged.
- Runners: local.py `run_local` (N concurrent processes, one GPU each when there are GPUs) and slurm.py
  `submit` (submitit: a Slurm job array, one job per process, or submitit's local executor). Both re-run
  the same command on the same workdir(s), so an unfinished run resumes and a finished one (summary.json
  present) is skipped.

Importing the package imports no training code (no jax, flax, optax or envpool): the configs are imported
when a check parses them, envpool's game list only for a game outside the 57.
"""

from plasticity_rl.sweep.axes import derive_label
from plasticity_rl.sweep.axes import grid
from plasticity_rl.sweep.axes import labeller
from plasticity_rl.sweep.axes import parse_axis
from plasticity_rl.sweep.checks import check
from plasticity_rl.sweep.checks import parse_config
from plasticity_rl.sweep.checks import type_axes
from plasticity_rl.sweep.errors import SweepError
from plasticity_rl.sweep.inputs import config_spec
from plasticity_rl.sweep.inputs import format_value
from plasticity_rl.sweep.inputs import load_variants
from plasticity_rl.sweep.inputs import parse_override
from plasticity_rl.sweep.inputs import RESERVED_FIELDS
from plasticity_rl.sweep.inputs import resolve_games
from plasticity_rl.sweep.inputs import resolve_seeds
from plasticity_rl.sweep.inputs import resolve_variants
from plasticity_rl.sweep.inputs import safe_name
from plasticity_rl.sweep.inputs import same_config
from plasticity_rl.sweep.local import detect_gpus
from plasticity_rl.sweep.local import run_local
from plasticity_rl.sweep.manifest import Manifest
from plasticity_rl.sweep.manifest import MANIFEST
from plasticity_rl.sweep.manifest import root_lock
from plasticity_rl.sweep.plan import check_seeds_per_process
from plasticity_rl.sweep.plan import disk_status
from plasticity_rl.sweep.plan import expand
from plasticity_rl.sweep.plan import group
from plasticity_rl.sweep.plan import is_done
from plasticity_rl.sweep.plan import LOGS
from plasticity_rl.sweep.plan import Process
from plasticity_rl.sweep.plan import Run
from plasticity_rl.sweep.processes import log_tail
from plasticity_rl.sweep.processes import outcome
from plasticity_rl.sweep.processes import start_process
from plasticity_rl.sweep.processes import stop_process
from plasticity_rl.sweep.processes import wait_process
from plasticity_rl.sweep.slurm import ACTIVE_JOB_STATES
from plasticity_rl.sweep.slurm import job_states
from plasticity_rl.sweep.slurm import make_executor
from plasticity_rl.sweep.slurm import RunFailed
from plasticity_rl.sweep.slurm import submit
from plasticity_rl.sweep.slurm import SubmittedRun
from plasticity_rl.sweep.slurm import wait_jobs
from plasticity_rl.sweep.status import print_plan
from plasticity_rl.sweep.status import process_counts
from plasticity_rl.sweep.status import Progress
from plasticity_rl.sweep.status import statuses
from plasticity_rl.sweep.workdir_state import last_checkpoint
from plasticity_rl.sweep.workdir_state import run_progress
from plasticity_rl.sweep.workdir_state import tail_rows

_Progress = Progress  # Its name before the package (tests/test_console.py, docs/console.md).
