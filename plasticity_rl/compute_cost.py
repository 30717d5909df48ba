"""Compute accounting of the learner: FLOPs of one update and parameter counts, for "dynamic growth vs a large
network from the start" (a grown or injected run against a wide one, at equal FLOPs rather than equal frames).

FLOPs are XLA's own count (`cost_analysis()["flops"]` of the lowered computation, before XLA's optimizations, so
no compile is needed), with HloCostAnalysis's conventions: a dot or a convolution 2 per multiply-add, an
elementwise op 1 per output element (a convert, a comparison, a select, a max too), a reduction n − 1 per
output; layout ops (reshape, transpose, broadcast) count 0; exp, log, rsqrt are "transcendentals", not FLOPs
(tests/test_compute_cost.py checks a small dense network against a hand count). The figures of one update:

  forward_flops           the loss alone: the online forward on obs, and on next_obs the selector and the
                          target network (Double DQN), the TD error and the loss;
  forward_backward_flops  the loss and its gradient w.r.t. the trainable params;
  update_flops            the whole jitted update (agents/dqn.py): the above, the optimizer step, the periodic
                          target copy and the interventions' hooks.

A FLOP count depends only on the shapes and the tree structure, which change only at surgeries (injection,
growth, expansion): `update_cost` caches by (agent, structure, shapes, batch size) and returns the cached figures
until then. Pure: nothing here runs the update, and the state's values are never read.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl.agents import dqn


@dataclasses.dataclass(frozen=True)
class UpdateCost:
  """The FLOPs of one update (see the module docstring) and the params' element counts."""

  forward_flops: float
  forward_backward_flops: float
  update_flops: float
  params_trainable: int
  params_frozen: int  # Frozen main-path layers and the frozen injected branches.

  @property
  def params_total(self) -> int:
    return self.params_trainable + self.params_frozen


def flops(fn, *args) -> float:
  """XLA's FLOP count of jax.jit(fn)(*args) (arrays or jax.ShapeDtypeStruct), from the lowered computation."""
  analysis = jax.jit(fn).lower(*args).cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older jax: one dict per computation.
    analysis = analysis[0]
  return float(analysis.get("flops", 0.0))


def abstract(tree):
  """`tree` with every array leaf replaced by its jax.ShapeDtypeStruct (what `flops` lowers on)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def batch_spec(obs_shape: tuple[int, ...], batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """The replay batch the update takes ({obs, action, reward, discount, next_obs}), as shapes."""
  obs = jax.ShapeDtypeStruct((batch_size, *obs_shape), jnp.uint8)
  scalar = lambda dtype: jax.ShapeDtypeStruct((batch_size,), dtype)
  return {"obs": obs, "next_obs": obs, "action": scalar(jnp.int32), "reward": scalar(jnp.float32),
          "discount": scalar(jnp.float32)}


def forward_flops(network: networks.QNetwork, params: networks.Params, batch_size: int,
                  obs_shape: tuple[int, ...]) -> float:
  """FLOPs of one network forward pass (network.apply) on a batch of uint8 observations."""
  return flops(network.apply, abstract(params), jax.ShapeDtypeStruct((batch_size, *obs_shape), jnp.uint8))


def _structure_key(state: dqn.TrainState) -> tuple:
  leaves, treedef = jax.tree.flatten(state)
  return treedef, tuple((tuple(x.shape), str(x.dtype)) for x in leaves)


class _ByStructure:
  """An abstract state that hashes and compares by its tree structure and shapes alone (the cache's key)."""

  def __init__(self, state: dqn.TrainState):
    self.state, self.key = abstract(state), _structure_key(state)

  def __hash__(self):
    return hash(self.key)

  def __eq__(self, other):
    return isinstance(other, _ByStructure) and self.key == other.key


@functools.lru_cache(maxsize=64)
def _cost(agent: dqn.DQNAgent, batch_size: int, structure: _ByStructure) -> UpdateCost:
  state, batch = structure.state, batch_spec(agent.obs_shape, batch_size)
  trainable = params_tree.trainable(state.params)
  loss = lambda t, s, b: agent.loss(t, s, b)[0]
  return UpdateCost(
      forward_flops=flops(loss, trainable, state, batch),
      forward_backward_flops=flops(jax.grad(loss), trainable, state, batch),
      update_flops=flops(lambda s, b: agent._update(s, b), state, batch),  # pylint: disable=protected-access
      params_trainable=params_tree.count_trainable(state.params),
      params_frozen=params_tree.count_frozen(state.params))


def update_cost(agent: dqn.DQNAgent, state: dqn.TrainState, batch_size: int) -> UpdateCost:
  """The FLOPs of one `agent.update(state, batch)` on batches of `batch_size`, and the params counts; cached per
  (agent, tree structure and shapes, batch size): a new structure (a surgery) lowers the update once more."""
  return _cost(agent, batch_size, _ByStructure(state))


@dataclasses.dataclass
class FlopsCounter:
  """The cumulative training FLOPs of one learner: Σ over its updates of their update_flops.

  `advance(agent, state, updates)` counts the updates since its last call at `state`'s update FLOPs, so call it
  with the state the updates ran on: at each log row, and before a surgery changes the structure.
  """

  batch_size: int
  train_flops: float = 0.0
  counted_updates: int = 0

  def advance(self, agent: dqn.DQNAgent, state: dqn.TrainState, updates: int) -> float:
    """Adds (updates − the updates counted so far) × `state`'s update FLOPs; returns those update FLOPs."""
    flops_per_update = update_cost(agent, state, self.batch_size).update_flops
    self.train_flops += flops_per_update * (updates - self.counted_updates)
    self.counted_updates = updates
    return flops_per_update
