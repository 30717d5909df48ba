"""Throughput and memory figures, printed as a table (a benchmark, not a test).

  python scripts/benchmark.py                       # paper-scale network, Pong, 8 envs
  python scripts/benchmark.py --config=configs/dqn.py:cpu --frames=40000

Prints: env-only frames/s (random policy, same num_envs), training frames/s at
the config's replay ratio, updates/s (in the loop and of the bare update step),
update steps/s after 1 and 3 injections (and the ratio), peak host RSS, device
memory where the backend reports it, replay bytes/transition, and the projected
hours for 200M frames.
"""

import json
import os
import resource
import tempfile
import time

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from plasticity_rl import config as config_lib
from plasticity_rl import recorder
from plasticity_rl import replay as replay_lib
from plasticity_rl import surgery
from plasticity_rl import train
from plasticity_rl.agents import dqn
from plasticity_rl.envs import atari

_CONFIG = config_flags.DEFINE_config_file("config", "configs/dqn.py", "Base config.")
_FRAMES = flags.DEFINE_integer("frames", 100_000, "Training frames to time (after warm-up).")
_UPDATES = flags.DEFINE_integer("updates", 200, "Bare update steps to time per injection count.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")


def env_only_fps(config, steps: int = 2_000) -> float:
  envs = atari.make_envs(config.game, config.env.protocol, config.env.num_envs, config.seed)
  envs.reset()
  rng = np.random.default_rng(0)
  n = envs.action_space.n
  start = time.perf_counter()
  for _ in range(steps):
    envs.step(rng.integers(0, n, config.env.num_envs))
  return steps * config.env.num_envs * atari.FRAME_SKIP / (time.perf_counter() - start)


def update_rate(agent: dqn.DQNAgent, state: dqn.TrainState, batch, updates: int) -> float:
  state, _ = agent.update(state, batch)  # Compile.
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(updates):
    state, _ = agent.update(state, batch)
  jax.block_until_ready(state)
  return updates / (time.perf_counter() - start)


def injection_rates(config, num_actions: int, updates: int) -> dict[str, float]:
  agent = dqn.make_agent(config, num_actions)
  state = agent.init(jax.random.key(0))
  b = config.learner.batch_size
  rng = np.random.default_rng(0)
  batch = {"obs": rng.integers(0, 256, (b, 84, 84, 4), dtype=np.uint8),
           "next_obs": rng.integers(0, 256, (b, 84, 84, 4), dtype=np.uint8),
           "action": rng.integers(0, num_actions, b).astype(np.int32),
           "reward": rng.normal(size=b).astype(np.float32), "discount": np.full(b, 0.99, np.float32)}
  layers = surgery.resolve_target(agent.network, config.injection.target)
  rates = {}
  for k in range(4):
    if k in (0, 1, 3):
      rates[f"updates_per_s_after_{k}_injections"] = update_rate(agent, state, batch, updates)
    state = surgery.inject(state, jax.random.key(k + 1), network=agent.network, optimizer=agent.optimizer,
                           obs_shape=agent.obs_shape, layers=layers)
  return rates


def training_fps(config) -> dict[str, float]:
  """Runs the real loop; steady-state fps/updates/s from its own log rows (after warm-up)."""
  config.total_frames = config.replay.learning_starts_frames + _FRAMES.value
  config.log.period_frames = max(_FRAMES.value // 5, 4 * config.env.num_envs)
  config.eval.period_frames = config.total_frames
  config.eval.num_episodes = 1
  config.eval.max_episode_frames = 400
  config.log.tensorboard = False
  config.log.learning_curve = False
  config.injection.frames = ()
  with tempfile.TemporaryDirectory() as workdir:
    train.train(config, workdir)
    rows = [r for r in recorder.read_metrics(workdir, "train") if r["frames"] > config.replay.learning_starts_frames]
  rows = rows[1:] or rows  # The first row after warm-up includes compilation.
  return {"train_fps": float(np.mean([r["fps"] for r in rows])),
          "train_updates_per_s": float(np.mean([r["updates_per_s"] for r in rows]))}


def device_memory() -> str:
  stats = jax.local_devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return f"{peak / 2**30:.2f} GiB" if peak else "n/a (backend reports none)"


def main(argv):
  del argv
  config = _CONFIG.value
  config_lib.validate(config)
  num_actions = atari.num_actions(config.game, config.env.protocol)
  figures: dict[str, object] = {"device": str(jax.devices()[0]), "game": config.game,
                                "num_envs": config.env.num_envs, "replay_ratio": config.learner.replay_ratio,
                                "batch_size": config.learner.batch_size, "network_width": config.network.width}
  figures["env_only_fps"] = env_only_fps(config)
  figures.update(injection_rates(config, num_actions, _UPDATES.value))
  figures["injection_slowdown_1"] = figures["updates_per_s_after_0_injections"] / figures[
      "updates_per_s_after_1_injections"]
  figures["injection_slowdown_3"] = figures["updates_per_s_after_0_injections"] / figures[
      "updates_per_s_after_3_injections"]
  figures.update(training_fps(config))
  figures["train_over_env_fps"] = figures["train_fps"] / figures["env_only_fps"]
  figures["replay_bytes_per_transition"] = replay_lib.ReplayBuffer(
      config.env.num_envs * 16, config.env.num_envs).bytes_per_transition
  figures["replay_gb_per_1m_transitions"] = figures["replay_bytes_per_transition"] * 1e6 / 1e9
  figures["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  figures["device_peak_memory"] = device_memory()
  figures["hours_per_200m_frames"] = 200e6 / figures["train_fps"] / 3600
  width = max(map(len, figures))
  for name, value in figures.items():
    print(f"{name:<{width}}  {value:,.3f}" if isinstance(value, float) else f"{name:<{width}}  {value}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(figures, f, indent=1)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  app.run(main)
