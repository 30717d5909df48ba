"""Where a training-loop iteration's time goes (a profile, not a test).

  python scripts/profile_loop.py                                # configs/dqn.py:cpu and its full-width variant
  python scripts/profile_loop.py --config=configs/dqn.py:cpu --config.network.width=1.0 --nofull_width

Runs the loop's inner stepping (train.py) on real envpool envs of the config's
game, on a replay filled first with random-policy steps:

1. Instrumented, in the synchronous order, every phase waited for
   (`block_until_ready`), so that device work is charged to the phase that
   launched it: env step, act (obs host→device, forward, actions
   device→host), replay.add, replay.sample, batch host→device, update, and the
   rest (frame stacking, ε, reward clipping, bookkeeping).
2. Un-instrumented, alternating rounds of the synchronous order (act → add →
   step → updates) and the loop's order (act → add → send → updates → recv,
   the updates dispatched async), so that load on a shared machine hits both
   alike; min and median over rounds of ms/iteration.

`full_width(config)` is the Nature-CNN configuration that scripts/benchmark.py
also reports: width 1.0, replay ratio 0.25, batch 32.
"""

import statistics
import time

import jax
import numpy as np

from plasticity_rl import replay as replay_lib
from plasticity_rl import train
from plasticity_rl.agents import dqn
from plasticity_rl.envs import atari

PHASES = ("env step", "act", "replay.add", "replay.sample", "batch host→device", "update", "rest")


def full_width(config):
  """A copy of `config` with the full-width Nature CNN at replay ratio 0.25, batch 32."""
  config = config.copy_and_resolve_references()
  config.network.width = 1.0
  config.learner.replay_ratio = 0.25
  config.learner.batch_size = 32
  return config


def describe(config) -> str:
  return (f"{config.game}, {config.env.num_envs} envs, width {config.network.width:g}, "
          f"replay ratio {config.learner.replay_ratio:g}, batch {config.learner.batch_size}")


class _Loop:
  """The loop's state (envs, agent, replay, stacker) and its inner stepping in two orders."""

  def __init__(self, config, fill_frames: int):
    self.config = config
    num_envs = config.env.num_envs
    self.envs = atari.make_envs(config.game, config.env.protocol, num_envs, config.seed,
                                config.env.max_episode_frames)
    self.agent = dqn.make_agent(config, self.envs.action_space.n)
    self.state = self.agent.init(jax.random.key(config.seed))
    self.rng = jax.random.key(config.seed + 1)
    self.replay = replay_lib.ReplayBuffer(config.replay.capacity, num_envs, n_step=config.replay.n_step,
                                          gamma=config.learner.gamma, seed=config.seed)
    self.stepper = atari.AtariStepper(self.envs, config.env.protocol)
    self.stacker = atari.FrameStacker(num_envs)
    self.step = self.stepper.reset()
    self.updates_due, self.info_sum = 0.0, None
    self.epsilon = 0.1
    for _ in range(max(fill_frames // (atari.FRAME_SKIP * num_envs), config.replay.n_step + 4)):
      self._act_and_add(epsilon=1.0)
      self.step = self.stepper.step(self._actions)
    batch = self.replay.sample(config.learner.batch_size)
    for inputs in (batch, jax.device_put(batch)):  # Compile for numpy and for device inputs.
      self.state, _ = jax.block_until_ready(self.agent.update(self.state, inputs))

  def _act_and_add(self, epsilon: float) -> None:
    obs = self.stacker.push(self.step.frame, self.step.first)
    actions, self.rng = self.agent.act(self.state.params, obs, self.rng, epsilon)
    self._actions = np.asarray(actions)
    clip = self.config.learner.reward_clip
    reward = self.step.reward if clip == 0 else np.clip(self.step.reward, -clip, clip)
    self.replay.add(self.step.frame, self._actions, reward, self.step.terminal, self.step.last, self.step.first)

  def _num_updates(self) -> int:
    self.updates_due += self.config.env.num_envs * self.config.learner.replay_ratio
    n = int(self.updates_due)
    self.updates_due -= n
    return n

  def _update(self) -> None:
    self.state, info = self.agent.update(self.state, self.replay.sample(self.config.learner.batch_size))
    self.info_sum = info if self.info_sum is None else train.accumulate(self.info_sum, info)  # As the loop does.

  def run(self, iterations: int, overlap: bool) -> float:
    """Seconds for `iterations` un-instrumented iterations, in the loop's order (overlap) or the synchronous one."""
    start = time.perf_counter()
    for _ in range(iterations):
      self._act_and_add(self.epsilon)
      if overlap:
        self.stepper.send(self._actions)
        for _ in range(self._num_updates()):
          self._update()
        self.step = self.stepper.recv()
      else:
        self.step = self.stepper.step(self._actions)
        for _ in range(self._num_updates()):
          self._update()
    jax.block_until_ready(self.state)
    return time.perf_counter() - start

  def instrumented(self, iterations: int) -> dict[str, float]:
    """Seconds per phase over `iterations` synchronous iterations, every phase waited for."""
    seconds = dict.fromkeys(PHASES, 0.0)
    clip, batch_size = self.config.learner.reward_clip, self.config.learner.batch_size
    jax.block_until_ready(self.state)
    start = time.perf_counter()
    for _ in range(iterations):
      obs = self.stacker.push(self.step.frame, self.step.first)
      t1 = time.perf_counter()
      actions, self.rng = self.agent.act(self.state.params, obs, self.rng, self.epsilon)
      actions = np.asarray(actions)
      t2 = time.perf_counter()
      reward = self.step.reward if clip == 0 else np.clip(self.step.reward, -clip, clip)
      t3 = time.perf_counter()
      self.replay.add(self.step.frame, actions, reward, self.step.terminal, self.step.last, self.step.first)
      t4 = time.perf_counter()
      self.step = self.stepper.step(actions)
      t5 = time.perf_counter()
      seconds["act"] += t2 - t1
      seconds["replay.add"] += t4 - t3
      seconds["env step"] += t5 - t4
      for _ in range(self._num_updates()):
        u0 = time.perf_counter()
        batch = self.replay.sample(batch_size)
        u1 = time.perf_counter()
        batch = jax.block_until_ready(jax.device_put(batch))
        u2 = time.perf_counter()
        self.state, info = jax.block_until_ready(self.agent.update(self.state, batch))
        self.info_sum = info if self.info_sum is None else train.accumulate(self.info_sum, info)
        u3 = time.perf_counter()
        seconds["replay.sample"] += u1 - u0
        seconds["batch host→device"] += u2 - u1
        seconds["update"] += u3 - u2
    total = time.perf_counter() - start
    seconds["rest"] = total - sum(seconds.values())
    return seconds


def profile(config, iterations: int = 300, rounds: int = 5, fill_frames: int = 20_000) -> dict:
  """The instrumented breakdown and the synchronous-vs-overlapped timing of one configuration.

  Returns {"phases": {phase: ms/iteration}, "shares": {phase: fraction}, "sync_ms" / "overlap_ms":
  {"min", "median"} ms/iteration over `rounds` alternating rounds of `iterations`, "frames_per_iteration"}.
  """
  loop = _Loop(config, fill_frames)
  loop.instrumented(max(iterations // 10, 5))  # Warm-up: caches, page faults, the first episodes.
  seconds = loop.instrumented(iterations)
  total = sum(seconds.values())
  times = {"sync": [], "overlap": []}
  for _ in range(rounds):
    for mode in times:
      times[mode].append(1e3 * loop.run(iterations, overlap=mode == "overlap") / iterations)
  loop.envs.close()
  return {"phases": {k: 1e3 * v / iterations for k, v in seconds.items()},
          "shares": {k: v / total for k, v in seconds.items()},
          "frames_per_iteration": config.env.num_envs * atari.FRAME_SKIP,
          **{f"{mode}_ms": {"min": min(t), "median": statistics.median(t)} for mode, t in times.items()}}


def format_profile(name: str, result: dict) -> str:
  frames = result["frames_per_iteration"]
  lines = [f"{name}", f"  {'phase (synchronous, each waited for)':<40} {'ms/iter':>9} {'share':>7}"]
  for phase, ms in result["phases"].items():
    lines.append(f"  {phase:<40} {ms:>9.2f} {result['shares'][phase]:>7.1%}")
  lines.append(f"  {'total (instrumented)':<40} {sum(result['phases'].values()):>9.2f}")
  for mode, label in (("sync", "un-instrumented, step then updates"),
                      ("overlap", "un-instrumented, send/updates/recv")):
    t = result[f"{mode}_ms"]
    lines.append(f"  {label:<40} {t['min']:>9.2f} min, {t['median']:.2f} median ms/iter "
                 f"({1e3 * frames / t['median']:,.0f} frames/s at the median)")
  lines.append(f"  overlapped / synchronous time: {result['overlap_ms']['median'] / result['sync_ms']['median']:.3f} "
               f"(median), {result['overlap_ms']['min'] / result['sync_ms']['min']:.3f} (min)")
  return "\n".join(lines)


if __name__ == "__main__":
  import os

  from absl import flags
  from ml_collections import config_flags

  from plasticity_rl import cli
  from plasticity_rl import config as config_lib

  _CONFIG = config_flags.DEFINE_config_file("config", os.path.join(cli.CONFIGS_DIR, "dqn.py:cpu"),
                                            "Config to profile.")
  _FULL = flags.DEFINE_bool("full_width", True, "Also profile full_width(config).")
  _ITERATIONS = flags.DEFINE_integer("iterations", 300, "Loop iterations per measurement.")
  _ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternating un-instrumented rounds per order.")

  def main(argv):
    cli.no_arguments(argv)
    config = _CONFIG.value
    config_lib.validate(config)
    for name, c in [("config", config)] + ([("full width", full_width(config))] if _FULL.value else []):
      print(format_profile(f"{name}: {describe(c)}", profile(c, _ITERATIONS.value, _ROUNDS.value)), flush=True)

  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  cli.run(main, __name__)
