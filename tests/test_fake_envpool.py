"""envs/fake_envpool.py against real envpool: the same API (xla() too), shapes, dtypes and step semantics; its
selection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_rl.envs import atari
from plasticity_rl.envs import fake_envpool

_CAP_FRAMES = 40  # 10 agent steps: the time limit is reached within the short runs below.


def _run(envs, steps: int, seed: int = 0, render: bool = False):
  """reset, then `steps` send/recv pairs with random actions; every returned value."""
  rng = np.random.default_rng(seed)
  out = [envs.reset()]
  for _ in range(steps):
    envs.send(rng.integers(0, envs.action_space.n, envs.num_envs).astype(np.int32))
    out.append(envs.recv())
  return out, (envs.render(env_ids=[0, 1]) if render else None)


def _signature(value):
  """The structure, dtype and shape of a returned value (the fields the project reads and the others)."""
  if isinstance(value, dict):
    return {k: _signature(v) for k, v in value.items()}
  if isinstance(value, tuple):
    return tuple(_signature(v) for v in value)
  value = np.asarray(value)
  return (value.dtype.str, value.shape)


@pytest.fixture(scope="module")
def pools():
  """Real and fake Pong pools made by atari.make_envs as the loop makes them (and with render)."""
  real = atari.make_envs("Pong", "dqn_zoo", num_envs=2, seed=0, max_episode_frames=_CAP_FRAMES, render=True)
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv(atari.FAKE_ENVPOOL_ENV, "1")
    fake = atari.make_envs("Pong", "dqn_zoo", num_envs=2, seed=0, max_episode_frames=_CAP_FRAMES, render=True)
  assert isinstance(fake, fake_envpool.FakeAtariPool) and not isinstance(real, fake_envpool.FakeAtariPool)
  return real, fake


def test_same_spaces_and_config(pools):
  real, fake = pools
  assert type(fake.action_space) is type(real.action_space) and fake.action_space.n == real.action_space.n
  assert fake.observation_space == real.observation_space
  assert fake.num_envs == real.num_envs == 2
  for field in ("num_envs", "seed", "max_episode_steps", "stack_num", "frame_skip", "noop_max", "episodic_life",
                "reward_clip", "use_fire_reset", "img_height", "img_width", "full_action_space",
                "repeat_action_probability", "gray_scale"):
    assert getattr(fake.spec.config, field) == getattr(real.spec.config, field), field
    assert fake.config[field] == real.config[field], field


def test_same_shapes_and_dtypes_of_every_returned_value(pools):
  real, fake = pools
  (real_out, real_screens), (fake_out, fake_screens) = _run(real, 12, render=True), _run(fake, 12, render=True)
  for t, (r, f) in enumerate(zip(real_out, fake_out)):
    assert _signature(f) == _signature(r), t
  assert fake_screens.shape == real_screens.shape == (2, 210, 160, 3)
  assert fake_screens.dtype == real_screens.dtype == np.uint8


def test_same_time_limit_and_auto_reset(pools):
  """Steps 1–9 go on; step 10 is truncated, not terminated; step 11 is the next episode's start."""
  for envs in pools:
    out, _ = _run(envs, 12)
    for t, (_, reward, terminated, truncated, info) in enumerate(out[1:], start=1):
      assert not terminated.any(), t  # No game over within 10 steps of Pong.
      assert truncated.all() == (t == 10) and truncated.any() == (t == 10), t
      assert not info["terminated"].any(), t  # A plain time limit: info["terminated"] = 0.
      np.testing.assert_array_equal(info["elapsed_step"], [t % 11] * 2)
      np.testing.assert_array_equal(info["env_id"], [0, 1])
      if t == 11:
        assert (reward == 0).all()


def _run_xla(envs, steps: int, seed: int = 0):
  """reset (host), then one jitted send and recv, then a jitted lax.scan of `steps` - 1 xla steps; every value."""
  rng = np.random.default_rng(seed)
  actions = jnp.asarray(rng.integers(0, envs.action_space.n, (steps, envs.num_envs)), jnp.int32)
  handle, recv, send, step = envs.xla()
  envs.reset()
  first = jax.jit(recv)(jax.jit(send)(handle, actions[0]))
  _, rest = jax.jit(lambda h, a: jax.lax.scan(step, h, a))(first[0], actions[1:])
  return handle, [first[1]] + [jax.tree.map(lambda x, t=t: np.asarray(x[t]), rest) for t in range(steps - 1)]


def test_same_xla_interface(pools):
  """xla(): the same handle, the same signatures of every value under jit and lax.scan, the same time limit."""
  (real_handle, real_out), (fake_handle, fake_out) = (_run_xla(envs, 12) for envs in pools)
  assert _signature(fake_handle) == _signature(real_handle) and type(fake_handle) is type(real_handle)
  for t, (r, f) in enumerate(zip(real_out, fake_out)):
    assert _signature(f) == _signature(r), t
  for out in (real_out, fake_out):
    for t, (_, reward, terminated, truncated, info) in enumerate(out, start=1):
      assert not terminated.any() and truncated.all() == truncated.any() == (t == 10), t
      np.testing.assert_array_equal(info["elapsed_step"], [t % 11] * 2)
      np.testing.assert_array_equal(info["env_id"], [0, 1])
      if t == 11:
        assert (reward == 0).all()


def test_stepper_gives_the_same_flags_on_both():
  """AtariStepper on each: first/last/terminal/lives agree step by step (a time limit within the run)."""
  flags = []
  for fake in (False, True):
    with pytest.MonkeyPatch.context() as mp:
      if fake:
        mp.setenv(atari.FAKE_ENVPOOL_ENV, "1")
      envs = atari.make_envs("Pong", "machado", num_envs=2, seed=0, max_episode_frames=_CAP_FRAMES)
    stepper = atari.AtariStepper(envs, "machado")
    steps = [stepper.reset()] + [stepper.step(np.zeros(2, np.int64)) for _ in range(22)]
    flags.append([(s.first.tolist(), s.last.tolist(), s.terminal.tolist(), s.lives.tolist(), s.frame.shape,
                   s.frame.dtype, s.reward.dtype) for s in steps])
  assert flags[0] == flags[1]


def _fake(game="Breakout", protocol="dqn_zoo", num_envs=2, seed=0, max_episode_frames=108_000, **kwargs):
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv(atari.FAKE_ENVPOOL_ENV, "1")
    return atari.make_envs(game, protocol, num_envs, seed, max_episode_frames, **kwargs)


def test_fake_games_lose_lives_and_end_as_real_ones_do():
  """Breakout-like: 3 lives, life losses (terminal under dqn_zoo), a game over that is terminal and last, then
  the auto-reset; `first` exactly after `last`."""
  stepper = atari.AtariStepper(_fake(), "dqn_zoo")
  steps = [stepper.reset()]
  assert (steps[0].lives == 3).all() and steps[0].first.all()
  while not (steps[-1].last & steps[-1].terminal).any():
    assert len(steps) < 500
    steps.append(stepper.step(np.zeros(2, np.int64)))
  steps.append(stepper.step(np.zeros(2, np.int64)))
  lost = [(t, e) for t in range(1, len(steps)) for e in range(2)
          if 0 < steps[t].lives[e] < steps[t - 1].lives[e] and not steps[t].first[e]]
  assert lost and all(steps[t].terminal[e] and not steps[t].last[e] for t, e in lost)
  over, after = steps[-2], steps[-1]
  ended = np.flatnonzero(over.last & over.terminal)
  assert (over.lives[ended] == 0).all() and after.first[ended].all() and (after.lives[ended] == 3).all()
  assert (after.reward[ended] == 0).all()
  for t in range(1, len(steps)):
    np.testing.assert_array_equal(steps[t].first, steps[t - 1].last)


def test_fake_game_over_on_the_cap_step_is_truncated_with_info_terminated():
  envs = _fake("Pong", max_episode_frames=4 * 10)
  envs.reset()
  envs._game_steps[:] = 10  # pylint: disable=protected-access  (the game ends on the cap's step)
  for _ in range(10):
    _, _, terminated, truncated, info = envs.step(np.zeros(2, np.int32))
  assert truncated.all() and not terminated.any() and info["terminated"].all()


def test_fake_is_deterministic_per_seed_and_varies_across_seeds_and_envs():
  def frames(seed):
    out, _ = _run(_fake("Pong", seed=seed), 60, seed=1)
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out[1:]])

  (obs_a, reward_a), (obs_b, reward_b), (obs_c, _) = frames(0), frames(0), frames(5)
  np.testing.assert_array_equal(obs_a, obs_b)
  np.testing.assert_array_equal(reward_a, reward_b)
  assert not np.array_equal(obs_a, obs_c)
  assert not np.array_equal(obs_a[:, 0], obs_a[:, 1])  # Env i is seeded seed + i.
  assert not np.array_equal(obs_a[1], obs_a[2])  # Consecutive frames differ.
  assert set(np.unique(reward_a)) <= {-1.0, 0.0, 1.0} and (reward_a != 0).any()


def test_fake_rewards_follow_the_wanted_action():
  """A policy that reads the bar on the frame scores more than one that ignores it (something to learn)."""
  envs = _fake("Pong", num_envs=1)
  obs, _ = envs.reset()
  bar, total, ignoring = 84 // envs.action_space.n, 0.0, 0.0  # The bar: row 0, block `wanted` of width `bar`.
  for _ in range(200):
    wanted = int(np.argmax(obs[0, -1, 0, ::bar][:envs.action_space.n] == 200))
    obs, reward, *_ = envs.step(np.array([wanted], np.int32))
    total += reward[0]
  envs = _fake("Pong", num_envs=1)
  envs.reset()
  for _ in range(200):
    ignoring += envs.step(np.array([0], np.int32))[1][0]
  assert total > 10 and total > ignoring


def test_fake_sticky_actions_and_action_sets():
  assert _fake("Pong", "machado").action_space.n == 18
  assert _fake("Breakout", "dqn_zoo").action_space.n == 4
  with pytest.raises(ValueError, match="actions must be in"):
    _fake("Breakout").send(np.array([4, 0]))
  envs = _fake("Pong", "machado", num_envs=1)
  assert envs.config["repeat_action_probability"] == 0.25


def test_fake_api_misuse_is_refused():
  envs = _fake()
  envs.reset()
  with pytest.raises(RuntimeError, match="without send"):
    envs.recv()
  with pytest.raises(RuntimeError, match="render_mode"):
    envs.render(env_ids=[0])
  with pytest.raises(TypeError, match="unexpected keyword"):
    fake_envpool.make("Pong-v5", num_envs=1, no_such_option=True)
  with pytest.raises(ValueError, match="batch_size"):
    fake_envpool.make("Pong-v5", num_envs=2, batch_size=1)


def test_selection_is_explicit_and_warns_once(monkeypatch, caplog):
  monkeypatch.delenv(atari.FAKE_ENVPOOL_ENV, raising=False)
  assert atari.backend() == "envpool"
  monkeypatch.setenv(atari.FAKE_ENVPOOL_ENV, "0")
  assert atari.backend() == "envpool"
  monkeypatch.setenv(atari.FAKE_ENVPOOL_ENV, "yes")
  with pytest.raises(ValueError, match="PLASTICITY_RL_FAKE_ENVPOOL='yes'"):
    atari.make_envs("Pong", "dqn_zoo", 1, 0)
  monkeypatch.setenv(atari.FAKE_ENVPOOL_ENV, "1")
  assert atari.backend() == "fake_envpool"
  monkeypatch.setattr(fake_envpool, "_warned", False)
  with caplog.at_level("WARNING"):
    atari.make_envs("Pong", "dqn_zoo", 1, 0)
    atari.make_envs("Pong", "dqn_zoo", 1, 0)
  assert [r.getMessage() for r in caplog.records].count(
      "PLASTICITY_RL_FAKE_ENVPOOL=1: using plasticity_rl/envs/fake_envpool.py, synthetic games, NOT Atari "
      "(for tests only)") == 1
  assert atari.num_actions("Qbert", "dqn_zoo") == fake_envpool.MINIMAL_ACTIONS["Qbert"]
  assert set(atari.envpool_atari_games()) == set(fake_envpool.MINIMAL_ACTIONS)
