"""The training loop, counted in emulator frames.

    act (jitted, batched over envs) -> replay.add -> env step
    every 1/replay_ratio agent steps (after warm-up): sample -> update (jitted)
    at scheduled frames: interventions (injection, …), logged as events
    every log period: scalars + a progress line; every eval period: evaluation

One loop iteration steps all `num_envs` envs once: num_envs agent steps,
4 × num_envs frames. Device arrays returned by the learner are only read back
at log time, so the loop makes no host round-trip per update.
"""

import dataclasses
import json
import os
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from plasticity_rl import interventions
from plasticity_rl import networks
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import replay as replay_lib
from plasticity_rl import surgery  # noqa: F401  (registers the injection intervention)
from plasticity_rl.agents import dqn
from plasticity_rl.analysis import learning_curve
from plasticity_rl.envs import atari


@dataclasses.dataclass
class Episodes:
  """Raw returns and lengths of the episodes running in a batch of envs."""

  returns: np.ndarray
  frames: np.ndarray

  @classmethod
  def zeros(cls, n: int):
    return cls(np.zeros(n, np.float64), np.zeros(n, np.int64))

  def track(self, step: atari.EnvStep) -> list[tuple[float, int]]:
    """Adds a step; returns (return, frames) of the episodes that ended on it."""
    self.returns[step.first] = 0.0
    self.frames[step.first] = 0
    running = ~step.first
    self.returns[running] += step.reward[running]
    self.frames[running] += atari.FRAME_SKIP
    return [(float(self.returns[i]), int(self.frames[i])) for i in np.flatnonzero(step.last)]


def evaluate(agent: dqn.DQNAgent, params, envs, protocol: str, epsilon: float, rng) -> list[tuple[float, int]]:
  """One full episode on each eval env (ε-greedy, raw scores); returns (return, frames) each."""
  stepper = atari.AtariStepper(envs, protocol)
  step = stepper.reset()
  n = step.frame.shape[0]
  stacker = atari.FrameStacker(n)
  episodes = Episodes.zeros(n)
  results: list[tuple[float, int] | None] = [None] * n
  while any(r is None for r in results):
    obs = stacker.push(step.frame, step.first)
    actions, rng = agent.act(params, obs, rng, epsilon)
    step = stepper.step(np.asarray(actions))
    episodes.track(step)
    for i in np.flatnonzero(step.last):
      if results[i] is None:
        results[i] = (float(episodes.returns[i]), int(episodes.frames[i]))
  return results


def probe_q_change(agent: dqn.DQNAgent, before, after, obs) -> float:
  """max |Q_after − Q_before| over a batch (for intervention events)."""
  return float(jnp.max(jnp.abs(agent.network.apply(after, obs) - agent.network.apply(before, obs))))


def param_counts(state: dqn.TrainState) -> dict[str, int]:
  trainable = networks.count_params(state.params["trainable"])
  frozen = networks.count_params(state.params["frozen"])
  return {"params_trainable": trainable, "params_frozen": frozen, "params_total": trainable + frozen}


class _Throughput:
  def __init__(self, frames: int, updates: int):
    self.time, self.frames, self.updates = time.time(), frames, updates
    self.start_time, self.start_frames = self.time, frames

  def tick(self, frames: int, updates: int) -> dict[str, float]:
    now = time.time()
    dt = max(now - self.time, 1e-9)
    out = {"fps": (frames - self.frames) / dt, "updates_per_s": (updates - self.updates) / dt}
    self.time, self.frames, self.updates = now, frames, updates
    return out

  def eta(self, frames: int, total: int) -> str:
    rate = (frames - self.start_frames) / max(time.time() - self.start_time, 1e-9)
    seconds = int((total - frames) / rate) if rate > 0 else 0
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


_accumulate = jax.jit(lambda total, info: jax.tree.map(jnp.add, total, info))


def train(config, workdir: str) -> dict[str, Any]:
  """Runs config.total_frames of training; returns the summary (also in summary.json)."""
  game, num_envs = config.game, config.env.num_envs
  train_envs = atari.make_envs(game, config.env.protocol, num_envs, config.seed, config.env.max_episode_frames)
  eval_envs = atari.make_envs(game, config.eval.protocol, config.eval.num_episodes, config.seed + 1_000_000,
                              config.eval.max_episode_frames)
  num_actions = train_envs.action_space.n
  if eval_envs.action_space.n != num_actions:
    raise ValueError(f"train protocol {config.env.protocol!r} has {num_actions} actions but eval protocol "
                     f"{config.eval.protocol!r} has {eval_envs.action_space.n}: use protocols with one action set")

  agent = dqn.make_agent(config, num_actions)
  init_rng, act_rng, eval_rng, surgery_rng = jax.random.split(jax.random.key(config.seed), 4)
  state = agent.init(init_rng)
  replay = replay_lib.ReplayBuffer(config.replay.capacity, num_envs, n_step=config.replay.n_step,
                                   gamma=config.learner.gamma, seed=config.seed)
  schedule = interventions.make_schedule(config, agent)
  recorder = recorder_lib.Recorder(workdir, tensorboard=config.log.tensorboard)
  logging.info("%s: %d actions, %s params, replay %.2f GB (%d B/transition)", game, num_actions,
               f"{networks.count_params(state.params):,}", replay.nbytes / 1e9, replay.bytes_per_transition)
  recorder.write(0, "run", {"game": game, "num_actions": num_actions, **param_counts(state),
                            "replay_bytes_per_transition": replay.bytes_per_transition})

  stepper = atari.AtariStepper(train_envs, config.env.protocol)
  stacker = atari.FrameStacker(num_envs)
  episodes = Episodes.zeros(num_envs)
  step = stepper.reset()
  frames, updates_due, num_updates = 0, 0.0, 0
  info_sum, info_count = None, 0
  recent_returns: list[float] = []
  next_log, next_eval = config.log.period_frames, config.eval.period_frames
  throughput = _Throughput(0, 0)
  last_eval_frames = -1
  eval_means: list[tuple[int, float]] = []

  def run_eval():
    nonlocal eval_rng, last_eval_frames
    eval_rng, rng = jax.random.split(eval_rng)
    results = evaluate(agent, state.params, eval_envs, config.eval.protocol, config.eval.epsilon, rng)
    recorder.write_eval([{"game": game, "variant": config.variant, "seed": config.seed, "frames": frames,
                          "episode_return": ret, "episode_frames": length} for ret, length in results])
    mean = float(np.mean([r for r, _ in results]))
    recorder.write(frames, "eval", {"episode_return_mean": mean, "episodes": len(results)})
    eval_means.append((frames, mean))
    logging.info("eval @ %s frames: mean return %.1f over %d episodes", f"{frames:,}", mean, len(results))
    last_eval_frames = frames

  while frames < config.total_frames:
    obs = stacker.push(step.frame, step.first)
    epsilon = dqn.linear_epsilon(frames, start=config.exploration.epsilon_start, end=config.exploration.epsilon_end,
                                 decay_frames=config.exploration.decay_frames,
                                 offset_frames=config.replay.learning_starts_frames)
    actions, act_rng = agent.act(state.params, obs, act_rng, epsilon)
    actions = np.asarray(actions)
    reward = step.reward if config.learner.reward_clip == 0 else np.clip(
        step.reward, -config.learner.reward_clip, config.learner.reward_clip)
    replay.add(step.frame, actions, reward, step.terminal, step.last, step.first)
    step = stepper.step(actions)
    frames += num_envs * atari.FRAME_SKIP

    for ret, length in episodes.track(step):
      recorder.write(frames, "episode", {"episode_return": ret, "episode_frames": length})
      recent_returns = (recent_returns + [ret])[-20:]

    if frames >= config.replay.learning_starts_frames:
      updates_due += num_envs * config.learner.replay_ratio
      while updates_due >= 1.0:
        state, info = agent.update(state, replay.sample(config.learner.batch_size))
        info_sum = info if info_sum is None else _accumulate(info_sum, info)
        info_count += 1
        num_updates += 1
        updates_due -= 1.0

    for scheduled in schedule.due(frames):
      surgery_rng, rng = jax.random.split(surgery_rng)
      batch = replay.sample(config.learner.batch_size) if frames >= config.replay.learning_starts_frames else None
      probe = batch["obs"] if batch is not None else obs
      before = state
      state = scheduled.apply(state, rng, batch)
      event = {"name": scheduled.name, **param_counts(state),
               "max_abs_dq": probe_q_change(agent, before.params, state.params, probe),
               "max_abs_dq_target": probe_q_change(agent, before.target_params, state.target_params, probe)}
      recorder.write(frames, "event", event)
      logging.info("%s @ %s frames: %s", scheduled.name, f"{frames:,}", event)

    if frames >= next_log:
      next_log += config.log.period_frames
      scalars = {**throughput.tick(frames, num_updates), "epsilon": epsilon, "updates": num_updates,
                 **param_counts(state)}
      if info_count:
        scalars.update({k: float(v) / info_count for k, v in jax.device_get(info_sum).items()})
        info_sum, info_count = None, 0
      if recent_returns:
        scalars["episode_return_recent"] = float(np.mean(recent_returns))
      recorder.write(frames, "train", scalars)
      recorder.flush()
      logging.info("frames %s/%s (%.0f%%) | %.0f fps | %.1f upd/s | ε %.3f | return %s | loss %s | ETA %s",
                   f"{frames:,}", f"{config.total_frames:,}", 100 * frames / config.total_frames, scalars["fps"],
                   scalars["updates_per_s"], epsilon,
                   f"{scalars['episode_return_recent']:.1f}" if recent_returns else "-",
                   f"{scalars['loss']:.4f}" if "loss" in scalars else "-", throughput.eta(frames, config.total_frames))

    if frames >= next_eval:
      next_eval += config.eval.period_frames
      run_eval()

  if last_eval_frames != frames:
    run_eval()
  recorder.close()
  summary = {"game": game, "variant": config.variant, "seed": config.seed, "frames": frames,
             "updates": num_updates, "final_eval_return": eval_means[-1][1],
             "best_eval_return": max(m for _, m in eval_means), "eval": eval_means,
             "wall_seconds": time.time() - throughput.start_time, **param_counts(state)}
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  if config.log.learning_curve:
    summary["learning_curve"] = learning_curve.plot_learning_curve(
        workdir, title=f"{game} · {config.variant} · seed {config.seed}")
  return summary
