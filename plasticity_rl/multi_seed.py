"""Many seeds in one process: `config.num_seeds = N` trains N independent agents.

Seed n (config.seed … config.seed + N − 1) owns everything a single-seed run
owns (params, optimizer state, replay, RNG keys, training and evaluation envs),
made exactly as `train.train` makes them with config.seed = n, and writes a
complete single-run workdir WORKDIR/seed_<n>: config.json (seed n, num_seeds 1),
metrics.jsonl, eval.csv (with its seed column), checkpoints/, summary.json.
Every tool that reads a run reads it, a sweep's layout (<game>/<variant>/seed_<n>)
is kept, and one seed can be resumed alone or reincarnated into a new run.

The seeds run in train.py's one loop (`train.run_seeds`): one frame counter, one
intervention schedule, one log / eval / metrics / checkpoint cadence, and the
learner (learner.py's `SeedLearner`: vmapped or looped over seeds). Per-seed
decisions stay per seed: a metric trigger's injection, the adaptive replay
ratio (its updates due), expansion's review. `reincarnate.path` with `{seed}`
reincarnates seed n from ROOT/…/seed_n (without it, every seed from one agent).

Resume: the newest frame count at which every seed has a readable checkpoint;
rows past it are dropped, as in a single-seed resume.
"""

import os
from typing import Any

from absl import logging

from plasticity_rl import checkpoint as checkpoint_lib
from plasticity_rl import learner
from plasticity_rl import train
from plasticity_rl import workdir as workdir_lib


def seeds_of(config) -> list[int]:
  return [config.seed + i for i in range(config.num_seeds)]


def seed_workdir(workdir: str, seed: int) -> str:
  return os.path.join(workdir, f"seed_{seed}")


seed_config = workdir_lib.seed_config  # The single-seed config of one seed (its workdir's config.json).


# The learner's, re-exported for scripts and tests that knew them here.
SeedLearner, resolve_batching, seed_mesh = learner.SeedLearner, learner.resolve_batching, learner.seed_mesh


def train_seeds(config, workdir: str) -> list[dict[str, Any]]:
  """Runs config.total_frames for each of the config's seeds; returns their summaries (seed order).

  Each seed's workdir is made (or checked, on resume) like a single run's, and locked for the run.
  Raises train.Preempted after saving every seed's checkpoint on SIGTERM/SIGINT.
  """
  seeds, locks = [], []
  try:
    for seed in seeds_of(config):
      path = seed_workdir(workdir, seed)
      single = seed_config(config, seed)
      locks.append(workdir_lib.claim_workdir(path, single))
      checkpointer = checkpoint_lib.Checkpointer(os.path.join(path, "checkpoints"),
                                                 max_to_keep=config.checkpoint.max_to_keep,
                                                 async_save=config.checkpoint.async_save)
      seeds.append(train.SeedRun(seed=seed, workdir=path, config=single, checkpointer=checkpointer))
    summaries = [train.finished_summary(s.config, s.workdir, s.checkpointer) for s in seeds]
    if all(summary is not None for summary in summaries):
      logging.info("%s: every seed finished; nothing to do", workdir)
      return summaries
    with train.StopSignals() as stop:
      return train.run_seeds(config, seeds, stop)
  finally:
    for s in seeds:
      s.checkpointer.close()
    for lock in locks:
      lock.close()
