"""The Q-network as a sequence of named Flax layers, so surgeries can address them.

The params tree (its layout is owned by params_tree.py, which every other module reads it through)
holds the main path's layers by part ("encoder": conv_0..2, "head": dense_0..1), trainable or
frozen, and the injected branches plus_i / minus_i. A *branch* is a dict {layer name: layer
params} over a suffix of the layer sequence (the injected part). The network computes

    Q(x) = f_main(x) + Σ_i f_plus_i(x) − Σ_i f_minus_i(x)

(summed in an order that makes an injection leave Q bit-identical, see `apply`)
where every branch runs on the features that the main path computes just before
the branch's first layer. With no branches this is the plain Nature-CNN DQN.
Layer widths are read off the params, so a branch may be wider than the layers
it sits beside (dynamic growth). Only the trainable part is differentiated
and has optimizer state.
"""

import dataclasses
import math
from typing import Any, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from plasticity_rl import params_tree

Params = Any  # A nested dict of arrays.

ACTIVATIONS = ("relu", "leaky_relu", "crelu")
# Weight initializers (biases start at 0 except with "dqn_zoo"):
# - "lecun_normal": flax's default (truncated normal, variance 1/fan_in);
# - "xavier_uniform": Dopamine's FullRainbowNetwork (dopamine/jax/networks.py), the DrQ(ε) network;
# - "dqn_zoo": DQN Zoo's `_dqn_default_initializer` (dqn_zoo/networks.py): weights and biases uniform in
#   ±1/√fan_in, fan_in = inputs of one output unit (in_channels × kernel area for a conv).
INITIALIZERS = ("lecun_normal", "xavier_uniform", "dqn_zoo")
PADDINGS = ("VALID", "SAME")  # Conv padding: the Nature CNN's VALID, or flax's default SAME (Dopamine's networks).


class LayerSpec(NamedTuple):
  part: str  # "encoder" or "head": the named part of the params tree.
  name: str  # e.g. "conv_0"; unique over the network.
  kind: str  # "conv" or "dense".
  features: int
  kernel: int = 0
  stride: int = 0


def nature_cnn_specs(num_actions: int, width: float = 1.0, hidden: int = 512) -> tuple[LayerSpec, ...]:
  """Mnih et al. 2015: 32 8×8/4, 64 4×4/2, 64 3×3/1 (VALID), dense 512, dense A."""
  scaled = lambda n: max(1, int(round(n * width)))
  return (
      LayerSpec("encoder", "conv_0", "conv", scaled(32), 8, 4),
      LayerSpec("encoder", "conv_1", "conv", scaled(64), 4, 2),
      LayerSpec("encoder", "conv_2", "conv", scaled(64), 3, 1),
      LayerSpec("head", "dense_0", "dense", scaled(hidden)),
      LayerSpec("head", "dense_1", "dense", num_actions),
  )


def _activate(x: jax.Array, activation: str) -> jax.Array:
  if activation == "relu":
    return nn.relu(x)
  if activation == "leaky_relu":
    return nn.leaky_relu(x, negative_slope=0.01)
  if activation == "crelu":  # Concatenated ReLU: doubles the channels.
    return jnp.concatenate([nn.relu(x), nn.relu(-x)], axis=-1)
  raise ValueError(f"unknown activation {activation!r}; allowed: {ACTIVATIONS}")


@dataclasses.dataclass(frozen=True)
class QNetwork:
  """Pure init/apply over the params tree described in the module docstring."""

  specs: tuple[LayerSpec, ...]
  activation: str = "relu"
  layer_norm: bool = False
  # Dueling head (Wang et al. 2016) as Dopamine's FullRainbowNetwork builds it: the output layer holds A
  # advantage columns and one value column (one kernel, so every surgery sees one output layer), each
  # initialized as its own Dense layer would be; Q = V + A − mean(A).
  dueling: bool = False
  initializer: str = "lecun_normal"
  conv_padding: str = "VALID"
  # One bias shared by every output (DQN Zoo's double_q network, `linear_with_shared_bias` in
  # dqn_zoo/networks.py): the output layer's bias has shape [1].
  shared_output_bias: bool = False

  @property
  def layer_names(self) -> tuple[str, ...]:
    return tuple(s.name for s in self.specs)

  def spec(self, name: str) -> LayerSpec:
    for s in self.specs:
      if s.name == name:
        return s
    raise KeyError(f"no layer {name!r}; layers: {self.layer_names}")

  def is_output(self, name: str) -> bool:
    return name == self.specs[-1].name

  # -- one layer ---------------------------------------------------------------

  def output_width(self, features: int) -> int:
    """Columns of the output layer's kernel for `features` Q-values (one more with a dueling head)."""
    return features + 1 if self.dueling else features

  def _modules(self, spec: LayerSpec, features: int) -> tuple[nn.Module, nn.Module | None]:
    init = _kernel_init(self.initializer, dueling=self.dueling and self.is_output(spec.name))
    if spec.kind == "conv":
      linear = nn.Conv(features, (spec.kernel, spec.kernel), (spec.stride, spec.stride), padding=self.conv_padding,
                       kernel_init=init)
    else:
      linear = nn.Dense(features, kernel_init=init, use_bias=not (self.shared_output_bias and self.is_output(spec.name)))
    norm = nn.LayerNorm() if self.layer_norm and not self.is_output(spec.name) else None
    return linear, norm

  def init_layer(self, rng: jax.Array, name: str, x: jax.Array, features: int | None = None) -> tuple[Params, jax.Array]:
    """Fresh params of one layer (optionally with another width) and its output on x."""
    spec = self.spec(name)
    features = features or spec.features
    linear, norm = self._modules(spec, self.output_width(features) if self.is_output(name) else features)
    x = self._flatten_for(spec, x)
    params = {"linear": linear.init(rng, x)["params"]}
    kernel = params["linear"]["kernel"]
    bias_shape = (1,) if "bias" not in params["linear"] else kernel.shape[-1:]  # Shared: one bias.
    if self.initializer == "dqn_zoo":  # Biases too, with the kernel's fan-in.
      bound = 1.0 / math.sqrt(math.prod(kernel.shape[:-1]))
      params["linear"]["bias"] = jax.random.uniform(jax.random.fold_in(rng, 1), bias_shape, kernel.dtype, -bound, bound)
    elif "bias" not in params["linear"]:
      params["linear"]["bias"] = jnp.zeros(bias_shape, kernel.dtype)
    x = self._linear(linear, params["linear"], x)
    if norm is not None:
      params["norm"] = norm.init(rng, x)["params"]
    return params, self._finish(spec, params, norm, x)

  def apply_layer(self, name: str, params: Params, x: jax.Array) -> jax.Array:
    spec = self.spec(name)
    linear, norm = self._modules(spec, params["linear"]["kernel"].shape[-1])
    x = self._linear(linear, params["linear"], self._flatten_for(spec, x))
    return self._finish(spec, params, norm, x)

  @staticmethod
  def _linear(linear: nn.Module, params: Params, x: jax.Array) -> jax.Array:
    if getattr(linear, "use_bias", True):
      return linear.apply({"params": params}, x)
    return linear.apply({"params": {"kernel": params["kernel"]}}, x) + params["bias"]  # The shared bias.

  def _flatten_for(self, spec: LayerSpec, x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1) if spec.kind == "dense" and x.ndim > 2 else x

  def _finish(self, spec, params, norm, x):
    if self.is_output(spec.name):
      if self.dueling:  # Columns: A advantages, then the value.
        advantage, value = x[..., :-1], x[..., -1:]
        return value + (advantage - jnp.mean(advantage, axis=-1, keepdims=True))
      return x
    if norm is not None:
      x = norm.apply({"params": params["norm"]}, x)
    return _activate(x, self.activation)

  # -- whole network ------------------------------------------------------------

  def init(self, rng: jax.Array, obs_shape: tuple[int, ...]) -> Params:
    """Params of a fresh network for uint8 observations of shape obs_shape (no batch)."""
    x = self.preprocess(jnp.zeros((1, *obs_shape), jnp.uint8))
    trainable: dict[str, dict[str, Params]] = {}
    for spec, key in zip(self.specs, jax.random.split(rng, len(self.specs))):
      trainable.setdefault(spec.part, {})[spec.name], x = self.init_layer(key, spec.name, x)
    return params_tree.new(trainable)

  def init_branch(self, rng: jax.Array, params: Params, names: tuple[str, ...], obs_shape: tuple[int, ...],
                  widths: Mapping[str, int] | None = None) -> Params:
    """Fresh params for the layers `names` (a suffix of the network), optionally wider."""
    x = self.preprocess(jnp.zeros((1, *obs_shape), jnp.uint8))
    layers = params_tree.main_layers(params)
    for name in self.layer_names[: self.layer_names.index(names[0])]:
      x = self.apply_layer(name, layers[name], x)
    branch = {}
    for name, key in zip(names, jax.random.split(rng, len(names))):
      branch[name], x = self.init_layer(key, name, x, (widths or {}).get(name))
    return branch

  @staticmethod
  def preprocess(obs: jax.Array) -> jax.Array:
    return obs.astype(jnp.float32) / 255.0

  def apply(self, params: Params, obs: jax.Array) -> jax.Array:
    """Q-values [B, A] for uint8 observations [B, 84, 84, 4]."""
    return self.apply_with_features(params, obs)[0]

  def apply_with_features(self, params: Params, obs: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Q-values and every main-path layer's output (post-activation), by layer name."""
    layers = params_tree.main_layers(params)
    plus, minus = params_tree.plus_branches(params), params_tree.minus_branches(params)
    split = self.layer_names.index(next(iter(plus[0]))) if plus else len(self.specs)
    x = self.preprocess(obs)
    features = {}
    for name in self.layer_names[:split]:
      x = features[name] = self.apply_layer(name, layers[name], x)
    q = self._run_branch(layers, x, split, features)
    if plus:
      # Q = plus_0 + Σ_i (next_i − minus_i), next_i = plus_{i+1}, the last one the main path: the
      # newest pair is exactly 0 at its injection, and the rest is the previous sum in the same order,
      # so an injection leaves Q bit-identical. injection.stop_frozen_grad: the frozen branches see the
      # same features (the same values) without their gradient.
      branch_x = jax.lax.stop_gradient(x) if params_tree.frozen_grad_stopped(params) else x
      outs = self._run_branches((*plus, *minus), branch_x, split)
      newer = outs[1:len(plus)] + [q]
      q = outs[0]
      for fresh, branch_q in zip(newer, outs[len(plus):]):
        q = q + (fresh - branch_q)
    return q, features

  def _run_branches(self, branches: tuple[Params, ...], x: jax.Array, start: int) -> list[jax.Array]:
    """Outputs of the injected branches on the features x, one call each.

    Not stacked (one vmapped call over branches of the same shapes): on XLA:CPU the stacked forward is bit for bit
    this one, but its backward sums the encoder's cotangents in another order (the update's last bits move), and
    the update is 1.1–1.6× slower there; scripts/update_cost.py --injections=0,1,2,3 --stacked measures both
    (docs/performance.md).
    """
    return [self._run_branch(b, x, start) for b in branches]

  def _run_branch(self, layers: Params, x: jax.Array, start: int, features: dict | None = None) -> jax.Array:
    for name in self.layer_names[start:]:
      x = self.apply_layer(name, layers[name], x)
      if features is not None:
        features[name] = x
    return x


def _dqn_zoo_uniform(key, shape, dtype=jnp.float32):
  """DQN Zoo's `_dqn_default_initializer`: uniform in ±1/√fan_in, fan_in = all but the last kernel axis."""
  bound = 1.0 / math.sqrt(math.prod(shape[:-1]))
  return jax.random.uniform(key, shape, dtype, -bound, bound)


def _kernel_init(name: str, dueling: bool = False):
  """flax kernel_init for INITIALIZERS; with `dueling`, the value column is drawn as a layer of its own."""
  kernel = {"lecun_normal": nn.initializers.lecun_normal(), "xavier_uniform": nn.initializers.xavier_uniform(),
            "dqn_zoo": _dqn_zoo_uniform}.get(name)
  if kernel is None:
    raise ValueError(f"unknown initializer {name!r}; allowed: {INITIALIZERS}")
  if not dueling:
    return kernel

  def dueling_kernel(key, shape, dtype=jnp.float32):
    adv_key, value_key = jax.random.split(key)
    return jnp.concatenate([kernel(adv_key, (*shape[:-1], shape[-1] - 1), dtype),
                            kernel(value_key, (*shape[:-1], 1), dtype)], axis=-1)
  return dueling_kernel


def halve_hidden(specs: tuple[LayerSpec, ...]) -> tuple[LayerSpec, ...]:
  """CReLU width accounting: hidden layers get ⌈features/2⌉ units, so their 2× CReLU outputs are as wide as
  the plain network's (and the parameters about half); the output layer keeps its features."""
  return tuple(s._replace(features=(s.features + 1) // 2) for s in specs[:-1]) + specs[-1:]


def make_network(network_config, num_actions: int) -> QNetwork:
  """From config.network: width, hidden, activation, layer_norm, crelu_halve_width (absent: False)."""
  specs = nature_cnn_specs(num_actions, network_config.width, network_config.hidden)
  if network_config.activation == "crelu" and network_config.get("crelu_halve_width", False):
    specs = halve_hidden(specs)
  return QNetwork(
      specs=specs,
      activation=network_config.activation,
      layer_norm=network_config.layer_norm,
      dueling=network_config.get("dueling", False),
      initializer=network_config.get("initializer", "lecun_normal"),
      conv_padding=network_config.get("conv_padding", "VALID"),
      shared_output_bias=network_config.get("shared_output_bias", False),
  )


count_params = params_tree.count_params  # Elements of any tree (callers count params, a part, a branch).
