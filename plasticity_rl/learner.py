"""The seeds' learners: N agents' TrainStates and act keys, acted and updated together.

Seed i owns its TrainState and act key; what the learner adds is how the N of
them are dispatched (`config.seed_batching`):

- "loop": one jitted single-seed call per seed, dispatched one after another
  (each computes while the next is dispatched). Seed i's updates are bit for
  bit a single run's: `DQNAgent.update_at` on its own [K, B] batches.
- "vmap": the TrainStates stacked on a leading seed axis go through
  jax.vmap(update) / jax.vmap(act) in one jitted call, sharded over the local
  devices (jax.shard_map over a ("seed",) mesh: each device runs its own
  seeds, with no communication between them).

`"auto"` takes vmap on GPU/TPU and loop on CPU, where XLA makes a conv vmapped
over its kernel a grouped convolution that runs ~4× slower than the separate
convs (docs/performance.md). A single seed always loops (a plain run).

Per-seed decisions: seeds may do different numbers of updates in an iteration
(`update(batches, dues)`: under vmap, a seed with fewer gets an *inactive*
slot — a zero batch whose update is discarded with `jnp.where`, and a zero
info), and their states may take different tree structures (one seed's metric
trigger injects, another's does not): under vmap the seeds are *grouped by
structure*, one stacked group per structure, each group vmapped on its own.

The running sums of the update infos (loss, q_mean, …) stay on the device until
`info_sums()` reads them (log time, checkpoints).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_rl.agents import dqn

BATCHINGS = ("auto", "vmap", "loop")

accumulate = jax.jit(lambda total, info: jax.tree.map(jnp.add, total, info))


def stack(trees: list) -> Any:
  """Trees of one structure -> one tree with a leading axis (PRNG keys included)."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, num: int) -> list:
  return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(num)]


def resolve_batching(batching: str, num_seeds: int = 2) -> str:
  """"loop" or "vmap"; ValueError naming the allowed values for anything else."""
  if batching not in BATCHINGS:
    raise ValueError(f"unknown seed batching {batching!r}; allowed: {', '.join(BATCHINGS)}")
  if num_seeds == 1:
    return "loop"
  if batching == "auto":
    return "loop" if jax.default_backend() == "cpu" else "vmap"
  return batching


def seed_mesh(num_seeds: int) -> jax.sharding.Mesh:
  """A ("seed",) mesh over the most local devices that divide num_seeds evenly."""
  devices = jax.local_devices()
  count = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
  return jax.sharding.Mesh(np.array(devices[:count]), ("seed",))


def update_name(due: int) -> str:
  """What progress.Compilation calls the update of `due` batches (each count compiles once)."""
  return "the update" if due == 1 else f"the update ×{due}"


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=2)
def _update_group(agent: dqn.DQNAgent, mesh: jax.sharding.Mesh, states, batches, index, active):
  """Update `index` of every seed in a stacked group on its batches [n, K, B, …]; inactive seeds keep their state."""

  def one(state, seed_batches, on):
    new, info = agent.update(state, jax.tree.map(lambda x: x[index], seed_batches))
    new = jax.tree.map(lambda a, b: _select(on, a, b), new, state)
    return new, jax.tree.map(lambda v: jnp.where(on, v, jnp.zeros_like(v)), info)

  spec = jax.sharding.PartitionSpec("seed")
  return jax.shard_map(jax.vmap(one), mesh=mesh, in_specs=spec, out_specs=spec)(states, batches, active)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _act_group(agent: dqn.DQNAgent, mesh: jax.sharding.Mesh, states, obs, rngs, epsilon):
  spec, none = jax.sharding.PartitionSpec("seed"), jax.sharding.PartitionSpec()
  act = jax.vmap(lambda state, o, rng, eps: agent.act(agent.acting_params(state), o, rng, eps), in_axes=(0, 0, 0, None))
  return jax.shard_map(act, mesh=mesh, in_specs=(spec, spec, spec, none), out_specs=spec)(states, obs, rngs, epsilon)


def _select(on: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
  """jnp.where(on, a, b), PRNG key arrays included."""
  if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(jnp.where(on, jax.random.key_data(a), jax.random.key_data(b)),
                                    impl=jax.random.key_impl(a))
  return jnp.where(on, a, b)


def _structure(state) -> tuple:
  """What a stacked group shares: the tree and every leaf's shape and dtype."""
  leaves, tree = jax.tree.flatten(state)
  return tree, tuple((np.shape(x), jnp.result_type(x)) for x in leaves)


class _Group:
  """Seeds of one state structure, stacked (vmap)."""

  def __init__(self, seeds: list[int], states: list, keys: list):
    self.seeds = seeds
    self.mesh = seed_mesh(len(seeds))
    self.states = self.put(stack(states))
    self.keys = self.put(stack(keys))
    self.sums, self.counts = None, np.zeros(len(seeds), np.int64)

  def put(self, tree):
    return jax.device_put(tree, jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("seed")))


class SeedLearner:
  """N agents' TrainStates and act keys, acted and updated together (see the module docstring)."""

  def __init__(self, agent: dqn.DQNAgent, states: list[dqn.TrainState], act_keys: list[jax.Array],
               batching: str, compilation=None):
    self.agent, self.num_seeds = agent, len(states)
    self.batching = resolve_batching(batching, len(states))
    self.compilation = compilation  # progress.Compilation, or None (nothing announced).
    self.name = update_name if self.batching == "loop" else self._vmap_name
    self._groups: list[_Group] = []
    self._states, self._keys = [], []
    self._sums: list[dict | None] = [None] * self.num_seeds
    self._counts = [0] * self.num_seeds
    self._set(list(states), list(act_keys))

  def _vmap_name(self, due: int) -> str:
    return f"the update (vmap over {self.num_seeds} seeds{'' if due == 1 else f', ×{due}'})"

  # -- states and keys ---------------------------------------------------------------------------------------

  def _set(self, states: list, keys: list) -> None:
    if self.batching == "loop":
      self._states, self._keys = [dqn.owned(s) for s in states], list(keys)  # The update donates each state.
      return
    sums, counts = self._take_group_infos()
    by_structure: dict[tuple, list[int]] = {}
    for i, state in enumerate(states):
      by_structure.setdefault(_structure(state), []).append(i)
    self._groups = [_Group(seeds, [states[i] for i in seeds], [keys[i] for i in seeds])
                    for seeds in by_structure.values()]
    for group in self._groups:
      if any(sums[i] is not None for i in group.seeds):
        group.sums = group.put(stack([sums[i] if sums[i] is not None else jax.tree.map(
            jnp.zeros_like, next(s for s in sums if s is not None)) for i in group.seeds]))
      group.counts = np.array([counts[i] for i in group.seeds], np.int64)

  @property
  def groups(self) -> list[list[int]]:
    """The seeds (indices) dispatched together: one per seed under "loop", one per state structure under "vmap"."""
    return [[i] for i in range(self.num_seeds)] if self.batching == "loop" else [g.seeds for g in self._groups]

  @property
  def devices(self) -> int:
    return max((g.mesh.devices.size for g in self._groups), default=1)

  def _in_seed_order(self, field: str) -> list:
    """The groups' stacked `field` ("states" or "keys") as one entry per seed, in seed order (vmap)."""
    out = [None] * self.num_seeds
    for group in self._groups:
      for i, tree in zip(group.seeds, unstack(getattr(group, field), len(group.seeds))):
        out[i] = tree
    return out

  @property
  def states(self) -> list[dqn.TrainState]:
    return list(self._states) if self.batching == "loop" else self._in_seed_order("states")

  @property
  def act_keys(self) -> list[jax.Array]:
    return list(self._keys) if self.batching == "loop" else self._in_seed_order("keys")

  def set_states(self, states: list[dqn.TrainState]) -> None:
    self._set(list(states), self.act_keys)

  def set_state(self, i: int, state: dqn.TrainState) -> None:
    """Seed i's state replaced (an intervention): under vmap the seeds are regrouped if its structure changed."""
    if self.batching == "loop":
      self._states[i] = dqn.owned(state)
      return
    states = self.states
    states[i] = state
    self.set_states(states)

  # -- acting and updating -------------------------------------------------------------------------------------

  def act(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
    """obs [N, envs, …] -> ε-greedy actions [N, envs] (each seed with its own acting params and key)."""
    if self.batching == "loop":
      out = []
      for i, state in enumerate(self._states):
        actions, self._keys[i] = self.agent.act(self.agent.acting_params(state), obs[i], self._keys[i], epsilon)
        out.append(actions)
      return np.stack([np.asarray(a) for a in out])
    actions = [None] * self.num_seeds
    for group in self._groups:
      got, group.keys = _act_group(self.agent, group.mesh, group.states, group.put(obs[group.seeds]), group.keys,
                                   epsilon)
      for i, a in zip(group.seeds, np.asarray(got)):
        actions[i] = a
    return np.stack(actions)

  def _call(self, due: int, fn, *args, frames: int):
    if self.compilation is None:
      return fn(*args)
    return self.compilation.call(self.name(due), fn, *args, frames=frames)

  def update(self, batches: list[dict[str, np.ndarray] | None], frames: int = 0) -> None:
    """Seed i's K_i updates on its batches [K_i, B, …] (None: no update this iteration), dispatched async; the
    infos add up on the device (`info_sums`)."""
    if self.batching == "loop":
      for i, seed_batches in enumerate(batches):
        if seed_batches is None:
          continue
        due = len(seed_batches["action"])
        seed_batches = jax.device_put(seed_batches)  # One transfer for the K updates.
        for index in range(due):  # Donates the state.
          self._states[i], info = self._call(due, self.agent.update_at, self._states[i], seed_batches, index,
                                             frames=frames)
          self._sums[i] = info if self._sums[i] is None else accumulate(self._sums[i], info)
        self._counts[i] += due
      return
    for group in self._groups:
      dues = [0 if batches[i] is None else len(batches[i]["action"]) for i in group.seeds]
      most = max(dues)
      if not most:
        continue
      template = next(batches[i] for i in group.seeds if batches[i] is not None)
      stacked = group.put({k: np.stack([_padded(batches[i], k, template, most) for i in group.seeds])
                           for k in template})
      for index in range(most):
        active = group.put(np.array([d > index for d in dues]))
        group.states, info = self._call(most, _update_group, self.agent, group.mesh, group.states, stacked,
                                        index, active, frames=frames)
        group.sums = info if group.sums is None else accumulate(group.sums, info)
      group.counts += np.array(dues)

  def take(self, i: int) -> tuple[dqn.TrainState, jax.Array, dict | None, int]:
    """Seed i's state, act key, info sum (None: none yet) and count, for a caller that updates them itself (the
    device path's chunks, device_loop.py) and hands them back with `give`; "loop" batching only."""
    if self.batching != "loop":
      raise ValueError("the device path runs seeds one after another: seed_batching must be 'loop'")
    return self._states[i], self._keys[i], self._sums[i], self._counts[i]

  def give(self, i: int, state: dqn.TrainState, key: jax.Array, info_sum: dict | None, count: int) -> None:
    """Seed i after a caller's updates (`take`): the state as the caller's program returned it (not copied)."""
    self._states[i], self._keys[i] = state, key
    self._sums[i], self._counts[i] = (info_sum if count else None), count

  # -- the infos' running sums ---------------------------------------------------------------------------------

  def _take_group_infos(self) -> tuple[list, list]:
    sums, counts = [None] * self.num_seeds, [0] * self.num_seeds
    for group in self._groups:
      host = None if group.sums is None else jax.device_get(group.sums)
      for j, i in enumerate(group.seeds):
        counts[i] = int(group.counts[j])
        if host is not None and counts[i]:
          sums[i] = {k: jnp.asarray(v[j]) for k, v in host.items()}
    return sums, counts

  def info_sums(self) -> list[tuple[dict[str, float] | None, int]]:
    """(sum of each info over the updates since the last reset, as host floats — None if none —, their count)."""
    if self.batching == "loop":
      sums = jax.device_get(self._sums)
      return [(None if s is None else {k: float(v) for k, v in s.items()}, c) for s, c in zip(sums, self._counts)]
    sums, counts = self._take_group_infos()
    return [(None if s is None else {k: float(v) for k, v in s.items()}, c) for s, c in zip(sums, counts)]

  def info_means(self) -> list[dict[str, float]]:
    """Each info's mean over the updates since the last reset ({} for a seed without any); then resets."""
    out = [{k: v / count for k, v in s.items()} if s is not None and count else {} for s, count in self.info_sums()]
    self.load_infos([(None, 0)] * self.num_seeds)
    return out

  def load_infos(self, sums: list[tuple[dict[str, float] | None, int]]) -> None:
    """Sets the running sums (a resume: the checkpoint's `info_sum`, `info_count` of each seed)."""
    device = [None if s is None or not c else {k: jnp.asarray(v, jnp.float32) for k, v in s.items()}
              for s, c in sums]
    if self.batching == "loop":
      self._sums, self._counts = device, [c if s is not None else 0 for (s, c) in sums]
      return
    for group in self._groups:
      present = [device[i] for i in group.seeds if device[i] is not None]
      group.sums = None if not present else group.put(stack(
          [device[i] if device[i] is not None else jax.tree.map(jnp.zeros_like, present[0]) for i in group.seeds]))
      group.counts = np.array([sums[i][1] if device[i] is not None else 0 for i in group.seeds], np.int64)


def _padded(batches: dict[str, np.ndarray] | None, key: str, template: dict[str, np.ndarray], most: int):
  """batches[key] as [most, B, …]: missing updates (an inactive slot) filled with zeros."""
  like = template[key]
  if batches is None:
    return np.zeros((most, *like.shape[1:]), like.dtype)
  x = batches[key]
  if len(x) == most:
    return x
  return np.concatenate([x, np.zeros((most - len(x), *x.shape[1:]), x.dtype)])
