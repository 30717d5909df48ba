"""The device path's actor: envpool stepped through its XLA interface, inside jax.jit / jax.lax.scan.

`XlaActor` is `AtariStepper` + `FrameStacker` + `train.Episodes` as pure, jittable functions over `envs.xla()`
(envpool's FFI send/recv: the handle threads the side effect through the program). It gives what the host actor
gives, bit for bit (tests/test_xla_actor.py): the same flags (`atari.step_flags`, shared with AtariStepper), the
same frames, rewards, lives and stacked observations, and the same finished episodes' returns and lengths.

Usage (the stacking is done in `step`: `state.stack` is always the observation to act on):

  actor = XlaActor(envs, protocol)
  state, step = actor.reset()                   # Host call (envs.reset()); state.stack holds the reset frames.
  ...                                           # Under jit / in a lax.scan body:
  actions = policy(state.stack)                 #   uint8 [E, 84, 84, S], as FrameStacker.push returns it.
  state, step, finished = actor.step(state, actions)

`step` is the host loop's `stepper.step(actions)`, `episodes.track(step)` and `stacker.push(step.frame,
step.first)` in one: it returns the new state (whose stack has the new frame pushed), the `Step` (an EnvStep
as arrays) and `Finished`, the returns and lengths of the episodes that ended on this step.

Episode returns are accumulated in float32 (the frames in int32), where train.Episodes uses float64: the values
are the same as long as the float32 sums are exact, which they are for Atari's scores (integers) while an
episode's return stays below 2**24 in magnitude (16.7M; no benchmark game comes near it in 108k frames).

The envs must have been made by `atari.make_envs` (envpool, or the fake envpool, whose `xla()` is the same API
over jax.experimental.io_callback) with a synchronous pool; the rows come back in env_id order (an argsort of
info["env_id"], a no-op for a synchronous pool). `reset` is a host call: envpool's XLA interface has no reset,
and auto-resets every env after its episode's last step, as on the host.
"""

from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from plasticity_rl.envs import atari


class ActorState(flax.struct.PyTreeNode):
  """What the actor carries from step to step (a pytree: a lax.scan carry)."""

  handle: jax.Array  # uint8: envpool's XLA handle (threads the envs' side effects).
  stack: jax.Array  # uint8 [E, 84, 84, S]: the observation to act on (FrameStacker's: frames before an episode's
  # start are zeros).
  last: jax.Array  # bool [E]: the previous step ended its episode (so the next one is `first`).
  lives: jax.Array  # int32 [E]: the previous step's lives.
  episode_return: jax.Array  # float32 [E]: the raw return of each env's episode so far (train.Episodes.returns).
  episode_frames: jax.Array  # int32 [E]: its length in frames (train.Episodes.frames).


class Step(NamedTuple):
  """atari.EnvStep as arrays: one vectorized step in timestep convention (see replay.py)."""

  frame: jax.Array  # uint8 [E, 84, 84]: the newest frame of o_t.
  reward: jax.Array  # float32 [E]: raw reward on arriving at o_t.
  terminal: jax.Array  # bool [E]: no bootstrapping from o_t (game over, or life loss if the protocol says so).
  last: jax.Array  # bool [E]: o_t ends the episode (game over or time limit).
  first: jax.Array  # bool [E]: o_t starts an episode.
  lives: jax.Array  # int32 [E]


class Finished(NamedTuple):
  """The episodes that ended on a step, as train.Episodes.track reports them (read where `done`; zeros elsewhere)."""

  returns: jax.Array  # float32 [E]: raw return of the episode that ended.
  frames: jax.Array  # int32 [E]: its length in frames.
  done: jax.Array  # bool [E]: the env's episode ended on this step (the step's `last`).


def push_frame(stack: jax.Array, frame: jax.Array, first: jax.Array) -> jax.Array:
  """atari.FrameStacker.push, pure: zeros the stacks of the envs whose episode starts, then shifts `frame` in."""
  stack = jnp.where(first[:, None, None, None], jnp.zeros((), stack.dtype), stack)
  return jnp.concatenate([stack[..., 1:], frame[..., None].astype(stack.dtype)], axis=-1)


class XlaActor:
  """An envpool batch stepped through its XLA interface, equal to AtariStepper + FrameStacker + Episodes."""

  def __init__(self, envs, protocol: str, stack_size: int = 4):
    self.envs = envs
    self.life_loss_discount = atari.PROTOCOLS[protocol].life_loss_discount
    self.stack_size = stack_size
    self.num_envs = envs.num_envs
    self._handle, _, _, self._step = envs.xla()

  def reset(self) -> tuple[ActorState, Step]:
    """Resets every env (a host call, as AtariStepper.reset); the state's stack holds the reset frames."""
    obs, info = self.envs.reset()
    n = obs.shape[0]
    frame = jnp.asarray(obs[:, -1])
    first = jnp.ones(n, bool)
    lives = jnp.asarray(info["lives"], jnp.int32)
    step = Step(frame, jnp.zeros(n, jnp.float32), jnp.zeros(n, bool), jnp.zeros(n, bool), first, lives)
    stack = push_frame(jnp.zeros((n, *frame.shape[1:], self.stack_size), jnp.uint8), frame, first)
    state = ActorState(handle=jnp.asarray(self._handle), stack=stack, last=jnp.zeros(n, bool), lives=lives,
                       episode_return=jnp.zeros(n, jnp.float32), episode_frames=jnp.zeros(n, jnp.int32))
    return state, step

  def step(self, state: ActorState, actions: jax.Array) -> tuple[ActorState, Step, Finished]:
    """One step of every env (jittable): AtariStepper.step, Episodes.track and FrameStacker.push in one."""
    n = self.num_envs
    handle, (obs, reward, terminated, truncated, info) = self._step(
        state.handle, jnp.asarray(actions).astype(jnp.int32), jnp.arange(n, dtype=jnp.int32))
    if obs.shape[0] != n:
      raise RuntimeError(f"envpool returned {obs.shape[0]} of {n} envs: make the pool with batch_size == num_envs")
    order = jnp.argsort(info["env_id"])  # The identity for a synchronous pool.
    obs, reward, terminated, truncated, game_over, lives = (
        x[order] for x in (obs, reward, terminated, truncated, info["terminated"], info["lives"]))
    lives = lives.astype(jnp.int32)
    first, last, terminal = atari.step_flags(terminated, truncated, game_over, lives, state.last, state.lives,
                                             self.life_loss_discount, xp=jnp)
    frame, reward = obs[:, -1], reward.astype(jnp.float32)
    step = Step(frame, reward, terminal, last, first, lives)
    # train.Episodes.track: an episode's start zeros its counters; every other step adds its reward and frames.
    episode_return = jnp.where(first, 0.0, state.episode_return + reward).astype(jnp.float32)
    episode_frames = jnp.where(first, 0, state.episode_frames + atari.FRAME_SKIP).astype(jnp.int32)
    finished = Finished(jnp.where(last, episode_return, 0.0).astype(jnp.float32),
                        jnp.where(last, episode_frames, 0).astype(jnp.int32), last)
    state = ActorState(handle=handle, stack=push_frame(state.stack, frame, first), last=last, lives=lives,
                       episode_return=episode_return, episode_frames=episode_frames)
    return state, step, finished


def finished_episodes(finished: Finished) -> list[tuple[float, int]]:
  """Host side: (return, frames) of the episodes that ended on a step, in env order, as Episodes.track's list.

  `finished` may also be a lax.scan's stacked Finished ([T, E] each): then the episodes of every step in order.
  """
  returns, frames, done = (np.asarray(x) for x in finished)
  if done.ndim == 1:
    returns, frames, done = returns[None], frames[None], done[None]
  return [(float(returns[t, i]), int(frames[t, i])) for t, i in zip(*np.nonzero(done))]
