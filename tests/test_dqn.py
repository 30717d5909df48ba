"""Tests for plasticity_rl.agents.dqn: the Double-DQN target, the loss, jitted update/act."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from plasticity_rl import config as config_lib
from plasticity_rl import networks
from plasticity_rl.agents import dqn

TINY_OBS = (2, 2, 1)
TINY_ACTIONS = 3


def _tiny_network() -> networks.QNetwork:
  """Two dense layers on a 2×2×1 observation: small enough to recompute in numpy."""
  return networks.QNetwork(specs=(
      networks.LayerSpec("head", "dense_0", "dense", 5),
      networks.LayerSpec("head", "dense_1", "dense", TINY_ACTIONS),
  ))


def _tiny_agent(optimizer=None, period: int = 3) -> dqn.DQNAgent:
  return dqn.DQNAgent(network=_tiny_network(), optimizer=optimizer or optax.sgd(0.1), obs_shape=TINY_OBS,
                      num_actions=TINY_ACTIONS, target_update_period_updates=period)


@functools.cache  # One agent for all tests: its jitted functions compile once.
def _small_conv_agent() -> dqn.DQNAgent:
  """The real Nature-CNN layer sequence, shrunk (36×36 input, width 1/8) to compile quickly."""
  learner = ml_collections.ConfigDict({"optimizer": "adam_dopamine", "learning_rate": None})
  network = networks.QNetwork(specs=networks.nature_cnn_specs(4, width=0.125, hidden=16))
  return dqn.DQNAgent(network=network, optimizer=dqn.make_optimizer(learner), obs_shape=(36, 36, 4),
                      num_actions=4, target_update_period_updates=1000)


def _batch(rng: np.random.Generator, batch_size: int, obs_shape, num_actions: int, reward_scale: float = 1.0):
  """A replay-like batch (same keys and dtypes as ReplayBuffer.sample)."""
  return {
      "obs": rng.integers(0, 256, (batch_size, *obs_shape), dtype=np.uint8),
      "next_obs": rng.integers(0, 256, (batch_size, *obs_shape), dtype=np.uint8),
      "action": rng.integers(0, num_actions, batch_size).astype(np.int32),
      "reward": (reward_scale * rng.uniform(-1, 1, batch_size)).astype(np.float32),
      "discount": np.where(rng.random(batch_size) < 0.3, 0.0, 0.99).astype(np.float32),
      "env_index": rng.integers(0, 4, batch_size),
      "time_index": rng.integers(0, 100, batch_size),
  }


def _leaves_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


# -- the Double-DQN target ------------------------------------------------------------------------------------


def test_double_q_uses_target_value_at_online_argmax():
  q_tm1 = jnp.array([1.0, 2.0, 3.0])
  q_t_selector = jnp.array([0.0, 5.0, 1.0])  # Online net: argmax 1.
  q_t_value = jnp.array([10.0, 2.0, 7.0])  # Target net: argmax 0, but its value at 1 must be used.
  td = dqn.double_q_td_error(q_tm1, jnp.array(1), jnp.array(0.5), jnp.array(0.9), q_t_value, q_t_selector)
  # r + γ Q_target(s', argmax_a Q_online(s', a)) − Q(s, a) = 0.5 + 0.9·2 − 2.
  np.testing.assert_allclose(td, 0.3, rtol=1e-6)
  # Not the target's own max (0.5 + 0.9·10 − 2 = 7.5) nor the online max (0.5 + 0.9·5 − 2 = 3.0).


def test_double_q_discount_zero_is_reward_only():
  q_tm1 = jnp.array([1.0, -2.0, 3.0])
  td = dqn.double_q_td_error(q_tm1, jnp.array(2), jnp.array(-1.0), jnp.array(0.0),
                             jnp.array([100.0, 50.0, 20.0]), jnp.array([0.0, 0.0, 1.0]))
  np.testing.assert_allclose(td, -1.0 - 3.0)


def test_double_q_gradient_flows_only_through_q_tm1():
  args = (jnp.array([1.0, 2.0, 3.0]), jnp.array(1), jnp.array(0.5), jnp.array(0.9),
          jnp.array([10.0, 2.0, 7.0]), jnp.array([0.0, 5.0, 1.0]))
  grads = jax.grad(dqn.double_q_td_error, argnums=(0, 4, 5))(*args)
  np.testing.assert_array_equal(grads[0], [0.0, -1.0, 0.0])
  np.testing.assert_array_equal(grads[1], np.zeros(3))
  np.testing.assert_array_equal(grads[2], np.zeros(3))


# -- the full loss against numpy ------------------------------------------------------------------------------


def _numpy_q(params, obs: np.ndarray) -> np.ndarray:
  head = params["trainable"]["head"]
  x = obs.reshape(obs.shape[0], -1).astype(np.float64) / 255.0
  w0, b0 = (np.asarray(head["dense_0"]["linear"][k], np.float64) for k in ("kernel", "bias"))
  w1, b1 = (np.asarray(head["dense_1"]["linear"][k], np.float64) for k in ("kernel", "bias"))
  return np.maximum(x @ w0 + b0, 0.0) @ w1 + b1


def _numpy_huber(x: np.ndarray, delta: float = 1.0) -> np.ndarray:
  return np.where(np.abs(x) <= delta, 0.5 * x**2, delta * (np.abs(x) - 0.5 * delta))


def test_loss_matches_numpy_double_dqn_huber():
  agent = _tiny_agent()
  state = agent.init(jax.random.key(0))
  # A target network that differs from the online one, so the two roles can be told apart.
  state = state.replace(target_params=agent.network.init(jax.random.key(1), TINY_OBS))
  rng = np.random.default_rng(0)
  batch = _batch(rng, 64, TINY_OBS, TINY_ACTIONS, reward_scale=3.0)

  loss, info = agent.loss(state.params["trainable"], state, batch)

  b = np.arange(64)
  q_tm1 = _numpy_q(state.params, batch["obs"])
  q_online_t = _numpy_q(state.params, batch["next_obs"])
  q_target_t = _numpy_q(state.target_params, batch["next_obs"])
  a_star = q_online_t.argmax(axis=1)
  assert (a_star != q_target_t.argmax(axis=1)).any(), "test data must separate Double DQN from DQN"
  td = batch["reward"] + batch["discount"] * q_target_t[b, a_star] - q_tm1[b, batch["action"]]
  assert (np.abs(td) < 1).any() and (np.abs(td) > 1).any(), "test data must hit both Huber regimes"
  np.testing.assert_allclose(loss, _numpy_huber(td).mean(), rtol=1e-5)
  np.testing.assert_allclose(info["loss"], loss)
  np.testing.assert_allclose(info["td_abs_mean"], np.abs(td).mean(), rtol=1e-5)
  np.testing.assert_allclose(info["q_mean"], q_tm1.mean(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(info["q_max"], q_tm1.max(), rtol=1e-5)
  # The vanilla-DQN target (max of the target net) gives another loss: the check above can fail.
  td_dqn = batch["reward"] + batch["discount"] * q_target_t.max(axis=1) - q_tm1[b, batch["action"]]
  assert abs(_numpy_huber(td_dqn).mean() - float(loss)) > 1e-4


# -- jitted update and act ------------------------------------------------------------------------------------


def test_update_and_act_compile_once():
  agent = _small_conv_agent()
  rng = np.random.default_rng(0)
  state = agent.init(jax.random.key(0))
  act_rng = jax.random.key(1)

  state, info = agent.update(state, _batch(rng, 8, agent.obs_shape, agent.num_actions))
  actions, act_rng = agent.act(state.params, _batch(rng, 5, agent.obs_shape, 4)["obs"], act_rng, 1.0)
  jax.block_until_ready((state, actions))
  update_size, act_size = dqn.DQNAgent.update._cache_size(), dqn.DQNAgent.act._cache_size()

  for i, epsilon in enumerate((0.5, 0.05, 0.0, 1.0)):
    state, info = agent.update(state, _batch(rng, 8, agent.obs_shape, agent.num_actions))
    actions, act_rng = agent.act(state.params, _batch(rng, 5, agent.obs_shape, 4)["obs"], act_rng, epsilon)
    assert np.isfinite(float(info["loss"]))
    assert int(state.num_updates) == i + 2
    assert actions.shape == (5,) and actions.dtype == jnp.int32
    assert dqn.DQNAgent.update._cache_size() == update_size
    assert dqn.DQNAgent.act._cache_size() == act_size


def test_act_greedy_at_epsilon_zero_and_uniform_at_one():
  agent = _small_conv_agent()
  state = agent.init(jax.random.key(0))
  obs = np.random.default_rng(1).integers(0, 256, (512, *agent.obs_shape), dtype=np.uint8)
  greedy, _ = agent.act(state.params, obs, jax.random.key(2), 0.0)
  q = np.asarray(agent.network.apply(state.params, obs))
  top2 = np.sort(q, axis=-1)[:, -2:]
  clear = top2[:, 1] - top2[:, 0] > 1e-6  # Rows where float rounding cannot flip the argmax.
  assert clear.sum() > 256
  np.testing.assert_array_equal(np.asarray(greedy)[clear], q.argmax(axis=-1)[clear])
  explore, rng = agent.act(state.params, obs, jax.random.key(2), 1.0)
  counts = np.bincount(np.asarray(explore), minlength=agent.num_actions)
  assert counts.shape == (agent.num_actions,) and counts.min() > 512 / agent.num_actions / 2
  assert not np.array_equal(jax.random.key_data(rng), jax.random.key_data(jax.random.key(2)))


def test_target_copied_exactly_every_period():
  period = 3
  agent = _tiny_agent(optax.sgd(0.5), period=period)
  state = agent.init(jax.random.key(0))
  assert _leaves_equal(state.target_params, state.params)
  rng = np.random.default_rng(0)
  target = state.target_params
  for k in range(1, 3 * period + 2):
    online_before = state.params
    state, _ = agent.update(state, _batch(rng, 16, TINY_OBS, TINY_ACTIONS, reward_scale=3.0))
    assert int(state.num_updates) == k
    assert not _leaves_equal(state.params, online_before), f"update {k} did not change the online params"
    if k % period == 0:
      assert _leaves_equal(state.target_params, state.params), f"no target copy at update {k}"
      target = state.target_params
    else:
      assert _leaves_equal(state.target_params, target), f"target changed between copies, at update {k}"
      assert not _leaves_equal(state.target_params, state.params)


def test_update_only_changes_trainable_and_keeps_structure():
  agent = _small_conv_agent()
  state = agent.init(jax.random.key(0))
  new_state, info = agent.update(state, _batch(np.random.default_rng(0), 8, agent.obs_shape, 4))
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  assert set(info) == {"loss", "q_mean", "q_max", "td_abs_mean", "grad_norm"}
  assert float(info["grad_norm"]) > 0


# -- helpers --------------------------------------------------------------------------------------------------


def test_make_agent_from_config():
  config = config_lib.base_config()
  config.network.width, config.network.hidden = 0.25, 64
  config.learner.target_update_period_updates = 20
  agent = dqn.make_agent(config, num_actions=6)
  assert agent.num_actions == 6 and agent.obs_shape == (84, 84, 4)
  assert agent.target_update_period_updates == config.learner.target_update_period_updates
  assert agent.network.spec("dense_0").features == round(config.network.hidden * config.network.width)
  assert agent.network.spec("dense_1").features == 6


@pytest.mark.parametrize("frames, expected", [(0, 1.0), (1_000, 1.0), (2_000, 0.505), (3_000, 0.01),
                                              (10_000, 0.01)])
def test_linear_epsilon(frames, expected):
  eps = dqn.linear_epsilon(frames, start=1.0, end=0.01, decay_frames=2_000, offset_frames=1_000)
  assert eps == pytest.approx(expected)


# -- the TD losses: DQN Zoo's form, Huber, MSE; Double vs plain Q-learning --------------------------------------

def _dqn_zoo_loss_grad_wrt_td(td: np.ndarray, bound: float) -> np.ndarray:
  """DQN Zoo's double_q loss, by hand: loss = mean(½·clip_gradient(td, ±bound)²). The gradient reaching td_i from
  the mean is td_i / B; rlax.clip_gradient clips that cotangent to ±bound."""
  return np.clip(td / td.shape[0], -bound, bound)


@pytest.mark.parametrize("batch_size", [8, 32, 128])
def test_dqn_zoo_loss_gradient_is_dqn_zoos_at_every_batch_size(batch_size):
  td = np.random.default_rng(batch_size).normal(0.0, 3.0, batch_size).astype(np.float32)
  grad = jax.grad(lambda t: dqn.td_loss(t, "dqn_zoo", grad_error_bound=1 / 32))(jnp.asarray(td))
  np.testing.assert_allclose(grad, _dqn_zoo_loss_grad_wrt_td(td, 1 / 32), rtol=1e-6, atol=1e-9)
  # The same as mean Huber with δ = B/32 (δ = 1 exactly at DQN Zoo's batch of 32).
  huber = jax.grad(lambda t: dqn.td_loss(t, "huber", huber_delta=batch_size / 32))(jnp.asarray(td))
  np.testing.assert_allclose(grad, huber, rtol=1e-5, atol=1e-9)
  # The old paper-scale loss (mean Huber δ = 1/32) had a gradient B/32 × … smaller: this test would fail on it.
  old = jax.grad(lambda t: dqn.td_loss(t, "huber", huber_delta=1 / 32))(jnp.asarray(td))
  assert np.abs(np.asarray(grad)).sum() > 1.5 * np.abs(np.asarray(old)).sum()
  np.testing.assert_allclose(dqn.td_loss(jnp.asarray(td), "dqn_zoo"), np.mean(0.5 * td.astype(np.float64)**2),
                             rtol=1e-5)


def test_mse_loss_is_dopamines():
  td = np.array([0.5, -2.0, 3.0], np.float32)
  np.testing.assert_allclose(dqn.td_loss(jnp.asarray(td), "mse"), np.mean(td**2), rtol=1e-6)  # No ½ (losses.mse_loss).
  with pytest.raises(ValueError, match="unknown loss"):
    dqn.td_loss(jnp.asarray(td), "l1")


def test_paper_scale_config_uses_dqn_zoos_loss():
  config = config_lib.base_config()
  config_lib.validate(config)
  agent = dqn.make_agent(config, num_actions=4)
  assert (agent.loss_kind, agent.grad_error_bound, agent.double_q) == ("dqn_zoo", 1 / 32, True)
  assert agent.huber_delta == 1.0  # Unused with dqn_zoo, and refused if set (test_config).


def test_double_q_false_is_q_learning():
  agent = dataclasses.replace(_tiny_agent(), double_q=False)
  state = agent.init(jax.random.key(0))
  state = state.replace(target_params=agent.network.init(jax.random.key(1), TINY_OBS))
  batch = _batch(np.random.default_rng(0), 64, TINY_OBS, TINY_ACTIONS, reward_scale=3.0)
  loss, _ = agent.loss(state.params["trainable"], state, batch)
  b = np.arange(64)
  q_tm1 = _numpy_q(state.params, batch["obs"])
  q_target_t = _numpy_q(state.target_params, batch["next_obs"])
  td = batch["reward"] + batch["discount"] * q_target_t.max(axis=1) - q_tm1[b, batch["action"]]
  np.testing.assert_allclose(loss, _numpy_huber(td).mean(), rtol=1e-5)
