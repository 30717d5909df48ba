"""Plasticity metrics (issue 6): each metric on a hand-built case, then on real (small) networks."""

import functools
import json
import math
import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from plasticity_rl import metrics
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import plot_metrics
from plasticity_rl import surgery
from plasticity_rl import testing
from plasticity_rl.agents import dqn

# conv_2 outputs 2×2 maps (a conv unit is still a map over batch and space); 84×84 networks' metrics rows are
# pinned by tests/test_golden.py (every plasticity row of its runs).
OBS_SHAPE = (44, 44, 4)
NUM_ACTIONS = 6
PROBE = 32


# -- building blocks on hand-built cases --------------------------------------------


def test_dormant_scores_divide_by_layer_mean():
  h = jnp.array([[1.0, 2.0, 3.0, 0.0], [-1.0, 2.0, 3.0, 0.0]])  # E|h| = 1, 2, 3, 0; layer mean 1.5.
  np.testing.assert_allclose(metrics.dormant_scores(h), [2 / 3, 4 / 3, 2.0, 0.0], rtol=1e-6)
  np.testing.assert_array_equal(metrics.dormant_mask(h, 0.0), [False, False, False, True])
  np.testing.assert_array_equal(metrics.dormant_mask(h, 0.7), [True, False, False, True])


@pytest.mark.parametrize("k", [0, 1, 5, 16])
def test_dense_layer_with_k_dead_units(k):
  n = 16
  h = np.abs(np.random.default_rng(k).normal(size=(64, n))) + 0.1
  h[:, :k] = 0.0
  for tau in (0.0, 0.025, 0.1):
    assert float(metrics.dormant_fraction(jnp.asarray(h), tau)) == pytest.approx(k / n)


def test_conv_feature_map_is_one_unit_over_batch_and_space():
  h = np.ones((4, 5, 5, 3), np.float32)
  h[..., 0] = 0.0  # Dead map.
  h[..., 1] = 0.0
  h[0, 2, 2, 1] = 1.0  # Alive at one position of one example: E|h| = 1/100 of the others'.
  scores = metrics.dormant_scores(jnp.asarray(h))
  mean = (0 + 0.01 + 1) / 3
  np.testing.assert_allclose(scores, [0.0, 0.01 / mean, 1 / mean], rtol=1e-5)
  assert float(metrics.dormant_fraction(jnp.asarray(h), 0.0)) == pytest.approx(1 / 3)
  assert float(metrics.dormant_fraction(jnp.asarray(h), 0.025)) == pytest.approx(1 / 3)  # 0.0297 > 0.025.
  assert float(metrics.dormant_fraction(jnp.asarray(h), 0.1)) == pytest.approx(2 / 3)


def test_all_dead_layer_is_all_dormant():
  assert float(metrics.dormant_fraction(jnp.zeros((8, 10)), 0.0)) == 1.0


def test_fraction_active():
  h = jnp.array([[0.0, 1.0, 2.0, -1.0], [0.0, 0.0, 3.0, 0.5]])
  assert float(metrics.fraction_active(h)) == pytest.approx(4 / 8)
  conv = np.zeros((2, 3, 3, 2), np.float32)
  conv[0, :, :, 0] = 1.0
  assert float(metrics.fraction_active(jnp.asarray(conv))) == pytest.approx(9 / 36)


def matrix_with_singular_values(sv, n: int, d: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  u, _ = np.linalg.qr(rng.normal(size=(n, len(sv))))
  v, _ = np.linalg.qr(rng.normal(size=(d, len(sv))))
  return (u * np.asarray(sv)) @ v.T


def test_srank_on_known_singular_values():
  sv = jnp.array([0.5, 0.3, 0.15, 0.05])  # Cumulative share 0.5, 0.8, 0.95, 1.0.
  assert int(metrics.srank(sv, 0.01)) == 4
  assert int(metrics.srank(sv, 0.1)) == 3
  assert int(metrics.srank(sv, 0.25)) == 2
  assert int(metrics.srank(jnp.array([0.05, 0.5, 0.15, 0.3]), 0.1)) == 3  # Order does not matter.
  assert int(metrics.srank(jnp.array([1.0, 1e-9, 0.0]), 0.01)) == 1
  assert int(metrics.srank(jnp.zeros(5))) == 0


def test_effective_rank_on_known_singular_values():
  assert float(metrics.effective_rank(jnp.ones(7))) == pytest.approx(7.0, rel=1e-5)
  assert float(metrics.effective_rank(jnp.array([3.0, 0.0, 0.0]))) == pytest.approx(1.0)
  # p = (1/2, 1/4, 1/4): H = 1.5 ln 2, erank = 2^1.5.
  assert float(metrics.effective_rank(jnp.array([2.0, 1.0, 1.0]))) == pytest.approx(2**1.5, rel=1e-5)
  assert float(metrics.effective_rank(jnp.zeros(4))) == 0.0


def test_feature_rank_and_srank_of_a_matrix_of_known_rank():
  n, d = 100, 20
  sv = [50.0, 20.0, 10.0, 5.0, 1.5]  # Rank 5; σ/√n = 5, 2, 1, 0.5, 0.15.
  phi = jnp.asarray(matrix_with_singular_values(sv, n, d), jnp.float32)
  np.testing.assert_allclose(metrics.singular_values(phi)[:5], sv, rtol=1e-4)
  assert int(metrics.feature_rank(phi, 0.01, normalize=False)) == 5
  assert int(metrics.feature_rank(phi, 0.01, normalize=True)) == 5
  assert int(metrics.feature_rank(phi, 0.2, normalize=True)) == 4  # 0.15 ≤ 0.2.
  assert int(metrics.feature_rank(phi, 2.0, normalize=False)) == 4  # 1.5 ≤ 2.
  # srank: cumulative shares 0.578, 0.809, 0.925, 0.983, 1 -> δ = 0.01 needs all 5; δ = 0.05 needs 4.
  assert int(metrics.srank(metrics.singular_values(phi), 0.01)) == 5
  assert int(metrics.srank(metrics.singular_values(phi), 0.05)) == 4
  ranks = metrics.rank_metrics(phi)
  assert {k: int(v) for k, v in ranks.items() if k != "effective_rank"} == {
      "srank": 5, "feature_rank": 5, "feature_rank_unnormalized": 5}
  p = np.array(sv) / sum(sv)
  assert float(ranks["effective_rank"]) == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-4)


def test_sqrt_n_normalization_changes_the_count():
  phi = jnp.asarray(matrix_with_singular_values([10.0, 0.5], 400, 8), jnp.float32)  # σ/√n = 0.5, 0.025.
  assert int(metrics.feature_rank(phi, 0.03, normalize=True)) == 1
  assert int(metrics.feature_rank(phi, 0.03, normalize=False)) == 2


def test_feature_rank_is_lyle_et_al_normalized_by_sqrt_n():
  """Issue 12: `feature_rank` is Lyle et al. 2022's #{σ(Φ/√n) > ε}; the count on Φ itself is named apart."""
  phi = jnp.asarray(matrix_with_singular_values([10.0, 4.0, 2.0], 400, 8), jnp.float32)  # σ/√n = 0.5, 0.2, 0.1.
  ranks = metrics.rank_metrics(phi, eps=3.0)
  assert int(ranks["feature_rank"]) == 0  # No σ/√n above 3.
  assert int(ranks["feature_rank_unnormalized"]) == 2  # σ = 10, 4 above 3.
  assert "feature_rank_sqrt_n" not in ranks and set(ranks) == set(metrics.RANK_METRICS)


def test_wide_features_give_the_same_singular_values_either_way():
  x = np.maximum(np.random.default_rng(1).normal(size=(8, 64)), 0).astype(np.float32)  # d ≥ 4n: Φᵀ is used.
  np.testing.assert_allclose(metrics.singular_values(jnp.asarray(x)),
                             np.linalg.svd(x.astype(np.float64), compute_uv=False), rtol=1e-4, atol=1e-5)


def test_active_elements_weighs_layers_by_their_elements():
  conv = np.zeros((2, 3, 3, 2), np.float32)  # 36 elements, 9 active.
  conv[0, :, :, 0] = 1.0
  dense = np.array([[1.0, 0.0], [1.0, 1.0]], np.float32)  # 4 elements, 3 active.
  counts = [metrics.active_elements(jnp.asarray(a)) for a in (conv, dense)]
  assert [(float(c), n) for c, n in counts] == [(9.0, 36), (3.0, 4)]
  assert sum(c for c, _ in counts) / sum(n for _, n in counts) == pytest.approx(12 / 40)


def test_mean_abs_counts_every_element_biases_included():
  tree = {"linear": {"kernel": jnp.full((2, 3), -1.0), "bias": jnp.array([4.0, 0.0, 2.0])}}
  assert float(metrics.mean_abs(tree)) == pytest.approx((6 + 6) / 9)


@settings(max_examples=30, deadline=None)
# Zero or normal floats: XLA on CPU flushes float32 subnormals to zero, numpy does not.
@given(st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 100.0)), min_size=1, max_size=12))
def test_rank_bounds(values):
  sv = jnp.asarray(values + [0.0] * (12 - len(values)), jnp.float32)  # Zeros change neither; one shape, one compile.
  nonzero = int(np.sum(np.asarray(sv) > 0))
  s, e = int(metrics.srank(sv)), float(metrics.effective_rank(sv))
  assert (s == 0) == (nonzero == 0) and s <= nonzero
  assert e == 0.0 if nonzero == 0 else 1.0 - 1e-4 <= e <= nonzero + 1e-3


def test_updated_units():
  kernel = np.ones((3, 3, 2, 4), np.float32)
  kernel[..., 0] = 0.0
  kernel[..., 1] = 0.0
  bias = np.array([0.0, 1.0, 0.0, 0.0], np.float32)  # Unit 1 is updated through its bias.
  grads = {"linear": {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}}
  assert float(metrics.updated_units(grads)) == pytest.approx(3 / 4)


# -- on networks ------------------------------------------------------------------------


@functools.cache
def make_agent() -> dqn.DQNAgent:
  network = networks.QNetwork(networks.nature_cnn_specs(NUM_ACTIONS, width=0.25, hidden=32))
  opt = dqn.make_optimizer(ml_collections.ConfigDict({"optimizer": "adam_dopamine", "learning_rate": 1e-3}))
  return dqn.DQNAgent(network, opt, OBS_SHAPE, NUM_ACTIONS, target_update_period_updates=1000)


def random_batch(seed: int, size: int = PROBE) -> dict[str, np.ndarray]:
  return testing.random_batch(seed, size, OBS_SHAPE, NUM_ACTIONS)


@functools.cache
def trained() -> tuple[dqn.TrainState, dict]:
  """(state after 3 updates, θ₀)."""
  agent = make_agent()
  state = agent.init(jax.random.key(0))
  init = state.params
  for i in range(3):
    state, _ = agent.update(state, random_batch(100 + i, 16))
  return state, init


def inject(state, seed=1, hidden=None):
  agent = make_agent()
  return surgery.inject(state, jax.random.key(seed), network=agent.network, optimizer=agent.optimizer,
                        obs_shape=OBS_SHAPE, layers=("dense_0", "dense_1"), hidden=hidden)


def compute(state, init, seed=0, **kwargs):
  return metrics.to_host(metrics.plasticity_metrics(make_agent(), state, random_batch(seed), init, **kwargs))


HIDDEN = ("encoder/conv_0", "encoder/conv_1", "encoder/conv_2", "head/dense_0")


def test_plain_network_keys_are_documented_and_finite():
  state, init = trained()
  out = compute(state, init)
  assert sorted(out) == metrics.metric_names(make_agent())
  assert all(math.isfinite(v) for v in out.values())
  expected = {"srank", "feature_rank", "feature_rank_unnormalized", "effective_rank", "grad_norm", "loss",
              "q_mean", "q_max", "td_abs_mean", "td_abs_max", "param_norm", "weight_mean_abs",
              "distance_from_init", "dormant_0", "dormant_0.025", "dormant_0.1", "fau", "fau/encoder", "fau/head"}
  for name in HIDDEN:
    expected |= {f"dormant_0/{name}", f"dormant_0.025/{name}", f"dormant_0.1/{name}", f"fau/{name}",
                 f"effective_rank/{name}"}
  for name in ("encoder/conv_0", "encoder/conv_1", "encoder/conv_2", "head/dense_0", "head/dense_1"):
    expected |= {f"weight_mean_abs/{name}", f"weight_norm/{name}", f"distance_from_init/{name}",
                 f"updated_units/{name}"}
  assert set(out) == expected  # The output layer has no dormant/fau/rank entries.
  assert out["q_max"] >= out["q_mean"] and out["td_abs_max"] >= out["td_abs_mean"] > 0
  assert 0 < out["srank"] <= 32 and 1 <= out["effective_rank"] <= 32


def test_values_match_the_building_blocks():
  state, init = trained()
  agent, batch = make_agent(), random_batch(3)
  out = compute(state, init, seed=3)
  q, feats = agent.network.apply_with_features(state.params, batch["obs"])
  assert out["dormant_0.1/encoder/conv_1"] == pytest.approx(float(metrics.dormant_fraction(feats["conv_1"], 0.1)))
  assert out["fau/head/dense_0"] == pytest.approx(float(metrics.fraction_active(feats["dense_0"])))
  sv = np.linalg.svd(np.asarray(feats["dense_0"], np.float64), compute_uv=False)
  assert out["feature_rank"] == np.sum(sv / np.sqrt(PROBE) > 0.01)  # Lyle et al. 2022.
  assert out["feature_rank_unnormalized"] == np.sum(sv > 0.01)
  assert out["q_mean"] == pytest.approx(float(jnp.mean(q)), rel=1e-5)
  _, info = agent.loss(params_tree.trainable(state.params), state, {k: jnp.asarray(v) for k, v in batch.items()})
  assert out["td_abs_mean"] == pytest.approx(float(info["td_abs_mean"]), rel=1e-4)
  assert out["loss"] == pytest.approx(float(info["loss"]), rel=1e-4)
  dense_0 = [np.asarray(x) for x in jax.tree.leaves(params_tree.main_layers(state.params)["dense_0"])]
  assert out["weight_mean_abs/head/dense_0"] == pytest.approx(
      sum(np.abs(x).sum() for x in dense_0) / sum(x.size for x in dense_0), rel=1e-5)  # Kernel and bias.
  diff = jax.tree.map(jnp.subtract, params_tree.trainable(state.params), params_tree.trainable(init))
  assert out["distance_from_init"] == pytest.approx(float(metrics.tree_norm(diff)), rel=1e-4)


def test_fau_counts_activation_elements_per_module():
  """Issue 12: Ma et al.'s FAU of a module is Σ active elements / Σ elements over its hidden layers (a conv
  layer weighs B·H·W·C), not a mean of the layers' FAUs weighted by units."""
  state, init = trained()
  agent, batch = make_agent(), random_batch(3)
  out = compute(state, init, seed=3)
  _, feats = agent.network.apply_with_features(state.params, batch["obs"])
  feats = {k: np.asarray(v) for k, v in feats.items()}
  fau = lambda names: sum(np.sum(feats[n] > 0) for n in names) / sum(feats[n].size for n in names)
  encoder = ("conv_0", "conv_1", "conv_2")
  assert out["fau/encoder"] == pytest.approx(fau(encoder), rel=1e-5)
  assert out["fau/head"] == pytest.approx(fau(("dense_0",)), rel=1e-5) == out["fau/head/dense_0"]
  assert out["fau"] == pytest.approx(fau(encoder + ("dense_0",)), rel=1e-5)
  by_units = sum(out[f"fau/{k}"] * feats[k.split("/")[1]].shape[-1] for k in HIDDEN) / sum(
      feats[k.split("/")[1]].shape[-1] for k in HIDDEN)
  assert abs(out["fau"] - by_units) > 1e-3  # The old, unit-weighted aggregate is another number.


def test_effective_rank_of_every_hidden_layer():
  state, init = trained()
  agent, batch = make_agent(), random_batch(3)
  out = compute(state, init, seed=3)
  _, feats = agent.network.apply_with_features(state.params, batch["obs"])
  for key in HIDDEN:
    phi = np.asarray(feats[key.split("/")[1]], np.float64).reshape(PROBE, -1)
    sv = np.linalg.svd(phi, compute_uv=False)
    p = sv[sv > 0] / sv.sum()
    assert out[f"effective_rank/{key}"] == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-3), key
  assert out["effective_rank/head/dense_0"] == pytest.approx(out["effective_rank"], rel=1e-5)  # Penultimate.


def test_weight_mean_abs_is_network_wide_with_biases():
  state, init = trained()
  dense_1 = params_tree.main_layers(state.params)["dense_1"]
  bias = np.asarray(dense_1["linear"]["bias"]) + 100.0  # Biases count: the mean moves.
  params = params_tree.replace_trainable(state.params, {"dense_1": {"linear": {**dense_1["linear"], "bias": bias}}})
  out = compute(state.replace(params=params), init)
  leaves = [np.asarray(x) for x in jax.tree.leaves(params_tree.trainable(params))]
  assert out["weight_mean_abs"] == pytest.approx(
      sum(np.abs(x).sum() for x in leaves) / sum(x.size for x in leaves), rel=1e-5)
  assert out["weight_mean_abs"] > 100.0 * NUM_ACTIONS / sum(x.size for x in leaves)


def test_updated_units_are_measured_on_a_training_batch():
  """Issue 12: updated units on a training batch — the batch passed as `train_batch`, else the first
  `train_batch_size` probe transitions — not on the whole (larger) probe."""
  state, init = trained()
  agent = make_agent()
  probe = random_batch(11, 64)
  probe["action"][:32] = 0  # The first 32 (a learner batch): one action; the rest: all actions.
  probe["action"][32:] = np.arange(32) % NUM_ACTIONS
  out = metrics.to_host(metrics.plasticity_metrics(agent, state, probe, init))
  assert out["updated_units/head/dense_1"] == pytest.approx(1 / NUM_ACTIONS)  # Only action 0's output moves.
  whole = metrics.to_host(metrics.plasticity_metrics(agent, state, probe, init, train_batch_size=64))
  assert whole["updated_units/head/dense_1"] == 1.0
  given = random_batch(12, 16)
  given["action"][:] = 2
  given["action"][:8] = 4
  out = metrics.to_host(metrics.plasticity_metrics(agent, state, probe, init, train_batch=given))
  assert out["updated_units/head/dense_1"] == pytest.approx(2 / NUM_ACTIONS)
  assert out["loss"] == whole["loss"]  # Loss and grad_norm stay on the probe.


def test_k_dead_hidden_units_end_to_end():
  """dense_0 with k units whose bias is hugely negative (never fire) and the rest hugely positive (always fire)."""
  state, init = trained()
  dense_0 = params_tree.main_layers(state.params)["dense_0"]
  k, n = 3, dense_0["linear"]["bias"].shape[0]
  bias = np.where(np.arange(n) < k, -1e6, 100.0).astype(np.float32)
  params = params_tree.replace_trainable(state.params, {"dense_0": {"linear": {**dense_0["linear"], "bias": bias}}})
  out = compute(state.replace(params=params), init)
  for tau in ("0", "0.025", "0.1"):
    assert out[f"dormant_{tau}/head/dense_0"] == pytest.approx(k / n)
  assert out["fau/head/dense_0"] == pytest.approx(1 - k / n)
  assert out["updated_units/head/dense_0"] == pytest.approx(1 - k / n)  # Dead units get no gradient.
  assert out["feature_rank"] <= n - k


def test_injected_network_reports_every_branch():
  state, init = trained()
  agent = make_agent()
  injected = inject(state)
  out = compute(injected, init)
  assert all(math.isfinite(v) for v in out.values())
  for group in ("plus_0", "minus_0"):
    for tau in ("0", "0.025", "0.1"):
      assert f"dormant_{tau}/{group}/dense_0" in out
    assert f"fau/{group}/dense_0" in out and out[f"fau/{group}"] == out[f"fau/{group}/dense_0"]
    assert f"effective_rank/{group}/dense_0" in out
    assert f"weight_norm/{group}/dense_1" in out
    for rank in metrics.RANK_METRICS:
      assert f"{rank}/{group}" in out and f"{rank}/combined" in out
  assert not any(f"/{g}/dense_1" in k for k in out for g in ("plus_0", "minus_0") if k.startswith(("dormant", "fau")))
  # The trainable branch is the main path: at injection it equals its frozen twice (minus_0) ...
  for name in ("dense_0", "dense_1"):
    assert out[f"distance_from_init/head/{name}"] == 0.0
    assert out[f"weight_norm/head/{name}"] == out[f"weight_norm/minus_0/{name}"]
  for key in ("dormant_0.1/", "fau/"):
    assert out[key + "head/dense_0"] == out[key + "minus_0/dense_0"]
  assert out["srank"] == out["srank/minus_0"]
  # ... plus_0 is the old head: its metrics are the pre-injection head's.
  before = compute(state, init)
  for key in ("dormant_0.1/{}/dense_0", "fau/{}/dense_0", "distance_from_init/{}/dense_0", "weight_norm/{}/dense_1"):
    assert out[key.format("plus_0")] == pytest.approx(before[key.format("head")], rel=1e-5)
  assert out["srank/plus_0"] == before["srank"]
  assert out["q_mean"] == pytest.approx(before["q_mean"], abs=1e-5)  # Injection leaves Q unchanged.
  assert "distance_from_init/minus_0/dense_0" not in out
  assert max(out["srank"], out["srank/plus_0"]) <= out["srank/combined"]
  # Only the trainable params have gradients.
  assert not any(k.startswith("updated_units/plus") or k.startswith("updated_units/minus") for k in out)
  # After an update the trainable branch moves away from its init.
  moved, _ = agent.update(injected, random_batch(7, 16))
  assert compute(moved, init)["distance_from_init/head/dense_0"] > 0


def test_branch_activations_reproduce_q():
  state, _ = trained()
  injected = inject(state)
  net = make_agent().network
  obs = random_batch(4)["obs"]
  q, acts = metrics.activations(net, injected.params, obs)
  # Q = plus_0 + (main − minus_0): the output layers' outputs are the branch outputs.
  rebuilt = acts["plus_0/dense_1"] + (acts["head/dense_1"] - acts["minus_0/dense_1"])
  np.testing.assert_allclose(rebuilt, q, atol=1e-5)


def test_double_injection_and_growth():
  state, init = trained()
  twice = inject(inject(state, seed=1), seed=2, hidden=48)
  out = compute(twice, init)
  assert all(math.isfinite(v) for v in out.values())
  for group in ("plus_0", "minus_0", "plus_1", "minus_1"):
    assert f"dormant_0.1/{group}/dense_0" in out and f"srank/{group}" in out
  assert "distance_from_init/plus_1/dense_0" in out  # plus_1 vs its init minus_0 (same widths).
  assert out["distance_from_init/head/dense_0"] == 0.0  # The grown trainable branch vs minus_1.
  assert out["srank"] <= 48 and "dormant_0/head/dense_0" in out


def test_injection_of_the_last_layers_and_of_the_output_layer_only():
  state, init = trained()
  agent = make_agent()
  for target in ("last_k:3", "last_k:1"):
    layers = surgery.resolve_target(agent.network, target)
    injected = surgery.inject(state, jax.random.key(3), network=agent.network, optimizer=agent.optimizer,
                              obs_shape=OBS_SHAPE, layers=layers)
    out = compute(injected, init)
    assert all(math.isfinite(v) for v in out.values())
    branch_keys = {k for k in out if "plus_0" in k or "minus_0" in k}
    if target == "last_k:3":  # conv_2 and dense_0 are hidden layers of the branch.
      assert {"dormant_0.1/plus_0/conv_2", "fau/minus_0/conv_2", "srank/plus_0",
              "distance_from_init/plus_0/conv_2"} <= branch_keys and "srank/combined" in out
    else:  # Only the output layer: weights, no dormancy and no ranks.
      assert branch_keys == {"weight_mean_abs/plus_0/dense_1", "weight_norm/plus_0/dense_1",
                             "weight_mean_abs/minus_0/dense_1", "weight_norm/minus_0/dense_1",
                             "distance_from_init/plus_0/dense_1"}
      assert "srank/combined" not in out


def test_compiles_once_per_tree_structure():
  state, init = trained()
  agent = make_agent()
  fn = metrics.plasticity_metrics
  compute(state, init, seed=20)
  size = fn._cache_size()
  for seed in range(21, 25):
    state, _ = agent.update(state, random_batch(seed, 16))
    compute(state, init, seed=seed)
  assert fn._cache_size() == size


def test_metrics_config():
  config = ml_collections.ConfigDict({"metrics": metrics.metrics_config(),
                                      "replay": {"capacity": 1000}})
  metrics.validate_metrics(config)
  config.metrics.probe_size = 1
  with pytest.raises(ValueError, match="metrics.probe_size"):
    metrics.validate_metrics(config)
  config.metrics.probe_size = 2000
  with pytest.raises(ValueError, match="metrics.probe_size"):
    metrics.validate_metrics(config)
  config.metrics.probe_size = 256
  config.metrics.period_frames = -1
  with pytest.raises(ValueError, match="metrics.period_frames"):
    metrics.validate_metrics(config)


# -- the plot script --------------------------------------------------------------------


def _plot_runs(tmp_path) -> list[str]:
  runs = []
  for r in range(2):
    run = tmp_path / f"run_{r}"
    run.mkdir()
    rows = [{"frames": f, "kind": "plasticity", "srank": 10 + r + f / 1e5, "dormant_0.1/head/dense_0": 0.1 * r,
             "dormant_0.1/encoder/conv_0": "nan"} for f in range(0, 500_000, 100_000)]
    rows.insert(3, {"frames": 250_000, "kind": "event", "name": "injection"})
    rows.append({"frames": 100_000, "kind": "train", "srank": 999})
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    runs.append(str(run))
  return runs


def _plot(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "plasticity_rl.plot_metrics", *args], capture_output=True, text=True,
                        timeout=120, check=False)


def test_plot_metrics(tmp_path):
  runs = _plot_runs(tmp_path)
  series, events = plot_metrics.read_run(runs[1])
  assert [v for _, v in series["srank"]] == [11 + i for i in range(5)]  # The train row is not read.
  assert events == [(250_000, "injection")]
  assert plot_metrics.expand(["srank", "dormant_0.1/*"], set(series)) == [
      "srank", "dormant_0.1/encoder/conv_0", "dormant_0.1/head/dense_0"]
  out = tmp_path / "plots" / "m.png"
  result = _plot(f"--runs={','.join(runs)}", "--metrics=srank,dormant_0.1/*", f"--out={out}")
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == str(out) and out.stat().st_size > 1000


def test_plot_metrics_unknown_metric_is_an_error_naming_it_and_the_available_ones(tmp_path):
  runs = _plot_runs(tmp_path)
  out = tmp_path / "m.png"
  with pytest.raises(plot_metrics.PlotError, match=r"no run has 'fau'; available: dormant_0.1/encoder/conv_0, "
                     r"dormant_0.1/head/dense_0, srank"):
    plot_metrics.expand(["srank", "fau"], set(plot_metrics.read_run(runs[0])[0]))
  result = _plot(f"--runs={','.join(runs)}", "--metrics=srank,fau,nope/*", f"--out={out}")
  assert result.returncode == 2 and not out.exists()
  assert result.stderr.strip().splitlines() == [
      "error: --metrics: no run has 'fau', 'nope/*'; available: dormant_0.1/encoder/conv_0, "
      "dormant_0.1/head/dense_0, srank"]
  result = _plot(f"--runs={tmp_path}", "--metrics=srank", f"--out={out}")  # Not a run: one line too.
  assert result.returncode == 2 and result.stderr.strip().splitlines() == [
      f"error: {tmp_path}: no metrics.jsonl (not a run directory)"]
