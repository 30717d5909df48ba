"""Throughput and memory figures, printed as two tables (a benchmark, not a test).

  python scripts/benchmark.py                                   # configs/dqn.py:cpu and its full-width variant
  python scripts/benchmark.py --config=configs/dqn.py:cpu --frames=40000 --json=bench.json
  python scripts/benchmark.py --nofull_width --profile_iterations=0 --json=-   # JSON on stdout too
  python scripts/benchmark.py --seeds=1,4 --seed_batching=loop,vmap          # both ways of batching seeds
  python scripts/benchmark.py --seeds=                                       # no multi-seed rows
  python scripts/benchmark.py --nofull_width --noinjections --profile_iterations=0 --seeds=1,4,8,16 \
      --backends=host,device --seed_full_width                      # issue 17's table: both loop paths

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

The second table, "multi-seed", has one row per loop path of --backends
(config.loop.backend: the host path, and the device path of device_loop.py —
acting, env steps, replay adds and updates in one jitted scan per chunk), seed
count N of --seeds and (host path) way of batching them, --seed_batching: config.num_seeds = N trained by
multi_seed.train_seeds, on --config at replay ratio 0.25, batch 32 (or the
full-width column's network with --seed_full_width), each row in a fresh
process (so that its peak RSS is its own). The replay of every seed is capped
at --seed_replay_capacity transitions and learning starts scaled down with it
(both printed above the table); N = 1 runs through the same loop, so the ratios
isolate the seed count. Columns: aggregate frames/s (N × a seed's frames/s,
timed as training_fps times train.train, over --seed_frames frames per seed
after warm-up, on the first seed's log rows), its ratio to
the N = 1 row of the same batching, updates/s per seed and in all, the row's
peak host RSS, host memory projected with every seed's replay full (the short
run writes only part of it, and untouched replay pages take no memory) at the
capped capacity and at the config's, device memory where the backend reports
it, and the hours for 200M frames per agent at that rate, all N agents at once.
--json writes them under "multi_seed" (with each row's timed log-row rates).
"""

import concurrent.futures
import json
import math
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time

from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from plasticity_rl import checkpoint
from plasticity_rl import cli
from plasticity_rl import config as config_lib
from plasticity_rl import multi_seed
from plasticity_rl import recorder
from plasticity_rl import replay as replay_lib
from plasticity_rl import surgery
from plasticity_rl import testing
from plasticity_rl import train
from plasticity_rl.agents import dqn
from plasticity_rl.envs import atari

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import profile_loop  # noqa: E402  (scripts/ is not a package)

_CONFIG = config_flags.DEFINE_config_file("config", os.path.join(cli.CONFIGS_DIR, "dqn.py:cpu"), "Base config.")
_FULL = flags.DEFINE_bool("full_width", True, "Also the full-width Nature CNN at replay ratio 0.25, batch 32.")
_FRAMES = flags.DEFINE_integer("frames", 40_000, "Training frames to time per column (after warm-up).")
_UPDATES = flags.DEFINE_integer("updates", 200, "Bare update steps to time (per injection count).")
_INJECTIONS = flags.DEFINE_bool("injections", True, "Time the update step after 1 and 3 injections of the config.")
_PROFILE = flags.DEFINE_integer("profile_iterations", 200, "Loop iterations per profile measurement; 0: no profile.")
_SEEDS = flags.DEFINE_list("seeds", ["1", "4", "8", "16"], "Seed counts of the multi-seed rows; empty: none.")
_SEED_BATCHING = flags.DEFINE_list("seed_batching", ["auto"], "config.seed_batching of the multi-seed rows "
                                   "(auto, vmap, loop; a list times each).")
_BACKENDS = flags.DEFINE_list("backends", ["host", "device"], "config.loop.backend of the multi-seed rows (host, "
                               "device; a list times each, side by side: device_loop.py). The device rows run "
                               "their seeds one after another (seed_batching 'loop').")
_SEED_FRAMES = flags.DEFINE_integer("seed_frames", 4_000, "Training frames per seed to time per multi-seed row "
                                    "(after warm-up).")
_SEED_CAPACITY = flags.DEFINE_integer("seed_replay_capacity", 20_000, "Replay transitions per seed in the multi-seed "
                                      "rows (at most the config's; 0: the config's); learning starts scale with it.")
_SEED_FULL = flags.DEFINE_bool("seed_full_width", False, "Multi-seed rows with the full-width network "
                               "(profile_loop.full_width) instead of --config's.")
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
  batch = testing.random_batch(0, config.learner.batch_size, agent.obs_shape, num_actions)
  layers = surgery.resolve_target(agent.network, config.injection.target)
  rates = {}
  for k in range(4):
    if k in (0, 1, 3):
      rates[f"updates_per_s_after_{k}_injections"] = update_rate(agent, state, batch, updates)
    state = surgery.inject(state, jax.random.key(k + 1), network=agent.network, optimizer=agent.optimizer,
                           obs_shape=agent.obs_shape, layers=layers)
  return rates


def timed_config(config, frames: int):
  """A copy of `config` that trains `frames` frames after warm-up, logging 5 rows, evaluating and saving once."""
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
  return config


def steady_rates(workdir: str, learning_starts_frames: int) -> dict[str, object]:
  """{"fps", "updates_per_s", "row_fps"} over a run's train log rows after warm-up, the first (compilation) dropped."""
  rows = [r for r in recorder.read_metrics(workdir, "train") if r["frames"] > learning_starts_frames]
  rows = rows[1:] or rows  # The first row after warm-up includes compilation.
  # Rows span equal frames: the harmonic mean of their rates is frames / seconds over them.
  return {"fps": statistics.harmonic_mean([r["fps"] for r in rows]),
          "updates_per_s": statistics.harmonic_mean([r["updates_per_s"] for r in rows]),
          "row_fps": [r["fps"] for r in rows]}


def training_fps(config, frames: int) -> dict[str, float]:
  """Runs the real loop; steady-state fps/updates/s from its own log rows (after warm-up and compilation)."""
  config = timed_config(config, frames)
  with tempfile.TemporaryDirectory() as workdir:
    train.train(config, workdir)
    rates = steady_rates(workdir, config.replay.learning_starts_frames)
  return {"train_fps": rates["fps"], "train_updates_per_s": rates["updates_per_s"]}


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


def seed_rows_config(config, capacity: int, full: bool):
  """The multi-seed rows' config: `config` (or its full-width variant) at replay ratio 0.25, batch 32, the replay
  capped at `capacity` transitions per seed (0: the config's) and learning starts scaled down with it."""
  out = profile_loop.full_width(config) if full else config.copy_and_resolve_references()
  out.learner.replay_ratio = 0.25
  out.learner.batch_size = 32
  if 0 < capacity < config.replay.capacity:
    step = out.env.num_envs * atari.FRAME_SKIP  # Frames per loop iteration.
    starts = config.replay.learning_starts_frames * capacity / config.replay.capacity
    minimum = 4 * out.env.num_envs * (out.replay.n_step + 4)  # config.validate's.
    out.replay.capacity = capacity
    out.replay.learning_starts_frames = max(step * math.ceil(starts / step), minimum)
  return out


def multi_seed_fps(config, num_seeds: int, batching: str, frames: int, backend: str = "host") -> dict[str, object]:
  """Trains `num_seeds` seeds together (multi_seed.train_seeds) for `frames` frames each after warm-up, on the
  loop `backend` (config.loop.backend: "host" or "device").

  Frames/s and updates/s are a seed's (from the first seed's log rows, as training_fps reads them; every seed
  steps in the same loop iterations); the aggregate figures are num_seeds × those. The peak RSS is this
  process's so far (own_peak_rss_gib): run each call in a fresh process for a figure of its own (`isolated`).
  """
  config = timed_config(config, frames)
  config.num_seeds, config.seed_batching, config.loop.backend = num_seeds, batching, backend
  if backend == "device":
    config.loop.chunk_steps = max(1, config.log.period_frames // (config.env.num_envs * atari.FRAME_SKIP))
  config_lib.validate(config)
  checkpoint.quiet_orbax_logs()  # Dozens of INFO lines per seed's save.
  with tempfile.TemporaryDirectory() as workdir:
    multi_seed.train_seeds(config, workdir)
    rates = steady_rates(multi_seed.seed_workdir(workdir, config.seed), config.replay.learning_starts_frames)
  fps, updates_per_s = rates["fps"], rates["updates_per_s"]
  return {"num_seeds": num_seeds, "batching": multi_seed.resolve_batching(batching), "backend": backend,
          "per_seed_fps": fps,
          "aggregate_fps": num_seeds * fps, "updates_per_s_per_seed": updates_per_s,
          "aggregate_updates_per_s": num_seeds * updates_per_s,
          "peak_rss_gib": own_peak_rss_gib(), "device_peak_memory": device_memory(),
          "hours_per_200m_frames": 200e6 / fps / 3600, "timed_rows_fps_per_seed": rates["row_fps"]}


def own_peak_rss_gib() -> float:
  """This process's peak RSS since it started or exec'd (Linux VmHWM).

  Not ru_maxrss where /proc has VmHWM: on Linux a spawned child's ru_maxrss starts at its parent's RSS at the fork.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 2**20  # kB.
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def isolated(fn, *args):
  """fn(*args) in a fresh (spawned) Python process; its result."""
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
    return pool.submit(fn, *args).result()


def seed_rows(config, seeds: list[int], batchings: list[str], frames: int, capacity: int, full: bool,
              backends: tuple[str, ...] = ("host",)):
  """The multi-seed figures: {"setup", "replay_capacity_per_seed", …, "rows": [one dict per (path, batching, N)]}:
  the host path's rows per batching, then the device path's (its seeds one after another)."""
  rows_config = seed_rows_config(config, capacity, full)
  bytes_per_transition = replay_lib.ReplayBuffer(config.env.num_envs * 16, config.env.num_envs).bytes_per_transition
  # The replay's actual capacity (a whole number of transitions per env) and what the timed run writes of it.
  capacity = replay_lib.ReplayBuffer(rows_config.replay.capacity, rows_config.env.num_envs).capacity
  written = min(capacity, (rows_config.replay.learning_starts_frames + frames) // atari.FRAME_SKIP)
  rows = []
  resolved = {}  # Resolved batching -> the flag value that asked for it ("auto" resolves to one of the others).
  for b in batchings:
    resolved.setdefault(multi_seed.resolve_batching(b), b)
  runs = [("host", batching, asked) for batching, asked in resolved.items()] if "host" in backends else []
  runs += [("device", "loop", "loop")] if "device" in backends else []
  for backend, batching, asked in runs:
    for n in seeds:
      row = isolated(multi_seed_fps, rows_config, n, batching, frames, backend)
      row["batching"] = batching if asked == batching else f"{batching} ({asked})"
      for key, full_capacity in (("host_gib_full_replays", capacity), ("host_gib_config_replays",
                                                                       config.replay.capacity)):
        row[key] = row["peak_rss_gib"] + n * max(full_capacity - written, 0) * bytes_per_transition / 2**30
      rows.append(row)
      print(f"multi-seed: {n} seeds ({backend} path, {row['batching']}): {row['aggregate_fps']:,.0f} frames/s in all",
            flush=True)
  for row in rows:
    single = next((r for r in rows if r["num_seeds"] == 1 and r["batching"] == row["batching"]
                   and r["backend"] == row["backend"]), None)
    row["ratio_to_1_seed"] = row["aggregate_fps"] / single["aggregate_fps"] if single else None
  return {"setup": profile_loop.describe(rows_config), "replay_capacity_per_seed": capacity,
          "config_replay_capacity": config.replay.capacity,
          "replay_gb_per_seed": capacity * bytes_per_transition / 1e9,
          "learning_starts_frames": rows_config.replay.learning_starts_frames, "frames_timed_per_seed": frames,
          "replay_transitions_written_per_seed": written, "rows": rows}


_SEED_COLUMNS = (("backend", "path", None), ("num_seeds", "N", "d"), ("batching", "batching", None),
                 ("aggregate_fps", "frames/s, all seeds", ",.0f"), ("ratio_to_1_seed", "/ N=1", ".2f"),
                 ("per_seed_fps", "frames/s per seed", ",.0f"),
                 ("updates_per_s_per_seed", "updates/s per seed", ",.1f"),
                 ("aggregate_updates_per_s", "updates/s, all seeds", ",.1f"),
                 ("peak_rss_gib", "peak RSS GiB", ".2f"),
                 ("host_gib_full_replays", "GiB, replays full", ".2f"),
                 ("host_gib_config_replays", "GiB, config's replays full", ".2f"),
                 ("device_peak_memory", "device memory", None),
                 ("hours_per_200m_frames", "hours/200M frames per agent", ",.1f"))


def _aligned(cells: list[list[str]], left_first: bool = False) -> list[str]:
  """Rows of cells as lines of columns two spaces apart, right-aligned (the first left-aligned with left_first)."""
  widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
  return ["  ".join(c.ljust(w) if i == 0 and left_first else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
          for r in cells]


def seed_table(figures: dict[str, object]) -> str:
  """The multi-seed rows, under a line naming their setup."""
  cells = [[label for _, label, _ in _SEED_COLUMNS]]
  for row in figures["rows"]:
    cells.append([("-" if row.get(key) is None else format(row[key], fmt) if fmt else str(row[key]))
                  for key, _, fmt in _SEED_COLUMNS])
  lines = [f"multi-seed: {figures['setup']}; replay {figures['replay_capacity_per_seed']:,} transitions "
           f"({figures['replay_gb_per_seed']:.2f} GB) per seed (config: {figures['config_replay_capacity']:,}), "
           f"learning starts {figures['learning_starts_frames']:,} frames, "
           f"{figures['frames_timed_per_seed']:,} frames per seed timed; a fresh process per row",
           "  peak RSS: of the row's process, with {:,} transitions written per seed; the GiB columns add the "
           "rest of every seed's replay, full".format(figures["replay_transitions_written_per_seed"])]
  return "\n".join(lines + _aligned(cells))


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
  return "\n".join([f"{n}: {columns[n]['setup']}" for n in names] + _aligned(cells, left_first=True))


def main(argv):
  cli.no_arguments(argv)
  config = _CONFIG.value
  config_lib.validate(config)
  try:
    seeds = [int(n) for n in _SEEDS.value]
  except ValueError:
    cli.fail(f"--seeds: a comma list of seed counts, got {','.join(_SEEDS.value)!r}")
  if any(n < 1 for n in seeds):
    cli.fail(f"--seeds: every seed count must be ≥ 1, got {seeds}")
  for backend in _BACKENDS.value:
    if backend not in ("host", "device"):
      cli.fail(f"--backends: unknown {backend!r}; allowed: host, device")
  for batching in _SEED_BATCHING.value:
    if batching not in config_lib.SEED_BATCHING:
      cli.fail(f"--seed_batching: unknown {batching!r}; allowed: {list(config_lib.SEED_BATCHING)}")
  checkpoint.quiet_orbax_logs()
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
  if seeds:
    figures["multi_seed"] = seed_rows(config, seeds, _SEED_BATCHING.value, _SEED_FRAMES.value, _SEED_CAPACITY.value,
                                      _SEED_FULL.value, tuple(_BACKENDS.value))
  figures["load_average_end"] = os.getloadavg()
  figures["cpu_count"] = os.cpu_count()
  print(table(columns))
  print()
  if seeds:
    print(seed_table(figures["multi_seed"]))
    print()
  for name, value in figures.items():
    if name not in ("columns", "multi_seed"):
      print(f"{name}: {value:,.3f}" if isinstance(value, float) else f"{name}: {value}")
  if _JSON.value == "-":
    print(json.dumps(figures, indent=1))
  elif _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(figures, f, indent=1)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  cli.run(main, __name__)
