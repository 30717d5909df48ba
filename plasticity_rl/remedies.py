"""Plasticity remedies as pure surgeries on the TrainState, and their schedule builders.

  reset           Nikishin et al. 2022 (the primacy bias): re-initialize the last layers.
  redo            Sokar et al. 2023 (ReDo): recycle τ-dormant hidden units.
  shrink_perturb  Ash & Adams 2020: θ ← αθ + σθ_fresh.

Each surgery is a pure, jit-able function of the TrainState (and a replay batch's
observations for ReDo). Each `build_*` is registered in `interventions` by name: it
reads its config section and returns [(frames, intervention)] calling the surgery's
jitted version (`*_jit`, compiled once per params-tree structure). Schedules: explicit `frames` plus,
when `period_frames` > 0, every multiple of `period_frames` from `start_frames` to
`total_frames` (`schedule_frames`).

Injected networks (params_tree: frozen plus/minus branches): every surgery acts on the
trainable layers only; frozen layers are never changed (docs/interventions.md).
"""

import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from plasticity_rl import interventions
from plasticity_rl import metrics
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import surgery
from plasticity_rl import unit_masks
from plasticity_rl.agents import dqn

Params = networks.Params


# -- schedule and config --------------------------------------------------------------------------------------


schedule_frames = interventions.schedule_frames  # Explicit frames ∪ the periodic points (the package's helper).


def _schedule_fields(c: ml_collections.ConfigDict) -> None:
  c.frames = ()  # Explicit frames, e.g. (50_000_000,).
  c.period_frames = 0  # > 0: also every multiple of this many frames; 0 = off.
  c.start_frames = 0  # Periodic points start here (explicit frames are kept as given).


def reset_config() -> ml_collections.ConfigDict:
  """config.reset: re-initialize the last layers of the online and target networks (Nikishin et al. 2022)."""
  c = ml_collections.ConfigDict()
  _schedule_fields(c)
  c.target = "head"  # "head", "all", "last_k:K", or layer names forming a suffix ("dense_1").
  return c


def redo_config() -> ml_collections.ConfigDict:
  """config.redo: recycle τ-dormant units (Sokar et al. 2023), on the loop's replay batch."""
  c = ml_collections.ConfigDict()
  _schedule_fields(c)
  c.tau = 0.1  # Units scoring ≤ τ are recycled; 0 = exactly dead units only. The paper's DQN default is 0.1.
  return c


def shrink_perturb_config() -> ml_collections.ConfigDict:
  """config.shrink_perturb: θ ← αθ + σθ_fresh on the trainable params (Ash & Adams 2020)."""
  c = ml_collections.ConfigDict()
  _schedule_fields(c)
  c.alpha = 0.8  # Shrink factor. Unverified for DQN: a config field, not a fact.
  c.sigma = 0.2  # Weight of a fresh initialization. Unverified for DQN.
  return c


def _plan_frames(config, section: str) -> tuple[int, ...]:
  c = config[section]
  frames = interventions.checked_frames(config, section)
  if c.period_frames < 0 or c.start_frames < 0:
    raise ValueError(f"{section}.period_frames/start_frames: must be ≥ 0 (period 0 = off), "
                     f"got {c.period_frames!r}/{c.start_frames!r}")
  return schedule_frames(frames, int(c.period_frames), int(config.total_frames), int(c.start_frames))


def resolve_layers(network: networks.QNetwork, target: str) -> tuple[str, ...]:
  """"all" or a `surgery.resolve_target` target ("head", "last_k:K", names of a suffix) -> layer names."""
  return network.layer_names if target == "all" else surgery.resolve_target(network, target)


def reset_plan(config, network: networks.QNetwork) -> tuple[tuple[int, ...], tuple[str, ...]]:
  """(frames, layers) of config.reset; ValueError naming the field."""
  frames = _plan_frames(config, "reset")
  try:
    layers = resolve_layers(network, config.reset.target)
  except ValueError as e:
    raise ValueError(f"reset.target: {e}") from None
  return frames, layers


def redo_plan(config) -> tuple[tuple[int, ...], float]:
  """(frames, τ) of config.redo; periodic points before learning starts (no replay batch yet) are dropped."""
  frames = _plan_frames(config, "redo")
  starts = config.replay.learning_starts_frames
  early = [f for f in config.redo.frames if f < starts]
  if early:
    raise ValueError(f"redo.frames {tuple(early)}: ReDo needs a replay batch, so frames must be ≥ "
                     f"replay.learning_starts_frames ({starts})")
  if config.redo.tau < 0:
    raise ValueError(f"redo.tau: must be ≥ 0, got {config.redo.tau!r}")
  return tuple(f for f in frames if f >= starts), float(config.redo.tau)


def shrink_perturb_plan(config) -> tuple[tuple[int, ...], float, float]:
  """(frames, α, σ) of config.shrink_perturb."""
  frames = _plan_frames(config, "shrink_perturb")
  c = config.shrink_perturb
  if c.alpha < 0 or c.sigma < 0:
    raise ValueError(f"shrink_perturb.alpha/sigma: must be ≥ 0, got {c.alpha!r}/{c.sigma!r}")
  return frames, float(c.alpha), float(c.sigma)


def validate(config) -> None:
  """ValueError naming the field when a remedy's config section cannot work (sections absent: skipped)."""
  network = networks.make_network(config.network, num_actions=1)
  if "reset" in config:
    reset_plan(config, network)
  if "redo" in config:
    redo_plan(config)
  if "shrink_perturb" in config:
    shrink_perturb_plan(config)


# -- helpers on the params tree -------------------------------------------------------------------------------


def fresh_layers(network: networks.QNetwork, rng: jax.Array, params: Params, names: Sequence[str],
                 obs_shape: tuple[int, ...]) -> dict[str, Params]:
  """A fresh init of the main-path layers `names`, at their current widths.

  The layers from the first of `names` to the output are initialized (keys split as
  in `QNetwork.init_branch`, so all layers with rng r equal `network.init(r)`), and
  `names` are returned.
  """
  main = params_tree.main_layers(params)
  suffix = network.layer_names[network.layer_names.index(names[0]):]
  widths = {n: main[n]["linear"]["kernel"].shape[-1] for n in suffix}
  fresh = network.init_branch(rng, params, suffix, obs_shape, widths)
  return {n: fresh[n] for n in names}


def _check_trainable(params: Params, layers: Sequence[str], what: str) -> None:
  frozen = [n for n in layers if n not in params_tree.trainable_parts(params)]
  if frozen:
    raise ValueError(f"{what}: layers {frozen} are frozen (only trainable layers can be changed)")


# -- reset ----------------------------------------------------------------------------------------------------


def reset(state: dqn.TrainState, rng: jax.Array, *, network: networks.QNetwork,
          optimizer: optax.GradientTransformation, obs_shape: tuple[int, ...],
          layers: tuple[str, ...]) -> dqn.TrainState:
  """Re-initializes `layers` in the online and the target network (the same fresh values) and their optimizer
  statistics; every other leaf, the counters and the replay are kept."""
  _check_trainable(state.params, layers, "reset")
  fresh = fresh_layers(network, rng, state.params, layers, obs_shape)
  params = params_tree.replace_trainable(state.params, fresh)
  opt_state = params_tree.transfer_opt_state(optimizer, state.opt_state, params_tree.trainable(params),
                                             reset=lambda names: bool(names & set(layers)))
  return state.replace(params=params, target_params=params_tree.replace_trainable(state.target_params, fresh),
                       opt_state=opt_state)


# -- ReDo -----------------------------------------------------------------------------------------------------


def unit_activity(network: networks.QNetwork, features: jax.Array) -> jax.Array:
  """A layer's post-activation output with one channel per unit: CReLU's [relu(x), relu(−x)] halves are summed
  (|x| per unit), other activations pass through."""
  if network.activation == "crelu":
    half = features.shape[-1] // 2
    return features[..., :half] + features[..., half:]
  return features


def dormant_units(network: networks.QNetwork, params: Params, obs: jax.Array, tau: float) -> dict[str, jax.Array]:
  """{layer: bool [units]} τ-dormant units (metrics.dormant_mask on `unit_activity`) of every hidden main-path
  layer that ReDo may recycle: trainable, and feeding a trainable layer."""
  parts = params_tree.trainable_parts(params)
  names = network.layer_names
  recyclable = [n for n, nxt in zip(names[:-1], names[1:]) if n in parts and nxt in parts]
  _, features = network.apply_with_features(params, obs)
  return {n: metrics.dormant_mask(unit_activity(network, features[n]), tau) for n in recyclable}


def recycle(state: dqn.TrainState, rng: jax.Array, units: Mapping[str, jax.Array], *, network: networks.QNetwork,
            optimizer: optax.GradientTransformation, obs_shape: tuple[int, ...]) -> dqn.TrainState:
  """Recycles the masked units ({layer: bool [units]}) of the online network.

  Incoming weights (the layer's kernel columns) re-drawn from a fresh init, bias 0, LayerNorm
  scale/bias back to their init (1, 0); outgoing weights (the next layer's input rows) 0, written
  last, so a recycled unit's outgoing weights are 0 even when the next layer recycles too. The
  optimizer statistics of every changed entry are zeroed (counters kept). The target network is
  not touched: the online Q does not depend on the new incoming weights.
  """
  if not units:
    return state
  params = state.params
  names = network.layer_names
  if any(network.is_output(n) for n in units):
    raise ValueError(f"recycle: the output layer {names[-1]!r} has no outgoing weights and is never recycled")
  following = {n: names[names.index(n) + 1] for n in units}
  touched = sorted(set(units) | set(following.values()), key=names.index)
  _check_trainable(params, touched, "recycle")
  layers = params_tree.main_layers(params)
  fresh = fresh_layers(network, rng, params, [n for n in names if n in units], obs_shape)
  new = {n: jax.tree.map(jnp.asarray, layers[n]) for n in touched}  # New containers, to edit in place.
  changed = {n: jax.tree.map(lambda x: jnp.zeros(x.shape, bool), new[n]) for n in touched}
  for name, mask in units.items():  # Incoming: the unit's last-axis entries of every leaf of its layer.
    new[name] = jax.tree.map(lambda old, init, m=mask: jnp.where(m, init, old), new[name], fresh[name])
    new[name]["linear"]["bias"] = jnp.where(mask, 0.0, new[name]["linear"]["bias"])
    changed[name] = jax.tree.map(lambda x, m=mask: jnp.broadcast_to(m, x.shape), changed[name])
  for name, mask in units.items():  # Outgoing, last.
    kernel = new[following[name]]["linear"]["kernel"]
    rows = jnp.broadcast_to(unit_masks.input_rows(network, mask, kernel.shape[-2])[:, None], kernel.shape)
    new[following[name]]["linear"]["kernel"] = jnp.where(rows, 0.0, kernel)
    changed[following[name]]["linear"]["kernel"] = changed[following[name]]["linear"]["kernel"] | rows
  params = params_tree.replace_trainable(params, new)
  masks = params_tree.replace_layers(jax.tree.map(lambda x: jnp.zeros(x.shape, bool), params_tree.trainable(params)),
                                     changed)
  return state.replace(params=params, opt_state=params_tree.zero_opt_state(optimizer, state.opt_state, masks))


def redo(state: dqn.TrainState, rng: jax.Array, obs: jax.Array, *, network: networks.QNetwork,
         optimizer: optax.GradientTransformation, tau: float) -> tuple[dqn.TrainState, dict[str, jax.Array]]:
  """ReDo: scores on `obs` (a replay batch), then `recycle` of the τ-dormant units; returns the state and the
  recycled-unit masks by layer. The output layer is never recycled; injected networks: the trainable main path."""
  units = dormant_units(network, state.params, obs, tau)
  return recycle(state, rng, units, network=network, optimizer=optimizer, obs_shape=obs.shape[1:]), units


# -- shrink and perturb ---------------------------------------------------------------------------------------


def shrink_perturb(state: dqn.TrainState, rng: jax.Array, *, network: networks.QNetwork,
                   obs_shape: tuple[int, ...], alpha: float, sigma: float) -> dqn.TrainState:
  """θ ← αθ + σθ_fresh for every trainable leaf, θ_fresh one fresh init at the current widths; the target
  network's copies of those layers get the same map with the same θ_fresh. Optimizer statistics kept."""
  names = [n for n in network.layer_names if n in params_tree.trainable_parts(state.params)]
  if not names:
    return state
  fresh = fresh_layers(network, rng, state.params, names, obs_shape)

  def mix(params):
    layers = params_tree.main_layers(params)
    return params_tree.replace_trainable(
        params, {n: jax.tree.map(lambda p, f: alpha * p + sigma * f, layers[n], fresh[n]) for n in names})

  return state.replace(params=mix(state.params), target_params=mix(state.target_params))


# -- registry builders ----------------------------------------------------------------------------------------


# Jitted once per (static arguments, params-tree structure).
reset_jit = jax.jit(reset, static_argnames=("network", "optimizer", "obs_shape", "layers"))
redo_jit = jax.jit(redo, static_argnames=("network", "optimizer", "tau"))
shrink_perturb_jit = jax.jit(shrink_perturb, static_argnames=("network", "obs_shape", "alpha", "sigma"))


@interventions.register("reset")
def build_reset(config, agent: dqn.DQNAgent) -> list[tuple[int, interventions.Intervention]]:
  if "reset" not in config:
    return []
  frames, layers = reset_plan(config, agent.network)
  fn = functools.partial(reset_jit, network=agent.network, optimizer=agent.optimizer, obs_shape=agent.obs_shape,
                         layers=layers)
  return [(f, lambda state, rng, batch: fn(state, rng)) for f in frames]


@interventions.register("redo")
def build_redo(config, agent: dqn.DQNAgent) -> list[tuple[int, interventions.Intervention]]:
  if "redo" not in config:
    return []
  frames, tau = redo_plan(config)
  fn = functools.partial(redo_jit, network=agent.network, optimizer=agent.optimizer, tau=tau)

  def apply(state, rng, batch):
    return state if batch is None else fn(state, rng, batch["obs"])[0]

  return [(f, apply) for f in frames]


@interventions.register("shrink_perturb")
def build_shrink_perturb(config, agent: dqn.DQNAgent) -> list[tuple[int, interventions.Intervention]]:
  if "shrink_perturb" not in config:
    return []
  frames, alpha, sigma = shrink_perturb_plan(config)
  fn = functools.partial(shrink_perturb_jit, network=agent.network, obs_shape=agent.obs_shape, alpha=alpha,
                         sigma=sigma)
  return [(f, lambda state, rng, batch: fn(state, rng)) for f in frames]
