"""Many seeds in one process: `config.num_seeds = N` trains N independent agents.

Seed n (config.seed … config.seed + N − 1) owns everything a single-seed run
owns (params, optimizer state, replay, RNG keys, training and evaluation envs),
made exactly as `train.train` makes them with config.seed = n, and writes a
complete single-run workdir WORKDIR/seed_<n>: config.json (seed n, num_seeds 1),
metrics.jsonl, eval.csv (with its seed column), checkpoints/, summary.json.
Every tool that reads a run reads it, a sweep's layout (<game>/<variant>/seed_<n>)
is kept, and one seed can be resumed alone or reincarnated into a new run.

The seeds share the loop: one frame counter, one intervention schedule (every
seed injects at the same frame), one log / eval / metrics / checkpoint cadence,
and the learner (`SeedLearner`), which acts and updates for all seeds at once:

- "vmap": the TrainStates stacked on a leading seed axis go through
  jax.vmap(agent.update) / jax.vmap(agent.act) in one jitted call, sharded over
  the local devices (jax.shard_map over a ("seed",) mesh: each device runs its
  own seeds, with no communication between them);
- "loop": one jitted single-seed call per seed, dispatched one after another
  (each computes while the next is dispatched).
`config.seed_batching = "auto"` takes vmap on GPU/TPU and loop on CPU, where XLA
makes a conv vmapped over its kernel a grouped convolution that runs ~4× slower
than the separate convs (docs/performance.md).

Resume: the newest frame count at which every seed has a readable checkpoint;
rows past it are dropped, as in a single-seed resume. Per-seed decisions that
would desynchronize the seeds (metric-triggered injection, adaptive replay
ratio, expansion) and reincarnation are refused by config.validate.
"""

import dataclasses
import functools
import json
import os
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from plasticity_rl import checkpoint as checkpoint_lib
from plasticity_rl import interventions
from plasticity_rl import metrics as metrics_lib
from plasticity_rl import networks
from plasticity_rl import progress
from plasticity_rl import provenance as provenance_lib
from plasticity_rl import recorder as recorder_lib
from plasticity_rl import replay as replay_lib
from plasticity_rl import train
from plasticity_rl import triggers
from plasticity_rl import video as video_lib
from plasticity_rl import workdir as workdir_lib
from plasticity_rl.agents import dqn
from plasticity_rl.analysis import learning_curve
from plasticity_rl.envs import atari


def seeds_of(config) -> list[int]:
  return [config.seed + i for i in range(config.num_seeds)]


def seed_workdir(workdir: str, seed: int) -> str:
  return os.path.join(workdir, f"seed_{seed}")


seed_config = workdir_lib.seed_config  # The single-seed config of one seed (its workdir's config.json).


def stack(trees: list) -> Any:
  """Trees of one structure -> one tree with a leading axis (PRNG keys included)."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, num: int) -> list:
  return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(num)]


def resolve_batching(batching: str) -> str:
  if batching == "auto":
    return "loop" if jax.default_backend() == "cpu" else "vmap"
  return batching


def seed_mesh(num_seeds: int) -> jax.sharding.Mesh:
  """A ("seed",) mesh over the most local devices that divide num_seeds evenly."""
  devices = jax.local_devices()
  count = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
  return jax.sharding.Mesh(np.array(devices[:count]), ("seed",))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _update_all(agent: dqn.DQNAgent, mesh: jax.sharding.Mesh, states, batches):
  spec = jax.sharding.PartitionSpec("seed")
  return jax.shard_map(jax.vmap(agent.update), mesh=mesh, in_specs=spec, out_specs=spec)(states, batches)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _act_all(agent: dqn.DQNAgent, mesh: jax.sharding.Mesh, params, obs, rngs, epsilon):
  spec, none = jax.sharding.PartitionSpec("seed"), jax.sharding.PartitionSpec()
  act = jax.vmap(agent.act, in_axes=(0, 0, 0, None))
  return jax.shard_map(act, mesh=mesh, in_specs=(spec, spec, spec, none), out_specs=spec)(params, obs, rngs, epsilon)


_stack_infos = jax.jit(lambda infos: stack(infos))


class SeedLearner:
  """N agents' TrainStates and act keys, acted and updated together (see the module docstring)."""

  def __init__(self, agent: dqn.DQNAgent, states: list[dqn.TrainState], act_keys: list[jax.Array], batching: str):
    self.agent, self.num_seeds = agent, len(states)
    self.batching = resolve_batching(batching)
    if self.batching not in ("vmap", "loop"):
      raise ValueError(f"unknown seed batching {batching!r}; allowed: auto, vmap, loop")
    self.mesh = seed_mesh(self.num_seeds) if self.batching == "vmap" else None
    self.set_states(states)
    self.set_act_keys(act_keys)

  def _put(self, tree):
    sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("seed"))
    return jax.device_put(tree, sharding)

  @property
  def states(self) -> list[dqn.TrainState]:
    return unstack(self._states, self.num_seeds) if self.batching == "vmap" else list(self._states)

  def set_states(self, states: list[dqn.TrainState]) -> None:
    self._states = self._put(stack(states)) if self.batching == "vmap" else list(states)

  @property
  def act_keys(self) -> list[jax.Array]:
    return unstack(self._keys, self.num_seeds) if self.batching == "vmap" else list(self._keys)

  def set_act_keys(self, keys: list[jax.Array]) -> None:
    self._keys = self._put(stack(keys)) if self.batching == "vmap" else list(keys)

  def act(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
    """obs [N, envs, …] -> ε-greedy actions [N, envs] (each seed with its own params and key)."""
    if self.batching == "vmap":
      params = self._states.params
      actions, self._keys = _act_all(self.agent, self.mesh, params, self._put(obs), self._keys, epsilon)
      return np.asarray(actions)
    out = []
    for i, state in enumerate(self._states):
      actions, self._keys[i] = self.agent.act(state.params, obs[i], self._keys[i], epsilon)
      out.append(actions)
    return np.stack([np.asarray(a) for a in out])

  def update(self, batches: list[dict[str, np.ndarray]]) -> dict[str, jax.Array]:
    """One update of every seed on its own batch; returns the infos stacked over seeds (on device)."""
    if self.batching == "vmap":
      self._states, info = _update_all(self.agent, self.mesh, self._states, self._put(
          {k: np.stack([b[k] for b in batches]) for k in batches[0]}))
      return info
    infos = []
    for i, batch in enumerate(batches):
      self._states[i], info = self.agent.update(self._states[i], batch)
      infos.append(info)
    return _stack_infos(infos)


@dataclasses.dataclass
class _Seed:
  """What one seed owns on the host, besides its learner state."""

  seed: int
  workdir: str
  config: Any
  checkpointer: checkpoint_lib.Checkpointer
  # Made once the run starts (not for a finished one):
  eval_envs: Any = None
  replay: replay_lib.ReplayBuffer | None = None
  eval_rng: jax.Array | None = None
  surgery_rng: jax.Array | None = None
  recorder: recorder_lib.Recorder | None = None
  stepper: atari.AtariStepper | None = None
  episodes: train.Episodes | None = None
  num_episodes: int = 0
  recent_returns: list[float] = dataclasses.field(default_factory=list)
  eval_means: list[tuple[int, float]] = dataclasses.field(default_factory=list)


def _common_resume(seeds: list[_Seed], optimizer, with_replay: bool) -> list[checkpoint_lib.Restored] | None:
  """Every seed's checkpoint at the newest frame count all of them can read; None if they have none in common."""
  common = sorted(set.intersection(*(set(s.checkpointer.steps()) for s in seeds)))
  if not common and any(s.checkpointer.steps() for s in seeds):
    logging.warning("the seeds have no checkpoint at a common frame count: starting again from 0 frames")
  for step in reversed(common):
    try:
      return [s.checkpointer.restore_step(step, optimizer=optimizer, with_replay=with_replay) for s in seeds]
    except checkpoint_lib.CheckpointError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("checkpoint step %s is unreadable for a seed (%s); trying the previous one", step,
                      checkpoint_lib.describe_error(e))
  if common:
    raise checkpoint_lib.CheckpointError(f"no frame count at which every seed has a readable checkpoint ({common})")
  return None


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
      seeds.append(_Seed(seed=seed, workdir=path, config=single, checkpointer=checkpointer))
    summaries = [train.finished_summary(s.config, s.workdir, s.checkpointer) for s in seeds]
    if all(summary is not None for summary in summaries):
      logging.info("%s: every seed finished; nothing to do", workdir)
      return summaries
    with train.StopSignals() as stop:
      return _train_seeds(config, workdir, seeds, stop)
  finally:
    for s in seeds:
      s.checkpointer.close()
    for lock in locks:
      lock.close()


def _train_seeds(config, workdir: str, seeds: list[_Seed], stop: train.StopSignals) -> list[dict[str, Any]]:
  game, num_envs, n = config.game, config.env.num_envs, len(seeds)
  for s in seeds:
    s.eval_envs = train.evaluation_envs(config, s.seed)
  num_actions = seeds[0].eval_envs.action_space.n
  agent = dqn.make_agent(config, num_actions)
  resumed = _common_resume(seeds, agent.optimizer, config.checkpoint.save_replay)
  if resumed is not None:
    for s, r in zip(seeds, resumed):
      s.checkpointer.set_aside([step for step in s.checkpointer.steps() if step > r.step])

  states, act_keys = [], []
  for s in seeds:
    init_rng, act_rng, s.eval_rng, s.surgery_rng = jax.random.split(jax.random.key(s.seed), 4)
    states.append(agent.init(init_rng))
    act_keys.append(act_rng)
    s.replay = replay_lib.ReplayBuffer(config.replay.capacity, num_envs, n_step=config.replay.n_step,
                                       gamma=config.learner.gamma, seed=s.seed)
  schedule = interventions.make_schedule(config, agent)
  frames, updates_due, num_updates, info_sum, info_count, wall_before = 0, 0.0, 0, None, 0, 0.0
  next_log, next_eval = config.log.period_frames, config.eval.period_frames
  next_metrics = config.metrics.period_frames or None
  if resumed is not None:
    for i, (s, r) in enumerate(zip(seeds, resumed)):
      states[i] = r.train_state(states[i], agent.optimizer, "all")
      if r.replay is not None:
        s.replay.load_state_dict(r.replay)
      keys, loop = r.keys(), r.loop
      act_keys[i], s.eval_rng, s.surgery_rng = keys["act"], keys["eval"], keys["surgery"]
      s.num_episodes, s.recent_returns = loop["episodes"], loop["recent_returns"]
      s.eval_means = [(int(f), float(m)) for f, m in loop["eval_means"]]
    loop = resumed[0].loop  # The shared counters are the same in every seed's checkpoint.
    frames, updates_due, num_updates = loop["frames"], loop["updates_due"], loop["updates"]
    info_count, wall_before = loop["info_count"], loop["wall_seconds"]
    next_log, next_eval, next_metrics = loop["next_log"], loop["next_eval"], loop.get("next_metrics")
    if info_count:
      info_sum = {k: jnp.asarray([r.loop["info_sum"][k] for r in resumed], jnp.float32)
                  for k in resumed[0].loop["info_sum"]}
    schedule.due(frames)  # Applied before the save.
  learner = SeedLearner(agent, states, act_keys, config.seed_batching)
  learning_starts = config.replay.learning_starts_frames + (frames if len(seeds[0].replay) == 0 else 0)
  next_save = train.next_multiple(frames, config.checkpoint.period_frames) if config.checkpoint.period_frames else None

  provenance = provenance_lib.start([s.workdir for s in seeds], resumed=resumed is not None)
  for s, state in zip(seeds, states):
    s.recorder = recorder_lib.Recorder.for_run(s.workdir, s.config, frames, resumed=resumed is not None,
                                               provenance=provenance)
    if resumed is not None:
      s.recorder.write(frames, "resume", {"checkpoint": s.checkpointer.step_path(frames), "updates": num_updates})
    else:
      s.recorder.write(frames, "run", {"game": game, "num_actions": num_actions, **train.param_counts(state),
                                       "replay_bytes_per_transition": s.replay.bytes_per_transition,
                                       "num_seeds": n, "seed_batching": learner.batching})
    train_envs = atari.make_envs(game, config.env.protocol, num_envs, train.env_seed(s.seed, frames),
                                 config.env.max_episode_frames)
    s.stepper, s.episodes = atari.AtariStepper(train_envs, config.env.protocol), train.Episodes.zeros(num_envs)
  logging.info("%s: %d seeds %s (%s; %s), %d actions, %s params each, replay %.2f GB each", game, n,
               seeds_of(config), learner.batching,
               f"{learner.mesh.devices.size} devices" if learner.mesh is not None else "one device", num_actions,
               f"{networks.count_params(states[0].params):,}", seeds[0].replay.nbytes / 1e9)
  if resumed is not None:
    logging.info("resuming %d seeds at %s frames, %s updates", n, f"{frames:,}", f"{num_updates:,}")
  stacker = atari.FrameStacker(n * num_envs)
  steps = [s.stepper.reset() for s in seeds]
  throughput = progress.Throughput(frames, num_updates)
  compilation = progress.Compilation(throughput)
  update_name = f"the update ({learner.batching} over {n} seeds)"

  def save_checkpoints():
    if seeds[0].checkpointer.steps() and seeds[0].checkpointer.steps()[-1] == frames:
      return
    start = time.time()
    host_sum = None if info_sum is None else jax.device_get(info_sum)
    for i, (s, state, act_key) in enumerate(zip(seeds, learner.states, learner.act_keys)):
      loop = {"frames": frames, "updates": num_updates, "episodes": s.num_episodes, "updates_due": updates_due,
              "next_log": next_log, "next_eval": next_eval, "recent_returns": s.recent_returns,
              "eval_means": s.eval_means, "info_count": info_count, "next_metrics": next_metrics,
              "trigger": triggers.to_dict(triggers.init_trigger(config.injection.trigger)),
              "expansion_review": None, "replay_ratio_state": None,
              "info_sum": None if host_sum is None else {k: float(v[i]) for k, v in host_sum.items()},
              "wall_seconds": wall_before + time.time() - throughput.start_time}
      s.checkpointer.save(frames, state=state, keys={"act": act_key, "eval": s.eval_rng, "surgery": s.surgery_rng},
                          loop=loop, replay=s.replay if config.checkpoint.save_replay else None, config=s.config)
    blocked = time.time() - start
    for s in seeds:
      s.recorder.write(frames, "checkpoint", {"blocking_seconds": blocked})
    logging.info("saving checkpoint of %d seeds @ %s frames (the loop waited %.2f s)", n, f"{frames:,}", blocked)

  def run_eval() -> bool:
    for s, state in zip(seeds, learner.states):
      next_eval_rng, rng = jax.random.split(s.eval_rng)
      final = frames >= config.total_frames and config.eval.final_num_episodes
      envs = train.evaluation_envs(config, s.seed, final=True) if final else s.eval_envs
      video = video_lib.due(config, s.workdir, frames, s.eval_means[-1][0] if s.eval_means else 0)
      results = train.evaluate(agent, state.params, envs, config.eval.protocol, config.eval.epsilon, rng, stop,
                               video)
      if results is None:
        return False
      s.eval_rng = next_eval_rng
      s.eval_means.append((frames, train.record_eval(s.recorder, results, game=game, variant=config.variant,
                                                     seed=s.seed, frames=frames)))
    logging.info("eval @ %s frames: mean return %s (seeds %s)", f"{frames:,}",
                 " / ".join(f"{s.eval_means[-1][1]:.1f}" for s in seeds), seeds_of(config))
    return True

  def maybe_eval() -> bool:
    nonlocal next_eval
    if frames >= next_eval:
      if not run_eval():
        return False
      next_eval += config.eval.period_frames
    return True

  def apply_intervention(scheduled: interventions.Scheduled) -> None:
    new_states, events, before = [], [], learner.states
    for s, state, seed_obs in zip(seeds, before, np.split(obs, n)):
      s.surgery_rng, rng = jax.random.split(s.surgery_rng)
      batch = s.replay.sample(config.learner.batch_size) if frames >= learning_starts else None
      probe = batch["obs"] if batch is not None else seed_obs
      new = scheduled.apply(state, rng, batch)
      event = {"name": scheduled.name, **train.param_counts(new),
               "max_abs_dq": train.probe_q_change(agent, state.params, new.params, probe),
               "max_abs_dq_target": train.probe_q_change(agent, state.target_params, new.target_params, probe)}
      s.recorder.write(frames, "event", event)
      new_states.append(new)
      events.append(event)
    learner.set_states(new_states)
    logging.info("%s", progress.event_line(frames, train.param_counts(before[0]), events))
    compilation.changed(before[0], new_states[0], scheduled.name, frames)

  maybe_eval()
  while frames < config.total_frames and not stop():
    obs = stacker.push(np.concatenate([st.frame for st in steps]), np.concatenate([st.first for st in steps]))
    epsilon = dqn.linear_epsilon(frames, start=config.exploration.epsilon_start, end=config.exploration.epsilon_end,
                                 decay_frames=config.exploration.decay_frames,
                                 offset_frames=config.replay.learning_starts_frames)
    actions = learner.act(obs.reshape(n, num_envs, *obs.shape[1:]), epsilon)
    for s, step, seed_actions in zip(seeds, steps, actions):
      reward = step.reward if config.learner.reward_clip == 0 else np.clip(
          step.reward, -config.learner.reward_clip, config.learner.reward_clip)
      s.replay.add(step.frame, seed_actions, reward, step.terminal, step.last, step.first)
      s.stepper.send(seed_actions)
    frames += num_envs * atari.FRAME_SKIP

    if frames >= learning_starts:
      updates_due += num_envs * config.learner.replay_ratio
      while updates_due >= 1.0:
        info = compilation.call(update_name, learner.update,
                                [s.replay.sample(config.learner.batch_size) for s in seeds], frames=frames)
        info_sum = info if info_sum is None else train.accumulate(info_sum, info)
        info_count += 1
        num_updates += 1
        updates_due -= 1.0

    steps = [s.stepper.recv() for s in seeds]
    for s, step in zip(seeds, steps):
      for ret, length in s.episodes.track(step):
        s.recorder.write(frames, "episode", {"episode_return": ret, "episode_frames": length})
        s.recent_returns = (s.recent_returns + [ret])[-20:]
        s.num_episodes += 1

    for scheduled in schedule.due(frames):
      apply_intervention(scheduled)

    if next_metrics is not None and frames >= next_metrics:
      next_metrics = train.next_multiple(frames, config.metrics.period_frames)
      if frames >= learning_starts:
        for s, state in zip(seeds, learner.states):
          s.recorder.write(frames, "plasticity", metrics_lib.to_host(compilation.call(
              "the plasticity metrics", metrics_lib.plasticity_metrics, agent, state,
              s.replay.sample(config.metrics.probe_size), state.init_params,
              train_batch_size=config.learner.batch_size, frames=frames)))

    if frames >= next_log:
      next_log += config.log.period_frames
      rates = throughput.tick(frames, num_updates)
      host_sum = jax.device_get(info_sum) if info_count else None
      for i, (s, state) in enumerate(zip(seeds, learner.states)):
        scalars = {**rates, "epsilon": epsilon, "updates": num_updates, "replay_ratio": config.learner.replay_ratio,
                   "num_seeds": n, **train.param_counts(state)}
        if host_sum is not None:
          scalars.update({k: float(v[i]) / info_count for k, v in host_sum.items()})
        if s.recent_returns:
          scalars["episode_return_recent"] = float(np.mean(s.recent_returns))
        s.recorder.write(frames, "train", scalars)
        s.recorder.flush()
      info_sum, info_count = None, 0
      returns = [f"{np.mean(s.recent_returns):.1f}" if s.recent_returns else "-" for s in seeds]
      logging.info("frames %s/%s (%.0f%%) | %d seeds × %.0f fps = %.0f fps | %.1f upd/s per seed | ε %.3f | "
                   "return %s | %s", f"{frames:,}", f"{config.total_frames:,}", 100 * frames / config.total_frames,
                   n, rates["fps"], n * rates["fps"], rates["updates_per_s"], epsilon, " / ".join(returns),
                   throughput.eta(frames, config.total_frames, learning_starts))
    elif throughput.early_line(frames):  # Console only: the metrics rows keep the log period.
      logging.info("frames %s/%s (%.0f%%) | %d seeds × %.0f fps | ε %.3f | return %s | %s", f"{frames:,}",
                   f"{config.total_frames:,}", 100 * frames / config.total_frames, n, throughput.rate(frames) or 0,
                   epsilon, " / ".join(f"{np.mean(s.recent_returns):.1f}" if s.recent_returns else "-" for s in seeds),
                   throughput.eta(frames, config.total_frames, learning_starts))

    if not maybe_eval():
      break
    if next_save is not None and frames >= next_save:
      next_save = train.next_multiple(frames, config.checkpoint.period_frames)
      save_checkpoints()

  if not stop() and (not seeds[0].eval_means or seeds[0].eval_means[-1][0] != frames):
    run_eval()
  save_checkpoints()
  for s in seeds:
    s.checkpointer.wait()
    s.recorder.close()
  if stop():
    raise train.Preempted(stop.signum, frames)
  summaries = []
  wall = wall_before + time.time() - throughput.start_time
  for s, state in zip(seeds, learner.states):
    summary = {"game": game, "variant": config.variant, "seed": s.seed, "frames": frames, "updates": num_updates,
               "episodes": s.num_episodes, "final_eval_return": s.eval_means[-1][1],
               "best_eval_return": max(m for _, m in s.eval_means), "eval": s.eval_means, "wall_seconds": wall,
               "num_seeds": n, **train.param_counts(state), "provenance": provenance}
    workdir_lib.write_json(os.path.join(s.workdir, "summary.json"), summary)
    if config.log.learning_curve:
      summary["learning_curve"] = learning_curve.plot_learning_curve(
          s.workdir, title=f"{game} · {config.variant} · seed {s.seed}")
    summaries.append(summary)
  return summaries
