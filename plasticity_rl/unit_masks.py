"""Unit masks: a network restricted to its active hidden units (the learner's side of expansion.py).

A unit mask is {hidden layer name: float32 [units]}, 1 = active, for every layer but the output
layer. A masked unit's own params (kernel column / output channel, bias, LayerNorm scale and bias)
and its outgoing weights (the next layer's input rows or channels) are 0. `weight_masks` expands
unit masks into a float tree shaped like the trainable params; `apply` multiplies a tree by it.

Kept apart from expansion.py so that agents/dqn.py can import it (expansion.py imports dqn).
"""

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from plasticity_rl import networks
from plasticity_rl import params_tree

Masks = Mapping[str, jax.Array]


def input_rows(network: networks.QNetwork, unit_mask: jax.Array, fan_in: int) -> jax.Array:
  """[fan_in] mask of the next layer's inputs that the units feed.

  CReLU units feed channels i and units + i; after a conv layer a dense layer reads the
  channel-last flatten of [H, W, C] (row (h·W + w)·C + c reads channel c), so the channel
  mask is tiled H·W times. Shared by expansion (grow, masks) and ReDo (remedies.recycle).
  """
  channels = jnp.concatenate([unit_mask, unit_mask]) if network.activation == "crelu" else unit_mask
  return jnp.tile(channels, fan_in // channels.shape[0])


def weight_masks(network: networks.QNetwork, trainable: networks.Params, masks: Masks) -> networks.Params:
  """A tree like `trainable` with 1 on the entries of active units and 0 on masked units' params and inputs."""
  names = network.layer_names

  def layer_mask(name: str, layer: networks.Params) -> networks.Params:
    own = masks.get(name)  # None for the output layer.
    index = names.index(name)
    feeding = masks.get(names[index - 1]) if index > 0 else None

    def leaf(path, x):
      m = jnp.ones(x.shape, x.dtype)
      if own is not None:
        m = m * own.astype(x.dtype)
      if feeding is not None and getattr(path[-1], "key", None) == "kernel":
        m = m * input_rows(network, feeding, x.shape[-2]).astype(x.dtype)[:, None]
      return m

    return jax.tree_util.tree_map_with_path(leaf, layer)

  return params_tree.map_layers(layer_mask, trainable)


def apply(tree: Any, keep: Any) -> Any:
  """tree ⊙ keep (keep from `weight_masks`): masked entries become exactly 0."""
  return jax.tree.map(lambda x, m: x * m, tree, keep)
