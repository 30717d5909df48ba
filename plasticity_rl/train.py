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
from plasticity_rl import device_loop
from plasticity_rl import expansion
from plasticity_rl import interventions
from plasticity_rl import learner as learner_lib
from plasticity_rl import loop_state
from plasticity_rl import metrics as metrics_lib
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import progress
from plasticity_rl import provenance as provenance_lib
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import replay as replay_lib
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


accumulate = learner_lib.accumulate
update_name = learner_lib.update_name
next_multiple = loop_state.next_multiple


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


@dataclasses.dataclass
class SeedRun:
  """One seed of the loop: where it writes, and what it owns on the host (its learner state is the
  SeedLearner's). A plain run is one SeedRun in the run's workdir; an N-seed run's are WORKDIR/seed_<n>."""

  seed: int
  workdir: str
  config: Any  # Its single-seed config (the workdir's config.json).
  checkpointer: checkpoint_lib.Checkpointer
  # Made once the run starts:
  eval_envs: Any = None
  replay: replay_lib.ReplayBuffer | None = None
  recorder: recorder_lib.Recorder | None = None
  stepper: atari.AtariStepper | None = None
  episodes: Episodes | None = None
  loop: loop_state.SeedLoop | None = None


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
      run = SeedRun(seed=config.seed, workdir=workdir, config=config, checkpointer=checkpointer)
      return run_seeds(config, [run], stop, reincarnated=[reincarnated])[0]
  finally:
    checkpointer.close()


def resume_point(runs: list[SeedRun], optimizer, with_replay: bool) -> list[checkpoint_lib.Restored] | None:
  """Each run's checkpoint to resume from, or None (none saved): a single run's newest readable one; the seeds'
  at the newest frame count every one of them can read."""
  if len(runs) == 1:
    restored = runs[0].checkpointer.restore(optimizer=optimizer, with_replay=with_replay)
    return None if restored is None else [restored]
  common = sorted(set.intersection(*(set(r.checkpointer.steps()) for r in runs)))
  if not common and any(r.checkpointer.steps() for r in runs):
    logging.warning("the seeds have no checkpoint at a common frame count: starting again from 0 frames")
  for step in reversed(common):
    try:
      return [r.checkpointer.restore_step(step, optimizer=optimizer, with_replay=with_replay) for r in runs]
    except checkpoint_lib.CheckpointError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("checkpoint step %s is unreadable for a seed (%s); trying the previous one", step,
                      checkpoint_lib.describe_error(e))
  if common:
    raise checkpoint_lib.CheckpointError(f"no frame count at which every seed has a readable checkpoint ({common})")
  return None


def run_seeds(config, runs: list[SeedRun], stop: StopSignals,
              reincarnated: list[checkpoint_lib.Restored | None] | None = None) -> list[dict[str, Any]]:
  """The training loop, for one seed (a plain run) or N seeds sharing the loop (multi_seed.py).

  The seeds share one frame counter, one intervention schedule and one log / eval / metrics / checkpoint
  cadence; everything else is per seed: params, optimizer state, replay, keys, envs, and the per-seed
  decisions (a metric trigger's injection, the adaptive replay ratio and its updates due, expansion's review).
  Seed n of an N-seed run writes what the single run with seed n writes (tests/test_multi_seed.py).
  """
  game, num_envs, n = config.game, config.env.num_envs, len(runs)
  multi = config.num_seeds > 1
  on_device = device_loop.resolve_backend(config.loop.backend) == "device"
  logging.info("%s on %s: making the envs (%d training, %d evaluation%s), the replay%s and the agent…", game,
               jax.default_backend(), num_envs, config.eval.num_episodes, f"; ×{n} seeds" if multi else "",
               "s" if multi else "")
  for run in runs:
    run.eval_envs = evaluation_envs(run.config, run.seed)
  agent = dqn.make_agent(config, runs[0].eval_envs.action_space.n)
  resumed = resume_point(runs, agent.optimizer, config.checkpoint.save_replay)
  if resumed is not None:
    for run, restored in zip(runs, resumed):
      run.checkpointer.set_aside([s for s in run.checkpointer.steps() if s > restored.step])  # Unreadable ones.
  start_frames = resumed[0].loop["frames"] if resumed is not None else 0

  states, act_keys = [], []
  for run in runs:
    init_rng, act_rng, eval_rng, surgery_rng = jax.random.split(jax.random.key(run.seed), 4)
    states.append(agent.init(init_rng))
    act_keys.append(act_rng)
    run.loop = loop_state.SeedLoop.start(run.config, eval_rng, surgery_rng)  # Its own seed (the review's draws).
    make_replay = device_loop.DeviceReplayBuffer if on_device else replay_lib.ReplayBuffer
    run.replay = make_replay(config.replay.capacity, num_envs, n_step=config.replay.n_step,
                             gamma=config.learner.gamma, seed=run.seed)
  schedule = interventions.make_schedule(config, agent)

  # Where each seed starts: its own checkpoint (resume), a saved agent (reincarnation) or nothing.
  sources, load = resumed, "all"
  if resumed is None and config.reincarnate.path:
    load = config.reincarnate.load
    sources = [given or checkpoint_lib.reincarnate(run.config, agent)
               for run, given in zip(runs, reincarnated or [None] * n)]
    for source in sources:
      logging.info("%s", progress.reincarnation_line(source.path, source.loop["frames"], load))
    if load == "all" and len({s.loop["frames"] for s in sources}) > 1:
      raise checkpoint_lib.CheckpointError(
          "reincarnate.load='all' continues every seed at its source's frames, but the sources are at "
          + ", ".join(f"{s.loop['frames']:,} ({s.path})" for s in sources) + ": give sources at one frame count")
  frames, wall_before, info_sums = 0, 0.0, [(None, 0)] * n
  if sources is not None:
    for i, (run, source) in enumerate(zip(runs, sources)):
      fresh = states[i]
      states[i] = source.train_state(fresh, agent.optimizer, load)
      if source.replay is not None and load in ("params+optimizer+replay", "all"):
        run.replay.load_state_dict(source.replay)
      if load == "all":
        keys = source.keys()
        source_seed = (source.meta.get("config") or {}).get("seed", run.seed)
        if resumed is None and source_seed != run.seed:  # A branch with a seed of its own: its own randomness.
          logging.info("reincarnated seed %d from seed %d's agent: keys and replay sampling drawn from seed %d",
                       run.seed, source_seed, run.seed)
          keys = {**keys, "act": act_keys[i], "eval": run.loop.eval_rng, "surgery": run.loop.surgery_rng}
          states[i] = states[i].replace(rng=fresh.rng)
          run.replay.reseed(run.seed)
        act_keys[i] = keys["act"]
        run.loop.restore(source.loop, keys, resumed=resumed is not None)
    if load == "all":
      loop = sources[0].loop  # The shared counters are the same in every seed's checkpoint.
      frames, wall_before = loop["frames"], loop["wall_seconds"]
      info_sums = [(s.loop["info_sum"], s.loop["info_count"]) for s in sources]
      skipped = schedule.due(frames)  # Applied before the save (resume), or before the saved agent's frames.
      if resumed is None and skipped:
        logging.warning("reincarnated at %s frames: dropping the interventions scheduled at or before it: %s; "
                        "schedule them after %s frames", f"{frames:,}",
                        ", ".join(f"{s.name}@{s.frames:,}" for s in skipped), f"{frames:,}")
  cadence = loop_state.Cadence.from_config(config, frames, resumed[0].loop if resumed is not None else None)
  throughput = progress.Throughput(frames, runs[0].loop.updates)
  compilation = progress.Compilation(throughput)
  learner = learner_lib.SeedLearner(agent, states, act_keys, config.seed_batching, compilation)
  learner.load_infos(info_sums)
  # Updates start once the replay holds learning_starts_frames of data (again, after a resume without it).
  learning_starts = config.replay.learning_starts_frames + (frames if len(runs[0].replay) == 0 else 0)

  provenance = provenance_lib.start([run.workdir for run in runs], resumed=resumed is not None)
  for i, (run, state) in enumerate(zip(runs, states)):
    run.recorder = recorder_lib.Recorder.for_run(run.workdir, run.config, frames, resumed=resumed is not None,
                                                 provenance=provenance)
    if resumed is not None:
      run.recorder.write(frames, "resume", {"checkpoint": resumed[i].path, "updates": run.loop.updates})
    else:
      source = sources[i] if sources is not None else None
      run.recorder.write(frames, "run", {
          "game": game, "num_actions": agent.num_actions, **param_counts(state),
          "replay_bytes_per_transition": run.replay.bytes_per_transition,
          **({"num_seeds": n, "seed_batching": learner.batching} if multi else {}),
          **({"reincarnated_from": source.path, "reincarnate_load": load,
              "reincarnated_frames": source.loop["frames"]} if source is not None else {})})
    train_envs = atari.make_envs(game, config.env.protocol, num_envs, env_seed(run.seed, start_frames),
                                 config.env.max_episode_frames)
    if train_envs.action_space.n != agent.num_actions:
      raise ValueError(f"train protocol {config.env.protocol!r} has {train_envs.action_space.n} actions but eval "
                       f"protocol {config.eval.protocol!r} has {agent.num_actions}: use protocols with one action set")
    run.stepper, run.episodes = atari.AtariStepper(train_envs, config.env.protocol), Episodes.zeros(num_envs)
  device = device_loop.DevicePath(config, agent, [run.stepper.envs for run in runs]) if on_device else None
  if multi:
    logging.info("%s: %d seeds %s (%s; %s), %d actions, %s params each, replay %.2f GB each", game, n,
                 [run.seed for run in runs], learner.batching,
                 f"{learner.devices} devices" if learner.batching == "vmap" else "one device", agent.num_actions,
                 f"{networks.count_params(states[0].params):,}", runs[0].replay.nbytes / 1e9)
  elif resumed is None:
    logging.info("%s: %d actions, %s params, replay %.2f GB (%d B/transition)", game, agent.num_actions,
                 f"{networks.count_params(states[0].params):,}", runs[0].replay.nbytes / 1e9,
                 runs[0].replay.bytes_per_transition)
  if resumed is not None:
    logging.info("resuming %s at %s frames, %s updates", f"{n} seeds" if multi else f"from {resumed[0].path}",
                 f"{frames:,}", f"{runs[0].loop.updates:,}")
  stacker = atari.FrameStacker(n * num_envs)
  steps = [run.stepper.reset() for run in runs] if device is None else None
  del states  # The learner's now.

  def wall_seconds() -> float:
    return wall_before + time.time() - throughput.start_time

  def mean_updates() -> int:
    return round(sum(run.loop.updates for run in runs) / n)

  def save_checkpoints():
    if all(run.checkpointer.steps() and run.checkpointer.steps()[-1] == frames for run in runs):
      return
    start, wall = time.time(), wall_seconds()
    for run, state, act_key, (info_sum, info_count) in zip(runs, learner.states, learner.act_keys,
                                                           learner.info_sums()):
      run.loop.flops.advance(agent, state, run.loop.updates)  # Every update so far counted in what is saved.
      run.checkpointer.save(frames, state=state, keys=loop_state.keys_dict(act_key, run.loop),
                            loop=run.loop.to_dict(frames, cadence, info_sum, info_count, wall),
                            replay=run.replay if config.checkpoint.save_replay else None, config=run.config)
    blocked = time.time() - start
    for run in runs:
      run.recorder.write(frames, "checkpoint", {"blocking_seconds": blocked})
    logging.info("saving checkpoint%s @ %s frames (the loop waited %.2f s)", f" of {n} seeds" if multi else "",
                 f"{frames:,}", blocked)

  def run_eval() -> bool:
    for run, state in zip(runs, learner.states):
      next_eval_rng, rng = jax.random.split(run.loop.eval_rng)
      final = frames >= config.total_frames and config.eval.final_num_episodes
      envs = evaluation_envs(run.config, run.seed, final=True) if final else run.eval_envs
      means = run.loop.eval_means
      video = video_lib.due(run.config, run.workdir, frames, means[-1][0] if means else 0)
      results = evaluate(agent, agent.acting_params(state), envs, config.eval.protocol, config.eval.epsilon, rng,
                         stop, video)
      if results is None:  # Stopped: the evaluation stays due, and runs first on resume.
        return False
      run.loop.eval_rng = next_eval_rng
      means.append((frames, record_eval(run.recorder, results, game=game, variant=config.variant, seed=run.seed,
                                        frames=frames)))
      if not multi:
        logging.info("eval @ %s frames: mean return %.1f over %d episodes", f"{frames:,}", means[-1][1],
                     len(results))
    if multi:
      logging.info("eval @ %s frames: mean return %s (seeds %s)", f"{frames:,}",
                   " / ".join(f"{run.loop.eval_means[-1][1]:.1f}" for run in runs), [run.seed for run in runs])
    return True

  def maybe_eval() -> bool:
    if cadence.eval_due(frames):
      if not run_eval():
        return False
      cadence.evaluated()
    return True

  def intervene(i: int, state: dqn.TrainState, name: str, intervention: interventions.Intervention,
                probe_obs: np.ndarray, **extra) -> tuple[dqn.TrainState, dict[str, Any]]:
    """Seed i's state after `intervention`, and its event row (written)."""
    run = runs[i]
    run.loop.surgery_rng, rng = jax.random.split(run.loop.surgery_rng)
    batch = run.replay.sample(config.learner.batch_size) if frames >= learning_starts else None
    probe = batch["obs"] if batch is not None else probe_obs
    fields, rows = run.loop.before_surgery(name, state, batch, agent)  # E.g. expansion's dormant count.
    extra = {**extra, **fields}
    for row in rows:
      run.recorder.write(frames, "event", row)
    run.loop.flops.advance(agent, state, run.loop.updates)  # The updates so far ran on the structure before it.
    new = intervention(state, rng, batch)
    event = {"name": name, **extra, **param_counts(new), **expansion.summary(agent.network, new),
             "max_abs_dq": probe_q_change(agent, state.params, new.params, probe),
             "max_abs_dq_target": probe_q_change(agent, state.target_params, new.target_params, probe)}
    run.recorder.write(frames, "event", event)
    compilation.changed(state, new, name, frames)
    return new, event

  def apply_scheduled(scheduled: interventions.Scheduled, seed_obs: np.ndarray) -> None:
    before = learner.states
    new_states, events = [], []
    for i, state in enumerate(before):
      new, event = intervene(i, state, scheduled.name, scheduled.apply, seed_obs[i])
      new_states.append(new)
      events.append(event)
    learner.set_states(new_states)
    logging.info("%s", progress.event_line(frames, param_counts(before[0]), events))

  def measure_plasticity(seed_obs: np.ndarray) -> None:
    for i, (run, state) in enumerate(zip(runs, learner.states)):
      row = metrics_lib.to_host(compilation.call(
          "the plasticity metrics", metrics_lib.plasticity_metrics, agent, state,
          run.replay.sample(config.metrics.probe_size), state.init_params,
          train_batch_size=config.learner.batch_size, frames=frames))
      run.recorder.write(frames, "plasticity", row)
      for name, surgery_fn, fields in run.loop.on_metrics(frames, row, agent):  # E.g. a trigger's injection.
        who = f"seed {run.seed}: " if multi else ""
        if surgery_fn is None:  # An event only (e.g. the replay ratio switched).
          run.recorder.write(frames, "event", {"name": name, **fields})
          logging.info("%s%s @ %s frames: %s", who, name, f"{frames:,}",
                       ", ".join(f"{k} {v}" for k, v in fields.items()))
          continue
        before = learner.states[i]
        new, event = intervene(i, before, name, surgery_fn, seed_obs[i], **fields)
        learner.set_state(i, new)
        logging.info("%s%s", who, progress.event_line(frames, param_counts(before), [event]))

  def progress_line(epsilon: float, rates: dict[str, float] | None, losses: list[dict[str, float]]) -> str:
    returns = [f"{np.mean(run.loop.recent_returns):.1f}" if run.loop.recent_returns else "-" for run in runs]
    eta = throughput.eta(frames, config.total_frames, learning_starts)
    done = f"frames {frames:,}/{config.total_frames:,} ({100 * frames / config.total_frames:.0f}%)"
    if rates is None:  # An early line: the rate so far.
      fps = throughput.rate(frames) or 0
      if multi:
        return f"{done} | {n} seeds × {fps:.0f} fps | ε {epsilon:.3f} | return {' / '.join(returns)} | {eta}"
      return f"{done} | {fps:.0f} fps | ε {epsilon:.3f} | return {returns[0]} | {eta}"
    if multi:
      return (f"{done} | {n} seeds × {rates['fps']:.0f} fps = {n * rates['fps']:.0f} fps | "
              f"{rates['updates_per_s']:.1f} upd/s per seed | ε {epsilon:.3f} | return {' / '.join(returns)} | {eta}")
    loss = f"{losses[0]['loss']:.4f}" if "loss" in losses[0] else "-"
    return (f"{done} | {rates['fps']:.0f} fps | {rates['updates_per_s']:.1f} upd/s | ε {epsilon:.3f} | "
            f"return {returns[0]} | loss {loss} | {eta}")

  def host_step() -> tuple[np.ndarray, float]:
    """One iteration of the host path: every env's agent step, the updates due, the envs' next step."""
    nonlocal frames, steps
    obs = stacker.push(np.concatenate([st.frame for st in steps]), np.concatenate([st.first for st in steps]))
    seed_obs = obs.reshape(n, num_envs, *obs.shape[1:])
    epsilon = loop_state.epsilon(config, frames)
    actions = learner.act(seed_obs, epsilon)
    for run, step, seed_actions in zip(runs, steps, actions):
      reward = step.reward if config.learner.reward_clip == 0 else np.clip(
          step.reward, -config.learner.reward_clip, config.learner.reward_clip)
      run.replay.add(step.frame, seed_actions, reward, step.terminal, step.last, step.first)
      run.stepper.send(seed_actions)  # The envs step on envpool's threads while the updates are dispatched.
    frames += num_envs * atari.FRAME_SKIP

    if frames >= learning_starts:  # The updates see the replay as it is after this add, as before.
      batches = []
      for run in runs:  # Each seed's updates due at its replay ratio, as one [due, B] draw.
        due = run.loop.take_updates_due(config, frames)
        batches.append(run.loop.sample(run.replay, due, config.learner.batch_size) if due else None)
      learner.update(batches, frames)  # Runs async; one transfer per seed.

    steps = [run.stepper.recv() for run in runs]
    for run, step in zip(runs, steps):
      for ret, length in run.episodes.track(step):
        run.recorder.write(frames, "episode", {"episode_return": ret, "episode_frames": length})
        run.loop.add_episode(ret)
    return seed_obs, epsilon

  def next_boundary() -> int:
    """The next frame count at which anything between iterations is due (the device path's chunks end there)."""
    due = [cadence.next_log, cadence.next_eval, config.total_frames, cadence.next_metrics, cadence.next_save,
           *(s.frames for s in schedule.pending)]
    return min(f for f in due if f is not None and f > frames)

  def device_chunk() -> tuple[jax.Array, float]:
    nonlocal frames
    frames, seed_obs, epsilon, finished = device.advance(runs, learner, frames, next_boundary(), learning_starts,
                                                         compilation)
    for run, episodes in zip(runs, finished):
      for at, ret, length in episodes:
        run.recorder.write(at, "episode", {"episode_return": ret, "episode_frames": length})
        run.loop.add_episode(ret)
    return seed_obs, epsilon

  maybe_eval()  # Only an evaluation a stopped run left due.
  while frames < config.total_frames and not stop():
    if device is not None:
      seed_obs, epsilon = device_chunk()
    else:
      seed_obs, epsilon = host_step()

    for scheduled in schedule.due(frames):
      apply_scheduled(scheduled, seed_obs)

    if cadence.metrics_due(frames) and frames >= learning_starts:
      measure_plasticity(seed_obs)

    if cadence.log_due(frames):
      rates = throughput.tick(frames, mean_updates())
      losses = learner.info_means()
      for run, state, info in zip(runs, learner.states, losses):
        update_flops = run.loop.flops.advance(agent, state, run.loop.updates)
        scalars = {**rates, "epsilon": epsilon, "updates": run.loop.updates,
                   "replay_ratio": run.loop.replay_ratio(config, frames), **({"num_seeds": n} if multi else {}),
                   **param_counts(state), **expansion.summary(agent.network, state), **info,
                   "update_flops": update_flops, "train_flops": run.loop.flops.train_flops}
        if run.loop.recent_returns:
          scalars["episode_return_recent"] = float(np.mean(run.loop.recent_returns))
        run.recorder.write(frames, "train", scalars)
        run.recorder.flush()
      logging.info("%s", progress_line(epsilon, rates, losses))
    elif throughput.early_line(frames):  # Console only: the metrics rows keep the log period.
      logging.info("%s", progress_line(epsilon, None, []))

    if not maybe_eval():
      break
    if cadence.save_due(frames):
      save_checkpoints()

  if not stop() and (not runs[0].loop.eval_means or runs[0].loop.eval_means[-1][0] != frames):
    run_eval()
  save_checkpoints()
  for run in runs:
    run.checkpointer.wait()
    run.recorder.close()
  if stop():
    raise Preempted(stop.signum, frames)
  summaries, wall = [], wall_seconds()
  for run, state in zip(runs, learner.states):
    run.loop.flops.advance(agent, state, run.loop.updates)
    means = run.loop.eval_means
    summary = {"game": game, "variant": config.variant, "seed": run.seed, "frames": frames,
               "updates": run.loop.updates, "episodes": run.loop.episodes, "final_eval_return": means[-1][1],
               "best_eval_return": max(m for _, m in means), "eval": means, "wall_seconds": wall,
               **({"num_seeds": n} if multi else {}), **param_counts(state),
               "train_flops": run.loop.flops.train_flops, "provenance": provenance}
    workdir_lib.write_json(os.path.join(run.workdir, "summary.json"), summary)
    if config.log.learning_curve:
      summary["learning_curve"] = learning_curve.plot_learning_curve(
          run.workdir, title=f"{game} · {config.variant} · seed {run.seed}")
    summaries.append(summary)
  return summaries
