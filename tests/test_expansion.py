"""Neuroplastic-Expansion-style growth (plasticity_rl/expansion.py): masks, grow, prune, schedule, review.

Surgeries run eagerly where only their result matters (XLA compiles a fresh init slowly on CPU); the
jitted versions run in the schedule and compile-once tests.
"""

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from plasticity_rl import checkpoint
from plasticity_rl import config as config_lib
from plasticity_rl import expansion
from plasticity_rl import interventions
from plasticity_rl import metrics
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import remedies
from plasticity_rl import replay as replay_lib
from plasticity_rl import testing
from plasticity_rl import unit_masks
from plasticity_rl.agents import dqn

OBS_SHAPE = (44, 44, 4)  # conv_2 outputs 2×2 maps: the conv → dense flatten order matters.
NUM_ACTIONS = 5
FRACTION = 0.25  # Of 8 / 16 / 16 / 8 units: 2 / 4 / 4 / 2 active at the start.


@functools.cache
def make_agent(activation: str = "relu") -> dqn.DQNAgent:
  network = networks.QNetwork(networks.nature_cnn_specs(NUM_ACTIONS, width=0.25, hidden=32), activation=activation)
  opt = dqn.make_optimizer(ml_collections.ConfigDict({"optimizer": "adam_dopamine", "learning_rate": 1e-3}))
  return dqn.DQNAgent(network, opt, OBS_SHAPE, NUM_ACTIONS, target_update_period_updates=1000)


def random_batch(seed: int, size: int = 16) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {"obs": rng.integers(0, 256, (size, *OBS_SHAPE), dtype=np.uint8),
          "next_obs": rng.integers(0, 256, (size, *OBS_SHAPE), dtype=np.uint8),
          "action": rng.integers(0, NUM_ACTIONS, size).astype(np.int32),
          "reward": rng.normal(size=size).astype(np.float32), "discount": np.full(size, 0.99, np.float32)}


@functools.cache
def started(activation: str = "relu") -> dqn.TrainState:
  agent = make_agent(activation)
  state = agent.init(jax.random.key(0))
  return expansion.start(state, network=agent.network, optimizer=agent.optimizer, initial_fraction=FRACTION)


@functools.cache
def trained() -> dqn.TrainState:
  """A started state after 3 jitted updates (non-zero optimizer moments on active entries)."""
  agent, state = make_agent(), started()
  for seed in range(3):
    state, _ = agent.update(state, random_batch(seed))
  return state


def layers(params):
  return params_tree.main_layers(params)


def param_leaves(agent, opt_state):
  """Every params-shaped leaf of the optimizer state (Adam's μ, ν), flattened."""
  found = []
  optax.tree_utils.tree_map_params(agent.optimizer, lambda v: found.append(np.asarray(v)) or v, opt_state,
                                   transform_non_params=lambda v: v)
  return found


def keep_leaves(agent, state, repeat: int = 2):
  keep = jax.tree.leaves(unit_masks.weight_masks(agent.network, params_tree.trainable(state.params), state.masks))
  return [np.asarray(k) for k in keep] * repeat


def max_dq(agent, before, after, obs) -> float:
  return float(jnp.max(jnp.abs(agent.network.apply(after, obs) - agent.network.apply(before, obs))))


# -- masks and the update -------------------------------------------------------------------------------------


def test_start_masks_the_first_units_online_and_target():
  agent, state = make_agent(), started()
  fresh = agent.init(jax.random.key(0))
  assert {n: int(m.sum()) for n, m in state.masks.items()} == {n: expansion.count_for(FRACTION, m.shape[0])
                                                               for n, m in state.masks.items()}
  keep = unit_masks.weight_masks(agent.network, params_tree.trainable(state.params), state.masks)
  for params in (state.params, state.target_params):
    for p, f, k in zip(jax.tree.leaves(params_tree.trainable(params)),
                       jax.tree.leaves(params_tree.trainable(fresh.params)),
                       jax.tree.leaves(keep)):
      np.testing.assert_array_equal(p, np.where(k > 0, f, 0.0))
  dense_1 = np.asarray(layers(state.params)["dense_1"]["linear"]["kernel"])  # Rows from inactive units are 0.
  assert not np.any(dense_1[np.asarray(state.masks["dense_0"]) == 0])
  dense_0 = np.asarray(layers(state.params)["dense_0"]["linear"]["kernel"])  # conv_2 is 2×2×C, channel last.
  channels = np.tile(np.asarray(state.masks["conv_2"]), 4)
  assert not np.any(dense_0[channels == 0]) and np.all(np.any(dense_0[channels > 0][:, :2] != 0, axis=1))
  again = expansion.start(state, network=agent.network, optimizer=agent.optimizer, initial_fraction=0.5)
  assert again is state  # Masks present (resumed, reincarnated): kept.
  assert expansion.active_params(agent.network, state.params, state.masks) < networks.count_params(
      params_tree.trainable(state.params)) == expansion.active_params(agent.network, state.params, None)


def test_all_ones_masks_update_like_no_masks():
  agent = make_agent()
  state = agent.init(jax.random.key(3))
  ones = {n: jnp.ones(expansion.units(state.params, n)) for n in expansion.hidden_layers(agent.network)}
  plain, _ = agent.update(state, random_batch(0))
  masked, _ = agent.update(state.replace(masks=ones), random_batch(0))
  for a, b in zip(jax.tree.leaves((plain.params, plain.opt_state)), jax.tree.leaves((masked.params,
                                                                                     masked.opt_state))):
    np.testing.assert_array_equal(a, b)


def test_masked_weights_stay_zero_and_get_no_optimizer_moments():
  agent, before, state = make_agent(), started(), trained()
  keep = keep_leaves(agent, state, repeat=1)
  for p, p0, k in zip(jax.tree.leaves(params_tree.trainable(state.params)), jax.tree.leaves(params_tree.trainable(before.params)),
                      keep):
    assert np.all(np.asarray(p)[k == 0] == 0.0)
    assert np.any(np.asarray(p)[k > 0] != np.asarray(p0)[k > 0])  # Active entries learn.
  for v, k in zip(param_leaves(agent, state.opt_state), keep * 2):
    assert np.all(v[k == 0] == 0.0)
  assert any(np.any(v != 0) for v in param_leaves(agent, state.opt_state))


# -- grow -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "crelu"])
def test_grow_keeps_q_and_opens_zero_outgoing_weights(activation):
  agent = make_agent(activation)
  state = trained() if activation == "relu" else started(activation)
  if activation == "crelu":  # A unit feeds channels i and units + i of the next layer.
    n, inactive = state.masks["dense_0"].shape[0], np.asarray(state.masks["dense_0"]) == 0
    dense_1 = np.asarray(layers(state.params)["dense_1"]["linear"]["kernel"])
    assert dense_1.shape[0] == 2 * n and not np.any(dense_1[np.concatenate([inactive, inactive])])
  batch, rng = random_batch(5), jax.random.key(9)
  grown_state, grown = expansion.grow(state, rng, batch, agent=agent, fraction=FRACTION)
  for obs in (batch["obs"], random_batch(6)["obs"]):
    assert max_dq(agent, state.params, grown_state.params, obs) <= 1e-6
  names = agent.network.layer_names
  fresh = remedies.fresh_layers(agent.network, rng, state.params, expansion.hidden_layers(agent.network), OBS_SHAPE)
  new, old = layers(grown_state.params), layers(state.params)
  for name, g in grown.items():
    g, m0, m1 = np.asarray(g), np.asarray(state.masks[name]), np.asarray(grown_state.masks[name])
    assert g.sum() == expansion.count_for(FRACTION, g.shape[0]) and not np.any(g & (m0 > 0))
    np.testing.assert_array_equal(m1, np.maximum(m0, g))
    kernel = np.asarray(new[name]["linear"]["kernel"])
    expected = np.asarray(fresh[name]["linear"]["kernel"])
    index = names.index(name)
    if index:  # Incoming only from units that were active before.
      rows = np.asarray(unit_masks.input_rows(agent.network, state.masks[names[index - 1]], kernel.shape[-2]))
      expected = expected * rows[:, None]
    np.testing.assert_array_equal(kernel[..., g], expected[..., g])
    np.testing.assert_array_equal(np.asarray(new[name]["linear"]["bias"])[g], 0.0)
    following = np.asarray(new[names[index + 1]]["linear"]["kernel"])
    rows = np.asarray(unit_masks.input_rows(agent.network, jnp.asarray(g, jnp.float32), following.shape[-2])) > 0
    assert not np.any(np.moveaxis(following, -2, 0)[rows])  # Outgoing weights 0.
  keep0 = keep_leaves(agent, state, repeat=1)
  for a, b, k in zip(jax.tree.leaves(params_tree.trainable(grown_state.params)),
                     jax.tree.leaves(params_tree.trainable(state.params)),
                     keep0):
    np.testing.assert_array_equal(np.asarray(a)[k > 0], np.asarray(b)[k > 0])  # Active entries unchanged.
  for v, k in zip(param_leaves(agent, grown_state.opt_state), keep0 * 2):
    assert np.all(v[k == 0] == 0.0)  # Grown (previously masked) entries have no moments.
  assert grown_state.target_params is state.target_params


def test_grow_picks_the_units_with_the_largest_outgoing_gradient():
  """Hand-checkable: every inactive unit's fresh incoming weights are c_i · w (one direction w): with
  ReLU's positive homogeneity h_i = c_i·relu(w·x), so its outgoing gradient norm is c_i · const."""
  agent, state = make_agent(), trained()
  rng = np.random.default_rng(0)
  main = layers(state.params)
  fresh, scales = {}, {}
  for name in expansion.hidden_layers(agent.network):
    kernel = np.asarray(main[name]["linear"]["kernel"])
    n = kernel.shape[-1]
    scales[name] = rng.permutation(np.linspace(0.5, 2.0, n)).astype(np.float32)
    base = kernel[..., :1]  # Unit 0 is active: its incoming weights (from active inputs) make w.
    fresh[name] = {"linear": {"kernel": jnp.asarray(base * scales[name]), "bias": jnp.zeros(n)}}
  candidate = expansion.candidates(agent.network, params_tree.trainable(state.params), state.masks, fresh)
  scores = expansion.growth_scores(agent, state, random_batch(7), candidate)
  grown_state, grown = expansion.grow_from(state, fresh, random_batch(7), agent=agent, fraction=FRACTION)
  for name, g in grown.items():
    inactive = np.asarray(state.masks[name]) == 0
    ratio = np.asarray(scores[name])[inactive] / scales[name][inactive]
    assert ratio.min() > 0
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-4, err_msg=name)
    k = expansion.count_for(FRACTION, inactive.size)
    expected = np.flatnonzero(inactive)[np.argsort(-scales[name][inactive])[:k]]
    assert sorted(np.flatnonzero(g)) == sorted(expected), name
    assert np.all(np.asarray(scores[name])[~inactive] == -np.inf)
  assert max_dq(agent, state.params, grown_state.params, random_batch(7)["obs"]) <= 1e-6


# -- prune ----------------------------------------------------------------------------------------------------


def test_prune_returns_dormant_units_to_the_pool():
  agent, state = make_agent(), trained()
  names = agent.network.layer_names
  main = {n: jax.tree.map(jnp.asarray, p) for n, p in layers(state.params).items()}
  for name in ("conv_1", "dense_0"):  # Unit 1 (active) dead: no incoming weights, bias −1.
    main[name]["linear"]["kernel"] = main[name]["linear"]["kernel"].at[..., 1].set(0.0)
    main[name]["linear"]["bias"] = main[name]["linear"]["bias"].at[1].set(-1.0)
  dead = state.replace(params=params_tree.replace_trainable(state.params, main))
  obs = random_batch(8)["obs"]
  kept, none = expansion.prune(dead, obs, network=agent.network, optimizer=agent.optimizer, tau=0.0,
                               min_fraction=FRACTION)  # The floor is the start size: nothing to prune.
  assert not any(np.any(p) for p in none.values())
  assert all(np.array_equal(kept.masks[n], dead.masks[n]) for n in names[:-1])
  _, capped = expansion.prune(dead, obs, network=agent.network, optimizer=agent.optimizer, tau=0.0,
                              min_fraction=0.01, max_pruned={n: 0 for n in names[:-1]})
  assert not any(np.any(p) for p in capped.values())  # A cap of 0 keeps even dead units.
  pruned_state, pruned = expansion.prune(dead, obs, network=agent.network, optimizer=agent.optimizer, tau=0.0,
                                         min_fraction=0.01)
  scores = expansion.dormant_scores(agent.network, dead.params, dead.masks, obs)
  for name in names[:-1]:
    p = np.asarray(pruned[name])
    assert np.all(np.asarray(scores[name])[p] == 0.0)
    if name in ("conv_1", "dense_0"):
      assert p[1] and pruned_state.masks[name][1] == 0
  new = layers(pruned_state.params)
  assert not np.any(np.asarray(new["dense_0"]["linear"]["kernel"])[..., 1])
  assert not np.any(np.asarray(new["dense_1"]["linear"]["kernel"])[1])  # Outgoing of dense_0 unit 1.
  assert not np.any(np.asarray(new["conv_2"]["linear"]["kernel"])[:, :, 1])  # Outgoing of conv_1 unit 1.
  for v, k in zip(param_leaves(agent, pruned_state.opt_state), keep_leaves(agent, pruned_state)):
    assert np.all(v[k == 0] == 0.0)
  assert max_dq(agent, dead.params, pruned_state.params, obs) <= 1e-6  # Dead units contributed nothing.


def test_grow_and_prune_caps_pruning_at_a_share_of_the_growth():
  """STL_Scheduler: n_prune = int(n_grow · 0.4). Unit 1 of conv_1 and dense_0 is dead (score 0)."""
  agent, state = make_agent(), trained()
  main = {n: jax.tree.map(jnp.asarray, p) for n, p in layers(state.params).items()}
  for name in ("conv_1", "dense_0"):
    main[name]["linear"]["kernel"] = main[name]["linear"]["kernel"].at[..., 1].set(0.0)
    main[name]["linear"]["bias"] = main[name]["linear"]["bias"].at[1].set(-1.0)
  dead = state.replace(params=params_tree.replace_trainable(state.params, main))
  batch = random_batch(8)
  step = functools.partial(expansion.grow_and_prune_jit, agent=agent, prune_units=True,
                           **{**BUILDER_STATICS, "min_fraction": 0.01})
  _, info = step(dead, jax.random.key(1), batch, {n: 2 for n in dead.masks})  # Cap ⌊0.8⌋ = 0.
  assert all(int(info[f"pruned/{n}"]) == 0 for n in dead.masks) and int(info["dormant"]) >= 2
  _, info = step(dead, jax.random.key(1), batch, {n: 3 for n in dead.masks})  # Cap ⌊1.2⌋ = 1.
  assert all(int(info[f"pruned/{n}"]) <= 1 for n in dead.masks)
  assert int(info["pruned/conv_1"]) == int(info["pruned/dense_0"]) == 1


def test_dormant_scores_match_metrics_when_every_unit_is_active():
  agent = make_agent()
  state = agent.init(jax.random.key(0))
  obs = random_batch(0)["obs"]
  ones = {n: jnp.ones(expansion.units(state.params, n)) for n in expansion.hidden_layers(agent.network)}
  _, features = agent.network.apply_with_features(state.params, obs)
  for name, score in expansion.dormant_scores(agent.network, state.params, ones, obs).items():
    np.testing.assert_allclose(score, metrics.dormant_scores(features[name]), rtol=1e-6)


# -- schedule, compile once, checkpoint -----------------------------------------------------------------------


def expansion_config(**fields) -> ml_collections.ConfigDict:
  config = config_lib.apply_scale(config_lib.base_config(), "smoke")  # 4,000 frames, learning at 1,000.
  config.expansion = expansion.expansion_config()
  config.expansion.update({"enabled": True, "initial_fraction": FRACTION, "grow_fraction": FRACTION,
                           "period_frames": 1000, "start_frames": 1000, **fields})
  return config


BUILDER_STATICS = dict(tau=0.0, min_fraction=FRACTION, prune_cap=0.4)  # expansion_config's, at FRACTION.


def test_active_params_grow_on_schedule():
  """Cosine-annealed growth: ζ_t = ζ/2 (1 + cos(π t/T)) of each layer's initial pool, floored (STL_Scheduler)."""
  agent = make_agent()
  config = expansion_config(prune=False, grow_fraction=0.5)
  expansion.validate(config)
  plan = expansion.expansion_plan(config)
  assert plan.grow_rates == pytest.approx([0.5, 0.375, 0.125, 0.0])  # t/T = 0, 1/3, 2/3, 1 of 1,000..4,000.
  schedule = interventions.INTERVENTIONS["expansion"](config, agent)
  assert [f for f, _ in schedule] == [0, 1000, 2000, 3000, 4000]
  state = agent.init(jax.random.key(0))
  full = networks.count_params(params_tree.trainable(state.params))
  # 8-unit layers: 2 active, pool 6 -> ⌊3⌋, ⌊2.25⌋, ⌊0.75⌋, 0; 16-unit layers: 4 active, pool 12 -> 6, 4, 1, 0.
  grown = {8: [3, 2, 0, 0], 16: [6, 4, 1, 0]}
  counts = []
  for i, (_, fn) in enumerate(schedule):
    batch = random_batch(i) if i else None  # No replay batch before learning starts.
    new = fn(state, jax.random.key(i), batch)
    if i:
      assert max_dq(agent, state.params, new.params, random_batch(i)["obs"]) <= 1e-6
    state = new
    for name, m in state.masks.items():
      n = m.shape[0]
      assert int(m.sum()) == expansion.count_for(FRACTION, n) + sum(grown[n][:i]), (i, name)
    counts.append(expansion.active_params(agent.network, state.params, state.masks))
  assert counts[0] < counts[1] < counts[2] < counts[3] == counts[4] < full
  assert expansion.summary(agent.network, state)["params_active"] == counts[-1]


def test_grow_rate_and_growth_counts():
  assert expansion.grow_rate(0.2, 0.0) == pytest.approx(0.2)
  assert expansion.grow_rate(0.2, 0.5) == pytest.approx(0.1)
  assert expansion.grow_rate(0.2, 1.0) == pytest.approx(0.0, abs=1e-12)
  assert expansion.grow_rate(0.2, 2.0) == pytest.approx(0.0, abs=1e-12)  # Clipped at the end of training.
  assert expansion.grow_rate(0.2, 0.7, "constant") == 0.2
  with pytest.raises(ValueError, match="expansion.grow_schedule"):
    expansion.grow_rate(0.2, 0.5, "linear")
  agent, state = make_agent(), started()
  assert expansion.growth_counts(agent.network, state.params, FRACTION, 0.5) == {
      "conv_0": 3, "conv_1": 6, "conv_2": 6, "dense_0": 3}  # ⌊0.5 · (units − ⌈0.25 · units⌉)⌋.


def test_defaults_follow_the_neuroplastic_expansion_code():
  """Issue 12: τ = 0 (fully dormant only), cosine-annealed growth, pruning capped at 0.4 × growth, a
  probabilistic review of the oldest 0.3 of the replay (torressliu/neuroplastic-expansion)."""
  c = expansion.expansion_config()
  assert (c.prune_tau, c.grow_schedule, c.prune_cap, c.review_fraction, c.review_probability) == (
      0.0, "cosine", 0.4, 0.3, 0.5)
  preset = testing.configs_module("expansion").get_config()  # Paper scale: 40 steps over 200M frames.
  e = preset.expansion
  assert (e.prune_tau, e.grow_schedule, e.prune_cap, e.review_fraction, e.review_probability) == (
      0.0, "cosine", 0.4, 0.3, 0.5)
  plan = expansion.expansion_plan(preset)
  assert len(plan.frames) == 40 and plan.grow_rates[0] > plan.grow_rates[20] > plan.grow_rates[-1]


def test_update_compiles_once_across_grow_and_prune():
  agent, state = make_agent(), trained()
  batch = random_batch(1)
  grow = functools.partial(expansion.grow_and_prune_jit, agent=agent, prune_units=False, **BUILDER_STATICS)
  prune = functools.partial(expansion.prune_jit, network=agent.network, optimizer=agent.optimizer, tau=0.5,
                            min_fraction=0.01)
  state, _ = agent.update(state, batch)
  update_size = dqn.DQNAgent.update._cache_size()
  sizes = []
  for i in range(3):  # A different count every step: traced, no new compile.
    state, info = grow(state, jax.random.key(i), batch, {n: i + 1 for n in state.masks})
    state, pruned = prune(state, batch["obs"])
    state, _ = agent.update(state, batch)
    sizes.append((dqn.DQNAgent.update._cache_size(), expansion.grow_and_prune_jit._cache_size(),
                  expansion.prune_jit._cache_size()))
  jax.block_until_ready(state)
  assert sizes[0][0] == sizes[-1][0] == update_size and sizes[0] == sizes[-1]
  assert set(info) == {"dormant"} | {f"grown/{n}" for n in state.masks}
  assert sum(int(np.sum(p)) for p in pruned.values()) > 0  # τ = 0.5 prunes something: masks changed.
  keep = keep_leaves(agent, state, repeat=1)
  assert all(np.all(np.asarray(p)[k == 0] == 0)
             for p, k in zip(jax.tree.leaves(params_tree.trainable(state.params)), keep))


def test_checkpoint_round_trip_keeps_masks(tmp_path):
  agent = make_agent()
  grown, _ = expansion.grow(trained(), jax.random.key(1), random_batch(1), agent=agent, fraction=FRACTION)
  fresh = agent.init(jax.random.key(5))
  for name, state in (("masked", grown), ("plain", fresh)):
    saver = checkpoint.Checkpointer(str(tmp_path / name), async_save=False)
    saver.save(8, state=state, keys={}, loop={"frames": 8})
    saver.close()
    restored = checkpoint.Checkpointer(str(tmp_path / name), read_only=True).restore(optimizer=agent.optimizer)
    assert ("masks" in restored.meta["structure"]) == (name == "masked")
    back = restored.train_state(fresh, agent.optimizer)
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
      if not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        np.testing.assert_array_equal(a, b)


# -- experience review ----------------------------------------------------------------------------------------


def filled_replay(steps: int) -> replay_lib.ReplayBuffer:
  """3 envs, 20 entries each; the frame of env e at time t is (3t + e) mod 256 everywhere."""
  buffer = replay_lib.ReplayBuffer(60, 3, frame_shape=(2, 2), seed=1)
  for t in range(steps):
    frame = np.stack([np.full((2, 2), (3 * t + e) % 256, np.uint8) for e in range(3)])
    buffer.add(frame, np.zeros(3, int), np.zeros(3), np.zeros(3, bool), np.zeros(3, bool), np.full(3, t == 0))
  return buffer


@pytest.mark.parametrize("steps, fraction, expected", [(50, 0.25, (33, 36)), (12, 0.5, (0, 5))])
def test_sample_oldest_draws_from_the_oldest_stored_transitions(steps, fraction, expected):
  buffer = filled_replay(steps)  # 50 steps: wrapped; stored t 30..49, starts 33..48 (stack 4, n 1).
  out = buffer.sample_oldest(3000, fraction)
  t, env = out["time_index"], out["env_index"]
  assert set(t.tolist()) == set(range(expected[0], expected[1] + 1)) and set(env.tolist()) == {0, 1, 2}
  np.testing.assert_array_equal(out["obs"][:, 0, 0, -1], (3 * t + env) % 256)  # The right frames, wrapped.
  np.testing.assert_array_equal(out["next_obs"][:, 0, 0, -1], (3 * (t + 1) + env) % 256)


def test_review_due_and_review_batches():
  assert not expansion.review_due([1.0, 2.0], 3, 0.5)
  assert not expansion.review_due([1.0, 2.0, 3.0], 3, 0.5)  # Slope 1.
  assert expansion.review_due([9.0, 5.0, 5.1, 4.9, 5.0], 4, 0.1)  # Only the last 4 count.
  assert expansion.review_due([3.0, 2.0, 1.0], 3, 1.0)  # |slope| ≤ tolerance.
  review = expansion.Review.from_config(expansion_config(review_batches=2, review_window=3, review_fraction=0.25,
                                                         review_tolerance=0.01, review_probability=1.0))
  assert expansion.Review.from_config(expansion_config()) is None  # review_batches = 0: off.
  buffer = filled_replay(50)
  assert [review.observe(v) for v in (0.3, 0.2, 0.2, 0.2)] == [False, False, False, True]
  saved = review.state_dict()
  assert {k: saved[k] for k in ("history", "remaining")} == {"history": [], "remaining": 2}
  for _ in range(2):
    assert review.sample(buffer, 64)["time_index"].max() <= 36
  assert review.sample(buffer, 512)["time_index"].max() > 36
  review.load_state_dict(saved)
  assert review.remaining == 2


def test_review_draws_from_the_oldest_part_with_its_probability_and_resumes_alike():
  """NE (stl/TD3.py) reviews a batch only with probability 1 − gate; here review_probability, seeded."""
  review = expansion.Review.from_config(expansion_config(review_batches=400, review_window=2,
                                                         review_fraction=0.25, review_tolerance=1.0))
  assert review.probability == 0.5 and review.fraction == 0.25
  buffer = filled_replay(50)  # Stored starts 33..48; the oldest quarter is 33..36.
  assert review.observe(0.2) is False and review.observe(0.2) is True
  oldest = lambda batch: batch["time_index"].max() <= 36  # A uniform batch of 64 reaches past 36.
  first = [oldest(review.sample(buffer, 64)) for _ in range(200)]
  saved = json.loads(json.dumps(review.state_dict()))
  rest = [oldest(review.sample(buffer, 64)) for _ in range(200)]
  assert 150 <= sum(first) + sum(rest) <= 250 and review.remaining == 0
  assert not oldest(review.sample(buffer, 64))  # The review is over: uniform.
  again = expansion.Review.from_config(expansion_config(review_batches=400, review_window=2,
                                                        review_fraction=0.25, review_tolerance=1.0))
  again.load_state_dict(saved)
  assert [oldest(again.sample(buffer, 64)) for _ in range(200)] == rest


# -- config -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("initial_fraction", 0.0, "expansion.initial_fraction"), ("grow_fraction", 1.5, "expansion.grow_fraction"),
    ("prune_tau", -0.1, "expansion.prune_tau"), ("review_window", 1, "expansion.review_window"),
    ("frames", (500,), "expansion.frames"), ("period_frames", -1, "expansion.period_frames"),
    ("prune_cap", -0.1, "expansion.prune_cap"), ("review_probability", 0.0, "expansion.review_probability"),
    ("grow_schedule", "linear", "expansion.grow_schedule")])
def test_validate_names_the_field(field, value, message):
  with pytest.raises(ValueError, match=message):
    expansion.validate(expansion_config(**{field: value}))


def test_injection_is_refused():
  config = expansion_config()
  config.injection.frames = (2000,)
  with pytest.raises(ValueError, match="expansion.enabled: cannot be combined with plasticity injection"):
    expansion.validate(config)
  config = expansion_config()
  config.injection.trigger.metric = "dormant_0.1"
  with pytest.raises(ValueError, match="injection.trigger.metric 'dormant_0.1'"):
    expansion.validate(config)
  with pytest.raises(ValueError, match="cannot be combined with plasticity injection"):
    expansion.check_plain(params_tree.add_injection(params_tree.new({}), {}, {}), "expansion.grow")
