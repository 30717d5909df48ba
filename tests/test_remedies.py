"""Resets, ReDo, shrink-and-perturb (plasticity_rl/remedies.py): the defining property of each, as a test.

The surgeries run eagerly here (XLA's compile of a fresh init is slow on CPU); their jitted versions
are exercised once each, by the compile-once and the registry-builder tests.
"""

import functools
import importlib.util
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from plasticity_rl import config as config_lib
from plasticity_rl import interventions
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import remedies
from plasticity_rl import surgery
from plasticity_rl import testing
from plasticity_rl import unit_masks
from plasticity_rl.agents import dqn

OBS_SHAPE = (44, 44, 4)  # conv_2 outputs 2×2 feature maps: the conv → dense flatten order matters.
NUM_ACTIONS = 5


@functools.cache  # One agent per network kind: the jitted functions compile once per kind.
def make_agent(activation: str = "relu", layer_norm: bool = False, optimizer: str = "adam_dopamine") -> dqn.DQNAgent:
  network = networks.QNetwork(networks.nature_cnn_specs(NUM_ACTIONS, width=0.25, hidden=32),
                              activation=activation, layer_norm=layer_norm)
  opt = dqn.make_optimizer(ml_collections.ConfigDict({"optimizer": optimizer, "learning_rate": 1e-3}))
  return dqn.DQNAgent(network, opt, OBS_SHAPE, NUM_ACTIONS, target_update_period_updates=1000)


def random_batch(seed: int, size: int = 16) -> dict[str, np.ndarray]:
  return testing.random_batch(seed, size, OBS_SHAPE, NUM_ACTIONS)


@functools.cache
def trained_state(activation: str = "relu", layer_norm: bool = False, seed: int = 0,
                  optimizer: str = "adam_dopamine") -> dqn.TrainState:
  """A state as after a few updates, without compiling one: params moved off θ₀ (the target stays at θ₀),
  non-zero optimizer moments, counters at 3."""
  agent = make_agent(activation, layer_norm, optimizer)
  state = agent.init(jax.random.key(seed))
  leaves, treedef = jax.tree.flatten(params_tree.trainable(state.params))
  noise = np.random.default_rng(seed)
  moved = jax.tree.unflatten(treedef, [x + 0.01 * noise.standard_normal(x.shape).astype(np.float32) for x in leaves])
  opt_state = optax.tree_utils.tree_map_params(
      agent.optimizer, lambda v, p: jnp.abs(p) + 1e-3, state.opt_state, moved, transform_non_params=lambda v: v + 3)
  return state.replace(params=params_tree.with_trainable(state.params, moved), opt_state=opt_state)


def layer(params, name):
  return params_tree.main_layers(params)[name]


def flat(tree) -> dict[str, np.ndarray]:
  return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def assert_trees_equal(a, b):
  fa, fb = flat(a), flat(b)
  assert fa.keys() == fb.keys()
  for k in fa:
    np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


# -- schedules ------------------------------------------------------------------------------------------------


def test_schedule_frames_merges_explicit_and_periodic_points():
  assert remedies.schedule_frames((), 0, 100) == ()
  assert remedies.schedule_frames((), 30, 100) == (30, 60, 90)
  assert remedies.schedule_frames((5, 60), 30, 100) == (5, 30, 60, 90)
  assert remedies.schedule_frames((), 30, 90, start_frames=31) == (60, 90)
  assert remedies.schedule_frames((), 25, 100, start_frames=0) == (25, 50, 75, 100)


# -- reset ----------------------------------------------------------------------------------------------------


def do_reset(state, target, seed=7, agent=None):
  agent = agent or make_agent()
  layers = remedies.resolve_layers(agent.network, target)
  return remedies.reset(state, jax.random.key(seed), network=agent.network, optimizer=agent.optimizer,
                        obs_shape=OBS_SHAPE, layers=layers), layers


@pytest.mark.parametrize("target", ["head", "last_k:1", "all"])
def test_reset_changes_only_its_layers_and_their_optimizer_state(target):
  agent, state = make_agent(), trained_state()
  new, layers = do_reset(state, target)
  fresh = agent.optimizer.init(params_tree.trainable(new.params))
  for name in agent.network.layer_names:
    before, after = layer(state.params, name), layer(new.params, name)
    if name in layers:
      assert not np.array_equal(before["linear"]["kernel"], after["linear"]["kernel"]), name
      np.testing.assert_array_equal(after["linear"]["bias"], 0.0)
      assert_trees_equal(layer(new.target_params, name), after)  # The target gets the same fresh values.
    else:
      assert_trees_equal(after, before)
      assert_trees_equal(layer(new.target_params, name), layer(state.target_params, name))
  old_opt, new_opt, fresh_opt = flat(state.opt_state), flat(new.opt_state), flat(fresh)
  for key in new_opt:
    if any(f"'{name}'" in key for name in layers):
      np.testing.assert_array_equal(new_opt[key], fresh_opt[key], err_msg=key)
    else:
      np.testing.assert_array_equal(new_opt[key], old_opt[key], err_msg=key)  # Incl. Adam's count.
  assert int(new.num_updates) == int(state.num_updates)
  assert_trees_equal(new.init_params, state.init_params)


def test_reset_all_equals_a_fresh_init_with_the_same_rng():
  agent = make_agent()
  new, _ = do_reset(trained_state(), "all", seed=11)
  assert_trees_equal(new.params, agent.network.init(jax.random.key(11), OBS_SHAPE))


def test_reset_head_draws_from_the_initializer():
  agent = make_agent()
  kernel = np.asarray(layer(do_reset(trained_state(), "head", seed=3)[0].params, "dense_0")["linear"]["kernel"])
  # Flax's default kernel init, LeCun normal: std 1/√fan_in.
  assert kernel.std() == pytest.approx(1 / np.sqrt(kernel.shape[0]), rel=0.1)
  assert abs(kernel.mean()) < 0.1 / np.sqrt(kernel.shape[0])
  assert kernel.shape == layer(agent.network.init(jax.random.key(0), OBS_SHAPE), "dense_0")["linear"]["kernel"].shape


def test_reset_of_frozen_layers_is_rejected():
  agent = make_agent()
  injected = surgery.inject(trained_state(), jax.random.key(1), network=agent.network, optimizer=agent.optimizer,
                            obs_shape=OBS_SHAPE, layers=("dense_0", "dense_1"), freeze_encoder=True)
  with pytest.raises(ValueError, match="frozen"):
    remedies.reset(injected, jax.random.key(2), network=agent.network, optimizer=agent.optimizer,
                   obs_shape=OBS_SHAPE, layers=agent.network.layer_names)


# -- ReDo -----------------------------------------------------------------------------------------------------

DEAD = {"conv_1": [0, 3], "conv_2": [1, 4, 9], "dense_0": [2, 5]}  # Of 16, 16 and 8 units.


def with_dead_units(state: dqn.TrainState, activation: str = "relu") -> dqn.TrainState:
  """Units of DEAD made dead on every input: a very negative bias (ReLU), or zero incoming weights (CReLU)."""
  layers = jax.tree.map(lambda x: x, params_tree.layers(params_tree.trainable(state.params)))  # New containers.
  for name, units in DEAD.items():
    linear = layers[name]["linear"]
    if activation == "crelu":
      linear["kernel"] = linear["kernel"].at[..., units].set(0.0)
      linear["bias"] = linear["bias"].at[jnp.array(units)].set(0.0)
    else:
      linear["bias"] = linear["bias"].at[jnp.array(units)].set(-1e4)
  return state.replace(params=params_tree.replace_trainable(state.params, {n: layers[n] for n in DEAD}))


def redo(state, tau, activation="relu", layer_norm=False, obs=None, seed=5, optimizer="adam_dopamine"):
  agent = make_agent(activation, layer_norm, optimizer)
  obs = random_batch(20)["obs"] if obs is None else obs
  return remedies.redo(state, jax.random.key(seed), obs, network=agent.network, optimizer=agent.optimizer, tau=tau)


def dead_masks(agent) -> dict[str, jax.Array]:
  return {name: jnp.zeros(agent.network.spec(name).features, bool).at[jnp.array(units)].set(True)
          for name, units in DEAD.items()}


def recycle_dead(activation="relu", seed=9):
  agent, state = make_agent(activation), with_dead_units(trained_state(activation), activation)
  return agent, state, remedies.recycle(state, jax.random.key(seed), dead_masks(agent), network=agent.network,
                                        optimizer=agent.optimizer, obs_shape=OBS_SHAPE)


@pytest.mark.parametrize("activation", ["relu", "crelu"])
def test_redo_scores_find_exactly_the_silent_units_at_tau_zero(activation):
  agent, state = make_agent(activation), with_dead_units(trained_state(activation), activation)
  obs = random_batch(20)["obs"]
  new, masks = redo(state, 0.0, activation, obs=obs)
  assert set(masks) == {"conv_0", "conv_1", "conv_2", "dense_0"}  # The output layer is never recycled.
  _, features = agent.network.apply_with_features(state.params, obs)
  for name, mask in masks.items():  # Exactly the units with no activity on the batch, the forced ones included.
    activity = remedies.unit_activity(agent.network, features[name])
    silent = np.all(np.asarray(activity).reshape(-1, activity.shape[-1]) == 0, axis=0)
    np.testing.assert_array_equal(mask, silent, err_msg=name)
    assert set(DEAD.get(name, [])) <= set(np.flatnonzero(mask)), name
  # Silent on the batch and cut from the next layer: Q on the batch is unchanged.
  np.testing.assert_allclose(agent.network.apply(new.params, obs), agent.network.apply(state.params, obs),
                             atol=1e-6, rtol=1e-6)
  assert_trees_equal(new.target_params, state.target_params)


@pytest.mark.parametrize("activation", ["relu", "crelu"])
def test_recycling_dead_units_keeps_q_on_any_input(activation):
  agent, state, new = recycle_dead(activation)
  for obs in (random_batch(30)["obs"], random_batch(31, 4)["obs"] // 8, np.zeros((2, *OBS_SHAPE), np.uint8)):
    np.testing.assert_allclose(agent.network.apply(new.params, obs), agent.network.apply(state.params, obs),
                               atol=1e-6, rtol=1e-6)
  for name in DEAD:
    kernels = [layer(p, name)["linear"]["kernel"] for p in (new.params, state.params)]
    assert not np.array_equal(*kernels)


def test_redo_incoming_fresh_bias_zero_outgoing_zero_and_flatten_order():
  agent, state, new = recycle_dead(seed=9)
  fresh = remedies.fresh_layers(agent.network, jax.random.key(9), state.params, list(DEAD), OBS_SHAPE)
  cut_rows = {"conv_2": DEAD["conv_1"], "dense_0": [r for r in range(4 * 16) if r % 16 in DEAD["conv_2"]]}
  for name, units in DEAD.items():
    kernel = np.asarray(layer(new.params, name)["linear"]["kernel"])[..., units]
    expected = np.array(fresh[name]["linear"]["kernel"])[..., units]
    if name == "conv_2":
      expected[:, :, cut_rows[name], :] = 0.0  # Outgoing weights of recycled conv_1 units: written last.
    elif name == "dense_0":
      expected[cut_rows[name], :] = 0.0
    np.testing.assert_array_equal(kernel, expected, err_msg=name)
    assert not np.allclose(kernel, np.asarray(layer(state.params, name)["linear"]["kernel"])[..., units])
    np.testing.assert_array_equal(layer(new.params, name)["linear"]["bias"][np.array(units)], 0.0)
  np.testing.assert_array_equal(layer(new.params, "conv_2")["linear"]["kernel"][:, :, DEAD["conv_1"], :], 0.0)
  np.testing.assert_array_equal(layer(new.params, "dense_1")["linear"]["kernel"][DEAD["dense_0"], :], 0.0)
  # conv_2 → dense_0: the flatten of [H, W, C] puts channel c at rows (h·W + w)·C + c.
  dense_0 = np.asarray(layer(new.params, "dense_0")["linear"]["kernel"])
  h, w, c = 2, 2, agent.network.spec("conv_2").features
  per_channel = dense_0.reshape(h, w, c, -1)
  np.testing.assert_array_equal(per_channel[:, :, DEAD["conv_2"], :], 0.0)
  alive = [ch for ch in range(c) if ch not in DEAD["conv_2"]]
  before = np.asarray(layer(state.params, "dense_0")["linear"]["kernel"]).reshape(h, w, c, -1)
  keep = [u for u in range(dense_0.shape[1]) if u not in DEAD["dense_0"]]
  np.testing.assert_array_equal(per_channel[:, :, alive][..., keep], before[:, :, alive][..., keep])


def changed_entries(network, params, masks):
  """Bool tree (trainable structure): the entries ReDo may write for `masks`, computed independently."""
  out = jax.tree.map(lambda x: np.zeros(x.shape, bool), params_tree.trainable(params))
  layers = params_tree.layers(out)  # The same arrays: written in place below.
  names = network.layer_names
  for name, mask in masks.items():
    units = np.flatnonzero(mask)
    for leaf in jax.tree.leaves(layers[name]):
      leaf[..., units] = True
    following = names[names.index(name) + 1]
    kernel = layers[following]["linear"]["kernel"]
    if kernel.ndim == 4:
      kernel[:, :, units, :] = True
    else:
      channels = len(mask)
      rows = [r for r in range(kernel.shape[0]) if r % channels in set(units)]
      kernel[rows, :] = True
  return out


@pytest.mark.parametrize("optimizer", dqn.OPTIMIZERS)
def test_redo_zeroes_moments_of_changed_entries_only_and_keeps_the_rest(optimizer):
  agent, state = make_agent(optimizer=optimizer), with_dead_units(trained_state(optimizer=optimizer))
  new, masks = redo(state, 0.1, optimizer=optimizer)
  changed = changed_entries(agent.network, state.params, jax.device_get(masks))
  assert sum(int(x.sum()) for x in jax.tree.leaves(changed)) > 0
  keep = lambda a, b: np.asarray(a)[~b]
  for a, b, m in zip(jax.tree.leaves(params_tree.trainable(new.params)),
                     jax.tree.leaves(params_tree.trainable(state.params)),
                     jax.tree.leaves(changed), strict=True):
    np.testing.assert_array_equal(keep(a, m), keep(b, m))
  stats, old = new.opt_state[0], state.opt_state[0]  # Adam's (count, μ, ν); centered RMSProp's (μ, ν).
  if isinstance(old, optax.ScaleByAdamState):
    assert int(stats.count) == int(old.count) == 3
  for moments, old_moments in ((stats.mu, old.mu), (stats.nu, old.nu)):
    for a, b, m in zip(jax.tree.leaves(moments), jax.tree.leaves(old_moments), jax.tree.leaves(changed)):
      np.testing.assert_array_equal(np.asarray(a)[m], 0.0)
      np.testing.assert_array_equal(keep(a, m), keep(b, m))


def test_redo_q_equals_the_network_with_dormant_outgoing_weights_cut():
  """τ > 0 also recycles low but non-zero units: Q loses exactly their outgoing contribution."""
  agent, state = make_agent(), trained_state()
  new, masks = redo(state, 0.5)
  assert sum(int(np.sum(m)) for m in masks.values()) > 0
  layers = jax.tree.map(lambda x: x, params_tree.main_layers(state.params))  # New containers.
  names = agent.network.layer_names
  for name, mask in masks.items():
    following = names[names.index(name) + 1]
    kernel = layers[following]["linear"]["kernel"]
    rows = unit_masks.input_rows(agent.network, mask, kernel.shape[-2])[:, None]
    layers[following]["linear"]["kernel"] = jnp.where(jnp.broadcast_to(rows, kernel.shape), 0.0, kernel)
  cut = params_tree.replace_trainable(state.params, layers)
  obs = random_batch(40, 8)["obs"]
  np.testing.assert_allclose(agent.network.apply(new.params, obs), agent.network.apply(cut, obs), atol=1e-5)


def test_redo_with_layer_norm_resets_the_recycled_units_norm_params():
  state = with_dead_units(trained_state(layer_norm=True))
  dense_0 = params_tree.main_layers(state.params)["dense_0"]
  scaled = params_tree.replace_trainable(state.params, {"dense_0": {
      **dense_0, "norm": {**dense_0["norm"], "scale": jnp.full_like(dense_0["norm"]["scale"], 0.5)}}})
  new, masks = redo(state.replace(params=scaled), 0.0, layer_norm=True)
  units = np.flatnonzero(masks["dense_0"])
  assert len(units) > 0
  norm = layer(new.params, "dense_0")["norm"]
  np.testing.assert_array_equal(norm["scale"][units], 1.0)
  np.testing.assert_array_equal(norm["bias"][units], 0.0)
  others = np.setdiff1d(np.arange(norm["scale"].shape[0]), units)
  np.testing.assert_array_equal(norm["scale"][others], 0.5)


def test_redo_on_an_injected_network_changes_only_the_trainable_main_path():
  agent = make_agent()
  injected = surgery.inject(trained_state(), jax.random.key(1), network=agent.network, optimizer=agent.optimizer,
                            obs_shape=OBS_SHAPE, layers=("dense_0", "dense_1"))
  new, masks = redo(injected, 0.5)
  assert sum(int(np.sum(m)) for m in masks.values()) > 0
  assert_trees_equal(params_tree.frozen(new.params), params_tree.frozen(injected.params))
  assert jax.tree.structure(new) == jax.tree.structure(injected)


def test_redo_jitted_compiles_once_and_matches_eager():
  agent, state = make_agent(), with_dead_units(trained_state())
  obs = random_batch(20)["obs"]
  jitted = functools.partial(remedies.redo_jit, network=agent.network, optimizer=agent.optimizer, tau=0.1)
  new, masks = jitted(state, jax.random.key(5), obs)
  size = remedies.redo_jit._cache_size()  # pylint: disable=protected-access
  eager, eager_masks = redo(state, 0.1)
  assert_trees_equal(masks, eager_masks)
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(eager.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  jitted(trained_state(seed=1), jax.random.key(6), random_batch(51)["obs"])
  assert remedies.redo_jit._cache_size() == size  # pylint: disable=protected-access


# -- shrink and perturb ---------------------------------------------------------------------------------------


def sp(state, alpha, sigma, seed=4):
  return remedies.shrink_perturb(state, jax.random.key(seed), network=make_agent().network, obs_shape=OBS_SHAPE,
                                 alpha=alpha, sigma=sigma)


def test_shrink_perturb_identity_at_alpha_one_sigma_zero():
  state, new = trained_state(), sp(trained_state(), 1.0, 0.0)
  assert_trees_equal((new.params, new.target_params, new.opt_state), (state.params, state.target_params,
                                                                        state.opt_state))


def test_shrink_perturb_mixes_with_a_fresh_init_online_and_target():
  agent, state = make_agent(), trained_state()
  new = sp(state, 0.6, 0.3, seed=8)
  names = agent.network.layer_names
  fresh = remedies.fresh_layers(agent.network, jax.random.key(8), state.params, names, OBS_SHAPE)
  for tree in ("params", "target_params"):
    for name in names:
      for a, b, f in zip(jax.tree.leaves(layer(getattr(new, tree), name)),
                         jax.tree.leaves(layer(getattr(state, tree), name)), jax.tree.leaves(fresh[name])):
        np.testing.assert_allclose(a, 0.6 * np.asarray(b) + 0.3 * np.asarray(f), rtol=1e-6, atol=1e-7)
  assert_trees_equal(new.opt_state, state.opt_state)


# -- registry builders and config -----------------------------------------------------------------------------


def smoke_config(**sections) -> ml_collections.ConfigDict:
  config = config_lib.apply_scale(config_lib.base_config(), "smoke")
  for field, value in sections.items():
    section, name = field.split("__")
    config[section][name] = value
  config_lib.validate(config)
  return config


def test_builders_expand_schedules_and_apply():
  config = smoke_config(reset__frames=(2_000,), reset__target="last_k:1", redo__period_frames=1_000,
                        shrink_perturb__period_frames=2_000, shrink_perturb__start_frames=3_000)
  agent = make_agent()
  schedule = interventions.make_schedule(config, agent)
  assert [(s.name, s.frames) for s in schedule.pending] == [
      ("redo", 1_000), ("reset", 2_000), ("redo", 2_000), ("redo", 3_000), ("redo", 4_000),
      ("shrink_perturb", 4_000)]
  state, batch = trained_state(), random_batch(60)
  for scheduled in schedule.pending:
    new = scheduled.apply(state, jax.random.key(0), batch)
    assert jax.tree.structure(new) == jax.tree.structure(state)
  redo_step = schedule.pending[0]
  assert redo_step.apply(state, jax.random.key(0), None) is state  # No replay batch yet: nothing to score.


def test_remedies_off_by_default():
  config = smoke_config()
  assert all(not builder(config, make_agent()) for name, builder in interventions.INTERVENTIONS.items()
             if name in ("reset", "redo", "shrink_perturb"))


@pytest.mark.parametrize("field, value, match", [
    ("reset__target", "conv_0", "reset.target"),
    ("reset__frames", (10**12,), "reset.frames"),
    ("redo__tau", -0.1, "redo.tau"),
    ("redo__frames", (500,), "redo.frames"),
    ("shrink_perturb__period_frames", -1, "shrink_perturb.period_frames"),
    ("shrink_perturb__alpha", -1.0, "shrink_perturb.alpha"),
])
def test_bad_remedy_config_is_one_clear_error(field, value, match):
  with pytest.raises(config_lib.ConfigError, match=f"config.{match}"):
    smoke_config(**{field: value})


# -- architecture: CReLU width accounting ---------------------------------------------------------------------


def _shapes(activation, halve):
  cfg = ml_collections.ConfigDict({"width": 1.0, "hidden": 512, "activation": activation, "layer_norm": False,
                                   "crelu_halve_width": halve})
  network = networks.make_network(cfg, 6)
  params = jax.eval_shape(lambda r: network.init(r, (84, 84, 4)), jax.random.key(0))
  return networks.count_params(params), {n: l["linear"]["kernel"].shape for n, l in
                                         params_tree.main_layers(params).items()}


def test_crelu_halved_width_keeps_representation_widths():
  relu_count, relu = _shapes("relu", True)
  crelu_count, crelu = _shapes("crelu", True)
  full_count, full = _shapes("crelu", False)
  assert crelu == {"conv_0": (8, 8, 4, 16), "conv_1": (4, 4, 32, 32), "conv_2": (3, 3, 64, 32),
                   "dense_0": (3136, 256), "dense_1": (512, 6)}
  # Each layer reads exactly as many inputs as in the ReLU network.
  assert all(crelu[n][:-1] == relu[n][:-1] for n in relu)
  assert crelu_count == 4_112 + 16_416 + 18_464 + 803_072 + 3_078
  assert relu_count == 1_687_206 and crelu_count < relu_count < full_count
  assert full["dense_0"] == (6272, 512)


def test_base_config_halves_crelu_by_default():
  config = config_lib.base_config()
  config.network.activation = "crelu"
  assert networks.make_network(config.network, 6).spec("dense_0").features == 256


# -- configs/compare.py ---------------------------------------------------------------------------------------


def _compare_module():
  path = os.path.join(os.path.dirname(__file__), "..", "configs", "compare.py")
  spec = importlib.util.spec_from_file_location("compare_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_compare_configs_validate_and_set_the_variant():
  compare = _compare_module()
  names = ("baseline", "inject", "reset", "shrink_perturb", "redo", "l2", "l2_init", "l2_incremental",
           "l2_periodic", "layer_norm", "leaky_relu", "crelu", "drq", "adaptive_rr")
  for name in names:
    for scale in ("", ",smoke"):
      config = compare.get_config(name + scale)
      config_lib.validate(config)
      assert config.variant == name
      agent = dqn.make_agent(config, NUM_ACTIONS)
      interventions.make_schedule(config, agent)
  paper = compare.get_config("reset")
  assert tuple(paper.reset.frames) == (50_000_000,) and paper.total_frames == 200_000_000
  assert tuple(compare.get_config("inject").injection.frames) == (50_000_000,)
  assert compare.get_config("redo").redo.period_frames == 16_000  # 1,000 updates at replay ratio 0.25.
  assert compare.get_config("l2_periodic,cpu").regularizer.on_frames == 20_000  # 10M of 200M, scaled.
  with pytest.raises(ValueError, match="unknown"):
    compare.get_config("nope")
