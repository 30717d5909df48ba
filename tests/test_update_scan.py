"""The K updates of a loop iteration (ReplayBuffer.sample_many's one [K, B] draw, one transfer, then
DQNAgent.update_at per slice, the state donated) against K `sample` draws and K calls of `update`: the same
states, infos and draws, bit for bit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_rl import expansion
from plasticity_rl import replay as replay_lib
from plasticity_rl import testing
from plasticity_rl import train
from plasticity_rl.agents import dqn
from plasticity_rl.interventions import expansion_review

OBS_SHAPE = (36, 36, 4)  # The Nature CNN's layer sequence on a small input: quick compiles.
NUM_ACTIONS = 4


def _config(preset: str, arg: str | None = None, **changes):
  config = testing.configs_module(preset).get_config(arg)
  config.network.width = 0.25
  config.learner.target_update_period_updates = 2  # The hard target copy falls inside the K updates.
  for field, value in changes.items():
    *path, name = field.split(".")
    node = config
    for part in path:
      node = node[part]
    node[name] = value
  return config


CASES = {
    # RMSProp (DQN Zoo's), dqn_zoo loss, Double DQN.
    "dqn": lambda: _config("dqn", "cpu"),
    # Adam, Huber, DrQ's augmentation (the state's key splits every update).
    "drq_eps": lambda: _config("drq_eps"),
    # Adam, MSE, Q-learning's max, layer norm, the L2-init penalty (a coefficient read from num_updates).
    "dopamine_l2_init": lambda: _config("dopamine_dqn", **{"network.layer_norm": True, "regularizer.kind": "l2_init",
                                                           "regularizer.coef": 1e-2}),
    # Expansion's unit masks (the loss sees active units only) on the dqn case's agent.
    "masks": lambda: _config("dqn", "cpu"),
}


def _arrays(tree):
  return [np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
          for x in jax.tree.leaves(tree)]


def _assert_identical(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(_arrays(a), _arrays(b), strict=True):
    assert x.dtype == y.dtype and np.array_equal(x, y), np.max(np.abs(x.astype(np.float64) - y))


@functools.cache
def _agent(case: str) -> dqn.DQNAgent:
  return dqn.make_agent(CASES[case](), NUM_ACTIONS, obs_shape=OBS_SHAPE)


def _start(case: str) -> dqn.TrainState:
  agent = _agent(case)
  state = agent.init(jax.random.key(0))
  if case == "masks":
    state = expansion.start(state, network=agent.network, optimizer=agent.optimizer, initial_fraction=0.5)
  return state


def _one_by_one(agent, state, batches, info_sum):
  """What the loop did before: `update` per batch, its info added with train.accumulate."""
  for batch in batches:
    state, info = agent.update(state, batch)
    info_sum = info if info_sum is None else train.accumulate(info_sum, info)
  return state, info_sum


def _stacked(batches):
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_update_at_over_one_transfer_is_k_updates_bit_for_bit(case):
  """The loop's K updates (one [K, B] transfer, `update_at` per slice) against `update` per batch."""
  agent, k = _agent(case), 3
  batches = [testing.random_batch(i, 8, OBS_SHAPE, NUM_ACTIONS) for i in range(k + 1)]
  # A first update makes the optimizer moments non-zero.
  warm, _ = agent.update(_start(case), batches[0])
  stacked = jax.device_put(_stacked(batches[1:]))
  want = _one_by_one(agent, warm, batches[1:], None)
  state, info_sum = dqn.owned(warm), None
  for index in range(k):
    state, info = agent.update_at(state, stacked, index)
    info_sum = info if info_sum is None else train.accumulate(info_sum, info)
  _assert_identical(want, (state, info_sum))
  assert int(state.num_updates) == 1 + k


def test_update_at_donates_the_state_and_owned_makes_it_safe():
  agent = _agent("dqn")
  state = _start("dqn")
  batches = jax.device_put(_stacked([testing.random_batch(i, 8, OBS_SHAPE, NUM_ACTIONS) for i in range(2)]))
  shared = state.replace(target_params=state.params)  # One buffer in two places, as an intervention may leave it.
  safe = dqn.owned(shared)
  new, _ = agent.update_at(safe, batches, 0)
  jax.block_until_ready(new)
  # The donated buffers now hold the result (JAX honours donation on CPU too); the originals are untouched.
  assert all(x.is_deleted() for x in jax.tree.leaves(safe))
  assert all(not x.is_deleted() for x in jax.tree.leaves(shared))
  assert not any(x.is_deleted() for x in jax.tree.leaves(batches))  # The batches serve the next slices.
  new, _ = agent.update_at(new, batches, 1)  # The result is what the next call donates.
  assert int(new.num_updates) == 2


def _filled_replay(num_envs: int = 3, steps: int = 60, last_every: int = 4, seed: int = 7):
  """Short episodes (many `last` start indices, so rejection rounds and the exact fallback both happen)."""
  replay = replay_lib.ReplayBuffer(40 * num_envs, num_envs, frame_shape=(6, 6), n_step=3, seed=seed)
  rng = np.random.default_rng(seed)
  for t in range(steps):
    last = np.full(num_envs, t % last_every == last_every - 1)
    first = np.full(num_envs, t % last_every == 0)
    replay.add(rng.integers(0, 256, (num_envs, 6, 6), dtype=np.uint8), rng.integers(0, 4, num_envs),
               rng.normal(size=num_envs), rng.random(num_envs) < 0.2, last, first)
  return replay


@pytest.mark.parametrize("last_every", [2, 4, 1_000])
@pytest.mark.parametrize("k,batch_size", [(1, 5), (3, 7), (4, 32)])
def test_sample_many_draws_what_k_samples_draw(last_every, k, batch_size):
  one, many = _filled_replay(last_every=last_every), _filled_replay(last_every=last_every)
  want = _stacked([one.sample(batch_size) for _ in range(k)])
  got = many.sample_many(k, batch_size)
  assert sorted(got) == sorted(want)
  for key in want:
    assert got[key].dtype == want[key].dtype and np.array_equal(got[key], want[key]), key
  assert one.state_dict()["rng_state"].tobytes() == many.state_dict()["rng_state"].tobytes()
  assert np.array_equal(one.sample(3)["obs"], many.sample(3)["obs"])  # The generators go on alike.


def test_the_review_sampler_draws_what_k_review_samples_draw():
  review_config = testing.configs_module("expansion").get_config("smoke")
  one_review, many_review = expansion.Review.from_config(review_config), expansion.Review.from_config(review_config)
  assert one_review is not None
  one_review.remaining = many_review.remaining = 2  # A review running: its first 2 batches from the oldest part.
  one, many = _filled_replay(), _filled_replay()
  want = _stacked([one_review.sample(one, 5) for _ in range(3)])
  got = expansion_review.ExpansionReview.from_config(review_config).sample(many_review, many, 3, 5)
  for key in want:
    assert np.array_equal(got[key], want[key]), key
  assert one_review.state_dict() == many_review.state_dict()


def test_update_name_keeps_the_single_update_name():
  assert train.update_name(1) == "the update"
  assert train.update_name(2) == "the update ×2"
