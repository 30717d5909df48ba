"""Tests for plasticity_rl/interventions/hare_tortoise.py: the tortoise's EMA, the hare's resets, who acts, off."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from plasticity_rl import checkpoint
from plasticity_rl import config as config_lib
from plasticity_rl import interventions
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import testing
from plasticity_rl.agents import dqn
from plasticity_rl.interventions import hare_tortoise as ht

OBS, ACTIONS = (2, 2, 1), 3


def _agent(*hooks) -> dqn.DQNAgent:
  network = networks.QNetwork(specs=(networks.LayerSpec("head", "dense_0", "dense", 5),
                                     networks.LayerSpec("head", "dense_1", "dense", ACTIONS)))
  return dqn.DQNAgent(network=network, optimizer=optax.adam(1e-2), obs_shape=OBS, num_actions=ACTIONS,
                      target_update_period_updates=2, hooks=hooks)


def _data(x):
  return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def _equal(a, b) -> bool:
  """Same structure, every leaf bit for bit (PRNG keys by their data)."""
  return jax.tree.structure(a) == jax.tree.structure(b) and all(
      np.array_equal(_data(x), _data(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _config(**fields):
  c = config_lib.base_config()
  c.total_frames = 10_000
  c.hare_tortoise.update(enabled=True, **fields)
  return c


def _updates(agent, state, n=3):
  for i in range(n):
    state, _ = agent.update(state, testing.random_batch(i, 8, OBS, ACTIONS))
  return state


def test_registered_by_name_with_its_config_section():
  assert interventions.get("hare_tortoise") is ht.HareTortoise
  assert "hare_tortoise" in interventions.MODULES
  c = config_lib.base_config()
  assert not c.hare_tortoise.enabled and c.hare_tortoise.ema == 0.999  # The section comes from the module.
  assert ht.HareTortoise.from_config(c) is None
  hook = ht.HareTortoise.from_config(_config(period_frames=4_000, frames=(1_000,)))
  assert hook == ht.HareTortoise(ema=0.999, frames=(1_000, 4_000, 8_000), act_with="hare")
  assert any(isinstance(h, ht.HareTortoise) for h in dqn.make_agent(_config(), ACTIONS).hooks)


def test_tortoise_starts_as_the_hare_and_follows_its_ema_every_update():
  ema = 0.9
  agent = _agent(ht.HareTortoise(ema=ema))
  state = agent.init(jax.random.key(0))
  assert _equal(ht.tortoise(state), params_tree.trainable(state.params))
  expected = ht.tortoise(state)
  for i in range(3):
    state, _ = agent.update(state, testing.random_batch(i, 8, OBS, ACTIONS))
    expected = jax.tree.map(lambda t, h: ema * t + (1 - ema) * h, expected, params_tree.trainable(state.params))
    for got, want in zip(jax.tree.leaves(ht.tortoise(state)), jax.tree.leaves(expected)):
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  assert not _equal(ht.tortoise(state), params_tree.trainable(state.params))  # Slower than the hare.


def test_the_hare_trains_exactly_as_without_the_intervention():
  """The tortoise only reads the hare: params, target, optimizer state and info are bit for bit the plain ones."""
  plain, with_ht = _agent(), _agent(ht.HareTortoise(ema=0.99))
  a, b = plain.init(jax.random.key(1)), with_ht.init(jax.random.key(1))
  for i in range(4):
    batch = testing.random_batch(i, 8, OBS, ACTIONS)
    a, info_a = plain.update(a, batch)
    b, info_b = with_ht.update(b, batch)
    assert _equal(info_a, info_b)
  for field in ("params", "target_params", "opt_state", "num_updates", "rng", "init_params"):
    assert _equal(getattr(a, field), getattr(b, field)), field
  assert a.intervention_state is None and b.intervention_state is not None


def test_scheduled_reset_sets_the_hare_to_the_tortoise_and_keeps_the_rest():
  c = _config(period_frames=2_500, ema=0.5)
  agent = _agent(*interventions.learner_hooks(c))
  schedule = interventions.make_schedule(c, agent)
  resets = [s for s in schedule.pending if s.name == "hare_tortoise"]
  assert [s.frames for s in resets] == [2_500, 5_000, 7_500, 10_000]
  state = _updates(agent, agent.init(jax.random.key(2)))
  after = resets[0].apply(state, jax.random.key(3), None)
  assert _equal(params_tree.trainable(after.params), ht.tortoise(state))
  for field in ("target_params", "opt_state", "num_updates", "intervention_state", "init_params"):
    assert _equal(getattr(after, field), getattr(state, field)), field
  after, _ = agent.update(dqn.owned(after), testing.random_batch(9, 8, OBS, ACTIONS))  # Trains on from there.


def test_acting_params_are_the_hare_by_default_or_the_tortoise():
  hare_agent, tortoise_agent = _agent(ht.HareTortoise(ema=0.5)), _agent(ht.HareTortoise(ema=0.5, act_with="tortoise"))
  state = _updates(hare_agent, hare_agent.init(jax.random.key(4)))
  assert hare_agent.acting_params(state) is state.params
  acting = tortoise_agent.acting_params(state)
  assert _equal(params_tree.trainable(acting), ht.tortoise(state))
  assert _equal(params_tree.frozen(acting), params_tree.frozen(state.params))
  assert _agent().acting_params(state) is state.params  # No intervention: the online params.


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_the_seeds_learner_acts_with_the_acting_params(batching):
  """The loop's learner acts with `acting_params`: with act_with="tortoise", the tortoise's greedy actions."""
  from plasticity_rl import learner as learner_lib  # pylint: disable=g-import-not-at-top
  tortoise_agent = _agent(ht.HareTortoise(ema=0.5, act_with="tortoise"))
  states = [_updates(tortoise_agent, tortoise_agent.init(jax.random.key(s))) for s in (4, 5)]
  obs = np.stack([testing.random_batch(s, 16, OBS, ACTIONS)["obs"] for s in (4, 5)])
  seeds = learner_lib.SeedLearner(tortoise_agent, states, [jax.random.key(0)] * 2, batching)
  for i, state in enumerate(states):
    greedy = lambda params, o=obs[i]: np.asarray(jnp.argmax(tortoise_agent.network.apply(params, o), axis=-1))
    np.testing.assert_array_equal(seeds.act(obs, 0.0)[i], greedy(tortoise_agent.acting_params(state)))
  assert any(not np.array_equal(greedy(s.params, obs[i]), greedy(tortoise_agent.acting_params(s), obs[i]))
             for i, s in enumerate(states))  # The hare would act otherwise.


def test_off_is_the_plain_agent():
  c = config_lib.base_config()
  assert not any(isinstance(h, ht.HareTortoise) for h in dqn.make_agent(c, ACTIONS).hooks)
  agent = _agent(*interventions.learner_hooks(c))
  assert agent.hooks == ()
  assert agent.init(jax.random.key(0)).intervention_state is None
  assert not [s for s in interventions.make_schedule(c, agent).pending if s.name == "hare_tortoise"]


@pytest.mark.parametrize("fields, message", [
    ({"ema": 1.0}, "hare_tortoise.ema"),
    ({"act_with": "both"}, "hare_tortoise.act_with"),
    ({"period_frames": -1}, "hare_tortoise.period_frames"),
    ({"frames": (20_000,)}, "hare_tortoise.frames"),
])
def test_config_errors_name_the_field(fields, message):
  with pytest.raises(ValueError, match=message):
    ht.HareTortoise.validate(_config(**fields))


def test_config_refuses_injection_expansion_and_fields_set_while_off():
  c = _config()
  c.injection.frames = (5_000,)
  with pytest.raises(ValueError, match="hare_tortoise.enabled: not combined with plasticity injection"):
    ht.HareTortoise.validate(c)
  c = _config()
  c.expansion.enabled = True
  with pytest.raises(ValueError, match="hare_tortoise.enabled: not combined with expansion"):
    ht.HareTortoise.validate(c)
  c = _config()
  c.reincarnate.path = "/somewhere"
  with pytest.raises(ValueError, match="hare_tortoise.enabled: not combined with reincarnation"):
    ht.HareTortoise.validate(c)
  c = config_lib.base_config()
  c.hare_tortoise.ema = 0.99
  with pytest.raises(config_lib.ConfigError, match="config.hare_tortoise.ema: .* while hare_tortoise.enabled is False"):
    config_lib.refuse_inactive(c)


def test_the_tortoise_is_checkpointed_with_the_state(tmp_path):
  agent = _agent(ht.HareTortoise(ema=0.5))
  state = _updates(agent, agent.init(jax.random.key(5)))
  checkpointer = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  checkpointer.save(8, state=state, keys={"act": jax.random.key(7)}, loop={"frames": 8})
  checkpointer.wait()
  checkpointer.close()
  restored = checkpoint.Checkpointer(str(tmp_path)).restore(optimizer=agent.optimizer)
  fresh = agent.init(jax.random.key(6))
  assert _equal(restored.train_state(fresh, agent.optimizer).intervention_state, state.intervention_state)
  assert _equal(restored.train_state(fresh, agent.optimizer, "params").intervention_state,
                state.intervention_state)
