"""compute_cost.py: FLOPs of one update from XLA's cost analysis, and the params counts."""

import functools

import jax
import ml_collections
import pytest

from plasticity_rl import compute_cost
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import surgery
from plasticity_rl.agents import dqn

OBS_SHAPE = (44, 44, 4)
NUM_ACTIONS = 6
BATCH = 8


@functools.cache
def make_agent(width: float = 0.25, hidden: int = 32) -> dqn.DQNAgent:
  network = networks.QNetwork(networks.nature_cnn_specs(NUM_ACTIONS, width=width, hidden=hidden))
  opt = dqn.make_optimizer(ml_collections.ConfigDict({"optimizer": "adam_dopamine", "learning_rate": 1e-3}))
  return dqn.DQNAgent(network, opt, OBS_SHAPE, NUM_ACTIONS, target_update_period_updates=1000)


def inject(agent, state, seed, hidden=None):
  return surgery.inject(state, jax.random.key(seed), network=agent.network, optimizer=agent.optimizer,
                        obs_shape=agent.obs_shape, layers=("dense_0", "dense_1"), hidden=hidden)


def test_a_small_dense_network_matches_a_hand_count():
  b, h, a = 8, 32, 5
  obs_shape = (4, 4, 1)
  d = 16
  network = networks.QNetwork(specs=(networks.LayerSpec("head", "dense_0", "dense", h),
                                     networks.LayerSpec("head", "dense_1", "dense", a)))
  params = network.init(jax.random.key(0), obs_shape)
  # XLA's conventions: a convert and a divide per input element (uint8 → float, /255), a dot 2 per multiply-add,
  # the bias adds and the ReLU (a max) one per output element.
  expected = 2 * b * d + (2 * b * d * h + b * h + b * h) + (2 * b * h * a + b * a)
  assert compute_cost.forward_flops(network, params, b, obs_shape) == expected


def test_update_figures_are_ordered_and_the_loss_is_three_forward_passes():
  agent = make_agent()
  state = agent.init(jax.random.key(0))
  cost = compute_cost.update_cost(agent, state, BATCH)
  forward = compute_cost.forward_flops(agent.network, state.params, BATCH, OBS_SHAPE)
  # Online on obs, selector and target on next_obs; the TD error and the mean add a few FLOPs per sample.
  assert 3 * forward < cost.forward_flops < 3 * forward * 1.01
  assert cost.forward_flops < cost.forward_backward_flops < cost.update_flops
  # The optimizer step is a few FLOPs per trainable parameter, far below a batch's backward pass.
  assert cost.update_flops - cost.forward_backward_flops < 30 * cost.params_trainable
  assert cost.params_trainable == params_tree.count_trainable(state.params) and cost.params_frozen == 0
  assert cost.params_total == params_tree.count_params(state.params)


def test_flops_grow_with_width():
  costs = [compute_cost.update_cost(make_agent(width=w), make_agent(width=w).init(jax.random.key(0)), BATCH)
           for w in (0.25, 0.5)]
  for field in ("forward_flops", "forward_backward_flops", "update_flops", "params_trainable"):
    assert getattr(costs[1], field) > 1.5 * getattr(costs[0], field), field


def test_each_injection_adds_the_same_flops_and_growth_adds_more():
  agent = make_agent()
  state = agent.init(jax.random.key(0))
  costs = [compute_cost.update_cost(agent, state, BATCH)]
  for k in range(2):
    state = inject(agent, state, k + 1)
    costs.append(compute_cost.update_cost(agent, state, BATCH))
  steps = [b.update_flops - a.update_flops for a, b in zip(costs, costs[1:])]
  assert steps[0] > 0 and steps[1] == pytest.approx(steps[0], rel=1e-3)  # Two more heads' passes each time.
  assert [c.params_trainable for c in costs] == [costs[0].params_trainable] * 3
  assert costs[0].params_frozen < costs[1].params_frozen < costs[2].params_frozen
  grown = compute_cost.update_cost(agent, inject(agent, state, 3, hidden=128), BATCH)
  assert grown.update_flops - costs[2].update_flops > steps[1]  # A wider fresh head costs more than a same-width one.


def test_cached_per_structure():
  agent = make_agent()
  state = agent.init(jax.random.key(0))
  cost = compute_cost.update_cost(agent, state, BATCH)
  updated, _ = agent.update(state, {k: jax.numpy.zeros(v.shape, v.dtype)
                                    for k, v in compute_cost.batch_spec(OBS_SHAPE, BATCH).items()})
  assert compute_cost.update_cost(agent, updated, BATCH) is cost  # New values, the same structure: cached.
  assert compute_cost.update_cost(agent, inject(agent, state, 1), BATCH) is not cost
  assert compute_cost.update_cost(agent, state, 2 * BATCH).update_flops > cost.update_flops


def test_counter_sums_each_structures_updates_at_its_own_cost():
  agent = make_agent()
  state = agent.init(jax.random.key(0))
  counter = compute_cost.FlopsCounter(BATCH)
  plain = counter.advance(agent, state, 10)
  assert counter.train_flops == 10 * plain
  assert counter.advance(agent, state, 25) == plain and counter.train_flops == 25 * plain
  injected = inject(agent, state, 1)
  after = counter.advance(agent, injected, 30)  # The 5 updates since the last row ran on the injected network.
  assert after > plain and counter.train_flops == 25 * plain + 5 * after


@pytest.mark.slow
def test_a_runs_train_rows_and_summary_carry_its_update_and_training_flops(tmp_path, fake_envpool):
  from plasticity_rl import config as config_lib  # pylint: disable=g-import-not-at-top
  from plasticity_rl import recorder  # pylint: disable=g-import-not-at-top
  from plasticity_rl import testing  # pylint: disable=g-import-not-at-top
  from plasticity_rl import train  # pylint: disable=g-import-not-at-top
  from plasticity_rl import workdir  # pylint: disable=g-import-not-at-top
  config = testing.configs_module("dqn").get_config("smoke")
  config.injection.frames = (2_500,)  # Between two log rows: the interval's updates at both structures' costs.
  config.log.learning_curve = False
  config_lib.validate(config)
  workdir.prepare_workdir(str(tmp_path), config)
  summary = train.train(config, str(tmp_path))
  rows = recorder.read_metrics(str(tmp_path), "train")
  before, after = rows[1]["update_flops"], rows[-1]["update_flops"]
  assert 0 < before < after and {r["update_flops"] for r in rows} == {before, after}
  updates_at = {r["frames"]: r["updates"] for r in rows}
  injected = next(r for r in recorder.read_metrics(str(tmp_path), "event") if r["name"] == "injection")
  assert any(a["frames"] < injected["frames"] < b["frames"] for a, b in zip(rows, rows[1:]))
  at_injection = testing.budget_updates(_with_total(config, injected["frames"]))  # Ran before the surgery.
  expected = at_injection * before + (updates_at[config.total_frames] - at_injection) * after
  assert rows[-1]["train_flops"] == pytest.approx(expected, rel=1e-12) and summary["train_flops"] == rows[-1][
      "train_flops"]


def _with_total(config, total_frames):
  c = config.copy_and_resolve_references()
  c.total_frames = total_frames
  return c
