"""Helpers for tests and benchmarks: synthetic learner batches, the configs/ files."""

import importlib.util
import pathlib

import numpy as np


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
  """The module configs/<name>.py of this checkout (configs/ is not a package)."""
  path = pathlib.Path(__file__).resolve().parents[1] / "configs" / f"{name}.py"
  spec = importlib.util.spec_from_file_location(f"plasticity_rl_configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
