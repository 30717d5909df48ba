"""Tests for plasticity_rl.device_replay against the host ReplayBuffer (same adds, same arrays, same transitions)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from plasticity_rl import device_replay as dr
from plasticity_rl.replay import FIRST, LAST, TERMINAL, ReplayBuffer

FRAME_SHAPE = (6, 5)
# Two replay shapes, so that each jitted function compiles about twice: A has n-step returns and stacks of 4,
# B (used by the sampling tests) stacks of 2 and 1-step returns.
A = dict(num_envs=3, cap_per_env=10, stack=4, n=3)
B = dict(num_envs=2, cap_per_env=12, stack=2, n=1)

# Jitted once per shape (the replay's E, C, S, n, gamma and the batch sizes are static).
_add = jax.jit(dr.add)
_transitions = jax.jit(dr.transitions)
_indices = jax.jit(dr.indices, static_argnums=(2, 3))
_sample_many = jax.jit(dr.sample_many, static_argnums=(2, 3))
_num_valid = jax.jit(dr.num_valid)


def _pair(num_envs, cap_per_env, stack=4, n=3, gamma=0.9):
  kwargs = dict(frame_shape=FRAME_SHAPE, stack_size=stack, n_step=n, gamma=gamma)
  return (ReplayBuffer(num_envs * cap_per_env, num_envs, **kwargs),
          dr.init(num_envs * cap_per_env, num_envs, **kwargs))


def _stream(rng, num_envs, steps, p_life=0.15, p_over=0.08, p_trunc=0.05, p_reset=0.05):
  """Add arguments with life losses, game overs, truncations (last, not terminal) and resets after a non-last."""
  prev_last = np.ones(num_envs, bool)
  for _ in range(steps):
    first = prev_last | (rng.random(num_envs) < p_reset)
    u = rng.random(num_envs)
    over, trunc = u < p_over, (u >= p_over) & (u < p_over + p_trunc)
    terminal = over | (rng.random(num_envs) < p_life)
    last = over | trunc
    frame = rng.integers(0, 256, (num_envs, *FRAME_SHAPE), dtype=np.uint8)
    action = rng.integers(0, 256, num_envs)
    reward = np.where(first, 0.0, rng.choice([-1.0, 0.0, 0.3, 1.0, 7.5], num_envs)).astype(np.float32)
    yield frame, action, reward, terminal, last, first
    prev_last = last


def _assert_same_storage(buffer, replay):
  assert int(replay.num_added) == buffer.num_added
  for name in ("frames", "actions", "rewards", "flags"):
    got, want = np.asarray(getattr(replay, name)), getattr(buffer, "_" + name)
    assert got.dtype == want.dtype, name
    np.testing.assert_array_equal(got, want, err_msg=name)


def _candidates(buffer):
  """Every (env, t) in the host's candidate start range [lo, hi] (valid or `last`), as int64 arrays."""
  lo, hi = buffer._time_range()
  env, t = np.divmod(np.arange(buffer.num_envs * max(0, hi - lo + 1)), max(1, hi - lo + 1))
  return env.astype(np.int64), (t + lo).astype(np.int64)


def _valid_set(buffer, oldest_fraction=None):
  """The valid (env, t) by the documented rule, from the host's storage."""
  oldest = max(0, buffer.num_added - buffer.capacity_per_env)
  lo = oldest + buffer.stack_size - 1 if oldest else 0
  hi = buffer.num_added - 1 - buffer.n_step
  if oldest_fraction is not None and hi >= lo:
    hi = lo + max(1, math.ceil(oldest_fraction * (hi - lo + 1))) - 1
  return {(e, t) for e in range(buffer.num_envs) for t in range(lo, hi + 1)
          if not buffer._flags[e, t % buffer.capacity_per_env] & LAST}


def _assert_transitions_match(buffer, replay, env, t):
  """Device `transitions` == host `_transitions` at (env, t), padded to a fixed batch so that it is jitted once."""
  size, pad = env.size, buffer.capacity - env.size
  env, t = np.concatenate([env, np.repeat(env[:1], pad)]), np.concatenate([t, np.repeat(t[:1], pad)])
  want = buffer._transitions(env, t)
  got = _transitions(replay, env.astype(np.int32), t.astype(np.int32))
  assert set(got) == set(want)
  for key, value in want.items():
    value_got = np.asarray(got[key])
    if key in ("env_index", "time_index"):
      assert value_got.dtype == np.int32 and value.dtype == np.int64, key  # The documented difference.
      value = value.astype(np.int32)
    assert value_got.dtype == value.dtype, key
    np.testing.assert_array_equal(value_got, value, err_msg=key)
  return {key: value[:size] for key, value in want.items()}


@pytest.mark.parametrize("config, seed", [(A, 0), (B, 1)])
def test_adds_and_transitions_match_host(config, seed):
  num_envs, cap_per_env, stack, n = config["num_envs"], config["cap_per_env"], config["stack"], config["n"]
  buffer, replay = _pair(**config)
  seen = dict(truncated=0, zero_padded_mid=0, stopped_early=0, wrapped=False)
  rng = np.random.default_rng(seed)
  for step, args in enumerate(_stream(rng, num_envs, 4 * cap_per_env)):
    prev_flags = buffer._flags[:, (step - 1) % cap_per_env].copy()
    buffer.add(*args)
    replay = _add(replay, *args)
    _assert_same_storage(buffer, replay)
    assert int(_num_valid(replay)) == len(_valid_set(buffer))
    if step:
      seen["truncated"] += int(np.sum(args[5] & ~(prev_flags & LAST).astype(bool)))
    env, t = _candidates(buffer)
    if env.size:
      out = _assert_transitions_match(buffer, replay, env, t)
      seen["zero_padded_mid"] += int(np.sum((out["obs"][..., 0] == 0).all(axis=(1, 2)) & (t >= stack)))
      seen["stopped_early"] += int(np.sum(out["discount"] != np.float32(0.9**n)))
    seen["wrapped"] |= buffer.num_added > cap_per_env
  # The stream covered what the comparison is about.
  assert seen["truncated"] and seen["zero_padded_mid"] and seen["stopped_early"] and seen["wrapped"], seen


def test_transitions_hand_checked_cases():
  """A few transitions by hand, so that a bug shared with the host would show too."""
  buffer, replay = _pair(**A)
  events = [("", 0), ("", 1.0), ("life", 2.0), ("", 4.0), ("over", 8.0), ("", 0), ("", 1.0), ("", 2.0)]
  for t, (ev, r) in enumerate(events):
    frame = np.full((3, *FRAME_SHAPE), t + 1, np.uint8)
    args = (frame, [t] * 3, [r] * 3, [ev in ("life", "over")] * 3, [ev == "over"] * 3, [t in (0, 5)] * 3)
    buffer.add(*args)
    replay = _add(replay, *args)
  out = _assert_transitions_match(buffer, replay, np.array([0, 1, 2, 2, 2]), np.array([0, 1, 2, 3, 4]))
  np.testing.assert_allclose(out["reward"][:4], [1.0 + 0.9 * 2.0, 2.0, 4.0 + 0.9 * 8.0, 8.0], rtol=1e-6)
  np.testing.assert_array_equal(out["discount"][:4], [0.0, 0.0, 0.0, 0.0])  # Each walk ends on a terminal.
  np.testing.assert_array_equal(out["obs"][2, 0, 0], [0, 1, 2, 3])  # Stacks continue across the life loss.
  np.testing.assert_array_equal(out["next_obs"][2, 0, 0], [2, 3, 4, 5])
  got = _transitions(replay, np.ones(30, np.int32), np.full(30, 6, np.int32))  # Stack crossing the start at 5.
  np.testing.assert_array_equal(np.asarray(got["obs"][0, 0, 0]), [0, 0, 6, 7])
  np.testing.assert_array_equal(np.asarray(got["action"][0]), 6)


def test_truncation_rule_on_first_after_non_last():
  buffer, replay = _pair(**B)
  frame = np.ones((2, *FRAME_SHAPE), np.uint8)
  for first in ([True, True], [False, False], [True, False], [False, False]):  # Env 0 reset without a last.
    args = (frame, [1, 2], [0.5, 0.5], [False, False], [False, False], first)
    buffer.add(*args)
    replay = _add(replay, *args)
  _assert_same_storage(buffer, replay)
  np.testing.assert_array_equal(np.asarray(replay.flags[:, :4]),
                                [[FIRST, LAST, FIRST, 0], [FIRST, 0, 0, 0]])
  assert TERMINAL == 1  # The flag bits are replay.py's (imported, not copied).


def test_indices_valid_and_uniform():
  buffer, replay = _pair(**B)
  for args in _stream(np.random.default_rng(3), 2, 29, p_over=0.15, p_trunc=0.1):  # Wraps the ring.
    buffer.add(*args)
    replay = _add(replay, *args)
  valid = sorted(_valid_set(buffer))
  candidates = 2 * (buffer._time_range()[1] - buffer._time_range()[0] + 1)
  assert 5 <= len(valid) < candidates  # Some candidates are `last`.
  assert int(dr.num_valid(replay)) == len(valid) and dr.can_sample(replay)
  pairs = []
  for key in jax.random.split(jax.random.key(0), 8):
    env, t = _indices(replay, key, 2048)
    assert env.dtype == t.dtype == jnp.int32
    pairs += list(zip(np.asarray(env).tolist(), np.asarray(t).tolist()))
  assert set(pairs) == set(valid)
  counts = np.array([pairs.count(v) for v in valid])
  assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_fallback_is_exact_when_valid_indices_are_rare():
  """3 valid starts out of 20 candidates: 0.85^8 = 27% of the rows exhaust the 8 rejection rounds."""
  buffer, replay = _pair(**B)
  frame = np.zeros((2, *FRAME_SHAPE), np.uint8)
  not_last = ({20, 21}, {25})
  prev_last = [True, True]
  for i in range(30):  # Every other entry is a one-entry episode (last and first).
    last = [i not in not_last[e] for e in range(2)]
    args = (frame, [0, 0], [0.0, 0.0], [False, False], last, prev_last)
    buffer.add(*args)
    replay = _add(replay, *args)
    prev_last = last
  valid = sorted(_valid_set(buffer))
  assert valid == [(0, 20), (0, 21), (1, 25)]
  assert 2 * (buffer._time_range()[1] - buffer._time_range()[0] + 1) == 20
  env, t = _indices(replay, jax.random.key(1), 2048)
  pairs = list(zip(np.asarray(env).tolist(), np.asarray(t).tolist()))
  assert set(pairs) == set(valid)
  counts = np.array([pairs.count(v) for v in valid])
  assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_uniform_integers_reject_the_partial_top_block():
  """`_below` keeps exactly the 2^32 - (2^32 mod n) lowest words (statistics cannot see a 2^-32 bias)."""
  top = np.array([0, 2**32 - 4, 2**32 - 3, 2**32 - 2, 2**32 - 1], np.uint32)
  for n, accepted in ((3, [1, 1, 1, 1, 0]), (2**31 - 1, [1, 1, 1, 0, 0]), (8, [1, 1, 1, 1, 1]), (1, [1] * 5)):
    value, ok = jax.jit(dr._below)(top, jnp.int32(n))
    np.testing.assert_array_equal(np.asarray(ok), np.array(accepted, bool), err_msg=str(n))
    np.testing.assert_array_equal(np.asarray(value), top % n, err_msg=str(n))


def test_nothing_valid_returns_marked_rows():
  _, replay = _pair(**B)
  frame = np.zeros((2, *FRAME_SHAPE), np.uint8)
  replay = _add(replay, frame, [0, 0], [0.0, 0.0], [False, False], [False, False], [True, True])
  assert not dr.can_sample(replay) and int(dr.num_valid(replay)) == 0  # n_step + 1 = 2 entries are needed.
  for _ in range(14):  # Then every entry last (wrapping the ring): still nothing valid.
    replay = _add(replay, frame, [0, 0], [0.0, 0.0], [False, False], [True, True], [True, True])
    assert not dr.can_sample(replay)
    batch = _sample_many(replay, jax.random.key(0), 2, 2048)
    np.testing.assert_array_equal(np.asarray(batch["time_index"]), -1)
    np.testing.assert_array_equal(np.asarray(batch["env_index"]), 0)
  replay = _add(replay, frame, [0, 0], [0.0, 0.0], [False, False], [False, True], [True, True])
  replay = _add(replay, frame, [0, 0], [0.0, 0.0], [False, False], [True, True], [False, True])
  assert int(dr.num_valid(replay)) == 1
  np.testing.assert_array_equal(np.asarray(_sample_many(replay, jax.random.key(0), 2, 2048)["time_index"]), 15)


def test_oldest_fraction():
  buffer, replay = _pair(**B)
  for step, args in enumerate(_stream(np.random.default_rng(0), 2, 30, p_life=0, p_over=0, p_trunc=0, p_reset=0)):
    buffer.add(*args)
    replay = _add(replay, *args)
    # Start range t in [0, 7] (not wrapped), then [19, 28] (wrapped): the oldest ceil(width / 4).
    if step + 1 in (9, 30):
      env, t = _indices(replay, jax.random.key(step), 2048, 0.25)
      assert set(np.asarray(t).tolist()) == ({0, 1} if step + 1 == 9 else {19, 20, 21})
      assert set(np.asarray(env).tolist()) == {0, 1}
      assert set(zip(np.asarray(env).tolist(), np.asarray(t).tolist())) == _valid_set(buffer, 0.25)
  for bad in (0.0, 1.5):
    with pytest.raises(ValueError, match="oldest_fraction"):
      dr.indices(replay, jax.random.key(0), 2, oldest_fraction=bad)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.3, 1 / 3, 0.6, 1.0])  # 0.3, 0.6: float32 would be off.
def test_oldest_fraction_range_is_the_hosts(fraction):
  """The device's [lo, hi] equals the host's float64 ceil for every fill level, wrapped or not."""
  cap = 60
  buffer, replay = _pair(1, cap, stack=4, n=3)
  time_range = jax.jit(lambda r: dr._time_range(r, fraction))
  for num_added in range(3 * cap):
    buffer._num_added = num_added
    lo, hi = buffer._time_range()
    if hi >= lo:
      hi = lo + max(1, math.ceil(fraction * (hi - lo + 1))) - 1
    got = time_range(replay.replace(num_added=jnp.int32(num_added)))
    assert (int(got[0]), int(got[1])) == (lo, hi), num_added


@pytest.mark.parametrize("sparse", [False, True])
def test_sample_many_is_sample_with_split_keys(sparse):
  """Batch k is `indices` with the k-th split key, and its transitions are the host's (sparse: half the rows
  exhaust the rejection rounds, so the fallback's per-key draws are checked too)."""
  buffer, replay = _pair(**B)
  p = dict(p_over=0.6, p_trunc=0.3) if sparse else {}
  for args in _stream(np.random.default_rng(5), 2, 30, **p):
    buffer.add(*args)
    replay = _add(replay, *args)
  assert dr.can_sample(replay)
  assert (int(_num_valid(replay)) < 6) == sparse  # Of 20 candidates.
  key = jax.random.key(7)
  many = _sample_many(replay, key, 2, 2048)
  for value in many.values():
    assert value.shape[:2] == (2, 2048)
  assert many["obs"].shape == (2, 2048, *FRAME_SHAPE, 2)
  for k, sub in enumerate(jax.random.split(key, 2)):
    env, t = _indices(replay, sub, 2048)
    np.testing.assert_array_equal(np.asarray(many["env_index"][k]), np.asarray(env))
    np.testing.assert_array_equal(np.asarray(many["time_index"][k]), np.asarray(t))
    want = buffer._transitions(np.asarray(env).astype(np.int64), np.asarray(t).astype(np.int64))
    for name in ("obs", "next_obs", "action", "reward", "discount"):
      np.testing.assert_array_equal(np.asarray(many[name][k]), want[name], err_msg=name)


def test_state_dict_round_trips(tmp_path):
  buffer, replay = _pair(**A)
  twin = ReplayBuffer(30, 3, frame_shape=FRAME_SHAPE, n_step=3, gamma=0.9, seed=5)
  for step, args in enumerate(_stream(np.random.default_rng(2), 3, 23)):
    buffer.add(*args)
    replay = _add(replay, *args)
    if step in (6, 22):  # Before and after the wrap.
      host_state, state = buffer.state_dict(), dr.state_dict(replay)
      assert set(state) == set(host_state) - {"rng_state"}
      for name, value in host_state.items():
        if name != "rng_state":
          assert np.asarray(state[name]).dtype == np.asarray(value).dtype, name
          np.testing.assert_array_equal(state[name], value, err_msg=name)
      # Device -> state dict (through an npz) -> host, whose generator is untouched.
      np.savez(tmp_path / "replay.npz", **state)
      twin_rng = twin.state_dict()["rng_state"]
      with np.load(tmp_path / "replay.npz") as data:
        twin.load_state_dict({**dict(data), "rng_state": twin_rng})
      env, t = _candidates(buffer)
      _assert_transitions_match(twin, replay, env, t)
      dr.to_host(replay, twin)
      np.testing.assert_array_equal(twin.state_dict()["rng_state"], twin_rng)
      _assert_transitions_match(twin, replay, env, t)
      # Host state dict (rng_state included) -> device.
      for restored in (dr.from_state_dict(host_state, stack_size=4, n_step=3, gamma=0.9),
                       dr.from_host(buffer)):
        filled = min(buffer.num_added, 10)
        assert (restored.stack_size, restored.n_step, restored.gamma) == (4, 3, 0.9)
        assert restored.num_added.dtype == jnp.int32 and int(restored.num_added) == buffer.num_added
        for name in ("frames", "actions", "rewards", "flags"):
          np.testing.assert_array_equal(np.asarray(getattr(restored, name))[:, :filled],
                                        getattr(buffer, "_" + name)[:, :filled], err_msg=name)
          np.testing.assert_array_equal(np.asarray(getattr(restored, name))[:, filled:], 0, err_msg=name)
        _assert_transitions_match(buffer, restored, env, t)
  # Later adds keep both in step.
  restored = dr.from_host(buffer)
  for args in _stream(np.random.default_rng(9), 3, 5):
    buffer.add(*args)
    restored = _add(restored, *args)
  _assert_same_storage(buffer, restored)
  with pytest.raises(ValueError):
    dr.to_host(replay, ReplayBuffer(45, 3, frame_shape=FRAME_SHAPE))
  with pytest.raises(ValueError, match="frames has shape"):
    dr.from_state_dict({**dr.state_dict(replay), "frames": np.zeros((3, 3, *FRAME_SHAPE), np.uint8)},
                       stack_size=4, n_step=3, gamma=0.9)
  with pytest.raises(ValueError):
    dr.from_state_dict(dr.state_dict(replay), stack_size=4, n_step=3, gamma=0.9, frame_shape=(5, 6))


def test_jit_and_scan_match_eager():
  args = list(_stream(np.random.default_rng(4), 2, 29))
  _, eager = _pair(**B)
  jitted = eager
  for a in args:
    eager = dr.add(eager, *a)
    jitted = _add(jitted, *a)
  stacked = [np.stack(column) for column in zip(*args)]
  scanned, _ = jax.jit(lambda r, xs: jax.lax.scan(lambda c, x: (dr.add(c, *x), None), r, xs))(
      _pair(**B)[1], stacked)
  for name in ("frames", "actions", "rewards", "flags", "num_added"):
    want = np.asarray(getattr(eager, name))
    np.testing.assert_array_equal(np.asarray(getattr(jitted, name)), want, err_msg=name)
    np.testing.assert_array_equal(np.asarray(getattr(scanned, name)), want, err_msg=name)
  key = jax.random.key(3)
  jitted = _sample_many(scanned, key, 2, 2048)  # Batch k is sample with the k-th split key (tested above).
  eager = dr.sample(eager, jax.random.split(key, 2)[1], 2048)
  for name in eager:
    np.testing.assert_array_equal(np.asarray(jitted[name][1]), np.asarray(eager[name]), err_msg=name)


@pytest.mark.parametrize("kwargs", [
    dict(capacity=1, num_envs=2),
    dict(capacity=100, num_envs=0),
    dict(capacity=100, num_envs=1, n_step=0),
    dict(capacity=100, num_envs=1, stack_size=0),
    dict(capacity=100, num_envs=1, gamma=1.5),
    dict(capacity=100, num_envs=1, frame_shape=(0, 3)),
    dict(capacity=8, num_envs=2, stack_size=4, n_step=1),  # 4 per env < 5.
])
def test_init_validation_is_the_hosts(kwargs):
  with pytest.raises(ValueError) as host_error:
    ReplayBuffer(**kwargs)
  with pytest.raises(ValueError) as device_error:
    dr.init(**kwargs)
  assert str(device_error.value) == str(host_error.value)


def test_layout_and_add_shape_checks():
  buffer, replay = ReplayBuffer(21, 2), dr.init(21, 2)  # 84x84: arrays of ~155 kB.
  assert (replay.num_envs, replay.capacity_per_env, replay.capacity) == (2, 11, 22) == (
      buffer.num_envs, buffer.capacity_per_env, buffer.capacity)
  assert replay.frame_shape == (84, 84) and replay.nbytes == buffer.nbytes
  _, replay = _pair(**B)
  frame = np.zeros((2, *FRAME_SHAPE), np.uint8)
  ok = dict(action=[0, 0], reward=[0, 0], terminal=[False, False], last=[False, False], first=[True, True])
  with pytest.raises(ValueError, match="frame"):
    dr.add(replay, frame.astype(np.float32), **ok)
  with pytest.raises(ValueError, match="frame"):
    dr.add(replay, frame[:1], **ok)
  with pytest.raises(ValueError, match="reward"):
    dr.add(replay, frame, **{**ok, "reward": [0.0]})
