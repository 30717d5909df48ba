"""Uniform n-step replay that stores each frame once (host-side numpy).

The actor adds one entry per env per vectorized step, in "timestep" convention:
entry t of env e holds the newest frame of o_t, the action a_t taken at o_t,
the reward received on arriving at o_t and the flags of o_t (terminal, last,
first). Frame stacks and n-step transitions are assembled at sample time:

* obs = frames t-S+1..t (oldest first, channels last); frames before the
  episode's first entry are zero.
* Walking k = 1..n, reward += gamma^(k-1) r_{t+k}, stopping at the first k where
  entry t+k is terminal or last. next_obs = stack at t+k (k = n if no stop);
  discount = 0 if the walk stopped on a terminal, else gamma^k.

Each env has a ring of `ceil(capacity / num_envs)` entries; at 84x84 one entry
costs 7,062 bytes (frame 7,056 + action 1 + reward 4 + flags 1).
"""

import json
import math
from typing import Any

import numpy as np

TERMINAL = 1
LAST = 2
FIRST = 4

_MAX_REJECTION_ROUNDS = 8


def check_layout(
    capacity: int,
    num_envs: int,
    *,
    frame_shape: tuple[int, ...],
    stack_size: int,
    n_step: int,
    gamma: float,
) -> tuple[int, tuple[int, ...]]:
  """Checks a replay's arguments (`ReplayBuffer`'s, and device_replay.init's, which takes the same).

  Returns:
    (capacity per env, i.e. ceil(capacity / num_envs); frame_shape as a tuple of ints).

  Raises:
    ValueError: On num_envs < 1, capacity < num_envs, stack_size < 1, n_step < 1, gamma outside [0, 1], an empty
      or non-positive frame_shape, or a capacity per env below stack_size + n_step.
  """
  if num_envs < 1:
    raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
  if capacity < num_envs:
    raise ValueError(f"capacity ({capacity}) must be >= num_envs ({num_envs}).")
  if stack_size < 1:
    raise ValueError(f"stack_size must be >= 1, got {stack_size}.")
  if n_step < 1:
    raise ValueError(f"n_step must be >= 1, got {n_step}.")
  if not 0.0 <= gamma <= 1.0:
    raise ValueError(f"gamma must be in [0, 1], got {gamma}.")
  frame_shape = tuple(int(d) for d in frame_shape)
  if not frame_shape or any(d < 1 for d in frame_shape):
    raise ValueError(f"frame_shape must be non-empty and positive, got {frame_shape}.")
  cap_per_env = math.ceil(capacity / num_envs)
  if cap_per_env < stack_size + n_step:
    raise ValueError(
        f"capacity per env ({cap_per_env}) must be >= stack_size + n_step "
        f"({stack_size + n_step}); increase capacity.")
  return cap_per_env, frame_shape


class ReplayBuffer:
  """Uniform replay over (env, time) start indices of per-env frame rings.

  A start index t of env e is valid when entry t is not `last`, entry t+n has
  been written, and (once the ring has wrapped) frames t-S+1..t are still
  stored. Sampling is uniform over all valid (env, t).
  """

  def __init__(
      self,
      capacity: int,
      num_envs: int,
      *,
      frame_shape: tuple[int, ...] = (84, 84),
      stack_size: int = 4,
      n_step: int = 1,
      gamma: float = 0.99,
      seed: int = 0,
  ):
    """Allocates the (lazily paged) storage.

    Args:
      capacity: Total transitions over all envs (rounded up to a multiple of
        `num_envs`).
      num_envs: Number of parallel envs; `add` takes one entry per env.
      frame_shape: Shape of a single frame.
      stack_size: Frames per observation stack (S).
      n_step: Steps of reward accumulation (n).
      gamma: Discount per step.
      seed: Seed of the buffer's own `numpy.random.Generator`.
    """
    cap_per_env, frame_shape = check_layout(capacity, num_envs, frame_shape=frame_shape, stack_size=stack_size,
                                            n_step=n_step, gamma=gamma)

    self._num_envs = num_envs
    self._cap = cap_per_env
    self._frame_shape = frame_shape
    self._stack = stack_size
    self._n = n_step
    self._gamma = float(gamma)
    self._rng = np.random.default_rng(seed)
    self._frames = np.zeros((num_envs, cap_per_env, *frame_shape), np.uint8)
    self._actions = np.zeros((num_envs, cap_per_env), np.uint8)
    self._rewards = np.zeros((num_envs, cap_per_env), np.float32)
    self._flags = np.zeros((num_envs, cap_per_env), np.uint8)
    self._num_added = 0

  # -- Properties ------------------------------------------------------------

  @property
  def num_envs(self) -> int:
    return self._num_envs

  @property
  def capacity_per_env(self) -> int:
    return self._cap

  @property
  def frame_shape(self) -> tuple[int, ...]:
    return self._frame_shape

  @property
  def stack_size(self) -> int:
    return self._stack

  @property
  def n_step(self) -> int:
    return self._n

  @property
  def gamma(self) -> float:
    return self._gamma

  @property
  def capacity(self) -> int:
    """Actual capacity in transitions (num_envs * capacity_per_env)."""
    return self._num_envs * self._cap

  @property
  def num_added(self) -> int:
    """Entries ever added per env (= number of `add` calls)."""
    return self._num_added

  @property
  def nbytes(self) -> int:
    """Bytes of all storage arrays (allocated, not necessarily touched)."""
    return sum(a.nbytes for a in (self._frames, self._actions, self._rewards, self._flags))

  @property
  def bytes_per_transition(self) -> float:
    return self.nbytes / self.capacity

  def __len__(self) -> int:
    """Entries currently stored, summed over envs."""
    return self._num_envs * min(self._num_added, self._cap)

  # -- Adding ----------------------------------------------------------------

  def add(
      self,
      frame: np.ndarray,
      action: np.ndarray,
      reward: np.ndarray,
      terminal: np.ndarray,
      last: np.ndarray,
      first: np.ndarray,
  ) -> None:
    """Adds one entry per env (see the module docstring for the convention).

    A `first` entry whose predecessor was not `last` (e.g. envs reset after a
    checkpoint restore) marks the predecessor `last`, i.e. a truncation.

    Args:
      frame: uint8 [num_envs, *frame_shape], newest frame of o_t.
      action: int [num_envs], action taken at o_t, in [0, 255].
      reward: float [num_envs], reward received on arriving at o_t.
      terminal: bool [num_envs], o_t ends bootstrapping.
      last: bool [num_envs], o_t ends the episode.
      first: bool [num_envs], o_t starts an episode.

    Raises:
      ValueError: On bad shapes/dtypes/action range, a first add that is not
        `first` everywhere, or an entry after a `last` one that is not `first`.
    """
    e = self._num_envs
    frame = np.asarray(frame)
    if frame.shape != (e, *self._frame_shape) or frame.dtype != np.uint8:
      raise ValueError(
          f"frame must be uint8 {(e, *self._frame_shape)}, got {frame.dtype} {frame.shape}.")
    action = np.asarray(action)
    reward = np.asarray(reward, np.float32)
    terminal = np.asarray(terminal, bool)
    last = np.asarray(last, bool)
    first = np.asarray(first, bool)
    for name, x in (("action", action), ("reward", reward), ("terminal", terminal),
                    ("last", last), ("first", first)):
      if x.shape != (e,):
        raise ValueError(f"{name} must have shape ({e},), got {x.shape}.")
    if np.any(action < 0) or np.any(action > 255):
      raise ValueError(f"actions must be in [0, 255] (stored as uint8), got {action}.")

    if self._num_added == 0:
      if not np.all(first):
        raise ValueError("The first entry of every env must have first=True.")
      truncate = None
    else:
      prev = (self._num_added - 1) % self._cap
      prev_last = (self._flags[:, prev] & LAST) != 0
      if np.any(prev_last & ~first):
        raise ValueError(f"Entries after a last entry must be first; envs "
                         f"{np.flatnonzero(prev_last & ~first).tolist()} are not.")
      truncate = first & ~prev_last

    if truncate is not None and np.any(truncate):
      self._flags[truncate, prev] |= LAST
    pos = self._num_added % self._cap
    self._frames[:, pos] = frame
    self._actions[:, pos] = action
    self._rewards[:, pos] = reward
    self._flags[:, pos] = (terminal * TERMINAL) | (last * LAST) | (first * FIRST)
    self._num_added += 1

  # -- Sampling --------------------------------------------------------------

  def _time_range(self) -> tuple[int, int]:
    """Inclusive [lo, hi] of candidate start times (before the `last` check)."""
    oldest = max(0, self._num_added - self._cap)
    # Once wrapped, the oldest S-1 entries lack (possibly) needed history.
    lo = oldest + self._stack - 1 if oldest > 0 else 0
    hi = self._num_added - 1 - self._n
    return lo, hi

  def _is_valid(self, env: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (self._flags[env, t % self._cap] & LAST) == 0

  def sample(self, batch_size: int, oldest_fraction: float | None = None) -> dict[str, np.ndarray]:
    """Samples a batch of n-step transitions uniformly over valid (env, t).

    Args:
      batch_size: Number of transitions.
      oldest_fraction: If given, f in (0, 1]: sample only start times in the
        oldest f fraction of the stored start-time range (all envs).

    Returns:
      obs, next_obs: uint8 [B, *frame_shape, S]; action: int32 [B];
      reward, discount: float32 [B]; env_index, time_index: int64 [B]
      (time_index counts the env's entries since construction).

    Raises:
      ValueError: If no start index is valid or `oldest_fraction` is bad.
    """
    return self._transitions(*self._indices(batch_size, oldest_fraction))

  def sample_many(self, num_batches: int, batch_size: int) -> dict[str, np.ndarray]:
    """`num_batches` calls of `sample(batch_size)` in one: every array [K, B, …], batch k as the k-th call's.

    The indices are drawn batch by batch, as the calls draw them (one draw of K·B would order the generator's
    output differently, rejections included); the frames are then gathered for all K·B at once.
    """
    drawn = [self._indices(batch_size) for _ in range(num_batches)]
    out = self._transitions(np.concatenate([env for env, _ in drawn]), np.concatenate([t for _, t in drawn]))
    return {k: v.reshape(num_batches, batch_size, *v.shape[1:]) for k, v in out.items()}

  def _indices(self, batch_size: int, oldest_fraction: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The (env, t) start indices of one `sample` (see it), drawn from the buffer's generator."""
    lo, hi = self._time_range()
    if oldest_fraction is not None:
      if not 0.0 < oldest_fraction <= 1.0:
        raise ValueError(f"oldest_fraction must be in (0, 1], got {oldest_fraction}.")
      if hi >= lo:
        hi = lo + max(1, math.ceil(oldest_fraction * (hi - lo + 1))) - 1
    width = hi - lo + 1
    if width <= 0:
      raise ValueError(
          f"No valid indices to sample: {self._num_added} entries per env added, "
          f"need at least {self._n + 1} (n_step + 1).")

    env = np.empty(batch_size, np.int64)
    t = np.empty(batch_size, np.int64)
    todo = np.arange(batch_size)
    for _ in range(_MAX_REJECTION_ROUNDS):
      if todo.size == 0:
        break
      flat = self._rng.integers(0, self._num_envs * width, size=todo.size)
      env[todo], t[todo] = np.divmod(flat, width)
      t[todo] += lo
      todo = todo[~self._is_valid(env[todo], t[todo])]
    if todo.size:  # Few valid indices: sample exactly among them.
      all_env, all_t = np.divmod(np.arange(self._num_envs * width), width)
      all_t += lo
      valid = np.flatnonzero(self._is_valid(all_env, all_t))
      if valid.size == 0:
        raise ValueError("No valid indices to sample: every candidate entry is `last`.")
      pick = valid[self._rng.integers(0, valid.size, size=todo.size)]
      env[todo], t[todo] = all_env[pick], all_t[pick]
    return env, t

  def sample_oldest(self, batch_size: int, fraction: float) -> dict[str, np.ndarray]:
    """`sample` restricted to the oldest `fraction` of the stored start times (expansion's experience review).

    Start times are counted per env since construction and every env has the same stored range, so
    this is uniform over (env, t) with t in the oldest ⌈fraction · range⌉ stored times, wrapped or not.
    """
    return self.sample(batch_size, oldest_fraction=fraction)

  def _stacks(self, env: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Frame stacks [B, *frame_shape, S] at times t, zeroed before episode start."""
    times = t[:, None] + np.arange(1 - self._stack, 1)  # [B, S], oldest first.
    slots = times % self._cap
    first = (self._flags[env[:, None], slots] & FIRST) != 0
    # Column i is zeroed iff a `first` lies among columns i+1..S-1 (entry 0 of an
    # env is first, so negative times are always zeroed).
    zero = np.zeros_like(first)
    zero[:, :-1] = np.logical_or.accumulate(first[:, :0:-1], axis=1)[:, ::-1]
    out = np.empty((env.shape[0], *self._frame_shape, self._stack), np.uint8)
    for j in range(self._stack):  # Per-channel writes beat a transposing copy.
      frames = self._frames[env, slots[:, j]]
      frames[zero[:, j]] = 0
      out[..., j] = frames
    return out

  def _transitions(self, env: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    b = env.shape[0]
    reward = np.zeros(b, np.float32)
    discount = np.full(b, self._gamma**self._n, np.float32)
    stop = np.full(b, self._n, np.int64)
    active = np.ones(b, bool)
    for k in range(1, self._n + 1):
      slot = (t + k) % self._cap
      reward += np.where(active, np.float32(self._gamma**(k - 1)) * self._rewards[env, slot], 0)
      flags = self._flags[env, slot]
      terminal = (flags & TERMINAL) != 0
      stopped = active & (terminal | ((flags & LAST) != 0))
      stop[stopped] = k
      discount[stopped] = np.where(terminal[stopped], 0.0, self._gamma**k)
      active &= ~stopped
    return {
        "obs": self._stacks(env, t),
        "action": self._actions[env, t % self._cap].astype(np.int32),
        "reward": reward,
        "discount": discount,
        "next_obs": self._stacks(env, t + stop),
        "env_index": env,
        "time_index": t,
    }

  # -- Checkpointing ---------------------------------------------------------

  def state_dict(self) -> dict[str, np.ndarray | int]:
    """Storage (written part only; views, not copies), counters and rng state."""
    filled = min(self._num_added, self._cap)
    rng_state = json.dumps(self._rng.bit_generator.state).encode()
    return {
        "frames": self._frames[:, :filled],
        "actions": self._actions[:, :filled],
        "rewards": self._rewards[:, :filled],
        "flags": self._flags[:, :filled],
        "num_added": self._num_added,
        "num_envs": self._num_envs,
        "capacity_per_env": self._cap,
        "rng_state": np.frombuffer(rng_state, np.uint8).copy(),
    }

  def load_state_dict(self, state: dict[str, Any]) -> None:
    """Restores `state_dict()` output exactly (later samples are identical)."""
    num_envs, cap = int(state["num_envs"]), int(state["capacity_per_env"])
    if (num_envs, cap) != (self._num_envs, self._cap):
      raise ValueError(f"State is for num_envs={num_envs}, capacity_per_env={cap}; buffer "
                       f"has {self._num_envs}, {self._cap}.")
    num_added = int(state["num_added"])
    filled = min(num_added, self._cap)
    for name, dst in (("frames", self._frames), ("actions", self._actions),
                      ("rewards", self._rewards), ("flags", self._flags)):
      src = np.asarray(state[name])
      if src.shape != dst[:, :filled].shape:
        raise ValueError(f"{name} has shape {src.shape}, expected {dst[:, :filled].shape}.")
      dst[:, :filled] = src
    self._num_added = num_added
    rng_state = json.loads(np.asarray(state["rng_state"], np.uint8).tobytes().decode())
    if "jax_key" in rng_state:  # A device replay's (device_loop.DeviceReplayBuffer): a stream seeded by its key.
      self._rng = np.random.default_rng([int(x) for x in rng_state["jax_key"]])
    else:
      self._rng.bit_generator.state = rng_state

  def reseed(self, seed: int) -> None:
    """Sampling from here on draws from `seed`'s stream, as a buffer made with `seed` does (the contents stay)."""
    self._rng = np.random.default_rng(seed)
