"""Plasticity injection: the invariants of issue 3, each a test."""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from plasticity_rl import config as config_lib
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import surgery
from plasticity_rl import testing
from plasticity_rl.agents import dqn
from plasticity_rl.envs import atari

# conv_2 outputs 2×2 maps: a branch from conv_2 still flattens positions into dense_0. At Atari's 84×84, on real
# frames, an injection's exactness is pinned by tests/test_golden.py (`surgery`, `triggered`: the injection
# events' max_abs_dq and max_abs_dq_target of 0.0 on the replay's probe batch).
OBS_SHAPE = (44, 44, 4)
NUM_ACTIONS = 6
TARGETS = ("head", "last_k:1", "last_k:3", "dense_1", "conv_2,dense_0,dense_1")
# The distinct layer suffixes of TARGETS ("dense_1" is last_k:1's, "conv_2,dense_0,dense_1" last_k:3's: see
# test_resolve_target_errors_name_the_layers): an injection sees only the layers.
DISTINCT_TARGETS = ("head", "last_k:1", "last_k:3")


@functools.cache  # One agent per kind: its jitted update compiles once per params structure, for every test.
def make_agent(optimizer="adam_dopamine", layer_norm=False) -> dqn.DQNAgent:
  network = networks.QNetwork(networks.nature_cnn_specs(NUM_ACTIONS, width=0.25, hidden=32), layer_norm=layer_norm)
  opt = dqn.make_optimizer(ml_collections.ConfigDict({"optimizer": optimizer, "learning_rate": 1e-3}))
  return dqn.DQNAgent(network, opt, OBS_SHAPE, NUM_ACTIONS, target_update_period_updates=1000)


def random_batch(seed: int, size: int = 8) -> dict[str, np.ndarray]:
  return testing.random_batch(seed, size, OBS_SHAPE, NUM_ACTIONS)


@functools.cache
def real_observations() -> np.ndarray:
  """16 stacked observations of Pong under a random policy, every second pixel (42×42), edges repeated to
  44×44: real frames' statistics (a dark field, sparse objects) at OBS_SHAPE."""
  small = np.pad(atari_observations()[:, ::2, ::2], ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  assert small.shape[1:] == OBS_SHAPE
  return small


@functools.cache
def atari_observations() -> np.ndarray:
  """16 stacked 84×84 observations of Pong under a random policy."""
  envs = atari.make_envs("Pong", "dqn_zoo", num_envs=4, seed=3)
  stepper, stacker = atari.AtariStepper(envs, "dqn_zoo"), atari.FrameStacker(4)
  step, out = stepper.reset(), []
  for t in range(60):
    obs = stacker.push(step.frame, step.first)
    if t % 15 == 14:
      out.append(obs.copy())
    step = stepper.step(np.random.default_rng(t).integers(0, 6, 4))
  return np.concatenate(out)


@functools.cache  # Immutable: shared by the tests (agents are cached too, so equal arguments, equal state).
def trained_state(agent: dqn.DQNAgent, updates: int = 3) -> dqn.TrainState:
  state = agent.init(jax.random.key(0))
  for i in range(updates):
    state, _ = agent.update(state, random_batch(i))
  return state


def inject(agent, state, seed=1, **kwargs):
  kwargs.setdefault("layers", surgery.resolve_target(agent.network, "head"))
  return surgery.inject(state, jax.random.key(seed), network=agent.network, optimizer=agent.optimizer,
                        obs_shape=agent.obs_shape, **kwargs)


@pytest.mark.parametrize("target", DISTINCT_TARGETS)
def test_predictions_unchanged_by_one_two_three_injections(target):
  agent = make_agent()
  state = trained_state(agent)
  layers = surgery.resolve_target(agent.network, target)
  for obs in (random_batch(99, 16)["obs"], real_observations()):
    current = state
    for k in range(3):
      injected = inject(agent, current, seed=k + 1, layers=layers)
      for tree in ("params", "target_params"):
        before = agent.network.apply(getattr(current, tree), obs)
        after = agent.network.apply(getattr(injected, tree), obs)
        assert float(jnp.max(jnp.abs(after - before))) <= 1e-5, (target, k, tree)
      assert len(params_tree.plus_branches(injected.params)) == k + 1
      current, _ = agent.update(injected, random_batch(10 + k))  # Train between injections.


def test_growth_keeps_predictions_and_widens_the_trainable_head():
  agent = make_agent()
  state = trained_state(agent)
  obs = real_observations()
  for hidden in (64, 128):
    grown = inject(agent, state, hidden=hidden)
    chex.assert_trees_all_close(agent.network.apply(grown.params, obs), agent.network.apply(state.params, obs),
                                atol=1e-5)
    assert params_tree.main_layers(grown.params)["dense_0"]["linear"]["kernel"].shape[-1] == hidden
    assert params_tree.count_trainable(grown.params) > params_tree.count_trainable(state.params)
    grown, _ = agent.update(grown, random_batch(5))  # The optimizer state fits the wider head.
    state = grown


@pytest.mark.parametrize("target", TARGETS)
def test_trainable_count_unchanged_by_same_width_injection(target):
  agent = make_agent()
  state = trained_state(agent, updates=1)
  injected = inject(agent, state, layers=surgery.resolve_target(agent.network, target))
  assert params_tree.count_trainable(injected.params) == params_tree.count_trainable(state.params)
  chex.assert_trees_all_equal_shapes_and_dtypes(params_tree.trainable(injected.params),
                                                params_tree.trainable(state.params))
  # Optimizer state exists only for trainable leaves: same structure as before.
  assert jax.tree.structure(injected.opt_state) == jax.tree.structure(state.opt_state)


def test_frozen_leaves_bit_identical_after_updates_and_trainable_ones_move():
  agent = make_agent()
  injected = inject(agent, trained_state(agent))
  state = injected
  for i in range(5):
    state, _ = agent.update(state, random_batch(20 + i))
  chex.assert_trees_all_equal(params_tree.frozen(state.params), params_tree.frozen(injected.params))
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params_tree.trainable(state.params),
                       params_tree.trainable(injected.params))
  assert all(jax.tree.leaves(moved))


def test_encoder_gradient_flows_through_the_frozen_head_term():
  agent = make_agent()
  state = inject(agent, trained_state(agent))
  # Zero the fresh trainable head: with θ'₁ ≡ 0 the only path from the loss to the encoder
  # that is not cancelled is h_θ (frozen) − h_θ'₂ (frozen).
  zero_head = jax.tree.map(jnp.zeros_like, params_tree.trainable(state.params)["head"])
  trainable = {**params_tree.trainable(state.params), "head": zero_head}
  grads, _ = jax.grad(agent.loss, has_aux=True)(trainable, state, random_batch(7))
  assert float(optax_norm(grads["encoder"])) > 0
  assert float(optax_norm(grads["head"])) > 0


def optax_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(tree)))


def test_inject_is_pure_and_jittable():
  agent = make_agent()
  state = trained_state(agent)
  copy = jax.tree.map(jnp.copy, state)
  eager = inject(agent, state)
  jitted = jax.jit(functools.partial(surgery.inject, network=agent.network, optimizer=agent.optimizer,
                                     obs_shape=agent.obs_shape, layers=("dense_0", "dense_1")))(state, jax.random.key(1))
  plain = lambda s: s.replace(rng=jax.random.key_data(s.rng))
  chex.assert_trees_all_equal(plain(state), plain(copy))  # Input untouched.
  chex.assert_trees_all_close(plain(jitted), plain(eager))


@pytest.mark.parametrize("reset", [False, True])
def test_optimizer_statistics_kept_or_reset(reset):
  agent = make_agent("rmsprop_dqn_zoo")
  state = trained_state(agent)
  injected = inject(agent, state, reset_optimizer=reset)
  fresh = agent.optimizer.init(params_tree.trainable(state.params))
  for path, leaf in jax.tree_util.tree_flatten_with_path(injected.opt_state)[0]:
    old = dict(jax.tree_util.tree_flatten_with_path(state.opt_state)[0])[path]
    new_init = dict(jax.tree_util.tree_flatten_with_path(fresh)[0])[path]
    names = jax.tree_util.keystr(path)
    if reset and "head" in names:
      chex.assert_trees_all_equal(leaf, new_init)
    else:
      chex.assert_trees_all_equal(leaf, old)


def frozen_main_layers(params) -> dict:
  trainable = params_tree.trainable_parts(params)
  return {name: layer for name, layer in params_tree.main_layers(params).items() if name not in trainable}


def test_freeze_encoder_moves_it_out_of_the_trainable_tree():
  agent = make_agent()
  state = trained_state(agent)
  injected = inject(agent, state, freeze_encoder=True)
  assert set(params_tree.trainable(injected.params)) == {"head"}
  assert set(frozen_main_layers(injected.params)) == {"conv_0", "conv_1", "conv_2"}
  obs = real_observations()
  chex.assert_trees_all_close(agent.network.apply(injected.params, obs), agent.network.apply(state.params, obs),
                              atol=1e-5)
  after, _ = agent.update(injected, random_batch(3))
  chex.assert_trees_all_equal(frozen_main_layers(after.params), frozen_main_layers(injected.params))


def test_update_retraces_once_per_injection_not_per_step():
  agent = make_agent(layer_norm=True)  # A structure no other test compiles.
  state = trained_state(agent, updates=1)
  base = dqn.DQNAgent.update._cache_size()
  for i in range(3):
    state, _ = agent.update(state, random_batch(30 + i))
  assert dqn.DQNAgent.update._cache_size() == base
  state = inject(agent, state)
  for i in range(3):
    state, _ = agent.update(state, random_batch(40 + i))
  assert dqn.DQNAgent.update._cache_size() == base + 1


def test_resolve_target_errors_name_the_layers():
  network = make_agent().network
  assert surgery.resolve_target(network, "head") == ("dense_0", "dense_1")
  assert surgery.resolve_target(network, "last_k:3") == ("conv_2", "dense_0", "dense_1")
  assert surgery.resolve_target(network, "conv_2,dense_0,dense_1") == surgery.resolve_target(network, "last_k:3")
  assert surgery.resolve_target(network, "dense_1") == surgery.resolve_target(network, "last_k:1") == ("dense_1",)
  with pytest.raises(ValueError, match="suffix"):
    surgery.resolve_target(network, "dense_0")
  with pytest.raises(ValueError, match="unknown layers"):
    surgery.resolve_target(network, "dense_9")


def test_injection_schedule_is_validated_against_the_budget():
  config = config_lib.base_config()
  config.total_frames = 1_000_000
  config.injection.frames = (2_000_000,)
  with pytest.raises(config_lib.ConfigError, match="injection"):
    config_lib.validate(config)
  config.injection.frames = (250_000, 500_000)
  config.injection.hidden = (64,)
  with pytest.raises(config_lib.ConfigError, match="one entry per injection"):
    config_lib.validate(config)
  config.injection.hidden = (64, 128)
  config_lib.validate(config)


def test_injection_leaves_a_dueling_network_unchanged():
  network = networks.QNetwork(networks.nature_cnn_specs(NUM_ACTIONS, width=0.25, hidden=32), dueling=True,
                              initializer="xavier_uniform", conv_padding="SAME")
  opt = dqn.make_optimizer(ml_collections.ConfigDict({"optimizer": "adam_dopamine", "learning_rate": 1e-3}))
  agent = dqn.DQNAgent(network, opt, OBS_SHAPE, NUM_ACTIONS, target_update_period_updates=1000)
  state = trained_state(agent)
  obs = random_batch(99, 16)["obs"]
  injected = inject(agent, state)
  assert float(jnp.max(jnp.abs(agent.network.apply(injected.params, obs) - agent.network.apply(state.params, obs)))) \
      <= 1e-5
  updated, _ = agent.update(injected, random_batch(5))  # The dueling branches train.
  assert float(jnp.max(jnp.abs(agent.network.apply(updated.params, obs) - agent.network.apply(injected.params, obs)))) \
      > 0


# ----------------------------------------------------------------------------- the paper's ablations


def test_all_trainable_keeps_q_and_trains_all_three_heads():
  agent = make_agent()
  state = trained_state(agent)
  obs = real_observations()
  injected = inject(agent, state, all_trainable=True)
  for tree in ("params", "target_params"):  # Exact at the injection, as the frozen layout is.
    chex.assert_trees_all_equal(agent.network.apply(getattr(injected, tree), obs),
                                agent.network.apply(getattr(state, tree), obs))
  head = params_tree.count_params(params_tree.trainable(state.params)["head"])
  assert params_tree.count_trainable(injected.params) == params_tree.count_trainable(state.params) + 2 * head
  assert params_tree.count_frozen(injected.params) == 0 and params_tree.branches_trainable(injected.params)
  updated = injected
  for i in range(3):
    updated, _ = agent.update(updated, random_batch(50 + i))
  for old, new in ((injected, updated),):  # h_θ (plus_0), θ'₂ (minus_0) and θ'₁ (the slot) all move.
    for branch in (params_tree.plus_branches, params_tree.minus_branches):
      moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), branch(new.params)[0], branch(old.params)[0])
      assert all(jax.tree.leaves(moved)), branch.__name__
  # Their optimizer statistics exist (fresh at the injection), beside the slot's kept ones.
  assert len(jax.tree.leaves(injected.opt_state)) > len(jax.tree.leaves(state.opt_state))
  again = inject(agent, updated, seed=2, all_trainable=True)  # A second injection appends to the trainable pairs.
  assert params_tree.num_injections(again.params) == 2
  chex.assert_trees_all_close(agent.network.apply(again.params, obs), agent.network.apply(updated.params, obs),
                              atol=1e-5)
  with pytest.raises(ValueError, match="all_trainable"):  # A run's injections share the layout.
    inject(agent, updated, seed=2)


def test_stop_frozen_grad_cuts_the_frozen_heads_gradient_into_the_encoder():
  agent = make_agent()
  state = trained_state(agent)
  obs = real_observations()
  plain, stopped = inject(agent, state), inject(agent, state, stop_frozen_grad=True)
  chex.assert_trees_all_equal(agent.network.apply(stopped.params, obs), agent.network.apply(state.params, obs))
  batch = random_batch(7)
  grad = lambda s: jax.grad(agent.loss, has_aux=True)(params_tree.trainable(s.params), s, batch)[0]
  # With the fresh head zeroed, the encoder's only gradient is through the frozen heads (see above): none when stopped.
  zero = lambda s: s.replace(params=params_tree.replace_trainable(s.params, jax.tree.map(
      jnp.zeros_like, params_tree.trainable(s.params)["head"])))
  assert float(optax_norm(grad(zero(plain))["encoder"])) > 0
  assert float(optax_norm(grad(zero(stopped))["encoder"])) == 0
  # With a trained head too, the frozen heads' share of the encoder's gradient is gone: the gradients differ.
  assert float(optax_norm(jax.tree.map(jnp.subtract, grad(plain)["encoder"], grad(stopped)["encoder"]))) > 1e-6
  again, _ = agent.update(stopped, batch)
  assert params_tree.frozen_grad_stopped(inject(agent, again, seed=2, stop_frozen_grad=True).params)
  with pytest.raises(ValueError, match="stop_frozen_grad"):
    inject(agent, again, seed=2)


def _ablation_config(**injection):
  config = config_lib.base_config()
  config.injection.frames = (50_000_000,)
  config.injection.update(injection)
  return config


@pytest.mark.parametrize("fields, message", [
    ({"all_trainable": True, "stop_frozen_grad": True}, "^injection.stop_frozen_grad acts on frozen heads"),
    ({"stop_frozen_grad": True, "target": "last_k:5"}, "^injection.stop_frozen_grad: the target 'last_k:5' covers"),
    ({"stop_frozen_grad": True, "freeze_encoder": True}, "^injection.stop_frozen_grad with injection.freeze_encoder"),
])
def test_ablations_refused_where_they_cannot_act(fields, message):
  network = make_agent().network
  config = _ablation_config(**fields)
  with pytest.raises(ValueError, match=message):
    surgery.injection_plan(config, network)
  config.injection.update(all_trainable=True, stop_frozen_grad=False, freeze_encoder=False, target="head")
  config.expansion.enabled = True
  with pytest.raises(ValueError, match="^injection.all_trainable with expansion"):
    surgery.injection_plan(config, network)
  config.expansion.enabled = False
  config.regularizer.kind = "l2_init"
  with pytest.raises(ValueError, match="^injection.all_trainable with regularizer.kind 'l2_init'"):
    surgery.injection_plan(config, network)


def test_ablation_fields_reach_the_scheduled_injection():
  agent = make_agent()
  plan = surgery.injection_plan(_ablation_config(all_trainable=True), agent.network)
  assert plan.all_trainable and not plan.stop_frozen_grad
  injected = surgery.injection(agent, plan)(trained_state(agent), jax.random.key(1), None)
  assert params_tree.branches_trainable(injected.params)
  plan = surgery.injection_plan(_ablation_config(stop_frozen_grad=True), agent.network)
  injected = surgery.injection(agent, plan)(trained_state(agent), jax.random.key(1), None)
  assert params_tree.frozen_grad_stopped(injected.params) and not params_tree.branches_trainable(injected.params)
