"""Neuroplastic Expansion (Liu et al. 2024, "Neuroplastic Expansion in Deep RL"), adapted to unit masks.

Reference code: torressliu/neuroplastic-expansion (NE/STL_Scheduler.py, NE/utils.py, stl/TD3.py, stl/train.py).
The network keeps its full shapes; `TrainState.masks` ({hidden layer: float32 [units]}, 1 = active)
selects the units that exist (unit_masks.py; every layer but the output layer has a mask).

  start          ⌈initial_fraction · units⌉ active units per hidden layer (the first ones).
  grow           on a replay batch, activates the k_t inactive units per layer whose outgoing connections have
                 the largest TD-loss gradient; their incoming weights are fresh from the layer's initializer
                 (bias 0), their outgoing weights 0: Q is unchanged. k_t is cosine-annealed as STL_Scheduler's
                 `cosine_annealing`: k_t = ⌊pool · ζ/2 · (1 + cos(π t / T))⌋, pool = the layer's inactive units
                 at the start (`n_init_space`), ζ = grow_fraction, t/T the share of training done.
  prune          active fully dormant units (ReDo score ≤ prune_tau = 0: `BaseReDo`'s τ = 0 default and
                 STL_Scheduler's `tau=0.0`) go back to the pool (mask 0, weights and optimizer moments 0), at most
                 ⌊prune_cap · k_t⌋ per layer and step (STL_Scheduler: `n_prune = int(n_grow * 0.4)`), never
                 below ⌈initial_fraction · units⌉ per layer.
  review         host-side: when the slope of the dormant fraction flattens (`review_due`), the next
                 review_batches learner batches are each drawn with probability review_probability from the
                 oldest review_fraction (0.3, NE/utils.py `recall_sample`/`hist_size`) of the replay
                 (`Review`, `ReplayBuffer.sample_oldest`), otherwise uniformly.

Masked entries of the online params are exactly 0 and `DQNAgent.update` keeps them so (gradients, optimizer
moments and the stepped params are masked), so acting, metrics and the target copy see the masked network.
Every function on the state is pure and jitted once per (static arguments, tree structure): the masks have
fixed shapes and the per-step counts are traced, so growing and pruning never re-trace the update. Injected
networks are refused (ValueError).
"""

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from plasticity_rl import interventions
from plasticity_rl import metrics
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import remedies
from plasticity_rl import unit_masks
from plasticity_rl.agents import dqn

Params = networks.Params
Masks = Mapping[str, jax.Array]
apply_masks = unit_masks.apply
weight_masks = unit_masks.weight_masks


# -- masks ----------------------------------------------------------------------------------------------------


def hidden_layers(network: networks.QNetwork) -> tuple[str, ...]:
  """The layers with a unit mask: every layer but the output layer."""
  return network.layer_names[:-1]


def check_plain(params: Params, what: str) -> None:
  """ValueError unless every main-path layer is trainable and nothing is injected."""
  if not params_tree.is_plain(params):
    raise ValueError(f"{what}: expansion cannot be combined with plasticity injection or frozen layers "
                     "(the masks act on params['trainable'], and frozen branches read the masked units)")


def units(params: Params, name: str) -> int:
  return int(params_tree.main_layers(params)[name]["linear"]["kernel"].shape[-1])


def count_for(fraction: float, n: int) -> int:
  """⌈fraction · n⌉, within 1..n."""
  return min(n, max(1, math.ceil(fraction * n - 1e-9)))


def init_masks(network: networks.QNetwork, params: Params, initial_fraction: float) -> dict[str, jax.Array]:
  """The first ⌈initial_fraction · units⌉ units of every hidden layer active (fresh units are exchangeable)."""
  out = {}
  for name in hidden_layers(network):
    n = units(params, name)
    out[name] = (jnp.arange(n) < count_for(initial_fraction, n)).astype(jnp.float32)
  return out


def _masked(params: Params, keep: Params) -> Params:
  return params_tree.with_trainable(params, unit_masks.apply(params_tree.trainable(params), keep))


def _zero_moments(optimizer: optax.GradientTransformation, opt_state: optax.OptState, keep: Params):
  """Optimizer statistics zeroed where `keep` is 0 (masked entries never have moments)."""
  return params_tree.zero_opt_state(optimizer, opt_state, jax.tree.map(lambda m: m == 0, keep))


def start(state: dqn.TrainState, *, network: networks.QNetwork, optimizer: optax.GradientTransformation,
          initial_fraction: float) -> dqn.TrainState:
  """Masks the state to ⌈initial_fraction · units⌉ units per hidden layer (online and target params, optimizer
  moments of masked entries zeroed). A state that already has masks (a resumed or reincarnated one) is kept."""
  if state.masks is not None:
    return state
  check_plain(state.params, "expansion.start")
  masks = init_masks(network, state.params, initial_fraction)
  keep = unit_masks.weight_masks(network, params_tree.trainable(state.params), masks)
  return state.replace(params=_masked(state.params, keep), target_params=_masked(state.target_params, keep),
                       opt_state=_zero_moments(optimizer, state.opt_state, keep), masks=masks)


def active_params(network: networks.QNetwork, params: Params, masks: Masks | None) -> int:
  """Trainable weights connected to active units (all trainable params without masks); host-side."""
  if masks is None:
    return params_tree.count_trainable(params)
  keep = unit_masks.weight_masks(network, params_tree.trainable(params), masks)
  return int(sum(jnp.sum(m > 0) for m in jax.tree.leaves(keep)))


def summary(network: networks.QNetwork, state: dqn.TrainState) -> dict[str, float]:
  """For event and train rows: params_active and active_units/<layer> (fractions); {} without masks."""
  if state.masks is None:
    return {}
  out = {"params_active": active_params(network, state.params, state.masks)}
  out.update({f"active_units/{n}": float(jnp.mean(m)) for n, m in state.masks.items()})
  return out


# -- grow -----------------------------------------------------------------------------------------------------


def candidates(network: networks.QNetwork, trainable: Params, masks: Masks, fresh: Mapping[str, Params]) -> Params:
  """`trainable` with every inactive unit's incoming weights taken from `fresh` (bias 0), restricted to inputs
  from active units; the outgoing weights of inactive units stay 0, so Q is unchanged."""
  names = network.layer_names
  layers = params_tree.layers(trainable)
  new = {}
  for name in hidden_layers(network):
    inactive = masks[name] == 0
    layer = jax.tree.map(lambda old, init, m=inactive: jnp.where(m, init, old), layers[name], fresh[name])
    layer["linear"]["bias"] = jnp.where(inactive, 0.0, layer["linear"]["bias"])
    index = names.index(name)
    if index > 0:
      kernel = layer["linear"]["kernel"]
      layer["linear"]["kernel"] = kernel * unit_masks.input_rows(network, masks[names[index - 1]],
                                                                 kernel.shape[-2])[:, None]
    new[name] = layer
  return params_tree.replace_layers(trainable, new)


def growth_scores(agent: dqn.DQNAgent, state: dqn.TrainState, batch: Mapping[str, jax.Array],
                  candidate: Params) -> dict[str, jax.Array]:
  """Per hidden layer, ‖∂L_TD/∂(outgoing weights)‖ of each inactive unit (−inf for active units).

  The gradient is of the TD loss (no regularizer) w.r.t. the dense params, with the candidate incoming
  weights in place: the outgoing weights of an inactive unit are the connections growth would open
  (RigL-style), and their gradient Σ_batch h_i δ_j is non-zero once the unit has incoming weights. Only
  connections into active units (or the output layer) count.
  """
  network, masks = agent.network, state.masks
  td_only = dataclasses.replace(agent, regularizer=None)
  params = params_tree.with_trainable(state.params, candidate)
  grads, _ = jax.grad(td_only.loss, has_aux=True)(candidate, state.replace(params=params), batch)
  grads = params_tree.layers(grads)
  names = network.layer_names
  scores = {}
  for name in hidden_layers(network):
    following = names[names.index(name) + 1]
    g = grads[following]["linear"]["kernel"]
    if following in masks:
      g = g * masks[following]
    per_input = jnp.sum(jnp.square(g), axis=tuple(i for i in range(g.ndim) if i != g.ndim - 2))  # [fan_in]
    n = masks[name].shape[0]
    channels = 2 * n if network.activation == "crelu" else n
    per_channel = jnp.sum(per_input.reshape(-1, channels), axis=0)  # Channel-last flatten after a conv.
    per_unit = per_channel[:n] + per_channel[n:] if network.activation == "crelu" else per_channel
    scores[name] = jnp.where(masks[name] > 0, -jnp.inf, jnp.sqrt(per_unit))
  return scores


def _counts(masks: Masks, fraction: float | None, counts: Mapping[str, Any] | None) -> Mapping[str, Any]:
  if counts is not None:
    return counts
  if fraction is None:
    raise ValueError("expansion.grow: give `counts` ({layer: units}) or `fraction` (of each layer's width)")
  return {n: count_for(fraction, m.shape[0]) for n, m in masks.items()}


def _lowest_ranks(values: jax.Array) -> jax.Array:
  """The rank of every entry in ascending order of `values` (ties: the lower index first)."""
  order = jnp.argsort(values)
  return jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))


def grow_from(state: dqn.TrainState, fresh: Mapping[str, Params], batch: Mapping[str, jax.Array], *,
              agent: dqn.DQNAgent, fraction: float | None = None, counts: Mapping[str, Any] | None = None
              ) -> tuple[dqn.TrainState, dict[str, jax.Array]]:
  """`grow` with given fresh layer params ({hidden layer: params}); returns the state and {layer: grown mask}."""
  network = agent.network
  if state.masks is None:
    raise ValueError("expansion.grow: the state has no masks (call expansion.start first)")
  check_plain(state.params, "expansion.grow")
  counts = _counts(state.masks, fraction, counts)
  trainable = params_tree.trainable(state.params)
  candidate = candidates(network, trainable, state.masks, fresh)
  scores = growth_scores(agent, state, batch, candidate)
  grown, masks = {}, {}
  for name, score in scores.items():  # The counts[name] highest-scoring inactive units (a traced count).
    grown[name] = (_lowest_ranks(-score) < counts[name]) & (score > -jnp.inf)
    masks[name] = jnp.maximum(state.masks[name], grown[name].astype(jnp.float32))
  candidate_layers, layers = params_tree.layers(candidate), params_tree.layers(trainable)
  new = {name: jax.tree.map(lambda c, old, m=grown[name]: jnp.where(m, c, old), candidate_layers[name], layers[name])
         for name in grown}
  keep_old = unit_masks.weight_masks(network, trainable, state.masks)
  keep = unit_masks.weight_masks(network, trainable, masks)
  params = params_tree.with_trainable(state.params,
                                      unit_masks.apply(params_tree.replace_layers(trainable, new), keep))
  # Grown entries were masked, so their moments are 0 already; zeroed again to make it exact.
  return state.replace(params=params, opt_state=_zero_moments(agent.optimizer, state.opt_state, keep_old),
                       masks=masks), grown


def grow(state: dqn.TrainState, rng: jax.Array, batch: Mapping[str, jax.Array], *, agent: dqn.DQNAgent,
         fraction: float | None = None, counts: Mapping[str, Any] | None = None
         ) -> tuple[dqn.TrainState, dict[str, jax.Array]]:
  """Activates counts[layer] inactive units per hidden layer (or ⌈fraction · units⌉ without `counts`) with the
  largest `growth_scores` on `batch` (fewer when fewer are inactive): incoming weights from a fresh init (key
  `rng`), bias 0 (LayerNorm scale/bias at init), outgoing weights 0 and every grown entry's optimizer moments 0.
  Q is unchanged (with LayerNorm only up to the layer's changed statistics); the target network is not touched.
  `counts` may be traced (one compile for every count). Returns the state and {layer: bool [units] grown}."""
  fresh = remedies.fresh_layers(agent.network, rng, state.params, hidden_layers(agent.network), agent.obs_shape)
  return grow_from(state, fresh, batch, agent=agent, fraction=fraction, counts=counts)


def grow_rate(zeta: float, progress: float, schedule: str = "cosine") -> float:
  """ζ_t, the share of the initial pool grown at a step: STL_Scheduler.cosine_annealing's
  ζ/2 · (1 + cos(π t / T_end)) at progress t / T_end (clipped to [0, 1]); "constant": ζ (its `uni` mode
  returns a constant too)."""
  if schedule == "constant":
    return float(zeta)
  if schedule != "cosine":
    raise ValueError(f"expansion.grow_schedule: unknown {schedule!r}; allowed: {list(GROW_SCHEDULES)}")
  return float(zeta) / 2 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def growth_counts(network: networks.QNetwork, params: Params, initial_fraction: float,
                  rate: float) -> dict[str, int]:
  """{hidden layer: ⌊rate · pool⌋}, pool = units − ⌈initial_fraction · units⌉ (the units inactive at the start;
  STL_Scheduler's `n_grow = int(self.n_init_space[l] * drop_fraction)`, floored as there)."""
  out = {}
  for name in hidden_layers(network):
    n = units(params, name)
    out[name] = int(math.floor(rate * (n - count_for(initial_fraction, n)) + 1e-9))
  return out


# -- prune ----------------------------------------------------------------------------------------------------


def dormant_scores(network: networks.QNetwork, params: Params, masks: Masks,
                   obs: jax.Array) -> dict[str, jax.Array]:
  """ReDo scores (metrics.dormant_scores) with the layer mean taken over active units only:
  s_i = E|h_i| / mean_{k active} E|h_k| (equal to metrics.dormant_scores when every unit is active)."""
  _, features = network.apply_with_features(params, obs)
  return {name: metrics.dormant_scores(remedies.unit_activity(network, features[name]), masks[name])
          for name in hidden_layers(network)}


def dormant_units(network: networks.QNetwork, params: Params, masks: Masks, obs: jax.Array,
                  tau: float) -> dict[str, jax.Array]:
  """{layer: bool [units]}: active units whose `dormant_scores` are ≤ τ."""
  scores = dormant_scores(network, params, masks, obs)
  return {n: (s <= tau) & (masks[n] > 0) for n, s in scores.items()}


def dormant_count(network: networks.QNetwork, state: dqn.TrainState, obs: jax.Array,
                  tau: float) -> tuple[jax.Array, jax.Array]:
  """(count, fraction) of the active hidden units that are τ-dormant on `obs` (every unit without masks)."""
  masks = state.masks
  if masks is None:
    masks = {n: jnp.ones(units(state.params, n), jnp.float32) for n in hidden_layers(network)}
  dormant = dormant_units(network, state.params, masks, obs, tau)
  count = sum(jnp.sum(d) for d in dormant.values())
  return count, count / sum(jnp.sum(m) for m in masks.values())


def prune(state: dqn.TrainState, obs: jax.Array, *, network: networks.QNetwork,
          optimizer: optax.GradientTransformation, tau: float, min_fraction: float,
          protect: Masks | None = None, max_pruned: Mapping[str, Any] | None = None
          ) -> tuple[dqn.TrainState, dict[str, jax.Array]]:
  """Returns the active τ-dormant units on `obs` to the pool: mask 0, own params and outgoing weights 0,
  their optimizer moments 0. At most (active − ⌈min_fraction · units⌉) units per layer, and at most
  max_pruned[layer] when given (may be traced), the lowest scores first; units in `protect` ({layer: bool},
  e.g. just grown) are kept. Q changes by the (small) outgoing contributions of the pruned units; the target
  network is not touched. Returns the state and {layer: pruned}."""
  if state.masks is None:
    raise ValueError("expansion.prune: the state has no masks (call expansion.start first)")
  check_plain(state.params, "expansion.prune")
  scores = dormant_scores(network, state.params, state.masks, obs)
  pruned, masks = {}, {}
  for name, score in scores.items():
    m = state.masks[name]
    candidate = (score <= tau) & (m > 0)
    if protect is not None:
      candidate &= ~protect[name]
    allowed = jnp.sum(m).astype(jnp.int32) - count_for(min_fraction, m.shape[0])
    if max_pruned is not None:
      allowed = jnp.minimum(allowed, max_pruned[name])
    pruned[name] = candidate & (_lowest_ranks(jnp.where(candidate, score, jnp.inf)) < allowed)
    masks[name] = jnp.where(pruned[name], 0.0, m)
  keep = unit_masks.weight_masks(network, params_tree.trainable(state.params), masks)
  return state.replace(params=_masked(state.params, keep), opt_state=_zero_moments(optimizer, state.opt_state, keep),
                       masks=masks), pruned


def grow_and_prune(state: dqn.TrainState, rng: jax.Array, batch: Mapping[str, jax.Array],
                   counts: Mapping[str, Any] | None = None, *, agent: dqn.DQNAgent, tau: float,
                   min_fraction: float, grow_fraction: float | None = None, prune_cap: float | None = None,
                   prune_units: bool = True) -> tuple[dqn.TrainState, dict[str, jax.Array]]:
  """One expansion step: `grow` (counts[layer] units, or ⌈grow_fraction · units⌉), then `prune` (sparing the
  units just grown; with `prune_cap`, at most ⌊prune_cap · counts[layer]⌋ per layer); returns the state and
  counts (grown/<layer>, pruned/<layer>, dormant: active τ-dormant units before the step)."""
  counts = _counts(state.masks, grow_fraction, counts)
  dormant, _ = dormant_count(agent.network, state, batch["obs"], tau)
  state, grown = grow(state, rng, batch, agent=agent, counts=counts)
  info = {"dormant": dormant, **{f"grown/{n}": jnp.sum(g) for n, g in grown.items()}}
  if prune_units:
    cap = None if prune_cap is None else {
        n: jnp.floor(prune_cap * jnp.asarray(k, jnp.float32) + 1e-6).astype(jnp.int32) for n, k in counts.items()}
    state, pruned = prune(state, batch["obs"], network=agent.network, optimizer=agent.optimizer, tau=tau,
                          min_fraction=min_fraction, protect=grown, max_pruned=cap)
    info.update({f"pruned/{n}": jnp.sum(p) for n, p in pruned.items()})
  return state, info


# Jitted once per (static arguments, params-tree structure); counts and max_pruned are traced.
start_jit = jax.jit(start, static_argnames=("network", "optimizer", "initial_fraction"))
grow_jit = jax.jit(grow, static_argnames=("agent", "fraction"))
prune_jit = jax.jit(prune, static_argnames=("network", "optimizer", "tau", "min_fraction"))
grow_and_prune_jit = jax.jit(grow_and_prune, static_argnames=("agent", "grow_fraction", "tau", "min_fraction",
                                                              "prune_cap", "prune_units"))
dormant_count_jit = jax.jit(dormant_count, static_argnames=("network", "tau"))


# -- experience review (host side) ----------------------------------------------------------------------------


def review_due(history: Sequence[float], window: int, slope_tolerance: float) -> bool:
  """True when the least-squares slope of the last `window` values (per observation) is within ±tolerance."""
  if window < 2 or len(history) < window:
    return False
  y = np.asarray(history[-window:], np.float64)
  x = np.arange(window, dtype=np.float64) - (window - 1) / 2
  return abs(float(np.sum(x * (y - y.mean())) / np.sum(x * x))) <= slope_tolerance


@dataclasses.dataclass
class Review:
  """Experience review: after `observe` finds the dormant fraction flat, each of the next `batches` learner
  batches is drawn with probability `probability` from the oldest `fraction` of the replay, otherwise uniformly.

  NE's code (stl/TD3.py `train`) draws a whole batch with `replay_buffer.recall_sample` — uniform over the oldest
  30 % of the stored transitions (NE/utils.py `hist_size`: size · 0.3) — when the critic's FAU is below `awaken`
  (0.4) and U(0, 1) ≥ gate, gate = 1 / (1 + e^(awaken − FAU) · Tamp), Tamp 0.9: a review probability 1 − gate
  of 0.47–0.57 over FAU ∈ [0, 0.4). Here the review starts when the dormant fraction flattens (the paper's
  trigger), and `probability` (default 0.5, the middle of that range) is a constant: the host loop has no FAU of
  each learner batch without one more forward pass per update. Host-side, with its own seeded generator;
  `state_dict` is JSON-able (the loop's checkpoint) and carries the generator, so a resumed run draws alike.
  """

  fraction: float
  window: int
  tolerance: float
  batches: int
  probability: float = 1.0
  seed: int = 0
  history: list[float] = dataclasses.field(default_factory=list)
  remaining: int = 0
  rng: np.random.Generator = dataclasses.field(init=False, repr=False, compare=False)

  def __post_init__(self):
    self.rng = np.random.default_rng(self.seed)

  @classmethod
  def from_config(cls, config) -> "Review | None":
    """None unless expansion is enabled with review_batches > 0."""
    c = config.get("expansion")
    if c is None or not c.enabled or c.review_batches <= 0:
      return None
    return cls(float(c.review_fraction), int(c.review_window), float(c.review_tolerance), int(c.review_batches),
               probability=float(c.get("review_probability", 1.0)), seed=int(config.get("seed", 0)))

  def observe(self, value: float) -> bool:
    """Adds a dormant fraction; True when it starts a review (the history then starts over)."""
    self.history = (self.history + [float(value)])[-self.window:]
    if self.remaining == 0 and review_due(self.history, self.window, self.tolerance):
      self.remaining, self.history = self.batches, []
      return True
    return False

  def sample(self, replay, batch_size: int) -> dict[str, np.ndarray]:
    """The next learner batch: while a review runs, from the oldest part of `replay` with probability
    `probability` (else uniform); uniform otherwise."""
    if self.remaining > 0:
      self.remaining -= 1
      if self.probability >= 1.0 or self.rng.random() < self.probability:
        return replay.sample_oldest(batch_size, self.fraction)
    return replay.sample(batch_size)

  def state_dict(self) -> dict[str, Any]:
    return {"history": list(self.history), "remaining": self.remaining, "rng": self.rng.bit_generator.state}

  def load_state_dict(self, saved: Mapping[str, Any]) -> None:
    self.history, self.remaining = [float(v) for v in saved["history"]], int(saved["remaining"])
    if saved.get("rng") is not None:  # Checkpoints from before the probabilistic review have none.
      self.rng.bit_generator.state = saved["rng"]


# -- config and schedule --------------------------------------------------------------------------------------


GROW_SCHEDULES = ("cosine", "constant")


def expansion_config() -> ml_collections.ConfigDict:
  """config.expansion: Neuroplastic-Expansion-style growth and pruning of units (off by default).

  Sources (torressliu/neuroplastic-expansion) and where a value departs:
  - grow_schedule "cosine": NE/STL_Scheduler.py `cosine_annealing` (its default; `uni` is the constant one).
    Counts are floored as the code's int(): a small layer grows only while ζ_t · pool ≥ 1.
  - grow_fraction ζ: no single published value — stl/train.py's default is zeta 0.5 every delta 100 updates,
    the README's 0.0008 every 10,000, stl/config.yaml's 0.01 every 10,000. 0.1 at the first of ~40 steps
    (configs/expansion.py) grows Σζ_t ≈ 2 pools over the run, so every layer reaches full width about halfway
    even when each step prunes its cap.
  - prune_tau 0: NE/dorman_neuron_prune.py `BaseReDo(tau=0)` and STL_Scheduler `tau=0.0` (fully dormant only).
  - prune_cap 0.4: STL_Scheduler `_dst_step`, `n_prune = int(n_grow * 0.4)`.
  - review_fraction 0.3: NE/utils.py `hist_size` (`recall_sample` draws from the oldest 0.3 of the buffer);
    issue 12 speaks of the initial quarter, the released code uses 0.3 and we follow the code.
  - review_probability 0.5: stl/TD3.py reviews a batch with probability 1 − gate(FAU) ∈ (0.47, 0.57] (`Review`).
  - initial_fraction 0.25 of the *units* (≈ 1/16 of the dense weights): the code starts from 20 % of the
    connections (`initial_stl_sparsity` 0.8) and grows to 75 % (`critic_sparsity` 0.25); we grow units to
    full width. Unverified; the review trigger (slope of the dormant fraction) and its window/tolerance too.
  """
  c = ml_collections.ConfigDict()
  c.enabled = False  # Grow and prune units on the schedule below (the network starts at initial_fraction).
  c.initial_fraction = 0.25  # Active units per hidden layer at the start; also the floor of pruning. Unverified.
  c.frames = ()  # Explicit grow-and-prune frames (≥ replay.learning_starts_frames: they need a replay batch).
  c.period_frames = 0  # > 0: also every multiple of this many frames; 0 = only `frames`.
  c.start_frames = 0  # Periodic points start here; those before learning starts are dropped.
  c.grow_fraction = 0.1  # ζ: units grown per layer at the first step, as a share of the layer's initial pool.
  c.grow_schedule = "cosine"  # ζ_t = ζ/2 (1 + cos(π t/T)), t/T the share of training done; "constant": ζ.
  c.prune = True  # False: growth only (an ablation).
  c.prune_tau = 0.0  # Active units with ReDo score ≤ τ are pruned (scores over active units); 0: dead ones only.
  c.prune_cap = 0.4  # At most ⌊prune_cap · units grown this step⌋ pruned per layer and step.
  c.review_batches = 0  # Learner batches per review (each one from the oldest replay w.p. review_probability).
  c.review_fraction = 0.3  # The oldest fraction of the stored transitions a review samples from.
  c.review_probability = 0.5  # Chance that a learner batch of a review comes from the oldest part.
  c.review_window = 5  # Dormant fractions (one per expansion event) in the slope fit.
  c.review_tolerance = 0.001  # |slope| ≤ this (dormant fraction per event) counts as flat.
  return c


@dataclasses.dataclass(frozen=True)
class ExpansionPlan:
  frames: tuple[int, ...]
  initial_fraction: float
  grow_fraction: float
  prune: bool
  tau: float
  grow_rates: tuple[float, ...] = ()  # ζ_t at each of `frames`.
  prune_cap: float | None = 0.4


def expansion_plan(config) -> ExpansionPlan:
  """config.expansion resolved; ValueError("expansion.<field>: …") when it cannot work."""
  c = config.expansion
  frames = interventions.checked_frames(config, "expansion")
  starts = config.replay.learning_starts_frames
  if any(f < starts for f in frames):
    raise ValueError(f"expansion.frames {frames}: growth needs a replay batch, so frames must be ≥ "
                     f"replay.learning_starts_frames ({starts})")
  if c.period_frames < 0 or c.start_frames < 0:
    raise ValueError(f"expansion.period_frames/start_frames: must be ≥ 0 (period 0 = off), "
                     f"got {c.period_frames!r}/{c.start_frames!r}")
  for field in ("initial_fraction", "grow_fraction", "review_fraction"):
    if not 0.0 < c[field] <= 1.0:
      raise ValueError(f"expansion.{field}: must be in (0, 1], got {c[field]!r}")
  schedule = c.get("grow_schedule", "constant")
  if schedule not in GROW_SCHEDULES:
    raise ValueError(f"expansion.grow_schedule: unknown {schedule!r}; allowed: {list(GROW_SCHEDULES)}")
  if c.prune_tau < 0:
    raise ValueError(f"expansion.prune_tau: must be ≥ 0, got {c.prune_tau!r}")
  prune_cap = c.get("prune_cap", None)
  if prune_cap is not None and not prune_cap >= 0:
    raise ValueError(f"expansion.prune_cap: must be ≥ 0 (None: no cap), got {prune_cap!r}")
  if not 0.0 < c.get("review_probability", 1.0) <= 1.0:
    raise ValueError(f"expansion.review_probability: must be in (0, 1], got {c.review_probability!r}")
  if c.review_batches < 0:
    raise ValueError(f"expansion.review_batches: must be ≥ 0 (0 = off), got {c.review_batches!r}")
  if c.review_window < 2:
    raise ValueError(f"expansion.review_window: must be ≥ 2 (a slope needs two points), got {c.review_window!r}")
  if c.review_tolerance < 0:
    raise ValueError(f"expansion.review_tolerance: must be ≥ 0, got {c.review_tolerance!r}")
  injection = config.get("injection")
  if c.enabled and injection is not None:
    trigger = injection.get("trigger")
    if tuple(injection.frames) or (trigger is not None and trigger.metric):
      raise ValueError(f"expansion.enabled: cannot be combined with plasticity injection (injection.frames "
                       f"{tuple(injection.frames)}, injection.trigger.metric "
                       f"{trigger.metric if trigger is not None else ''!r}): the masks act on the trainable params "
                       "only")
  points = remedies.schedule_frames(frames, int(c.period_frames), int(config.total_frames), int(c.start_frames))
  points = tuple(f for f in points if f >= starts)
  span = max(int(config.total_frames) - starts, 1)  # STL_Scheduler's T_end: the training steps after warm-up.
  rates = tuple(grow_rate(float(c.grow_fraction), (f - starts) / span, schedule) for f in points)
  return ExpansionPlan(points, float(c.initial_fraction), float(c.grow_fraction), bool(c.prune), float(c.prune_tau),
                       grow_rates=rates, prune_cap=None if prune_cap is None else float(prune_cap))


def validate(config) -> None:
  """ValueError naming the field when config.expansion cannot work (section absent: skipped)."""
  if "expansion" in config:
    expansion_plan(config)


@interventions.register("expansion")
def build_expansion(config, agent: dqn.DQNAgent) -> list[tuple[int, interventions.Intervention]]:
  """Frame 0: `start`; then at every planned frame `grow_and_prune` on the loop's replay batch, growing
  `growth_counts` at that frame's annealed rate (traced: one compile for the whole schedule)."""
  if "expansion" not in config or not config.expansion.enabled:
    return []
  plan = expansion_plan(config)
  begin = functools.partial(start_jit, network=agent.network, optimizer=agent.optimizer,
                            initial_fraction=plan.initial_fraction)
  step = functools.partial(grow_and_prune_jit, agent=agent, tau=plan.tau, min_fraction=plan.initial_fraction,
                           prune_cap=plan.prune_cap, prune_units=plan.prune)

  def apply(state, rng, batch, rate):
    if state.masks is None:
      state = begin(state)
    if batch is None:
      return state
    counts = growth_counts(agent.network, state.params, plan.initial_fraction, rate)
    state, info = step(state, rng, {k: batch[k] for k in metrics.BATCH_KEYS}, counts)
    logging.info("expansion (rate %.4f): %s; %s", rate, {k: int(v) for k, v in jax.device_get(info).items()},
                 summary(agent.network, state))
    return state

  return [(0, lambda state, rng, batch: begin(state) if state.masks is None else state)] + [
      (f, functools.partial(apply, rate=r)) for f, r in zip(plan.frames, plan.grow_rates)]
