"""L2 / L2-init loss terms and their λ schedules (plasticity_rl/regularizers.py, DQNAgent.loss)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from plasticity_rl import config as config_lib
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import regularizers
from plasticity_rl import surgery
from plasticity_rl.agents import dqn

OBS = (2, 2, 1)
ACTIONS = 3


def coef(schedule, frames, **kwargs):
  return float(regularizers.coefficient(schedule, 0.5, frames, **kwargs))


def test_constant_schedule():
  assert [coef("constant", f) for f in (0, 10, 10**8)] == [0.5, 0.5, 0.5]


def test_incremental_schedule_ramps_linearly_then_stays():
  values = [coef("incremental", f, ramp_frames=1_000) for f in (0, 250, 500, 1_000, 5_000)]
  assert values == pytest.approx([0.0, 0.125, 0.25, 0.5, 0.5])


def test_incremental_schedule_starts_from_a_configurable_value():
  """Issue 12: the CS285 report's incremental L2 ramps from a configurable λ₀, not from 0."""
  values = [coef("incremental", f, ramp_frames=1_000, start_coef=0.1) for f in (0, 500, 1_000, 5_000)]
  assert values == pytest.approx([0.1, 0.3, 0.5, 0.5])
  config = config_lib.apply_scale(config_lib.base_config(), "smoke")
  config.regularizer.update(kind="l2", coef=0.5, schedule="incremental", start_coef=0.1, ramp_frames=1_000)
  reg = regularizers.from_config(config)
  assert reg.start_coef == 0.1 and float(reg.coefficient(0)) == pytest.approx(0.1)
  config.regularizer.schedule = "constant"  # A start value the schedule would not use is refused.
  with pytest.raises(config_lib.ConfigError, match="config.regularizer.start_coef"):
    config_lib.validate(config)


def test_periodic_defaults_are_the_cs285_reports_2m_on_and_04m_off_frames():
  c = regularizers.regularizer_config()
  assert (c.on_frames, c.off_frames, c.start_coef) == (2_000_000, 400_000, 0.0)
  values = [coef("periodic", f, on_frames=c.on_frames, off_frames=c.off_frames)
            for f in (0, 1_999_999, 2_000_000, 2_399_999, 2_400_000, 4_400_000)]
  assert values == [0.5, 0.5, 0.0, 0.0, 0.5, 0.0]


def test_periodic_schedule_on_then_off():
  kwargs = dict(on_frames=100, off_frames=50)
  assert [coef("periodic", f, **kwargs) for f in (0, 99, 100, 149, 150, 249, 250, 300)] == [
      0.5, 0.5, 0.0, 0.0, 0.5, 0.5, 0.0, 0.5]


def test_unknown_schedule_is_rejected():
  with pytest.raises(ValueError, match="cosine"):
    regularizers.coefficient("cosine", 1.0, 0)


def test_frames_from_update_count():
  config = config_lib.base_config()
  config.regularizer.kind = "l2"
  reg = regularizers.from_config(config)
  # 50k transitions of warm-up (200k frames), then one update per 4 agent steps = 16 frames.
  assert float(reg.frames(jnp.int32(0))) == 200_000
  assert float(reg.frames(jnp.int32(1_000))) == 216_000
  config.regularizer.kind = "none"
  assert regularizers.from_config(config) is None


# -- gradients ------------------------------------------------------------------------------------------------


def tiny_network() -> networks.QNetwork:
  return networks.QNetwork(specs=(networks.LayerSpec("head", "dense_0", "dense", 5),
                                  networks.LayerSpec("head", "dense_1", "dense", ACTIONS)))


@functools.cache
def agent(kind: str | None, lam: float = 0.01, schedule: str = "constant", **kwargs) -> dqn.DQNAgent:
  reg = None if kind is None else regularizers.Regularizer(kind, lam, schedule, **kwargs)
  return dqn.DQNAgent(tiny_network(), optax.sgd(0.1), OBS, ACTIONS, target_update_period_updates=100,
                      regularizer=reg)


def batch(seed: int):
  rng = np.random.default_rng(seed)
  return {"obs": rng.integers(0, 256, (16, *OBS), dtype=np.uint8),
          "next_obs": rng.integers(0, 256, (16, *OBS), dtype=np.uint8),
          "action": rng.integers(0, ACTIONS, 16).astype(np.int32), "reward": rng.normal(size=16).astype(np.float32),
          "discount": np.full(16, 0.99, np.float32)}


def moved_state(a: dqn.DQNAgent) -> dqn.TrainState:
  state = a.init(jax.random.key(0))
  for i in range(3):
    state, _ = a.update(state, batch(i))
  return state


def term_grad(kind):
  """∇ of (loss with the term) − (loss without), on the same state and batch."""
  state, b = moved_state(agent(None)), batch(9)
  grad = lambda a: jax.grad(lambda t: a.loss(t, state, b)[0])(params_tree.trainable(state.params))
  return state, jax.tree.map(jnp.subtract, grad(agent(kind)), grad(agent(None)))


def test_l2_init_gradient_points_to_init():
  state, g = term_grad("l2_init")
  expected = jax.tree.map(lambda p, p0: 2 * 0.01 * (p - p0), params_tree.trainable(state.params),
                          params_tree.trainable(state.init_params))
  for a, e in zip(jax.tree.leaves(g), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-7)
  assert any(float(jnp.max(jnp.abs(e))) > 0 for e in jax.tree.leaves(expected))


def test_l2_gradient_points_to_zero():
  state, g = term_grad("l2")
  for a, p in zip(jax.tree.leaves(g), jax.tree.leaves(params_tree.trainable(state.params)), strict=True):
    np.testing.assert_allclose(a, 2 * 0.01 * p, rtol=1e-4, atol=1e-7)


def test_penalty_values_and_info():
  state = moved_state(agent(None))
  loss_plain, info_plain = agent(None).loss(params_tree.trainable(state.params), state, batch(9))
  loss_l2, info = agent("l2").loss(params_tree.trainable(state.params), state, batch(9))
  sq = sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(params_tree.trainable(state.params)))
  assert float(info["reg_penalty"]) == pytest.approx(sq, rel=1e-5)
  assert float(loss_l2) == pytest.approx(float(loss_plain) + 0.01 * sq, rel=1e-5)
  assert float(info["loss"]) == float(info_plain["loss"])  # The logged loss stays the TD loss.
  assert set(info_plain) == {"loss", "q_mean", "q_max", "td_abs_mean"}


def test_zero_coefficient_update_is_bit_identical_to_no_regularizer():
  a, b = moved_state(agent("l2_init", 0.0)), moved_state(agent(None))
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
    np.testing.assert_array_equal(x, y)


def test_l2_init_reference_after_injection_is_the_branch_init():
  a = agent("l2_init")
  state = moved_state(a)
  injected = surgery.inject(state, jax.random.key(3), network=a.network, optimizer=a.optimizer, obs_shape=OBS,
                            layers=("dense_1",))
  ref = regularizers.reference(injected.params, injected.init_params)
  np.testing.assert_array_equal(ref["head"]["dense_1"]["linear"]["kernel"],
                                params_tree.minus_branches(injected.params)[-1]["dense_1"]["linear"]["kernel"])
  np.testing.assert_array_equal(ref["head"]["dense_0"]["linear"]["kernel"],
                                params_tree.main_layers(injected.init_params)["dense_0"]["linear"]["kernel"])
  # The fresh branch starts at its reference: its part of the penalty is 0.
  assert float(regularizers.penalty({"h": params_tree.main_layers(injected.params)["dense_1"]},
                                    {"h": ref["head"]["dense_1"]})) == 0.0


def test_scheduled_update_compiles_once_and_follows_the_schedule():
  a = agent("l2", 0.5, "periodic", on_frames=32, off_frames=32, start_frames=0, frames_per_update=16.0)
  state = a.init(jax.random.key(0))
  state, info = a.update(state, batch(0))
  size = dqn.DQNAgent.update._cache_size()  # pylint: disable=protected-access
  coefs = [float(info["reg_coef"])]
  for i in range(1, 6):
    state, info = a.update(state, batch(i))
    coefs.append(float(info["reg_coef"]))
  assert dqn.DQNAgent.update._cache_size() == size  # pylint: disable=protected-access
  assert coefs == [0.5, 0.5, 0.0, 0.0, 0.5, 0.5]  # Updates at frames 0, 16, 32, 48, 64, 80.


# -- config ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, match", [
    ("kind", "l1", "regularizer.kind"), ("schedule", "cosine", "regularizer.schedule"),
    ("coef", -1.0, "regularizer.coef"), ("ramp_frames", 0, "regularizer.ramp_frames"),
    ("start_coef", -1.0, "regularizer.start_coef"),
])
def test_bad_regularizer_config_is_one_clear_error(field, value, match):
  config = config_lib.apply_scale(config_lib.base_config(), "smoke")
  config.regularizer.kind = "l2"
  config.regularizer.schedule = "incremental"
  config.regularizer[field] = value
  with pytest.raises(config_lib.ConfigError, match=f"config.{match}"):
    config_lib.validate(config)


def test_make_agent_reads_regularizer_and_augment():
  config = config_lib.apply_scale(config_lib.base_config(), "smoke")
  assert dqn.make_agent(config, ACTIONS).regularizer is None
  assert dqn.make_agent(config, ACTIONS).augment == "none"
  config.regularizer.kind, config.learner.augment = "l2_init", "random_shift"
  made = dqn.make_agent(config, ACTIONS)
  assert made.regularizer.kind == "l2_init" and made.augment == "random_shift"
  assert made.regularizer.frames_per_update == 16.0
