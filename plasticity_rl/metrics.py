"""Plasticity metrics on a probe batch: dormant units, FAU, ranks, weights, gradients.

`plasticity_metrics(agent, state, probe_batch, init_params)` is one jitted call
(compiled once per params-tree structure: again after each injection) that
returns a flat dict of float32 scalars with stable names (docs/metrics.md has
every formula with its source):

    dormant_<τ>/<group>/<layer>   τ-dormant fraction of a hidden layer (ReDo), τ ∈ taus
    dormant_<τ>                   dormant units / units over the main path's hidden layers (ReDo's percentage)
    fau/<group>/<layer>           fraction of active units: activation elements > 0 / elements (Ma et al.)
    fau/encoder, fau/head         the same count over a module's hidden layers: active elements / elements
    fau                           the same count over every hidden layer of the main path (the whole Q-network)
    fau/<branch>                  the same count over an injected branch's hidden layers
    srank, feature_rank, feature_rank_unnormalized, effective_rank
                                  of the penultimate features Φ (last hidden layer, main path)
    <rank metric>/<branch>        the same for an injected branch's penultimate features
    <rank metric>/combined        the same for [Φ_main | Φ_plus_0 | Φ_minus_0 | …], on which Q is linear
    effective_rank/<group>/<layer>  effective rank of every hidden layer's features
    weight_mean_abs               mean |θ| over every trainable parameter, biases included (network-wide)
    weight_mean_abs/<group>/<layer>  mean |θ| over the layer's parameters (kernel, bias, LayerNorm)
    weight_norm/<group>/<layer>   ‖kernel‖₂ (Frobenius) of the layer
    param_norm                    ‖θ‖₂ over all trainable params
    distance_from_init/<group>/<layer>, distance_from_init          ‖θ − θ_init‖₂ (see below)
    updated_units/<part>/<layer>  share of a trainable layer's units with a non-zero gradient on a training batch
    grad_norm, loss               of the agent's loss on the probe batch
    q_mean, q_max, td_abs_mean, td_abs_max

<group> is the params part ("encoder", "head") for the main path — after an
injection the main path's injected layers are the *trainable* branch θ'₁ — and
"plus_<i>" / "minus_<i>" for the frozen injected branches (params_tree). The output
layer has no dormant/FAU/rank entries (it is never recycled and has no activation).

Distance from initialization is measured against each layer's own init: the
main-path layers of an injected suffix against the fresh init of the latest
injection (the frozen branch minus_{-1}, which is that init), every other
main-path layer against θ₀ (`init_params`) at the same path (params_tree.init_layers); plus_0
against θ₀, plus_i (i ≥ 1) against minus_{i-1}. Leaves are compared only where
the reference has the same layer with the same shapes (otherwise no key), and
minus branches (frozen inits) have none.

The building blocks (`dormant_scores`, `dormant_mask`, `srank`, …) are pure
functions on arrays, for ReDo and tests.
"""

import functools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl.agents import dqn

Params = networks.Params

DEFAULT_TAUS = (0.0, 0.025, 0.1)
SRANK_DELTA = 0.01
FEATURE_RANK_EPS = 0.01
# feature_rank is Lyle et al.'s (σ of Φ/√n); feature_rank_unnormalized counts σ of Φ itself (it was named
# feature_rank before, and Lyle et al.'s one feature_rank_sqrt_n).
RANK_METRICS = ("srank", "feature_rank", "feature_rank_unnormalized", "effective_rank")
# Updated units are measured on a training batch: the loop's learner batch when the caller passes it
# (`train_batch`), else the first `train_batch_size` transitions of the probe, a uniform replay sample of a
# learner batch's size. 32 = base_config's learner.batch_size (DQN Zoo's and Dopamine's batch).
DEFAULT_TRAIN_BATCH_SIZE = 32
# The learner batch's fields (DQNAgent.loss's): a probe or replay batch is cut down to these.
BATCH_KEYS = ("obs", "action", "reward", "discount", "next_obs")


# -- building blocks -------------------------------------------------------------


def dormant_scores(activations: jax.Array, active: jax.Array | None = None) -> jax.Array:
  """ReDo score per unit (last axis): s_i = E|h_i| / mean_k E|h_k|.

  The expectation runs over every axis but the last (batch, and space for a
  conv feature map, so one channel is one unit). As in dopamine's
  weight_recyclers.py, the layer mean gets + 1e-9, so a layer of dead units
  scores 0 everywhere. `active` (float [units], 1 = active: expansion's unit
  mask) takes the layer mean over the active units only.
  """
  score = jnp.mean(jnp.abs(activations), axis=tuple(range(activations.ndim - 1)))
  if active is None:
    return score / (jnp.mean(score) + 1e-9)
  return score / (jnp.sum(score * active) / jnp.maximum(jnp.sum(active), 1.0) + 1e-9)


def dormant_mask(activations: jax.Array, tau: float) -> jax.Array:
  """True for τ-dormant units (score ≤ τ); τ = 0 marks exactly dead units."""
  return dormant_scores(activations) <= tau


def dormant_fraction(activations: jax.Array, tau: float) -> jax.Array:
  return jnp.mean(dormant_mask(activations, tau).astype(jnp.float32))


def fraction_active(activations: jax.Array) -> jax.Array:
  """FAU of one layer (Ma et al. 2024): activation elements > 0 / elements, over batch, space and channels."""
  return jnp.mean((activations > 0).astype(jnp.float32))


def active_elements(activations: jax.Array) -> tuple[jax.Array, int]:
  """(activation elements > 0, elements) of one layer's post-activation output, for FAU over several layers.

  Ma et al.'s FAU of a module sums these over its hidden layers before dividing:
  FAU = Σ_l #{h_l > 0} / Σ_l numel(h_l), with h_l the [batch, (H, W,) C] output of hidden layer l
  (Guozheng-Ma/Adaptive-Replay-Ratio, drqv2_adapt_rr.py: `Critic.forward_with_FAU` over the Q-heads' ReLU
  outputs, `Encoder.forward_with_FAU` over the conv layers'; the same count in torressliu/neuroplastic-expansion,
  stl/modules_TD3.py `MLPCritic.forward_with_FAU`). A conv layer thus weighs in with B·H·W·C elements, a dense
  one with B·C: it is not a mean of the layers' FAUs, nor one weighted by units.
  """
  return jnp.sum((activations > 0).astype(jnp.float32)), int(activations.size)


def singular_values(features: jax.Array) -> jax.Array:
  """σ of a [n, ...] feature matrix (flattened to [n, d]), descending, min(n, d) of them.

  A very wide Φ (d ≥ 4n: conv feature maps) goes to the SVD as Φᵀ: the same singular values, and XLA's CPU
  SVD of the 256 × 12,800 conv_0 features is 2–5× faster that way (for 256 × 512 it is slower).
  """
  m = features.reshape(features.shape[0], -1).astype(jnp.float32)
  return jnp.linalg.svdvals(m.T if m.shape[1] >= 4 * m.shape[0] else m)


def srank(sv: jax.Array, delta: float = SRANK_DELTA) -> jax.Array:
  """Kumar et al. 2021: min{k : Σ_{i≤k} σ_i / Σ_i σ_i ≥ 1 − δ}; 0 for a zero matrix."""
  sv = jnp.sort(sv)[::-1]
  total = jnp.sum(sv)
  reached = jnp.cumsum(sv) >= (1.0 - delta) * total
  return jnp.where(total > 0, jnp.argmax(reached) + 1, 0).astype(jnp.int32)


def feature_rank(features: jax.Array, eps: float = FEATURE_RANK_EPS, normalize: bool = True) -> jax.Array:
  """Lyle, Rowland, Dabney 2022 (ICLR, arXiv 2204.09560): #{σ(Φ/√n) > eps}, Φ = [n, d] features.

  normalize=False counts #{σ(Φ) > eps} instead (`feature_rank_unnormalized`), which grows with n.
  """
  sv = singular_values(features)
  return _count_above(sv / jnp.sqrt(features.shape[0]) if normalize else sv, eps)


def _count_above(sv: jax.Array, eps: float) -> jax.Array:
  return jnp.sum(sv > eps).astype(jnp.int32)


def effective_rank(sv: jax.Array) -> jax.Array:
  """Roy & Vetterli 2007: exp(−Σ p_k log p_k), p_k = σ_k / Σσ (0 log 0 = 0); 0 for a zero matrix.

  As the CS285 plasticity project computes it (arvindrajaraman/plasticity-rl, cs285/infrastructure/utils.py
  `compute_effective_rank`: σ / Σ|σ|, entropy over p > 0, e^H).
  """
  total = jnp.sum(sv)
  p = sv / jnp.where(total > 0, total, 1.0)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return jnp.where(total > 0, jnp.exp(entropy), 0.0)


def rank_metrics(features: jax.Array, delta: float = SRANK_DELTA,
                 eps: float = FEATURE_RANK_EPS) -> dict[str, jax.Array]:
  """srank, feature_rank (Lyle et al.: #σ(Φ/√n) > eps), feature_rank_unnormalized (#σ(Φ) > eps),
  effective_rank: one SVD."""
  sv = singular_values(features)
  return {"srank": srank(sv, delta), "feature_rank": _count_above(sv / jnp.sqrt(features.shape[0]), eps),
          "feature_rank_unnormalized": _count_above(sv, eps), "effective_rank": effective_rank(sv)}


def updated_units(layer_grads: Params) -> jax.Array:
  """Share of a layer's units (output channels) with any non-zero incoming gradient (kernel or bias).

  The CS285 report's "updated units": units whose gradient is non-zero on a (training) batch.
  """
  kernel = layer_grads["linear"]["kernel"]
  updated = jnp.any(kernel != 0, axis=tuple(range(kernel.ndim - 1)))
  if "bias" in layer_grads["linear"]:
    updated = updated | (layer_grads["linear"]["bias"] != 0)
  return jnp.mean(updated.astype(jnp.float32))


def mean_abs(tree: Any) -> jax.Array:
  """Mean |θ| over every element of every leaf (kernels, biases, LayerNorm params): Σ|θ| / #θ."""
  leaves = jax.tree.leaves(tree)
  return sum(jnp.sum(jnp.abs(x.astype(jnp.float32))) for x in leaves) / sum(x.size for x in leaves)


def tree_norm(tree: Any) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves)) if leaves else jnp.zeros(())


# -- the network's activations, per group ------------------------------------------


def layer_key(network: networks.QNetwork, name: str, group: str | None = None) -> str:
  """"<part>/<layer>" on the main path, "<group>/<layer>" for a branch (group = plus_i / minus_i)."""
  return f"{group or network.spec(name).part}/{name}"


def activations(network: networks.QNetwork, params: Params, obs: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Q [B, A] and every layer's post-activation output by `layer_key`, branches included."""
  q, features = network.apply_with_features(params, obs)
  out = {layer_key(network, name): x for name, x in features.items()}
  injected = params_tree.injected_layers(params)
  if injected:
    names = network.layer_names
    split = names.index(injected[0])
    x0 = features[names[split - 1]] if split > 0 else network.preprocess(obs)
    for group, branch in params_tree.branches(params):
      x = x0
      for name in names[split:]:
        x = out[layer_key(network, name, group)] = network.apply_layer(name, branch[name], x)
  return q, out


# -- the jitted metrics step -----------------------------------------------------


def _weight_metrics(network, params, init_params) -> dict[str, jax.Array]:
  out = {}
  main = params_tree.main_layers(params)
  plus_branches, minus_branches = params_tree.plus_branches(params), params_tree.minus_branches(params)
  init_main = params_tree.main_layers(init_params) if init_params is not None else {}
  refs = params_tree.init_layers(params, init_params)
  layers = [(layer_key(network, n), p, refs[n]) for n, p in main.items()]
  for i, plus in enumerate(plus_branches):
    for n, p in plus.items():
      layers.append((layer_key(network, n, f"plus_{i}"), p, init_main.get(n) if i == 0 else minus_branches[i - 1][n]))
  for i, minus in enumerate(minus_branches):
    layers += [(layer_key(network, n, f"minus_{i}"), p, None) for n, p in minus.items()]

  main_keys = {layer_key(network, n) for n in main}
  sq_total = []
  for key, p, ref in sorted(layers, key=lambda t: t[0]):
    kernel = p["linear"]["kernel"]
    out[f"weight_mean_abs/{key}"] = mean_abs(p)
    out[f"weight_norm/{key}"] = jnp.sqrt(jnp.sum(jnp.square(kernel)))
    if ref is not None and _same_shapes(p, ref):
      sq = sum(jnp.sum(jnp.square(a - b)) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(ref)))
      out[f"distance_from_init/{key}"] = jnp.sqrt(sq)
      if key in main_keys:
        sq_total.append(sq)
  if sq_total:
    out["distance_from_init"] = jnp.sqrt(sum(sq_total))
  return out


def _same_shapes(a: Params, b: Params) -> bool:
  shapes = lambda t: jax.tree.map(lambda x: tuple(x.shape), t)
  try:
    return jax.tree.structure(a) == jax.tree.structure(b) and shapes(a) == shapes(b)
  except (TypeError, ValueError):
    return False


def _fau_modules(network: networks.QNetwork, hidden: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """fau (the main path's hidden layers), fau/<part> (one module: encoder, head) and fau/<branch>: each
  Σ active elements / Σ elements over its layers (`active_elements`), as Ma et al. count a module's FAU."""
  modules: dict[str, list[str]] = {"fau": []}
  main = {layer_key(network, n): network.spec(n).part for n in network.layer_names[:-1]}
  for key in sorted(hidden):
    group = key.split("/")[0]
    if key in main:
      modules["fau"].append(key)
      modules.setdefault(f"fau/{main[key]}", []).append(key)
    else:
      modules.setdefault(f"fau/{group}", []).append(key)
  out = {}
  for name, keys in modules.items():
    counts = [active_elements(hidden[k]) for k in keys]
    out[name] = sum(c for c, _ in counts) / sum(n for _, n in counts)
  return out


def _metrics(agent: dqn.DQNAgent, state: dqn.TrainState, probe_batch: Mapping[str, jax.Array],
             init_params: Params | None, taus: Sequence[float], train_batch: Mapping[str, jax.Array] | None,
             train_batch_size: int) -> dict[str, jax.Array]:
  network = agent.network
  params = state.params
  batch = {k: probe_batch[k] for k in BATCH_KEYS}
  out: dict[str, jax.Array] = {}

  # Activations: dormant fractions, FAU and effective rank of every hidden layer, per group.
  q, acts = activations(network, params, batch["obs"])
  output = network.layer_names[-1]
  hidden = {k: a for k, a in acts.items() if not k.endswith("/" + output)}
  main_hidden = {layer_key(network, n) for n in network.layer_names[:-1]}
  for tau in taus:
    dead, units = 0.0, 0
    for key, a in sorted(hidden.items()):
      mask = dormant_mask(a, tau)
      out[f"dormant_{tau:g}/{key}"] = jnp.mean(mask.astype(jnp.float32))
      if key in main_hidden:
        dead, units = dead + jnp.sum(mask.astype(jnp.float32)), units + mask.shape[0]
    out[f"dormant_{tau:g}"] = dead / units
  for key, a in sorted(hidden.items()):
    out[f"fau/{key}"] = fraction_active(a)
    out[f"effective_rank/{key}"] = effective_rank(singular_values(a))
  out.update(_fau_modules(network, hidden))

  # Ranks of the penultimate features: main path, each branch that has that layer, all of them side by side.
  penultimate = network.layer_names[-2]
  out.update(rank_metrics(acts[layer_key(network, penultimate)]))
  groups = [g for g, b in params_tree.branches(params) if penultimate in b]
  for group in groups:
    out.update({f"{k}/{group}": v for k, v in rank_metrics(acts[layer_key(network, penultimate, group)]).items()})
  if groups:
    combined = jnp.concatenate([acts[layer_key(network, penultimate)].reshape(q.shape[0], -1)] +
                               [acts[layer_key(network, penultimate, g)].reshape(q.shape[0], -1) for g in groups],
                               axis=-1)
    out.update({f"{k}/combined": v for k, v in rank_metrics(combined).items()})

  # Weights and distance from initialization.
  out.update(_weight_metrics(network, params, init_params))
  trainable = params_tree.trainable(params)
  out["param_norm"] = tree_norm(trainable)
  out["weight_mean_abs"] = mean_abs(trainable)

  # Gradients of the learner's own loss: loss and norm on the probe batch, updated units on a training batch.
  (loss, _), grads = jax.value_and_grad(agent.loss, has_aux=True)(trainable, state, batch)
  out["loss"] = loss
  out["grad_norm"] = tree_norm(grads)
  if train_batch is None:
    train_batch = {k: v[:min(train_batch_size, v.shape[0])] for k, v in batch.items()}
  train_grads = jax.grad(agent.loss, has_aux=True)(trainable, state, {k: train_batch[k] for k in BATCH_KEYS})[0]
  for part, name, g in params_tree.items(train_grads):
    out[f"updated_units/{part}/{name}"] = updated_units(g)

  # Q-values and TD errors (Double DQN, as in the loss) on the probe batch.
  q_next = network.apply(params, batch["next_obs"])
  q_next_target = network.apply(state.target_params, batch["next_obs"])
  td = jax.vmap(dqn.double_q_td_error)(q, batch["action"], batch["reward"], batch["discount"],
                                       q_next_target, q_next)
  out.update(q_mean=jnp.mean(q), q_max=jnp.max(q), td_abs_mean=jnp.mean(jnp.abs(td)),
             td_abs_max=jnp.max(jnp.abs(td)))
  return {k: jnp.asarray(v, jnp.float32) for k, v in out.items()}


@functools.partial(jax.jit, static_argnames=("agent", "taus", "train_batch_size"))
def plasticity_metrics(agent: dqn.DQNAgent, state: dqn.TrainState, probe_batch: Mapping[str, jax.Array],
                       init_params: Params | None = None, taus: tuple[float, ...] = DEFAULT_TAUS,
                       train_batch: Mapping[str, jax.Array] | None = None,
                       train_batch_size: int = DEFAULT_TRAIN_BATCH_SIZE) -> dict[str, jax.Array]:
  """All metrics of the module docstring on a probe batch (a replay sample); a flat dict of f32 scalars.

  Args:
    agent: the DQNAgent (static: its network and loss).
    state: the learner's TrainState.
    probe_batch: {obs, action, reward, discount, next_obs} of a fixed size
      (other keys, e.g. env_index, are ignored).
    init_params: θ₀, the params at the start of the run; None: no distance_from_init.
    taus: dormancy thresholds (static).
    train_batch: the training batch for `updated_units` (e.g. the loop's last learner batch); None: the
      first `train_batch_size` transitions of the probe (a uniform replay sample of a learner batch's size).
    train_batch_size: static; config.learner.batch_size of the run (default 32, base_config's).

  Compiles once per (agent, taus, params-tree structure, probe shape, train batch shape); read the result
  back with `to_host` (one transfer for the whole dict).
  """
  return _metrics(agent, state, probe_batch, init_params, taus, train_batch, train_batch_size)


def to_host(metrics: Mapping[str, jax.Array]) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(dict(metrics)).items()}


def metric_names(agent: dqn.DQNAgent, taus: tuple[float, ...] = DEFAULT_TAUS, with_init: bool = True,
                 probe_size: int = 2) -> list[str]:
  """The keys `plasticity_metrics` returns for the agent's fresh (un-injected) network; traces, never runs."""
  state = jax.eval_shape(agent.init, jax.random.key(0))
  shape = lambda s, d: jax.ShapeDtypeStruct(s, d)
  batch = {"obs": shape((probe_size, *agent.obs_shape), jnp.uint8),
           "next_obs": shape((probe_size, *agent.obs_shape), jnp.uint8),
           "action": shape((probe_size,), jnp.int32), "reward": shape((probe_size,), jnp.float32),
           "discount": shape((probe_size,), jnp.float32)}
  out = jax.eval_shape(functools.partial(_metrics, agent, taus=taus, train_batch=None,
                                         train_batch_size=DEFAULT_TRAIN_BATCH_SIZE), state, batch,
                       state.params if with_init else None)
  return sorted(out)


# -- config -------------------------------------------------------------------------


def metrics_config() -> ml_collections.ConfigDict:
  """Fields for config.metrics."""
  c = ml_collections.ConfigDict()
  c.period_frames = 100_000  # Plasticity metrics every this many frames (after learning starts); 0 = off.
  c.probe_size = 256  # Transitions in the probe batch drawn from replay at each metrics call.
  return c


def validate_metrics(config) -> None:
  """ValueError naming the field when config.metrics cannot work."""
  c = config.metrics
  if c.period_frames < 0:
    raise ValueError(f"config.metrics.period_frames: must be ≥ 0 (0 = off), got {c.period_frames!r}")
  if c.probe_size < 2:
    raise ValueError(f"config.metrics.probe_size: must be ≥ 2 (ranks need several states), got {c.probe_size!r}")
  if "replay" in config and c.probe_size > config.replay.capacity:
    raise ValueError(f"config.metrics.probe_size: must be ≤ replay.capacity ({config.replay.capacity}), "
                     f"got {c.probe_size}")
