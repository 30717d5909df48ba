"""Helpers for tests and benchmarks: synthetic learner batches, the configs/ files, checks of a run's logs."""

import json
import pathlib
import time

import numpy as np

from plasticity_rl import cli
from plasticity_rl import recorder as recorder_lib


def random_batch(seed: int, size: int, obs_shape: tuple[int, ...], num_actions: int) -> dict[str, np.ndarray]:
  """A replay-shaped batch of uniform uint8 observations, random actions, N(0, 1) rewards, discount 0.99."""
  rng = np.random.default_rng(seed)
  return {
      "obs": rng.integers(0, 256, (size, *obs_shape), dtype=np.uint8),
      "next_obs": rng.integers(0, 256, (size, *obs_shape), dtype=np.uint8),
      "action": rng.integers(0, num_actions, size).astype(np.int32),
      "reward": rng.normal(size=size).astype(np.float32),
      "discount": np.full(size, 0.99, np.float32),
  }


def configs_module(name: str):
  """The module plasticity_rl/configs/<name>.py, loaded by path as config_flags loads it."""
  path = pathlib.Path(__file__).resolve().parent / "configs" / f"{name}.py"
  return cli.load_file(str(path), f"plasticity_rl_configs_{name}")


def budget_updates(config) -> int:
  """Updates of an uninterrupted run, by the loop's arithmetic."""
  per_iteration = config.env.num_envs * 4
  iterations = [f for f in range(per_iteration, config.total_frames + per_iteration, per_iteration)
                if f - per_iteration < config.total_frames]
  due, updates = 0.0, 0
  for frames in iterations:
    if frames >= config.replay.learning_starts_frames:
      due += config.env.num_envs * config.learner.replay_ratio
      while due >= 1.0:
        updates, due = updates + 1, due - 1.0
  return updates


def check_run_logs(workdir, config):
  """eval.csv: every evaluation once, no gaps; metrics.jsonl: no duplicated train/eval/run rows."""
  evals = recorder_lib.read_eval(str(workdir))
  expected = list(range(config.eval.period_frames, config.total_frames + 1, config.eval.period_frames))
  frames = [int(r["frames"]) for r in evals]
  assert sorted(set(frames)) == expected and frames == sorted(frames)
  assert all(frames.count(f) == config.eval.num_episodes for f in expected)
  rows = recorder_lib.read_metrics(str(workdir))
  assert [r["frames"] for r in rows if r["kind"] == "eval"] == expected
  train = [r["frames"] for r in rows if r["kind"] == "train"]
  assert train == sorted(set(train)) and len(train) == config.total_frames // config.log.period_frames
  assert [r["kind"] for r in rows].count("run") == 1
  metrics_frames = [r["frames"] for r in rows]
  assert metrics_frames == sorted(metrics_frames)


def wait_for(predicate, proc, timeout=120.0, poll=0.005) -> bool:
  """Polls `predicate` until it holds (True), or the process ended or the timeout passed (False)."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if predicate():
      return True
    time.sleep(poll)
  return False


def logged_frames(workdir) -> int:
  """The largest frame count in workdir/metrics.jsonl so far (0 if none yet)."""
  try:
    rows = (workdir / "metrics.jsonl").read_text().splitlines()
    return max((json.loads(r)["frames"] for r in rows if r.endswith("}")), default=0)
  except (FileNotFoundError, json.JSONDecodeError):
    return 0
