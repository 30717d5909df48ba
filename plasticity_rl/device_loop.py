"""The device path (`config.loop.backend = "device"`): acting, env steps, replay adds and the updates due of
K agent steps in one jitted `lax.scan`, with no host round-trip inside a chunk.

The host path (train.py) costs per agent step some Python work, one blocking device→host read (the actions)
and several host→device uploads (the batches). Here one chunk of K steps is one jitted call:

    for each of the K steps (lax.scan; a step past the chunk's length is skipped with lax.cond):
      obs = the actor's stack (envs/xla_actor.py: the received frame pushed, FrameStacker's rule)
      actions = agent.act(acting params, obs, act key, ε_k)
      replay = device_replay.add(replay, frame, actions, clipped reward, terminal, last, first)
      envs step through envpool's XLA interface        (envs/xla_actor.py)
      due_k updates: sample a batch from the device replay, agent._update   (lax.fori_loop)

and what the host path does between steps — interventions, plasticity metrics, logs, evaluations,
checkpoints — happens between chunks: `plan` cuts a chunk at the next frame any of them is due, so they run
at the frames they run at on the host path.

What stays on the host, exactly as the host path computes it (`plan`): ε_k (the same Python arithmetic, cast
to float32 as jit casts the host path's Python float) and the updates due at each step (the replay ratio in
force, its fractional remainder `SeedLoop.updates_due` in double precision). So the device path acts with the
same ε and makes the same number of updates at the same steps; its envs, frame stacks, replay contents and
act keys follow the host path's bit for bit (tests/test_device_loop.py). The one difference by construction:
the replay's sampling draws from a JAX key (`DeviceReplayBuffer.key`, split once per batch) instead of the
host replay's numpy generator, so the batches — and from the first update on, the params — are another draw
of the same distribution (device_replay.py: the same uniform sampling over valid (env, t)).

Seeds: each seed's chunk is its own jitted call (seeds one after another, as seed_batching="loop"); vmapping
seeds on the device path needs a batching rule for envpool's XLA call, which it lacks (docs/performance.md).
A loop hook that replaces the learner's sampler (expansion's experience review) has no device version: the
device path refuses it (config.validate).
"""

import dataclasses
import functools
import json
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from plasticity_rl import device_replay
from plasticity_rl import interventions
from plasticity_rl import loop_state
from plasticity_rl.agents import dqn
from plasticity_rl.envs import atari
from plasticity_rl.envs import xla_actor

BACKENDS = ("host", "device", "auto")
# Where the device path was measured faster than the host path (docs/performance.md, "device path"): "auto"
# takes it on these JAX backends only. On this project's 2-core CPU it was not; no GPU measurement yet.
DEVICE_FASTER_ON: tuple[str, ...] = ()


def resolve_backend(backend: str) -> str:
  """"host" or "device"; ValueError naming the allowed values for anything else."""
  if backend not in BACKENDS:
    raise ValueError(f"unknown loop.backend {backend!r}; allowed: {', '.join(BACKENDS)}")
  if backend == "auto":
    return "device" if jax.default_backend() in DEVICE_FASTER_ON else "host"
  return backend


def host_only_sampler(config) -> str | None:
  """The name of the first intervention whose loop hook replaces the learner's sampler (no device version), or
  None."""
  for hook in interventions.learner_hooks(config):
    if type(hook).sample is not interventions.Hooks.sample:
      return hook.name
  return None


class DeviceReplayBuffer:
  """A device replay (device_replay.py) and its sampling key, with the host ReplayBuffer's methods that the
  loop calls between chunks (probe batches, surgery batches, checkpoints, reincarnation)."""

  def __init__(self, capacity: int, num_envs: int, *, n_step: int, gamma: float, seed: int,
               frame_shape=atari.FRAME_SHAPE, stack_size: int = 4):
    self.replay = device_replay.init(capacity, num_envs, frame_shape=frame_shape, stack_size=stack_size,
                                     n_step=n_step, gamma=gamma)
    self.key = replay_key(seed)

  @property
  def num_envs(self) -> int:
    return self.replay.num_envs

  @property
  def capacity(self) -> int:
    return self.replay.capacity

  @property
  def nbytes(self) -> int:
    return self.replay.nbytes

  @property
  def bytes_per_transition(self) -> float:
    return self.nbytes / self.capacity

  def __len__(self) -> int:
    return self.num_envs * min(int(self.replay.num_added), self.replay.capacity_per_env)

  def _split(self) -> jax.Array:
    self.key, key = jax.random.split(self.key)
    return key

  def sample(self, batch_size: int, oldest_fraction: float | None = None) -> dict[str, jax.Array]:
    return _sample(self.replay, self._split(), batch_size, oldest_fraction)

  def sample_oldest(self, batch_size: int, fraction: float) -> dict[str, jax.Array]:
    return self.sample(batch_size, oldest_fraction=fraction)

  def sample_many(self, num_batches: int, batch_size: int) -> dict[str, jax.Array]:
    return _sample_many(self.replay, self._split(), num_batches, batch_size)

  def state_dict(self) -> dict[str, Any]:
    """ReplayBuffer.state_dict's form (checkpoint.py saves either), the key as "rng_state" JSON bytes."""
    state = device_replay.state_dict(self.replay)
    key = {"jax_key": np.asarray(jax.random.key_data(self.key)).tolist()}
    return {**state, "rng_state": np.frombuffer(json.dumps(key).encode(), np.uint8).copy()}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    """Restores `state_dict()` (or a host ReplayBuffer's: its contents, and a key derived from its generator
    state, since a numpy stream has no JAX counterpart)."""
    r = self.replay
    self.replay = device_replay.from_state_dict(state, stack_size=r.stack_size, n_step=r.n_step, gamma=r.gamma,
                                                frame_shape=r.frame_shape)
    saved = json.loads(np.asarray(state["rng_state"], np.uint8).tobytes().decode())
    if "jax_key" in saved:
      self.key = jax.random.wrap_key_data(jnp.asarray(saved["jax_key"], jnp.uint32))
    else:
      self.key = jax.random.key(int(np.random.SeedSequence(saved["state"]["state"] % 2**63).generate_state(1)[0]))

  def reseed(self, seed: int) -> None:
    self.key = replay_key(seed)


def replay_key(seed: int) -> jax.Array:
  """The device replay's sampling key of a run seed (a stream of its own: fold_in of the seed's key)."""
  return jax.random.fold_in(jax.random.key(seed), 0x5EED)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _sample(replay, key, batch_size, oldest_fraction):
  return device_replay.sample(replay, key, batch_size, oldest_fraction)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _sample_many(replay, key, num_batches, batch_size):
  return device_replay.sample_many(replay, key, num_batches, batch_size)


class Plan(NamedTuple):
  """One chunk's per-step inputs, computed on the host as the host path computes them (`plan`)."""

  epsilon: np.ndarray  # float32 [K]
  due: np.ndarray  # int32 [K]: updates after step k's add
  on: np.ndarray  # bool [K]: steps past the chunk's length are skipped
  steps: int  # the chunk's length (≤ K)


def steps_to(frames: int, boundary: int, frames_per_step: int) -> int:
  """Agent steps until the frame count reaches `boundary` (at least one)."""
  return max(1, -(-(boundary - frames) // frames_per_step))


def plan(config, seed_loop, frames: int, steps: int, chunk_steps: int, learning_starts: int) -> Plan:
  """ε and the updates due of the next `steps` agent steps, from `frames`; advances `seed_loop`'s update
  counters as the host loop does, step by step (train.run_seeds)."""
  num_envs = config.env.num_envs
  epsilon = np.zeros(chunk_steps, np.float32)
  due = np.zeros(chunk_steps, np.int32)
  for k in range(steps):
    epsilon[k] = loop_state.epsilon(config, frames)
    frames += num_envs * atari.FRAME_SKIP
    if frames >= learning_starts:
      due[k] = seed_loop.take_updates_due(config, frames)
  return Plan(epsilon, due, np.arange(chunk_steps) < steps, steps)


class Carry(flax.struct.PyTreeNode):
  """What a chunk carries from step to step (one seed)."""

  state: dqn.TrainState
  act_key: jax.Array
  actor: xla_actor.ActorState
  step: xla_actor.Step  # The step received last (its frame is pushed and stored at the next step).
  stack: jax.Array  # uint8 [E, 84, 84, S]: the observations acted on last (an intervention's probe).
  replay: device_replay.DeviceReplay
  replay_key: jax.Array
  info_sum: dict[str, jax.Array]


def run_chunk(agent: dqn.DQNAgent, actor: xla_actor.XlaActor, batch_size: int, reward_clip: float, carry: Carry,
              epsilon: jax.Array, due: jax.Array, on: jax.Array) -> tuple[Carry, xla_actor.Finished]:
  """The chunk's agent steps (module docstring), jitted: one compile per agent, actor and chunk length. The
  carry's TrainState and replay are donated (their buffers hold the result); the rest is small, and may share
  buffers (a reset's lives are the step's and the actor's), which donating would refuse."""
  return _run_chunk(agent, actor, batch_size, reward_clip, carry.state, carry.replay,
                    carry.replace(state=None, replay=None), epsilon, due, on)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3), donate_argnums=(4, 5))
def _run_chunk(agent, actor, batch_size, reward_clip, state, replay, carry: Carry, epsilon, due, on):
  carry = carry.replace(state=state, replay=replay)

  def update(_, x):
    state, key, info_sum, replay = x
    key, draw = jax.random.split(key)
    state, info = agent._update(state, device_replay.sample(replay, draw, batch_size))  # pylint: disable=protected-access
    return state, key, jax.tree.map(jnp.add, info_sum, info), replay

  def step(c: Carry, eps, n):
    stack = c.actor.stack  # The received step's frame pushed (xla_actor: FrameStacker's rule).
    actions, act_key = agent.act(agent.acting_params(c.state), stack, c.act_key, eps)
    reward = c.step.reward if reward_clip == 0 else jnp.clip(c.step.reward, -reward_clip, reward_clip)
    replay = device_replay.add(c.replay, c.step.frame, actions.astype(jnp.uint8), reward, c.step.terminal,
                               c.step.last, c.step.first)
    actor_state, received, finished = actor.step(c.actor, actions)
    state, key, info_sum, _ = jax.lax.fori_loop(0, n, update, (c.state, c.replay_key, c.info_sum, replay))
    return (Carry(state=state, act_key=act_key, actor=actor_state, step=received, stack=stack, replay=replay,
                  replay_key=key, info_sum=info_sum), finished)

  def body(c: Carry, xs):
    eps, n, active = xs
    zeros = xla_actor.Finished(jnp.zeros(c.stack.shape[0], jnp.float32), jnp.zeros(c.stack.shape[0], jnp.int32),
                     jnp.zeros(c.stack.shape[0], bool))
    return jax.lax.cond(active, lambda c: step(c, eps, n), lambda c: (c, zeros), c)

  return jax.lax.scan(body, carry, (epsilon, due, on))


@dataclasses.dataclass
class SeedDevice:
  """One seed's device-path objects between chunks: the XLA actor and the chunk's carry pieces it owns."""

  actor: xla_actor.XlaActor
  actor_state: xla_actor.ActorState
  step: xla_actor.Step
  stack: jax.Array


def _info_zeros(agent: dqn.DQNAgent, state: dqn.TrainState, replay: device_replay.DeviceReplay, batch_size: int):
  """Zeros shaped as one update's infos (a chunk's running sum starts from them: 0 + x is x, bit for bit)."""
  shapes = jax.eval_shape(lambda s, r, k: agent._update(s, device_replay.sample(r, k, batch_size))[1],  # pylint: disable=protected-access
                          state, replay, jax.random.key(0))
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


class DevicePath:
  """The device path's side of train.run_seeds: each seed's XLA actor and its chunks (module docstring)."""

  def __init__(self, config, agent: dqn.DQNAgent, train_envs: list):
    self.config, self.agent = config, agent
    self.chunk_steps = int(config.loop.chunk_steps)
    self.seeds = []
    for envs in train_envs:
      actor = xla_actor.XlaActor(envs, config.env.protocol)
      actor_state, step = actor.reset()
      self.seeds.append(SeedDevice(actor, actor_state, step, jnp.zeros_like(actor_state.stack)))
    self._zeros = {}

  def advance(self, runs, learner, frames: int, boundary: int, learning_starts: int, compilation
              ) -> tuple[int, jax.Array, float, list[list[tuple[int, float, int]]]]:
    """One chunk of every seed, up to the frame count `boundary` (or chunk_steps agent steps): the new frame
    count, the last observations acted on [N, E, …] (the probe of an intervention before learning starts), the
    last step's ε, and each seed's finished episodes as (frames, return, length), in the host path's order."""
    config, num_envs = self.config, self.config.env.num_envs
    frames_per_step = num_envs * atari.FRAME_SKIP
    steps = min(self.chunk_steps, steps_to(frames, boundary, frames_per_step))
    finished_all, epsilon = [], 0.0
    for i, (run, dev) in enumerate(zip(runs, self.seeds)):
      p = plan(config, run.loop, frames, steps, self.chunk_steps, learning_starts)
      state, act_key, info_sum, count = learner.take(i)
      if info_sum is None:
        structure = jax.tree.structure(state)
        if structure not in self._zeros:
          self._zeros[structure] = _info_zeros(self.agent, state, run.replay.replay, config.learner.batch_size)
        info_sum = self._zeros[structure]
      carry = Carry(state=state, act_key=act_key, actor=dev.actor_state, step=dev.step, stack=dev.stack,
                    replay=run.replay.replay, replay_key=run.replay.key, info_sum=info_sum)
      carry, finished = compilation.call("the device chunk", run_chunk, self.agent, dev.actor,
                                         config.learner.batch_size, float(config.learner.reward_clip), carry,
                                         p.epsilon, p.due, p.on, frames=frames)
      learner.give(i, carry.state, carry.act_key, carry.info_sum, count + int(p.due.sum()))
      run.replay.replay, run.replay.key = carry.replay, carry.replay_key
      dev.actor_state, dev.step, dev.stack = carry.actor, carry.step, carry.stack
      returns, lengths, done = jax.device_get(finished)
      finished_all.append([(frames + (k + 1) * frames_per_step, float(returns[k, e]), int(lengths[k, e]))
                           for k, e in zip(*np.nonzero(done))])
      epsilon = float(p.epsilon[steps - 1])
    return frames + steps * frames_per_step, jnp.stack([dev.stack for dev in self.seeds]), epsilon, finished_all
