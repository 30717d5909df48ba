"""Tests for the plasticity_rl.interventions package: the no-op base, the registry, hooks in the update."""

import dataclasses

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
from plasticity_rl import regularizers
from plasticity_rl import testing
from plasticity_rl.agents import dqn
from plasticity_rl.interventions import augment
from plasticity_rl.interventions import base

OBS, ACTIONS = (2, 2, 1), 3


def _agent(**kwargs) -> dqn.DQNAgent:
  network = networks.QNetwork(specs=(networks.LayerSpec("head", "dense_0", "dense", 5),
                                     networks.LayerSpec("head", "dense_1", "dense", ACTIONS)))
  return dqn.DQNAgent(network=network, optimizer=optax.sgd(0.1), obs_shape=OBS, num_actions=ACTIONS,
                      target_update_period_updates=2, **kwargs)


def _data(x):
  return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def _equal(a, b) -> bool:
  """Same structure, every leaf bit for bit (PRNG keys by their data)."""
  return jax.tree.structure(a) == jax.tree.structure(b) and all(
      np.array_equal(_data(x), _data(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@dataclasses.dataclass(frozen=True)
class _NoOp(base.Hooks):
  """Overrides nothing."""


@dataclasses.dataclass(frozen=True)
class _Toy(base.Hooks):
  """A loss term, a per-update step and a scheduled surgery, as a new intervention module would add them."""

  section = "_toy"
  coef: float = 0.5

  @classmethod
  def config_section(cls):
    return ml_collections.ConfigDict({"enabled": False, "coef": 0.5})

  @classmethod
  def from_config(cls, config):
    return cls(coef=config._toy.coef) if "_toy" in config and config._toy.enabled else None

  def loss_term(self, trainable, state, batch):
    term = self.coef * sum(jnp.sum(x) for x in jax.tree.leaves(trainable))
    return term, {"toy_term": term}

  def after_update(self, state, info):
    return state, {**info, "toy_updates": state.num_updates}

  def surgeries(self, config, agent):
    return [(1_000, lambda state, rng, batch: state.replace(num_updates=state.num_updates + 100))]


def test_base_hooks_are_no_ops():
  hook, state = _NoOp(), object()
  assert hook.init_state(state) is state
  assert hook.transform_batch(state, "batch") == (state, "batch")
  assert hook.loss_term("trainable", state, "batch") == (None, {})
  assert hook.after_update(state, "info") == (state, "info")
  assert hook.acting_params(state, "params") == "params"
  assert hook.surgeries(None, None) == [] and hook.init_loop_state() is None
  assert hook.on_metrics("loop", 8, {"x": 1.0}, None) == ("loop", [])
  assert hook.on_surgery("loop", "reset", state, None, None) == ("loop", {}, [])
  assert hook.loop_state_from_dict(hook.loop_state_to_dict({"a": 1})) == {"a": 1} and hook.checkpoint_key is None
  assert hook.replay_ratio("loop", 8, 0.25) == 0.25
  assert hook.sample("loop", None, 2, 32) is None
  assert base.Hooks.from_config(config_lib.base_config()) is None and base.Hooks.config_section() is None


def test_an_agent_with_no_op_hooks_updates_as_the_plain_agent():
  plain, noop = _agent(), _agent(hooks=(_NoOp(),))
  a, b = plain.init(jax.random.key(0)), noop.init(jax.random.key(0))
  assert _equal(a, b)
  for i in range(3):
    batch = testing.random_batch(i, 8, OBS, ACTIONS)
    (a, info_a), (b, info_b) = plain.update(a, batch), noop.update(b, batch)
    assert _equal(a, b) and _equal(info_a, info_b)


def test_registry_finds_interventions_by_name_and_the_config_owns_their_sections():
  assert {"regularizer", "augment"} <= set(interventions.HOOKS)
  assert interventions.get("regularizer") is regularizers.Regularizer
  with pytest.raises(ValueError, match="unknown intervention 'nope'"):
    interventions.get("nope")
  interventions.register("_toy")(_Toy)
  try:
    assert interventions.get("_toy") is _Toy and _Toy.name == "_toy"
    assert config_lib.base_config()["_toy"].enabled is False  # Its section, without an edit of config.py.
    with pytest.raises(ValueError, match="registered already"):
      interventions.register("_toy")(_NoOp)
  finally:
    del interventions.HOOKS["_toy"]


def test_a_new_interventions_hooks_run_in_the_update_and_the_schedule():
  interventions.register("_toy")(_Toy)
  try:
    c = config_lib.base_config()
    c.total_frames = 10_000
    assert interventions.learner_hooks(c) == ()  # Off by default.
    c._toy.enabled = True
    assert interventions.learner_hooks(c) == (_Toy(coef=0.5),)  # Found by name from its section.
    agent = _agent(hooks=interventions.learner_hooks(c))
    state = agent.init(jax.random.key(1))
    batch = testing.random_batch(0, 8, OBS, ACTIONS)
    new, info = agent.update(state, batch)
    plain, plain_info = _agent().update(state, batch)
    assert float(info["toy_term"]) == pytest.approx(0.5 * sum(float(jnp.sum(x)) for x in
                                                             jax.tree.leaves(params_tree.trainable(state.params))))
    assert int(info["toy_updates"]) == 1 and float(info["loss"]) == float(plain_info["loss"])  # TD loss logged.
    # The term's gradient (0.5 on every entry) moved every parameter by sgd's 0.1 × 0.5 more than the plain step.
    for p_new, p_plain in zip(jax.tree.leaves(params_tree.trainable(new.params)),
                              jax.tree.leaves(params_tree.trainable(plain.params))):
      np.testing.assert_allclose(p_plain - p_new, 0.05, rtol=1e-4)
    schedule = interventions.make_schedule(c, agent)
    assert [(s.name, s.frames) for s in schedule.pending] == [("_toy", 1_000)]
  finally:
    del interventions.HOOKS["_toy"]


def test_the_old_agent_keywords_set_and_read_the_hooks():
  reg = regularizers.Regularizer(kind="l2", coef=0.1)
  agent = _agent(regularizer=reg, augment="random_shift")
  assert agent.hooks == (reg, augment.Augment("random_shift"))
  assert agent.regularizer is reg and agent.augment == "random_shift"
  assert dataclasses.replace(agent, regularizer=None).hooks == (augment.Augment("random_shift"),)
  assert dataclasses.replace(agent).hooks == agent.hooks and hash(dataclasses.replace(agent)) == hash(agent)
  plain = _agent()
  assert plain.hooks == () and plain.regularizer is None and plain.augment == "none"
  assert _agent(augment="none").hooks == ()


def test_make_agent_takes_the_configs_hooks():
  c = config_lib.base_config()
  assert dqn.make_agent(c, ACTIONS).hooks == ()
  c.regularizer.kind, c.learner.augment = "l2_init", "random_shift"
  hooks = dqn.make_agent(c, ACTIONS).hooks
  assert [type(h) for h in hooks] == [augment.Augment, regularizers.Regularizer]
