"""Uniform n-step replay as pure jittable functions on a pytree: the device path of replay.ReplayBuffer.

The layout and the semantics are the host buffer's (see plasticity_rl/replay.py): per-env rings of single frames
in "timestep" convention, the same TERMINAL / LAST / FIRST flag bits, the same truncation rule (a `first` entry
whose predecessor is not `last` marks the predecessor LAST), the same valid start indices (not `last`, t+n
written, history stored once wrapped) and the same stacks and n-step returns rebuilt at sample time. After the
same adds a `DeviceReplay` holds the host buffer's arrays bit for bit, and `transitions` returns the host's
`_transitions` for the same (env, t). So that it can live in one jitted `lax.scan` with acting and updating, the
shapes are static (E envs, C entries per env, batch B, batches K) and everything else, `num_added` included, is
traced. Checkpoints of either path load into the other (`state_dict`, `from_state_dict`, `to_host`, `from_host`).

Differences from the host buffer, all forced by running under jit:

* The random stream: indices are drawn from a `jax.random` key (the caller keeps it in its loop state), not
  from the buffer's numpy generator; there is no "rng_state" in `state_dict`. The distribution is the host's.
* `env_index` and `time_index` are int32 (the host's are int64); `num_added` is an int32 scalar array, so a
  replay holds at most 2^31 - 1 adds per env, and E * C must be below 2^31.
* No value checks inside jit: `add` checks shapes and dtypes (static) but not the action range, that the first
  add is `first` everywhere, or that an entry after a `last` one is `first` (the host raises on those; the
  device stores what it is given). Actions are stored as uint8 (callers pass values in [0, 255]).
* Too few entries: `indices` cannot raise inside jit. The precondition is `can_sample(replay)` (a host helper;
  `num_valid` is its traceable count); when no start index is valid, `indices` returns env 0 and t = -1 for
  every row, so a batch with `time_index < 0` is the documented "nothing to sample" marker (its arrays are
  meaningless). The normal path samples only once learning has started, when that cannot happen.
* `oldest_fraction` must be a Python float (static): its range bound ceil(f * width) is looked up in a table
  computed on the host in float64, as the host computes it (float32 on device could be off by one time).

Sampling (`indices`): exact and fixed-shape. Like the host, `_MAX_REJECTION_ROUNDS` (8) vectorized rejection
rounds draw every row from the box of E * width candidate (env, t) and keep each row's first valid draw; the
integers are exact too (32 random bits, rejecting the top 2^32 mod (E * width) values, not `jax.random.randint`'s
biased modulo). Rows still empty after 8 rounds (probability (1 - p)^8 per row, p the valid fraction of the
box: below 1e-16 once p > 0.99, as in Atari) go to an exact fallback under `lax.cond`: a cumsum over the valid
mask of all E * C (env, t) and a searchsorted of exact uniform draws below the count (a `lax.while_loop` redraws
the rare rejected 32-bit words). Each row's result depends only on its
own key (the fallback's draws are `fold_in(key, round)`), which is how batch k of `sample_many` equals `sample`
with the k-th key of `jax.random.split(key, K)`.

Cost at a 1M-transition replay (E * C = 1M), batch 32: the normal path draws 8 * 32 random words and gathers 256
flag bytes, independent of the capacity; the fallback, when taken, reads the E * C flag bytes, writes a 4 MB
int32 cumsum and does 32 binary searches of 20 steps. Under `vmap` the `lax.cond` becomes a select that runs
both branches on every call (`sample_many` batches its K keys without vmap for that reason). The frames of a
batch (2 * S * B = 256 frame gathers at 84x84, 1.8 MB) cost the same as on the host and do not depend on C.
Measured on this project's 2-core CPU (load average ~7 from two training runs, so upper bounds), jitted, E = 8,
batch 32, frame 1x1 so that only the index work is timed, a wrapped ring, median of 200 calls (50 for the fallback,
forced by one valid start per env):

  capacity    indices (rejection rounds)    indices (fallback forced)    sample at 84x84
  100k        0.34 ms                       3.4 ms                       1.1 ms
  1M          0.33 ms                       26 ms                        (not allocated here: 7 GB)

The fallback's time is XLA:CPU's cumsum (an associative scan) over E * C; the normal path does not grow with C.

(`tests/test_device_replay.py` checks the layout, transitions, validity, uniformity, key discipline and
checkpoint claims above against the host buffer; the timings are this note's.)
"""

import functools
from typing import Any

import flax
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from plasticity_rl import replay as host_replay
from plasticity_rl.replay import FIRST, LAST, TERMINAL

_INT32_MAX = 2**31 - 1


class DeviceReplay(flax.struct.PyTreeNode):
  """The storage of a device replay (arrays traced, the layout parameters static)."""

  frames: jax.Array  # uint8 [E, C, *frame_shape]
  actions: jax.Array  # uint8 [E, C]
  rewards: jax.Array  # float32 [E, C]
  flags: jax.Array  # uint8 [E, C]: TERMINAL / LAST / FIRST bits.
  num_added: jax.Array  # int32 scalar: entries added per env.
  stack_size: int = flax.struct.field(pytree_node=False)
  n_step: int = flax.struct.field(pytree_node=False)
  gamma: float = flax.struct.field(pytree_node=False)

  @property
  def num_envs(self) -> int:
    return self.frames.shape[0]

  @property
  def capacity_per_env(self) -> int:
    return self.frames.shape[1]

  @property
  def capacity(self) -> int:
    """Actual capacity in transitions (num_envs * capacity_per_env)."""
    return self.num_envs * self.capacity_per_env

  @property
  def frame_shape(self) -> tuple[int, ...]:
    return tuple(self.frames.shape[2:])

  @property
  def nbytes(self) -> int:
    """Bytes of the four storage arrays (as ReplayBuffer.nbytes)."""
    return sum(x.size * x.dtype.itemsize for x in (self.frames, self.actions, self.rewards, self.flags))


def _check_sizes(num_envs: int, cap_per_env: int, num_added: int = 0) -> None:
  if num_envs * cap_per_env > _INT32_MAX:
    raise ValueError(f"num_envs * capacity_per_env ({num_envs * cap_per_env}) must be < 2^31 (int32 indices).")
  if not 0 <= num_added <= _INT32_MAX:
    raise ValueError(f"num_added must be in [0, 2^31), got {num_added}.")


def init(
    capacity: int,
    num_envs: int,
    *,
    frame_shape: tuple[int, ...] = (84, 84),
    stack_size: int = 4,
    n_step: int = 1,
    gamma: float = 0.99,
) -> DeviceReplay:
  """An empty replay: the arguments, their checks and the rounding are ReplayBuffer's (replay.check_layout).

  Raises:
    ValueError: As ReplayBuffer, or when num_envs * capacity_per_env reaches 2^31.
  """
  cap, frame_shape = host_replay.check_layout(capacity, num_envs, frame_shape=frame_shape, stack_size=stack_size,
                                              n_step=n_step, gamma=gamma)
  _check_sizes(num_envs, cap)
  return DeviceReplay(
      frames=jnp.zeros((num_envs, cap, *frame_shape), jnp.uint8),
      actions=jnp.zeros((num_envs, cap), jnp.uint8),
      rewards=jnp.zeros((num_envs, cap), jnp.float32),
      flags=jnp.zeros((num_envs, cap), jnp.uint8),
      num_added=jnp.zeros((), jnp.int32),
      stack_size=int(stack_size),
      n_step=int(n_step),
      gamma=float(gamma),
  )


# -- Adding ------------------------------------------------------------------


def add(replay: DeviceReplay, frame, action, reward, terminal, last, first) -> DeviceReplay:
  """Adds one entry per env: ReplayBuffer.add's convention and truncation rule, jittable.

  Args:
    replay: The replay.
    frame: uint8 [num_envs, *frame_shape], newest frame of o_t.
    action: int [num_envs], action taken at o_t, in [0, 255] (stored as uint8, not checked).
    reward: float [num_envs], reward received on arriving at o_t.
    terminal: bool [num_envs], o_t ends bootstrapping.
    last: bool [num_envs], o_t ends the episode.
    first: bool [num_envs], o_t starts an episode (the first add must be `first` everywhere: not checked).

  Returns:
    The replay with the entry written at slot num_added % C and num_added + 1.

  Raises:
    ValueError: On bad shapes or a frame that is not uint8 (static checks; no value checks).
  """
  e, c = replay.num_envs, replay.capacity_per_env
  frame = jnp.asarray(frame)
  if frame.shape != (e, *replay.frame_shape) or frame.dtype != jnp.uint8:
    raise ValueError(f"frame must be uint8 {(e, *replay.frame_shape)}, got {frame.dtype} {frame.shape}.")
  action = jnp.asarray(action)
  reward = jnp.asarray(reward, jnp.float32)
  terminal = jnp.asarray(terminal, bool)
  last = jnp.asarray(last, bool)
  first = jnp.asarray(first, bool)
  for name, x in (("action", action), ("reward", reward), ("terminal", terminal), ("last", last),
                  ("first", first)):
    if x.shape != (e,):
      raise ValueError(f"{name} must have shape ({e},), got {x.shape}.")

  n = replay.num_added
  pos, prev = n % c, (n - 1) % c  # prev is C - 1 on the first add, where truncate is all False.
  prev_flags = lax.dynamic_index_in_dim(replay.flags, prev, axis=1, keepdims=False)
  truncate = first & ((prev_flags & LAST) == 0) & (n > 0)
  flags = lax.dynamic_update_index_in_dim(replay.flags, jnp.where(truncate, prev_flags | LAST, prev_flags), prev, 1)
  new_flags = ((terminal.astype(jnp.uint8) * TERMINAL) | (last.astype(jnp.uint8) * LAST)
               | (first.astype(jnp.uint8) * FIRST))
  return replay.replace(
      frames=lax.dynamic_update_index_in_dim(replay.frames, frame, pos, 1),
      actions=lax.dynamic_update_index_in_dim(replay.actions, action.astype(jnp.uint8), pos, 1),
      rewards=lax.dynamic_update_index_in_dim(replay.rewards, reward, pos, 1),
      flags=lax.dynamic_update_index_in_dim(flags, new_flags, pos, 1),
      num_added=n + 1,
  )


# -- Sampling ----------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _ceil_table(fraction: float, cap: int) -> np.ndarray:
  """max(1, ceil(fraction * w)) for w = 0..cap, in float64 as ReplayBuffer._indices computes it."""
  return np.maximum(1, np.ceil(fraction * np.arange(cap + 1, dtype=np.float64))).astype(np.int32)


def _time_range(replay: DeviceReplay, oldest_fraction: float | None) -> tuple[jax.Array, jax.Array]:
  """Inclusive [lo, hi] of candidate start times (before the `last` check), as ReplayBuffer's."""
  c = replay.capacity_per_env
  oldest = jnp.maximum(0, replay.num_added - c)
  lo = jnp.where(oldest > 0, oldest + replay.stack_size - 1, 0)
  hi = replay.num_added - 1 - replay.n_step
  if oldest_fraction is not None:
    fraction = float(oldest_fraction)  # A tracer fails here: the fraction is static.
    if not 0.0 < fraction <= 1.0:
      raise ValueError(f"oldest_fraction must be in (0, 1], got {oldest_fraction}.")
    table = jnp.asarray(_ceil_table(fraction, c))
    hi = jnp.where(hi >= lo, lo + table[jnp.clip(hi - lo + 1, 0, c)] - 1, hi)
  return lo, hi


def _not_last(replay: DeviceReplay, env: jax.Array, t: jax.Array) -> jax.Array:
  return (replay.flags[env, t % replay.capacity_per_env] & LAST) == 0


def _valid_mask(replay: DeviceReplay, lo: jax.Array, hi: jax.Array) -> jax.Array:
  """bool [E, C]: entry [e, j] says whether start (e, lo + j) is valid (j < C covers the range: width <= C - n)."""
  c = replay.capacity_per_env
  j = jnp.arange(c, dtype=jnp.int32)
  flags = replay.flags[:, (lo + j) % c]
  return (lo + j <= hi)[None, :] & ((flags & LAST) == 0)


def num_valid(replay: DeviceReplay, oldest_fraction: float | None = None) -> jax.Array:
  """int32 scalar: the number of valid start indices (env, t) `indices` samples from (traceable; reads E * C flags)."""
  lo, hi = _time_range(replay, oldest_fraction)
  return jnp.sum(_valid_mask(replay, lo, hi), dtype=jnp.int32)


_num_valid_jit = jax.jit(num_valid, static_argnums=1)


def can_sample(replay: DeviceReplay, oldest_fraction: float | None = None) -> bool:
  """Host helper: whether some start index is valid, i.e. `indices` returns real indices (not t = -1)."""
  return bool(_num_valid_jit(replay, oldest_fraction) > 0)


def _below(bits: jax.Array, n: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(bits mod n, accepted): exactly uniform in [0, n) over the accepted uint32 `bits` (n traced, 1 <= n < 2^31).

  Rejects the top 2^32 mod n values of the 32-bit range, so the 2^32 - (2^32 mod n) accepted ones map onto each
  residue equally often.
  """
  n = n.astype(jnp.uint32)
  rem = (jnp.uint32(0xFFFFFFFF) % n + 1) % n  # 2^32 mod n.
  accepted = (rem == 0) | (bits < jnp.uint32(0) - rem)  # 0 - rem wraps to 2^32 - rem.
  return (bits % n).astype(jnp.int32), accepted


def _indices(replay: DeviceReplay, keys: jax.Array, batch_size: int,
             oldest_fraction: float | None) -> tuple[jax.Array, jax.Array]:
  """(env, t) int32 [K, B]: row k is `indices` with keys[k] (see the module docstring for the method)."""
  e, c = replay.num_envs, replay.capacity_per_env
  num_keys = keys.shape[0]
  lo, hi = _time_range(replay, oldest_fraction)
  width = hi - lo + 1
  w = jnp.maximum(width, 1)
  split = jax.vmap(jax.random.split)(keys)  # [K, 2]: rejection rounds, fallback.
  reject_keys, fallback_keys = split[:, 0], split[:, 1]

  rounds = host_replay._MAX_REJECTION_ROUNDS  # pylint: disable=protected-access
  bits = jax.vmap(lambda k: jax.random.bits(k, (rounds, batch_size), jnp.uint32))(reject_keys)  # [K, R, B]
  flat, ok = _below(bits, w * e)
  env, t = flat // w, lo + flat % w
  ok &= (width > 0) & _not_last(replay, env, t)
  first_ok = jnp.argmax(ok, axis=1)[:, None]  # [K, 1, B]: each row's first accepted round.
  env = jnp.take_along_axis(env, first_ok, axis=1)[:, 0]
  t = jnp.take_along_axis(t, first_ok, axis=1)[:, 0]
  accepted = jnp.any(ok, axis=1)  # [K, B]

  def fallback(_):
    cumsum = jnp.cumsum(_valid_mask(replay, lo, hi).ravel(), dtype=jnp.int32)  # [E * C], (env, j) order.
    total = cumsum[-1]
    count = jnp.maximum(total, 1)

    def draw(state):
      i, u, done = state
      bits = jax.vmap(lambda k: jax.random.bits(jax.random.fold_in(k, i), (batch_size,), jnp.uint32))(fallback_keys)
      value, ok = _below(bits, count)
      return i + 1, jnp.where(done, u, value), done | ok

    _, u, _ = lax.while_loop(lambda state: ~jnp.all(state[2]), draw,
                             (jnp.int32(0), jnp.zeros((num_keys, batch_size), jnp.int32), accepted))
    pos = jnp.searchsorted(cumsum, u, side="right").astype(jnp.int32)  # The (u + 1)-th valid (env, j).
    has = total > 0
    return jnp.where(has, pos // c, 0), jnp.where(has, lo + pos % c, -1)

  zeros = jnp.zeros((num_keys, batch_size), jnp.int32)
  env_fb, t_fb = lax.cond(jnp.all(accepted), lambda _: (zeros, zeros), fallback, None)
  return jnp.where(accepted, env, env_fb), jnp.where(accepted, t, t_fb)


def indices(replay: DeviceReplay, key: jax.Array, batch_size: int,
            oldest_fraction: float | None = None) -> tuple[jax.Array, jax.Array]:
  """(env, t) int32 [B], uniform over the valid start indices (as ReplayBuffer._indices, from `key`).

  Args:
    replay: The replay.
    key: A jax.random key.
    batch_size: B (static).
    oldest_fraction: If given, a Python float f in (0, 1] (static): sample only start times in the oldest f
      fraction of the stored start-time range (all envs), as ReplayBuffer.sample.

  Returns:
    env, t: int32 [B] (t counts the env's entries since construction); env 0 and t = -1 in every row when no
    start index is valid (precondition: `can_sample(replay, oldest_fraction)`).

  Raises:
    ValueError: If `oldest_fraction` is outside (0, 1].
  """
  env, t = _indices(replay, key[None], batch_size, oldest_fraction)
  return env[0], t[0]


def _stacks(replay: DeviceReplay, env: jax.Array, t: jax.Array) -> jax.Array:
  """Frame stacks uint8 [B, *frame_shape, S] at times t, zeroed before the episode's start (as ReplayBuffer's)."""
  s, c = replay.stack_size, replay.capacity_per_env
  slots = (t[:, None] + jnp.arange(1 - s, 1, dtype=jnp.int32)) % c  # [B, S], oldest first.
  first = (replay.flags[env[:, None], slots] & FIRST) != 0
  # Column i is zeroed iff a `first` lies among columns i+1..S-1.
  zero = jnp.stack([jnp.any(first[:, i + 1:], axis=1) for i in range(s)], axis=1)
  frames = replay.frames[env[:, None], slots]  # [B, S, *frame_shape]
  frames = jnp.where(zero.reshape(*zero.shape, *([1] * len(replay.frame_shape))), jnp.uint8(0), frames)
  return jnp.moveaxis(frames, 1, -1)


def transitions(replay: DeviceReplay, env: jax.Array, t: jax.Array) -> dict[str, jax.Array]:
  """The n-step transitions at (env, t): ReplayBuffer._transitions's output, bit for bit.

  Returns:
    obs, next_obs: uint8 [B, *frame_shape, S]; action: int32 [B]; reward, discount: float32 [B];
    env_index, time_index: int32 [B] (the host's are int64).
  """
  env = jnp.asarray(env, jnp.int32)
  t = jnp.asarray(t, jnp.int32)
  c, n, gamma = replay.capacity_per_env, replay.n_step, replay.gamma
  b = env.shape[0]
  reward = jnp.zeros(b, jnp.float32)
  discount = jnp.full(b, gamma**n, jnp.float32)
  stop = jnp.full(b, n, jnp.int32)
  active = jnp.ones(b, bool)
  for k in range(1, n + 1):
    slot = (t + k) % c
    reward = reward + jnp.where(active, jnp.float32(gamma**(k - 1)) * replay.rewards[env, slot], jnp.float32(0))
    flags = replay.flags[env, slot]
    terminal = (flags & TERMINAL) != 0
    stopped = active & (terminal | ((flags & LAST) != 0))
    stop = jnp.where(stopped, k, stop)
    discount = jnp.where(stopped, jnp.where(terminal, jnp.float32(0), jnp.float32(gamma**k)), discount)
    active = active & ~stopped
  return {
      "obs": _stacks(replay, env, t),
      "action": replay.actions[env, t % c].astype(jnp.int32),
      "reward": reward,
      "discount": discount,
      "next_obs": _stacks(replay, env, t + stop),
      "env_index": env,
      "time_index": t,
  }


def sample(replay: DeviceReplay, key: jax.Array, batch_size: int,
           oldest_fraction: float | None = None) -> dict[str, jax.Array]:
  """`transitions` at `indices(replay, key, batch_size, oldest_fraction)` (see both)."""
  return transitions(replay, *indices(replay, key, batch_size, oldest_fraction))


def sample_many(replay: DeviceReplay, key: jax.Array, num_batches: int, batch_size: int) -> dict[str, jax.Array]:
  """K = `num_batches` batches in one: every array [K, B, ...], batch k = sample(replay, split(key, K)[k], B)."""
  env, t = _indices(replay, jax.random.split(key, num_batches), batch_size, None)
  out = transitions(replay, env.reshape(-1), t.reshape(-1))
  return {k: v.reshape(num_batches, batch_size, *v.shape[1:]) for k, v in out.items()}


# -- Checkpointing and the host buffer ----------------------------------------


def state_dict(replay: DeviceReplay) -> dict[str, np.ndarray | int]:
  """ReplayBuffer.state_dict()'s keys, shapes and dtypes (numpy; the written part only), without "rng_state"."""
  num_added = int(replay.num_added)
  filled = min(num_added, replay.capacity_per_env)

  def written(x):
    return np.asarray(x if filled == replay.capacity_per_env else x[:, :filled])

  return {
      "frames": written(replay.frames),
      "actions": written(replay.actions),
      "rewards": written(replay.rewards),
      "flags": written(replay.flags),
      "num_added": num_added,
      "num_envs": replay.num_envs,
      "capacity_per_env": replay.capacity_per_env,
  }


def from_state_dict(state: dict[str, Any], *, stack_size: int, n_step: int, gamma: float,
                    frame_shape: tuple[int, ...] | None = None) -> DeviceReplay:
  """A replay holding `state` (this module's `state_dict` or ReplayBuffer's, whose "rng_state" is ignored).

  Args:
    state: The state dict.
    stack_size, n_step, gamma: The layout parameters (not stored in a state dict, as for ReplayBuffer).
    frame_shape: Checked against the stored frames if given; None: the stored frames' shape.

  Raises:
    ValueError: On arrays whose shapes do not match num_envs, capacity_per_env and num_added (as
      ReplayBuffer.load_state_dict), a frame_shape other than the stored one, or ReplayBuffer's argument errors.
  """
  num_envs, cap = int(state["num_envs"]), int(state["capacity_per_env"])
  num_added = int(state["num_added"])
  stored_shape = tuple(np.shape(state["frames"])[2:])
  frame_shape = stored_shape if frame_shape is None else tuple(int(d) for d in frame_shape)
  replay = init(num_envs * cap, num_envs, frame_shape=frame_shape, stack_size=stack_size, n_step=n_step,
                gamma=gamma)
  _check_sizes(num_envs, cap, num_added)
  filled = min(num_added, cap)
  arrays = {}
  for name, dtype, shape in (("frames", np.uint8, (num_envs, cap, *frame_shape)),
                             ("actions", np.uint8, (num_envs, cap)),
                             ("rewards", np.float32, (num_envs, cap)),
                             ("flags", np.uint8, (num_envs, cap))):
    src = np.asarray(state[name])
    if src.shape != (num_envs, filled, *shape[2:]):
      raise ValueError(f"{name} has shape {src.shape}, expected {(num_envs, filled, *shape[2:])}.")
    if filled == cap:
      arrays[name] = jnp.asarray(src.astype(dtype, copy=False))
    else:
      full = np.zeros(shape, dtype)
      full[:, :filled] = src
      arrays[name] = jnp.asarray(full)
  return replay.replace(num_added=jnp.asarray(num_added, jnp.int32), **arrays)


def to_host(replay: DeviceReplay, buffer: host_replay.ReplayBuffer) -> None:
  """Loads the replay's contents into `buffer` (ReplayBuffer.load_state_dict; the buffer's generator untouched).

  Raises:
    ValueError: As ReplayBuffer.load_state_dict (num_envs, capacity_per_env or frame shape differ).
  """
  state = state_dict(replay)
  state["rng_state"] = buffer.state_dict()["rng_state"]
  buffer.load_state_dict(state)


def from_host(buffer: host_replay.ReplayBuffer) -> DeviceReplay:
  """A device replay holding `buffer`'s contents and layout parameters (its generator's state is not carried)."""
  return from_state_dict(buffer.state_dict(), stack_size=buffer.stack_size, n_step=buffer.n_step,
                         gamma=buffer.gamma, frame_shape=buffer.frame_shape)
