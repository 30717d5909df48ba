"""The params-tree API (plasticity_rl/params_tree.py): the layout it owns, its readers, edits and counts."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from plasticity_rl import checkpoint
from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import surgery
from plasticity_rl.agents import dqn

OBS_SHAPE = (36, 36, 4)
NUM_ACTIONS = 3
NAMES = ("conv_0", "conv_1", "conv_2", "dense_0", "dense_1")


def make_network(**kwargs) -> networks.QNetwork:
  return networks.QNetwork(networks.nature_cnn_specs(NUM_ACTIONS, width=0.25, hidden=8), **kwargs)


def fresh(seed: int = 0):
  network = make_network()
  return network, network.init(jax.random.key(seed), OBS_SHAPE)


def optimizer() -> optax.GradientTransformation:
  return dqn.make_optimizer(ml_collections.ConfigDict({"optimizer": "adam_dopamine", "learning_rate": 1e-3}))


def injected(times: int = 1, freeze_encoder: bool = False, layers: tuple[str, ...] = ("dense_0", "dense_1")):
  network, params = fresh()
  opt = optimizer()
  state = dqn.TrainState(params=params, target_params=params, opt_state=opt.init(params_tree.trainable(params)),
                         num_updates=jnp.zeros((), jnp.int32), rng=jax.random.key(1), init_params=params)
  for i in range(times):
    state = surgery.inject(state, jax.random.key(10 + i), network=network, optimizer=opt, obs_shape=OBS_SHAPE,
                           layers=layers, freeze_encoder=freeze_encoder)
  return network, params, state


def same_tree(a, b) -> bool:
  return jax.tree.structure(a) == jax.tree.structure(b) and all(
      np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# -- the layout itself (checkpoints store it: old ones must keep restoring) --------------------------------------


def test_a_fresh_network_has_the_documented_layout():
  _, params = fresh()
  assert set(params) == {"trainable", "frozen"}
  assert {part: set(layers) for part, layers in params["trainable"].items()} == {
      "encoder": {"conv_0", "conv_1", "conv_2"}, "head": {"dense_0", "dense_1"}}
  assert params["frozen"] == {"plus": (), "minus": ()}
  assert params_tree.new(params["trainable"]) == params


def test_an_injection_appends_one_plus_and_one_minus_branch_over_the_injected_layers():
  _, before, state = injected(times=2)
  params = state.params
  assert set(params["frozen"]) == {"plus", "minus"}
  assert [set(b) for b in params["frozen"]["plus"]] == [{"dense_0", "dense_1"}] * 2
  assert [set(b) for b in params["frozen"]["minus"]] == [{"dense_0", "dense_1"}] * 2
  assert same_tree(params["frozen"]["plus"][0], {n: before["trainable"]["head"][n] for n in ("dense_0", "dense_1")})
  main = {n: l for p, ls in params["trainable"].items() for n, l in ls.items()}
  assert same_tree(params["frozen"]["minus"][-1], {n: main[n] for n in ("dense_0", "dense_1")})  # The fresh init.
  # The readers see exactly that.
  assert params_tree.plus_branches(params) is params["frozen"]["plus"]
  assert params_tree.minus_branches(params) is params["frozen"]["minus"]
  assert params_tree.num_injections(params) == 2
  assert params_tree.injected_layers(params) == ("dense_0", "dense_1")
  assert [g for g, _ in params_tree.branches(params)] == ["plus_0", "minus_0", "plus_1", "minus_1"]
  assert not params_tree.is_plain(params)


def test_freeze_encoder_moves_the_layers_to_a_frozen_part_of_the_same_name():
  _, before, state = injected(freeze_encoder=True)
  params = state.params
  assert set(params["trainable"]) == {"head"}
  assert set(params["frozen"]) == {"encoder", "plus", "minus"}
  assert same_tree(params["frozen"]["encoder"], before["trainable"]["encoder"])
  assert params_tree.trainable_parts(params) == {"dense_0": "head", "dense_1": "head"}
  assert list(params_tree.main_layers(params)) == list(NAMES)  # Frozen first, then trainable.
  assert not params_tree.is_plain(params)


# -- readers and edits ---------------------------------------------------------------------------------------------


def test_readers_of_a_plain_tree():
  _, params = fresh()
  assert params_tree.trainable(params) is params["trainable"]
  assert params_tree.frozen(params) is params["frozen"]
  assert params_tree.is_plain(params)
  assert params_tree.num_injections(params) == 0 and params_tree.injected_layers(params) == ()
  assert params_tree.branches(params) == []
  main = params_tree.main_layers(params)
  assert list(main) == list(NAMES)
  assert all(main[n] is params["trainable"][p][n] for p, n in [("encoder", "conv_0"), ("head", "dense_1")])
  assert params_tree.trainable_parts(params) == {n: ("encoder" if n.startswith("conv") else "head") for n in NAMES}


def test_trainable_tree_helpers_round_trip():
  _, params = fresh()
  tree = params_tree.trainable(params)
  assert [(p, n) for p, n, _ in params_tree.items(tree)] == [(p, n) for p, ls in tree.items() for n in ls]
  assert params_tree.layers(tree) == params_tree.main_layers(params)
  assert params_tree.map_layers(lambda name, layer: layer, tree) == tree
  shapes = params_tree.map_layers(lambda name, layer: (name, layer["linear"]["kernel"].shape), tree)
  assert shapes["head"]["dense_0"] == ("dense_0", tree["head"]["dense_0"]["linear"]["kernel"].shape)


def test_replace_layers_and_replace_trainable_touch_only_the_named_layers():
  _, params = fresh()
  _, other = fresh(seed=5)
  original = jax.tree.map(np.asarray, params)
  new_layer = params_tree.main_layers(other)["dense_0"]
  out = params_tree.replace_trainable(params, {"dense_0": new_layer})
  assert params_tree.main_layers(out)["dense_0"] is new_layer
  assert all(params_tree.main_layers(out)[n] is params_tree.main_layers(params)[n] for n in NAMES if n != "dense_0")
  assert params_tree.frozen(out) is params_tree.frozen(params)
  assert jax.tree.structure(out) == jax.tree.structure(params)
  assert same_tree(params, original)  # The input is not mutated.
  assert params_tree.replace_layers(params_tree.trainable(params), {"dense_0": new_layer}) == \
      params_tree.trainable(out)
  with pytest.raises(KeyError, match="conv_9"):
    params_tree.replace_trainable(params, {"conv_9": new_layer})


def test_replace_trainable_refuses_frozen_layers():
  _, _, state = injected(freeze_encoder=True)
  with pytest.raises(KeyError, match="conv_0"):
    params_tree.replace_trainable(state.params, {"conv_0": {}})


def test_with_trainable_and_add_injection_are_pure():
  _, params = fresh()
  swapped = params_tree.with_trainable(params, {"head": {}})
  assert params_tree.trainable(swapped) == {"head": {}} and params_tree.frozen(swapped) is params_tree.frozen(params)
  assert set(params_tree.trainable(params)) == {"encoder", "head"}
  once = params_tree.add_injection(params, {"dense_1": "old"}, {"dense_1": "new"})
  assert params_tree.plus_branches(once) == ({"dense_1": "old"},)
  assert params_tree.minus_branches(once) == ({"dense_1": "new"},)
  assert params_tree.injected_layers(once) == ("dense_1",)
  assert params_tree.num_injections(params) == 0  # Unchanged.


def test_freeze_all_but_keeps_the_named_layers_trainable():
  _, params = fresh()
  out = params_tree.freeze_all_but(params, ("dense_1",))
  assert params_tree.trainable_parts(out) == {"dense_1": "head"}
  assert {p: set(ls) for p, ls in params_tree.frozen(out).items() if p not in ("plus", "minus")} == {
      "encoder": {"conv_0", "conv_1", "conv_2"}, "head": {"dense_0"}}
  assert params_tree.main_layers(out).keys() == params_tree.main_layers(params).keys()
  assert all(params_tree.main_layers(out)[n] is params_tree.main_layers(params)[n] for n in NAMES)


# -- θ₀ and counts -------------------------------------------------------------------------------------------------


def test_init_layers_is_theta0_by_layer_or_the_latest_injections_fresh_init():
  _, params = fresh()
  refs = params_tree.init_layers(params, params)
  assert all(refs[n] is params_tree.main_layers(params)[n] for n in NAMES)
  assert params_tree.init_layers(params, None) == {n: None for n in NAMES}
  _, init, state = injected(times=2)
  refs = params_tree.init_layers(state.params, init)
  minus = params_tree.minus_branches(state.params)[-1]
  assert refs["dense_0"] is minus["dense_0"] and refs["dense_1"] is minus["dense_1"]
  assert refs["conv_2"] is params_tree.main_layers(init)["conv_2"]


def test_counts_equal_the_hand_counts_and_the_checkpoint_summary():
  for network, _, state in (injected(times=2), injected(freeze_encoder=True)):
    del network
    params = state.params
    by_hand = (networks.count_params(params["trainable"]), networks.count_params(params["frozen"]))
    assert (params_tree.count_trainable(params), params_tree.count_frozen(params)) == by_hand
    assert params_tree.count_trainable(params) + params_tree.count_frozen(params) == networks.count_params(params)
    meta = {"structure": {"params": checkpoint.tree_to_json(params)}, "loop": {}, "replay": None}
    summary = checkpoint.summarize(meta)
    assert (summary["params_trainable"], summary["params_frozen"]) == by_hand
    assert summary["branches"] == params_tree.num_injections(params) == len(params["frozen"]["plus"])
  assert networks.count_params is params_tree.count_params


# -- optimizer state, by path ---------------------------------------------------------------------------------------


def test_init_opt_state_is_the_optimizers_init_of_the_trainable_part():
  _, params = fresh()
  opt = optimizer()
  assert same_tree(params_tree.init_opt_state(opt, params), opt.init(params["trainable"]))


def test_transfer_opt_state_keeps_leaves_by_path_and_resets_on_request():
  _, params = fresh()
  opt = optimizer()
  trainable = params_tree.trainable(params)
  old = jax.tree.map(lambda x: x + 1, opt.init(trainable))  # Every statistic (and the count) off its init.
  kept = params_tree.transfer_opt_state(opt, old, trainable)
  assert same_tree(kept, old)
  reset = params_tree.transfer_opt_state(opt, old, trainable, reset=lambda names: "dense_1" in names)
  mu = reset[0].mu
  assert not np.any(mu["head"]["dense_1"]["linear"]["kernel"])  # Fresh: zeros.
  assert np.all(mu["head"]["dense_0"]["linear"]["kernel"] == 1)  # Kept.
  assert int(reset[0].count) == 1  # Counters are kept.
  network = make_network()
  wider = network.init_branch(jax.random.key(2), params, ("dense_0", "dense_1"), OBS_SHAPE, {"dense_0": 16})
  grown = params_tree.transfer_opt_state(opt, old, params_tree.replace_layers(trainable, wider))
  assert not np.any(grown[0].mu["head"]["dense_0"]["linear"]["kernel"])  # Another shape: fresh.
  assert np.all(grown[0].mu["encoder"]["conv_0"]["linear"]["kernel"] == 1)


def test_zero_opt_state_zeroes_where_masked_and_keeps_the_rest():
  _, params = fresh()
  opt = optimizer()
  trainable = params_tree.trainable(params)
  state = jax.tree.map(lambda x: x + 1, opt.init(trainable))
  masks = params_tree.map_layers(lambda name, layer: jax.tree.map(lambda x: jnp.full(x.shape, name == "conv_1"),
                                                                  layer), trainable)
  out = params_tree.zero_opt_state(opt, state, masks)
  for stats in (out[0].mu, out[0].nu):
    assert not np.any(stats["encoder"]["conv_1"]["linear"]["kernel"])
    assert np.all(stats["encoder"]["conv_0"]["linear"]["kernel"] == 1)
  assert int(out[0].count) == 1
