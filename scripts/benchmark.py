"""Throughput and memory figures, printed as one table (a benchmark, not a test).

  python scripts/benchmark.py                                   # configs/dqn.py:cpu and its full-width variant
  python scripts/benchmark.py --config=configs/dqn.py:cpu --frames=40000 --json=bench.json
  python scripts/benchmark.py --nofull_width --profile_iterations=0 --json=-   # JSON on stdout too

Columns: the config, and (unless --nofull_width) the same config with the
full-width Nature CNN at replay ratio 0.25, batch 32 (profile_loop.full_width).
Rows: env-only frames/s (random policy, same game and num_envs), training
frames/s of the real loop (train.train, after warm-up and compilation; no
checkpoints while timed), their ratio, updates/s (in the loop and of the bare
update step), peak host RSS (process-wide, so far), device memory where the
backend reports it, replay bytes/transition, the projected hours for 200M
frames per agent, and (--profile_iterations > 0) the shares of a loop
iteration from scripts/profile_loop.py. Below the table: update steps/s after
1 and 3 injections of the config (and the ratios), and the load average, to
read the figures against (other jobs on the machine slow every figure).
"""

import json
import os
import resource
import statistics
import sys
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
from plasticity_rl import testing
from plasticity_rl import train
from plasticity_rl.agents import dqn
from plasticity_rl.envs import atari

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import profile_loop  # noqa: E402  (scripts/ is not a package)

_CONFIG = config_flags.DEFINE_config_file("config", "configs/dqn.py:cpu", "Base config.")
_FULL = flags.DEFINE_bool("full_width", True, "Also the full-width Nature CNN at replay ratio 0.25, batch 32.")
_FRAMES = flags.DEFINE_integer("frames", 40_000, "Training frames to time per column (after warm-up).")
_UPDATES = flags.DEFINE_integer("updates", 200, "Bare update steps to time (per injection count).")
_INJECTIONS = flags.DEFINE_bool("injections", True, "Time the update step after 1 and 3 injections of the config.")
_PROFILE = flags.DEFINE_integer("profile_iterations", 200, "Loop iterations per profile measurement; 0: no profile.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures to this JSON file ('-': print them as JSON).")


def env_only_fps(config, steps: int = 1_000, repeats: int = 3) -> float:
  """Median over `repeats` of random-policy frames/s (envpool's own step, no agent)."""
  envs = atari.make_envs(config.game, config.env.protocol, config.env.num_envs, config.seed)
  envs.reset()
  rng = np.random.default_rng(0)
  n = envs.action_space.n
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      envs.step(rng.integers(0, n, config.env.num_envs))
    rates.append(steps * config.env.num_envs * atari.FRAME_SKIP / (time.perf_counter() - start))
  envs.close()
  return statistics.median(rates)


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


def training_fps(config, frames: int) -> dict[str, float]:
  """Runs the real loop; steady-state fps/updates/s from its own log rows (after warm-up and compilation)."""
  config = config.copy_and_resolve_references()
  config.total_frames = config.replay.learning_starts_frames + frames
  config.log.period_frames = max(frames // 5, 4 * config.env.num_envs)
  config.eval.period_frames = config.total_frames
  config.eval.num_episodes = 1
  config.eval.max_episode_frames = 400
  config.log.tensorboard = False
  config.log.learning_curve = False
  config.checkpoint.period_frames = 0  # Only the final save, after the timed rows.
  config.injection.frames = ()
  with tempfile.TemporaryDirectory() as workdir:
    train.train(config, workdir)
    rows = [r for r in recorder.read_metrics(workdir, "train") if r["frames"] > config.replay.learning_starts_frames]
  rows = rows[1:] or rows  # The first row after warm-up includes compilation.
  # Rows span equal frames: the harmonic mean of their rates is frames / seconds over them.
  return {"train_fps": statistics.harmonic_mean([r["fps"] for r in rows]),
          "train_updates_per_s": statistics.harmonic_mean([r["updates_per_s"] for r in rows])}


def device_memory() -> str:
  stats = jax.local_devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return f"{peak / 2**30:.2f} GiB" if peak else "n/a (backend reports none)"


def bare_update_rate(config, num_actions: int, updates: int) -> float:
  agent = dqn.make_agent(config, num_actions)
  batch = testing.random_batch(0, config.learner.batch_size, agent.obs_shape, num_actions)
  return update_rate(agent, agent.init(jax.random.key(0)), batch, updates)


def column(config, num_actions: int, env_fps: float) -> dict[str, object]:
  """Every figure of one configuration (one column of the table)."""
  out: dict[str, object] = {"setup": profile_loop.describe(config), "env_only_fps": env_fps}
  out.update(training_fps(config, _FRAMES.value))
  out["train_over_env_fps"] = out["train_fps"] / env_fps
  out["bare_updates_per_s"] = bare_update_rate(config, num_actions, _UPDATES.value)
  replay = replay_lib.ReplayBuffer(config.env.num_envs * 16, config.env.num_envs)
  out["replay_bytes_per_transition"] = replay.bytes_per_transition
  out["replay_gb_per_1m_transitions"] = replay.bytes_per_transition * 1e6 / 1e9
  out["hours_per_200m_frames"] = 200e6 / out["train_fps"] / 3600
  if _PROFILE.value:
    result = profile_loop.profile(config, _PROFILE.value, rounds=3)
    out.update({f"share {phase}": share for phase, share in result["shares"].items()})
    out["overlapped_over_sync_time"] = result["overlap_ms"]["median"] / result["sync_ms"]["median"]
    out["profile"] = result
  out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  out["device_peak_memory"] = device_memory()
  return out


_ROWS = (("env_only_fps", "env-only frames/s (random policy)", ",.0f"),
         ("train_fps", "training frames/s", ",.0f"), ("train_over_env_fps", "training / env-only", ".3f"),
         ("train_updates_per_s", "updates/s in the loop", ",.1f"),
         ("bare_updates_per_s", "updates/s, bare update step", ",.1f"),
         ("replay_bytes_per_transition", "replay bytes/transition", ",.0f"),
         ("replay_gb_per_1m_transitions", "replay GB per 1M transitions", ".2f"),
         ("peak_rss_gib", "peak host RSS, GiB (process, so far)", ".2f"),
         ("device_peak_memory", "device peak memory", None),
         ("hours_per_200m_frames", "hours per 200M frames (per agent)", ",.1f"),
         *((f"share {p}", f"loop share: {p}", ".1%") for p in profile_loop.PHASES),
         ("overlapped_over_sync_time", "loop time, overlapped / synchronous", ".3f"))


_RATIO_ROWS = ("env_only_fps", "train_fps", "train_over_env_fps", "train_updates_per_s", "bare_updates_per_s",
               "replay_bytes_per_transition", "peak_rss_gib", "hours_per_200m_frames")


def table(columns: dict[str, dict[str, object]]) -> str:
  """The figures of every column, and the full-width / config ratio where there are two."""
  names = list(columns)
  cells = [["figure", *names] + (["full / config"] if len(names) == 2 else [])]
  for key, label, fmt in _ROWS:
    values = [columns[n].get(key) for n in names]
    if all(v is None for v in values):
      continue
    row = [label] + [("-" if v is None else format(v, fmt) if fmt and isinstance(v, (int, float)) else str(v))
                     for v in values]
    if len(names) == 2:
      numeric = all(isinstance(v, (int, float)) for v in values) and values[0] and key in _RATIO_ROWS
      row.append(f"{values[1] / values[0]:.3f}" if numeric else "")
    cells.append(row)
  widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
  lines = [f"{n}: {columns[n]['setup']}" for n in names]
  lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
  return "\n".join(lines)


def main(argv):
  del argv
  config = _CONFIG.value
  config_lib.validate(config)
  load_start = os.getloadavg()
  num_actions = atari.num_actions(config.game, config.env.protocol)
  env_fps = env_only_fps(config)
  configs = {"config": config, **({"full width": profile_loop.full_width(config)} if _FULL.value else {})}
  columns = {name: column(c, num_actions, env_fps) for name, c in configs.items()}
  figures: dict[str, object] = {"device": str(jax.devices()[0]), "game": config.game,
                                "num_envs": config.env.num_envs, "frames_timed": _FRAMES.value,
                                "load_average_start": load_start, "columns": columns}
  if _INJECTIONS.value:
    figures.update(injection_rates(config, num_actions, _UPDATES.value))
    figures["injection_slowdown_1"] = figures["updates_per_s_after_0_injections"] / figures[
        "updates_per_s_after_1_injections"]
    figures["injection_slowdown_3"] = figures["updates_per_s_after_0_injections"] / figures[
        "updates_per_s_after_3_injections"]
  figures["load_average_end"] = os.getloadavg()
  figures["cpu_count"] = os.cpu_count()
  print(table(columns))
  print()
  for name, value in figures.items():
    if name != "columns":
      print(f"{name}: {value:,.3f}" if isinstance(value, float) else f"{name}: {value}")
  if _JSON.value == "-":
    print(json.dumps(figures, indent=1))
  elif _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(figures, f, indent=1)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  app.run(main)
