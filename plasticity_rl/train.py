"""The training loop, counted in emulator frames.

    act (jitted, batched over envs) -> replay.add -> env send
    every 1/replay_ratio agent steps (after warm-up): sample -> update (jitted, dispatched async)
    env recv (the envs stepped while the updates were dispatched and computed)
    at scheduled frames: interventions (injection, …), logged as events
    every log period: scalars + a progress line; every eval period: evaluation
    every metrics period (after warm-up): plasticity metrics on a replay probe batch,
      which may trigger an injection (config.injection.trigger) or raise the
      replay ratio (config.learner.adaptive_replay_ratio)
    every checkpoint period, at the end and on SIGTERM/SIGINT: a checkpoint

One loop iteration steps all `num_envs` envs once: num_envs agent steps,
4 × num_envs frames. Device arrays returned by the learner are only read back
at log time, so the loop makes no host round-trip per update.

The same command with the same workdir resumes from the newest readable
checkpoint (checkpoint.py: what is saved, and why episodes restart); rows of
metrics.jsonl / eval.csv past its frame are dropped. `reincarnate.path` starts
a new run from another run's saved agent instead.
"""

import dataclasses
import json
import os
import signal
import threading
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from plasticity_rl import checkpoint as checkpoint_lib
from plasticity_rl import expansion
from plasticity_rl import interventions
from plasticity_rl import metrics as metrics_lib
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import progress
from plasticity_rl import provenance as provenance_lib
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import replay as replay_lib
from plasticity_rl import remedies  # noqa: F401  (registers reset, redo, shrink_perturb)
from plasticity_rl import surgery
from plasticity_rl import triggers
from plasticity_rl import video as video_lib
from plasticity_rl import workdir as workdir_lib
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


def evaluate(agent: dqn.DQNAgent, params, envs, protocol: str, epsilon: float, rng,
             should_stop=lambda: False, video: video_lib.EpisodeVideos | None = None) -> list[tuple[float, int]] | None:
  """One full episode on each eval env (ε-greedy, raw scores); returns (return, frames) each.

  None if `should_stop()` turned True before every episode ended. `video`: records the first envs' episodes.
  """
  stepper = atari.AtariStepper(envs, protocol)
  step = stepper.reset()
  if video is not None:
    video.add(envs, step)
  n = step.frame.shape[0]
  stacker = atari.FrameStacker(n)
  episodes = Episodes.zeros(n)
  results: list[tuple[float, int] | None] = [None] * n
  while any(r is None for r in results):
    if should_stop():
      return None
    obs = stacker.push(step.frame, step.first)
    actions, rng = agent.act(params, obs, rng, epsilon)
    step = stepper.step(np.asarray(actions))
    if video is not None:
      video.add(envs, step)
    episodes.track(step)
    for i in np.flatnonzero(step.last):
      if results[i] is None:
        results[i] = (float(episodes.returns[i]), int(episodes.frames[i]))
  return results


def probe_q_change(agent: dqn.DQNAgent, before, after, obs) -> float:
  """max |Q_after − Q_before| over a batch (for intervention events)."""
  return float(jnp.max(jnp.abs(agent.network.apply(after, obs) - agent.network.apply(before, obs))))


def param_counts(state: dqn.TrainState) -> dict[str, int]:
  trainable = params_tree.count_trainable(state.params)
  frozen = params_tree.count_frozen(state.params)
  return {"params_trainable": trainable, "params_frozen": frozen, "params_total": trainable + frozen}


def record_eval(recorder: recorder_lib.Recorder, results: list[tuple[float, int]], *, game: str, variant: str,
                seed: int, frames: int) -> float:
  """Writes an evaluation's eval.csv rows and its metrics row; returns the mean return."""
  recorder.write_eval([{"game": game, "variant": variant, "seed": seed, "frames": frames, "episode_return": ret,
                        "episode_frames": length} for ret, length in results])
  mean = float(np.mean([r for r, _ in results]))
  recorder.write(frames, "eval", {"episode_return_mean": mean, "episodes": len(results)})
  return mean


accumulate = jax.jit(lambda total, info: jax.tree.map(jnp.add, total, info))


def update_name(due: int) -> str:
  """What progress.Compilation calls the update of `due` batches (each count compiles once)."""
  return "the update" if due == 1 else f"the update ×{due}"


def draw_batches(replay: replay_lib.ReplayBuffer, review: expansion.Review | None, due: int,
                 batch_size: int) -> dict[str, np.ndarray]:
  """The `due` learner batches of an iteration, [due, B, …], drawn in the order `due` single draws take."""
  if review is None:
    return replay.sample_many(due, batch_size)
  batches = [review.sample(replay, batch_size) for _ in range(due)]
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


class Preempted(Exception):
  """SIGTERM/SIGINT stopped the run after a checkpoint; the same command resumes it."""

  def __init__(self, signum: int, frames: int):
    super().__init__(f"stopped by {signal.Signals(signum).name} at {frames:,} frames, after a checkpoint; "
                     "run the same command to resume")
    self.signum, self.frames = signum, frames


class StopSignals:
  """While active, SIGTERM/SIGINT only set `signum` (the loop saves and stops); a second one acts at once."""

  def __init__(self):
    self.signum, self._previous = None, {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning("%s: stopping after a checkpoint (send it again to stop at once)", signal.Signals(signum).name)
    self.signum = signum
    signal.signal(signum, self._previous[signum])

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def __call__(self) -> bool:
    return self.signum is not None


def env_seed(seed: int, frames: int = 0, evaluation: bool = False) -> int:
  """The envpool seed of a run's training (at `frames`: new episodes after each resume) or evaluation envs.

  envpool seeds env i of a pool made with seed s with s + i, so consecutive run seeds used directly would
  share all but one env's random stream (sticky actions, no-op starts): the pool seed is drawn from the
  run seed instead, far apart for different seeds, resume frames and training/evaluation.
  """
  entropy = [seed, frames] + ([1] if evaluation else [])
  return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 2)


def evaluation_envs(config, seed: int, final: bool = False):
  """A run's evaluation envs: `eval.num_episodes` of them; for the evaluation at total_frames
  (`final`), `eval.final_num_episodes` when set (a pool of its own, with its own env seed)."""
  if final and config.eval.final_num_episodes:
    return atari.make_envs(config.game, config.eval.protocol, config.eval.final_num_episodes,
                           env_seed(seed, config.total_frames, evaluation=True), config.eval.max_episode_frames,
                           render=config.eval.record_video)
  return atari.make_envs(config.game, config.eval.protocol, config.eval.num_episodes,
                         env_seed(seed, evaluation=True), config.eval.max_episode_frames,
                         render=config.eval.record_video)


def next_multiple(frames: int, period: int) -> int:
  return (frames // period + 1) * period


def finished_summary(config, workdir: str, checkpointer: checkpoint_lib.Checkpointer) -> dict[str, Any] | None:
  path = os.path.join(workdir, "summary.json")
  steps = checkpointer.steps()
  if os.path.exists(path) and steps and steps[-1] >= config.total_frames:
    try:
      return workdir_lib.read_json(path)
    except workdir_lib.WorkdirError as e:  # Damaged: written again from the final checkpoint.
      logging.warning("%s; writing it again from the checkpoint at %s frames", e, f"{steps[-1]:,}")
  return None


def train(config, workdir: str, reincarnated: checkpoint_lib.Restored | None = None) -> dict[str, Any]:
  """Runs config.total_frames of training; returns the summary (also in summary.json).

  Resumes from the workdir's newest readable checkpoint if there is one; a
  finished run returns its summary at once. Raises Preempted after saving a
  checkpoint on SIGTERM/SIGINT. `reincarnated`: config.reincarnate's agent,
  already read (main reads it before writing the workdir); None: read here.
  """
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                             max_to_keep=config.checkpoint.max_to_keep,
                                             async_save=config.checkpoint.async_save)
  try:
    summary = finished_summary(config, workdir, checkpointer)
    if summary is not None:
      logging.info("%s: finished (summary.json, checkpoint at %s frames); nothing to do", workdir,
                   f"{checkpointer.steps()[-1]:,}")
      return summary
    with StopSignals() as stop:
      return _train(config, workdir, checkpointer, stop, reincarnated)
  finally:
    checkpointer.close()


def _train(config, workdir: str, checkpointer: checkpoint_lib.Checkpointer, stop: StopSignals,
           reincarnated: checkpoint_lib.Restored | None = None) -> dict[str, Any]:
  game, num_envs = config.game, config.env.num_envs
  logging.info("%s on %s: making the envs (%d training, %d evaluation), the replay and the agent…", game,
               jax.default_backend(), num_envs, config.eval.num_episodes)
  eval_envs = evaluation_envs(config, config.seed)
  agent = dqn.make_agent(config, eval_envs.action_space.n)
  resumed = checkpointer.restore(optimizer=agent.optimizer, with_replay=config.checkpoint.save_replay)
  if resumed is not None:
    checkpointer.set_aside([s for s in checkpointer.steps() if s > resumed.step])  # Unreadable ones.
  start_frames = resumed.loop["frames"] if resumed is not None else 0
  train_envs = atari.make_envs(game, config.env.protocol, num_envs, env_seed(config.seed, start_frames),
                               config.env.max_episode_frames)
  num_actions = train_envs.action_space.n
  if eval_envs.action_space.n != num_actions:
    raise ValueError(f"train protocol {config.env.protocol!r} has {num_actions} actions but eval protocol "
                     f"{config.eval.protocol!r} has {eval_envs.action_space.n}: use protocols with one action set")

  init_rng, act_rng, eval_rng, surgery_rng = jax.random.split(jax.random.key(config.seed), 4)
  state = agent.init(init_rng)
  replay = replay_lib.ReplayBuffer(config.replay.capacity, num_envs, n_step=config.replay.n_step,
                                   gamma=config.learner.gamma, seed=config.seed)
  schedule = interventions.make_schedule(config, agent)
  trigger = triggers.init_trigger(config.injection.trigger)
  adaptive = config.learner.adaptive_replay_ratio
  replay_ratio_state = triggers.init_replay_ratio(adaptive) if adaptive.enabled else None
  next_metrics = config.metrics.period_frames or None
  review = expansion.Review.from_config(config)  # Expansion's experience review; None when off.
  frames, updates_due, num_updates, num_episodes = 0, 0.0, 0, 0
  info_sum, info_count = None, 0
  recent_returns: list[float] = []
  next_log, next_eval = config.log.period_frames, config.eval.period_frames
  eval_means: list[tuple[int, float]] = []
  wall_before = 0.0

  source, load = resumed, "all"
  if resumed is None and config.reincarnate.path:
    source, load = reincarnated or checkpoint_lib.reincarnate(config, agent), config.reincarnate.load
    logging.info("%s", progress.reincarnation_line(source.path, source.loop["frames"], load))
  if source is not None:
    state = source.train_state(state, agent.optimizer, load)
    if source.replay is not None and load in ("params+optimizer+replay", "all"):
      replay.load_state_dict(source.replay)
  if source is not None and load == "all":
    keys = source.keys()
    act_rng, eval_rng, surgery_rng = keys["act"], keys["eval"], keys["surgery"]
    loop = source.loop
    frames, updates_due, num_updates, num_episodes = (loop["frames"], loop["updates_due"], loop["updates"],
                                                      loop["episodes"])
    recent_returns, info_count, wall_before = loop["recent_returns"], loop["info_count"], loop["wall_seconds"]
    eval_means = [(int(f), float(r)) for f, r in loop["eval_means"]]
    if loop["info_sum"] is not None:
      info_sum = {k: jnp.asarray(v, jnp.float32) for k, v in loop["info_sum"].items()}
    next_log, next_eval, next_metrics = loop["next_log"], loop["next_eval"], loop.get("next_metrics")
    if resumed is not None:
      trigger = triggers.from_dict(loop["trigger"]) if loop.get("trigger") else trigger
      if review is not None and loop.get("expansion_review"):
        review.load_state_dict(loop["expansion_review"])
      if loop.get("replay_ratio_state"):
        replay_ratio_state = triggers.replay_ratio_from_dict(loop["replay_ratio_state"])
    else:  # Reincarnated: this config's periods.
      next_log, next_eval = next_multiple(frames, config.log.period_frames), next_multiple(
          frames, config.eval.period_frames)
      next_metrics = next_multiple(frames, config.metrics.period_frames) if config.metrics.period_frames else None
    skipped = schedule.due(frames)  # Applied before the save (resume), or before the saved agent's frames.
    if resumed is None and skipped:
      logging.warning("reincarnated at %s frames: dropping the interventions scheduled at or before it: %s; "
                      "schedule them after %s frames", f"{frames:,}",
                      ", ".join(f"{s.name}@{s.frames:,}" for s in skipped), f"{frames:,}")
  state = dqn.owned(state)  # The update donates it (a restored state's arrays may be held elsewhere too).
  # Updates start once the replay holds learning_starts_frames of data (again, after a resume without it).
  learning_starts = config.replay.learning_starts_frames + (frames if len(replay) == 0 else 0)
  next_save = next_multiple(frames, config.checkpoint.period_frames) if config.checkpoint.period_frames else None

  provenance = provenance_lib.start([workdir], resumed=resumed is not None)
  recorder = recorder_lib.Recorder.for_run(workdir, config, frames, resumed=resumed is not None, provenance=provenance)
  if resumed is not None:
    logging.info("resuming from %s at %s frames, %s updates", resumed.path, f"{frames:,}", f"{num_updates:,}")
    recorder.write(frames, "resume", {"checkpoint": resumed.path, "updates": num_updates})
  else:
    logging.info("%s: %d actions, %s params, replay %.2f GB (%d B/transition)", game, num_actions,
                 f"{networks.count_params(state.params):,}", replay.nbytes / 1e9, replay.bytes_per_transition)
    recorder.write(frames, "run", {"game": game, "num_actions": num_actions, **param_counts(state),
                              "replay_bytes_per_transition": replay.bytes_per_transition,
                              **({"reincarnated_from": source.path, "reincarnate_load": load,
                                  "reincarnated_frames": source.loop["frames"]} if source is not None else {})})

  stepper = atari.AtariStepper(train_envs, config.env.protocol)
  stacker = atari.FrameStacker(num_envs)
  episodes = Episodes.zeros(num_envs)
  step = stepper.reset()
  throughput = progress.Throughput(frames, num_updates)
  compilation = progress.Compilation(throughput)

  def save_checkpoint():
    if checkpointer.steps() and checkpointer.steps()[-1] == frames:
      return
    start = time.time()
    loop = {"frames": frames, "updates": num_updates, "episodes": num_episodes, "updates_due": updates_due,
            "next_log": next_log, "next_eval": next_eval, "recent_returns": recent_returns,
            "eval_means": eval_means, "info_count": info_count, "next_metrics": next_metrics,
            "trigger": triggers.to_dict(trigger), "expansion_review": review and review.state_dict(),
            "replay_ratio_state": replay_ratio_state and triggers.replay_ratio_to_dict(replay_ratio_state),
            "info_sum": None if info_sum is None else {k: float(v) for k, v in jax.device_get(info_sum).items()},
            "wall_seconds": wall_before + time.time() - throughput.start_time}
    checkpointer.save(frames, state=state, keys={"act": act_rng, "eval": eval_rng, "surgery": surgery_rng},
                      loop=loop, replay=replay if config.checkpoint.save_replay else None, config=config)
    blocked = time.time() - start
    recorder.write(frames, "checkpoint", {"blocking_seconds": blocked})
    logging.info("saving checkpoint @ %s frames (the loop waited %.2f s)", f"{frames:,}", blocked)

  def run_eval() -> bool:
    nonlocal eval_rng
    next_eval_rng, rng = jax.random.split(eval_rng)
    final = frames >= config.total_frames and config.eval.final_num_episodes
    envs = evaluation_envs(config, config.seed, final=True) if final else eval_envs
    video = video_lib.due(config, workdir, frames, eval_means[-1][0] if eval_means else 0)
    results = evaluate(agent, state.params, envs, config.eval.protocol, config.eval.epsilon, rng, stop, video)
    if results is None:  # Stopped: the evaluation stays due, and runs first on resume.
      return False
    eval_rng = next_eval_rng
    mean = record_eval(recorder, results, game=game, variant=config.variant, seed=config.seed, frames=frames)
    eval_means.append((frames, mean))
    logging.info("eval @ %s frames: mean return %.1f over %d episodes", f"{frames:,}", mean, len(results))
    return True

  def maybe_eval() -> bool:
    nonlocal next_eval
    if frames >= next_eval:
      if not run_eval():
        return False
      next_eval += config.eval.period_frames
    return True

  def apply_intervention(name: str, intervention: interventions.Intervention, **extra) -> None:
    nonlocal state, surgery_rng
    surgery_rng, rng = jax.random.split(surgery_rng)
    batch = replay.sample(config.learner.batch_size) if frames >= learning_starts else None
    probe = batch["obs"] if batch is not None else obs
    before, counts = state, param_counts(state)
    if name == "expansion" and batch is not None:  # Dormant units among the active ones, before pruning.
      count, fraction = expansion.dormant_count_jit(agent.network, before, batch["obs"],
                                                    tau=config.expansion.prune_tau)
      extra = {**extra, "dormant_active": int(count)}
      if review is not None and review.observe(float(fraction)):
        recorder.write(frames, "event", {"name": "expansion_review", "batches": review.batches,
                                         "oldest_fraction": review.fraction})
    state = dqn.owned(intervention(state, rng, batch))  # The update donates it.
    event = {"name": name, **extra, **param_counts(state), **expansion.summary(agent.network, state),
             "max_abs_dq": probe_q_change(agent, before.params, state.params, probe),
             "max_abs_dq_target": probe_q_change(agent, before.target_params, state.target_params, probe)}
    recorder.write(frames, "event", event)
    logging.info("%s", progress.event_line(frames, counts, [event]))
    compilation.changed(before, state, name, frames)

  def measure_plasticity() -> None:
    nonlocal trigger, replay_ratio_state
    row = metrics_lib.to_host(compilation.call(
        "the plasticity metrics", metrics_lib.plasticity_metrics, agent, state,
        replay.sample(config.metrics.probe_size), state.init_params, train_batch_size=config.learner.batch_size,
        frames=frames))
    recorder.write(frames, "plasticity", row)
    trigger, fire = triggers.update_trigger(trigger, frames, row.get(trigger.spec.metric))
    if fire:
      apply_intervention("injection", surgery.injection(agent, surgery.injection_plan(config, agent.network)),
                         trigger=trigger.spec.metric, trigger_mean=trigger.last_mean)
    if replay_ratio_state is not None:
      replay_ratio_state, switched = triggers.update_replay_ratio(replay_ratio_state, frames,
                                                                  row.get(adaptive.metric))
      if switched:
        recorder.write(frames, "event", {"name": "replay_ratio", "replay_ratio": replay_ratio_state.high,
                                         "metric": adaptive.metric, "window": list(replay_ratio_state.values)})
        logging.info("replay ratio %g -> %g @ %s frames (%s settled)", replay_ratio_state.low,
                     replay_ratio_state.high, f"{frames:,}", adaptive.metric)

  maybe_eval()  # Only an evaluation a stopped run left due.
  while frames < config.total_frames and not stop():
    obs = stacker.push(step.frame, step.first)
    epsilon = dqn.linear_epsilon(frames, start=config.exploration.epsilon_start, end=config.exploration.epsilon_end,
                                 decay_frames=config.exploration.decay_frames,
                                 offset_frames=config.replay.learning_starts_frames)
    actions, act_rng = agent.act(state.params, obs, act_rng, epsilon)
    actions = np.asarray(actions)
    reward = step.reward if config.learner.reward_clip == 0 else np.clip(
        step.reward, -config.learner.reward_clip, config.learner.reward_clip)
    replay.add(step.frame, actions, reward, step.terminal, step.last, step.first)
    stepper.send(actions)  # The envs step on envpool's threads while this iteration's updates are dispatched.
    frames += num_envs * atari.FRAME_SKIP

    if frames >= learning_starts:  # The updates see the replay as it is after this add, as before.
      replay_ratio = config.learner.replay_ratio if replay_ratio_state is None else replay_ratio_state.replay_ratio
      updates_due += num_envs * replay_ratio
      due = 0
      while updates_due >= 1.0:
        due += 1
        updates_due -= 1.0
      if due:  # The iteration's `due` batches as one [due, B] draw and one transfer; an update per slice.
        batches = jax.device_put(draw_batches(replay, review, due, config.learner.batch_size))
        for index in range(due):
          state, info = compilation.call(update_name(due), agent.update_at, state, batches, index,
                                         frames=frames)  # Runs async; donates state.
          info_sum = info if info_sum is None else accumulate(info_sum, info)
        info_count += due
        num_updates += due

    step = stepper.recv()
    for ret, length in episodes.track(step):
      recorder.write(frames, "episode", {"episode_return": ret, "episode_frames": length})
      recent_returns = (recent_returns + [ret])[-20:]
      num_episodes += 1

    for scheduled in schedule.due(frames):
      apply_intervention(scheduled.name, scheduled.apply)

    if next_metrics is not None and frames >= next_metrics:
      next_metrics = next_multiple(frames, config.metrics.period_frames)
      if frames >= learning_starts:
        measure_plasticity()

    if frames >= next_log:
      next_log += config.log.period_frames
      scalars = {**throughput.tick(frames, num_updates), "epsilon": epsilon, "updates": num_updates,
                 "replay_ratio": config.learner.replay_ratio if replay_ratio_state is None
                 else replay_ratio_state.replay_ratio,
                 **param_counts(state), **expansion.summary(agent.network, state)}
      if info_count:
        scalars.update({k: float(v) / info_count for k, v in jax.device_get(info_sum).items()})
        info_sum, info_count = None, 0
      if recent_returns:
        scalars["episode_return_recent"] = float(np.mean(recent_returns))
      recorder.write(frames, "train", scalars)
      recorder.flush()
      logging.info("frames %s/%s (%.0f%%) | %.0f fps | %.1f upd/s | ε %.3f | return %s | loss %s | %s",
                   f"{frames:,}", f"{config.total_frames:,}", 100 * frames / config.total_frames, scalars["fps"],
                   scalars["updates_per_s"], epsilon,
                   f"{scalars['episode_return_recent']:.1f}" if recent_returns else "-",
                   f"{scalars['loss']:.4f}" if "loss" in scalars else "-",
                   throughput.eta(frames, config.total_frames, learning_starts))
    elif throughput.early_line(frames):  # Console only: the metrics rows keep the log period.
      logging.info("frames %s/%s (%.0f%%) | %.0f fps | ε %.3f | return %s | %s", f"{frames:,}",
                   f"{config.total_frames:,}", 100 * frames / config.total_frames, throughput.rate(frames) or 0,
                   epsilon, f"{np.mean(recent_returns):.1f}" if recent_returns else "-",
                   throughput.eta(frames, config.total_frames, learning_starts))

    if not maybe_eval():
      break
    if next_save is not None and frames >= next_save:
      next_save = next_multiple(frames, config.checkpoint.period_frames)
      save_checkpoint()

  if not stop() and (not eval_means or eval_means[-1][0] != frames):
    run_eval()
  save_checkpoint()
  checkpointer.wait()
  recorder.close()
  if stop():
    raise Preempted(stop.signum, frames)
  summary = {"game": game, "variant": config.variant, "seed": config.seed, "frames": frames,
             "updates": num_updates, "episodes": num_episodes, "final_eval_return": eval_means[-1][1],
             "best_eval_return": max(m for _, m in eval_means), "eval": eval_means,
             "wall_seconds": wall_before + time.time() - throughput.start_time, **param_counts(state),
             "provenance": provenance}
  workdir_lib.write_json(os.path.join(workdir, "summary.json"), summary)
  if config.log.learning_curve:
    summary["learning_curve"] = learning_curve.plot_learning_curve(
        workdir, title=f"{game} · {config.variant} · seed {config.seed}")
  return summary
