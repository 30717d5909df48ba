"""Tests for plasticity_rl.networks (the named-layer Q-network) and the optimizer presets."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl.agents import dqn

OBS = (84, 84, 4)  # Atari's: the shapes and parameter counts (eval_shape, no compute).
# Where the numbers computed do not depend on the input's size: conv_2 outputs 2×2 maps (the conv → dense
# flatten still mixes positions), and eager ops on it cost a fraction of 84×84's.
SMALL_OBS = (44, 44, 4)


def _network_config(**overrides) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({"width": 1.0, "hidden": 512, "activation": "relu", "layer_norm": False,
                                    **overrides})


@functools.cache  # Immutable arrays: tests that build the same network share one init.
def _init(num_actions: int = 6, **overrides):
  """The network and its params for SMALL_OBS (real arrays: slow on CPU the first time per shape, use for apply)."""
  network = networks.make_network(_network_config(**overrides), num_actions)
  return network, network.init(jax.random.key(0), SMALL_OBS)


def _init_shapes(num_actions: int = 6, **overrides):
  """The network and its params as ShapeDtypeStructs (no compute: for the tree and the shapes)."""
  network = networks.make_network(_network_config(**overrides), num_actions)
  return network, jax.eval_shape(lambda rng: network.init(rng, OBS), jax.random.key(0))


def _kernel_shapes(params) -> dict[str, tuple[int, ...]]:
  layers = params_tree.main_layers(params)
  return {name: layers[name]["linear"]["kernel"].shape for name in layers}


def test_param_tree_has_named_parts():
  _, params = _init_shapes()  # The layout itself: tests/test_params_tree.py.
  assert params_tree.trainable_parts(params) == {"conv_0": "encoder", "conv_1": "encoder", "conv_2": "encoder",
                                                 "dense_0": "head", "dense_1": "head"}
  assert params_tree.is_plain(params) and params_tree.num_injections(params) == 0
  for layer in params_tree.main_layers(params).values():
    assert set(layer) == {"linear"}  # No norm params without layer_norm.
    assert set(layer["linear"]) == {"kernel", "bias"}


def test_nature_cnn_shapes_and_param_count():
  _, params = _init_shapes(num_actions=6)
  assert _kernel_shapes(params) == {
      "conv_0": (8, 8, 4, 32), "conv_1": (4, 4, 32, 64), "conv_2": (3, 3, 64, 64),
      "dense_0": (7 * 7 * 64, 512), "dense_1": (512, 6)}
  # Mnih et al. 2015 with 6 actions: 8,224 + 32,832 + 36,928 + 1,606,144 + 3,078.
  assert networks.count_params(params) == 1_687_206


def test_width_multiplier_scales_hidden_channels_not_actions():
  _, params = _init_shapes(num_actions=18, width=0.5)
  assert _kernel_shapes(params) == {
      "conv_0": (8, 8, 4, 16), "conv_1": (4, 4, 16, 32), "conv_2": (3, 3, 32, 32),
      "dense_0": (7 * 7 * 32, 256), "dense_1": (256, 18)}
  _, wide = _init_shapes(num_actions=18, width=2.0, hidden=64)
  assert _kernel_shapes(wide)["conv_2"] == (3, 3, 128, 128)
  assert _kernel_shapes(wide)["dense_0"] == (7 * 7 * 128, 128)


def test_layer_norm_adds_norm_params_to_hidden_layers_only():
  network, params = _init_shapes(layer_norm=True)
  layers = params_tree.main_layers(params)
  for spec in network.specs[:-1]:
    assert set(layers[spec.name]) == {"linear", "norm"}, spec.name
    assert layers[spec.name]["norm"]["scale"].shape == (spec.features,)
    assert layers[spec.name]["norm"]["bias"].shape == (spec.features,)
  assert set(layers["dense_1"]) == {"linear"}  # The Q output is never normalized.
  _, plain = _init_shapes()
  assert networks.count_params(params) - networks.count_params(plain) == 2 * (32 + 64 + 64 + 512)


def test_crelu_doubles_the_next_layers_inputs():
  _, params = _init_shapes(activation="crelu", width=0.25, hidden=32)
  shapes = _kernel_shapes(params)
  assert shapes["conv_0"] == (8, 8, 4, 8)
  assert shapes["conv_1"] == (4, 4, 16, 16)
  assert shapes["dense_0"] == (7 * 7 * 16 * 2, 8)
  assert shapes["dense_1"] == (16, 6)


@pytest.mark.parametrize("overrides", [{}, {"layer_norm": True}, {"activation": "leaky_relu"},
                                       {"activation": "crelu"}])
def test_apply_gives_batch_by_actions(overrides):
  network, params = _init(num_actions=5, width=0.25, hidden=32, **overrides)
  obs = np.random.default_rng(0).integers(0, 256, (3, *SMALL_OBS), dtype=np.uint8)
  q = network.apply(params, obs)
  assert q.shape == (3, 5) and q.dtype == jnp.float32
  assert np.isfinite(np.asarray(q)).all()
  q_again, features = network.apply_with_features(params, obs)
  np.testing.assert_array_equal(q, q_again)
  assert list(features) == list(network.layer_names)
  np.testing.assert_array_equal(features["dense_1"], q)
  # Rows are independent: the Q-values of one observation do not depend on the rest of the batch.
  np.testing.assert_allclose(network.apply(params, obs[1:2])[0], q[1], rtol=1e-5, atol=1e-6)


def test_apply_scales_uint8_inputs():
  network, params = _init(num_actions=5, width=0.25, hidden=32)
  zeros = network.apply(params, np.zeros((1, *SMALL_OBS), np.uint8))
  ones = network.apply(params, np.ones((1, *SMALL_OBS), np.uint8))
  # 1/255 in every pixel is a small input: it moves Q only a little away from Q(0).
  assert 0 < float(jnp.max(jnp.abs(ones - zeros))) < 0.1


def test_unknown_activation_is_rejected():
  network, _ = _init_shapes(width=0.25, hidden=32)
  bad = networks.QNetwork(network.specs, activation="tanh")
  with pytest.raises(ValueError, match="tanh"):
    bad.init(jax.random.key(0), SMALL_OBS)


# -- optimizer presets ----------------------------------------------------------------------------------------


def _first_step(optimizer: optax.GradientTransformation, grad: float) -> float:
  params = {"w": jnp.zeros(3)}
  state = optimizer.init(params)
  updates, _ = optimizer.update({"w": jnp.full(3, grad)}, state, params)
  return float(updates["w"][0])


def test_rmsprop_dqn_zoo_preset():
  learner = ml_collections.ConfigDict({"optimizer": "rmsprop_dqn_zoo", "learning_rate": None})
  # Centered RMSProp, decay 0.95, eps 0.01/32² inside the sqrt, lr 2.5e-4: the first step on a
  # gradient g is −lr·g / sqrt(0.05 g² − (0.05 g)² + eps).
  g, eps = 0.5, 0.01 / 32**2
  expected = -2.5e-4 * g / np.sqrt(0.05 * g**2 - (0.05 * g) ** 2 + eps)
  assert _first_step(dqn.make_optimizer(learner), g) == pytest.approx(expected, rel=1e-5)
  learner.learning_rate = 1e-3
  assert _first_step(dqn.make_optimizer(learner), g) == pytest.approx(expected * 4, rel=1e-5)


def test_adam_dopamine_preset():
  learner = ml_collections.ConfigDict({"optimizer": "adam_dopamine", "learning_rate": None})
  # Adam's bias-corrected first step is −lr·g / (|g| + eps); lr 6.25e-5, eps 1.5e-4.
  g = 0.01
  assert _first_step(dqn.make_optimizer(learner), g) == pytest.approx(-6.25e-5 * g / (g + 1.5e-4), rel=1e-5)
  learner.learning_rate = 1e-3
  assert _first_step(dqn.make_optimizer(learner), g) == pytest.approx(-1e-3 * g / (g + 1.5e-4), rel=1e-5)


@pytest.mark.parametrize("name", dqn.OPTIMIZERS)
def test_optimizer_presets_build_on_the_trainable_tree(name):
  learner = ml_collections.ConfigDict({"optimizer": name, "learning_rate": None})
  optimizer = dqn.make_optimizer(learner)
  _, params = _init_shapes(num_actions=5, width=0.25, hidden=32)
  trainable = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), params_tree.trainable(params))

  @jax.jit  # One compile rather than an eager op per leaf shape.
  def first_update(trainable):
    grads = jax.tree.map(jnp.ones_like, trainable)
    return optimizer.update(grads, optimizer.init(trainable), trainable)[0]

  updates = first_update(trainable)
  assert jax.tree.structure(updates) == jax.tree.structure(trainable)
  assert all(float(jnp.max(u)) < 0 for u in jax.tree.leaves(updates))  # Descends along +1 gradients.


def test_unknown_optimizer_is_rejected():
  with pytest.raises(ValueError, match="sgd"):
    dqn.make_optimizer(ml_collections.ConfigDict({"optimizer": "sgd", "learning_rate": None}))


# -- Dopamine's FullRainbowNetwork options: dueling head, xavier_uniform, SAME padding; DQN Zoo's init --------

def test_dueling_head_is_value_plus_centred_advantage():
  network, params = _init(num_actions=4, width=0.25, hidden=32, dueling=True)
  obs = jnp.asarray(np.random.default_rng(0).integers(0, 256, (3, *SMALL_OBS), np.uint8))
  _, features = network.apply_with_features(params, obs)
  kernel, bias = (params_tree.main_layers(params)["dense_1"]["linear"][k] for k in ("kernel", "bias"))
  assert kernel.shape == (32 // 4, 5)  # 4 advantages + 1 value, one kernel.
  out = np.asarray(features["dense_0"]) @ np.asarray(kernel) + np.asarray(bias)
  advantage, value = out[:, :4], out[:, 4:]
  np.testing.assert_allclose(network.apply(params, obs), value + advantage - advantage.mean(1, keepdims=True),
                             rtol=1e-5, atol=1e-6)


def test_dueling_columns_are_initialized_as_separate_xavier_layers():
  # Dopamine: adv = Dense(A, xavier_uniform)(x), value = Dense(1, xavier_uniform)(x): limits √(6/(n+A)) and
  # √(6/(n+1)). A narrow hidden layer (n = 8) with A = 18 tells them apart: 0.48 vs 0.82.
  network = networks.make_network(_network_config(dueling=True, initializer="xavier_uniform", hidden=8), 18)
  params = network.init(jax.random.key(0), (36, 36, 4))
  # More draws of the output layer alone: the same initializer as in network.init (a whole init costs ~1 s).
  features = jnp.zeros((1, 8))
  kernels = [np.asarray(params_tree.main_layers(params)["dense_1"]["linear"]["kernel"])] + [
      np.asarray(network.init_layer(jax.random.key(k), "dense_1", features)[0]["linear"]["kernel"]) for k in range(1, 10)]
  assert all(k.shape == (8, 19) for k in kernels)
  advantage, value = np.concatenate([k[:, :18] for k in kernels]), np.concatenate([k[:, 18] for k in kernels])
  adv_bound, value_bound = np.sqrt(6 / (8 + 18)), np.sqrt(6 / (8 + 1))
  assert adv_bound * 0.95 < np.abs(advantage).max() <= adv_bound * (1 + 1e-6)
  assert value_bound * 0.9 < np.abs(value).max() <= value_bound * (1 + 1e-6)
  assert not np.asarray(params_tree.main_layers(params)["dense_1"]["linear"]["bias"]).any()


def test_same_padding_gives_dopamines_feature_sizes():
  _, params = _init_shapes(num_actions=6, conv_padding="SAME")
  shapes = _kernel_shapes(params)
  assert shapes["dense_0"] == (11 * 11 * 64, 512)  # 84 → 21 → 11 → 11 with SAME; 7 × 7 × 64 with VALID.
  _, valid = _init_shapes(num_actions=6)
  assert _kernel_shapes(valid)["dense_0"] == (7 * 7 * 64, 512)


def test_dqn_zoo_initializer_draws_weights_and_biases_within_one_over_sqrt_fan_in():
  _, params = _init(num_actions=6, initializer="dqn_zoo")
  layers = params_tree.main_layers(params)
  for name, fan_in in (("conv_0", 8 * 8 * 4), ("conv_1", 4 * 4 * 32), ("conv_2", 3 * 3 * 64),
                       ("dense_0", 2 * 2 * 64), ("dense_1", 512)):  # 2×2 maps of SMALL_OBS (7×7: 3,136 on Atari).
    bound = 1 / np.sqrt(fan_in)
    for leaf in ("kernel", "bias"):
      values = np.asarray(layers[name]["linear"][leaf])
      assert np.abs(values).max() <= bound * (1 + 1e-6), (name, leaf)
      assert np.abs(values).max() > 0.5 * bound, (name, leaf)  # Drawn, not zeros (flax's bias default).


def test_unknown_initializer_is_rejected():
  with pytest.raises(ValueError, match="unknown initializer"):
    _init(num_actions=2, width=0.25, hidden=8, initializer="orthogonal")


def test_shared_output_bias_is_one_parameter_added_to_every_q_value():
  network, params = _init(num_actions=5, width=0.25, hidden=16, initializer="dqn_zoo", shared_output_bias=True)
  bias = params_tree.main_layers(params)["dense_1"]["linear"]["bias"]
  assert bias.shape == (1,) and float(jnp.abs(bias[0])) <= 1 / 4 + 1e-6  # ±1/√fan_in, fan_in = 16.
  obs = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, *SMALL_OBS), np.uint8))
  dense_1 = params_tree.main_layers(params)["dense_1"]
  shifted = params_tree.replace_trainable(params, {"dense_1": {"linear": {**dense_1["linear"], "bias": bias + 1.0}}})
  np.testing.assert_allclose(network.apply(shifted, obs) - network.apply(params, obs), 1.0, rtol=1e-5)
  total = networks.count_params(params)
  _, per_action = _init(num_actions=5, width=0.25, hidden=16, initializer="dqn_zoo")
  assert networks.count_params(per_action) == total + 4
